/* SPDX-License-Identifier: MIT */
/*
 * ubsrv-ctrl.c: the ublk control channel — /dev/ublk-control, the SQE128
 * control ring, kernel feature detection and the control commands
 * (include/uapi/linux/ublk_cmd.h; Documentation/block/ublk.rst "Control
 * plane").
 *
 * Notes on the design
 * -------------------
 * - One plain io_uring with IORING_SETUP_SQE128 (the control handler
 *   rejects anything else with -EINVAL); not a reactor, because control
 *   commands block in the kernel (START_DEV and END_USER_RECOVERY wait for
 *   the queues, DEL_DEV for the last reference) and the caller wants to
 *   wait for them. One command at a time.
 * - Watchdog: every command waits at most its timeout. A command that does
 *   not come back (pitfall 11: kernels that wedge in ADD_DEV) returns
 *   -ETIMEDOUT and marks the channel stuck: no further command is sent and
 *   the channel is never freed, because the kernel may still write into it.
 *   That is also why payloads go through the channel's own bounce buffer
 *   instead of the caller's memory.
 * - Feature detection: GET_FEATURES (encoded, dev_id -1). Success (6.5+)
 *   gives the mask and, with CMD_IOCTL_ENCODE in it, the encoded opcodes for
 *   every later command. -ENODEV (6.1 looks the device up before it looks
 *   at the opcode), -EOPNOTSUPP and -EINVAL mean an older kernel: legacy
 *   opcodes, features unknown (the ADD_DEV reply is then the only truth).
 * - A missing control node first gets `modprobe ublk_drv`; the node then
 *   appears at once on devtmpfs, or a little later through udev.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/compiler.h"
#include "common/log.h"
#include "ublk/ubsrv-internal.h"

#define UBSRV_CONTROL_PATH "/dev/ublk-control"
#define UBSRV_CTRL_BUF_BYTES 4096u

/* Timeouts of the watchdog. */
#define UBSRV_CTRL_TIMEOUT_MS 30000u
#define UBSRV_CTRL_LONG_TIMEOUT_MS 120000u

struct ubsrv_ctrl {
	int fd;
	struct io_uring ring;
	bool ring_ok;
	bool encoded;             /* control opcodes are ioctl-encoded */
	bool features_known;
	uint64_t features;
	bool stuck;               /* a command outlived its watchdog */
	/* Bounce buffer for payloads (the kernel reads/writes it). */
	uint8_t buf[UBSRV_CTRL_BUF_BYTES] __attribute__((aligned(64)));
};

/* ---- names and opcodes --------------------------------------------------- */

const char *ubsrv_cmd_name(uint32_t nr)
{
	switch (nr) {
	case UBSRV_CMD_GET_QUEUE_AFFINITY: return "GET_QUEUE_AFFINITY";
	case UBSRV_CMD_GET_DEV_INFO: return "GET_DEV_INFO";
	case UBSRV_CMD_ADD_DEV: return "ADD_DEV";
	case UBSRV_CMD_DEL_DEV: return "DEL_DEV";
	case UBSRV_CMD_START_DEV: return "START_DEV";
	case UBSRV_CMD_STOP_DEV: return "STOP_DEV";
	case UBSRV_CMD_SET_PARAMS: return "SET_PARAMS";
	case UBSRV_CMD_GET_PARAMS: return "GET_PARAMS";
	case UBSRV_CMD_START_USER_RECOVERY: return "START_USER_RECOVERY";
	case UBSRV_CMD_END_USER_RECOVERY: return "END_USER_RECOVERY";
	case UBSRV_CMD_GET_DEV_INFO2: return "GET_DEV_INFO2";
	case UBSRV_CMD_GET_FEATURES: return "GET_FEATURES";
	case UBSRV_CMD_DEL_DEV_ASYNC: return "DEL_DEV_ASYNC";
	case UBSRV_CMD_UPDATE_SIZE: return "UPDATE_SIZE";
	default: return "unknown command";
	}
}

uint32_t ubsrv_ctrl_opcode(uint32_t nr, bool encoded)
{
	if (!encoded)
		return nr;
	switch (nr) {
	case UBSRV_CMD_GET_QUEUE_AFFINITY:
	case UBSRV_CMD_GET_DEV_INFO:
	case UBSRV_CMD_GET_PARAMS:
	case UBSRV_CMD_GET_DEV_INFO2:
	case UBSRV_CMD_GET_FEATURES:
	case UBSRV_CMD_DEL_DEV_ASYNC:
		return UBSRV_U_CMD_IOR(nr);
	default:
		return UBSRV_U_CMD_IOWR(nr);
	}
}

const char *ubsrv_state_str(unsigned state)
{
	switch (state) {
	case UBSRV_S_DEV_DEAD: return "dead";
	case UBSRV_S_DEV_LIVE: return "live";
	case UBSRV_S_DEV_QUIESCED: return "quiesced";
	case UBSRV_S_DEV_FAIL_IO: return "fail-io";
	default: return "unknown";
	}
}

void ubsrv_flags_str(uint64_t flags, char *buf, size_t len)
{
	static const char *const names[] = {
		"zero-copy", "comp-in-task", "need-get-data", "recovery", "recovery-reissue",
		"unprivileged", "ioctl-encode", "user-copy", "zoned", "recovery-fail-io",
		"update-size", "auto-buf-reg", "quiesce", "per-io-daemon", "buf-reg-off-daemon",
		"batch-io", "integrity", "safe-stop", "no-auto-part-scan", "shmem-zc", "io-desc-size",
	};
	size_t used = 0;

	if (!len)
		return;
	buf[0] = '\0';
	for (unsigned b = 0; b < 64; b++) {
		char hex[24];
		const char *name;
		int n;

		if (!(flags & (1ull << b)))
			continue;
		if (b < ARRAY_SIZE(names)) {
			name = names[b];
		} else {
			snprintf(hex, sizeof(hex), "bit%u", b);
			name = hex;
		}
		n = snprintf(buf + used, len - used, "%s%s", used ? "," : "", name);
		if (n < 0 || (size_t)n >= len - used)
			return;
		used += (size_t)n;
	}
	if (!used)
		snprintf(buf, len, "none");
}

/* ---- commands ------------------------------------------------------------- */

/*
 * Sends control command @nr for device @dev_id and waits for it. @in (of
 * @in_len bytes, may be NULL) is copied into the bounce buffer, which is
 * passed with length @buf_len; on success the first @out_len bytes of it
 * are copied to @out. Returns cqe->res or -errno.
 */
static int ubsrv_ctrl_cmd(struct ubsrv_ctrl *c, uint32_t nr, uint32_t dev_id, uint64_t data0,
			  const void *in, size_t in_len, size_t buf_len, void *out, size_t out_len,
			  unsigned timeout_ms)
{
	struct ubsrv_ctrl_cmd cmd;
	struct io_uring_sqe *sqe;
	struct io_uring_cqe *cqe;
	uint64_t deadline, now;
	int ret;

	if (c->stuck)
		return -EIO;
	assert(in_len <= buf_len && out_len <= buf_len && buf_len <= sizeof(c->buf));
	memset(c->buf, 0, buf_len);
	if (in && in_len)
		memcpy(c->buf, in, in_len);

	sqe = io_uring_get_sqe(&c->ring);
	if (!sqe)
		return -EBUSY;
	/* SQE128: 64 bytes of SQE plus 64 more of command area. */
	memset(sqe, 0, 128);
	sqe->opcode = IORING_OP_URING_CMD;
	sqe->fd = c->fd;
	sqe->cmd_op = nr == UBSRV_CMD_GET_FEATURES || nr == UBSRV_CMD_DEL_DEV_ASYNC ||
		      nr == UBSRV_CMD_UPDATE_SIZE ?
		      ubsrv_ctrl_opcode(nr, true) : ubsrv_ctrl_opcode(nr, c->encoded);
	sqe->user_data = nr;
	memset(&cmd, 0, sizeof(cmd));
	cmd.dev_id = dev_id;
	cmd.queue_id = 0xffff;
	cmd.addr = buf_len ? (uint64_t)(uintptr_t)c->buf : 0;
	cmd.len = (uint16_t)buf_len;
	cmd.data[0] = data0;
	memcpy((uint8_t *)sqe + UBSRV_SQE_CMD_OFFSET, &cmd, sizeof(cmd));

	ret = io_uring_submit(&c->ring);
	if (ret != 1)
		return ret < 0 ? ret : -EIO;

	deadline = reactor_now_ns() + (uint64_t)timeout_ms * 1000000u;
	for (;;) {
		struct __kernel_timespec ts;

		now = reactor_now_ns();
		if (now >= deadline) {
			c->stuck = true;
			log_error("ublk: control command %s (device %u) did not complete within %u s; "
				  "the ublk driver may be wedged (see dmesg)",
				  ubsrv_cmd_name(nr), dev_id, timeout_ms / 1000);
			return -ETIMEDOUT;
		}
		ts.tv_sec = (long long)((deadline - now) / 1000000000u);
		ts.tv_nsec = (long long)((deadline - now) % 1000000000u);
		ret = io_uring_wait_cqe_timeout(&c->ring, &cqe, &ts);
		if (ret == 0)
			break;
		if (ret != -ETIME && ret != -EINTR && ret != -EAGAIN)
			return ret;
	}
	ret = cqe->res;
	io_uring_cqe_seen(&c->ring, cqe);
	if (ret >= 0 && out && out_len)
		memcpy(out, c->buf, out_len);
	log_debug("ublk: %s dev %u data %" PRIu64 " -> %d", ubsrv_cmd_name(nr), dev_id, data0, ret);
	return ret;
}

int ubsrv_ctrl_get_dev_info(struct ubsrv_ctrl *c, uint32_t id, struct ubsrv_ctrl_dev_info *info)
{
	return ubsrv_ctrl_cmd(c, UBSRV_CMD_GET_DEV_INFO, id, 0, NULL, 0, sizeof(*info),
			      info, sizeof(*info), UBSRV_CTRL_TIMEOUT_MS);
}

int ubsrv_ctrl_get_params(struct ubsrv_ctrl *c, uint32_t id, struct ubsrv_params *p)
{
	struct ubsrv_params in;

	memset(&in, 0, sizeof(in));
	in.len = sizeof(in);
	memset(p, 0, sizeof(*p));
	return ubsrv_ctrl_cmd(c, UBSRV_CMD_GET_PARAMS, id, 0, &in, sizeof(in), sizeof(in),
			      p, sizeof(*p), UBSRV_CTRL_TIMEOUT_MS);
}

int ubsrv_ctrl_add_dev(struct ubsrv_ctrl *c, struct ubsrv_ctrl_dev_info *info)
{
	return ubsrv_ctrl_cmd(c, UBSRV_CMD_ADD_DEV, info->dev_id, 0, info, sizeof(*info),
			      sizeof(*info), info, sizeof(*info), UBSRV_CTRL_TIMEOUT_MS);
}

int ubsrv_ctrl_set_params(struct ubsrv_ctrl *c, uint32_t id, const struct ubsrv_params *p)
{
	return ubsrv_ctrl_cmd(c, UBSRV_CMD_SET_PARAMS, id, 0, p, sizeof(*p), sizeof(*p), NULL, 0,
			      UBSRV_CTRL_TIMEOUT_MS);
}

int ubsrv_ctrl_start_dev(struct ubsrv_ctrl *c, uint32_t id, int pid)
{
	return ubsrv_ctrl_cmd(c, UBSRV_CMD_START_DEV, id, (uint64_t)pid, NULL, 0, 0, NULL, 0,
			      UBSRV_CTRL_LONG_TIMEOUT_MS);
}

int ubsrv_ctrl_stop_dev(struct ubsrv_ctrl *c, uint32_t id)
{
	return ubsrv_ctrl_cmd(c, UBSRV_CMD_STOP_DEV, id, 0, NULL, 0, 0, NULL, 0,
			      UBSRV_CTRL_LONG_TIMEOUT_MS);
}

int ubsrv_ctrl_del_dev(struct ubsrv_ctrl *c, uint32_t id)
{
	int ret;

	/* DEL_DEV waits for the last reference (uninterruptibly and under the
	 * driver's global mutex on 6.1); DEL_DEV_ASYNC (6.9) does not. Older
	 * kernels answer the unknown opcode with -EOPNOTSUPP (or -EINVAL). */
	if (c->features_known) {
		ret = ubsrv_ctrl_cmd(c, UBSRV_CMD_DEL_DEV_ASYNC, id, 0, NULL, 0, 0, NULL, 0,
				     UBSRV_CTRL_TIMEOUT_MS);
		if (ret != -EOPNOTSUPP && ret != -EINVAL)
			return ret;
	}
	return ubsrv_ctrl_cmd(c, UBSRV_CMD_DEL_DEV, id, 0, NULL, 0, 0, NULL, 0,
			      UBSRV_CTRL_LONG_TIMEOUT_MS);
}

int ubsrv_ctrl_start_recovery(struct ubsrv_ctrl *c, uint32_t id)
{
	return ubsrv_ctrl_cmd(c, UBSRV_CMD_START_USER_RECOVERY, id, 0, NULL, 0, 0, NULL, 0,
			      UBSRV_CTRL_TIMEOUT_MS);
}

int ubsrv_ctrl_end_recovery(struct ubsrv_ctrl *c, uint32_t id, int pid)
{
	return ubsrv_ctrl_cmd(c, UBSRV_CMD_END_USER_RECOVERY, id, (uint64_t)pid, NULL, 0, 0, NULL, 0,
			      UBSRV_CTRL_LONG_TIMEOUT_MS);
}

int ubsrv_ctrl_queue_affinity(struct ubsrv_ctrl *c, uint32_t id, unsigned q, cpu_set_t *set)
{
	/* The kernel wants a multiple of 8 bytes covering nr_cpu_ids bits. */
	size_t len = ROUND_UP(sizeof(*set), 8);

	CPU_ZERO(set);
	return ubsrv_ctrl_cmd(c, UBSRV_CMD_GET_QUEUE_AFFINITY, id, q, NULL, 0, len, set,
			      sizeof(*set), UBSRV_CTRL_TIMEOUT_MS);
}

int ubsrv_ctrl_update_size(struct ubsrv_ctrl *c, uint32_t id, uint64_t sectors)
{
	return ubsrv_ctrl_cmd(c, UBSRV_CMD_UPDATE_SIZE, id, sectors, NULL, 0, 0, NULL, 0,
			      UBSRV_CTRL_TIMEOUT_MS);
}

int ubsrv_ctrl_remove(struct ubsrv_ctrl *c, uint32_t id)
{
	int ret = ubsrv_ctrl_stop_dev(c, id);

	if (ret < 0 && ret != -ENODEV)
		log_warn("ublk: STOP_DEV of device %u: %s", id, strerror(-ret));
	ret = ubsrv_ctrl_del_dev(c, id);
	return ret;
}

bool ubsrv_ctrl_encoded(const struct ubsrv_ctrl *c)
{
	return c->encoded;
}

uint64_t ubsrv_ctrl_features(const struct ubsrv_ctrl *c, bool *known)
{
	if (known)
		*known = c->features_known;
	return c->features;
}

/* ---- opening ------------------------------------------------------------ */

/* Runs `modprobe ublk_drv` quietly. Returns its exit status, or -errno. */
static int ubsrv_modprobe(void)
{
	pid_t pid = fork();
	int status;

	if (pid < 0)
		return -errno;
	if (pid == 0) {
		int fd = open("/dev/null", O_RDWR | O_CLOEXEC);

		if (fd >= 0) {
			dup2(fd, 0);
			dup2(fd, 1);
			dup2(fd, 2);
		}
		execlp("modprobe", "modprobe", "ublk_drv", (char *)NULL);
		execl("/sbin/modprobe", "modprobe", "ublk_drv", (char *)NULL);
		_exit(127);
	}
	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR)
			return -errno;
	}
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static int ubsrv_open_node(const char *path)
{
	int fd = open(path, O_RDWR | O_CLOEXEC);

	return fd < 0 ? -errno : fd;
}

int ubsrv_ctrl_open(struct ubsrv_ctrl **out, char *err, size_t errlen)
{
	const char *env = getenv("DISKSTACK_UBLK_CONTROL");
	bool overridden = env && *env;
	const char *path = overridden ? env : UBSRV_CONTROL_PATH;
	struct ubsrv_ctrl *c;
	uint64_t features = 0;
	int fd, ret;

	fd = ubsrv_open_node(path);
	if (fd == -ENOENT && !overridden) {
		int st = ubsrv_modprobe();

		/* devtmpfs creates the node at once; udev may take a moment. */
		for (int i = 0; i < 50; i++) {
			fd = ubsrv_open_node(path);
			if (fd != -ENOENT)
				break;
			if (st != 0)
				break;
			usleep(20000);
		}
		if (fd == -ENOENT) {
			(void)errbuf_printf(err, errlen,
				            "the ublk driver is not available: %s does not exist and "
				            "'modprobe ublk_drv' %s. The kernel needs CONFIG_BLK_DEV_UBLK "
				            "(Debian bookworm's 6.1 kernel is built without it; "
				            "see docs/diskstack-ublk.md)",
				            path, st == 0 ? "did not create it" :
				            st == 127 ? "could not be run" : "failed");
			return -ENOENT;
		}
	}
	if (fd < 0) {
		if (fd == -EACCES || fd == -EPERM)
			(void)errbuf_printf(err, errlen, "cannot open %s: %s (ublk needs root: CAP_SYS_ADMIN)",
				            path, strerror(-fd));
		else if (fd == -ENOENT)
			(void)errbuf_printf(err, errlen, "the ublk driver is not available: %s does not exist",
				            path);
		else
			(void)errbuf_printf(err, errlen, "cannot open %s: %s", path, strerror(-fd));
		return fd;
	}

	c = calloc(1, sizeof(*c));
	if (!c) {
		close(fd);
		(void)errbuf_printf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	c->fd = fd;
	ret = io_uring_queue_init(4, &c->ring, IORING_SETUP_SQE128);
	if (ret < 0) {
		(void)errbuf_printf(err, errlen, "cannot create the ublk control ring (io_uring with SQE128): %s",
			            strerror(-ret));
		close(fd);
		free(c);
		return ret;
	}
	c->ring_ok = true;

	ret = ubsrv_ctrl_cmd(c, UBSRV_CMD_GET_FEATURES, UINT32_MAX, 0, NULL, 0, UBSRV_FEATURES_LEN,
			     &features, sizeof(features), UBSRV_CTRL_TIMEOUT_MS);
	if (ret == 0) {
		c->features_known = true;
		c->features = features;
		c->encoded = (features & UBSRV_F_CMD_IOCTL_ENCODE) != 0;
	} else if (ret == -ENODEV || ret == -EOPNOTSUPP || ret == -EINVAL) {
		/* Before 6.5: legacy opcodes, features learned from ADD_DEV. */
		c->features_known = false;
		c->encoded = false;
	} else {
		if (ret == -EPERM || ret == -EACCES)
			(void)errbuf_printf(err, errlen, "ublk control commands need root (CAP_SYS_ADMIN): %s",
				            strerror(-ret));
		else
			(void)errbuf_printf(err, errlen, "ublk GET_FEATURES failed: %s", strerror(-ret));
		ubsrv_ctrl_close(c);
		return ret;
	}
	log_debug("ublk: GET_FEATURES %d features 0x%" PRIx64 " -> %s opcodes", ret, features,
		  c->encoded ? "ioctl-encoded" : "legacy");
	*out = c;
	return 0;
}

void ubsrv_ctrl_close(struct ubsrv_ctrl *c)
{
	if (!c)
		return;
	if (c->stuck)
		return;        /* the kernel may still write into c->buf */
	if (c->ring_ok)
		io_uring_queue_exit(&c->ring);
	close(c->fd);
	free(c);
}
