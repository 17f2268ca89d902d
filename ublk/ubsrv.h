/* SPDX-License-Identifier: MIT */
/*
 * ubsrv.h: the ublk server — exposes a struct disk as /dev/ublkbN through
 * the kernel's ublk driver (Documentation/block/ublk.rst,
 * include/uapi/linux/ublk_cmd.h; docs/diskstack-ublk.md). Used by
 * `diskstack ublk`.
 *
 * Three parts:
 *   - the control channel (struct ubsrv_ctrl): /dev/ublk-control, kernel
 *     feature detection and the control commands;
 *   - the device (struct ubsrv_dev): one served /dev/ublkbN with its queue
 *     threads, created fresh (ubsrv_dev_add) or re-attached to a recoverable
 *     device whose server died (ubsrv_dev_recover);
 *   - device records under /run/diskstack/ublk/ (struct ubsrv_record), which
 *     `ublk list` and `ublk recover` read.
 * The pure helpers at the end (status table, parameters, descriptor
 * translation, opcodes) are what the data and control paths are built on;
 * they are exposed for the unit tests.
 *
 * Every function returning int returns 0 (or a count) or -errno; the ones
 * taking @err write a message for the user there (@errlen bytes).
 */
#ifndef DISKSTACK_UBLK_UBSRV_H
#define DISKSTACK_UBLK_UBSRV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "storage/disk.h"
#include "ublk/uapi.h"

/* Defaults and limits of the command line. */
#define UBSRV_DEFAULT_QUEUES 1u
#define UBSRV_DEFAULT_DEPTH 128u
#define UBSRV_DEFAULT_MAX_IO (512u << 10)
#define UBSRV_MIN_MAX_IO 4096u
#define UBSRV_MAX_MAX_IO (1u << UBSRV_IO_BUF_BITS)   /* 32 MiB: USER_COPY's per-request window */

/* How request data moves between the kernel and the server. */
enum ubsrv_copy_mode {
	UBSRV_COPY_AUTO = 0,    /* the default: kernel copy (the faster: docs/diskstack-ublk.md) */
	UBSRV_COPY_KERNEL,      /* the kernel copies into per-tag buffers (every kernel) */
	UBSRV_COPY_USER,        /* pread/pwrite on /dev/ublkcN (UBSRV_F_USER_COPY, 6.5+) */
};

/* ---- control channel ---------------------------------------------------- */

struct ubsrv_ctrl;

/*
 * Opens /dev/ublk-control ($DISKSTACK_UBLK_CONTROL overrides the path, and
 * then modprobe is not tried), runs `modprobe ublk_drv` first if the node
 * is missing, sets up the SQE128 control ring and detects the kernel's
 * features with GET_FEATURES: -ENODEV, -EOPNOTSUPP and -EINVAL mean an old
 * kernel (legacy opcodes, features unknown). Errors: -ENOENT (no driver),
 * -EACCES/-EPERM (not root), others from io_uring.
 */
int ubsrv_ctrl_open(struct ubsrv_ctrl **out, char *err, size_t errlen);
/* Closes the channel. NULL allowed. A channel with a command stuck in the
 * kernel (watchdog expired) is leaked on purpose: the kernel may still
 * write into it. */
void ubsrv_ctrl_close(struct ubsrv_ctrl *c);

/* True when control commands use the ioctl-encoded opcodes. */
bool ubsrv_ctrl_encoded(const struct ubsrv_ctrl *c);
/* The GET_FEATURES mask; *known (may be NULL) is false on old kernels. */
uint64_t ubsrv_ctrl_features(const struct ubsrv_ctrl *c, bool *known);

/* GET_DEV_INFO. -ENODEV when there is no device @id. */
int ubsrv_ctrl_get_dev_info(struct ubsrv_ctrl *c, uint32_t id, struct ubsrv_ctrl_dev_info *info);
/* GET_PARAMS (p->len is set here). */
int ubsrv_ctrl_get_params(struct ubsrv_ctrl *c, uint32_t id, struct ubsrv_params *p);
/* STOP_DEV then DEL_DEV (DEL_DEV_ASYNC where the kernel has it) for a
 * device no live server holds: a dead server's leftover, or one whose
 * server is gone for good. */
int ubsrv_ctrl_remove(struct ubsrv_ctrl *c, uint32_t id);

/* "dead", "live", "quiesced", "fail-io" or "unknown". */
const char *ubsrv_state_str(unsigned state);
/* Names of the UBSRV_F_* bits in @flags, joined by ','; "none" if empty. */
void ubsrv_flags_str(uint64_t flags, char *buf, size_t len);

/* ---- a served device ---------------------------------------------------- */

struct ubsrv_opts {
	int64_t dev_id;           /* -1: the kernel picks */
	unsigned queues;          /* 1..UBSRV_MAX_NR_QUEUES; the kernel clamps to the CPU count */
	unsigned depth;           /* 1..UBSRV_MAX_QUEUE_DEPTH */
	uint32_t max_io_bytes;    /* multiple of 4096, UBSRV_MIN_MAX_IO..UBSRV_MAX_MAX_IO */
	bool read_only;
	bool recoverable;         /* USER_RECOVERY | USER_RECOVERY_REISSUE */
	enum ubsrv_copy_mode copy;
};

struct ubsrv_dev;

/*
 * Creates /dev/ublkbN for @d (borrowed; it must outlive the device):
 * ADD_DEV with the flags negotiated from what the kernel hands back,
 * SET_PARAMS from @d's metadata, the queue threads (one reactor each, all
 * tags FETCHed), then START_DEV from this (non-queue) thread. On failure
 * everything created is torn down again. Signals should be blocked in the
 * calling thread (the queue threads inherit the mask).
 */
int ubsrv_dev_add(struct ubsrv_ctrl *c, struct disk *d, const struct ubsrv_opts *o,
		  struct ubsrv_dev **out, char *err, size_t errlen);

/*
 * Attaches a new server to recoverable device @id whose server died:
 * checks the state, flags and geometry, START_USER_RECOVERY (retried while
 * the dead server's files are still being released), queue threads,
 * END_USER_RECOVERY from this thread. @d must have the device's size and
 * sector size; it is served read-only if the device is.
 */
int ubsrv_dev_recover(struct ubsrv_ctrl *c, struct disk *d, uint32_t id,
		      struct ubsrv_dev **out, char *err, size_t errlen);

uint32_t ubsrv_dev_id(const struct ubsrv_dev *dev);
/* The negotiated device information (flags, queues, depth, max I/O). */
const struct ubsrv_ctrl_dev_info *ubsrv_dev_info(const struct ubsrv_dev *dev);
bool ubsrv_dev_user_copy(const struct ubsrv_dev *dev);
bool ubsrv_dev_read_only(const struct ubsrv_dev *dev);

/*
 * Serves until a signal arrives on @sigfd (a signalfd; its siginfo is read)
 * or the queues end on their own (the device was stopped from outside).
 * Returns the signal number, or 0 when the queues ended.
 */
int ubsrv_dev_serve(struct ubsrv_dev *dev, int sigfd);

/*
 * Tells the kernel the disk's current size (UPDATE_SIZE, include/uapi/
 * linux/ublk_cmd.h, Linux 6.16): the block device's capacity changes at
 * once, with a KOBJ_CHANGE uevent. For the thread that added the device
 * (the control channel is not thread-safe). -EOPNOTSUPP when the device
 * was not created with UBSRV_F_UPDATE_SIZE (older kernels): the guest
 * keeps the old size until the device is added again.
 */
int ubsrv_dev_update_size(struct ubsrv_dev *dev);

/*
 * Tears the device down: STOP_DEV, waits for the queue threads to drain
 * and exit, unmaps and closes /dev/ublkcN, DEL_DEV, flushes the disk, and
 * frees @dev. Returns 0 or the first error. NULL allowed.
 */
int ubsrv_dev_stop(struct ubsrv_dev *dev);

/* True when process @pid exists and has not exited (a zombie counts as
 * exited: nobody may have reaped a dead daemon yet). */
bool ubsrv_pid_alive(int pid);

/* ---- device records (/run/diskstack/ublk/<id>) -------------------------- */

struct ubsrv_record {
	uint32_t id;
	int pid;                  /* the serving process */
	char *spec;               /* owned */
	char *cwd;                /* owned; where relative paths in @spec resolve */
	unsigned queues, depth;
	uint32_t max_io_bytes;
	uint64_t flags;           /* negotiated UBSRV_F_* */
	uint64_t size_bytes;
	bool read_only;
	bool user_copy;
};

/* The records directory: $DISKSTACK_RUN_DIR/ublk, default /run/diskstack/ublk.
 * Static string. */
const char *ubsrv_record_dir(void);
/* Writes @r atomically (temporary file + rename), creating the directory. */
int ubsrv_record_write(const struct ubsrv_record *r);
/* Reads record @id into @r (strings owned by @r). -ENOENT if none, -EINVAL
 * if malformed. */
int ubsrv_record_read(uint32_t id, struct ubsrv_record *r);
/* Removes record @id; 0 if it did not exist. */
int ubsrv_record_remove(uint32_t id);
/* Frees @r's strings. */
void ubsrv_record_clear(struct ubsrv_record *r);
/* The ids that have a record, sorted; *ids is owned by the caller. */
int ubsrv_record_ids(uint32_t **ids, size_t *n);

/* ---- pure helpers (tested in tests/unit/test-ublk.c) --------------------- */

/*
 * The one table from a disk completion to the errno the kernel turns into a
 * block status (errno_to_blk_status): RESERVATION_CONFLICT -> -EBADE
 * (BLK_STS_NEXUS), MEDIUM_ERROR -> -ENODATA (BLK_STS_MEDIUM) or -EILSEQ for
 * protection-information errors (BLK_STS_PROTECTION), UNSUPPORTED ->
 * -EOPNOTSUPP, READ_ONLY -> -EROFS, ILLEGAL_BLOCK -> -EREMOTEIO
 * (BLK_STS_TARGET), IO_ERROR -> -ENOSPC/-ETIMEDOUT when @os_errno says so,
 * else -EIO. DISK_OK -> 0.
 */
int ubsrv_status_errno(int status, int os_errno, int medium);

/*
 * Fills @p (zeroed first) for a disk with @info and @sectors logical
 * sectors: block sizes, size, READ_ONLY, VOLATILE_CACHE + FUA when the disk
 * caches writes, max_sectors from @max_io_bytes, and the DISCARD type on
 * writable disks (discard only when unmap is not IGNORED; write-zeroes
 * always, emulated below when needed). -EINVAL (message in @err) for a
 * geometry ublk cannot express.
 */
int ubsrv_params_build(const struct disk_info *info, uint64_t sectors, bool read_only,
		       uint32_t max_io_bytes, struct ubsrv_params *p, char *err, size_t errlen);

/*
 * Translates an I/O descriptor into @io's op, flags, sector and count for a
 * disk with @sector_shift. iod->nr_sectors is the length, always (the
 * kernel may have shortened it). Returns the byte length of a READ/WRITE,
 * 0 for the other ops, or -errno to complete the request with: -EINVAL for
 * a descriptor that is misaligned or longer than @max_io_bytes,
 * -EOPNOTSUPP for an op we do not serve, the READ_ONLY errno for writes to
 * a read-only device.
 */
int ubsrv_iod_translate(const struct ubsrv_io_desc *iod, uint32_t sector_shift,
			uint32_t max_io_bytes, bool read_only, struct disk_io *io);

/*
 * All a queue does with a descriptor before it submits the request:
 * ubsrv_iod_translate, then for a READ or WRITE points @io at the first
 * bytes of @buf (the tag's buffer, @max_io_bytes long; borrowed) through
 * @iov. Returns as ubsrv_iod_translate; @io is ready for disk_submit when
 * the return is >= 0.
 */
int ubsrv_iod_prepare(const struct ubsrv_io_desc *iod, uint32_t sector_shift,
		      uint32_t max_io_bytes, bool read_only, uint8_t *buf, struct iovec *iov,
		      struct disk_io *io);

/* The result to commit for the finished request @io that prepare said was
 * @bytes long: @bytes for a READ/WRITE, 0 for the other ops, or the errno
 * of ubsrv_status_errno. */
int ubsrv_io_result(const struct disk_io *io, uint32_t bytes);

/* USER_COPY file offset of byte 0 of (@q_id, @tag). */
static inline uint64_t ubsrv_user_copy_offset(unsigned q_id, unsigned tag)
{
	return UBSRV_IO_BUF_OFFSET + ((uint64_t)q_id << UBSRV_QID_OFF) +
	       ((uint64_t)tag << UBSRV_TAG_OFF);
}

/* The opcode for control command @nr (legacy number, or its _IOR/_IOWR
 * encoding when @encoded). */
uint32_t ubsrv_ctrl_opcode(uint32_t nr, bool encoded);
/* The opcode for I/O command @nr. */
static inline uint32_t ubsrv_io_opcode(uint32_t nr, bool encoded)
{
	return encoded ? UBSRV_U_IO(nr) : nr;
}
/* "ADD_DEV", "START_DEV", ... for messages. */
const char *ubsrv_cmd_name(uint32_t nr);

#endif
