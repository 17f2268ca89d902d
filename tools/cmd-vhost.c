/* SPDX-License-Identifier: MIT */
/*
 * cmd-vhost.c: `diskstack vhost-user-blk SOCKET SPEC` — serves a disk spec
 * as a virtio-blk device to a vhost-user front-end (QEMU's
 * vhost-user-blk-pci) on a Unix socket (vhost/, docs/vhost.md).
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
 */
#include "config.h"

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
#include "tools/tool.h"
#include "vhost/blk.h"
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
	char err[1024];
	int opt, ret = 0, sig;

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

	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, &oldmask);
	signal(SIGPIPE, SIG_IGN);

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
	if ((ret = vhostsrv_listen_unix(srv, sock, err, sizeof(err))) < 0) {
		bool busy = ret == -EADDRINUSE;

		ret = tool_error(cmd, "%s", err);
		if (busy)
			ret = EXIT_USAGE;
		goto out;
	}
	if ((ret = vhostsrv_start(srv)) < 0) {
		ret = tool_error(cmd, "cannot start the server threads: %s", strerror(-ret));
		goto out;
	}
	if (pidfile) {
		if ((ret = vhost_write_pidfile(pidfile)) < 0) {
			ret = tool_error(cmd, "cannot write pid file '%s': %s", pidfile, strerror(-ret));
			goto out;
		}
		pidfile_written = true;
	}
	log_info("%s: serving %s on %s (%u queue%s%s)", cmd, spec_text, sock, (unsigned)queues,
		 queues > 1 ? "s" : "", read_only ? ", read-only" : "");
	do {
		sig = sigwaitinfo(&set, NULL);
	} while (sig < 0);
	log_info("%s: %s received: finishing the requests in flight", cmd, strsignal(sig));
	ret = 0;
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
