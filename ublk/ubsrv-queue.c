/* SPDX-License-Identifier: MIT */
/*
 * ubsrv-queue.c: the ublk data path — one thread per hardware queue, each
 * running its own reactor (Documentation/block/ublk.rst "Data plane";
 * include/uapi/linux/ublk_cmd.h).
 *
 * Notes on the design
 * -------------------
 * - The life of a tag: FETCH_REQ at start-up, then for every request the
 *   kernel completes that command (cqe->res 0) after writing the tag's
 *   descriptor; the thread translates the descriptor into a disk request
 *   (ubsrv_iod_translate), submits it on the same reactor, and when it
 *   completes sends COMMIT_AND_FETCH_REQ with the result, which both
 *   answers the request and re-arms the tag. The uring_cmds and the disk's
 *   own SQEs share the ring, so one io_uring_enter per loop pass submits
 *   commits and backend I/O together.
 * - Plain 64-byte SQEs: the 16-byte struct ubsrv_io_cmd fits the command
 *   area of a normal SQE (only the control ring needs SQE128). Every
 *   command of a queue must come from the thread that FETCHed it (the
 *   daemon rule, until 6.16), which the reactor guarantees.
 * - Data: in kernel-copy mode every FETCH/COMMIT carries the tag's buffer
 *   and the kernel copies WRITE data into it before delivery and READ data
 *   out of it at commit. With USER_COPY the commands carry no address and
 *   the thread copies with pread/pwrite on /dev/ublkcN at the tag's offset;
 *   those calls are plain memcpy in the kernel and never block, so they are
 *   made synchronously rather than punted to io-wq (the char device has no
 *   FMODE_NOWAIT). Buffers are one anonymous mapping per queue, mlocked
 *   when the limit allows (pitfall 7: no reclaim on the server's own I/O).
 * - The length is iod->nr_sectors, always: the kernel may shorten a request
 *   when pinning pages partly fails (6.1 copy mode), and returning the full
 *   byte count of what it sent is what completes it.
 * - Completion results: bytes for READ/WRITE, 0 for the other ops, or
 *   -errno from the one table ubsrv_status_errno().
 * - Termination: a tag is dead once its command completes with
 *   UBSRV_IO_RES_ABORT (STOP_DEV, after del_gendisk drained every request)
 *   or another error. When no tag is armed and no disk request is in
 *   flight the reactor stops, the ring is closed, and the thread reports
 *   its exit to the control thread.
 * - PR_SET_IO_FLUSHER on every queue thread (PF_MEMALLOC_NOIO and
 *   PF_LOCAL_THROTTLE), so reclaim and dirty throttling never wait on the
 *   device the thread serves.
 */
#include "config.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "common/compiler.h"
#include "common/log.h"
#include "ublk/ubsrv-internal.h"

#ifndef PR_SET_IO_FLUSHER
#define PR_SET_IO_FLUSHER 57
#endif

/* ---- the status table ----------------------------------------------------- */

int ubsrv_status_errno(int status, int os_errno, int medium)
{
	switch (status) {
	case DISK_OK:
		return 0;
	case DISK_ILLEGAL_BLOCK:
		return -EREMOTEIO;      /* BLK_STS_TARGET, as SCSI's LBA out of range */
	case DISK_INVALID_INPUT:
		return -EINVAL;
	case DISK_IO_ERROR:
		switch (os_errno) {
		case ENOSPC:
		case EDQUOT:
		case EFBIG:
			return -ENOSPC;     /* BLK_STS_NOSPC */
		case ETIMEDOUT:
			return -ETIMEDOUT;  /* BLK_STS_TIMEOUT */
		case ENODATA:
		case EBADMSG:
		case EILSEQ:
			/* The medium itself failed (a host disk's BLK_STS_MEDIUM
			 * comes back as ENODATA): BLK_STS_MEDIUM, as the SCSI
			 * and NVMe frontends report a medium error for these. */
			return -ENODATA;
		default:
			return -EIO;
		}
	case DISK_MEDIUM_ERROR:
		switch (medium) {
		case DISK_MEDIUM_GUARD:
		case DISK_MEDIUM_APP_TAG:
		case DISK_MEDIUM_REF_TAG:
			return -EILSEQ;     /* BLK_STS_PROTECTION */
		default:
			return -ENODATA;    /* BLK_STS_MEDIUM */
		}
	case DISK_MEMORY_ACCESS:
		return -EFAULT;
	case DISK_READ_ONLY:
		return -EROFS;
	case DISK_RESERVATION_CONFLICT:
		return -EBADE;          /* BLK_STS_NEXUS */
	case DISK_ABORTED_PREEMPT:
		return -ECANCELED;
	case DISK_UNSUPPORTED:
		return -EOPNOTSUPP;     /* BLK_STS_NOTSUPP */
	default:
		return -EIO;
	}
}

/* ---- descriptor translation ------------------------------------------------ */

int ubsrv_iod_translate(const struct ubsrv_io_desc *iod, uint32_t sector_shift,
			uint32_t max_io_bytes, bool read_only, struct disk_io *io)
{
	const uint32_t op = iod->op_flags & 0xff;
	const uint32_t fl = iod->op_flags;
	const uint32_t nr = iod->nr_sectors;            /* trusted, never recomputed */
	const uint64_t start = iod->start_sector;
	const uint32_t shift = sector_shift - 9;
	const uint64_t mask = ((uint64_t)1 << shift) - 1;

	io->flags = 0;
	io->iov = NULL;
	io->iovcnt = 0;
	io->initiator = NULL;
	switch (op) {
	case UBSRV_IO_OP_FLUSH:
		io->op = DISK_OP_FLUSH;
		io->sector = 0;
		io->count = 0;
		return 0;
	case UBSRV_IO_OP_READ:
	case UBSRV_IO_OP_WRITE:
	case UBSRV_IO_OP_DISCARD:
	case UBSRV_IO_OP_WRITE_ZEROES:
		break;
	default:
		return -EOPNOTSUPP;
	}
	if ((start & mask) || (nr & mask))
		return -EINVAL;
	io->sector = start >> shift;
	io->count = nr >> shift;
	if (op != UBSRV_IO_OP_READ && read_only)
		return ubsrv_status_errno(DISK_READ_ONLY, 0, 0);
	switch (op) {
	case UBSRV_IO_OP_READ:
	case UBSRV_IO_OP_WRITE:
		if (nr == 0 || (uint64_t)nr << 9 > max_io_bytes)
			return -EINVAL;
		io->op = op == UBSRV_IO_OP_READ ? DISK_OP_READ : DISK_OP_WRITE;
		if (op == UBSRV_IO_OP_WRITE && (fl & UBSRV_IO_F_FUA))
			io->flags |= DISK_IO_FUA;
		return (int)(nr << 9);
	case UBSRV_IO_OP_DISCARD:
		io->op = DISK_OP_UNMAP;
		return 0;
	default: /* UBSRV_IO_OP_WRITE_ZEROES */
		io->op = DISK_OP_WRITE_ZEROES;
		if (fl & UBSRV_IO_F_NOUNMAP)
			io->flags |= DISK_IO_NO_UNMAP;
		if (fl & UBSRV_IO_F_FUA)
			io->flags |= DISK_IO_FUA;
		return 0;
	}
}

int ubsrv_iod_prepare(const struct ubsrv_io_desc *iod, uint32_t sector_shift,
		      uint32_t max_io_bytes, bool read_only, uint8_t *buf, struct iovec *iov,
		      struct disk_io *io)
{
	int ret = ubsrv_iod_translate(iod, sector_shift, max_io_bytes, read_only, io);

	if (ret > 0) {
		/* READ or WRITE: the data lives in the tag's buffer. */
		iov->iov_base = buf;
		iov->iov_len = (size_t)ret;
		io->iov = iov;
		io->iovcnt = 1;
	}
	return ret;
}

int ubsrv_io_result(const struct disk_io *io, uint32_t bytes)
{
	if (io->status != DISK_OK)
		return ubsrv_status_errno(io->status, io->os_errno, io->medium);
	return io->op == DISK_OP_READ || io->op == DISK_OP_WRITE ? (int)bytes : 0;
}

/* ---- the tag state machine ------------------------------------------------- */

static void ubsrv_queue_check_done(struct ubsrv_queue *q)
{
	if (q->armed == 0 && q->busy == 0)
		reactor_stop(q->r);
}

/* Queues the tag's next command: FETCH_REQ (@commit false) or
 * COMMIT_AND_FETCH_REQ with @result. Submitted on the next loop pass. */
static void ubsrv_tag_arm(struct ubsrv_tag *t, bool commit, int32_t result)
{
	struct ubsrv_queue *q = t->q;
	struct ubsrv_dev *dev = q->dev;
	struct io_uring_sqe *sqe = reactor_get_sqe(q->r);
	struct ubsrv_io_cmd cmd = {
		.q_id = (uint16_t)q->q_id,
		.tag = t->tag,
		.result = result,
		.addr = dev->user_copy ? 0 : (uint64_t)(uintptr_t)t->buf,
	};

	sqe->opcode = IORING_OP_URING_CMD;
	sqe->fd = dev->cdev_fd;
	sqe->cmd_op = ubsrv_io_opcode(commit ? UBSRV_IO_COMMIT_AND_FETCH_REQ : UBSRV_IO_FETCH_REQ,
				      dev->io_encoded);
	memcpy((uint8_t *)sqe + UBSRV_SQE_CMD_OFFSET, &cmd, sizeof(cmd));
	reactor_sqe_set_op(sqe, &t->op);
	t->armed = true;
	q->armed++;
}

static void ubsrv_tag_commit(struct ubsrv_tag *t, int result)
{
	if (result < 0)
		atomic_fetch_add_explicit(&t->q->nr_errors, 1, memory_order_relaxed);
	ubsrv_tag_arm(t, true, result);
}

static void ubsrv_tag_io_done(struct disk_io *io)
{
	struct ubsrv_tag *t = container_of(io, struct ubsrv_tag, io);
	struct ubsrv_queue *q = t->q;
	struct ubsrv_dev *dev = q->dev;
	int res = ubsrv_io_result(io, t->bytes);

	t->busy = false;
	q->busy--;
	if (res < 0)
		log_debug("ublk%u: %s of %" PRIu64 "+%" PRIu64 " failed: %s -> %s", dev->id,
			  disk_op_str(io->op), io->sector, io->count, disk_status_str(io->status),
			  strerror(-res));
	if (res > 0 && io->op == DISK_OP_READ && dev->user_copy) {
		/* Copy the data into the request's pages. */
		ssize_t n = pwrite(dev->cdev_fd, t->buf, t->bytes,
				   (off_t)ubsrv_user_copy_offset(q->q_id, t->tag));

		if (n != (ssize_t)t->bytes) {
			log_error("ublk%u: queue %u tag %u: user copy of a %u-byte read: %s", dev->id,
				  q->q_id, t->tag, t->bytes, n < 0 ? strerror(errno) : "short copy");
			res = n > 0 ? (int)n : -EIO;
		}
	}
	ubsrv_tag_commit(t, res);
}

/* A request arrived for @t: serve it. */
static void ubsrv_tag_serve(struct ubsrv_tag *t)
{
	struct ubsrv_queue *q = t->q;
	struct ubsrv_dev *dev = q->dev;
	struct ubsrv_io_desc iod;
	int ret;

	/* The kernel wrote the descriptor before completing the command; take
	 * one copy so every field comes from the same request. */
	memcpy(&iod, (const void *)&q->descs[t->tag], sizeof(iod));
	atomic_fetch_add_explicit(&q->nr_ios, 1, memory_order_relaxed);
	ret = ubsrv_iod_prepare(&iod, dev->sector_shift, dev->info.max_io_buf_bytes,
				dev->read_only, t->buf, &t->iov, &t->io);
	if (ret < 0) {
		if (ret != -EROFS)
			log_debug("ublk%u: queue %u tag %u: descriptor op 0x%x %u@%" PRIu64 " refused: %s",
				  dev->id, q->q_id, t->tag, iod.op_flags, iod.nr_sectors,
				  iod.start_sector, strerror(-ret));
		ubsrv_tag_commit(t, ret);
		return;
	}
	t->bytes = (uint32_t)ret;
	if (t->io.op == DISK_OP_WRITE) {
		if (dev->user_copy) {
			ssize_t n = pread(dev->cdev_fd, t->buf, t->bytes,
					  (off_t)ubsrv_user_copy_offset(q->q_id, t->tag));

			if (n != (ssize_t)t->bytes) {
				log_error("ublk%u: queue %u tag %u: user copy of a %u-byte write: %s",
					  dev->id, q->q_id, t->tag, t->bytes,
					  n < 0 ? strerror(errno) : "short copy");
				ubsrv_tag_commit(t, -EIO);
				return;
			}
		} else {
			/* The kernel copied the data in (invisible to valgrind). */
			reactor_mark_defined(t->buf, t->bytes);
		}
	}
	t->io.done = ubsrv_tag_io_done;
	t->io.opaque = t;
	t->busy = true;
	q->busy++;
	disk_submit(dev->disk, &t->io);
}

/* Completion of a tag's FETCH / COMMIT_AND_FETCH. */
static void ubsrv_tag_cmd_done(struct reactor_op *op, int res)
{
	struct ubsrv_tag *t = container_of(op, struct ubsrv_tag, op);
	struct ubsrv_queue *q = t->q;

	t->armed = false;
	q->armed--;
	if (likely(res == UBSRV_IO_RES_OK)) {
		ubsrv_tag_serve(t);
		return;
	}
	/* The tag is finished: ABORT when the device stops, anything else is
	 * an error (we never ask for NEED_GET_DATA). */
	if (res != UBSRV_IO_RES_ABORT)
		log_error("ublk%u: queue %u tag %u: I/O command failed: %s", q->dev->id, q->q_id,
			  t->tag, res > 0 ? "unexpected NEED_GET_DATA" : strerror(-res));
	ubsrv_queue_check_done(q);
}

/* ---- the thread ------------------------------------------------------------ */

static void *ubsrv_queue_main(void *arg)
{
	struct ubsrv_queue *q = arg;
	struct ubsrv_dev *dev = q->dev;
	const unsigned depth = dev->info.queue_depth;
	char name[16];
	int ret;

	snprintf(name, sizeof(name), "ublk%u-q%u", dev->id % 1000, q->q_id % 1000);
	pthread_setname_np(pthread_self(), name);
	if (q->cpu >= 0) {
		cpu_set_t set;

		CPU_ZERO(&set);
		CPU_SET(q->cpu, &set);
		if (pthread_setaffinity_np(pthread_self(), sizeof(set), &set) != 0)
			log_debug("ublk%u: cannot pin queue %u to CPU %d", dev->id, q->q_id, q->cpu);
	}
	if (prctl(PR_SET_IO_FLUSHER, 1, 0, 0, 0) < 0)
		log_debug("ublk%u: PR_SET_IO_FLUSHER: %s", dev->id, strerror(errno));

	/* Room for every tag's command plus the disk's own SQEs. */
	ret = reactor_new(&q->r, MIN(32768u, 2 * depth + 64));
	if (ret < 0) {
		log_error("ublk%u: queue %u: cannot create its io_uring: %s", dev->id, q->q_id,
			  strerror(-ret));
		ubsrv_dev_queue_started(dev, ret);
		ubsrv_dev_queue_exited(dev);
		atomic_store(&q->exited, true);
		return NULL;
	}
	for (unsigned i = 0; i < depth; i++)
		ubsrv_tag_arm(&q->tags[i], false, -1);
	ret = reactor_flush(q->r);
	if (ret >= 0) {
		/* A FETCH the kernel refuses completes at once: reap those now,
		 * so START_DEV is never sent for a queue that will not be ready. */
		(void)reactor_run_once(q->r, false);
		if (q->armed != depth)
			ret = -EIO;
	}
	ubsrv_dev_queue_started(dev, ret < 0 ? ret : 0);
	if (ret >= 0 || q->armed > 0) {
		if (q->armed > 0 || q->busy > 0)
			ret = reactor_run(q->r);
		if (ret < 0)
			log_error("ublk%u: queue %u: event loop failed: %s", dev->id, q->q_id,
				  strerror(-ret));
	}
	if (q->armed == 0 && q->busy == 0) {
		reactor_free(q->r);
		q->r = NULL;
	}
	/* else: commands still sit in the ring; leaking it is the only safe
	 * choice (the process is about to report the failure and exit). */
	atomic_store(&q->exited, true);
	ubsrv_dev_queue_exited(dev);
	return NULL;
}

/* ---- set-up and tear-down ---------------------------------------------------- */

int ubsrv_queue_init(struct ubsrv_queue *q, struct ubsrv_dev *dev, unsigned q_id, char *err,
		     size_t errlen)
{
	const unsigned depth = dev->info.queue_depth;
	const size_t page = (size_t)sysconf(_SC_PAGESIZE);
	const size_t max_desc = ROUND_UP((size_t)UBSRV_MAX_QUEUE_DEPTH * sizeof(struct ubsrv_io_desc), page);
	const off_t off = (off_t)(UBSRV_CMD_BUF_OFFSET + q_id * max_desc);
	void *p;

	memset(q, 0, sizeof(*q));
	q->dev = dev;
	q->q_id = q_id;
	q->cpu = -1;
	atomic_init(&q->exited, false);
	atomic_init(&q->nr_ios, 0);
	atomic_init(&q->nr_errors, 0);

	q->descs_len = ROUND_UP((size_t)depth * sizeof(struct ubsrv_io_desc), page);
	p = mmap(NULL, q->descs_len, PROT_READ, MAP_SHARED | MAP_POPULATE, dev->cdev_fd, off);
	if (p == MAP_FAILED) {
		int e = errno;

		snprintf(err, errlen, "cannot map the descriptors of queue %u: %s", q_id, strerror(e));
		q->descs_len = 0;
		return -e;
	}
	q->descs = p;

	q->bufs_len = (size_t)depth * dev->info.max_io_buf_bytes;
	p = mmap(NULL, q->bufs_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
		 -1, 0);
	if (p == MAP_FAILED) {
		int e = errno;

		snprintf(err, errlen, "cannot allocate %zu bytes of buffers for queue %u: %s",
			 q->bufs_len, q_id, strerror(e));
		q->bufs_len = 0;
		ubsrv_queue_fini(q);
		return -e;
	}
	q->bufs = p;
	if (mlock(q->bufs, q->bufs_len) < 0) {
		static atomic_bool warned;

		if (!atomic_exchange(&warned, true))
			log_warn("ublk%u: cannot lock %zu bytes of I/O buffers in memory (%s); "
				 "continuing without (raise RLIMIT_MEMLOCK or lower --depth/--max-io)",
				 dev->id, q->bufs_len, strerror(errno));
	}

	q->tags = calloc(depth, sizeof(*q->tags));
	if (!q->tags) {
		snprintf(err, errlen, "out of memory");
		ubsrv_queue_fini(q);
		return -ENOMEM;
	}
	for (unsigned i = 0; i < depth; i++) {
		struct ubsrv_tag *t = &q->tags[i];

		t->op.cb = ubsrv_tag_cmd_done;
		t->q = q;
		t->tag = (uint16_t)i;
		t->buf = q->bufs + (size_t)i * dev->info.max_io_buf_bytes;
	}
	return 0;
}

int ubsrv_queue_start(struct ubsrv_queue *q)
{
	int ret = pthread_create(&q->thread, NULL, ubsrv_queue_main, q);

	if (ret != 0)
		return -ret;
	q->thread_ok = true;
	return 0;
}

void ubsrv_queue_fini(struct ubsrv_queue *q)
{
	if (q->thread_ok) {
		pthread_join(q->thread, NULL);
		q->thread_ok = false;
	}
	free(q->tags);
	q->tags = NULL;
	if (q->bufs)
		munmap(q->bufs, q->bufs_len);
	q->bufs = NULL;
	if (q->descs)
		munmap((void *)q->descs, q->descs_len);
	q->descs = NULL;
}
