/* SPDX-License-Identifier: MIT */
/*
 * cmd-ublk.c: `diskstack ublk add|list|del|recover` — serve a disk spec as
 * /dev/ublkbN through the kernel's ublk driver (ublk/ubsrv.h).
 *
 * Notes on the design
 * -------------------
 * - add and recover run the server in this process: the main thread is the
 *   control thread, and ublk/ starts one reactor thread per queue. Signals
 *   (INT, TERM, HUP, QUIT) are blocked before any thread exists and read
 *   from a signalfd, so a signal at any point ends in the ordered teardown.
 * - --daemon forks before anything else is created (a fork between FETCH
 *   and START_DEV would break the kernel's daemon rule, and the reactor's
 *   ring belongs to its creator). The parent waits on a pipe until the
 *   child reports the device live ("ok <id>") or failed ("err <status>"):
 *   errors still reach the terminal, and a script that runs
 *   `diskstack ublk add --daemon` gets /dev/ublkbN on stdout only once the
 *   device works. The child then detaches stdout, and stderr unless it is a
 *   regular file (a pipe would keep a caller's $(...) waiting forever).
 * - The server runs in a private mount namespace (pitfall 6): it never
 *   holds a mount of the device it serves, so its exit can never wait on
 *   its own I/O.
 * - del asks a live diskstack server to stop (SIGTERM; it tears the device
 *   down itself) and waits for the device to go; a device without a live
 *   server (a crashed one, a leftover) is stopped and deleted directly.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/compiler.h"
#include "common/log.h"
#include "common/reactor.h"
#include "storage/disk.h"
#include "storage/spec.h"
#include "tools/tool.h"
#include "ublk/ubsrv.h"

#define UBLK_DEL_WAIT_MS 30000u

static void ublk_usage(FILE *fp)
{
	fprintf(fp,
		"Usage: diskstack ublk add SPEC [--id N] [--queues Q] [--depth D] [--max-io SIZE]\n"
		"                          [--ro] [--recoverable] [--copy auto|kernel|user]\n"
		"                          [--daemon] [--pidfile FILE]\n"
		"       diskstack ublk list [--json]\n"
		"       diskstack ublk del ID [--force]\n"
		"       diskstack ublk recover ID [SPEC] [--daemon] [--pidfile FILE]\n"
		"\n"
		"add serves SPEC as the block device /dev/ublkbN through the kernel's ublk\n"
		"driver (modprobe ublk_drv is tried when it is not loaded) until it gets\n"
		"SIGINT or SIGTERM or the device is deleted, then tears the device down.\n"
		"It prints the device path on stdout once the device is live.\n"
		"\n"
		"  --id N          device number (default: the kernel picks)\n"
		"  --queues Q      hardware queues, one server thread each (default %u;\n"
		"                  the kernel allows at most one per CPU)\n"
		"  --depth D       requests in flight per queue, 1-%u (default %u)\n"
		"  --max-io SIZE   largest request, a multiple of 4K from 4K to 32M (default 512K)\n"
		"  --ro            read-only device; the spec is opened read-only\n"
		"  --recoverable   the device survives its server: after a crash (or kill -9),\n"
		"                  I/O waits, and 'ublk recover' attaches a new server\n"
		"  --copy MODE     auto (default) or kernel: the kernel copies into per-request\n"
		"                  buffers; user: USER_COPY, pread/pwrite on /dev/ublkcN (6.5+)\n"
		"  --daemon        return once the device is live and serve in the background\n"
		"  --pidfile FILE  write the server's pid to FILE\n"
		"\n"
		"list shows every ublk device: id, state, size, queues, server pid and spec.\n"
		"del stops the server of device ID (or removes a device whose server is gone);\n"
		"it refuses a mounted device unless --force, and one that a `diskstack serve`\n"
		"made through its control socket (use `diskstack ctl ublk-del`).\n"
		"recover attaches a new server to a --recoverable device whose server died,\n"
		"without the block device disappearing; SPEC defaults to the one recorded\n"
		"when the device was added. Records live in /run/diskstack/ublk.\n"
		"\n"
		"Needs root (CAP_SYS_ADMIN). See docs/diskstack-ublk.md.\n",
		UBSRV_DEFAULT_QUEUES, UBSRV_MAX_QUEUE_DEPTH, UBSRV_DEFAULT_DEPTH);
}

/* ---- small helpers -------------------------------------------------------- */

/* True when @pid runs the diskstack binary (so SIGTERM means "tear down"). */
static bool ublk_pid_is_diskstack(int pid)
{
	char path[64], comm[64] = "";
	FILE *fp;

	snprintf(path, sizeof(path), "/proc/%d/comm", pid);
	fp = fopen(path, "re");
	if (!fp)
		return false;
	if (!fgets(comm, sizeof(comm), fp))
		comm[0] = '\0';
	fclose(fp);
	comm[strcspn(comm, "\n")] = '\0';
	return strncmp(comm, "diskstack", 9) == 0 || strncmp(comm, "ublk", 4) == 0;
}

/* Whether @pid runs `diskstack serve` (its argv[1]): a server of many
 * exports whose ublk devices come and go through its control socket. */
static bool ublk_pid_is_serve(int pid)
{
	char path[64], argv[256];
	size_t n, a0;
	FILE *fp;

	snprintf(path, sizeof(path), "/proc/%d/cmdline", pid);
	fp = fopen(path, "re");
	if (!fp)
		return false;
	n = fread(argv, 1, sizeof(argv) - 1, fp);
	fclose(fp);
	argv[n] = '\0';
	a0 = strlen(argv);
	return a0 + 1 < n && strcmp(argv + a0 + 1, "serve") == 0;
}

/* The mount point of /dev/ublkb@id in this mount namespace, or NULL. */
static char *ublk_mounted_at(uint32_t id)
{
	char dev[64], line[4096];
	struct stat st;
	char *where = NULL;
	FILE *fp;

	snprintf(dev, sizeof(dev), "/dev/ublkb%" PRIu32, id);
	if (stat(dev, &st) < 0 || !S_ISBLK(st.st_mode))
		return NULL;
	fp = fopen("/proc/self/mountinfo", "re");
	if (!fp)
		return NULL;
	while (fgets(line, sizeof(line), fp)) {
		unsigned maj, mnr;
		char mnt[4096];

		/* "36 35 98:0 / /mnt ..." */
		if (sscanf(line, "%*u %*u %u:%u %*s %4095s", &maj, &mnr, mnt) == 3 &&
		    maj == major(st.st_rdev) && mnr == minor(st.st_rdev)) {
			where = strdup(mnt);
			break;
		}
	}
	fclose(fp);
	return where;
}

static int ublk_write_pidfile(const char *path)
{
	char tmp[PATH_MAX];
	FILE *fp;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp%ld", path, (long)getpid()) >= (int)sizeof(tmp))
		return -ENAMETOOLONG;
	fp = fopen(tmp, "we");
	if (!fp)
		return -errno;
	fprintf(fp, "%ld\n", (long)getpid());
	if (fclose(fp) != 0 || rename(tmp, path) < 0) {
		int e = errno;

		unlink(tmp);
		return -e;
	}
	return 0;
}

/* ---- serving (add, recover) -------------------------------------------------- */

struct ublk_serve_args {
	const char *cmd;            /* "ublk add" / "ublk recover" */
	struct spec *spec;          /* parsed spec (owned by the caller) */
	const char *spec_text;
	const char *spec_cwd;       /* recover with the record's spec: its cwd, else NULL */
	struct ubsrv_opts opts;
	bool recover;
	uint32_t recover_id;
	bool daemon;
	char *pidfile;              /* absolute, owned by the caller */
};

/* Forks. The parent waits for the child's report and returns its exit
 * status (>= 0); the child returns -1 and gets the report pipe in *@fd. */
static int ublk_daemonize(const char *cmd, int *fd)
{
	int p[2];
	pid_t pid;
	char msg[64];
	size_t got = 0;
	unsigned long id;
	int status;

	if (pipe2(p, O_CLOEXEC) < 0)
		return tool_error(cmd, "pipe: %s", strerror(errno));
	fflush(stdout);
	fflush(stderr);
	pid = fork();
	if (pid < 0) {
		close(p[0]);
		close(p[1]);
		return tool_error(cmd, "fork: %s", strerror(errno));
	}
	if (pid == 0) {
		int null = open("/dev/null", O_RDONLY | O_CLOEXEC);

		close(p[0]);
		if (null >= 0) {
			dup2(null, STDIN_FILENO);
			close(null);
		}
		setsid();
		*fd = p[1];
		return -1;
	}
	close(p[1]);
	while (got < sizeof(msg) - 1) {
		ssize_t n = read(p[0], msg + got, sizeof(msg) - 1 - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	close(p[0]);
	msg[got] = '\0';
	if (sscanf(msg, "ok %lu", &id) == 1) {
		printf("/dev/ublkb%lu\n", id);
		fflush(stdout);
		return 0;
	}
	if (sscanf(msg, "err %d", &status) == 1)
		return status;
	/* The child died without a word. */
	if (waitpid(pid, &status, 0) == pid && WIFSIGNALED(status))
		return tool_error(cmd, "the server died (signal %d) before the device was live",
				  WTERMSIG(status));
	return tool_error(cmd, "the server exited before the device was live");
}

/* Sends "<word> <value>\n" to the waiting parent and closes the pipe. */
static void ublk_daemon_report(int fd, const char *word, int value)
{
	char msg[64];
	int n;

	if (fd < 0)
		return;
	n = snprintf(msg, sizeof(msg), "%s %d\n", word, value);
	if (n > 0 && write(fd, msg, (size_t)n) < 0)
		log_debug("ublk: cannot report to the parent: %s", strerror(errno));
	close(fd);
}

/* After the device is live: detach from the caller's stdout/stderr. */
static void ublk_daemon_detach(void)
{
	int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
	struct stat st;

	if (null < 0)
		return;
	dup2(null, STDOUT_FILENO);
	if (fstat(STDERR_FILENO, &st) < 0 || !S_ISREG(st.st_mode))
		dup2(null, STDERR_FILENO);
	close(null);
}

/* A private mount namespace (pitfall 6). Best effort. */
static void ublk_private_mounts(void)
{
	if (unshare(CLONE_NEWNS) < 0) {
		log_debug("ublk: unshare(CLONE_NEWNS): %s", strerror(errno));
		return;
	}
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		log_debug("ublk: making mounts private: %s", strerror(errno));
}

static int ublk_serve(struct ublk_serve_args *a)
{
	const char *cmd = a->cmd;
	char err[1024] = "";
	struct ubsrv_ctrl *ctrl = NULL;
	struct ubsrv_dev *dev = NULL;
	struct reactor *r = NULL;
	struct disk *d = NULL;
	struct ubsrv_record rec;
	sigset_t sigs;
	int report_fd = -1, sigfd = -1, status = EXIT_RUNTIME, ret;
	bool read_only = a->opts.read_only;
	char cwd[PATH_MAX];

	if (a->daemon) {
		ret = ublk_daemonize(cmd, &report_fd);
		if (ret >= 0)
			return ret;
	}

	/* Before any thread exists: the queue threads inherit the mask. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGHUP);
	sigaddset(&sigs, SIGQUIT);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);
	sigfd = signalfd(-1, &sigs, SFD_CLOEXEC);
	if (sigfd < 0) {
		tool_error(cmd, "signalfd: %s", strerror(errno));
		goto out;
	}
	ublk_private_mounts();

	ret = reactor_new(&r, 0);
	if (ret < 0) {
		tool_error(cmd, "cannot create an io_uring: %s", strerror(-ret));
		goto out;
	}
	ret = ubsrv_ctrl_open(&ctrl, err, sizeof(err));
	if (ret < 0) {
		tool_error(cmd, "%s", err);
		goto out;
	}
	if (a->recover) {
		struct ubsrv_params p;

		/* Serve read-only what the kernel shows read-only. */
		ret = ubsrv_ctrl_get_params(ctrl, a->recover_id, &p);
		if (ret < 0) {
			if (ret == -ENODEV)
				tool_error(cmd, "there is no ublk device %" PRIu32, a->recover_id);
			else
				tool_error(cmd, "GET_PARAMS of ublk%" PRIu32 ": %s", a->recover_id,
					   strerror(-ret));
			goto out;
		}
		read_only = (p.basic.attrs & UBSRV_ATTR_READ_ONLY) != 0;
	}
	if (a->spec_cwd && chdir(a->spec_cwd) < 0) {
		tool_error(cmd, "cannot change to the recorded directory %s: %s", a->spec_cwd,
			   strerror(errno));
		goto out;
	}
	ret = tool_open_spec(cmd, "SPEC", a->spec, read_only, &d);
	if (ret != 0) {
		status = ret;
		goto out;
	}
	if (a->recover)
		ret = ubsrv_dev_recover(ctrl, d, a->recover_id, &dev, err, sizeof(err));
	else
		ret = ubsrv_dev_add(ctrl, d, &a->opts, &dev, err, sizeof(err));
	if (ret < 0) {
		tool_error(cmd, "%s", err[0] ? err : strerror(-ret));
		status = ret == -EINVAL ? EXIT_USAGE : EXIT_RUNTIME;
		goto out;
	}

	const struct ubsrv_ctrl_dev_info *info = ubsrv_dev_info(dev);
	uint32_t id = ubsrv_dev_id(dev);

	memset(&rec, 0, sizeof(rec));
	rec.id = id;
	rec.pid = getpid();
	rec.spec = (char *)a->spec_text;
	rec.cwd = a->spec_cwd ? (char *)a->spec_cwd : getcwd(cwd, sizeof(cwd));
	rec.queues = info->nr_hw_queues;
	rec.depth = info->queue_depth;
	rec.max_io_bytes = info->max_io_buf_bytes;
	rec.flags = info->flags;
	rec.size_bytes = disk_sector_count(d) * disk_sector_size(d);
	rec.read_only = ubsrv_dev_read_only(dev);
	rec.user_copy = ubsrv_dev_user_copy(dev);
	ret = ubsrv_record_write(&rec);
	if (ret < 0)
		log_warn("ublk%" PRIu32 ": cannot write the device record in %s: %s", id,
			 ubsrv_record_dir(), strerror(-ret));
	if (a->pidfile) {
		ret = ublk_write_pidfile(a->pidfile);
		if (ret < 0)
			log_warn("ublk%" PRIu32 ": cannot write %s: %s", id, a->pidfile, strerror(-ret));
	}

	char flags[256], size[32];

	ubsrv_flags_str(info->flags, flags, sizeof(flags));
	tool_human_size(rec.size_bytes, size, sizeof(size));
	fprintf(stderr, "diskstack %s: /dev/ublkb%" PRIu32 " %s '%s' (%s%s; %u queue%s x %u, "
		"%u KiB max I/O, %s copy; flags %s; %s opcodes)\n", cmd, id,
		a->recover ? "recovered, serving" : "serves", a->spec_text, size,
		rec.read_only ? ", read-only" : "", rec.queues, rec.queues == 1 ? "" : "s",
		rec.depth, rec.max_io_bytes >> 10, rec.user_copy ? "user" : "kernel", flags,
		ubsrv_ctrl_encoded(ctrl) ? "ioctl-encoded" : "legacy");
	if (report_fd >= 0) {
		ublk_daemon_report(report_fd, "ok", (int)id);
		report_fd = -1;
		ublk_daemon_detach();
	} else {
		printf("/dev/ublkb%" PRIu32 "\n", id);
		fflush(stdout);
	}

	int sig = ubsrv_dev_serve(dev, sigfd);

	if (sig)
		log_debug("ublk%" PRIu32 ": %s: stopping", id, strsignal(sig));
	ret = ubsrv_dev_stop(dev);
	dev = NULL;
	ubsrv_record_remove(id);
	if (a->pidfile)
		unlink(a->pidfile);
	if (ret < 0)
		tool_error(cmd, "tearing down /dev/ublkb%" PRIu32 ": %s", id, strerror(-ret));
	status = ret < 0 ? EXIT_RUNTIME : 0;

out:
	if (report_fd >= 0)
		ublk_daemon_report(report_fd, "err", status);
	ubsrv_dev_stop(dev);
	disk_unref(d);
	ubsrv_ctrl_close(ctrl);
	reactor_free(r);
	if (sigfd >= 0)
		close(sigfd);
	return status;
}

/* ---- option parsing ------------------------------------------------------------ */

enum {
	OPT_ID = 256, OPT_QUEUES, OPT_DEPTH, OPT_MAX_IO, OPT_RO, OPT_RECOVERABLE, OPT_COPY,
	OPT_DAEMON, OPT_PIDFILE, OPT_JSON, OPT_FORCE,
};

static const struct option ublk_long_opts[] = {
	{ "id", required_argument, NULL, OPT_ID },
	{ "queues", required_argument, NULL, OPT_QUEUES },
	{ "depth", required_argument, NULL, OPT_DEPTH },
	{ "max-io", required_argument, NULL, OPT_MAX_IO },
	{ "ro", no_argument, NULL, OPT_RO },
	{ "recoverable", no_argument, NULL, OPT_RECOVERABLE },
	{ "copy", required_argument, NULL, OPT_COPY },
	{ "daemon", no_argument, NULL, OPT_DAEMON },
	{ "pidfile", required_argument, NULL, OPT_PIDFILE },
	{ "json", no_argument, NULL, OPT_JSON },
	{ "force", no_argument, NULL, OPT_FORCE },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

struct ublk_cli {
	struct ubsrv_opts opts;
	bool daemon, json, force;
	const char *pidfile;
	unsigned seen;            /* OPT_* bits given, for "not valid with" checks */
};

#define SEEN(o) (1u << ((o) - OPT_ID))

/* Parses options of subcommand @sub (argv[0] = sub). Positional arguments
 * end up in argv[optind..]. Returns 0 or an exit status. */
static int ublk_parse(const char *cmd, int argc, char **argv, struct ublk_cli *c)
{
	uint64_t v;
	int opt;

	memset(c, 0, sizeof(*c));
	c->opts.dev_id = -1;
	c->opts.queues = UBSRV_DEFAULT_QUEUES;
	c->opts.depth = UBSRV_DEFAULT_DEPTH;
	c->opts.max_io_bytes = UBSRV_DEFAULT_MAX_IO;
	c->opts.copy = UBSRV_COPY_AUTO;
	optind = 1;
	opterr = 0;
	while ((opt = getopt_long(argc, argv, ":h", ublk_long_opts, NULL)) != -1) {
		if (opt >= OPT_ID && opt <= OPT_FORCE)
			c->seen |= SEEN(opt);
		switch (opt) {
		case 'h':
			ublk_usage(stdout);
			return -1;
		case OPT_ID:
			if (tool_parse_uint(optarg, 0, (1u << 20) - 1, &v) < 0)
				return tool_usage_error(cmd, "--id must be a device number from 0 to %u, "
							"not '%s'", (1u << 20) - 1, optarg);
			c->opts.dev_id = (int64_t)v;
			break;
		case OPT_QUEUES:
			if (tool_parse_uint(optarg, 1, UBSRV_MAX_NR_QUEUES, &v) < 0)
				return tool_usage_error(cmd, "--queues must be from 1 to %u, not '%s'",
							UBSRV_MAX_NR_QUEUES, optarg);
			c->opts.queues = (unsigned)v;
			break;
		case OPT_DEPTH:
			if (tool_parse_uint(optarg, 1, UBSRV_MAX_QUEUE_DEPTH, &v) < 0)
				return tool_usage_error(cmd, "--depth must be from 1 to %u, not '%s'",
							UBSRV_MAX_QUEUE_DEPTH, optarg);
			c->opts.depth = (unsigned)v;
			break;
		case OPT_MAX_IO:
			if (tool_parse_size(optarg, &v) < 0 || v < UBSRV_MIN_MAX_IO ||
			    v > UBSRV_MAX_MAX_IO || v % 4096)
				return tool_usage_error(cmd, "--max-io must be a multiple of 4K from 4K to "
							"32M, not '%s'", optarg);
			c->opts.max_io_bytes = (uint32_t)v;
			break;
		case OPT_RO:
			c->opts.read_only = true;
			break;
		case OPT_RECOVERABLE:
			c->opts.recoverable = true;
			break;
		case OPT_COPY:
			if (strcmp(optarg, "auto") == 0)
				c->opts.copy = UBSRV_COPY_AUTO;
			else if (strcmp(optarg, "kernel") == 0)
				c->opts.copy = UBSRV_COPY_KERNEL;
			else if (strcmp(optarg, "user") == 0)
				c->opts.copy = UBSRV_COPY_USER;
			else
				return tool_usage_error(cmd, "--copy must be auto, kernel or user, not '%s'",
							optarg);
			break;
		case OPT_DAEMON:
			c->daemon = true;
			break;
		case OPT_PIDFILE:
			if (!*optarg)
				return tool_usage_error(cmd, "--pidfile needs a file name");
			c->pidfile = optarg;
			break;
		case OPT_JSON:
			c->json = true;
			break;
		case OPT_FORCE:
			c->force = true;
			break;
		default:
			return tool_bad_option(cmd, opt, argv);
		}
	}
	return 0;
}

/* Refuses options outside @allowed. */
static int ublk_only(const char *cmd, const struct ublk_cli *c, unsigned allowed)
{
	static const char *const names[] = {
		"--id", "--queues", "--depth", "--max-io", "--ro", "--recoverable", "--copy",
		"--daemon", "--pidfile", "--json", "--force",
	};

	for (unsigned i = 0; i < ARRAY_SIZE(names); i++)
		if ((c->seen & ~allowed) & (1u << i))
			return tool_usage_error(cmd, "%s is not an option of '%s'", names[i], cmd);
	return 0;
}

static int ublk_parse_id(const char *cmd, const char *s, uint32_t *id)
{
	uint64_t v;

	if (tool_parse_uint(s, 0, UINT32_MAX, &v) < 0)
		return tool_usage_error(cmd, "bad device ID '%s' (a number, as in /dev/ublkb<ID>)", s);
	*id = (uint32_t)v;
	return 0;
}

static char *ublk_abs_path(const char *path)
{
	char cwd[PATH_MAX], *out;

	if (path[0] == '/')
		return strdup(path);
	if (!getcwd(cwd, sizeof(cwd)))
		return NULL;
	if (asprintf(&out, "%s/%s", cwd, path) < 0)
		return NULL;
	return out;
}

static int ublk_cmd_add(int argc, char **argv)
{
	const char *cmd = "ublk add";
	struct ublk_serve_args a;
	struct ublk_cli c;
	int ret;

	ret = ublk_parse(cmd, argc, argv, &c);
	if (ret)
		return ret < 0 ? 0 : ret;
	ret = ublk_only(cmd, &c, SEEN(OPT_ID) | SEEN(OPT_QUEUES) | SEEN(OPT_DEPTH) | SEEN(OPT_MAX_IO) |
			SEEN(OPT_RO) | SEEN(OPT_RECOVERABLE) | SEEN(OPT_COPY) | SEEN(OPT_DAEMON) |
			SEEN(OPT_PIDFILE));
	if (ret)
		return ret;
	if (optind >= argc)
		return tool_usage_error(cmd, "missing SPEC");
	if (optind + 1 < argc)
		return tool_usage_error(cmd, "too many arguments ('%s')", argv[optind + 1]);

	memset(&a, 0, sizeof(a));
	a.cmd = cmd;
	a.spec_text = argv[optind];
	a.opts = c.opts;
	a.daemon = c.daemon;
	ret = tool_parse_spec(cmd, "SPEC", a.spec_text, &a.spec);
	if (ret)
		return ret;
	if (a.spec->ro)
		a.opts.read_only = true;
	if (c.pidfile && !(a.pidfile = ublk_abs_path(c.pidfile))) {
		spec_free(a.spec);
		return tool_error(cmd, "out of memory");
	}
	ret = ublk_serve(&a);
	spec_free(a.spec);
	free(a.pidfile);
	return ret;
}

static int ublk_cmd_recover(int argc, char **argv)
{
	const char *cmd = "ublk recover";
	struct ubsrv_record rec;
	struct ublk_serve_args a;
	struct ublk_cli c;
	bool have_rec;
	int ret;

	ret = ublk_parse(cmd, argc, argv, &c);
	if (ret)
		return ret < 0 ? 0 : ret;
	ret = ublk_only(cmd, &c, SEEN(OPT_DAEMON) | SEEN(OPT_PIDFILE));
	if (ret)
		return ret;
	if (optind >= argc)
		return tool_usage_error(cmd, "missing ID");
	if (optind + 2 < argc)
		return tool_usage_error(cmd, "too many arguments ('%s')", argv[optind + 2]);

	memset(&a, 0, sizeof(a));
	a.cmd = cmd;
	a.recover = true;
	a.daemon = c.daemon;
	ret = ublk_parse_id(cmd, argv[optind], &a.recover_id);
	if (ret)
		return ret;
	have_rec = ubsrv_record_read(a.recover_id, &rec) == 0;
	if (optind + 1 < argc) {
		a.spec_text = argv[optind + 1];
	} else if (have_rec) {
		a.spec_text = rec.spec;
		a.spec_cwd = rec.cwd;
	} else {
		return tool_usage_error(cmd, "missing SPEC (device %" PRIu32 " has no record in %s)",
					a.recover_id, ubsrv_record_dir());
	}
	ret = tool_parse_spec(cmd, "SPEC", a.spec_text, &a.spec);
	if (ret == 0 && c.pidfile && !(a.pidfile = ublk_abs_path(c.pidfile)))
		ret = tool_error(cmd, "out of memory");
	if (ret == 0)
		ret = ublk_serve(&a);
	spec_free(a.spec);
	free(a.pidfile);
	if (have_rec)
		ubsrv_record_clear(&rec);
	return ret;
}

/* ---- list ------------------------------------------------------------------------ */

static int ublk_add_id(uint32_t **ids, size_t *n, size_t *cap, uint32_t id)
{
	for (size_t i = 0; i < *n; i++)
		if ((*ids)[i] == id)
			return 0;
	if (*n == *cap) {
		size_t ncap = *cap ? *cap * 2 : 16;
		uint32_t *v = realloc(*ids, ncap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		*ids = v;
		*cap = ncap;
	}
	(*ids)[(*n)++] = id;
	return 0;
}

static int ublk_cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

/* Every device the kernel knows (/sys/class/ublk-char) plus every record. */
static int ublk_all_ids(uint32_t **out, size_t *n)
{
	uint32_t *ids = NULL;
	size_t cap = 0;
	int ret = ubsrv_record_ids(&ids, n);
	DIR *sys;

	if (ret < 0)
		return ret;
	cap = *n;
	sys = opendir("/sys/class/ublk-char");
	if (sys) {
		struct dirent *de;

		while ((de = readdir(sys)) != NULL) {
			unsigned long id;
			char *end;

			if (strncmp(de->d_name, "ublkc", 5) != 0)
				continue;
			errno = 0;
			id = strtoul(de->d_name + 5, &end, 10);
			if (end == de->d_name + 5 || *end || errno || id > UINT32_MAX)
				continue;
			if (ublk_add_id(&ids, n, &cap, (uint32_t)id) < 0) {
				closedir(sys);
				free(ids);
				return -ENOMEM;
			}
		}
		closedir(sys);
	}
	if (*n)
		qsort(ids, *n, sizeof(*ids), ublk_cmp_u32);
	*out = ids;
	return 0;
}

static int ublk_cmd_list(int argc, char **argv)
{
	const char *cmd = "ublk list";
	struct ubsrv_ctrl *ctrl = NULL;
	struct ublk_cli c;
	char err[1024] = "";
	uint32_t *ids = NULL;
	json_t *list = NULL;
	size_t n = 0;
	int ret;

	ret = ublk_parse(cmd, argc, argv, &c);
	if (ret)
		return ret < 0 ? 0 : ret;
	ret = ublk_only(cmd, &c, SEEN(OPT_JSON));
	if (ret)
		return ret;
	if (optind < argc)
		return tool_usage_error(cmd, "too many arguments ('%s')", argv[optind]);
	ret = ubsrv_ctrl_open(&ctrl, err, sizeof(err));
	if (ret < 0)
		return tool_error(cmd, "%s", err);
	ret = ublk_all_ids(&ids, &n);
	if (ret < 0) {
		ubsrv_ctrl_close(ctrl);
		return tool_error(cmd, "listing devices: %s", strerror(-ret));
	}

	if (c.json)
		list = json_array();
	else
		printf("%-4s %-9s %-10s %-6s %-5s %-5s %-14s %s\n", "ID", "STATE", "SIZE", "QUEUES",
		       "DEPTH", "COPY", "PID", "SPEC");
	for (size_t i = 0; i < n; i++) {
		struct ubsrv_ctrl_dev_info info;
		struct ubsrv_params p;
		struct ubsrv_record rec;
		bool have_rec = ubsrv_record_read(ids[i], &rec) == 0;
		const char *state;
		uint64_t size = have_rec ? rec.size_bytes : 0;
		int pid = have_rec ? rec.pid : -1;
		unsigned queues = have_rec ? rec.queues : 0, depth = have_rec ? rec.depth : 0;
		bool user_copy = have_rec && rec.user_copy;
		char sz[32], pidbuf[32];

		ret = ubsrv_ctrl_get_dev_info(ctrl, ids[i], &info);
		if (ret == -ENODEV) {
			state = "gone";          /* a record without a device */
		} else if (ret < 0) {
			state = "error";
		} else {
			state = ubsrv_state_str(info.state);
			queues = info.nr_hw_queues;
			depth = info.queue_depth;
			user_copy = (info.flags & UBSRV_F_USER_COPY) != 0;
			if (info.ublksrv_pid > 0)
				pid = info.ublksrv_pid;
			if (ubsrv_ctrl_get_params(ctrl, ids[i], &p) == 0 &&
			    (p.types & UBSRV_PARAM_TYPE_BASIC))
				size = p.basic.dev_sectors << 9;
		}
		tool_human_size(size, sz, sizeof(sz));
		/* "24 MiB" -> "24MiB": one field per column for scripts. */
		for (char *w = sz, *rd = sz;; rd++) {
			if (*rd != ' ')
				*w++ = *rd;
			if (!*rd)
				break;
		}
		if (pid > 0)
			snprintf(pidbuf, sizeof(pidbuf), "%d%s", pid, ubsrv_pid_alive(pid) ? "" : "(exited)");
		else
			snprintf(pidbuf, sizeof(pidbuf), "-");
		if (c.json) {
			char dev[32];

			snprintf(dev, sizeof(dev), "/dev/ublkb%" PRIu32, ids[i]);
			json_array_append_new(list, json_pack(
				"{s:I, s:s, s:s, s:I, s:i, s:i, s:s, s:i, s:b, s:o}",
				"id", (json_int_t)ids[i], "device", dev, "state", state,
				"size", (json_int_t)size, "queues", (int)queues, "depth", (int)depth,
				"copy", user_copy ? "user" : "kernel", "pid", pid,
				"server_alive", (int)ubsrv_pid_alive(pid),
				"spec", have_rec ? tool_json_str(rec.spec) : json_null()));
		} else {
			printf("%-4" PRIu32 " %-9s %-10s %-6u %-5u %-5s %-14s %s\n", ids[i], state, sz,
			       queues, depth, user_copy ? "user" : "kern", pidbuf,
			       have_rec ? rec.spec : "-");
		}
		if (have_rec)
			ubsrv_record_clear(&rec);
	}
	ret = 0;
	if (c.json) {
		/* One device per line, "key": value with spaces: scripts grep
		 * it (tests/vm/guest-ublk.sh). */
		size_t k;
		json_t *dev;

		if (!list)
			ret = tool_error(cmd, "out of memory");
		printf("[");
		json_array_foreach(list, k, dev) {
			char *line = json_dumps(dev, JSON_REAL_PRECISION(10));

			printf("%s\n  %s", k ? "," : "", line ? line : "null");
			free(line);
		}
		printf("%s]\n", json_array_size(list) ? "\n" : "");
		json_decref(list);
	}
	free(ids);
	ubsrv_ctrl_close(ctrl);
	return ret;
}

/* ---- del ---------------------------------------------------------------------------- */

static int ublk_cmd_del(int argc, char **argv)
{
	const char *cmd = "ublk del";
	struct ubsrv_ctrl *ctrl = NULL;
	struct ubsrv_ctrl_dev_info info;
	struct ubsrv_record rec;
	struct ublk_cli c;
	char err[1024] = "";
	bool have_rec;
	uint32_t id = 0;
	char *mnt;
	int ret, pid, status = EXIT_RUNTIME;

	ret = ublk_parse(cmd, argc, argv, &c);
	if (ret)
		return ret < 0 ? 0 : ret;
	ret = ublk_only(cmd, &c, SEEN(OPT_FORCE));
	if (ret)
		return ret;
	if (optind >= argc)
		return tool_usage_error(cmd, "missing ID");
	if (optind + 1 < argc)
		return tool_usage_error(cmd, "too many arguments ('%s')", argv[optind + 1]);
	ret = ublk_parse_id(cmd, argv[optind], &id);
	if (ret)
		return ret;

	ret = ubsrv_ctrl_open(&ctrl, err, sizeof(err));
	if (ret < 0)
		return tool_error(cmd, "%s", err);
	have_rec = ubsrv_record_read(id, &rec) == 0;
	ret = ubsrv_ctrl_get_dev_info(ctrl, id, &info);
	if (ret == -ENODEV) {
		if (have_rec)
			ubsrv_record_remove(id);
		tool_error(cmd, "there is no ublk device %" PRIu32 "%s", id,
			   have_rec ? " (removed its stale record)" : "");
		goto out;
	}
	if (ret < 0) {
		tool_error(cmd, "GET_DEV_INFO of ublk%" PRIu32 ": %s", id, strerror(-ret));
		goto out;
	}
	mnt = ublk_mounted_at(id);
	if (mnt && !c.force) {
		tool_error(cmd, "/dev/ublkb%" PRIu32 " is mounted on %s: unmount it first "
			   "(or use --force)", id, mnt);
		free(mnt);
		goto out;
	}
	free(mnt);

	pid = info.ublksrv_pid > 0 ? info.ublksrv_pid : have_rec ? rec.pid : -1;
	if (pid > 0 && !(have_rec && rec.pid == pid) && ubsrv_pid_alive(pid) &&
	    info.state != UBSRV_S_DEV_DEAD && ublk_pid_is_serve(pid)) {
		/* Made by ctl ublk-add: SIGTERM would stop every export of
		 * that server, not just this device. */
		tool_error(cmd, "ublk%" PRIu32 " is one device of `diskstack serve` (pid %d); remove it "
			   "with `diskstack ctl ublk-del id=%" PRIu32 "` on that server's control socket, "
			   "or stop the server", id, pid, id);
		goto out;
	}
	if (pid > 0 && ubsrv_pid_alive(pid) && ublk_pid_is_diskstack(pid) &&
	    info.state != UBSRV_S_DEV_DEAD) {
		/* Its server tears it down in order. */
		uint64_t deadline = reactor_now_ns() + (uint64_t)UBLK_DEL_WAIT_MS * 1000000u;

		if (kill(pid, SIGTERM) < 0 && errno != ESRCH) {
			tool_error(cmd, "cannot signal the server (pid %d): %s", pid, strerror(errno));
			goto out;
		}
		while (reactor_now_ns() < deadline) {
			ret = ubsrv_ctrl_get_dev_info(ctrl, id, &info);
			if (ret == -ENODEV || !ubsrv_pid_alive(pid))
				break;
			usleep(20000);
		}
		if (ret != -ENODEV && ubsrv_pid_alive(pid)) {
			tool_error(cmd, "the server of ublk%" PRIu32 " (pid %d) did not stop within %u s",
				   id, pid, UBLK_DEL_WAIT_MS / 1000);
			goto out;
		}
		/* The server may have gone without deleting (killed meanwhile). */
		for (int i = 0; i < 100 && ret != -ENODEV; i++) {
			ret = ubsrv_ctrl_get_dev_info(ctrl, id, &info);
			if (ret != -ENODEV)
				usleep(20000);
		}
	}
	if (ret != -ENODEV) {
		ret = ubsrv_ctrl_remove(ctrl, id);
		if (ret < 0 && ret != -ENODEV) {
			tool_error(cmd, "deleting ublk%" PRIu32 ": %s", id, strerror(-ret));
			goto out;
		}
	}
	ubsrv_record_remove(id);
	status = 0;
out:
	if (have_rec)
		ubsrv_record_clear(&rec);
	ubsrv_ctrl_close(ctrl);
	return status;
}

/* ---- dispatch ------------------------------------------------------------------------ */

int cmd_ublk(int argc, char **argv)
{
	static const struct {
		const char *name;
		int (*run)(int argc, char **argv);
	} subs[] = {
		{ "add", ublk_cmd_add },
		{ "list", ublk_cmd_list },
		{ "ls", ublk_cmd_list },
		{ "del", ublk_cmd_del },
		{ "delete", ublk_cmd_del },
		{ "recover", ublk_cmd_recover },
	};

	if (argc < 2) {
		fprintf(stderr, "diskstack ublk: missing subcommand (add, list, del or recover)\n");
		ublk_usage(stderr);
		return EXIT_USAGE;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
	    strcmp(argv[1], "help") == 0) {
		ublk_usage(stdout);
		return 0;
	}
	for (size_t i = 0; i < ARRAY_SIZE(subs); i++)
		if (strcmp(argv[1], subs[i].name) == 0)
			return subs[i].run(argc - 1, argv + 1);
	return tool_usage_error("ublk", "unknown subcommand '%s' (add, list, del or recover)",
				argv[1]);
}
