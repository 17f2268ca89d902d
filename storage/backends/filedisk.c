/* SPDX-License-Identifier: MIT */
/*
 * filedisk.c: the file and block-device backend on io_uring
 * (docs/openvmm-compat.md §4.5).
 *
 * Notes on the design
 * -------------------
 * - One backend for regular files and block devices. Everything it knows is
 *   decided at open and never changes: the fd(s), the geometry, whether
 *   unmap/write-zeroes can use fallocate, the direct-I/O alignment. The
 *   only mutable field is zero_range_ok, an atomic that drops to false the
 *   first time the filesystem answers EOPNOTSUPP to FALLOC_FL_ZERO_RANGE.
 *   So there is no lock: every reactor uses the same struct filedisk.
 * - Reads, writes, flushes, punch-hole unmaps and fallocate write-zeroes are
 *   io_uring SQEs on the submitting thread's ring (io->reactor), except the
 *   inline transfers below; the completion runs on that thread too, so a
 *   request never changes thread. Per-
 *   request state (struct filedisk_req) lives in io->hctx; bounce buffers
 *   and the worker-pool descriptor come from the per-reactor buffer cache.
 *   Nothing is allocated per request once the caches are warm.
 * - Range checks. Every op is checked against the current size before any
 *   I/O, so a write never extends a file and a write that straddles the end
 *   of a device is not half done (upstream checks only files). A file's size
 *   is fixed at open; a device's follows kernel uevents (storage/blockdev.c:
 *   an atomic count re-read when a resize event arrives). As a second line,
 *   for a request racing a shrink, a transfer that comes back short and
 *   ENOSPC from a device become ILLEGAL_BLOCK, as upstream, and so does a
 *   discard or zero-out the kernel refuses (EINVAL) because it now reaches
 *   past the device's end (BLKGETSIZE64 asked again on the worker).
 * - Geometry. Files: 512-byte sectors, physical = st_blksize (a power of
 *   two in [512, 64 KiB]), size fixed at open and a multiple of 512. Devices:
 *   sysfs /sys/dev/block/M:m/ (queue/ of the parent disk for a partition),
 *   with BLKSSZGET/BLKPBSZGET/BLKGETSIZE64 when sysfs does not answer.
 * - FUA: a write with DISK_IO_FUA always carries RWF_DSYNC. Only a device
 *   whose queue/fua is 1 reports FUA as respected; for every other disk the
 *   dispatcher turns a FUA write into write + flush before it gets here.
 * - Unmap. Files: FALLOC_FL_PUNCH_HOLE | KEEP_SIZE, offered only when the
 *   fd is writable and a probe punch of one byte at the end of the file (a
 *   no-op that still needs the filesystem's support) succeeds; behaviour
 *   ZEROES, granularity st_blksize. Devices: BLKDISCARD on the worker pool
 *   (it blocks), ENOTTY/EOPNOTSUPP/ENOSYS count as success, behaviour
 *   UNSPECIFIED. No granularity (or read-only) means IGNORED.
 * - Write-zeroes. Files: punch a hole when unmapping is allowed and
 *   supported, else FALLOC_FL_ZERO_RANGE | KEEP_SIZE; a filesystem without
 *   ZERO_RANGE (tmpfs) falls back to writing zeroes from a zeroed bounce
 *   buffer in 1 MiB steps, or fails UNSUPPORTED under DISK_IO_FAST_ZERO.
 *   Devices: BLKZEROOUT on the worker pool (never unmaps); FAST_ZERO only
 *   when the device advertises write_zeroes_max_bytes. FUA adds a datasync.
 * - O_DIRECT. A request with a segment whose address is not aligned to the
 *   direct-I/O memory alignment, or whose length is not a multiple of the
 *   offset alignment (statx STATX_DIOALIGN, else the logical sector size for
 *   both), or with more than IOV_MAX segments, is copied through one aligned
 *   bounce buffer (always_bounce forces that, for tests). Offsets of a
 *   device are always aligned (the sector is the logical block). A file on a
 *   filesystem whose direct-I/O offset alignment is larger than 512 (a 4Kn
 *   drive) gets a second, buffered fd for requests not aligned to it; the
 *   kernel keeps the page cache coherent with the direct fd (a direct read
 *   writes dirty pages back first, a direct write invalidates them), and
 *   fsync on either fd covers the inode.
 * - Inline transfers. io_uring hands a buffered write on a filesystem
 *   without async buffered-write support (tmpfs among them) to an io-wq
 *   worker, and hashes writes to one inode onto a single worker, so they
 *   run one at a time with a wake-up and a context switch each; newer
 *   kernels punt tmpfs reads as well (io_uring_queue_async_work fired for
 *   every 4 KiB write on 6.1, 6.12 and 6.18, and for every read on 6.12
 *   and 6.18, none on 6.1). The data of tmpfs and ramfs is page-
 *   cache memory that no device stands behind, so for buffered files there
 *   (fstatfs at open; rw_mode, or DISKSTACK_FILE_RW=uring|inline in the
 *   environment when rw_mode is AUTO, overrides) reads, writes and flushes are
 *   synchronous preadv2/pwritev2/fsync on the submitting thread, and the
 *   op returns its status at once (the dispatcher defers the completion,
 *   as for any immediate status). Same semantics as the ring: RWF_DSYNC
 *   for FUA, a short transfer continued until the kernel moves nothing
 *   more (io_uring retries short buffered transfers on regular files the
 *   same way) and then ILLEGAL_BLOCK, errors through filedisk_err_status.
 *   It saves the hand-off to an io-wq worker that io_uring makes for
 *   buffered tmpfs I/O (figures: docs/backend-file.md, "Files in memory").
 *   XXX: a tmpfs page that was swapped out blocks the reactor while it is
 *   read back; tmpfs used as a disk should not be swapping.
 * - Block status (files only): SEEK_DATA / SEEK_HOLE inline; holes are
 *   reported HOLE | ZERO. lseek on a regular file does not block on I/O.
 * - Crash consistency: acknowledged writes are in the page cache (or on the
 *   device for O_DIRECT) and durable after a FLUSH (fsync) or a FUA write.
 * - Expected workload: many reactors issuing 4 KiB–1 MiB requests; the
 *   common case is one SQE and one completion with no copying.
 * - Devices also get resize watching (DISK_CAP_RESIZE), persistent-
 *   reservation passthrough (DISK_CAP_PR, NVMe and SCSI devices that
 *   support it) and eject (DISK_CAP_EJECT, removable and CD-ROM devices);
 *   those live in storage/blockdev.c, which owns its design notes. Files
 *   have none of them.
 * - Pipe transfers (DISK_IO_PIPE, storage/disk.h): splice(2) between the
 *   file and the caller's pipe, for buffered files and devices only
 *   (DISK_CAP_PIPE is not offered with ';direct': a spliced write hands
 *   the kernel pipe pages at any offset, which direct I/O refuses). A
 *   read moves page-cache pages into the pipe by reference, a write
 *   copies the pipe's pages into the page cache once, inside the kernel:
 *   no pass over the data in this process. Inline files splice on the
 *   submitting thread like their reads and writes; others take an
 *   IORING_OP_SPLICE, which io_uring always runs on an io-wq worker. The
 *   pipe side never waits (SPLICE_F_NONBLOCK): a pipe with too little
 *   room for a read, or too few bytes for a write, fails the request
 *   (INVALID_INPUT) instead of waiting for a reader or writer that is the
 *   caller itself. A splice that comes back short is continued; one that
 *   moves nothing at the end of the file is ILLEGAL_BLOCK, as a short
 *   read. FUA: fdatasync after the last splice (the ring: an
 *   IORING_OP_FSYNC with DATASYNC).
 * - XXX: a single request is limited to MAX_RW_COUNT (2 GiB - 4 KiB), the
 *   most one read/write syscall transfers; larger ones fail INVALID_INPUT.
 *   Frontends never send more than a few MiB.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <limits.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <sys/uio.h>
#include <unistd.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <linux/magic.h>

#include "common/compiler.h"
#include "common/log.h"
#include "common/reactor.h"
#include "common/workpool.h"
#include "storage/backends/blockdev.h"
#include "storage/backends/filedisk.h"

/* The most one read or write transfers (Linux MAX_RW_COUNT). */
#define FILEDISK_MAX_IO_BYTES (INT_MAX & ~(size_t)4095)
/* Step of the write-zeroes fallback that writes real zeroes. */
#define FILEDISK_ZERO_CHUNK_BYTES ((size_t)1 << 20)
/* Largest physical sector size reported for a file (NFS reports 1 MiB). */
#define FILEDISK_MAX_FILE_PHYS 65536u

struct filedisk {
	int fd;                  /* O_DIRECT when @direct */
	int fd_buffered;         /* direct files with offset_align > 512: unaligned I/O; else -1 */
	char *path;              /* owned, for logs and describe */
	bool is_device;
	bool direct;
	bool always_bounce;
	bool inline_rw;          /* reads, writes, flushes: syscalls on the submitting thread */
	bool read_only;
	bool can_punch;          /* files: PUNCH_HOLE works (unmap behaviour ZEROES) */
	bool device_fast_zero;   /* devices: write_zeroes_max_bytes > 0 */
	atomic_bool zero_range_ok; /* files: ZERO_RANGE not yet refused */
	uint32_t shift;          /* log2(sector size) */
	uint32_t mem_align;      /* direct I/O: memory alignment (power of two) */
	uint32_t offset_align;   /* direct I/O: file offset/length alignment (power of two) */
	/* files: set at open, raised by filedisk_grow (devices: see @bdev) */
	_Atomic uint64_t sector_count;
	bool limited;            /* files: opts.limit_bytes was given (never grown) */
	dev_t rdev;              /* devices: major:minor */
	struct blockdev *bdev;   /* devices: live size, PR, eject (blockdev.c); else NULL */
	char *origin;            /* owned: disk_info.origin */
};

/* Per-request state, in io->hctx. */
struct filedisk_req {
	struct reactor_op op;    /* the SQE in flight */
	struct filedisk *fdisk;     /* the handling disk (io->disk may be a decorator above) */
	void *bounce;            /* reactor_buf_get(bounce_bytes()) buffer, or NULL */
	uint64_t pos;            /* write-zeroes: next byte offset; pipe: bytes moved */
	uint32_t stage;          /* write-zeroes: enum wz_stage; pipe: 1 = datasync in flight */
	int zero_mode;           /* write-zeroes: fallocate mode in flight */
};

_Static_assert(sizeof(struct filedisk_req) <= sizeof(((struct disk_io *)0)->hctx),
	       "filedisk_req must fit in disk_io.hctx");
_Static_assert(_Alignof(struct filedisk_req) <= _Alignof(uintptr_t),
	       "filedisk_req alignment");

enum wz_stage {
	WZ_FALLOCATE = 0,        /* fallocate in flight */
	WZ_WRITE,                /* writing zeroes from req->bounce */
	WZ_SYNC,                 /* FUA datasync in flight */
};

/* A blocking ioctl on the worker pool (BLKDISCARD, BLKZEROOUT). Taken from
 * the reactor's buffer cache. */
struct filedisk_work {
	struct work_item w;
	struct filedisk *fdisk;
	struct disk_io *io;
	int sysfd;               /* fdisk->fd */
	unsigned long request;   /* BLKDISCARD or BLKZEROOUT */
	uint64_t range[2];       /* byte offset, byte length */
	bool datasync;           /* fdatasync afterwards (FUA) */
	int err;                 /* out: 0 or errno */
};

static struct filedisk_req *req_of(struct disk_io *io)
{
	return (struct filedisk_req *)(void *)io->hctx;
}

static struct disk_io *io_of_req(struct filedisk_req *req)
{
	return container_of((uintptr_t *)(void *)req, struct disk_io, hctx);
}

static struct reactor *io_reactor(struct disk_io *io)
{
	return io->reactor ? io->reactor : reactor_current();
}

/* Byte offset just past the request. Representable: the dispatcher checked
 * that (sector + count) << shift <= INT64_MAX. */
static uint64_t req_end(const struct filedisk *fdisk, const struct disk_io *io)
{
	return (io->sector + io->count) << fdisk->shift;
}

/* Size of a request's bounce buffer: the whole transfer for reads and
 * writes, one step of zeroes for write-zeroes. */
static size_t bounce_bytes(const struct filedisk *fdisk, const struct disk_io *io)
{
	uint64_t len = io->count << fdisk->shift;

	if (io->op == DISK_OP_WRITE_ZEROES)
		return (size_t)MIN(len, (uint64_t)FILEDISK_ZERO_CHUNK_BYTES);
	return (size_t)len;
}

/* ---- error mapping ------------------------------------------------------ */

/* The status of @io after a failed syscall (@err > 0); sets io->os_errno
 * for an I/O error. Devices map EBADE and ENOSPC as upstream; everything
 * else is an I/O error. */
static int filedisk_err_status(struct filedisk *fdisk, struct disk_io *io, int err, uint64_t off,
			       uint64_t len)
{
	if (fdisk->is_device && err == EBADE)
		return DISK_RESERVATION_CONFLICT;
	if (fdisk->is_device && err == ENOSPC)
		return DISK_ILLEGAL_BLOCK;
	log_error("file %s: %s at byte %llu, %llu bytes: %s", fdisk->path, disk_op_str(io->op),
		  (unsigned long long)off, (unsigned long long)len, strerror(err));
	io->os_errno = err;
	return DISK_IO_ERROR;
}

/* Completes @io after a failed syscall (@err > 0). */
static void filedisk_fail(struct filedisk *fdisk, struct disk_io *io, int err, uint64_t off,
			  uint64_t len)
{
	disk_io_complete(io, filedisk_err_status(fdisk, io, err, off, len));
}

/* The current size: fixed for a file, live for a device. */
static uint64_t current_sector_count(const struct filedisk *fdisk)
{
	return fdisk->bdev ? blockdev_sector_count(fdisk->bdev)
			   : atomic_load_explicit(&fdisk->sector_count, memory_order_acquire);
}

/* ---- read / write ------------------------------------------------------- */

/* The fd for a transfer of @len bytes at @off: the direct fd unless its
 * offset alignment does not allow it. */
static int pick_fd(const struct filedisk *fdisk, uint64_t off, uint64_t len)
{
	if (fdisk->fd_buffered >= 0 && ((off | len) & (fdisk->offset_align - 1)))
		return fdisk->fd_buffered;
	return fdisk->fd;
}

/* Does a transfer on @sfd need the aligned bounce buffer? Direct I/O wants
 * every segment's address aligned to mem_align and its length to
 * offset_align (the kernel's dma_alignment and logical block size). */
static bool needs_bounce(const struct filedisk *fdisk, const struct disk_io *io, int sfd)
{
	uintptr_t mem_mask, len_mask;
	int i;

	if (fdisk->always_bounce || io->iovcnt > IOV_MAX)
		return true;
	if (!fdisk->direct || sfd == fdisk->fd_buffered)
		return false;
	mem_mask = fdisk->mem_align - 1;
	len_mask = fdisk->offset_align - 1;
	for (i = 0; i < io->iovcnt; i++) {
		if (((uintptr_t)io->iov[i].iov_base & mem_mask) || (io->iov[i].iov_len & len_mask))
			return true;
	}
	return false;
}

static void req_put_bounce(struct disk_io *io, struct filedisk_req *req)
{
	if (req->bounce) {
		reactor_buf_put(io_reactor(io), req->bounce, bounce_bytes(req->fdisk, io));
		req->bounce = NULL;
	}
}

/* The status of a read or write whose transfer returned @res (bytes or
 * -errno); copies a bounced read out and releases the bounce buffer. */
static int rw_status(struct disk_io *io, struct filedisk_req *req, int res)
{
	struct filedisk *fdisk = req->fdisk;
	uint64_t off = io->sector << fdisk->shift;
	uint64_t len = io->count << fdisk->shift;

	if (res < 0) {
		req_put_bounce(io, req);
		return filedisk_err_status(fdisk, io, -res, off, len);
	}
	if ((uint64_t)res != len) {
		/* Past the end of a device (or a file shrunk under us). */
		log_debug("file %s: short %s at byte %llu: %d of %llu bytes", fdisk->path,
			  disk_op_str(io->op), (unsigned long long)off, res,
			  (unsigned long long)len);
		req_put_bounce(io, req);
		return DISK_ILLEGAL_BLOCK;
	}
	if (io->op == DISK_OP_READ) {
		if (req->bounce) {
			reactor_mark_defined(req->bounce, len);
			iov_from_buf(io->iov, io->iovcnt, 0, req->bounce, len);
		} else {
			reactor_mark_iov_defined(io->iov, io->iovcnt, len);
		}
	}
	req_put_bounce(io, req);
	return DISK_OK;
}

static void filedisk_rw_done(struct reactor_op *op, int res)
{
	struct filedisk_req *req = container_of(op, struct filedisk_req, op);

	disk_io_complete(io_of_req(req), rw_status(io_of_req(req), req, res));
}

/* One synchronous transfer of @len bytes (the total of @iov) at byte @off:
 * the inline path. Returns the bytes moved or -errno, as the CQE of the
 * ring path would. A short transfer continues from where it stopped until
 * the kernel moves nothing more (the end of the file) or fails; a failure
 * after some progress returns the progress. */
static int rw_inline(int sfd, const struct iovec *iov, int iovcnt, uint64_t off, size_t len,
		     bool write, int flags)
{
	size_t done = 0;
	ssize_t n;

	while (done < len) {
		if (done == 0) {
			n = write ? pwritev2(sfd, iov, iovcnt, (off_t)off, flags)
				  : preadv2(sfd, iov, iovcnt, (off_t)off, flags);
		} else {
			/* Rare: go on with the rest of the segment holding
			 * byte @done, one segment per call. */
			size_t skip = done;
			struct iovec rest;
			int i = 0;

			while (skip >= iov[i].iov_len)
				skip -= iov[i++].iov_len;
			rest.iov_base = (char *)iov[i].iov_base + skip;
			rest.iov_len = iov[i].iov_len - skip;
			n = write ? pwritev2(sfd, &rest, 1, (off_t)(off + done), flags)
				  : preadv2(sfd, &rest, 1, (off_t)(off + done), flags);
		}
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (done == 0)
				return -errno;
			break;
		}
		if (n == 0)
			break;
		done += (size_t)n;
	}
	return (int)done;  /* <= FILEDISK_MAX_IO_BYTES */
}

static int filedisk_rw(struct disk *d, struct disk_io *io, bool write)
{
	struct filedisk *fdisk = disk_priv(d);
	struct filedisk_req *req = req_of(io);
	struct reactor *r = io_reactor(io);
	struct io_uring_sqe *sqe;
	uint64_t off, len;
	int sfd;

	/* The dispatcher checked the range and skipped empty requests
	 * (DISK_CHECK_RANGE, DISK_CHECK_EMPTY). */
	/* Representable (checked by the dispatcher), so no overflow here. */
	off = io->sector << fdisk->shift;
	len = io->count << fdisk->shift;
	if (len > FILEDISK_MAX_IO_BYTES) {
		log_error("file %s: %s of %llu bytes is larger than %zu", fdisk->path,
			  disk_op_str(io->op), (unsigned long long)len, FILEDISK_MAX_IO_BYTES);
		return DISK_INVALID_INPUT;
	}

	memset(req, 0, sizeof(*req));
	req->op.cb = filedisk_rw_done;
	req->fdisk = fdisk;
	sfd = pick_fd(fdisk, off, len);
	if (needs_bounce(fdisk, io, sfd)) {
		req->bounce = reactor_buf_get(r, len, false);
		if (!req->bounce) {
			io->os_errno = ENOMEM;
			return DISK_IO_ERROR;
		}
		if (write)
			iov_to_buf(io->iov, io->iovcnt, 0, req->bounce, len);
	}

	if (fdisk->inline_rw) {
		struct iovec one = { req->bounce, (size_t)len };
		int res;

		if (req->bounce)
			res = rw_inline(sfd, &one, 1, off, (size_t)len, write,
					write && (io->flags & DISK_IO_FUA) ? RWF_DSYNC : 0);
		else
			res = rw_inline(sfd, io->iov, io->iovcnt, off, (size_t)len, write,
					write && (io->flags & DISK_IO_FUA) ? RWF_DSYNC : 0);
		return rw_status(io, req, res);
	}

	sqe = reactor_get_sqe(r);
	if (req->bounce || io->iovcnt == 1) {
		void *buf = req->bounce ? req->bounce : io->iov[0].iov_base;

		if (write)
			io_uring_prep_write(sqe, sfd, buf, (unsigned)len, off);
		else
			io_uring_prep_read(sqe, sfd, buf, (unsigned)len, off);
	} else {
		if (write)
			io_uring_prep_writev(sqe, sfd, io->iov, (unsigned)io->iovcnt, off);
		else
			io_uring_prep_readv(sqe, sfd, io->iov, (unsigned)io->iovcnt, off);
	}
	if (write && (io->flags & DISK_IO_FUA))
		sqe->rw_flags = RWF_DSYNC;
	reactor_sqe_set_op(sqe, &req->op);
	return DISK_PENDING;
}

/* ---- pipe transfers (DISK_IO_PIPE) --------------------------------------- */

static void filedisk_finish(struct filedisk *fdisk, struct disk_io *io, int res, uint64_t off,
			    uint64_t len);

/* The status of a pipe transfer whose last splice returned @res (bytes or
 * -errno) with @done bytes moved before it: DISK_PENDING to go on. */
static int pipe_step_status(struct filedisk *fdisk, struct disk_io *io, uint64_t done, int res)
{
	uint64_t off = io->sector << fdisk->shift, len = io->count << fdisk->shift;

	if (res == -EAGAIN) {
		/* The pipe was full (read) or empty (write): the caller's
		 * pipe does not fit the request (storage/disk.h). */
		log_error("file %s: pipe %s at byte %llu: the pipe %s after %llu of %llu bytes",
			  fdisk->path, disk_op_str(io->op), (unsigned long long)off,
			  io->op == DISK_OP_READ ? "is full" : "ran dry", (unsigned long long)done,
			  (unsigned long long)len);
		return DISK_INVALID_INPUT;
	}
	if (res < 0)
		return filedisk_err_status(fdisk, io, -res, off + done, len - done);
	if (res == 0) {
		log_debug("file %s: short pipe %s at byte %llu: %llu of %llu bytes", fdisk->path,
			  disk_op_str(io->op), (unsigned long long)off, (unsigned long long)done,
			  (unsigned long long)len);
		return DISK_ILLEGAL_BLOCK;
	}
	return done + (uint64_t)res < len ? DISK_PENDING : DISK_OK;
}

/* Queues the splice of the rest of @io (or its FUA datasync). */
static void pipe_submit(struct filedisk *fdisk, struct disk_io *io, struct filedisk_req *req)
{
	struct io_uring_sqe *sqe = reactor_get_sqe(io_reactor(io));
	uint64_t off = (io->sector << fdisk->shift) + req->pos;
	unsigned left = (unsigned)((io->count << fdisk->shift) - req->pos);

	if (req->stage)
		io_uring_prep_fsync(sqe, fdisk->fd, IORING_FSYNC_DATASYNC);
	else if (io->op == DISK_OP_READ)
		io_uring_prep_splice(sqe, fdisk->fd, (int64_t)off, io->pipe_fd, -1, left,
				     SPLICE_F_NONBLOCK | SPLICE_F_MOVE);
	else
		io_uring_prep_splice(sqe, io->pipe_fd, -1, fdisk->fd, (int64_t)off, left,
				     SPLICE_F_NONBLOCK | SPLICE_F_MOVE);
	reactor_sqe_set_op(sqe, &req->op);
}

static void filedisk_pipe_done(struct reactor_op *op, int res)
{
	struct filedisk_req *req = container_of(op, struct filedisk_req, op);
	struct disk_io *io = io_of_req(req);
	struct filedisk *fdisk = req->fdisk;
	int st;

	if (req->stage) {
		filedisk_finish(fdisk, io, res, 0, 0);
		return;
	}
	st = pipe_step_status(fdisk, io, req->pos, res);
	if (st == DISK_PENDING || (st == DISK_OK && (io->flags & DISK_IO_FUA))) {
		req->pos += (uint64_t)res;
		req->stage = st == DISK_OK;
		pipe_submit(fdisk, io, req);
		return;
	}
	disk_io_complete(io, st);
}

static int filedisk_pipe(struct filedisk *fdisk, struct disk_io *io)
{
	struct filedisk_req *req = req_of(io);
	uint64_t off = io->sector << fdisk->shift, len = io->count << fdisk->shift;
	bool write = io->op == DISK_OP_WRITE;

	if (len > FILEDISK_MAX_IO_BYTES)
		return DISK_INVALID_INPUT;
	if (!fdisk->inline_rw) {
		memset(req, 0, sizeof(*req));
		req->op.cb = filedisk_pipe_done;
		req->fdisk = fdisk;
		pipe_submit(fdisk, io, req);
		return DISK_PENDING;
	}
	for (uint64_t done = 0;;) {
		loff_t pos = (loff_t)(off + done);
		ssize_t n = write ? splice(io->pipe_fd, NULL, fdisk->fd, &pos, len - done,
					   SPLICE_F_NONBLOCK | SPLICE_F_MOVE)
				  : splice(fdisk->fd, &pos, io->pipe_fd, NULL, len - done,
					   SPLICE_F_NONBLOCK | SPLICE_F_MOVE);
		int st;

		if (n < 0 && errno == EINTR)
			continue;
		st = pipe_step_status(fdisk, io, done, n < 0 ? -errno : (int)n);
		if (st != DISK_PENDING) {
			if (st == DISK_OK && write && (io->flags & DISK_IO_FUA) &&
			    fdatasync(fdisk->fd) < 0)
				return filedisk_err_status(fdisk, io, errno, 0, 0);
			return st;
		}
		done += (uint64_t)n;
	}
}

static int filedisk_read(struct disk *d, struct disk_io *io)
{
	if (io->flags & DISK_IO_PIPE)
		return filedisk_pipe(disk_priv(d), io);
	return filedisk_rw(d, io, false);
}

static int filedisk_write(struct disk *d, struct disk_io *io)
{
	if (io->flags & DISK_IO_PIPE)
		return filedisk_pipe(disk_priv(d), io);
	return filedisk_rw(d, io, true);
}

/* ---- flush -------------------------------------------------------------- */

/* Completes @io with the result @res of its one kernel operation; an
 * error is reported for the bytes [off, off + len) (0, 0: the whole file). */
static void filedisk_finish(struct filedisk *fdisk, struct disk_io *io, int res, uint64_t off,
			    uint64_t len)
{
	if (res < 0)
		filedisk_fail(fdisk, io, -res, off, len);
	else
		disk_io_complete(io, DISK_OK);
}

static void filedisk_flush_done(struct reactor_op *op, int res)
{
	struct filedisk_req *req = container_of(op, struct filedisk_req, op);

	filedisk_finish(req->fdisk, io_of_req(req), res, 0, 0);
}

static int filedisk_flush(struct disk *d, struct disk_io *io)
{
	struct filedisk *fdisk = disk_priv(d);
	struct filedisk_req *req = req_of(io);
	struct io_uring_sqe *sqe;

	if (fdisk->inline_rw) {
		/* The buffered fd shares the inode: one fsync covers both. */
		if (fsync(fdisk->fd) < 0)
			return filedisk_err_status(fdisk, io, errno, 0, 0);
		return DISK_OK;
	}
	memset(req, 0, sizeof(*req));
	req->op.cb = filedisk_flush_done;
	req->fdisk = fdisk;
	sqe = reactor_get_sqe(io_reactor(io));
	io_uring_prep_fsync(sqe, fdisk->fd, 0);
	reactor_sqe_set_op(sqe, &req->op);
	/* The buffered fd shares the inode: one fsync covers both. */
	return DISK_PENDING;
}

/* ---- worker-pool ioctls (devices) -------------------------------------- */

static void filedisk_work_run(struct work_item *w)
{
	struct filedisk_work *fw = container_of(w, struct filedisk_work, w);

	fw->err = 0;
	if (ioctl(fw->sysfd, fw->request, fw->range) < 0)
		fw->err = errno;
	if (fw->request == BLKDISCARD &&
	    (fw->err == ENOTTY || fw->err == EOPNOTSUPP || fw->err == ENOSYS))
		fw->err = 0;  /* the device cannot discard: a no-op, as upstream */
	if (fw->err == EINVAL) {
		/* The kernel refuses a range past the end: the device shrank
		 * after our range check. Say so as ENOSPC (ILLEGAL_BLOCK). */
		uint64_t bytes;

		if (ioctl(fw->sysfd, BLKGETSIZE64, &bytes) == 0 &&
		    fw->range[0] + fw->range[1] > bytes)
			fw->err = ENOSPC;
	}
	if (!fw->err && fw->datasync && fdatasync(fw->sysfd) < 0)
		fw->err = errno;
}

static void filedisk_work_done(struct work_item *w)
{
	struct filedisk_work *fw = container_of(w, struct filedisk_work, w);
	struct filedisk *fdisk = fw->fdisk;
	struct disk_io *io = fw->io;
	int err = fw->err;
	uint64_t off = fw->range[0], len = fw->range[1];

	reactor_buf_put(w->origin, fw, sizeof(*fw));
	if (err)
		filedisk_fail(fdisk, io, err, off, len);
	else
		disk_io_complete(io, DISK_OK);
}

static int filedisk_submit_work(struct filedisk *fdisk, struct disk_io *io, unsigned long request,
				bool datasync)
{
	struct workpool *pool = workpool_default();
	struct filedisk_work *fw;

	if (!pool) {
		io->os_errno = ENOMEM;
		return DISK_IO_ERROR;
	}
	fw = reactor_buf_get(io_reactor(io), sizeof(*fw), false);
	if (!fw) {
		io->os_errno = ENOMEM;
		return DISK_IO_ERROR;
	}
	memset(fw, 0, sizeof(*fw));
	fw->w.work = filedisk_work_run;
	fw->w.done = filedisk_work_done;
	fw->fdisk = fdisk;
	fw->io = io;
	fw->sysfd = fdisk->fd;
	fw->request = request;
	fw->range[0] = io->sector << fdisk->shift;
	fw->range[1] = io->count << fdisk->shift;
	fw->datasync = datasync;
	workpool_submit(pool, &fw->w);
	return DISK_PENDING;
}

/* ---- unmap -------------------------------------------------------------- */

static void filedisk_punch_done(struct reactor_op *op, int res)
{
	struct filedisk_req *req = container_of(op, struct filedisk_req, op);
	struct disk_io *io = io_of_req(req);
	struct filedisk *fdisk = req->fdisk;

	/* Every error propagates: the disk promised zeroes. */
	filedisk_finish(fdisk, io, res, io->sector << fdisk->shift, io->count << fdisk->shift);
}

static int filedisk_unmap(struct disk *d, struct disk_io *io)
{
	struct filedisk *fdisk = disk_priv(d);
	struct filedisk_req *req = req_of(io);
	struct io_uring_sqe *sqe;

	if (disk_get_info(d)->unmap_behavior == DISK_UNMAP_IGNORED)
		return DISK_OK;
	if (fdisk->is_device)
		return filedisk_submit_work(fdisk, io, BLKDISCARD, false);

	memset(req, 0, sizeof(*req));
	req->op.cb = filedisk_punch_done;
	req->fdisk = fdisk;
	sqe = reactor_get_sqe(io_reactor(io));
	io_uring_prep_fallocate(sqe, fdisk->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
				(off_t)(io->sector << fdisk->shift),
				(off_t)(io->count << fdisk->shift));
	reactor_sqe_set_op(sqe, &req->op);
	return DISK_PENDING;
}

/* ---- write-zeroes ------------------------------------------------------- */

static void filedisk_wz_step(struct reactor_op *op, int res);

/* Queues the next SQE of a file write-zeroes for req->stage. */
static void wz_queue(struct filedisk *fdisk, struct disk_io *io, struct filedisk_req *req)
{
	struct io_uring_sqe *sqe = reactor_get_sqe(io_reactor(io));
	uint64_t n;

	switch (req->stage) {
	case WZ_FALLOCATE:
		io_uring_prep_fallocate(sqe, fdisk->fd, req->zero_mode, (off_t)req->pos,
					(off_t)(req_end(fdisk, io) - req->pos));
		break;
	case WZ_WRITE:
		n = MIN(req_end(fdisk, io) - req->pos, (uint64_t)bounce_bytes(fdisk, io));
		io_uring_prep_write(sqe, pick_fd(fdisk, req->pos, n), req->bounce, (unsigned)n,
				    req->pos);
		break;
	case WZ_SYNC:
		io_uring_prep_fsync(sqe, fdisk->fd, IORING_FSYNC_DATASYNC);
		break;
	}
	req->op.cb = filedisk_wz_step;
	reactor_sqe_set_op(sqe, &req->op);
}

/* Switches a file write-zeroes to writing zeroes. Returns a final status, or
 * DISK_PENDING when the first write is queued. */
static int wz_start_writes(struct filedisk *fdisk, struct disk_io *io, struct filedisk_req *req)
{
	if (io->flags & DISK_IO_FAST_ZERO)
		return DISK_UNSUPPORTED;
	req->bounce = reactor_buf_get(io_reactor(io), bounce_bytes(fdisk, io), true);
	if (!req->bounce) {
		io->os_errno = ENOMEM;
		return DISK_IO_ERROR;
	}
	req->stage = WZ_WRITE;
	wz_queue(fdisk, io, req);
	return DISK_PENDING;
}

static void filedisk_wz_step(struct reactor_op *op, int res)
{
	struct filedisk_req *req = container_of(op, struct filedisk_req, op);
	struct disk_io *io = io_of_req(req);
	struct filedisk *fdisk = req->fdisk;
	uint64_t step;
	int status;

	switch (req->stage) {
	case WZ_FALLOCATE:
		if (res == -EOPNOTSUPP && (req->zero_mode & FALLOC_FL_ZERO_RANGE)) {
			/* No ZERO_RANGE on this filesystem: remember, write zeroes. */
			if (atomic_exchange(&fdisk->zero_range_ok, false))
				log_debug("file %s: no FALLOC_FL_ZERO_RANGE, writing zeroes",
					  fdisk->path);
			status = wz_start_writes(fdisk, io, req);
			if (status != DISK_PENDING)
				disk_io_complete(io, status);
			return;
		}
		if (res < 0)
			goto fail;
		break;
	case WZ_WRITE:
		if (res < 0)
			goto fail;
		step = MIN(req_end(fdisk, io) - req->pos, (uint64_t)bounce_bytes(fdisk, io));
		if ((uint64_t)res != step) {
			req_put_bounce(io, req);
			disk_io_complete(io, DISK_ILLEGAL_BLOCK);
			return;
		}
		req->pos += (uint64_t)res;
		if (req->pos < req_end(fdisk, io)) {
			wz_queue(fdisk, io, req);
			return;
		}
		req_put_bounce(io, req);
		break;
	case WZ_SYNC:
		if (res < 0)
			goto fail;
		disk_io_complete(io, DISK_OK);
		return;
	}
	/* The zeroes are in place. */
	if (io->flags & DISK_IO_FUA) {
		req->stage = WZ_SYNC;
		wz_queue(fdisk, io, req);
		return;
	}
	disk_io_complete(io, DISK_OK);
	return;

fail:
	req_put_bounce(io, req);
	filedisk_fail(fdisk, io, -res, io->sector << fdisk->shift, io->count << fdisk->shift);
}

static int filedisk_write_zeroes(struct disk *d, struct disk_io *io)
{
	struct filedisk *fdisk = disk_priv(d);
	struct filedisk_req *req = req_of(io);

	/* The dispatcher checked the range and skipped empty requests
	 * (DISK_CHECK_RANGE, DISK_CHECK_EMPTY). */
	if (fdisk->is_device) {
		if ((io->flags & DISK_IO_FAST_ZERO) && !fdisk->device_fast_zero)
			return DISK_UNSUPPORTED;
		return filedisk_submit_work(fdisk, io, BLKZEROOUT, io->flags & DISK_IO_FUA);
	}

	memset(req, 0, sizeof(*req));
	req->fdisk = fdisk;
	req->pos = io->sector << fdisk->shift;
	req->stage = WZ_FALLOCATE;
	if (!(io->flags & DISK_IO_NO_UNMAP) && fdisk->can_punch)
		req->zero_mode = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;
	else if (atomic_load(&fdisk->zero_range_ok))
		req->zero_mode = FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE;
	else
		return wz_start_writes(fdisk, io, req);
	wz_queue(fdisk, io, req);
	return DISK_PENDING;
}

/* ---- block status (files) ---------------------------------------------- */

/* Appends a run to the extent list, merging with the previous run of the
 * same kind. Returns false when the list is full. */
static bool bs_add(struct disk_io *io, uint64_t count, uint32_t flags)
{
	struct disk_extent *e = io->u.bs.extents;
	uint32_t nr = io->u.bs.nr;

	if (nr > 0 && e[nr - 1].flags == flags) {
		e[nr - 1].count += count;
		return true;
	}
	if (nr == io->u.bs.max)
		return false;
	e[nr].count = count;
	e[nr].flags = flags;
	e[nr].layer = -1;
	io->u.bs.nr = nr + 1;
	return true;
}

static int filedisk_block_status(struct disk *d, struct disk_io *io)
{
	struct filedisk *fdisk = disk_priv(d);
	uint64_t sec, end_sec, next;
	off_t data, hole;

	io->u.bs.nr = 0;
	sec = io->sector;
	end_sec = io->sector + io->count;
	while (sec < end_sec) {
		data = lseek(fdisk->fd, (off_t)(sec << fdisk->shift), SEEK_DATA);
		if (data < 0 && errno != ENXIO)
			goto fail;
		/* ENXIO: nothing but hole up to the end of the file. A data
		 * boundary inside a sector counts the sector as data. */
		next = data < 0 ? end_sec : MIN((uint64_t)data >> fdisk->shift, end_sec);
		if (next > sec) {
			if (!bs_add(io, next - sec, DISK_EXTENT_HOLE | DISK_EXTENT_ZERO))
				break;
			sec = next;
			continue;
		}
		hole = lseek(fdisk->fd, data, SEEK_HOLE);
		if (hole < 0)
			goto fail;
		next = MIN(DIV_ROUND_UP((uint64_t)hole, (uint64_t)1 << fdisk->shift), end_sec);
		if (next <= sec)
			next = sec + 1;  /* cannot happen: hole > data >= sec's start */
		if (!bs_add(io, next - sec, 0))
			break;
		sec = next;
	}
	return DISK_OK;

fail:
	io->os_errno = errno;
	log_error("file %s: block status at sector %llu: %s", fdisk->path,
		  (unsigned long long)sec, strerror(errno));
	return DISK_IO_ERROR;
}

/* ---- metadata, describe, close ----------------------------------------- */

static uint64_t filedisk_sector_count(struct disk *d)
{
	return current_sector_count(disk_priv(d));
}

/* ---- devices: resize watch, reservations, eject (storage/blockdev.c) --- */

static int filedisk_watch_resize(struct disk *d, struct disk_resize_watch *w)
{
	return blockdev_watch_resize(((struct filedisk *)disk_priv(d))->bdev, w);
}

static void filedisk_unwatch_resize(struct disk *d, struct disk_resize_watch *w)
{
	blockdev_unwatch_resize(((struct filedisk *)disk_priv(d))->bdev, w);
}

static int filedisk_pr(struct disk *d, struct disk_io *io)
{
	return blockdev_pr(((struct filedisk *)disk_priv(d))->bdev, io);
}

static int filedisk_eject(struct disk *d, struct disk_io *io)
{
	return blockdev_eject(((struct filedisk *)disk_priv(d))->bdev, io);
}

static void filedisk_describe(struct disk *d, struct disk_describer *dd)
{
	struct filedisk *fdisk = disk_priv(d);

	dd->param(dd, "path", fdisk->path);
	dd->param(dd, "kind", fdisk->is_device ? "block device" : "file");
	if (fdisk->is_device)
		disk_describe_paramf(dd, "device", "%u:%u", major(fdisk->rdev), minor(fdisk->rdev));
	dd->param(dd, "direct", fdisk->direct ? "yes" : "no");
	dd->param(dd, "rw", fdisk->inline_rw ? "inline" : "io_uring");
	if (fdisk->bdev)
		blockdev_describe(fdisk->bdev, dd);
}

static void filedisk_free(struct filedisk *fdisk)
{
	if (!fdisk)
		return;
	blockdev_close(fdisk->bdev);  /* uses fd: first */
	if (fdisk->fd >= 0)
		close(fdisk->fd);
	if (fdisk->fd_buffered >= 0)
		close(fdisk->fd_buffered);
	free(fdisk->path);
	free(fdisk->origin);
	free(fdisk);
}

/*
 * The origin of the file's data (disk_info.origin), from the stat of the
 * open fd: the canonical path, and for a file the validator an autocache
 * binds to: device, inode, size and mtime (any write through any path
 * changes the mtime; a file replaced by another, e.g. by cp, has another
 * inode or mtime). A block device has no such validator: its node's
 * times do not follow writes. Returns a new string or NULL (no memory).
 */
static char *filedisk_origin(const char *path, const struct stat *st)
{
	char *canon = realpath(path, NULL);
	const char *p = canon ? canon : path;
	char *s = NULL;
	int n;

	if (S_ISBLK(st->st_mode))
		n = asprintf(&s, "blockdev:%s;rdev=%u:%u", p, major(st->st_rdev),
			     minor(st->st_rdev));
	else
		n = asprintf(&s, "file:%s;dev=%u:%u;ino=%llu;size=%lld;mtime=%lld.%09ld", p,
			     major(st->st_dev), minor(st->st_dev), (unsigned long long)st->st_ino,
			     (long long)st->st_size, (long long)st->st_mtim.tv_sec,
			     st->st_mtim.tv_nsec);
	free(canon);
	return n < 0 ? NULL : s;
}

static void filedisk_close(struct disk *d)
{
	filedisk_free(disk_priv(d));
}

/* What regular files and block devices share; the dispatcher checks the
 * range and skips empty requests. */
#define FILEDISK_OPS_COMMON \
	.version = DISK_OPS_VERSION, \
	.sector_count = filedisk_sector_count, \
	.read = filedisk_read, \
	.write = filedisk_write, \
	.flush = filedisk_flush, \
	.unmap = filedisk_unmap, \
	.write_zeroes = filedisk_write_zeroes, \
	.describe = filedisk_describe, \
	.close = filedisk_close, \
	.checks = DISK_CHECK_RANGE | DISK_CHECK_EMPTY

static const struct disk_ops filedisk_file_ops = {
	FILEDISK_OPS_COMMON,
	.block_status = filedisk_block_status,
};

static const struct disk_ops filedisk_device_ops = {
	FILEDISK_OPS_COMMON,
	.eject = filedisk_eject,
	.pr = filedisk_pr,
	.watch_resize = filedisk_watch_resize,
	.unwatch_resize = filedisk_unwatch_resize,
};

/* ---- growing a file (the control socket's disk-resize) ------------------ */

bool filedisk_is_file(const struct disk *d)
{
	return d && disk_has_ops(d, &filedisk_file_ops);
}

int filedisk_grow(struct disk *d, uint64_t new_bytes)
{
	/* One grow at a time, so the count only ever rises. */
	static pthread_mutex_t grow_lock = PTHREAD_MUTEX_INITIALIZER;
	struct filedisk *fdisk;
	uint64_t cur;
	int ret = 0;

	if (!filedisk_is_file(d))
		return -ENOTTY;
	fdisk = disk_priv(d);
	if (fdisk->read_only)
		return -EROFS;
	if (fdisk->limited || new_bytes & ((1ull << fdisk->shift) - 1) ||
	    new_bytes > (uint64_t)INT64_MAX)
		return -EINVAL;
	pthread_mutex_lock(&grow_lock);
	cur = atomic_load(&fdisk->sector_count);
	if (new_bytes < cur << fdisk->shift) {
		ret = -EINVAL;
	} else if (new_bytes > cur << fdisk->shift) {
		/* The file first, then the count: a request that sees the new
		 * count finds the bytes there. */
		if (ftruncate(fdisk->fd, (off_t)new_bytes) < 0)
			ret = -errno;
		else
			atomic_store_explicit(&fdisk->sector_count, new_bytes >> fdisk->shift,
					      memory_order_release);
	}
	pthread_mutex_unlock(&grow_lock);
	if (ret == 0)
		log_info("file %s: grown to %llu bytes", fdisk->path, (unsigned long long)new_bytes);
	return ret;
}

/* ---- open --------------------------------------------------------------- */

/* Reads one unsigned number from sysfs file @dir/@name. */
static int sysfs_read_u64(const char *dir, const char *name, uint64_t *out)
{
	char path[PATH_MAX], buf[64], *end;
	CLEANUP_CLOSE int f = -1;
	ssize_t n;

	if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, name) >= sizeof(path))
		return -ENAMETOOLONG;
	f = open(path, O_RDONLY | O_CLOEXEC);
	if (f < 0)
		return -errno;
	n = read(f, buf, sizeof(buf) - 1);
	if (n < 0)
		return -errno;
	buf[n] = '\0';
	errno = 0;
	*out = strtoull(buf, &end, 10);
	if (errno || end == buf)
		return -EINVAL;
	return 0;
}

static uint32_t pow2_floor_u32(uint64_t x)
{
	return x ? (uint32_t)1 << ilog2_u64(MIN(x, (uint64_t)1 << 31)) : 0;
}

/* Geometry of a block device from sysfs, with the ioctls as fallback. */
static int device_geometry(struct filedisk *fdisk, struct disk_info *info, uint64_t *size_bytes,
			   uint32_t *granularity, char *err, size_t errlen)
{
	char dev[64], queue[96], probe[128];
	uint64_t v, logical = 0, physical = 0, sectors512;
	unsigned int ssz;
	int pbsz;

	snprintf(dev, sizeof(dev), "/sys/dev/block/%u:%u", major(fdisk->rdev), minor(fdisk->rdev));
	/* A partition has no queue/ of its own; it lives on the parent. */
	snprintf(probe, sizeof(probe), "%s/partition", dev);
	if (access(probe, F_OK) == 0)
		snprintf(queue, sizeof(queue), "%s/../queue", dev);
	else
		snprintf(queue, sizeof(queue), "%s/queue", dev);

	if (sysfs_read_u64(queue, "logical_block_size", &logical) < 0) {
		if (ioctl(fdisk->fd, BLKSSZGET, &ssz) < 0)
			return -errno;
		logical = ssz;
	}
	if (sysfs_read_u64(queue, "physical_block_size", &physical) < 0) {
		if (ioctl(fdisk->fd, BLKPBSZGET, &pbsz) < 0)
			return -errno;
		physical = (uint64_t)pbsz;
	}
	physical = MAX(physical, logical);
	if (sysfs_read_u64(dev, "size", &sectors512) == 0 &&
	    !MUL_OVERFLOW(sectors512, (uint64_t)512, size_bytes)) {
		/* ok */
	} else if (ioctl(fdisk->fd, BLKGETSIZE64, size_bytes) < 0) {
		return -errno;
	}
	if (sysfs_read_u64(queue, "discard_max_bytes", &v) == 0 && v == 0)
		*granularity = 0;  /* the device cannot discard at all */
	else if (sysfs_read_u64(queue, "discard_granularity", &v) == 0 && v <= UINT32_MAX)
		*granularity = (uint32_t)v;
	else
		*granularity = 0;
	info->fua_respected = sysfs_read_u64(queue, "fua", &v) == 0 && v != 0;
	fdisk->device_fast_zero = sysfs_read_u64(queue, "write_zeroes_max_bytes", &v) == 0 &&
				  v != 0;

	if (logical < 512 || logical > (1u << 31) || !IS_POW2(logical))
		return errbuf_printf(err, errlen,
				  "%s: logical block size %llu is not a power of two >= 512",
				  fdisk->path, (unsigned long long)logical);
	if (physical > (1u << 31) || !IS_POW2(physical))
		return errbuf_printf(err, errlen, "%s: physical block size %llu is not a power of two",
				  fdisk->path, (unsigned long long)physical);
	if (*size_bytes % logical)
		return errbuf_printf(err, errlen,
				  "%s: size %llu is not a multiple of the %llu-byte sector",
				  fdisk->path, (unsigned long long)*size_bytes,
				  (unsigned long long)logical);
	if (*granularity % logical)
		return errbuf_printf(err, errlen,
				  "%s: discard granularity %u is not a multiple of the %llu-byte "
				  "sector",
				  fdisk->path, *granularity, (unsigned long long)logical);
	info->sector_size = (uint32_t)logical;
	info->physical_sector_size = (uint32_t)physical;
	return 0;
}

/* Geometry of a regular file. */
static int file_geometry(struct filedisk *fdisk, const struct stat *st, struct disk_info *info,
			 uint64_t *size_bytes, uint32_t *granularity, char *err, size_t errlen)
{
	uint32_t phys;

	if (st->st_size % 512)
		return errbuf_printf(err, errlen,
				  "%s: file size %lld is not a multiple of 512 bytes",
				  fdisk->path, (long long)st->st_size);
	*size_bytes = (uint64_t)st->st_size;
	phys = pow2_floor_u32(st->st_blksize > 0 ? (uint64_t)st->st_blksize : 512);
	phys = MIN(MAX(phys, 512u), FILEDISK_MAX_FILE_PHYS);
	info->sector_size = 512;
	info->physical_sector_size = phys;
	info->fua_respected = false;

	/* Punching one byte past the end changes nothing but tells whether
	 * the filesystem supports it. */
	*granularity = 0;
	if (!fdisk->read_only &&
	    fallocate(fdisk->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, st->st_size, 1) == 0) {
		fdisk->can_punch = true;
		*granularity = phys;
	}
	return 0;
}

/* Direct-I/O alignment of @fdisk->fd, defaulting to the sector size. */
static void direct_alignment(struct filedisk *fdisk, uint32_t sector_size)
{
	fdisk->mem_align = sector_size;
	fdisk->offset_align = sector_size;
#ifdef STATX_DIOALIGN
	struct statx stx;

	if (statx(fdisk->fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &stx) == 0 &&
	    (stx.stx_mask & STATX_DIOALIGN) && stx.stx_dio_mem_align &&
	    IS_POW2(stx.stx_dio_mem_align) && stx.stx_dio_offset_align &&
	    IS_POW2(stx.stx_dio_offset_align)) {
		fdisk->mem_align = stx.stx_dio_mem_align;
		fdisk->offset_align = MAX(stx.stx_dio_offset_align, sector_size);
	}
#endif
}

/* Opens a second, buffered fd on the same file for requests the direct fd
 * cannot take. */
static int open_buffered(struct filedisk *fdisk, int flags)
{
	char proc[64];

	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fdisk->fd);
	fdisk->fd_buffered = open(proc, (flags & ~(O_DIRECT | O_CREAT | O_TRUNC | O_NONBLOCK)));
	return fdisk->fd_buffered < 0 ? -errno : 0;
}

int filedisk_open(const char *path, const struct filedisk_opts *opts, struct disk **out,
		  char *err, size_t errlen)
{
	struct filedisk *fdisk = NULL;
	struct disk_info info;
	struct stat st;
	uint64_t size_bytes = 0;
	uint32_t granularity = 0;
	enum filedisk_rw_mode rw_mode;
	const char *env;
	int flags, r, fl;

	*out = NULL;
	if (err && errlen)
		err[0] = '\0';
	if (opts->create) {
		if (opts->read_only) {
			r = errbuf_printf(err, errlen, "%s: create= cannot be combined with read-only",
				       path);
			goto fail;
		}
		if (opts->create_size == 0 || opts->create_size % 512 ||
		    opts->create_size > (uint64_t)INT64_MAX) {
			r = errbuf_printf(err, errlen,
				       "%s: create size %llu must be a non-zero multiple of 512",
				       path, (unsigned long long)opts->create_size);
			goto fail;
		}
	}

	fdisk = calloc(1, sizeof(*fdisk));
	if (!fdisk || !(fdisk->path = strdup(path))) {
		r = -ENOMEM;
		goto fail;
	}
	fdisk->fd = -1;
	fdisk->fd_buffered = -1;
	fdisk->read_only = opts->read_only;
	fdisk->direct = opts->direct;
	fdisk->always_bounce = opts->always_bounce;
	atomic_init(&fdisk->zero_range_ok, true);

	/* O_NONBLOCK so that a FIFO does not block the open; cleared below,
	 * because io_uring would turn it into -EAGAIN on regular files. */
	flags = O_CLOEXEC | O_NONBLOCK | (opts->read_only ? O_RDONLY : O_RDWR);
	if (opts->direct)
		flags |= O_DIRECT;
	if (opts->create)
		flags |= O_CREAT | O_TRUNC;
	fdisk->fd = open(path, flags, 0666);
	if (fdisk->fd < 0) {
		r = -errno;
		if (r == -EISDIR)
			r = errbuf_printf(err, errlen, "%s: not a regular file or block device", path);
		else if (r == -EINVAL && opts->direct && err && errlen)
			snprintf(err, errlen, "%s: direct I/O is not supported here", path);
		goto fail;
	}
	if (fstat(fdisk->fd, &st) < 0) {
		r = -errno;
		goto fail;
	}
	if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
		r = errbuf_printf(err, errlen, "%s: not a regular file or block device", path);
		goto fail;
	}
	fl = fcntl(fdisk->fd, F_GETFL);
	if (fl < 0 || fcntl(fdisk->fd, F_SETFL, fl & ~O_NONBLOCK) < 0) {
		r = -errno;
		goto fail;
	}
	fdisk->is_device = S_ISBLK(st.st_mode);
	fdisk->rdev = st.st_rdev;

	if (opts->create) {
		if (fdisk->is_device) {
			r = errbuf_printf(err, errlen, "%s: create= needs a regular file, not a "
				       "block device", path);
			goto fail;
		}
		if (ftruncate(fdisk->fd, (off_t)opts->create_size) < 0 ||
		    fstat(fdisk->fd, &st) < 0) {
			r = -errno;
			if (err && errlen)
				snprintf(err, errlen, "%s: cannot size to %llu bytes: %s", path,
					 (unsigned long long)opts->create_size, strerror(-r));
			goto fail;
		}
	}

	memset(&info, 0, sizeof(info));
	info.read_only = opts->read_only;
	fdisk->origin = filedisk_origin(path, &st);
	if (!fdisk->origin) {
		r = -ENOMEM;
		goto fail;
	}
	info.origin = fdisk->origin;
	if (fdisk->is_device) {
		info.type = "block_device";
		r = device_geometry(fdisk, &info, &size_bytes, &granularity, err, errlen);
		if (r == 0 && opts->read_only)
			granularity = 0;  /* a read-only fd cannot discard */
	} else {
		info.type = "file";
		r = file_geometry(fdisk, &st, &info, &size_bytes, &granularity, err, errlen);
	}
	if (r < 0)
		goto fail;
	if (opts->limit_bytes) {
		if (opts->limit_bytes % info.sector_size || opts->limit_bytes > size_bytes) {
			r = errbuf_printf(err, errlen, "%s: limit %llu is not a multiple of %u within "
				       "the %llu bytes of the file", path,
				       (unsigned long long)opts->limit_bytes, info.sector_size,
				       (unsigned long long)size_bytes);
			goto fail;
		}
		size_bytes = opts->limit_bytes;
		fdisk->limited = true;
	}
	fdisk->shift = ilog2_u64(info.sector_size);
	fdisk->sector_count = size_bytes >> fdisk->shift;

	if (granularity == 0) {
		info.unmap_behavior = DISK_UNMAP_IGNORED;
		info.optimal_unmap_sectors = 1;
	} else {
		info.unmap_behavior = fdisk->is_device ? DISK_UNMAP_UNSPECIFIED : DISK_UNMAP_ZEROES;
		info.optimal_unmap_sectors = MAX(granularity >> fdisk->shift, 1u);
	}
	info.caps = DISK_CAP_COHERENT | DISK_CAP_VOLATILE_CACHE | DISK_CAP_PERSISTENT;
	if (!opts->direct)
		info.caps |= DISK_CAP_PIPE;
	if (!fdisk->is_device) {
		info.caps |= DISK_CAP_BLOCK_STATUS;
		if (fdisk->can_punch)
			info.caps |= DISK_CAP_FAST_ZERO;
	} else if (fdisk->device_fast_zero) {
		info.caps |= DISK_CAP_FAST_ZERO;
	}
	if (fdisk->is_device) {
		r = blockdev_open(fdisk->fd, fdisk->rdev, path, fdisk->shift,
				  atomic_load(&fdisk->sector_count),
				  &fdisk->bdev);
		if (r < 0)
			goto fail;
		info.caps |= blockdev_caps(fdisk->bdev);
	}

	rw_mode = opts->rw_mode;
	if (rw_mode == FILEDISK_RW_AUTO && (env = getenv("DISKSTACK_FILE_RW")) && *env) {
		/* For benchmarks and diagnosis: both paths on the same file. */
		if (strcmp(env, "uring") == 0)
			rw_mode = FILEDISK_RW_URING;
		else if (strcmp(env, "inline") == 0)
			rw_mode = FILEDISK_RW_INLINE;
		else
			log_warn("DISKSTACK_FILE_RW=%s ignored: it takes uring or inline", env);
	}
	switch (rw_mode) {
	case FILEDISK_RW_INLINE:
		fdisk->inline_rw = true;
		break;
	case FILEDISK_RW_URING:
		break;
	case FILEDISK_RW_AUTO: {
		struct statfs sfs;

		fdisk->inline_rw = !fdisk->is_device && !opts->direct &&
				   fstatfs(fdisk->fd, &sfs) == 0 &&
				   (sfs.f_type == TMPFS_MAGIC || sfs.f_type == RAMFS_MAGIC);
		break;
	}
	}

	if (opts->direct) {
		direct_alignment(fdisk, info.sector_size);
		if (!fdisk->is_device && fdisk->offset_align > info.sector_size) {
			r = open_buffered(fdisk, flags);
			if (r < 0) {
				if (err && errlen)
					snprintf(err, errlen, "%s: reopen for unaligned I/O: %s",
						 path, strerror(-r));
				goto fail;
			}
		}
	}

	r = disk_new(fdisk->is_device ? &filedisk_device_ops : &filedisk_file_ops, &info, fdisk,
		     NULL, out);
	if (r < 0)
		goto fail;
	log_debug("file %s: %s, %llu sectors of %u (physical %u), unmap %s%s%s%s", path,
		  fdisk->is_device ? "block device" : "file",
		  (unsigned long long)atomic_load(&fdisk->sector_count),
		  info.sector_size, info.physical_sector_size,
		  granularity ? (fdisk->is_device ? "discard" : "punch hole") : "ignored",
		  opts->direct ? ", direct" : "", fdisk->fd_buffered >= 0 ? " (+buffered fd)" : "",
		  fdisk->inline_rw ? ", inline reads and writes" : "");
	if (opts->direct)
		log_debug("file %s: direct I/O alignment: memory %u, offset %u", path,
			  fdisk->mem_align, fdisk->offset_align);
	return 0;

fail:
	/* Every error gets a message; the specific ones were written above. */
	if (err && errlen && !err[0])
		snprintf(err, errlen, "%s: %s", path, strerror(-r));
	filedisk_free(fdisk);
	return r;
}
