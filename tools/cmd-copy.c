/* SPDX-License-Identifier: MIT */
/*
 * cmd-copy.c: `diskstack copy SRC DST` — a pipelined, sparse-aware copy
 * from one disk stack to another.
 *
 * Notes on the design
 * -------------------
 * - Everything runs on one reactor (the main thread's). A planner hands out
 *   work in byte ranges, always aligned to the larger of the two sector
 *   sizes ("align"); each of the queue-depth slots owns a buffer from
 *   reactor_buf_get() for the whole copy and runs a small state machine
 *   from its completion callbacks. No allocation per request.
 * - The planner follows the source's block status (one request in flight,
 *   up to COPY_SRC_EXTENTS extents at a time). Ranges the source reports as
 *   ZERO are never read. A zero range is shrunk to whole "align" units;
 *   what is cut off is copied as data, which is always correct. If block
 *   status fails the rest of the source is treated as data.
 * - A data chunk is read into the slot's buffer and scanned in "granules"
 *   (max(align, 4 KiB)): runs of all-zero granules are handled like zero
 *   ranges, runs of data are written. This keeps the destination sparse
 *   even when the source cannot report holes.
 * - Zero ranges: the destination's block status is asked first; sub-ranges
 *   it already reports as ZERO are skipped, the others get WRITE_ZEROES
 *   (which may unmap). Only the ZERO flag counts: a HOLE that is not known
 *   to read as zero (e.g. a remote NBD export) is written.
 * - The destination is flushed once at the end. The first error stops the
 *   planner; requests in flight drain, then the command exits 1.
 * - Bytes of the destination past the size of the source are left alone.
 */
#include "config.h"

#include <assert.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/compiler.h"
#include "common/reactor.h"
#include "storage/disk.h"
#include "storage/spec.h"
#include "tools/progress.h"
#include "tools/tool.h"

#define COPY_DEFAULT_BS (1u << 20)
#define COPY_MAX_BS (64u << 20)
#define COPY_DEFAULT_QD 16
#define COPY_MAX_QD 1024
#define COPY_SRC_EXTENTS 256
#define COPY_DST_EXTENTS 32
#define COPY_MAX_ZERO_PIECE (256ull << 20)
#define COPY_MIN_GRANULE 4096u

static const char cmd_name[] = "copy";

static void copy_usage(FILE *fp)
{
	fprintf(fp,
		"Usage: diskstack copy SRC DST [--quiet] [--block-size N] [--queue-depth N]\n"
		"\n"
		"Copies the disk SRC (opened read-only) onto the disk DST, byte for byte.\n"
		"DST must be at least as large as SRC; bytes of DST past the end of SRC are\n"
		"left alone. Zero and unallocated ranges of SRC are not read; on DST they\n"
		"are written with write-zeroes (which may unmap) unless DST already reads\n"
		"zero there, so sparse images stay sparse. DST is flushed at the end.\n"
		"\n"
		"Nothing is created unless DST says so, e.g. 'file:new.img;create=8G'.\n"
		"\n"
		"Options:\n"
		"  -q, --quiet            no progress bar and no summary\n"
		"  -b, --block-size N     bytes per request (default 1M, max 64M)\n"
		"  -Q, --queue-depth N    requests in flight (default 16, max 1024)\n"
		"  -h, --help             show this help\n"
		"\n"
		"Run 'diskstack help specs' for the spec syntax; see docs/diskstack-copy.md.\n");
}

enum slot_state {
	SLOT_IDLE = 0,
	SLOT_READ,            /* reading a data chunk into buf */
	SLOT_WRITE,           /* writing a data run from buf */
	SLOT_ZERO_STATUS,     /* asking DST's block status over a zero run */
	SLOT_ZERO_WRITE,      /* WRITE_ZEROES on DST */
};

struct copy_job;

struct copy_slot {
	struct copy_job *job;
	struct disk_io io;
	struct iovec iov;
	void *buf;                     /* job->bs bytes, from reactor_buf_get */
	enum slot_state state;
	bool have_data;                /* buf holds [off, end) of SRC */
	uint64_t off, end;             /* the piece this slot works on (bytes) */
	uint64_t cur;                  /* bytes before cur are done */
	uint64_t zend;                 /* end of the zero run being handled */
	uint64_t pending;              /* bytes of the request in flight */
	/* DST block status over [ext_pos, zend) */
	struct disk_extent ext[COPY_DST_EXTENTS];
	uint32_t ext_nr, ext_idx;
	uint64_t ext_pos;              /* byte where ext[ext_idx] starts */
};

struct copy_job {
	struct reactor *r;
	struct disk *src, *dst;
	uint32_t src_shift, dst_shift;
	uint64_t total;                /* bytes to copy (SRC size) */
	uint32_t align;                /* max of the two sector sizes */
	uint64_t gran;                 /* zero-detection granule */
	uint64_t bs;                   /* bytes per data request */
	unsigned qd;

	struct copy_slot *slots;
	struct copy_slot **idle;       /* stack of idle slots */
	unsigned nidle;
	unsigned inflight;             /* slots not idle */

	/* The planner. */
	uint64_t pos;                  /* bytes before pos have been handed out */
	bool src_bs;                   /* SRC block status usable */
	bool bs_busy;
	struct disk_io bs_io;
	struct disk_extent sext[COPY_SRC_EXTENTS];
	uint32_t snr, sidx;
	uint64_t sstart;               /* byte where sext[sidx] starts */
	uint64_t sknown;               /* bytes below this are described by sext */

	/* Completion. */
	bool flushing, finished;
	int failed;                    /* exit status after an error, 0 if none */

	/* Statistics (bytes). */
	uint64_t data_bytes;           /* written as data */
	uint64_t zero_written;         /* zeroed with write-zeroes */
	uint64_t zero_skipped;         /* DST already read zero */
	uint64_t zero_unread;          /* of the zeroes: not read from SRC */
	struct progress progress;
};

static void copy_pump(struct copy_job *job);
static void copy_slot_continue(struct copy_slot *s);
static void copy_slot_io_done(struct disk_io *io);

static uint64_t round_down(uint64_t x, uint64_t a) { return x / a * a; }

static void copy_fail(struct copy_job *job, const char *what, uint64_t off, uint64_t len,
		      const struct disk_io *io)
{
	if (job->failed)
		return;
	job->failed = EXIT_RUNTIME;
	progress_finish(&job->progress);
	if (io->status == DISK_IO_ERROR && io->os_errno)
		tool_error(cmd_name, "%s failed at byte %" PRIu64 " (+%" PRIu64 "): %s: %s",
			   what, off, len, disk_status_str(io->status), strerror(io->os_errno));
	else
		tool_error(cmd_name, "%s failed at byte %" PRIu64 " (+%" PRIu64 "): %s",
			   what, off, len, disk_status_str(io->status));
}

static void copy_progress(struct copy_job *job)
{
	progress_update(&job->progress, job->data_bytes + job->zero_written + job->zero_skipped);
}

/* ---- the planner ---------------------------------------------------------- */

static void copy_src_status_done(struct disk_io *io)
{
	struct copy_job *job = io->opaque;

	job->bs_busy = false;
	if (io->status != DISK_OK || io->u.bs.nr == 0) {
		/* Treat the rest as data: reads are always correct. */
		job->src_bs = false;
	} else {
		uint64_t sum = 0;
		job->snr = io->u.bs.nr;
		job->sidx = 0;
		job->sstart = io->sector << job->src_shift;
		for (uint32_t i = 0; i < job->snr; i++)
			sum += job->sext[i].count;
		job->sknown = MIN(job->total, job->sstart + (sum << job->src_shift));
		if (job->sknown <= job->pos)
			job->src_bs = false;  /* no progress: give up on it */
	}
	copy_pump(job);
}

static void copy_src_status(struct copy_job *job)
{
	struct disk_io *io = &job->bs_io;

	memset(io, 0, sizeof(*io));
	io->op = DISK_OP_BLOCK_STATUS;
	io->sector = job->pos >> job->src_shift;
	io->count = (job->total - job->pos) >> job->src_shift;
	io->u.bs.extents = job->sext;
	io->u.bs.max = COPY_SRC_EXTENTS;
	io->done = copy_src_status_done;
	io->opaque = job;
	job->bs_busy = true;
	disk_submit(job->src, io);
}

static bool sext_zero(const struct disk_extent *e)
{
	return (e->flags & DISK_EXTENT_ZERO) != 0;
}

/*
 * Hands out the next piece: returns 1 with [*off, *end) and *zero, 0 if
 * nothing can be handed out now (waiting for block status), -1 when
 * everything has been handed out.
 */
static int copy_plan(struct copy_job *job, uint64_t *off, uint64_t *end, bool *zero)
{
	uint64_t pos = job->pos;
	uint64_t dend = MIN(job->total, pos + job->bs);

	if (pos >= job->total)
		return -1;
	if (job->src_bs && pos >= job->sknown) {
		if (!job->bs_busy)
			copy_src_status(job);
		return 0;
	}
	if (!job->src_bs)
		goto out;

	/* Find the extent holding pos. */
	while (job->sidx < job->snr) {
		uint64_t len = job->sext[job->sidx].count << job->src_shift;
		if (job->sstart + len > pos)
			break;
		job->sstart += len;
		job->sidx++;
	}
	assert(job->sidx < job->snr);

	uint32_t i = job->sidx;
	uint64_t estart = job->sstart;
	if (sext_zero(&job->sext[i])) {
		/* The zero run through following zero extents. */
		uint64_t zrun = estart;
		for (; i < job->snr && sext_zero(&job->sext[i]); i++)
			zrun += job->sext[i].count << job->src_shift;
		uint64_t zend = MIN(round_down(MIN(zrun, job->total), job->align),
				    pos + COPY_MAX_ZERO_PIECE);
		if (zend > pos) {
			*off = pos;
			*end = zend;
			*zero = true;
			job->pos = zend;
			return 1;
		}
		/* Too short once aligned: copy as data up to the next unit. */
		dend = MIN(dend, ROUND_UP(zrun, (uint64_t)job->align));
		goto out;
	}
	/* A data run: stop where a zero run with an aligned interior starts. */
	for (; i < job->snr && estart < dend; i++) {
		uint64_t len = job->sext[i].count << job->src_shift;
		if (sext_zero(&job->sext[i])) {
			uint64_t zrun = estart;
			uint32_t k = i;
			for (; k < job->snr && sext_zero(&job->sext[k]); k++)
				zrun += job->sext[k].count << job->src_shift;
			uint64_t zs = ROUND_UP(estart, (uint64_t)job->align);
			if (zs < round_down(MIN(zrun, job->total), job->align)) {
				dend = MIN(dend, zs);
				break;
			}
		}
		estart += len;
	}
	/* Do not read past what block status described (unless it ends
	 * inside an alignment unit). */
	dend = MIN(dend, MAX(ROUND_UP(job->sknown, (uint64_t)job->align), pos + job->align));
out:
	dend = MIN(dend, job->total);
	assert(dend > pos);
	*off = pos;
	*end = dend;
	*zero = false;
	job->pos = dend;
	return 1;
}

/* ---- slots ------------------------------------------------------------------ */

static void copy_slot_idle(struct copy_slot *s)
{
	struct copy_job *job = s->job;

	s->state = SLOT_IDLE;
	job->idle[job->nidle++] = s;
	job->inflight--;
}

static void copy_flush_done(struct disk_io *io)
{
	struct copy_job *job = io->opaque;

	if (io->status != DISK_OK)
		copy_fail(job, "flush of DST", 0, job->total, io);
	job->finished = true;
}

static void copy_submit(struct copy_slot *s, struct disk *d, enum disk_op op, uint64_t off,
			uint64_t len, uint32_t shift)
{
	struct disk_io *io = &s->io;

	memset(io, 0, sizeof(*io));
	io->op = op;
	io->sector = off >> shift;
	io->opaque = s;
	io->done = copy_slot_io_done;
	if (op == DISK_OP_READ || op == DISK_OP_WRITE) {
		s->iov.iov_base = (char *)s->buf + (off - s->off);
		s->iov.iov_len = len;
		io->iov = &s->iov;
		io->iovcnt = 1;
	} else if (op == DISK_OP_BLOCK_STATUS) {
		io->count = len >> shift;
		io->u.bs.extents = s->ext;
		io->u.bs.max = COPY_DST_EXTENTS;
	} else {
		io->count = len >> shift;
	}
	s->pending = len;
	disk_submit(d, io);
}

static void copy_pump(struct copy_job *job)
{
	while (!job->failed && job->nidle > 0) {
		uint64_t off, end;
		bool zero;
		int r = copy_plan(job, &off, &end, &zero);
		if (r <= 0)
			break;
		struct copy_slot *s = job->idle[--job->nidle];
		job->inflight++;
		s->off = s->cur = off;
		s->end = end;
		if (zero) {
			s->have_data = false;
			job->zero_unread += end - off;
			copy_slot_continue(s);
		} else {
			s->state = SLOT_READ;
			copy_submit(s, job->src, DISK_OP_READ, off, end - off, job->src_shift);
		}
	}
	if (job->inflight || job->bs_busy || job->flushing || job->finished)
		return;
	if (job->failed) {
		job->finished = true;
		return;
	}
	if (job->pos < job->total)
		return;
	/* Everything is written: flush DST once. */
	struct disk_io *io = &job->bs_io;
	memset(io, 0, sizeof(*io));
	io->op = DISK_OP_FLUSH;
	io->done = copy_flush_done;
	io->opaque = job;
	job->flushing = true;
	disk_submit(job->dst, io);
}

static bool buf_is_zero(const void *buf, size_t len)
{
	const unsigned char *p = buf;
	const uint64_t *w;
	size_t n;

	/* Buffers come from reactor_buf_get: 4096-aligned, lengths in sectors. */
	if (((uintptr_t)p & 7) != 0 || (len & 7) != 0) {
		for (size_t i = 0; i < len; i++)
			if (p[i])
				return false;
		return true;
	}
	w = buf;
	n = len / 8;
	for (size_t i = 0; i + 4 <= n; i += 4)
		if (w[i] | w[i + 1] | w[i + 2] | w[i + 3])
			return false;
	for (size_t i = n & ~(size_t)3; i < n; i++)
		if (w[i])
			return false;
	return true;
}

/* Works through DST's block status over [ext_pos, zend): skips what
 * already reads zero, write-zeroes the rest, asks again when the extents
 * run out. */
static void copy_zero_step(struct copy_slot *s)
{
	struct copy_job *job = s->job;

	while (s->cur < s->zend) {
		if (s->ext_idx >= s->ext_nr) {
			s->state = SLOT_ZERO_STATUS;
			copy_submit(s, job->dst, DISK_OP_BLOCK_STATUS, s->cur, s->zend - s->cur,
				    job->dst_shift);
			return;
		}
		/* Coalesce extents of the same kind. */
		bool zero = (s->ext[s->ext_idx].flags & DISK_EXTENT_ZERO) != 0;
		uint64_t run = 0;
		while (s->ext_idx < s->ext_nr &&
		       ((s->ext[s->ext_idx].flags & DISK_EXTENT_ZERO) != 0) == zero &&
		       s->cur + run < s->zend) {
			run += s->ext[s->ext_idx].count << job->dst_shift;
			s->ext_idx++;
		}
		run = MIN(run, s->zend - s->cur);
		if (run == 0) {
			/* Empty extents: do not trust them. */
			zero = false;
			run = s->zend - s->cur;
			s->ext_idx = s->ext_nr;
		}
		if (zero) {
			job->zero_skipped += run;
			s->cur += run;
			copy_progress(job);
			continue;
		}
		s->state = SLOT_ZERO_WRITE;
		copy_submit(s, job->dst, DISK_OP_WRITE_ZEROES, s->cur, run, job->dst_shift);
		return;
	}
	copy_slot_continue(s);
}

/* Starts the next step of a slot's piece at s->cur, or goes idle. */
static void copy_slot_continue(struct copy_slot *s)
{
	struct copy_job *job = s->job;

	if (job->failed || s->cur >= s->end) {
		copy_slot_idle(s);
		copy_pump(job);
		return;
	}
	if (!s->have_data) {
		s->zend = s->end;
		s->ext_nr = s->ext_idx = 0;
		copy_zero_step(s);
		return;
	}
	/* Scan granules from cur: a run of zero granules or of data ones. */
	uint64_t g = MIN(job->gran - (s->cur % job->gran), s->end - s->cur);
	bool zero = buf_is_zero((char *)s->buf + (s->cur - s->off), g);
	uint64_t run = g;
	while (s->cur + run < s->end) {
		uint64_t n = MIN(job->gran, s->end - s->cur - run);
		if (buf_is_zero((char *)s->buf + (s->cur + run - s->off), n) != zero)
			break;
		run += n;
	}
	if (zero) {
		s->zend = s->cur + run;
		s->ext_nr = s->ext_idx = 0;
		copy_zero_step(s);
		return;
	}
	s->state = SLOT_WRITE;
	copy_submit(s, job->dst, DISK_OP_WRITE, s->cur, run, job->dst_shift);
}

static void copy_slot_io_done(struct disk_io *io)
{
	struct copy_slot *s = io->opaque;
	struct copy_job *job = s->job;

	switch (s->state) {
	case SLOT_READ:
		if (io->status != DISK_OK) {
			copy_fail(job, "read of SRC", s->off, s->end - s->off, io);
			break;
		}
		s->have_data = true;
		break;
	case SLOT_WRITE:
		if (io->status != DISK_OK) {
			copy_fail(job, "write of DST", s->cur, s->pending, io);
			break;
		}
		job->data_bytes += s->pending;
		s->cur += s->pending;
		copy_progress(job);
		break;
	case SLOT_ZERO_STATUS:
		if (io->status != DISK_OK || io->u.bs.nr == 0) {
			/* Unknown: treat the whole run as not zero. */
			s->ext[0].count = (s->zend - s->cur) >> job->dst_shift;
			s->ext[0].flags = 0;
			s->ext_nr = 1;
		} else {
			s->ext_nr = io->u.bs.nr;
		}
		s->ext_idx = 0;
		copy_zero_step(s);
		return;
	case SLOT_ZERO_WRITE:
		if (io->status != DISK_OK) {
			copy_fail(job, "write-zeroes of DST", s->cur, s->pending, io);
			break;
		}
		job->zero_written += s->pending;
		s->cur += s->pending;
		copy_progress(job);
		if (s->cur < s->zend) {
			copy_zero_step(s);
			return;
		}
		break;
	case SLOT_IDLE:
		assert(!"completion on an idle slot");
		return;
	}
	copy_slot_continue(s);
}

/* ---- the command -------------------------------------------------------- */

/* The root is a plain path (file: or bare) that will not be created. */
static bool spec_is_uncreated_path(const struct spec *s)
{
	return s->kind && s->kind->bare_path && !s->create && s->path;
}

/* True if the node @s names the file @st (a struct stat). */
static bool spec_node_is_file(const struct spec *s, const void *st)
{
	const struct stat *want = st;
	struct stat sst;

	return s->path && stat(s->path, &sst) == 0 && sst.st_dev == want->st_dev &&
	       sst.st_ino == want->st_ino;
}

/* True if the node @s would create (truncate) a file that a node of the
 * spec @src uses. */
static bool spec_node_creates_over(const struct spec *s, const void *src)
{
	struct stat st;

	return s->create && s->path && stat(s->path, &st) == 0 &&
	       spec_find_node(src, spec_node_is_file, &st);
}

/* The path of a node of @dst that would be created over a file @src uses,
 * or NULL. */
static const char *spec_creates_over(const struct spec *dst, const struct spec *src)
{
	const struct spec *hit = spec_find_node(dst, spec_node_creates_over, src);

	return hit ? hit->path : NULL;
}

static void copy_report(const struct copy_job *job)
{
	char h[32], hd[32], hz[32];
	uint64_t zero = job->zero_written + job->zero_skipped;

	tool_human_size(job->total, h, sizeof(h));
	tool_human_size(job->data_bytes, hd, sizeof(hd));
	tool_human_size(zero, hz, sizeof(hz));
	printf("copied %" PRIu64 " bytes (%s): %" PRIu64 " bytes of data (%s), "
	       "%" PRIu64 " bytes of zeroes (%s; %" PRIu64 " not read from SRC, "
	       "%" PRIu64 " already zero on DST, %" PRIu64 " written as zeroes)\n",
	       job->total, h, job->data_bytes, hd, zero, hz, job->zero_unread,
	       job->zero_skipped, job->zero_written);
}

static int copy_run(struct copy_job *job, bool quiet)
{
	int ret = 0;

	job->slots = calloc(job->qd, sizeof(*job->slots));
	job->idle = calloc(job->qd, sizeof(*job->idle));
	if (!job->slots || !job->idle)
		return tool_error(cmd_name, "out of memory");
	for (unsigned i = 0; i < job->qd; i++) {
		struct copy_slot *s = &job->slots[i];
		s->job = job;
		s->buf = reactor_buf_get(job->r, job->bs, false);
		if (!s->buf) {
			ret = tool_error(cmd_name, "out of memory (%u buffers of %" PRIu64 " bytes)",
					 job->qd, job->bs);
			goto out;
		}
		job->idle[job->nidle++] = s;
	}

	progress_start(&job->progress, "copy", job->total, quiet);
	copy_pump(job);
	if (!job->finished) {
		int r = reactor_run_until(job->r, &job->finished);
		if (r < 0 && !job->failed) {
			progress_finish(&job->progress);
			ret = tool_error(cmd_name, "reactor failed: %s", strerror(-r));
			goto out;
		}
	}
	if (!job->failed) {
		progress_update(&job->progress, job->total);
		progress_finish(&job->progress);
	}
	ret = job->failed;
	if (!ret && !quiet)
		copy_report(job);
out:
	for (unsigned i = 0; i < job->qd; i++)
		reactor_buf_put(job->r, job->slots[i].buf, job->bs);
	return ret;
}

int cmd_copy(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "quiet",       no_argument,       NULL, 'q' },
		{ "block-size",  required_argument, NULL, 'b' },
		{ "queue-depth", required_argument, NULL, 'Q' },
		{ "help",        no_argument,       NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	bool quiet = false;
	uint64_t bs = COPY_DEFAULT_BS, qd = COPY_DEFAULT_QD;
	int opt, ret;

	opterr = 0;
	optind = 1;
	while ((opt = getopt_long(argc, argv, ":qb:Q:h", longopts, NULL)) != -1) {
		switch (opt) {
		case 'q':
			quiet = true;
			break;
		case 'b':
			if (tool_parse_size(optarg, &bs) < 0 || bs == 0 || bs > COPY_MAX_BS)
				return tool_usage_error(cmd_name, "bad --block-size '%s' (a size from "
							"512 to 64M)", optarg);
			break;
		case 'Q':
			if (tool_parse_uint(optarg, 1, COPY_MAX_QD, &qd) < 0)
				return tool_usage_error(cmd_name, "bad --queue-depth '%s' (1 to %u)",
							optarg, COPY_MAX_QD);
			break;
		case 'h':
			copy_usage(stdout);
			return 0;
		default:
			return tool_bad_option(cmd_name, opt, argv);
		}
	}
	if (argc - optind < 2)
		return tool_usage_error(cmd_name, argc - optind == 0 ? "missing SRC and DST"
								     : "missing DST");
	if (argc - optind > 2)
		return tool_usage_error(cmd_name, "too many arguments ('%s')", argv[optind + 2]);

	const char *src_text = argv[optind], *dst_text = argv[optind + 1];
	struct spec *src_spec = NULL, *dst_spec = NULL;
	struct reactor *r = NULL;
	struct disk *src = NULL, *dst = NULL;
	struct copy_job job;

	memset(&job, 0, sizeof(job));
	if ((ret = tool_parse_spec(cmd_name, "SRC", src_text, &src_spec)) != 0)
		goto out;
	if ((ret = tool_parse_spec(cmd_name, "DST", dst_text, &dst_spec)) != 0)
		goto out;
	if (tool_spec_creates(src_spec)) {
		ret = tool_usage_error(cmd_name, "SRC '%s' asks to create a disk; the source is "
				       "never created or modified", src_text);
		goto out;
	}
	const char *clash = spec_creates_over(dst_spec, src_spec);
	if (clash) {
		ret = tool_usage_error(cmd_name, "DST would create (truncate) '%s', which SRC reads",
				       clash);
		goto out;
	}
	if (spec_is_uncreated_path(dst_spec)) {
		struct stat st;
		if (stat(dst_spec->path, &st) < 0 && errno == ENOENT) {
			ret = tool_usage_error(cmd_name, "DST '%s' does not exist; copy does not create "
					       "files unless asked: use 'file:%s;create=SIZE' "
					       "(SIZE at least the size of SRC)",
					       dst_spec->path, dst_spec->path);
			goto out;
		}
	}

	int rc = reactor_new(&r, 0);
	if (rc < 0) {
		ret = tool_error(cmd_name, "cannot create a reactor: %s", strerror(-rc));
		goto out;
	}
	if ((ret = tool_open_spec(cmd_name, "SRC", src_spec, true, &src)) != 0)
		goto out;

	const struct disk_info *si = disk_get_info(src);
	uint64_t src_count = disk_sector_count(src);
	job.total = src_count << si->sector_shift;

	/* Check a create= size before anything is created. */
	if (dst_spec->create && dst_spec->kind->bare_path &&
	    dst_spec->size < job.total) {
		char h[32];
		tool_human_size(job.total, h, sizeof(h));
		ret = tool_error(cmd_name, "DST '%s' would be created with %" PRIu64 " bytes, smaller "
				 "than SRC (%" PRIu64 " bytes, %s)", dst_text, dst_spec->size,
				 job.total, h);
		goto out;
	}
	if ((ret = tool_open_spec(cmd_name, "DST", dst_spec, false, &dst)) != 0)
		goto out;

	const struct disk_info *di = disk_get_info(dst);
	uint64_t dst_bytes = disk_sector_count(dst) << di->sector_shift;
	if (di->read_only) {
		ret = tool_usage_error(cmd_name, "DST '%s' is read-only", dst_text);
		goto out;
	}
	if (dst_bytes < job.total) {
		ret = tool_error(cmd_name, "DST '%s' is too small: %" PRIu64 " bytes, SRC has "
				 "%" PRIu64 " bytes", dst_text, dst_bytes, job.total);
		goto out;
	}
	if (job.total % di->sector_size != 0) {
		ret = tool_error(cmd_name, "the size of SRC (%" PRIu64 " bytes) is not a multiple of "
				 "DST's sector size (%u)", job.total, di->sector_size);
		goto out;
	}

	job.r = r;
	job.src = src;
	job.dst = dst;
	job.src_shift = si->sector_shift;
	job.dst_shift = di->sector_shift;
	job.align = MAX(si->sector_size, di->sector_size);
	job.gran = MAX(job.align, COPY_MIN_GRANULE);
	job.bs = ROUND_UP(bs, (uint64_t)job.align);
	job.qd = (unsigned)qd;
	job.src_bs = true;
	job.pos = 0;
	ret = copy_run(&job, quiet);

out:
	free(job.slots);
	free(job.idle);
	disk_unref(dst);
	disk_unref(src);
	reactor_free(r);
	spec_free(dst_spec);
	spec_free(src_spec);
	return ret;
}
