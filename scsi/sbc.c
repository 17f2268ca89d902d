/* SPDX-License-Identifier: MIT */
/*
 * sbc.c: the SBC-3 commands of a direct-access LU (docs/scsi.md): READ,
 * WRITE, WRITE AND VERIFY, VERIFY, COMPARE AND WRITE, WRITE SAME, UNMAP,
 * SYNCHRONIZE CACHE, PRE-FETCH, READ CAPACITY and GET LBA STATUS, each a
 * row of scsi_sbc_ops[] turned into requests on the LU's disk.
 *
 * Notes on the design
 * -------------------
 * - One table row per command. usage[] is what REPORT SUPPORTED
 *   OPERATION CODES answers and also what every CDB is checked against:
 *   a bit set in the CDB that usage[] does not have is INVALID FIELD IN
 *   CDB with the field pointer on it. So RDPROTECT/WRPROTECT/VRPROTECT
 *   (no protection information here), ANCHOR, the obsolete bits, and
 *   NACA/LINK in the control byte are refused by the same line that
 *   reports them unused, and the two can never disagree.
 * - Data. A read goes straight into cmd->iov (cut with iov_slice when the
 *   initiator's room differs from the CDB's length; a last partial block
 *   goes through one bounce block). A write takes the whole blocks the
 *   initiator sent (FCP-4's rule for an Expected Data Transfer Length
 *   short of the CDB: process the command without the missing data); a
 *   data-out that ends inside a block is refused with INVALID FIELD IN
 *   COMMAND INFORMATION UNIT (0Eh/03h) before anything is written.
 * - Per-command state (struct sbc_cmd) comes from the reactor's buffer
 *   cache, so steady-state I/O does not allocate; the disk request is the
 *   one scsi_cmd_io hands out, reused for each step of a command.
 * - COMPARE AND WRITE is atomic against every other writer of its LBAs
 *   (SBC-3: no other command may change them between the compare
 *   and the write), whichever nexus or reactor thread it runs on. The
 *   per-LU struct scsi_sbc keeps a range lock that is free when no
 *   COMPARE AND WRITE runs: `exclusive` counts COMPARE AND WRITEs holding
 *   or waiting, and while it is 0 a writer only counts itself in
 *   `fast_writers` and never takes the mutex. Writer and COMPARE AND
 *   WRITE each increment their own counter, then read the other's
 *   (sequentially consistent), so at least one sees the other: a writer
 *   that sees exclusive > 0 backs out and queues its range under the
 *   mutex; a COMPARE AND WRITE waits until fast_writers drains to 0 (the
 *   last fast writer to leave while exclusive > 0 wakes it). Under the
 *   mutex, ranges conflict when they overlap and one is exclusive;
 *   waiters are granted in FIFO order (a writer does not overtake an
 *   older waiter it overlaps), and a grant is posted to the waiter's own
 *   reactor, never run inside the releasing thread.
 * - IMMED on SYNCHRONIZE CACHE and PRE-FETCH is accepted and the command
 *   still answers after the disk request: waiting is allowed by SBC-3
 *   (it only permits answering early) and keeps the command's request
 *   owned by the command.
 */
#include "config.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "common/compiler.h"
#include "common/endian.h"
#include "common/reactor.h"
#include "scsi/internal.h"

/* Sense codes used here (SPC-4 Annex D). */
#define ASC_INVALID_OPCODE 0x20
#define ASC_LBA_OUT_OF_RANGE 0x21
#define ASC_PARAM_LIST_LENGTH 0x1a
#define ASC_INVALID_FIELD_IN_PARAM 0x26
#define ASC_INVALID_FIELD_IN_IU 0x0e    /* ASCQ 03h: INVALID FIELD IN COMMAND INFORMATION UNIT */
#define ASC_MISCOMPARE 0x1d

/* Limits (struct scsi_sbc_limits, VPD B0h). WRITE SAME's bounds a
 * command that writes a pattern chunk by chunk; a WRITE SAME of 0 blocks
 * on a larger LU is refused rather than run for minutes. */
#define SBC_MAX_XFER_BYTES ((uint64_t)32 << 20)
#define SBC_MAX_CAW_BLOCKS 255u
#define SBC_MAX_WRITE_SAME_BYTES ((uint64_t)32 << 20)
#define SBC_MAX_UNMAP_DESCRIPTORS 256u
/* Staging buffers: WRITE SAME patterns, VERIFY reads. */
#define SBC_CHUNK_BYTES ((size_t)1 << 20)
/* PRE-FETCH's "cache capacity" (SBC-3: more than fits ends GOOD, not
 * CONDITION MET, after the part that fits). */
#define SBC_PREFETCH_MAX_BYTES ((uint64_t)64 << 20)

/* ---- the range lock --------------------------------------------------------- */

/* One writer's claim on [lba, end) while a COMPARE AND WRITE is about. */
struct sbc_range {
	struct sbc_range *next;         /* in sbc->held or sbc->waiting */
	uint64_t lba, end;
	bool exclusive;                 /* COMPARE AND WRITE: excludes every overlapping writer */
	struct reactor *reactor;        /* where a grant runs */
	struct reactor_task task;
	void (*granted)(struct sbc_range *r);
};

struct scsi_sbc {
	atomic_uint exclusive;          /* COMPARE AND WRITEs holding or waiting for a range */
	atomic_uint fast_writers;       /* writers running without a range (exclusive was 0) */
	pthread_mutex_t lock;           /* protects held and waiting */
	struct sbc_range *held;         /* granted ranges, any order */
	struct sbc_range *waiting;      /* FIFO */
};

static bool sbc_range_conflict(const struct sbc_range *a, const struct sbc_range *b)
{
	return (a->exclusive || b->exclusive) && a->lba < b->end && b->lba < a->end;
}

/* Whether @r may run now: no held range and no older waiter (@upto
 * excluded) conflicts, and for an exclusive range no fast writer runs.
 * Under sbc->lock. */
static bool sbc_range_free(struct scsi_sbc *s, const struct sbc_range *r,
			   const struct sbc_range *upto)
{
	if (r->exclusive && atomic_load(&s->fast_writers) != 0)
		return false;
	for (const struct sbc_range *h = s->held; h; h = h->next)
		if (sbc_range_conflict(h, r))
			return false;
	for (const struct sbc_range *w = s->waiting; w && w != upto; w = w->next)
		if (sbc_range_conflict(w, r))
			return false;
	return true;
}

static void sbc_range_grant_task(struct reactor_task *t)
{
	struct sbc_range *r = container_of(t, struct sbc_range, task);

	r->granted(r);
}

/* Grants every waiter that has become free, oldest first. Under sbc->lock. */
static void sbc_range_wake(struct scsi_sbc *s)
{
	struct sbc_range **pp = &s->waiting;

	while (*pp) {
		struct sbc_range *w = *pp;

		if (!sbc_range_free(s, w, w)) {
			pp = &w->next;
			continue;
		}
		*pp = w->next;
		w->next = s->held;
		s->held = w;
		w->task.fn = sbc_range_grant_task;
		reactor_post(w->reactor, &w->task);
	}
}

/* Takes @r; true when granted at once, else r->granted runs later on
 * r->reactor. */
static bool sbc_range_lock(struct scsi_sbc *s, struct sbc_range *r)
{
	struct sbc_range **tail;
	bool now;

	pthread_mutex_lock(&s->lock);
	if (r->exclusive)
		atomic_fetch_add(&s->exclusive, 1);
	now = sbc_range_free(s, r, NULL);
	if (now) {
		r->next = s->held;
		s->held = r;
	} else {
		r->next = NULL;
		for (tail = &s->waiting; *tail; tail = &(*tail)->next)
			;
		*tail = r;
	}
	pthread_mutex_unlock(&s->lock);
	return now;
}

static void sbc_range_unlock(struct scsi_sbc *s, struct sbc_range *r)
{
	struct sbc_range **pp;

	pthread_mutex_lock(&s->lock);
	for (pp = &s->held; *pp != r; pp = &(*pp)->next)
		assert(*pp);
	*pp = r->next;
	if (r->exclusive)
		atomic_fetch_sub(&s->exclusive, 1);
	sbc_range_wake(s);
	pthread_mutex_unlock(&s->lock);
}

/* A writer without a range: true when it may run so (no COMPARE AND
 * WRITE about), counted in fast_writers until sbc_fast_leave. */
static bool sbc_fast_enter(struct scsi_sbc *s)
{
	atomic_fetch_add(&s->fast_writers, 1);
	return atomic_load(&s->exclusive) == 0;
}

static void sbc_fast_leave(struct scsi_sbc *s)
{
	if (atomic_fetch_sub(&s->fast_writers, 1) == 1 && atomic_load(&s->exclusive) != 0) {
		/* A COMPARE AND WRITE may be waiting for the fast writers. */
		pthread_mutex_lock(&s->lock);
		sbc_range_wake(s);
		pthread_mutex_unlock(&s->lock);
	}
}

int scsi_sbc_lu_init(struct scsi_lu *lu, struct scsi_sbc **out)
{
	struct scsi_sbc *s = calloc(1, sizeof(*s));

	(void)lu;
	if (!s)
		return -ENOMEM;
	pthread_mutex_init(&s->lock, NULL);
	*out = s;
	return 0;
}

void scsi_sbc_lu_fini(struct scsi_sbc *s)
{
	if (!s)
		return;
	assert(!s->held && !s->waiting);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

/* ---- limits ------------------------------------------------------------------- */

static void sbc_limits_of(const struct disk_info *info, uint32_t bs, struct scsi_sbc_limits *l)
{
	uint32_t shift = (uint32_t)__builtin_ctz(bs);
	bool unmap = info->unmap_behavior != DISK_UNMAP_IGNORED;

	memset(l, 0, sizeof(*l));
	l->max_xfer_blocks = (uint32_t)(SBC_MAX_XFER_BYTES >> shift);
	l->max_caw_blocks = SBC_MAX_CAW_BLOCKS;
	l->max_write_same_blocks = SBC_MAX_WRITE_SAME_BYTES >> shift;
	if (unmap) {
		l->max_unmap_blocks = UINT32_MAX;
		l->max_unmap_descriptors = SBC_MAX_UNMAP_DESCRIPTORS;
	}
	l->unmap_granularity = MAX(info->optimal_unmap_sectors, 1u);
	l->lbpu = unmap;
	l->lbprz = info->unmap_behavior == DISK_UNMAP_ZEROES;
	if (info->physical_sector_size > bs)
		l->lbppbe = (uint8_t)(__builtin_ctz(info->physical_sector_size) - shift);
}

void scsi_sbc_limits(const struct scsi_lu *lu, struct scsi_sbc_limits *out)
{
	struct disk *d = scsi_pr_disk(scsi_lu_pr(lu));

	sbc_limits_of(disk_get_info(d), scsi_lu_block_size(lu), out);
}

/* The limits of the LU @cmd addresses, from the disk its I/O goes to. */
static void sbc_limits_cmd(const struct scsi_cmd *cmd, struct scsi_sbc_limits *out)
{
	sbc_limits_of(disk_get_info(scsi_cmd_disk(cmd)), scsi_lu_block_size(scsi_cmd_lu(cmd)),
		      out);
}

/* ---- answering -------------------------------------------------------------- */

static void sbc_fail(struct scsi_cmd *cmd, uint8_t key, uint8_t asc, uint8_t ascq)
{
	scsi_cmd_sense(cmd, key, asc, ascq);
	scsi_cmd_finish(cmd);
}

static void sbc_fail_field(struct scsi_cmd *cmd, uint16_t byte, int bit)
{
	scsi_cmd_invalid_field(cmd, true, byte, bit);
	scsi_cmd_finish(cmd);
}

static void sbc_fail_param(struct scsi_cmd *cmd, uint16_t byte, int bit)
{
	scsi_cmd_invalid_field(cmd, false, byte, bit);
	scsi_cmd_finish(cmd);
}

static void sbc_fail_range(struct scsi_cmd *cmd)
{
	sbc_fail(cmd, SCSI_SK_ILLEGAL_REQUEST, ASC_LBA_OUT_OF_RANGE, 0);
}

/* The data-out ends inside a block, or does not have the exact size a
 * command needs (FCP-4's rule for a data length that does not match the
 * CDB, which iSCSI targets follow too). */
static void sbc_fail_iu(struct scsi_cmd *cmd)
{
	sbc_fail(cmd, SCSI_SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_IU, 0x03);
}

/* ---- CDB decoding ----------------------------------------------------------- */

static const struct scsi_op *sbc_op_of(const struct scsi_cmd *cmd)
{
	for (const struct scsi_op *op = scsi_sbc_ops; op->run; op++) {
		if (op->opcode != cmd->cdb[0])
			continue;
		if (!op->has_sa || op->sa == (cmd->cdb[1] & 0x1f))
			return op;
	}
	return NULL;
}

/* Refuses a CDB with a bit set that the command's usage data does not
 * have. Finishes @cmd and returns false then. */
static bool sbc_cdb_ok(struct scsi_cmd *cmd)
{
	const struct scsi_op *op = sbc_op_of(cmd);
	int bit, i;

	assert(op);
	i = scsi_op_bad_field(op, cmd->cdb, &bit);
	if (i >= 0) {
		sbc_fail_field(cmd, (uint16_t)i, bit);
		return false;
	}
	return true;
}

/* The LBA and the transfer length (number of blocks) of a READ, WRITE,
 * VERIFY, WRITE SAME, SYNCHRONIZE CACHE or PRE-FETCH CDB, by its size
 * (the group code of the opcode, SPC-4), and the byte that
 * holds the length (for field pointers). */
static void sbc_lba_len(const uint8_t *cdb, uint64_t *lba, uint64_t *n, uint16_t *len_byte)
{
	switch (cdb[0] >> 5) {
	case 0:         /* READ(6), WRITE(6): 21-bit LBA, 0 blocks means 256 */
		*lba = ((uint64_t)(cdb[1] & 0x1f) << 16) | ds_get_be16(cdb + 2);
		*n = cdb[4] ? cdb[4] : 256;
		*len_byte = 4;
		break;
	case 1:
	case 2:         /* 10-byte */
		*lba = ds_get_be32(cdb + 2);
		*n = ds_get_be16(cdb + 7);
		*len_byte = 7;
		break;
	case 4:         /* 16-byte */
		*lba = ds_get_be64(cdb + 2);
		*n = ds_get_be32(cdb + 10);
		*len_byte = 10;
		break;
	case 5:         /* 12-byte */
		*lba = ds_get_be32(cdb + 2);
		*n = ds_get_be32(cdb + 6);
		*len_byte = 6;
		break;
	default:
		abort();
	}
}

/* [lba, lba + n) within @count blocks; n = 0 is fine up to lba == count. */
static bool sbc_in_range(uint64_t count, uint64_t lba, uint64_t n)
{
	return lba <= count && n <= count - lba;
}

/* Bytes of room for data-in, and of data-out, that the transport gave. */
static size_t sbc_room(const struct scsi_cmd *cmd, enum scsi_data_dir dir)
{
	if (cmd->dir != dir || !cmd->iov)
		return 0;
	return (size_t)MIN((uint64_t)cmd->xfer_len, iov_length(cmd->iov, cmd->iovcnt));
}

/* ---- per-command state -------------------------------------------------------- */

enum { SBC_LOCK_NONE, SBC_LOCK_FAST, SBC_LOCK_RANGE };

/* The slot of the submitter's scratch (io->sctx) that points back to the
 * command's state: the last one, the core may use the others. */
#define SBC_SCTX 5

struct sbc_cmd {
	struct scsi_cmd *cmd;
	struct disk_io *io;             /* scsi_cmd_io's, reused for each step */
	struct disk *disk;              /* borrowed until the command finishes */
	struct scsi_sbc *sbc;
	struct reactor *reactor;
	size_t self_bytes;              /* this buffer's size (reactor buffer cache) */
	void (*step)(struct sbc_cmd *c);/* the next step, once the range is ours */
	struct sbc_range range;
	int lock;                       /* SBC_LOCK_* */
	uint32_t bs, shift;
	uint32_t wflags;                /* DISK_IO_FUA when writes must be durable */
	uint64_t lba, n;                /* blocks the command works on */
	uint64_t pos;                   /* blocks (UNMAP: descriptors) done */
	size_t moved;                   /* data-in bytes the command returns */
	bool flag;                      /* WRITE SAME: UNMAP bit; PRE-FETCH: all fits */
	void *buf;                      /* staging buffer (reactor cache), or NULL */
	size_t buf_bytes;
	size_t tail;                    /* read: bytes of the bounce block that go out */
	int niov;
	struct iovec iov[];             /* slices of cmd->iov */
};

static void sbc_end_io_done(struct disk_io *io);

/* State for @cmd with room for @niov slices, and the disk request.
 * Finishes @cmd with BUSY and returns NULL when either is missing. */
static struct sbc_cmd *sbc_cmd_new(struct scsi_cmd *cmd, int niov)
{
	struct reactor *r = reactor_current();
	size_t bytes = sizeof(struct sbc_cmd) + (size_t)MAX(niov, 0) * sizeof(struct iovec);
	struct sbc_cmd *c = reactor_buf_get(r, bytes, false);
	struct scsi_lu *lu = scsi_cmd_lu(cmd);

	if (!c) {
		scsi_cmd_status(cmd, SCSI_BUSY);
		scsi_cmd_finish(cmd);
		return NULL;
	}
	memset(c, 0, sizeof(*c));
	c->self_bytes = bytes;
	c->reactor = r;
	c->cmd = cmd;
	c->disk = scsi_cmd_disk(cmd);
	c->sbc = scsi_lu_sbc(lu);
	c->bs = scsi_lu_block_size(lu);
	c->shift = (uint32_t)__builtin_ctz(c->bs);
	c->wflags = scsi_lu_wce(lu) ? 0 : DISK_IO_FUA;
	c->io = scsi_cmd_io(cmd, sbc_end_io_done);
	if (!c->io) {
		reactor_buf_put(r, c, bytes);
		scsi_cmd_status(cmd, SCSI_BUSY);
		scsi_cmd_finish(cmd);
		return NULL;
	}
	c->io->sctx[SBC_SCTX] = (uintptr_t)c;
	return c;
}

/* sbc_cmd_new for a command on the @n blocks at @lba. */
static struct sbc_cmd *sbc_cmd_new_range(struct scsi_cmd *cmd, int niov, uint64_t lba, uint64_t n)
{
	struct sbc_cmd *c = sbc_cmd_new(cmd, niov);

	if (c) {
		c->lba = lba;
		c->n = n;
	}
	return c;
}

static bool sbc_buf_get(struct sbc_cmd *c, size_t bytes)
{
	c->buf = reactor_buf_get(c->reactor, bytes, false);
	if (!c->buf)
		return false;
	c->buf_bytes = bytes;
	return true;
}

/* Ends the command with the outcome already set on it. */
static void sbc_end(struct sbc_cmd *c)
{
	struct scsi_cmd *cmd = c->cmd;

	if (c->lock == SBC_LOCK_FAST)
		sbc_fast_leave(c->sbc);
	else if (c->lock == SBC_LOCK_RANGE)
		sbc_range_unlock(c->sbc, &c->range);
	if (c->buf)
		reactor_buf_put(c->reactor, c->buf, c->buf_bytes);
	disk_io_put(c->reactor, c->io);
	reactor_buf_put(c->reactor, c, c->self_bytes);
	scsi_cmd_finish(cmd);
}

static void sbc_end_busy(struct sbc_cmd *c)
{
	scsi_cmd_status(c->cmd, SCSI_BUSY);
	sbc_end(c);
}

/* Ends the command with the error of its finished disk request. */
static void sbc_end_disk_error(struct sbc_cmd *c)
{
	scsi_cmd_disk_status(c->cmd, c->io, c->io->sector);
	sbc_end(c);
}

static struct sbc_cmd *sbc_of(struct disk_io *io)
{
	return (struct sbc_cmd *)io->sctx[SBC_SCTX];
}

static void sbc_submit(struct sbc_cmd *c, enum disk_op op, uint32_t flags, uint64_t sector,
		       uint64_t count, const struct iovec *iov, int iovcnt,
		       void (*done)(struct disk_io *io))
{
	struct disk_io *io = c->io;

	io->op = op;
	io->flags = flags;
	io->sector = sector;
	io->count = count;
	io->iov = iov;
	io->iovcnt = iovcnt;
	io->done = done;
	disk_submit(c->disk, io);
}

/* Submits @op over @k blocks at @lba through the staging buffer. */
static void sbc_submit_buf(struct sbc_cmd *c, enum disk_op op, uint32_t flags, uint64_t lba,
			   uint64_t k, void (*done)(struct disk_io *io))
{
	c->iov[0].iov_base = c->buf;
	c->iov[0].iov_len = (size_t)(k << c->shift);
	sbc_submit(c, op, flags, lba, 0, c->iov, 1, done);
}

/* For a command that walks its blocks one staging buffer at a time:
 * submits @op over the next chunk, or ends the command after the last. */
static void sbc_chunk_next(struct sbc_cmd *c, enum disk_op op, uint32_t flags,
			   void (*done)(struct disk_io *io))
{
	uint64_t k = MIN(c->n - c->pos, (uint64_t)(c->buf_bytes >> c->shift));

	if (k == 0) {
		sbc_end(c);
		return;
	}
	sbc_submit_buf(c, op, flags, c->lba + c->pos, k, done);
}

static void sbc_range_granted(struct sbc_range *r)
{
	struct sbc_cmd *c = container_of(r, struct sbc_cmd, range);

	c->step(c);
}

/* Runs @step once the command may change [lba, lba + n): at once for a
 * plain writer while no COMPARE AND WRITE is about, else when the range
 * lock grants it. @exclusive: the command is a COMPARE AND WRITE. */
static void sbc_write_start(struct sbc_cmd *c, uint64_t lba, uint64_t n, bool exclusive,
			    void (*step)(struct sbc_cmd *c))
{
	struct scsi_sbc *s = c->sbc;

	c->step = step;
	if (!exclusive) {
		if (likely(sbc_fast_enter(s))) {
			c->lock = SBC_LOCK_FAST;
			step(c);
			return;
		}
		sbc_fast_leave(s);
	}
	c->lock = SBC_LOCK_RANGE;
	c->range.lba = lba;
	c->range.end = lba + n;
	c->range.exclusive = exclusive;
	c->range.reactor = c->reactor;
	c->range.granted = sbc_range_granted;
	if (sbc_range_lock(s, &c->range))
		step(c);
}

/* Fills c->iov with bytes [off, off + len) of cmd->iov. */
static void sbc_slice(struct sbc_cmd *c, size_t off, size_t len)
{
	int n = iov_slice(c->cmd->iov, c->cmd->iovcnt, off, len, c->iov, c->cmd->iovcnt);

	assert(n >= 0);
	c->niov = n;
}

/* Compares @len bytes of @iov from byte @off with @buf; returns the
 * offset of the first difference, or SIZE_MAX. */
static size_t sbc_iov_cmp(const struct iovec *iov, int iovcnt, size_t off, const uint8_t *buf,
			  size_t len)
{
	size_t done = 0;

	for (int i = 0; i < iovcnt && done < len; i++) {
		const uint8_t *p;
		size_t take;

		if (off >= iov[i].iov_len) {
			off -= iov[i].iov_len;
			continue;
		}
		p = (const uint8_t *)iov[i].iov_base + off;
		take = MIN(iov[i].iov_len - off, len - done);
		if (memcmp(p, buf + done, take) != 0) {
			for (size_t k = 0; k < take; k++)
				if (p[k] != buf[done + k])
					return done + k;
		}
		done += take;
		off = 0;
	}
	return SIZE_MAX;
}

static bool sbc_is_zero(const uint8_t *p, size_t len)
{
	return len == 0 || (p[0] == 0 && memcmp(p, p + 1, len - 1) == 0);
}

/* ---- READ ---------------------------------------------------------------------- */

static void sbc_read_done(struct disk_io *io)
{
	struct sbc_cmd *c = sbc_of(io);
	struct scsi_cmd *cmd = c->cmd;

	if (io->status != DISK_OK) {
		sbc_end_disk_error(c);
		return;
	}
	if (c->tail)
		iov_from_buf(cmd->iov, cmd->iovcnt, c->moved - c->tail, c->buf, c->tail);
	cmd->data_len = (uint32_t)c->moved;
	sbc_end(c);
}

/* READ(6/10/12/16): SBC-3 DPO and FUA are accepted: there is
 * no cache of ours to bypass, and the disk's reads are coherent with its
 * writes. */
static void sbc_read(struct scsi_cmd *cmd)
{
	uint32_t bs = scsi_lu_block_size(scsi_cmd_lu(cmd));
	uint64_t lba, n, want;
	size_t room, move, whole;
	uint16_t len_byte;
	struct sbc_cmd *c;
	bool direct;

	if (!sbc_cdb_ok(cmd))
		return;
	sbc_lba_len(cmd->cdb, &lba, &n, &len_byte);
	want = n * bs;
	cmd->want_len = want;
	if (!sbc_in_range(disk_sector_count(scsi_cmd_disk(cmd)), lba, n)) {
		sbc_fail_range(cmd);
		return;
	}
	if (n * bs > SBC_MAX_XFER_BYTES) {
		sbc_fail_field(cmd, len_byte, -1);
		return;
	}
	room = sbc_room(cmd, SCSI_DIR_IN);
	move = (size_t)MIN(want, (uint64_t)room);
	if (move == 0) {
		scsi_cmd_finish(cmd);
		return;
	}
	whole = move & ~(size_t)(bs - 1);
	direct = whole == move && iov_length(cmd->iov, cmd->iovcnt) == move;
	c = sbc_cmd_new(cmd, direct ? 0 : cmd->iovcnt + 1);
	if (!c)
		return;
	c->moved = move;
	if (direct) {
		sbc_submit(c, DISK_OP_READ, 0, lba, 0, cmd->iov, cmd->iovcnt, sbc_read_done);
		return;
	}
	sbc_slice(c, 0, whole);
	if (whole != move) {
		/* The room ends inside a block: read that block aside. */
		if (!sbc_buf_get(c, bs)) {
			sbc_end_busy(c);
			return;
		}
		c->tail = move - whole;
		c->iov[c->niov].iov_base = c->buf;
		c->iov[c->niov].iov_len = bs;
		c->niov++;
	}
	sbc_submit(c, DISK_OP_READ, 0, lba, 0, c->iov, c->niov, sbc_read_done);
}

/* ---- WRITE, WRITE AND VERIFY -------------------------------------------------- */

static void sbc_end_io_done(struct disk_io *io)
{
	struct sbc_cmd *c = sbc_of(io);

	if (io->status != DISK_OK)
		sbc_end_disk_error(c);
	else
		sbc_end(c);
}

static void sbc_write_step(struct sbc_cmd *c)
{
	const struct iovec *iov = c->niov ? c->iov : c->cmd->iov;
	int iovcnt = c->niov ? c->niov : c->cmd->iovcnt;

	sbc_submit(c, DISK_OP_WRITE, c->wflags, c->lba, 0, iov, iovcnt, sbc_end_io_done);
}

/*
 * The blocks of data-out a command moves: the CDB's @n, cut to the whole
 * blocks the initiator sent. Sets want_len. Returns false (and finishes
 * @cmd) when the data-out ends inside a block.
 */
static bool sbc_dout_blocks(struct scsi_cmd *cmd, uint32_t bs, uint64_t n, uint64_t *blocks)
{
	size_t avail = sbc_room(cmd, SCSI_DIR_OUT);
	uint64_t want = n * bs;

	cmd->want_len = want;
	if (avail < want && avail % bs != 0) {
		sbc_fail_iu(cmd);
		return false;
	}
	*blocks = MIN(want, (uint64_t)avail) / bs;
	return true;
}

/* What every writing command checks first: the CDB's fields, the range,
 * the transfer limit and the data-out's whole blocks. Sets *@lba and
 * *@blocks (the blocks to write, > 0) and returns true, or finishes @cmd
 * (an error, or nothing to write) and returns false. */
static bool sbc_write_prologue(struct scsi_cmd *cmd, uint64_t *lba, uint64_t *blocks)
{
	uint32_t bs = scsi_lu_block_size(scsi_cmd_lu(cmd));
	uint64_t n;
	uint16_t len_byte;

	if (!sbc_cdb_ok(cmd))
		return false;
	sbc_lba_len(cmd->cdb, lba, &n, &len_byte);
	cmd->want_len = n * bs;
	if (!sbc_in_range(disk_sector_count(scsi_cmd_disk(cmd)), *lba, n)) {
		sbc_fail_range(cmd);
		return false;
	}
	if (n * bs > SBC_MAX_XFER_BYTES) {
		sbc_fail_field(cmd, len_byte, -1);
		return false;
	}
	if (!sbc_dout_blocks(cmd, bs, n, blocks))
		return false;
	if (*blocks == 0) {
		scsi_cmd_finish(cmd);
		return false;
	}
	return true;
}

/* WRITE(6/10/12/16) (SBC-3) and WRITE AND VERIFY(10/12/16)
 * (SBC-3). FUA, or WCE off, makes the write durable. WRITE AND
 * VERIFY is a FUA write: the medium is verified by the disk reporting the
 * durable write's outcome, and re-reading data a page cache still holds
 * would prove nothing more; its BYTCHK is accepted. */
static void sbc_write_common(struct scsi_cmd *cmd, bool verify)
{
	uint32_t bs = scsi_lu_block_size(scsi_cmd_lu(cmd));
	uint64_t lba, blocks;
	struct sbc_cmd *c;
	bool direct;

	if (!sbc_write_prologue(cmd, &lba, &blocks))
		return;
	direct = iov_length(cmd->iov, cmd->iovcnt) == blocks * bs;
	c = sbc_cmd_new_range(cmd, direct ? 0 : cmd->iovcnt, lba, blocks);
	if (!c)
		return;
	if (!direct)
		sbc_slice(c, 0, blocks * bs);
	if (verify || (cmd->cdb[0] != 0x0a && (cmd->cdb[1] & 0x08)))
		c->wflags |= DISK_IO_FUA;
	sbc_write_start(c, lba, blocks, false, sbc_write_step);
}

static void sbc_write(struct scsi_cmd *cmd)
{
	sbc_write_common(cmd, false);
}

static void sbc_write_verify(struct scsi_cmd *cmd)
{
	sbc_write_common(cmd, true);
}

/* ---- VERIFY ------------------------------------------------------------------ */

static void sbc_verify_step(struct sbc_cmd *c);

static void sbc_verify_done(struct disk_io *io)
{
	struct sbc_cmd *c = sbc_of(io);
	size_t off = (size_t)(c->pos << c->shift);
	size_t len = (size_t)(io->count << c->shift);
	size_t diff;

	if (io->status != DISK_OK) {
		sbc_end_disk_error(c);
		return;
	}
	diff = sbc_iov_cmp(c->cmd->iov, c->cmd->iovcnt, off, c->buf, len);
	if (diff != SIZE_MAX) {
		/* SBC-3: the INFORMATION field holds the offset of the
		 * first byte that differs, from the start of the data-out. */
		scsi_cmd_sense_info(c->cmd, SCSI_SK_MISCOMPARE, ASC_MISCOMPARE, 0, off + diff);
		sbc_end(c);
		return;
	}
	c->pos += io->count;
	sbc_verify_step(c);
}

static void sbc_verify_step(struct sbc_cmd *c)
{
	sbc_chunk_next(c, DISK_OP_READ, 0, sbc_verify_done);
}

/* VERIFY(10/12/16): SBC-3 BYTCHK 0: the blocks must be
 * readable, which a CACHE request over them checks (a read where the disk
 * has no cache of its own). BYTCHK 1: the data-out is compared with the
 * medium, one staging buffer at a time. */
static void sbc_verify(struct scsi_cmd *cmd)
{
	uint32_t bs = scsi_lu_block_size(scsi_cmd_lu(cmd));
	bool bytchk = cmd->cdb[1] & 0x02;
	uint64_t lba, n, blocks;
	uint16_t len_byte;
	struct sbc_cmd *c;

	if (!sbc_cdb_ok(cmd))
		return;
	sbc_lba_len(cmd->cdb, &lba, &n, &len_byte);
	cmd->want_len = bytchk ? n * bs : 0;
	if (!sbc_in_range(disk_sector_count(scsi_cmd_disk(cmd)), lba, n)) {
		sbc_fail_range(cmd);
		return;
	}
	if (bytchk && n * bs > SBC_MAX_XFER_BYTES) {
		sbc_fail_field(cmd, len_byte, -1);
		return;
	}
	blocks = n;
	if (bytchk && !sbc_dout_blocks(cmd, bs, n, &blocks))
		return;
	if (blocks == 0) {
		scsi_cmd_finish(cmd);
		return;
	}
	c = sbc_cmd_new_range(cmd, 1, lba, blocks);
	if (!c)
		return;
	if (!bytchk) {
		sbc_submit(c, DISK_OP_CACHE, 0, lba, n, NULL, 0, sbc_end_io_done);
		return;
	}
	if (!sbc_buf_get(c, (size_t)MIN(blocks * bs, (uint64_t)SBC_CHUNK_BYTES))) {
		sbc_end_busy(c);
		return;
	}
	sbc_verify_step(c);
}

/* COMPARE AND WRITE and ORWRITE: with FUA the write is durable; a
 * staging buffer for the medium's blocks, then @step under the exclusive
 * range lock. */
static void sbc_rmw_start(struct sbc_cmd *c, void (*step)(struct sbc_cmd *c))
{
	if (c->cmd->cdb[1] & 0x08)
		c->wflags |= DISK_IO_FUA;
	if (!sbc_buf_get(c, (size_t)(c->n << c->shift))) {
		sbc_end_busy(c);
		return;
	}
	sbc_write_start(c, c->lba, c->n, true, step);
}

/* ---- COMPARE AND WRITE ---------------------------------------------------------- */

static void sbc_caw_read_done(struct disk_io *io)
{
	struct sbc_cmd *c = sbc_of(io);
	size_t len = (size_t)(c->n << c->shift);
	size_t diff;

	if (io->status != DISK_OK) {
		sbc_end_disk_error(c);
		return;
	}
	diff = sbc_iov_cmp(c->cmd->iov, c->cmd->iovcnt, 0, c->buf, len);
	if (diff != SIZE_MAX) {
		/* SBC-3: nothing is written; INFORMATION = offset of
		 * the first byte that differs. */
		scsi_cmd_sense_info(c->cmd, SCSI_SK_MISCOMPARE, ASC_MISCOMPARE, 0, diff);
		sbc_end(c);
		return;
	}
	sbc_slice(c, len, len);
	sbc_submit(c, DISK_OP_WRITE, c->wflags, c->lba, 0, c->iov, c->niov, sbc_end_io_done);
}

static void sbc_caw_step(struct sbc_cmd *c)
{
	sbc_submit_buf(c, DISK_OP_READ, 0, c->lba, c->n, sbc_caw_read_done);
}

/* COMPARE AND WRITE (89h): SBC-3 The data-out is the verify
 * instance then the write instance, n blocks each, exactly. */
static void sbc_caw(struct scsi_cmd *cmd)
{
	uint32_t bs = scsi_lu_block_size(scsi_cmd_lu(cmd));
	uint64_t lba = ds_get_be64(cmd->cdb + 2);
	uint64_t n = cmd->cdb[13];
	struct sbc_cmd *c;

	if (!sbc_cdb_ok(cmd))
		return;
	cmd->want_len = 2 * n * bs;
	if (n > SBC_MAX_CAW_BLOCKS) {
		sbc_fail_field(cmd, 13, -1);
		return;
	}
	if (!sbc_in_range(disk_sector_count(scsi_cmd_disk(cmd)), lba, n)) {
		sbc_fail_range(cmd);
		return;
	}
	if (n == 0) {
		/* SBC-3: zero blocks compare and write nothing. Data-out
		 * announced with them is a CDB that does not say what the
		 * initiator meant (256 blocks wrap to 0 in this one-byte
		 * field): refuse it rather than drop the data silently. */
		if (sbc_room(cmd, SCSI_DIR_OUT) != 0)
			sbc_fail_field(cmd, 13, -1);
		else
			scsi_cmd_finish(cmd);
		return;
	}
	if (sbc_room(cmd, SCSI_DIR_OUT) != 2 * n * bs) {
		sbc_fail_iu(cmd);
		return;
	}
	c = sbc_cmd_new_range(cmd, MAX(cmd->iovcnt, 1), lba, n);
	if (c)
		sbc_rmw_start(c, sbc_caw_step);
}

/* ---- ORWRITE -------------------------------------------------------------------- */

static void sbc_orwrite_read_done(struct disk_io *io)
{
	struct sbc_cmd *c = sbc_of(io);
	size_t len = (size_t)(c->n << c->shift), off = 0;
	uint8_t *b = c->buf;

	if (io->status != DISK_OK) {
		sbc_end_disk_error(c);
		return;
	}
	/* SBC-3 ORWRITE: each byte written is the medium's OR the
	 * data-out's. */
	for (int i = 0; i < c->cmd->iovcnt && off < len; i++) {
		const uint8_t *p = c->cmd->iov[i].iov_base;
		size_t take = MIN(c->cmd->iov[i].iov_len, len - off);

		for (size_t j = 0; j < take; j++)
			b[off + j] |= p[j];
		off += take;
	}
	sbc_submit(c, DISK_OP_WRITE, c->wflags, c->lba, 0, c->iov, 1, sbc_end_io_done);
}

static void sbc_orwrite_step(struct sbc_cmd *c)
{
	sbc_submit_buf(c, DISK_OP_READ, 0, c->lba, c->n, sbc_orwrite_read_done);
}

/* ORWRITE(16) (8Bh), SBC-3: read, OR in the data-out, write back, under
 * the exclusive range lock so that no other writer lands in between
 * (the same atomicity as COMPARE AND WRITE). ORPROTECT is refused by the
 * usage data: the LU has no protection information. */
static void sbc_orwrite(struct scsi_cmd *cmd)
{
	uint64_t lba, blocks;
	struct sbc_cmd *c;

	if (!sbc_write_prologue(cmd, &lba, &blocks))
		return;
	c = sbc_cmd_new_range(cmd, 1, lba, blocks);
	if (c)
		sbc_rmw_start(c, sbc_orwrite_step);
}

/* ---- WRITE SAME ----------------------------------------------------------------- */

static void sbc_ws_chunk_done(struct disk_io *io);

static void sbc_ws_chunk(struct sbc_cmd *c)
{
	sbc_chunk_next(c, DISK_OP_WRITE, c->wflags, sbc_ws_chunk_done);
}

static void sbc_ws_chunk_done(struct disk_io *io)
{
	struct sbc_cmd *c = sbc_of(io);

	if (io->status != DISK_OK) {
		sbc_end_disk_error(c);
		return;
	}
	c->pos += io->count;
	sbc_ws_chunk(c);
}

static void sbc_ws_step(struct sbc_cmd *c)
{
	if (c->buf) {
		sbc_ws_chunk(c);
		return;
	}
	/* Zeroes: the disk writes them its cheapest way; with the UNMAP bit
	 * it may deallocate where deallocated blocks read back as zeroes
	 * (SBC-3), without it the blocks must stay mapped. */
	sbc_submit(c, DISK_OP_WRITE_ZEROES, c->wflags | (c->flag ? 0 : DISK_IO_NO_UNMAP), c->lba,
		   c->n, NULL, 0, sbc_end_io_done);
}

/* WRITE SAME(10) (41h) and WRITE SAME(16) (93h), SBC-3: a block of
 * zeroes, NDOB or the UNMAP bit becomes one WRITE_ZEROES request; any
 * other block is replicated into a staging buffer written chunk by chunk. */
static void sbc_write_same(struct scsi_cmd *cmd)
{
	struct scsi_sbc_limits lim;
	uint32_t bs = scsi_lu_block_size(scsi_cmd_lu(cmd));
	uint64_t count = disk_sector_count(scsi_cmd_disk(cmd));
	bool unmap = cmd->cdb[1] & 0x08;
	bool ndob = cmd->cdb[0] == 0x93 && (cmd->cdb[1] & 0x01);
	uint64_t lba, n;
	uint16_t len_byte;
	struct sbc_cmd *c;
	size_t chunk;

	if (!sbc_cdb_ok(cmd))
		return;
	sbc_lba_len(cmd->cdb, &lba, &n, &len_byte);
	cmd->want_len = ndob ? 0 : bs;
	sbc_limits_cmd(cmd, &lim);
	if (unmap && !lim.lbpu) {
		sbc_fail_field(cmd, 1, 3);
		return;
	}
	if (!sbc_in_range(count, lba, n)) {
		sbc_fail_range(cmd);
		return;
	}
	/* 0 blocks: to the last LBA (SBC-3), which must then stay
	 * within the MAXIMUM WRITE SAME LENGTH like an explicit number. */
	if (n == 0)
		n = count - lba;
	if (n > lim.max_write_same_blocks) {
		sbc_fail_field(cmd, len_byte, -1);
		return;
	}
	if (!ndob && sbc_room(cmd, SCSI_DIR_OUT) != bs) {
		sbc_fail_iu(cmd);
		return;
	}
	if (n == 0) {
		scsi_cmd_finish(cmd);
		return;
	}
	c = sbc_cmd_new_range(cmd, 1, lba, n);
	if (!c)
		return;
	c->flag = unmap;
	if (!ndob) {
		chunk = (size_t)MIN(n * bs, (uint64_t)SBC_CHUNK_BYTES);
		if (!sbc_buf_get(c, chunk)) {
			sbc_end_busy(c);
			return;
		}
		iov_to_buf(cmd->iov, cmd->iovcnt, 0, c->buf, bs);
		/* The UNMAP bit asks for the blocks to be unmapped (SBC-3
		 * WRITE SAME, "UNMAP bit"), whatever the block holds: they
		 * then read as the LU's unmapped pattern (zeroes, LBPRZ),
		 * as libiscsi's WriteSame*.UnmapUntilEnd checks with a block
		 * of FFh. */
		if (unmap || sbc_is_zero(c->buf, bs)) {
			reactor_buf_put(c->reactor, c->buf, c->buf_bytes);
			c->buf = NULL;
		} else {
			for (size_t have = bs; have < chunk; have *= 2)
				memcpy((uint8_t *)c->buf + have, c->buf, MIN(have, chunk - have));
		}
	}
	sbc_write_start(c, lba, n, false, sbc_ws_step);
}

/* ---- UNMAP ---------------------------------------------------------------------- */

#define UNMAP_HDR 8u
#define UNMAP_DESC 16u

static void sbc_unmap_next(struct sbc_cmd *c);

static void sbc_unmap_done(struct disk_io *io)
{
	struct sbc_cmd *c = sbc_of(io);

	if (io->status != DISK_OK) {
		sbc_end_disk_error(c);
		return;
	}
	sbc_unmap_next(c);
}

/* Unmaps descriptor c->pos onwards (c->n descriptors, validated), one
 * request at a time, skipping empty ones. */
static void sbc_unmap_next(struct sbc_cmd *c)
{
	uint8_t d[UNMAP_DESC];

	while (c->pos < c->n) {
		uint64_t lba;
		uint32_t nb;

		iov_to_buf(c->cmd->iov, c->cmd->iovcnt, UNMAP_HDR + c->pos * UNMAP_DESC, d,
			   sizeof(d));
		c->pos++;
		lba = ds_get_be64(d);
		nb = ds_get_be32(d + 8);
		if (nb) {
			sbc_submit(c, DISK_OP_UNMAP, 0, lba, nb, NULL, 0, sbc_unmap_done);
			return;
		}
	}
	sbc_end(c);
}

/* UNMAP (42h): SBC-3 The whole parameter list is checked before
 * anything is unmapped, so an error leaves the medium as it was. */
static void sbc_unmap(struct scsi_cmd *cmd)
{
	struct scsi_sbc_limits lim;
	uint64_t count = disk_sector_count(scsi_cmd_disk(cmd));
	uint32_t pll = ds_get_be16(cmd->cdb + 7);
	uint8_t hdr[UNMAP_HDR], d[UNMAP_DESC];
	uint64_t total = 0;
	uint32_t dl, bdl, ndesc;
	size_t avail;
	struct sbc_cmd *c;

	if (!sbc_cdb_ok(cmd))
		return;
	cmd->want_len = pll;
	sbc_limits_cmd(cmd, &lim);
	if (!lim.lbpu) {
		/* LBPU is 0: the command is not supported on this LU. */
		sbc_fail(cmd, SCSI_SK_ILLEGAL_REQUEST, ASC_INVALID_OPCODE, 0);
		return;
	}
	if (pll == 0) {
		scsi_cmd_finish(cmd);
		return;
	}
	if (pll < UNMAP_HDR) {
		sbc_fail(cmd, SCSI_SK_ILLEGAL_REQUEST, ASC_PARAM_LIST_LENGTH, 0);
		return;
	}
	avail = MIN((size_t)pll, sbc_room(cmd, SCSI_DIR_OUT));
	if (avail < UNMAP_HDR) {
		sbc_fail_iu(cmd);
		return;
	}
	iov_to_buf(cmd->iov, cmd->iovcnt, 0, hdr, sizeof(hdr));
	dl = ds_get_be16(hdr);
	bdl = ds_get_be16(hdr + 2);
	/* The lengths in the header must fit in what was sent; a partial
	 * descriptor at the end is ignored (SBC-3). */
	if (dl > avail - 2) {
		sbc_fail_param(cmd, 0, -1);
		return;
	}
	if (bdl > avail - UNMAP_HDR) {
		sbc_fail_param(cmd, 2, -1);
		return;
	}
	ndesc = bdl / UNMAP_DESC;
	if (ndesc > lim.max_unmap_descriptors) {
		sbc_fail_param(cmd, 2, -1);
		return;
	}
	for (uint32_t i = 0; i < ndesc; i++) {
		uint16_t at = (uint16_t)(UNMAP_HDR + i * UNMAP_DESC);
		uint64_t lba;
		uint32_t nb;

		iov_to_buf(cmd->iov, cmd->iovcnt, at, d, sizeof(d));
		lba = ds_get_be64(d);
		nb = ds_get_be32(d + 8);
		if (!sbc_in_range(count, lba, nb)) {
			sbc_fail_range(cmd);
			return;
		}
		total += nb;
		if (total > lim.max_unmap_blocks) {
			sbc_fail_param(cmd, (uint16_t)(at + 8), -1);
			return;
		}
	}
	if (total == 0) {
		scsi_cmd_finish(cmd);
		return;
	}
	c = sbc_cmd_new(cmd, 0);
	if (!c)
		return;
	c->n = ndesc;
	/* Descriptors may lie anywhere: claim the whole LU against a
	 * concurrent COMPARE AND WRITE. */
	sbc_write_start(c, 0, UINT64_MAX, false, sbc_unmap_next);
}

/* ---- SYNCHRONIZE CACHE, PRE-FETCH ---------------------------------------------- */

/* What a command without data checks first: the CDB's fields and the
 * range. Sets *@lba and *@n and returns true, or finishes @cmd and
 * returns false. */
static bool sbc_nodata_prologue(struct scsi_cmd *cmd, uint64_t *lba, uint64_t *n)
{
	uint16_t len_byte;

	if (!sbc_cdb_ok(cmd))
		return false;
	sbc_lba_len(cmd->cdb, lba, n, &len_byte);
	cmd->want_len = 0;
	if (!sbc_in_range(disk_sector_count(scsi_cmd_disk(cmd)), *lba, *n)) {
		sbc_fail_range(cmd);
		return false;
	}
	return true;
}

/* SYNCHRONIZE CACHE(10/16): SBC-3 The disk flushes as a
 * whole; the range is only checked. */
static void sbc_sync_cache(struct scsi_cmd *cmd)
{
	uint64_t lba, n;
	struct sbc_cmd *c;

	if (!sbc_nodata_prologue(cmd, &lba, &n))
		return;
	c = sbc_cmd_new(cmd, 0);
	if (!c)
		return;
	sbc_submit(c, DISK_OP_FLUSH, 0, 0, 0, NULL, 0, sbc_end_io_done);
}

static void sbc_prefetch_done(struct disk_io *io)
{
	struct sbc_cmd *c = sbc_of(io);

	if (io->status != DISK_OK) {
		sbc_end_disk_error(c);
		return;
	}
	/* SBC-3: CONDITION MET when every block went to the cache. */
	if (c->flag)
		scsi_cmd_status(c->cmd, SCSI_CONDITION_MET);
	sbc_end(c);
}

/* PRE-FETCH(10/16): SBC-3, over the disk's CACHE request. A
 * length of 0 means up to the last LBA. */
static void sbc_prefetch(struct scsi_cmd *cmd)
{
	uint32_t bs = scsi_lu_block_size(scsi_cmd_lu(cmd));
	uint64_t count = disk_sector_count(scsi_cmd_disk(cmd));
	uint64_t lba, n, max = SBC_PREFETCH_MAX_BYTES / bs;
	struct sbc_cmd *c;

	if (!sbc_nodata_prologue(cmd, &lba, &n))
		return;
	if (n == 0)
		n = count - lba;
	if (n == 0) {
		scsi_cmd_status(cmd, SCSI_CONDITION_MET);
		scsi_cmd_finish(cmd);
		return;
	}
	c = sbc_cmd_new(cmd, 0);
	if (!c)
		return;
	c->flag = n <= max;
	sbc_submit(c, DISK_OP_CACHE, 0, lba, MIN(n, max), NULL, 0, sbc_prefetch_done);
}

/* ---- READ DEFECT DATA ------------------------------------------------------------ */

/* READ DEFECT DATA(10) (37h) and (12) (B7h), SBC-3: a virtual medium has
 * no defects, so every list asked for is valid and empty, in the format
 * asked for (an empty list reads the same in each). */
static void sbc_read_defect_data(struct scsi_cmd *cmd)
{
	bool twelve = cmd->cdb[0] == 0xb7;
	uint8_t req = cmd->cdb[twelve ? 1 : 2] & 0x1f, data[8] = { 0 };
	uint32_t alloc = twelve ? ds_get_be32(cmd->cdb + 6) : ds_get_be16(cmd->cdb + 7);

	if (!sbc_cdb_ok(cmd))
		return;
	/* PLISTV and GLISTV say which lists follow (both empty): the
	 * request bits in the same places, and the format. DEFECT LIST
	 * LENGTH (and the (12) header's GENERATION CODE) stay zero. */
	data[1] = req;
	scsi_cmd_data_in(cmd, data, twelve ? 8 : 4, alloc);
	scsi_cmd_finish(cmd);
}

/* ---- READ CAPACITY, GET LBA STATUS ---------------------------------------------- */

/* READ CAPACITY(10): SBC-3 */
static void sbc_read_capacity10(struct scsi_cmd *cmd)
{
	struct scsi_lu *lu = scsi_cmd_lu(cmd);
	uint64_t count = disk_sector_count(scsi_cmd_disk(cmd));
	uint64_t last = count ? count - 1 : 0;
	uint8_t data[8];

	if (!sbc_cdb_ok(cmd))
		return;
	/* Without PMI the LOGICAL BLOCK ADDRESS field must be 0. */
	if (!(cmd->cdb[8] & 0x01) && ds_get_be32(cmd->cdb + 2) != 0) {
		sbc_fail_field(cmd, 2, -1);
		return;
	}
	ds_put_be32(data, last > 0xfffffffe ? 0xffffffff : (uint32_t)last);
	ds_put_be32(data + 4, scsi_lu_block_size(lu));
	scsi_cmd_data_in(cmd, data, sizeof(data), sizeof(data));
	scsi_cmd_finish(cmd);
}

/* READ CAPACITY(16): SBC-3 */
static void sbc_read_capacity16(struct scsi_cmd *cmd)
{
	struct scsi_lu *lu = scsi_cmd_lu(cmd);
	uint64_t count = disk_sector_count(scsi_cmd_disk(cmd));
	struct scsi_sbc_limits lim;
	uint8_t data[32];

	if (!sbc_cdb_ok(cmd))
		return;
	if (!(cmd->cdb[14] & 0x01) && ds_get_be64(cmd->cdb + 2) != 0) {
		sbc_fail_field(cmd, 2, -1);
		return;
	}
	sbc_limits_cmd(cmd, &lim);
	memset(data, 0, sizeof(data));
	ds_put_be64(data, count ? count - 1 : 0);
	ds_put_be32(data + 8, scsi_lu_block_size(lu));
	data[13] = lim.lbppbe & 0x0f;
	data[14] = (uint8_t)((lim.lbpu ? 0x80 : 0) | (lim.lbprz ? 0x40 : 0));
	scsi_cmd_data_in(cmd, data, sizeof(data), ds_get_be32(cmd->cdb + 10));
	scsi_cmd_finish(cmd);
}

#define LBAS_HDR 8u
#define LBAS_DESC 16u
#define LBAS_MAX_DESC 32u

static void sbc_lba_status_done(struct disk_io *io)
{
	struct sbc_cmd *c = sbc_of(io);
	uint8_t *out = c->buf;
	struct disk_extent *ext = (struct disk_extent *)(out + LBAS_HDR + LBAS_MAX_DESC * LBAS_DESC);
	uint64_t lba = c->lba;
	uint32_t nd = 0;

	if (io->status != DISK_OK) {
		sbc_end_disk_error(c);
		return;
	}
	for (uint32_t i = 0; i < io->u.bs.nr && nd < c->n; i++) {
		uint64_t left = ext[i].count;
		/* SBC-3 table: 0 mapped, 1 deallocated. */
		uint8_t state = (ext[i].flags & DISK_EXTENT_HOLE) ? 1 : 0;

		while (left && nd < c->n) {
			uint8_t *d = out + LBAS_HDR + nd * LBAS_DESC;
			uint32_t take = (uint32_t)MIN(left, (uint64_t)UINT32_MAX);

			memset(d, 0, LBAS_DESC);
			ds_put_be64(d, lba);
			ds_put_be32(d + 8, take);
			d[12] = state;
			lba += take;
			left -= take;
			nd++;
		}
	}
	memset(out, 0, LBAS_HDR);
	ds_put_be32(out, 4 + nd * LBAS_DESC);
	scsi_cmd_data_in(c->cmd, out, LBAS_HDR + nd * LBAS_DESC, c->moved);
	sbc_end(c);
}

/* GET LBA STATUS (9Eh/12h): SBC-3, from the disk's block status.
 * The first descriptor starts at the requested LBA; as many follow as
 * the allocation length has room for (up to LBAS_MAX_DESC). */
static void sbc_get_lba_status(struct scsi_cmd *cmd)
{
	uint64_t count = disk_sector_count(scsi_cmd_disk(cmd));
	uint64_t lba = ds_get_be64(cmd->cdb + 2);
	uint32_t alloc = ds_get_be32(cmd->cdb + 10);
	struct disk_io *io;
	struct sbc_cmd *c;
	size_t bytes = LBAS_HDR + LBAS_MAX_DESC * LBAS_DESC +
		       LBAS_MAX_DESC * sizeof(struct disk_extent);

	if (!sbc_cdb_ok(cmd))
		return;
	cmd->want_len = alloc;
	if (lba >= count) {
		sbc_fail_range(cmd);
		return;
	}
	if (alloc == 0) {
		cmd->want_len = 0;
		scsi_cmd_finish(cmd);
		return;
	}
	c = sbc_cmd_new(cmd, 0);
	if (!c)
		return;
	if (!sbc_buf_get(c, bytes)) {
		sbc_end_busy(c);
		return;
	}
	c->lba = lba;
	c->moved = alloc;
	c->n = alloc <= LBAS_HDR + LBAS_DESC ? 1 : MIN((alloc - LBAS_HDR) / LBAS_DESC, LBAS_MAX_DESC);
	io = c->io;
	io->u.bs.extents = (struct disk_extent *)((uint8_t *)c->buf + LBAS_HDR +
						  LBAS_MAX_DESC * LBAS_DESC);
	io->u.bs.max = (uint32_t)c->n;
	io->u.bs.nr = 0;
	sbc_submit(c, DISK_OP_BLOCK_STATUS, 0, lba, count - lba, NULL, 0, sbc_lba_status_done);
}

/* ---- the table ------------------------------------------------------------------ */

/*
 * usage[] per SBC-3 for what this LU does: byte 1 holds DPO (10h), FUA
 * (08h) and FUA_NV (02h) where the command has them, never the
 * PROTECT fields (no protection information: a nonzero value is refused
 * as an invalid field); GROUP NUMBER (1Fh) is accepted and ignored; the
 * control byte is 0 (no NACA, no LINK).
 */
#define L4 0xff, 0xff, 0xff, 0xff
#define L8 L4, L4
/* Commands whose disk requests carry the nexus's initiator: the disk (a
 * prwrap, or one with reservations of its own) decides conflicts. */
#define SBC_IO SCSI_OP_MEDIUM_IO
#define SBC_IO_WRITES (SCSI_OP_MEDIUM_IO | SCSI_OP_WRITES)

const struct scsi_op scsi_sbc_ops[] = {
	{ 0x08, false, 0, 6, { 0x08, 0x1f, 0xff, 0xff, 0xff, 0x00 }, SBC_IO, sbc_read, "READ(6)" },
	{ 0x28, false, 0, 10, { 0x28, 0x1a, L4, 0x1f, 0xff, 0xff, 0x00 }, SBC_IO, sbc_read,
	  "READ(10)" },
	{ 0xa8, false, 0, 12, { 0xa8, 0x1a, L4, L4, 0x1f, 0x00 }, SBC_IO, sbc_read, "READ(12)" },
	{ 0x88, false, 0, 16, { 0x88, 0x1a, L8, L4, 0x1f, 0x00 }, SBC_IO, sbc_read, "READ(16)" },
	{ 0x0a, false, 0, 6, { 0x0a, 0x1f, 0xff, 0xff, 0xff, 0x00 }, SBC_IO_WRITES, sbc_write,
	  "WRITE(6)" },
	{ 0x2a, false, 0, 10, { 0x2a, 0x1a, L4, 0x1f, 0xff, 0xff, 0x00 }, SBC_IO_WRITES,
	  sbc_write, "WRITE(10)" },
	{ 0xaa, false, 0, 12, { 0xaa, 0x1a, L4, L4, 0x1f, 0x00 }, SBC_IO_WRITES, sbc_write,
	  "WRITE(12)" },
	{ 0x8a, false, 0, 16, { 0x8a, 0x1a, L8, L4, 0x1f, 0x00 }, SBC_IO_WRITES, sbc_write,
	  "WRITE(16)" },
	{ 0x2e, false, 0, 10, { 0x2e, 0x12, L4, 0x1f, 0xff, 0xff, 0x00 }, SBC_IO_WRITES,
	  sbc_write_verify, "WRITE AND VERIFY(10)" },
	{ 0xae, false, 0, 12, { 0xae, 0x12, L4, L4, 0x1f, 0x00 }, SBC_IO_WRITES,
	  sbc_write_verify, "WRITE AND VERIFY(12)" },
	{ 0x8e, false, 0, 16, { 0x8e, 0x12, L8, L4, 0x1f, 0x00 }, SBC_IO_WRITES,
	  sbc_write_verify, "WRITE AND VERIFY(16)" },
	{ 0x2f, false, 0, 10, { 0x2f, 0x12, L4, 0x1f, 0xff, 0xff, 0x00 }, SBC_IO, sbc_verify,
	  "VERIFY(10)" },
	{ 0xaf, false, 0, 12, { 0xaf, 0x12, L4, L4, 0x1f, 0x00 }, SBC_IO, sbc_verify,
	  "VERIFY(12)" },
	{ 0x8f, false, 0, 16, { 0x8f, 0x12, L8, L4, 0x1f, 0x00 }, SBC_IO, sbc_verify,
	  "VERIFY(16)" },
	{ 0x89, false, 0, 16, { 0x89, 0x1a, L8, 0x00, 0x00, 0x00, 0xff, 0x1f, 0x00 },
	  SBC_IO_WRITES, sbc_caw, "COMPARE AND WRITE" },
	{ 0x8b, false, 0, 16, { 0x8b, 0x18, L8, L4, 0x1f, 0x00 }, SBC_IO_WRITES, sbc_orwrite,
	  "ORWRITE(16)" },
	{ 0x41, false, 0, 10, { 0x41, 0x08, L4, 0x1f, 0xff, 0xff, 0x00 }, SBC_IO_WRITES,
	  sbc_write_same, "WRITE SAME(10)" },
	{ 0x93, false, 0, 16, { 0x93, 0x09, L8, L4, 0x1f, 0x00 }, SBC_IO_WRITES, sbc_write_same,
	  "WRITE SAME(16)" },
	{ 0x42, false, 0, 10, { 0x42, 0x00, 0x00, 0x00, 0x00, 0x00, 0x1f, 0xff, 0xff, 0x00 },
	  SBC_IO_WRITES, sbc_unmap, "UNMAP" },
	{ 0x35, false, 0, 10, { 0x35, 0x06, L4, 0x1f, 0xff, 0xff, 0x00 }, SBC_IO, sbc_sync_cache,
	  "SYNCHRONIZE CACHE(10)" },
	{ 0x91, false, 0, 16, { 0x91, 0x06, L8, L4, 0x1f, 0x00 }, SBC_IO, sbc_sync_cache,
	  "SYNCHRONIZE CACHE(16)" },
	{ 0x34, false, 0, 10, { 0x34, 0x02, L4, 0x1f, 0xff, 0xff, 0x00 }, SBC_IO, sbc_prefetch,
	  "PRE-FETCH(10)" },
	{ 0x90, false, 0, 16, { 0x90, 0x02, L8, L4, 0x1f, 0x00 }, SBC_IO, sbc_prefetch,
	  "PRE-FETCH(16)" },
	{ 0x25, false, 0, 10, { 0x25, 0x00, L4, 0x00, 0x00, 0x01, 0x00 }, 0,
	  sbc_read_capacity10, "READ CAPACITY(10)" },
	{ 0x37, false, 0, 10, { 0x37, 0x00, 0x1f, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0x00 }, 0,
	  sbc_read_defect_data, "READ DEFECT DATA(10)" },
	{ 0xb7, false, 0, 12, { 0xb7, 0x1f, L4, L4, 0x00, 0x00 }, 0, sbc_read_defect_data,
	  "READ DEFECT DATA(12)" },
	{ 0x9e, true, 0x10, 16, { 0x9e, 0x10, L8, L4, 0x01, 0x00 }, 0, sbc_read_capacity16,
	  "READ CAPACITY(16)" },
	{ 0x9e, true, 0x12, 16, { 0x9e, 0x12, L8, L4, 0x00, 0x00 }, SBC_IO, sbc_get_lba_status,
	  "GET LBA STATUS" },
	{ 0 },
};
