/* SPDX-License-Identifier: MIT */
/*
 * cmd-vhost.c: `diskstack vhost-user-blk SOCKET SPEC` — serves a disk spec
 * as a virtio-blk device to a vhost-user front-end (QEMU's
 * vhost-user-blk-pci) on a Unix socket — and `diskstack vhost-user-scsi
 * SOCKET --lun N=SPEC ...`, the same for SCSI LUNs behind a virtio-scsi
 * HBA (QEMU's vhost-user-scsi-pci) (vhost/, docs/vhost.md), and
 * `diskstack uml-nvme SOCKET SPEC...`, the emulated NVMe PCI function
 * (nvme_emul/nvme_pci.h) for User-Mode Linux over virt-pci (vhost/virtpci.h).
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

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/compiler.h"
#include "common/endian.h"
#include "common/log.h"
#include "common/reactor.h"
#include "nvme_emul/nvme_pci.h"
#include "storage/disk.h"
#include "storage/spec.h"
#include "scsi/scsi.h"
#include "tools/scsi-lun.h"
#include "tools/serve-vhost.h"
#include "tools/tool.h"
#include "vhost/blk.h"
#include "vhost/scsi.h"
#include "vhost/vhost.h"
#include "vhost/virtpci.h"

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

/* What the three commands here take alike; see vhost_parse_opts. */
struct vhost_cmd_opts {
	/* In: the command's name, the most --queues allows, what --help
	 * prints, and (vhost-user-scsi only; NULL refuses --lun) what takes
	 * one --lun argument, returning 0 or an exit status. */
	const char *cmd;
	unsigned max_queues;
	void (*usage)(FILE *fp);
	int (*lun)(void *ctx, const char *arg);
	void *lun_ctx;
	/* In: the default; out: --queues. */
	uint64_t queues;
	/* Out: --read-only and --pidfile (borrowed from argv). */
	bool read_only;
	const char *pidfile;
};

/* vhost_parse_opts's "go on": no exit status is negative. */
#define VHOST_GO_ON (-1)

/*
 * Parses @argv's options into @o (--verbose acts at once). Returns
 * VHOST_GO_ON with optind at the first operand, or the exit status the
 * command returns now: 0 after --help, 2 after a usage error.
 */
static int vhost_parse_opts(int argc, char **argv, struct vhost_cmd_opts *o)
{
	/* Without o->lun the table starts after its first entry. */
	static const struct option longopts[] = {
		{ "lun",       required_argument, NULL, 'l' },
		{ "queues",    required_argument, NULL, 'q' },
		{ "read-only", no_argument,       NULL, 'r' },
		{ "pidfile",   required_argument, NULL, 'P' },
		{ "verbose",   no_argument,       NULL, 'v' },
		{ "help",      no_argument,       NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int opt, ret;

	opterr = 0;
	optind = 1;
	while ((opt = getopt_long(argc, argv, o->lun ? ":l:q:rP:vh" : ":q:rP:vh",
				  o->lun ? longopts : longopts + 1, NULL)) != -1) {
		switch (opt) {
		case 'l':
			if ((ret = o->lun(o->lun_ctx, optarg)) != 0)
				return ret;
			break;
		case 'q':
			if (tool_parse_uint(optarg, 1, o->max_queues, &o->queues) < 0)
				return tool_usage_error(o->cmd, "bad --queues '%s' (1-%u)", optarg,
							o->max_queues);
			break;
		case 'r':
			o->read_only = true;
			break;
		case 'P':
			o->pidfile = optarg;
			break;
		case 'v':
			log_set_level(LOG_LEVEL_DEBUG);
			break;
		case 'h':
			o->usage(stdout);
			return 0;
		default:
			return tool_bad_option(o->cmd, opt, argv);
		}
	}
	return VHOST_GO_ON;
}

/* Blocks the stop signals (vhost_block_signals) and creates the main
 * thread's reactor in *@r. Returns 0 or an exit status; either way the
 * caller ends with vhost_finish. */
static int vhost_begin(const char *cmd, sigset_t *set, sigset_t *oldmask, struct reactor **r)
{
	int ret;

	vhost_block_signals(set, oldmask);
	if ((ret = reactor_new(r, 0)) < 0)
		return tool_error(cmd, "cannot create a reactor: %s", strerror(-ret));
	return 0;
}

/* Undoes vhost_begin (once the disks are closed) and removes the pid
 * file if vhost_serve wrote it. */
static void vhost_finish(struct reactor *r, const char *pidfile, bool pidfile_written,
			 const sigset_t *oldmask)
{
	reactor_free(r);
	if (pidfile_written)
		unlink(pidfile);
	pthread_sigmask(SIG_SETMASK, oldmask, NULL);
}

int cmd_vhost_blk(int argc, char **argv)
{
	struct vhost_cmd_opts o = { .cmd = "vhost-user-blk", .max_queues = VHOSTSRV_MAX_QUEUES,
				    .usage = vhost_usage, .queues = 1 };
	const char *cmd = o.cmd, *sock, *spec_text;
	bool pidfile_written = false;
	struct spec *spec = NULL;
	struct reactor *r = NULL;
	struct disk *d = NULL;
	struct vhostblk *blk = NULL;
	struct vhostsrv *srv = NULL;
	sigset_t set, oldmask;
	int ret;

	if ((ret = vhost_parse_opts(argc, argv, &o)) != VHOST_GO_ON)
		return ret;
	if (argc - optind != 2)
		return tool_usage_error(cmd, argc - optind < 2 ? "wants SOCKET and SPEC"
							       : "too many arguments ('%s')",
					argv[MIN(argc - 1, optind + 2)]);
	sock = argv[optind];
	spec_text = argv[optind + 1];
	if ((ret = tool_parse_spec(cmd, "SPEC", spec_text, &spec)) != 0)
		return ret;

	if ((ret = vhost_begin(cmd, &set, &oldmask, &r)) != 0 ||
	    (ret = tool_open_spec(cmd, "SPEC", spec, o.read_only, &d)) != 0)
		goto out;
	{
		struct vhostblk_opts bo = { .queues = (unsigned)o.queues, .read_only = o.read_only };
		struct vhostsrv_opts so = { .name = cmd, .ops = &vhostblk_ops,
					    .queues = (unsigned)o.queues };

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
	log_info("%s: serving %s on %s (%u queue%s%s)", cmd, spec_text, sock, (unsigned)o.queues,
		 o.queues > 1 ? "s" : "", o.read_only ? ", read-only" : "");
	ret = vhost_serve(cmd, srv, sock, o.pidfile, &pidfile_written, &set);
out:
	/* Drain: rings stop after their requests complete. */
	vhostsrv_free(srv);
	vhostblk_free(blk);
	if (d && !o.read_only && disk_sync_flush(d) != DISK_OK)
		ret = tool_error(cmd, "flushing the disk failed");
	disk_unref(d);
	vhost_finish(r, o.pidfile, pidfile_written, &oldmask);
	spec_free(spec);
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

/* vhost-user-scsi's LUNs, in the order given. */
struct vhost_scsi_luns {
	const char *cmd;
	unsigned n;
	struct {
		unsigned lun;
		const char *text;	/* borrowed from argv */
		struct spec *spec;
		struct disk *disk;
	} lu[SCSI_MAX_LUNS];
};

/* Adds LUN @lun with the spec text @text. Returns 0 or an exit status. */
static int vhost_scsi_add_lun(struct vhost_scsi_luns *l, unsigned lun, const char *text)
{
	if (l->n == SCSI_MAX_LUNS)
		return tool_usage_error(l->cmd, "too many LUNs");
	l->lu[l->n].lun = lun;
	l->lu[l->n].text = text;
	l->lu[l->n].spec = NULL;
	l->lu[l->n++].disk = NULL;
	return 0;
}

/* vhost_cmd_opts.lun: one --lun N=SPEC. */
static int vhost_scsi_lun_opt(void *ctx, const char *arg)
{
	struct vhost_scsi_luns *l = ctx;
	unsigned lun;
	const char *text;
	int ret;

	if (l->n == SCSI_MAX_LUNS)
		return tool_usage_error(l->cmd, "too many LUNs");
	if ((ret = tool_lun_arg(l->cmd, arg, &lun, &text)) != 0)
		return ret;
	return vhost_scsi_add_lun(l, lun, text);
}

int cmd_vhost_scsi(int argc, char **argv)
{
	struct vhost_scsi_luns l = { .cmd = "vhost-user-scsi" };
	struct vhost_cmd_opts o = { .cmd = l.cmd, .max_queues = VHOSTSRV_MAX_QUEUES - 2,
				    .usage = vhost_scsi_usage, .lun = vhost_scsi_lun_opt,
				    .lun_ctx = &l, .queues = 1 };
	const char *cmd = o.cmd, *sock;
	bool pidfile_written = false;
	struct reactor *r = NULL;
	struct scsi_target *t = NULL;
	struct vhostscsi *dev = NULL;
	struct vhostsrv *srv = NULL;
	char tname[256];
	sigset_t set, oldmask;
	int ret;

	if ((ret = vhost_parse_opts(argc, argv, &o)) != VHOST_GO_ON)
		goto out_args;
	if (argc - optind < 1 || argc - optind > 2) {
		ret = tool_usage_error(cmd, argc - optind < 1 ? "wants SOCKET" : "too many arguments ('%s')",
				       argv[MIN(argc - 1, optind + 2)]);
		goto out_args;
	}
	sock = argv[optind];
	if (argc - optind == 2 && (ret = vhost_scsi_add_lun(&l, 0, argv[optind + 1])) != 0)
		goto out_args;
	if (l.n == 0) {
		ret = tool_usage_error(cmd, "nothing to serve: give SPEC or --lun N=SPEC");
		goto out_args;
	}
	for (unsigned i = 0; i < l.n; i++) {
		for (unsigned j = 0; j < i; j++)
			if (l.lu[j].lun == l.lu[i].lun) {
				ret = tool_usage_error(cmd, "LUN %u given twice", l.lu[i].lun);
				goto out_args;
			}
		if ((ret = tool_parse_spec(cmd, "--lun SPEC", l.lu[i].text, &l.lu[i].spec)) != 0)
			goto out_args;
	}

	if ((ret = vhost_begin(cmd, &set, &oldmask, &r)) != 0)
		goto out;
	serve_vhost_scsi_target_name(sock, tname, sizeof(tname));
	if ((ret = scsi_target_new(tname, &t)) < 0) {
		ret = tool_error(cmd, "cannot create the target: %s", strerror(-ret));
		goto out;
	}
	for (unsigned i = 0; i < l.n; i++) {
		if ((ret = tool_open_spec(cmd, "--lun SPEC", l.lu[i].spec, o.read_only, &l.lu[i].disk)) != 0 ||
		    (ret = tool_scsi_add_lu(cmd, t, l.lu[i].lun, l.lu[i].disk, l.lu[i].text)) != 0)
			goto out;
	}
	{
		struct vhostscsi_opts vo = { .request_queues = (unsigned)o.queues, .initiator = sock };
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
	log_info("%s: serving %u LUN%s on %s (%u request queue%s%s)", cmd, l.n, l.n > 1 ? "s" : "",
		 sock, (unsigned)o.queues, o.queues > 1 ? "s" : "", o.read_only ? ", read-only" : "");
	ret = vhost_serve(cmd, srv, sock, o.pidfile, &pidfile_written, &set);
out:
	/* Drain: rings stop after their commands complete. */
	vhostsrv_free(srv);
	vhostscsi_free(dev);
	scsi_target_free(t);
	for (unsigned i = 0; i < l.n; i++) {
		struct disk *d = l.lu[i].disk;

		if (d && !disk_get_info(d)->read_only && disk_sync_flush(d) != DISK_OK)
			ret = tool_error(cmd, "flushing LUN %u failed", l.lu[i].lun);
		disk_unref(d);
	}
	vhost_finish(r, o.pidfile, pidfile_written, &oldmask);
out_args:
	for (unsigned i = 0; i < l.n; i++)
		spec_free(l.lu[i].spec);
	return ret;
}

/* ---- diskstack uml-nvme ----------------------------------------------------- */

static void uml_nvme_usage(FILE *fp)
{
	fprintf(fp,
		"Usage: diskstack uml-nvme SOCKET SPEC [SPEC...] [OPTIONS]\n"
		"\n"
		"Serves an emulated NVMe PCI function (nvme_emul/, docs/nvme.md) to a\n"
		"User-Mode Linux kernel over virt-pci (vhost-user) on the Unix socket\n"
		"SOCKET: the Nth SPEC is namespace N. The kernel's own NVMe PCI driver\n"
		"binds to it. Runs in the foreground; SIGINT/SIGTERM stop, flush the disks,\n"
		"remove SOCKET and exit.\n"
		"\n"
		"Options:\n"
		"  -q, --queues N       I/O queues the function offers (default 4, max %u)\n"
		"  -r, --read-only      open every disk read-only\n"
		"  -P, --pidfile FILE   write the pid to FILE once the socket listens\n"
		"  -v, --verbose        debug messages (every vhost-user message)\n"
		"  -h, --help           show this help\n"
		"\n"
		"UML side (a kernel with CONFIG_UML_PCI_OVER_VIRTIO and its device id,\n"
		"tests/vm/uml-kernel.sh builds one with id %u):\n"
		"  linux mem=256M virtio_uml.device=SOCKET:%u virt_pci.max_delay_us=5000000 ...\n"
		"See docs/vhost.md and 'diskstack help specs'.\n",
		NVMEEMU_PCI_MAX_IO_QUEUES, VIRTPCI_DEVICE_ID, VIRTPCI_DEVICE_ID);
}

/* A reactor on a thread of its own for the function's queues (a reactor
 * is used only by the thread that made it). */
struct uml_nvme_thread {
	pthread_t tid;
	struct reactor *r;
	int init_ret;
	sem_t ready;
	struct reactor_task stop_task;
};

static void *uml_nvme_thread_main(void *arg)
{
	struct uml_nvme_thread *t = arg;
	int ret = reactor_new(&t->r, 0);

	t->init_ret = ret;
	sem_post(&t->ready);
	if (ret < 0)
		return NULL;
	if ((ret = reactor_run(t->r)) < 0)
		log_error("uml-nvme: reactor thread: %s", strerror(-ret));
	reactor_free(t->r);
	return NULL;
}

static int uml_nvme_thread_start(struct uml_nvme_thread *t)
{
	int ret;

	sem_init(&t->ready, 0, 0);
	if ((ret = pthread_create(&t->tid, NULL, uml_nvme_thread_main, t)) != 0)
		return -ret;
	while (sem_wait(&t->ready) < 0)
		;
	if (t->init_ret < 0) {
		pthread_join(t->tid, NULL);
		return t->init_ret;
	}
	return 0;
}

static void uml_nvme_thread_stop_task(struct reactor_task *task)
{
	struct uml_nvme_thread *t = container_of(task, struct uml_nvme_thread, stop_task);

	reactor_stop(t->r);
}

/* Stops the thread after every task posted before: nvmeemu_pci_free of
 * a function the guest left enabled posts the end of its held AERs and
 * its own release there (nvme_pci.h). */
static void uml_nvme_thread_stop(struct uml_nvme_thread *t)
{
	t->stop_task.fn = uml_nvme_thread_stop_task;
	reactor_post(t->r, &t->stop_task);
	pthread_join(t->tid, NULL);
}

/* The function's view of the VMM: UML's memory and interrupts through
 * virtpci; config and BAR accesses the other way. */
struct uml_nvme {
	struct virtpci *vp;
	struct nvmeemu_pci *fn;
	/* Queue 0's thread: the driver's shutdown as seen in CC and CSTS,
	 * logged for tests/vm/test-uml-nvme.sh. */
	bool shn_asked;
};

/* NVMe Base spec 2.0 §3.1.3: CC at 14h (SHN bits 15:14), CSTS at 1Ch
 * (SHST bits 3:2, 10b = shutdown processing complete). */
#define UML_NVME_REG_CC 0x14
#define UML_NVME_REG_CSTS 0x1c

static int uml_nvme_mem_read(void *opaque, uint64_t gpa, void *buf, size_t len)
{
	return virtpci_mem_read(((struct uml_nvme *)opaque)->vp, gpa, buf, len);
}

static int uml_nvme_mem_write(void *opaque, uint64_t gpa, const void *buf, size_t len)
{
	return virtpci_mem_write(((struct uml_nvme *)opaque)->vp, gpa, buf, len);
}

static void *uml_nvme_mem_map(void *opaque, uint64_t gpa, size_t len)
{
	return virtpci_mem_ptr(((struct uml_nvme *)opaque)->vp, gpa, len);
}

static void uml_nvme_msi(void *opaque, uint64_t addr, uint32_t data)
{
	int ret = virtpci_msi(((struct uml_nvme *)opaque)->vp, addr, data);

	if (ret < 0)
		log_debug("uml-nvme: MSI %#llx/%#x not delivered: %s", (unsigned long long)addr,
			  data, strerror(-ret));
}

/*
 * Config space: the function has the 256 bytes of conventional PCI and
 * takes 1-, 2- and 4-byte aligned accesses; UML's virt-pci also reads the
 * extended space (answered all-ones: no extended capabilities) and may
 * use 8 bytes (two halves).
 */
static void uml_nvme_cfg_read(void *dev, uint32_t off, void *buf, uint32_t len)
{
	struct uml_nvme *u = dev;
	uint32_t v;

	for (uint32_t done = 0; done < len; done += MIN(len, 4u)) {
		unsigned n = MIN(len, 4u);

		if (nvmeemu_pci_cfg_read(u->fn, off + done, n, &v) == 0) {
			uint8_t le[4];

			ds_put_le32(le, v);
			memcpy((uint8_t *)buf + done, le, n);
		}
	}
}

static void uml_nvme_cfg_write(void *dev, uint32_t off, const void *buf, uint32_t len)
{
	struct uml_nvme *u = dev;

	for (uint32_t done = 0; done < len; done += MIN(len, 4u)) {
		unsigned n = MIN(len, 4u);
		uint8_t le[4] = { 0 };

		memcpy(le, (const uint8_t *)buf + done, n);
		nvmeemu_pci_cfg_write(u->fn, off + done, n, ds_get_le32(le));
	}
}

/*
 * BARs take aligned 4- and 8-byte accesses (the Linux driver uses 4);
 * anything else (memcpy_fromio of the MSI-X table, byte accesses) goes
 * through the aligned dwords it covers, reading them first for a write.
 */
static void uml_nvme_bar_read(void *dev, unsigned bar, uint64_t off, void *buf, uint32_t len)
{
	struct uml_nvme *u = dev;
	uint64_t v;

	if ((len == 4 || len == 8) && off % len == 0) {
		if (nvmeemu_pci_mmio_read(u->fn, bar, off, len, &v) == 0) {
			uint8_t le[8];

			ds_put_le64(le, v);
			memcpy(buf, le, len);
			if (bar == 0 && off == UML_NVME_REG_CSTS && u->shn_asked &&
			    ((v >> 2) & 3) == 2) {
				u->shn_asked = false;
				log_info("uml-nvme: controller shutdown complete (CSTS.SHST)");
			}
		}
		return;
	}
	for (uint32_t done = 0; done < len;) {
		uint64_t at = off + done, dw = at & ~3ull;
		uint32_t skip = (uint32_t)(at - dw), n = MIN(4 - skip, len - done);
		uint8_t le[8];

		if (nvmeemu_pci_mmio_read(u->fn, bar, dw, 4, &v) == 0) {
			ds_put_le64(le, v);
			memcpy((uint8_t *)buf + done, le + skip, n);
		}
		done += n;
	}
}

static void uml_nvme_bar_write(void *dev, unsigned bar, uint64_t off, const void *buf, uint32_t len)
{
	struct uml_nvme *u = dev;
	uint8_t le[8] = { 0 };
	uint64_t v;

	if ((len == 4 || len == 8) && off % len == 0) {
		memcpy(le, buf, len);
		v = ds_get_le64(le);
		if (bar == 0 && off == UML_NVME_REG_CC && ((v >> 14) & 3)) {
			u->shn_asked = true;
			log_info("uml-nvme: the driver asks for a shutdown (CC.SHN %u)",
				 (unsigned)((v >> 14) & 3));
		}
		nvmeemu_pci_mmio_write(u->fn, bar, off, len, v);
		return;
	}
	for (uint32_t done = 0; done < len;) {
		uint64_t at = off + done, dw = at & ~3ull;
		uint32_t skip = (uint32_t)(at - dw), n = MIN(4 - skip, len - done);

		if (nvmeemu_pci_mmio_read(u->fn, bar, dw, 4, &v) < 0)
			v = 0;
		ds_put_le64(le, v);
		memcpy(le + skip, (const uint8_t *)buf + done, n);
		nvmeemu_pci_mmio_write(u->fn, bar, dw, 4, ds_get_le32(le));
		done += n;
	}
}

static void uml_nvme_session(void *dev, bool connected)
{
	struct uml_nvme *u = dev;

	if (connected)
		log_info("uml-nvme: UML connected (memory mapped)");
	else
		log_info("uml-nvme: UML left after %llu interrupts",
			 (unsigned long long)virtpci_msi_count(u->vp));
}

static const struct virtpci_dev_ops uml_nvme_ops = {
	.config_read = uml_nvme_cfg_read,
	.config_write = uml_nvme_cfg_write,
	.bar_read = uml_nvme_bar_read,
	.bar_write = uml_nvme_bar_write,
	.session = uml_nvme_session,
};

#define UML_NVME_MAX_NS 16

int cmd_uml_nvme(int argc, char **argv)
{
	struct vhost_cmd_opts o = { .cmd = "uml-nvme", .max_queues = NVMEEMU_PCI_MAX_IO_QUEUES,
				    .usage = uml_nvme_usage, .queues = 4 };
	const char *cmd = o.cmd, *sock;
	bool pidfile_written = false;
	struct spec *specs[UML_NVME_MAX_NS] = { NULL };
	struct disk *disks[UML_NVME_MAX_NS] = { NULL };
	struct uml_nvme_thread thr = { 0 };
	bool thr_started = false;
	struct uml_nvme u = { 0 };
	struct nvmeemu_subsys *subsys = NULL;
	struct vhostsrv *srv = NULL;
	struct reactor *r = NULL;
	unsigned nns = 0;
	sigset_t set, oldmask;
	char err[512];
	int ret;

	if ((ret = vhost_parse_opts(argc, argv, &o)) != VHOST_GO_ON)
		return ret;
	if (argc - optind < 2)
		return tool_usage_error(cmd, "wants SOCKET and at least one SPEC");
	if (argc - optind - 1 > UML_NVME_MAX_NS)
		return tool_usage_error(cmd, "at most %u namespaces", UML_NVME_MAX_NS);
	sock = argv[optind];
	nns = (unsigned)(argc - optind - 1);
	for (unsigned i = 0; i < nns; i++)
		if ((ret = tool_parse_spec(cmd, "SPEC", argv[optind + 1 + i], &specs[i])) != 0)
			goto out_specs;

	if ((ret = vhost_begin(cmd, &set, &oldmask, &r)) != 0)
		goto out;
	for (unsigned i = 0; i < nns; i++)
		if ((ret = tool_open_spec(cmd, "SPEC", specs[i], o.read_only, &disks[i])) != 0)
			goto out;
	if ((ret = uml_nvme_thread_start(&thr)) < 0) {
		ret = tool_error(cmd, "cannot start the queue thread: %s", strerror(-ret));
		goto out;
	}
	thr_started = true;
	{
		struct virtpci_opts po = { .name = cmd, .ops = &uml_nvme_ops, .dev = &u };
		struct nvmeemu_subsys_opts so = { 0 };
		struct nvmeemu_pci_host h = {
			.mem_read = uml_nvme_mem_read,
			.mem_write = uml_nvme_mem_write,
			.mem_map = uml_nvme_mem_map,
			.msi = uml_nvme_msi,
			.opaque = &u,
		};
		struct nvmeemu_pci_opts fo = {
			.max_io_queues = (uint16_t)o.queues,
			.reactors = &thr.r,
			.nr_reactors = 1,
		};

		if ((ret = virtpci_new(&po, &u.vp)) < 0) {
			ret = tool_error(cmd, "cannot create virt-pci: %s", strerror(-ret));
			goto out;
		}
		/* Identify VID = the function's default PCI vendor (1414h, nvme_pci.h). */
		nvmeemu_pci_subsys_opts(&so, 0x1414);
		if ((ret = nvmeemu_subsys_new(&so, &subsys, err, sizeof(err))) < 0) {
			ret = tool_error(cmd, "%s", err);
			goto out;
		}
		for (unsigned i = 0; i < nns; i++)
			if ((ret = nvmeemu_subsys_add_ns(subsys, i + 1, disks[i], err, sizeof(err))) < 0) {
				ret = tool_error(cmd, "namespace %u: %s", i + 1, err);
				goto out;
			}
		if ((ret = nvmeemu_pci_new(subsys, &h, &fo, &u.fn, err, sizeof(err))) < 0) {
			ret = tool_error(cmd, "%s", err);
			goto out;
		}
		if ((ret = virtpci_server_new(u.vp, &srv)) < 0) {
			ret = tool_error(cmd, "cannot create the server: %s", strerror(-ret));
			goto out;
		}
	}
	log_info("%s: serving %u namespace%s on %s (virt-pci device id %u)", cmd, nns,
		 nns > 1 ? "s" : "", sock, VIRTPCI_DEVICE_ID);
	ret = vhost_serve(cmd, srv, sock, o.pidfile, &pidfile_written, &set);
out:
	/* No more config or BAR accesses; the function goes while its
	 * reactor still runs (it may finish there), then the reactor. */
	vhostsrv_free(srv);
	nvmeemu_pci_free(u.fn);
	if (thr_started)
		uml_nvme_thread_stop(&thr);
	nvmeemu_subsys_free(subsys);
	virtpci_free(u.vp);
	for (unsigned i = 0; i < nns; i++) {
		if (disks[i] && !o.read_only && disk_sync_flush(disks[i]) != DISK_OK)
			ret = tool_error(cmd, "flushing namespace %u failed", i + 1);
		disk_unref(disks[i]);
	}
	vhost_finish(r, o.pidfile, pidfile_written, &oldmask);
out_specs:
	for (unsigned i = 0; i < nns; i++)
		spec_free(specs[i]);
	return ret;
}
