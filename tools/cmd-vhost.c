/* SPDX-License-Identifier: MIT */
/*
 * cmd-vhost.c: `diskstack vhost-user-blk SOCKET SPEC` — serves a disk spec
 * as a virtio-blk device to a vhost-user front-end (QEMU's
 * vhost-user-blk-pci) on a Unix socket — and `diskstack vhost-user-scsi
 * SOCKET --lun N=SPEC ...`, the same for SCSI LUNs behind a virtio-scsi
 * HBA (QEMU's vhost-user-scsi-pci) (vhost/, docs/vhost.md).
 *
 * Notes on the design
 * -------------------
 * - Signals (SIGINT, SIGTERM, SIGHUP) are blocked before the disk opens,
 *   so that every thread (ours, and any a disk starts) inherits the mask;
 *   the main thread takes them with sigwaitinfo. A stop finishes the
 *   requests in flight (their completions reach the guest), closes the
 *   connection, flushes the disk, removes the socket file and exits.
 * - The server accepts front-ends one after another: a QEMU that
 *   reconnects (reconnect= on its chardev) finds the socket again.
 *   QEMU 7.2 does not reconnect vhost-user-scsi (docs/vhost.md).
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "common/reactor.h"
#include "storage/disk.h"
#include "storage/spec.h"
#include "scsi/scsi.h"
#include "tools/scsi-lun.h"
#include "tools/tool.h"
#include "vhost/blk.h"
#include "vhost/scsi.h"
#include "vhost/vhost.h"

static void vhost_usage(FILE *fp)
{
	fprintf(fp,
		"Usage: diskstack vhost-user-blk SOCKET SPEC [OPTIONS]\n"
		"\n"
		"Serves SPEC as a virtio-blk device to a vhost-user front-end (QEMU's\n"
		"vhost-user-blk-pci) listening on the Unix socket SOCKET. Runs in the\n"
		"foreground; SIGINT/SIGTERM finish the requests in flight, flush the disk,\n"
		"remove SOCKET and exit.\n"
		"\n"
		"Options:\n"
		"  -q, --queues N       virtqueues, each on its own thread (default 1, max %u);\n"
		"                       QEMU's num-queues must not exceed it\n"
		"  -r, --read-only      a read-only device (VIRTIO_BLK_F_RO)\n"
		"  -P, --pidfile FILE   write the pid to FILE once the socket listens\n"
		"  -v, --verbose        debug messages (every vhost-user message)\n"
		"  -h, --help           show this help\n"
		"\n"
		"QEMU side (guest RAM must be shared memory):\n"
		"  -object memory-backend-memfd,id=mem,size=1G,share=on -machine memory-backend=mem\n"
		"  -chardev socket,id=vub0,path=SOCKET,reconnect=1\n"
		"  -device vhost-user-blk-pci,chardev=vub0,num-queues=N\n"
		"See docs/vhost.md and 'diskstack help specs'.\n", VHOSTSRV_MAX_QUEUES);
}

/* Writes @pid to @path through a temporary file. Returns 0 or -errno. */
static int vhost_write_pidfile(const char *path)
{
	char tmp[PATH_MAX];
	FILE *fp;

	snprintf(tmp, sizeof(tmp), "%s.tmp%d", path, (int)getpid());
	fp = fopen(tmp, "w");
	if (!fp || fprintf(fp, "%d\n", (int)getpid()) < 0 || fclose(fp) != 0 || rename(tmp, path) < 0) {
		int ret = -errno;

		unlink(tmp);
		return ret ? ret : -EIO;
	}
	return 0;
}

/*
 * Listens on @sock, starts @srv's threads, writes @pidfile (if any) and
 * waits for a stop signal from @set (blocked by the caller). Returns 0 or
 * an exit code; *@pidfile_written says whether to remove the pid file.
 */
static int vhost_serve(const char *cmd, struct vhostsrv *srv, const char *sock, const char *pidfile,
		       bool *pidfile_written, const sigset_t *set)
{
	char err[1024];
	int ret, sig;

	if ((ret = vhostsrv_listen_unix(srv, sock, err, sizeof(err))) < 0) {
		bool busy = ret == -EADDRINUSE;

		ret = tool_error(cmd, "%s", err);
		return busy ? EXIT_USAGE : ret;
	}
	if ((ret = vhostsrv_start(srv)) < 0)
		return tool_error(cmd, "cannot start the server threads: %s", strerror(-ret));
	if (pidfile) {
		if ((ret = vhost_write_pidfile(pidfile)) < 0)
			return tool_error(cmd, "cannot write pid file '%s': %s", pidfile, strerror(-ret));
		*pidfile_written = true;
	}
	do {
		sig = sigwaitinfo(set, NULL);
	} while (sig < 0);
	log_info("%s: %s received: finishing the requests in flight", cmd, strsignal(sig));
	return 0;
}

/* Blocks the stop signals for every thread started from now on (see the
 * notes); @set gets them, @oldmask the mask to restore. */
static void vhost_block_signals(sigset_t *set, sigset_t *oldmask)
{
	sigemptyset(set);
	sigaddset(set, SIGINT);
	sigaddset(set, SIGTERM);
	sigaddset(set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, set, oldmask);
	signal(SIGPIPE, SIG_IGN);
}

int cmd_vhost_blk(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "queues",    required_argument, NULL, 'q' },
		{ "read-only", no_argument,       NULL, 'r' },
		{ "pidfile",   required_argument, NULL, 'P' },
		{ "verbose",   no_argument,       NULL, 'v' },
		{ "help",      no_argument,       NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *cmd = "vhost-user-blk", *pidfile = NULL, *sock, *spec_text;
	uint64_t queues = 1;
	bool read_only = false, pidfile_written = false;
	struct spec *spec = NULL;
	struct reactor *r = NULL;
	struct disk *d = NULL;
	struct vhostblk *blk = NULL;
	struct vhostsrv *srv = NULL;
	sigset_t set, oldmask;
	int opt, ret = 0;

	opterr = 0;
	optind = 1;
	while ((opt = getopt_long(argc, argv, ":q:rP:vh", longopts, NULL)) != -1) {
		switch (opt) {
		case 'q':
			if (tool_parse_uint(optarg, 1, VHOSTSRV_MAX_QUEUES, &queues) < 0)
				return tool_usage_error(cmd, "bad --queues '%s' (1-%u)", optarg,
							VHOSTSRV_MAX_QUEUES);
			break;
		case 'r':
			read_only = true;
			break;
		case 'P':
			pidfile = optarg;
			break;
		case 'v':
			log_set_level(LOG_LEVEL_DEBUG);
			break;
		case 'h':
			vhost_usage(stdout);
			return 0;
		default:
			return tool_bad_option(cmd, opt, argv);
		}
	}
	if (argc - optind != 2)
		return tool_usage_error(cmd, argc - optind < 2 ? "wants SOCKET and SPEC"
							       : "too many arguments ('%s')",
					argv[MIN(argc - 1, optind + 2)]);
	sock = argv[optind];
	spec_text = argv[optind + 1];
	if ((ret = tool_parse_spec(cmd, "SPEC", spec_text, &spec)) != 0)
		return ret;

	vhost_block_signals(&set, &oldmask);
	if ((ret = reactor_new(&r, 0)) < 0) {
		ret = tool_error(cmd, "cannot create a reactor: %s", strerror(-ret));
		goto out;
	}
	if ((ret = tool_open_spec(cmd, "SPEC", spec, read_only, &d)) != 0)
		goto out;
	{
		struct vhostblk_opts bo = { .queues = (unsigned)queues, .read_only = read_only };
		struct vhostsrv_opts so = { .name = cmd, .ops = &vhostblk_ops,
					    .queues = (unsigned)queues };

		if ((ret = vhostblk_new(d, &bo, &blk)) < 0) {
			ret = tool_error(cmd, "cannot create the device: %s", strerror(-ret));
			goto out;
		}
		so.dev = blk;
		if ((ret = vhostsrv_new(&so, &srv)) < 0) {
			ret = tool_error(cmd, "cannot create the server: %s", strerror(-ret));
			goto out;
		}
	}
	log_info("%s: serving %s on %s (%u queue%s%s)", cmd, spec_text, sock, (unsigned)queues,
		 queues > 1 ? "s" : "", read_only ? ", read-only" : "");
	ret = vhost_serve(cmd, srv, sock, pidfile, &pidfile_written, &set);
out:
	/* Drain: rings stop after their requests complete. */
	vhostsrv_free(srv);
	vhostblk_free(blk);
	if (d && !read_only && disk_sync_flush(d) != DISK_OK)
		ret = tool_error(cmd, "flushing the disk failed");
	disk_unref(d);
	reactor_free(r);
	spec_free(spec);
	if (pidfile_written)
		unlink(pidfile);
	pthread_sigmask(SIG_SETMASK, &oldmask, NULL);
	return ret;
}

static void vhost_scsi_usage(FILE *fp)
{
	fprintf(fp,
		"Usage: diskstack vhost-user-scsi SOCKET [SPEC] [--lun N=SPEC ...] [OPTIONS]\n"
		"\n"
		"Serves SCSI logical units behind a virtio-scsi HBA to a vhost-user front-end\n"
		"(QEMU's vhost-user-scsi-pci) listening on the Unix socket SOCKET: one target\n"
		"(0), a LUN per --lun (SPEC alone is LUN 0). Runs in the foreground;\n"
		"SIGINT/SIGTERM finish the commands in flight, flush the disks, remove SOCKET\n"
		"and exit.\n"
		"\n"
		"Options:\n"
		"  -l, --lun N=SPEC     LUN N (0-255); SPEC,dvd makes a read-only DVD drive,\n"
		"                       SPEC,removable a removable disk; repeatable\n"
		"  -q, --queues N       request queues, each on its own thread (default 1, max %u);\n"
		"                       give QEMU the same num_queues\n"
		"  -r, --read-only      open every disk read-only\n"
		"  -P, --pidfile FILE   write the pid to FILE once the socket listens\n"
		"  -v, --verbose        debug messages (every vhost-user message)\n"
		"  -h, --help           show this help\n"
		"\n"
		"QEMU side (guest RAM must be shared memory; no reconnect= on this chardev:\n"
		"QEMU 7.2 cannot reconnect vhost-user-scsi, and the option breaks its start):\n"
		"  -object memory-backend-memfd,id=mem,size=1G,share=on -machine memory-backend=mem\n"
		"  -chardev socket,id=vus0,path=SOCKET\n"
		"  -device vhost-user-scsi-pci,chardev=vus0,num_queues=N\n"
		"See docs/vhost.md and 'diskstack help specs'.\n", VHOSTSRV_MAX_QUEUES - 2);
}

/* "iqn.2026-12.org.diskstack:vhost.<socket path>" with the path reduced
 * to the characters an iSCSI name may hold: LUs without a disk id get
 * their identity from the target name, so each socket gets its own. */
static void vhost_scsi_target_name(const char *sock, char *out, size_t len)
{
	size_t o = (size_t)snprintf(out, len, "iqn.2026-12.org.diskstack:vhost.");

	for (const char *p = sock; *p && o + 1 < len; p++) {
		char ch = (char)tolower((unsigned char)*p);

		out[o++] = (isalnum((unsigned char)ch) || ch == '.' || ch == '-') ? ch : '-';
	}
	out[o] = '\0';
}

int cmd_vhost_scsi(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "lun",       required_argument, NULL, 'l' },
		{ "queues",    required_argument, NULL, 'q' },
		{ "read-only", no_argument,       NULL, 'r' },
		{ "pidfile",   required_argument, NULL, 'P' },
		{ "verbose",   no_argument,       NULL, 'v' },
		{ "help",      no_argument,       NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *cmd = "vhost-user-scsi", *pidfile = NULL, *sock;
	struct {
		unsigned lun;
		const char *text;
		struct spec *spec;
		struct disk *disk;
	} luns[SCSI_MAX_LUNS];
	unsigned nluns = 0;
	uint64_t queues = 1;
	bool read_only = false, pidfile_written = false;
	struct reactor *r = NULL;
	struct scsi_target *t = NULL;
	struct vhostscsi *dev = NULL;
	struct vhostsrv *srv = NULL;
	char tname[256];
	sigset_t set, oldmask;
	int opt, ret = 0;

	opterr = 0;
	optind = 1;
	while ((opt = getopt_long(argc, argv, ":l:q:rP:vh", longopts, NULL)) != -1) {
		switch (opt) {
		case 'l':
			if (nluns == SCSI_MAX_LUNS) {
				ret = tool_usage_error(cmd, "too many LUNs");
				goto out_args;
			}
			if ((ret = tool_lun_arg(cmd, optarg, &luns[nluns].lun, &luns[nluns].text)) != 0)
				goto out_args;
			luns[nluns].spec = NULL;
			luns[nluns++].disk = NULL;
			break;
		case 'q':
			if (tool_parse_uint(optarg, 1, VHOSTSRV_MAX_QUEUES - 2, &queues) < 0) {
				ret = tool_usage_error(cmd, "bad --queues '%s' (1-%u)", optarg,
						       VHOSTSRV_MAX_QUEUES - 2);
				goto out_args;
			}
			break;
		case 'r':
			read_only = true;
			break;
		case 'P':
			pidfile = optarg;
			break;
		case 'v':
			log_set_level(LOG_LEVEL_DEBUG);
			break;
		case 'h':
			vhost_scsi_usage(stdout);
			return 0;
		default:
			ret = tool_bad_option(cmd, opt, argv);
			goto out_args;
		}
	}
	if (argc - optind < 1 || argc - optind > 2) {
		ret = tool_usage_error(cmd, argc - optind < 1 ? "wants SOCKET" : "too many arguments ('%s')",
				       argv[MIN(argc - 1, optind + 2)]);
		goto out_args;
	}
	sock = argv[optind];
	if (argc - optind == 2) {
		if (nluns == SCSI_MAX_LUNS) {
			ret = tool_usage_error(cmd, "too many LUNs");
			goto out_args;
		}
		luns[nluns].lun = 0;
		luns[nluns].text = argv[optind + 1];
		luns[nluns].spec = NULL;
		luns[nluns++].disk = NULL;
	}
	if (nluns == 0) {
		ret = tool_usage_error(cmd, "nothing to serve: give SPEC or --lun N=SPEC");
		goto out_args;
	}
	for (unsigned i = 0; i < nluns; i++) {
		for (unsigned j = 0; j < i; j++)
			if (luns[j].lun == luns[i].lun) {
				ret = tool_usage_error(cmd, "LUN %u given twice", luns[i].lun);
				goto out_args;
			}
		if ((ret = tool_parse_spec(cmd, "--lun SPEC", luns[i].text, &luns[i].spec)) != 0)
			goto out_args;
	}

	vhost_block_signals(&set, &oldmask);
	if ((ret = reactor_new(&r, 0)) < 0) {
		ret = tool_error(cmd, "cannot create a reactor: %s", strerror(-ret));
		goto out;
	}
	vhost_scsi_target_name(sock, tname, sizeof(tname));
	if ((ret = scsi_target_new(tname, &t)) < 0) {
		ret = tool_error(cmd, "cannot create the target: %s", strerror(-ret));
		goto out;
	}
	for (unsigned i = 0; i < nluns; i++) {
		if ((ret = tool_open_spec(cmd, "--lun SPEC", luns[i].spec, read_only, &luns[i].disk)) != 0 ||
		    (ret = tool_scsi_add_lu(cmd, t, luns[i].lun, luns[i].disk, luns[i].text)) != 0)
			goto out;
	}
	{
		struct vhostscsi_opts vo = { .request_queues = (unsigned)queues, .initiator = sock };
		struct vhostsrv_opts so = { .name = cmd, .ops = &vhostscsi_ops };

		if ((ret = vhostscsi_new(t, &vo, &dev)) < 0) {
			ret = tool_error(cmd, "cannot create the device: %s", strerror(-ret));
			goto out;
		}
		so.dev = dev;
		so.queues = vhostscsi_queues(dev);
		if ((ret = vhostsrv_new(&so, &srv)) < 0) {
			ret = tool_error(cmd, "cannot create the server: %s", strerror(-ret));
			goto out;
		}
	}
	log_info("%s: serving %u LUN%s on %s (%u request queue%s%s)", cmd, nluns, nluns > 1 ? "s" : "",
		 sock, (unsigned)queues, queues > 1 ? "s" : "", read_only ? ", read-only" : "");
	ret = vhost_serve(cmd, srv, sock, pidfile, &pidfile_written, &set);
out:
	/* Drain: rings stop after their commands complete. */
	vhostsrv_free(srv);
	vhostscsi_free(dev);
	scsi_target_free(t);
	for (unsigned i = 0; i < nluns; i++) {
		struct disk *d = luns[i].disk;

		if (d && !disk_get_info(d)->read_only && disk_sync_flush(d) != DISK_OK)
			ret = tool_error(cmd, "flushing LUN %u failed", luns[i].lun);
		disk_unref(d);
	}
	reactor_free(r);
	if (pidfile_written)
		unlink(pidfile);
	pthread_sigmask(SIG_SETMASK, &oldmask, NULL);
out_args:
	for (unsigned i = 0; i < nluns; i++)
		spec_free(luns[i].spec);
	return ret;
}
