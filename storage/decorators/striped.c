/* SPDX-License-Identifier: MIT */
/*
 * striped.c: the striped disk — RAID-0 over N member disks in fixed-size
 * chunks (docs/openvmm-compat.md §4.8).
 *
 * Notes on the design
 * -------------------
 * - Immutable after construction: the geometry and the member list are
 *   read by every thread without a lock. Members are owned (one reference
 *   each) and released on close.
 * - Fan-out: a request becomes one child request per touched chunk (read,
 *   write), per member with a non-empty range (unmap) or per member (flush,
 *   eject). Children come from the reactor's request cache (disk_io_get)
 *   and are all started at once with disk_submit_child(); the parent
 *   completes when the last one does, so every piece is awaited even after
 *   a failure. Children that finish at once are counted on the spot, so a
 *   request over RAM members costs one deferral, not one per piece. The
 *   counter and the first error live in the parent's hctx: children
 *   complete on the parent's reactor (they are started there), so no
 *   atomics are needed.
 * - Buffers: a piece's iovec list is a slice of the parent's (iov_slice),
 *   kept in one per-request array from the reactor's buffer cache
 *   (reactor_buf_get) sized for the worst case (parent entries + pieces);
 *   nothing is malloc'ed per request in steady state. A request inside one
 *   chunk passes the parent's list through and needs no array.
 * - Errors: any member error becomes DISK_IO_ERROR (os_errno from the
 *   member when it gave one, else EIO), as upstream flattens every lower
 *   error to Io. Range checks happen here against the fixed logical count.
 * - Unmap: the pieces of one member are contiguous on that member (its
 *   chunks of consecutive stripes follow each other), so each member gets
 *   a single range from its first piece's LBA with the summed length,
 *   computed directly rather than by walking every chunk.
 */
#include "config.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/compiler.h"
#include "common/log.h"
#include "storage/decorators/striped.h"
#include "storage/kind.h"

struct striped {
	unsigned n;                   /* members */
	uint32_t shift;               /* sector shift */
	uint64_t spc;                 /* sectors per chunk */
	int spc_shift;                /* log2(spc) when a power of two, else -1 */
	uint64_t chunk_bytes;
	uint64_t sector_count;        /* logical, fixed */
	uint64_t member_sectors;      /* each member's count at construction */
	struct disk *members[];       /* owned */
};

/* Parent request state (io->hctx). */
enum {
	ST_PENDING = 0,   /* children in flight (+1 while submitting) */
	ST_FAILED,        /* a child failed */
	ST_ERRNO,         /* errno for the parent */
	ST_BUF,           /* iovec array from reactor_buf_get, or 0 */
	ST_BUF_BYTES,
};

/* Child request state (child->sctx). */
enum { SC_MEMBER = 0 };

static uint64_t striped_sector_count(struct disk *d)
{
	return ((struct striped *)disk_priv(d))->sector_count;
}

/* ---- fan-out -------------------------------------------------------------------- */

/* Accounts for a finished child and releases it. Returns true when it was
 * the parent's last. */
static bool striped_piece_done(struct disk_io *io, struct disk_io *child)
{
	if (child->status != DISK_OK) {
		if (!io->hctx[ST_FAILED]) {
			io->hctx[ST_FAILED] = 1;
			io->hctx[ST_ERRNO] = child->status == DISK_IO_ERROR && child->os_errno > 0 ?
					     (uintptr_t)child->os_errno : EIO;
		}
		log_debug("striped: error in lower disk %u: %s (%s at %" PRIu64 ")",
			  (unsigned)child->sctx[SC_MEMBER], disk_status_str(child->status),
			  disk_op_str(child->op), child->sector);
	}
	disk_io_put(io->reactor, child);
	return --io->hctx[ST_PENDING] == 0;
}

/* The parent's final status once every child has finished; releases the
 * slice array. */
static int striped_result(struct disk_io *io)
{
	if (io->hctx[ST_BUF])
		reactor_buf_put(io->reactor, (void *)io->hctx[ST_BUF], io->hctx[ST_BUF_BYTES]);
	if (io->hctx[ST_FAILED]) {
		io->os_errno = (int)io->hctx[ST_ERRNO];
		return DISK_IO_ERROR;
	}
	return DISK_OK;
}

/* A child that finished later than its submission. */
static void striped_child_done(struct disk_io *child)
{
	struct disk_io *io = child->opaque;

	if (striped_piece_done(io, child))
		disk_io_complete(io, striped_result(io));
}

/* Starts a fan-out on @io; @buf (may be NULL) is released at the end. */
static void striped_begin(struct disk_io *io, void *buf, size_t buf_bytes)
{
	io->hctx[ST_PENDING] = 1;
	io->hctx[ST_FAILED] = 0;
	io->hctx[ST_ERRNO] = 0;
	io->hctx[ST_BUF] = (uintptr_t)buf;
	io->hctx[ST_BUF_BYTES] = buf_bytes;
}

/* A child of @io for member @m, or NULL (then the parent fails with
 * ENOMEM once what was started has finished). */
static struct disk_io *striped_child(struct disk_io *io, unsigned m)
{
	struct disk_io *child = disk_io_get(io->reactor);

	if (!child) {
		if (!io->hctx[ST_FAILED]) {
			io->hctx[ST_FAILED] = 1;
			io->hctx[ST_ERRNO] = ENOMEM;
		}
		return NULL;
	}
	child->op = io->op;
	child->flags = io->flags;
	child->initiator = io->initiator;
	child->done = striped_child_done;
	child->opaque = io;
	child->sctx[SC_MEMBER] = m;
	return child;
}

/* Starts @child on member @m. A child that finishes at once (a RAM
 * member) is accounted for here, without a deferral of its own; the
 * submission bias keeps the parent from finishing inside its op. */
static void striped_submit(struct striped *st, struct disk_io *io, unsigned m,
			   struct disk_io *child)
{
	io->hctx[ST_PENDING]++;
	if (disk_submit_child(st->members[m], child) != DISK_PENDING)
		striped_piece_done(io, child);
}

/* Ends submission: the parent's status if every child has finished (or
 * none could be started), else DISK_PENDING. */
static int striped_end(struct disk_io *io)
{
	if (--io->hctx[ST_PENDING] > 0)
		return DISK_PENDING;
	return striped_result(io);
}

/* ---- read and write ------------------------------------------------------------- */

/* Chunk index and offset in the chunk of @lba (64-bit divisions cost tens
 * of cycles: power-of-two chunks use a shift). */
static inline uint64_t striped_chunk_of(const struct striped *st, uint64_t lba, uint64_t *in)
{
	uint64_t c = st->spc_shift >= 0 ? lba >> st->spc_shift : lba / st->spc;

	*in = lba - c * st->spc;
	return c;
}

static int striped_rw(struct disk *d, struct disk_io *io)
{
	struct striped *st = disk_priv(d);
	uint64_t end = io->sector + io->count;   /* representable: no overflow */
	uint64_t c, in, row, npieces, s;
	struct iovec *slices = NULL;
	size_t room = 0, off = 0, buf_bytes = 0;
	unsigned m;

	/* In range and not empty: striped_ops.checks. */
	c = striped_chunk_of(st, io->sector, &in);
	npieces = 1;
	if (in + io->count > st->spc) {
		uint64_t in_last;

		npieces = striped_chunk_of(st, end - 1, &in_last) - c + 1;
		/* Each piece boundary splits at most one entry. */
		room = (size_t)io->iovcnt + (size_t)npieces;
		buf_bytes = room * sizeof(struct iovec);
		slices = reactor_buf_get(io->reactor, buf_bytes, false);
		if (!slices) {
			io->os_errno = ENOMEM;
			return DISK_IO_ERROR;
		}
	}
	striped_begin(io, slices, buf_bytes);
	m = (unsigned)(c % st->n);
	row = c / st->n;
	s = io->sector;
	for (uint64_t p = 0; p < npieces; p++) {
		uint64_t len = MIN(st->spc - in, end - s);
		struct disk_io *child = striped_child(io, m);

		if (!child)
			break;
		child->sector = row * st->spc + in;
		if (slices) {
			int k = iov_slice(io->iov, io->iovcnt, off, (size_t)(len << st->shift),
					  slices, (int)MIN(room, (size_t)INT32_MAX));

			assert(k > 0);
			child->iov = slices;
			child->iovcnt = k;
			slices += k;
			room -= (size_t)k;
		} else {
			child->iov = io->iov;
			child->iovcnt = io->iovcnt;
		}
		striped_submit(st, io, m, child);
		s += len;
		off += (size_t)(len << st->shift);
		in = 0;
		if (++m == st->n) {
			m = 0;
			row++;
		}
	}
	return striped_end(io);
}

/* ---- unmap ------------------------------------------------------------------------ */

/*
 * The range member @m gets for the logical range [@sector, @end), @end >
 * @sector: the union of its pieces, which is contiguous on the member.
 * Returns false when the member has no piece.
 */
static bool striped_member_range(const struct striped *st, unsigned m, uint64_t sector,
				 uint64_t end, uint64_t *start, uint64_t *count)
{
	uint64_t n = st->n, spc = st->spc;
	uint64_t c0 = sector / spc, c1 = (end - 1) / spc;
	uint64_t first = c0 + (m + n - c0 % n) % n;     /* first chunk of @m at or after c0 */
	uint64_t last, chunks, len;

	if (first > c1)
		return false;
	last = c1 - (c1 % n + n - m) % n;               /* last chunk of @m at or before c1 */
	chunks = (last - first) / n + 1;
	len = chunks * spc;
	*start = (first / n) * spc;
	if (first == c0) {
		*start += sector % spc;
		len -= sector % spc;
	}
	if (last == c1)
		len -= spc - 1 - (end - 1) % spc;
	*count = len;
	return true;
}

static int striped_unmap(struct disk *d, struct disk_io *io)
{
	struct striped *st = disk_priv(d);
	uint64_t end = io->sector + io->count;   /* in range: striped_ops.checks */

	striped_begin(io, NULL, 0);
	for (unsigned m = 0; m < st->n; m++) {
		uint64_t start, count;
		struct disk_io *child;

		if (!striped_member_range(st, m, io->sector, end, &start, &count))
			continue;
		child = striped_child(io, m);
		if (!child)
			break;
		child->sector = start;
		child->count = count;
		striped_submit(st, io, m, child);
	}
	return striped_end(io);
}

/* ---- flush and eject: every member -------------------------------------------------- */

static int striped_all(struct disk *d, struct disk_io *io)
{
	struct striped *st = disk_priv(d);

	striped_begin(io, NULL, 0);
	for (unsigned m = 0; m < st->n; m++) {
		struct disk_io *child = striped_child(io, m);

		if (!child)
			break;
		striped_submit(st, io, m, child);
	}
	return striped_end(io);
}

/* ---- the disk ---------------------------------------------------------------------- */

static void striped_describe(struct disk *d, struct disk_describer *dd)
{
	struct striped *st = disk_priv(d);
	char size[32];

	spec_format_size(st->chunk_bytes, size, sizeof(size));
	disk_describe_paramf(dd, "chunk", "%s", size);
	disk_describe_paramf(dd, "chunk_sectors", "%" PRIu64, st->spc);
	disk_describe_paramf(dd, "members", "%u", st->n);
	disk_describe_paramf(dd, "member_sectors", "%" PRIu64, st->member_sectors);
	for (unsigned m = 0; m < st->n && dd->child; m++) {
		char role[32];

		snprintf(role, sizeof(role), "member %u", m);
		dd->child(dd, role, st->members[m]);
	}
}

static void striped_close(struct disk *d)
{
	struct striped *st = disk_priv(d);

	for (unsigned m = 0; m < st->n; m++)
		disk_unref(st->members[m]);
	free(st);
}

static const struct disk_ops striped_ops = {
	.version = DISK_OPS_VERSION,
	.sector_count = striped_sector_count,
	.read = striped_rw,
	.write = striped_rw,
	.flush = striped_all,
	.unmap = striped_unmap,
	.eject = striped_all,
	.describe = striped_describe,
	.close = striped_close,
	/* The striped size is fixed at open. */
	.checks = DISK_CHECK_RANGE | DISK_CHECK_EMPTY,
};

int striped_new(struct disk *const *members, unsigned n, uint64_t chunk_bytes,
		uint64_t logical_sectors, struct disk **out, char *err, size_t errlen)
{
	const struct disk_info *i0;
	struct disk_info info = { .type = "striped" };
	uint64_t count0, spc, per_member, total, stripe;
	bool all_zeroes = true, all_ignored = true;
	struct striped *st;
	int r;

	*out = NULL;
	if (n == 0) {
		(void)errbuf_printf(err, errlen, "a striped disk needs at least one member");
		return -EINVAL;
	}
	if (chunk_bytes == 0)
		chunk_bytes = STRIPED_DEFAULT_CHUNK_BYTES;
	i0 = disk_get_info(members[0]);
	count0 = disk_sector_count(members[0]);
	if (chunk_bytes % i0->sector_size != 0) {
		(void)errbuf_printf(err, errlen,
			            "invalid chunk size %" PRIu64 ": it must be a non-zero multiple of "
			            "the sector size (%u)", chunk_bytes, i0->sector_size);
		return -EINVAL;
	}
	spc = chunk_bytes / i0->sector_size;

	info.sector_size = i0->sector_size;
	info.physical_sector_size = i0->physical_sector_size;
	info.read_only = i0->read_only;
	info.fua_respected = true;
	info.optimal_unmap_sectors = 1;
	info.caps = DISK_CAP_COHERENT | DISK_CAP_PERSISTENT | DISK_CAP_EJECT;
	for (unsigned m = 0; m < n; m++) {
		const struct disk_info *im = disk_get_info(members[m]);
		uint64_t cm = disk_sector_count(members[m]);

		if (im->sector_size != i0->sector_size) {
			(void)errbuf_printf(err, errlen, "member %u is not compatible with member 0: "
				            "sector size %u, not %u", m, im->sector_size, i0->sector_size);
			return -EINVAL;
		}
		if (cm != count0) {
			(void)errbuf_printf(err, errlen, "member %u is not compatible with member 0: "
				            "%" PRIu64 " sectors, not %" PRIu64, m, cm, count0);
			return -EINVAL;
		}
		if (im->read_only != i0->read_only) {
			(void)errbuf_printf(err, errlen, "member %u is not compatible with member 0: "
				            "%s, not %s", m, im->read_only ? "read-only" : "writable",
				            i0->read_only ? "read-only" : "writable");
			return -EINVAL;
		}
		info.physical_sector_size = MAX(info.physical_sector_size, im->physical_sector_size);
		info.fua_respected = info.fua_respected && im->fua_respected;
		info.optimal_unmap_sectors = MAX(info.optimal_unmap_sectors,
						 MAX(im->optimal_unmap_sectors, 1u));
		all_zeroes = all_zeroes && im->unmap_behavior == DISK_UNMAP_ZEROES;
		all_ignored = all_ignored && im->unmap_behavior == DISK_UNMAP_IGNORED;
		/* Coherent, persistent and ejectable only if every member is;
		 * a volatile cache anywhere makes the whole volatile. */
		info.caps &= im->caps | ~(uint32_t)(DISK_CAP_COHERENT | DISK_CAP_PERSISTENT |
						    DISK_CAP_EJECT);
		info.caps |= im->caps & DISK_CAP_VOLATILE_CACHE;
	}
	info.unmap_behavior = all_zeroes ? DISK_UNMAP_ZEROES :
			      all_ignored ? DISK_UNMAP_IGNORED : DISK_UNMAP_UNSPECIFIED;

	per_member = count0 / spc * spc;
	if (MUL_OVERFLOW(per_member, (uint64_t)n, &total) ||
	    MUL_OVERFLOW(spc, (uint64_t)n, &stripe)) {
		(void)errbuf_printf(err, errlen, "striped disk too large");
		return -EINVAL;
	}
	if (total == 0) {
		(void)errbuf_printf(err, errlen, "members of %" PRIu64 " sectors are smaller than one "
			            "chunk of %" PRIu64 " sectors", count0, spc);
		return -EINVAL;
	}
	if (total % stripe != 0) {
		(void)errbuf_printf(err, errlen, "invalid striping disk size %" PRIu64 " sectors: not a "
			            "multiple of %" PRIu64 " (members x chunk)", total, stripe);
		return -EINVAL;
	}
	if (logical_sectors == 0)
		logical_sectors = total;
	if (logical_sectors > total) {
		(void)errbuf_printf(err, errlen, "invalid logical sector count %" PRIu64
			            ": larger than the %" PRIu64 " sectors the members hold",
			            logical_sectors, total);
		return -EINVAL;
	}
	if (logical_sectors % stripe != 0) {
		(void)errbuf_printf(err, errlen, "invalid striping disk size %" PRIu64 " sectors: not a "
			            "multiple of %" PRIu64 " (members x chunk)", logical_sectors, stripe);
		return -EINVAL;
	}

	st = calloc(1, sizeof(*st) + n * sizeof(st->members[0]));
	if (!st)
		return -ENOMEM;
	st->n = n;
	st->shift = ilog2_u64(i0->sector_size);
	st->spc = spc;
	st->spc_shift = IS_POW2(spc) ? (int)ilog2_u64(spc) : -1;
	st->chunk_bytes = chunk_bytes;
	st->sector_count = logical_sectors;
	st->member_sectors = count0;
	r = disk_new(&striped_ops, &info, st, NULL, out);
	if (r < 0) {
		free(st);
		(void)errbuf_printf(err, errlen, "%s", strerror(-r));
		return r;
	}
	/* The references pass to the new disk only now that it exists. */
	memcpy(st->members, members, n * sizeof(st->members[0]));
	return 0;
}

/* The striped: kind's open function: opens every member with @read_only
 * and stripes them with the spec's chunk size. */
static int striped_spec_open(const struct spec *s, bool read_only, const struct spec_ctx *ctx,
			     struct disk **out, char *err, size_t errlen)
{
	struct disk **m = calloc(s->nmembers ? s->nmembers : 1, sizeof(*m));
	unsigned opened = 0;
	int r = -ENOMEM;

	*out = NULL;
	if (!m) {
		(void)errbuf_printf(err, errlen, "out of memory");
		return r;
	}
	for (; opened < s->nmembers; opened++) {
		r = spec_open(s->members[opened], read_only, ctx, &m[opened], err, errlen);
		if (r < 0)
			goto fail;
	}
	r = striped_new(m, s->nmembers, s->size, 0, out, err, errlen);
	if (r < 0)
		goto fail;
	free(m);
	return 0;
fail:
	for (unsigned i = 0; i < opened; i++)
		disk_unref(m[i]);
	free(m);
	return r;
}

const struct spec_kind striped_kind_striped = {
	.name = "striped",
	.usage = "striped:<chunk>:<spec>+<spec>...",
	.summary = "stripes over the member disks in <chunk>-byte chunks",
	.open_disk = striped_spec_open,
	.args = { { .type = SPEC_ARG_SIZE, .name = "stripe chunk size", .field = SPEC_FIELD(size),
		    .missing_next = "missing ':<spec>' after the stripe chunk size",
		    .missing_next_hint = "write striped:<chunk>:<spec>+<spec>..." } },
	.nargs = 1,
	.tail = SPEC_TAIL_MEMBERS,
};
