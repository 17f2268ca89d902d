/* SPDX-License-Identifier: MIT */
/*
 * cmd-bench.c: `diskstack bench SPEC` — an in-process load generator that
 * drives one shared disk handle from one or more reactor threads and reports
 * IOPS, bandwidth and latency percentiles.
 *
 * Notes on the design
 * -------------------
 * - One disk handle, opened once on the main thread, shared by every worker
 *   thread. Each worker has its own reactor and keeps iodepth requests in
 *   flight: all slots are submitted at start, and each completion callback
 *   records the latency and resubmits the same slot at once. The reactor
 *   batches the submissions; the loop itself makes no syscall per I/O.
 * - The hot path allocates nothing: slots (request + iovec + buffer from
 *   reactor_buf_get) are set up before the clock starts. Per I/O there is
 *   exactly one clock read (clock_gettime(CLOCK_MONOTONIC), a vDSO call):
 *   the completion time of a slot is also the submit time of its next
 *   request. Offsets come from a per-thread xoshiro256** generator scaled
 *   with a 64x64->128 multiply (no division).
 * - Latency: per-worker log-linear histograms (HDR style: a power-of-two
 *   bucket split into 32 linear sub-buckets, so every value is kept within
 *   ~3%), separately for reads and writes, merged after the run. No per-op
 *   allocation and no shared cache lines between workers on the hot path;
 *   the per-worker progress counter is written with a relaxed atomic store
 *   (a plain store on x86) and read by the main thread for the bar.
 * - Sequential modes split the range evenly between the threads; each
 *   thread walks its part and wraps around.
 * - Safety: writes destroy data. Unless every disk under the spec is RAM
 *   (mem:, memdiff:, or a decorator over those), writing modes and
 *   --prefill need --force-write, and even then a warning is printed.
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/compiler.h"
#include "common/histo.h"
#include "common/reactor.h"
#include "storage/disk.h"
#include "storage/spec.h"
#include "tools/progress.h"
#include "tools/tool.h"

static const char cmd_name[] = "bench";

#define BENCH_MAX_BS (64u << 20)
#define BENCH_MAX_IODEPTH 4096
#define BENCH_MAX_THREADS 256
#define BENCH_DEFAULT_TIME_NS 5000000000ull

static void bench_usage(FILE *fp)
{
	fprintf(fp,
		"Usage: diskstack bench SPEC [--rw MODE] [--bs SIZE] [--iodepth N] [--threads N]\n"
		"                       [--time DURATION | --ops N] [--size [OFFSET+]LENGTH]\n"
		"                       [--rwmix PCT] [--flush-every N] [--prefill[=PCT]] [--force-write]\n"
		"                       [--json] [--quiet]\n"
		"\n"
		"Runs an in-process load against SPEC (one shared disk handle, one reactor\n"
		"per thread) and prints IOPS, MiB/s and latency percentiles.\n"
		"\n"
		"Options:\n"
		"  --rw MODE        read, write, randread (default), randwrite or randrw\n"
		"  --bs SIZE        bytes per request, a multiple of the sector size (default 4K)\n"
		"  --iodepth N      requests in flight per thread (default 32)\n"
		"  --threads N      worker threads, each with its own reactor (default 1)\n"
		"  --time DURATION  run time, e.g. 5s, 500ms, 1m (default 5s)\n"
		"  --ops N          stop after N requests in total (instead of --time)\n"
		"  --size RANGE     restrict I/O to LENGTH bytes from OFFSET (default: whole disk)\n"
		"  --rwmix PCT      randrw: percentage of reads (default 70)\n"
		"  --flush-every N  each thread sends a flush after every N writes (the\n"
		"                   flush takes the place of the next write)\n"
		"  --prefill[=PCT]  write the whole range (or PCT%% of its blocks, a fixed\n"
		"                   pseudo-random subset) once before measuring\n"
		"  --force-write    allow writes to disks that are not RAM (DESTROYS DATA)\n"
		"  --json           print one JSON object\n"
		"  -q, --quiet      no progress bar\n"
		"  -h, --help       show this help\n"
		"\n"
		"Writing modes and --prefill overwrite the disk. They are allowed without\n"
		"--force-write only when the spec is RAM-backed (mem:, memdiff:).\n"
		"See docs/diskstack-bench.md.\n");
}

enum bench_mode { MODE_READ, MODE_WRITE, MODE_RANDREAD, MODE_RANDWRITE, MODE_RANDRW };

static const char *const mode_names[] = {
	[MODE_READ] = "read", [MODE_WRITE] = "write", [MODE_RANDREAD] = "randread",
	[MODE_RANDWRITE] = "randwrite", [MODE_RANDRW] = "randrw",
};

/* ---- latency histogram ----------------------------------------------------- */

#define HIST_SUB_BITS 5
#define HIST_SIZE HISTO_SIZE(HIST_SUB_BITS)

struct bench_hist {
	uint64_t count;
	uint64_t sum_ns;
	uint64_t max_ns;
	uint64_t min_ns;
	uint64_t bins[HIST_SIZE];
};

static inline unsigned hist_index(uint64_t v)
{
	return histo_index(v, HIST_SUB_BITS);
}

/* The middle of the values mapped to bin @i. */
static uint64_t hist_value(unsigned i)
{
	return histo_value(i, HIST_SUB_BITS);
}

static inline void hist_add(struct bench_hist *h, uint64_t v)
{
	h->count++;
	h->sum_ns += v;
	if (v > h->max_ns)
		h->max_ns = v;
	if (v < h->min_ns)
		h->min_ns = v;
	h->bins[hist_index(v)]++;
}

static void hist_init(struct bench_hist *h)
{
	memset(h, 0, sizeof(*h));
	h->min_ns = UINT64_MAX;
}

static void hist_merge(struct bench_hist *to, const struct bench_hist *from)
{
	to->count += from->count;
	to->sum_ns += from->sum_ns;
	to->max_ns = MAX(to->max_ns, from->max_ns);
	to->min_ns = MIN(to->min_ns, from->min_ns);
	for (unsigned i = 0; i < HIST_SIZE; i++)
		to->bins[i] += from->bins[i];
}

/* The value at quantile @q (0..1): the smallest bin holding at least
 * ceil(q * count) values, clamped to the observed min/max. */
static uint64_t hist_quantile(const struct bench_hist *h, double q)
{
	if (h->count == 0)
		return 0;
	uint64_t rank = (uint64_t)(q * (double)h->count + 0.999999);
	uint64_t seen = 0;
	rank = MAX(rank, 1);
	for (unsigned i = 0; i < HIST_SIZE; i++) {
		seen += h->bins[i];
		if (seen >= rank)
			return MAX(h->min_ns, MIN(h->max_ns, hist_value(i)));
	}
	return h->max_ns;
}

/* ---- workers ---------------------------------------------------------------- */

struct bench;
struct bench_worker;

struct bench_slot {
	struct disk_io io;
	struct iovec iov;
	struct bench_worker *w;
	uint64_t t_submit;
	bool is_write;
	bool is_flush;
};

struct bench_phase {
	enum bench_mode mode;
	uint64_t ops_limit;            /* 0 = unlimited (time-bound) */
	uint64_t duration_ns;          /* 0 = no deadline */
	unsigned select_pct;           /* sequential writes: only blocks bench_selected() */
};

struct bench_worker {
	struct bench *b;
	unsigned id;
	pthread_t thread;
	struct reactor *r;
	struct bench_slot *slots;
	void **bufs;

	/* Hot state, touched by this thread only. */
	enum bench_mode mode;
	uint32_t sectors_per_block;
	uint64_t first_block, nblocks; /* random range, in blocks */
	uint64_t seq_start, seq_end, seq_next; /* sequential part, in blocks */
	uint64_t ops_limit, ops_submitted;
	uint64_t writes_since_flush;
	uint64_t deadline_ns;
	uint64_t read_threshold;       /* randrw: read if (rand >> 32) < this (<= 2^32) */
	unsigned select_pct;           /* sequential: skip blocks not selected (100 = all) */
	unsigned inflight;
	bool stopping, finished;
	uint64_t rng[4];
	uint64_t ops_done;             /* progress; relaxed atomic for the main thread */

	/* Results of the measured phase. */
	uint64_t t_start, t_end;
	uint64_t cpu_ns;               /* this thread's CPU time in it */
	uint64_t errors;
	int first_status, first_errno;
	uint64_t first_error_sector;
	struct bench_hist hist[2];     /* [0] reads, [1] writes */
	uint64_t flushes;              /* completed --flush-every flushes */

	int setup_error;               /* -errno from the thread's setup */
	bool done;                     /* thread finished (atomic) */
};

struct bench {
	struct disk *disk;
	uint32_t shift;
	uint64_t bs;
	unsigned iodepth, nthreads;
	enum bench_mode mode;
	uint64_t range_off, range_len; /* bytes, multiples of bs */
	uint64_t duration_ns, total_ops;
	unsigned rwmix;
	uint64_t flush_every;          /* 0 = never */
	bool prefill;
	unsigned prefill_pct;          /* --prefill=PCT: share of blocks written (100) */
	struct bench_worker *workers;

	/* The start gate: workers report ready, the main thread says go (or
	 * abort when a worker failed to set up). */
	pthread_mutex_t lock;          /* protects ready, go, abort */
	pthread_cond_t cond;
	unsigned ready;
	bool go, abort;
	unsigned measuring;            /* workers still in the measured phase */
	uint64_t pcpu_end;             /* process CPU when the last one left it */
};

/* @clock in ns: CLOCK_MONOTONIC for wall time, CLOCK_THREAD_CPUTIME_ID for
 * the calling thread's CPU (on a shared machine, throughput per CPU second
 * is what compares with `openssl speed`, which reports CPU time),
 * CLOCK_PROCESS_CPUTIME_ID for the whole process's (every thread,
 * io_uring's io-wq workers included: they belong to the process). */
static inline uint64_t clock_ns(clockid_t clock)
{
	struct timespec ts;

	clock_gettime(clock, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline uint64_t now_ns(void)
{
	return clock_ns(CLOCK_MONOTONIC);
}

static inline uint64_t rotl64(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

/* xoshiro256** */
static inline uint64_t rng_next(uint64_t s[4])
{
	uint64_t result = rotl64(s[1] * 5, 7) * 9;
	uint64_t t = s[1] << 17;

	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl64(s[3], 45);
	return result;
}

static uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static void bench_io_done(struct disk_io *io);

/* True for the @pct percent of blocks a partial prefill writes: a fixed
 * pseudo-random subset, spread over the whole range. */
static inline bool bench_selected(uint64_t block, unsigned pct)
{
	uint64_t x = block;

	return pct >= 100 || splitmix64(&x) % 100 < pct;
}

/* Fills and submits @s. @now is the submit time. */
static inline void bench_submit(struct bench_worker *w, struct bench_slot *s, uint64_t now)
{
	struct disk_io *io = &s->io;
	uint64_t block;
	bool write;

	switch (w->mode) {
	case MODE_READ:
	case MODE_WRITE:
		do {
			block = w->seq_next++;
			if (w->seq_next >= w->seq_end)
				w->seq_next = w->seq_start;
		} while (unlikely(!bench_selected(block, w->select_pct)));
		write = w->mode == MODE_WRITE;
		break;
	default:
		block = w->first_block +
			(uint64_t)(((unsigned __int128)rng_next(w->rng) * w->nblocks) >> 64);
		if (w->mode == MODE_RANDRW)
			write = (rng_next(w->rng) >> 32) >= w->read_threshold;
		else
			write = w->mode == MODE_RANDWRITE;
		break;
	}

	s->is_flush = false;
	if (write && w->b->flush_every &&
	    ++w->writes_since_flush > w->b->flush_every) {
		w->writes_since_flush = 0;
		s->is_flush = true;
	}
	s->is_write = write;
	s->t_submit = now;
	io->op = s->is_flush ? DISK_OP_FLUSH : write ? DISK_OP_WRITE : DISK_OP_READ;
	io->flags = 0;
	io->sector = block * w->sectors_per_block;
	io->iov = &s->iov;
	io->iovcnt = 1;
	io->status = DISK_OK;
	io->os_errno = 0;
	w->ops_submitted++;
	w->inflight++;
	disk_submit(w->b->disk, io);
}

static void bench_io_done(struct disk_io *io)
{
	struct bench_slot *s = container_of(io, struct bench_slot, io);
	struct bench_worker *w = s->w;
	uint64_t now = now_ns();

	w->inflight--;
	if (unlikely(s->is_flush) && io->status == DISK_OK) {
		w->flushes++;
	} else if (likely(io->status == DISK_OK)) {
		hist_add(&w->hist[s->is_write], now - s->t_submit);
	} else {
		if (w->errors++ == 0) {
			w->first_status = io->status;
			w->first_errno = io->os_errno;
			w->first_error_sector = io->sector;
		}
		w->stopping = true;
	}
	__atomic_store_n(&w->ops_done, w->ops_done + 1, __ATOMIC_RELAXED);
	if (unlikely(now >= w->deadline_ns))
		w->stopping = true;
	if (likely(!w->stopping) && (w->ops_limit == 0 || w->ops_submitted < w->ops_limit)) {
		bench_submit(w, s, now);
		return;
	}
	if (w->inflight == 0) {
		w->t_end = now;
		w->finished = true;
	}
}

/* Runs one phase on this worker's reactor: all slots in flight until the
 * ops limit or the deadline. */
static int bench_phase_run(struct bench_worker *w, const struct bench_phase *ph)
{
	struct bench *b = w->b;
	uint64_t start;

	w->mode = ph->mode;
	w->select_pct = ph->select_pct ? ph->select_pct : 100;
	w->ops_limit = ph->ops_limit;
	w->ops_submitted = 0;
	w->seq_next = w->seq_start;
	w->stopping = false;
	w->finished = false;
	w->inflight = 0;
	w->errors = 0;
	w->flushes = 0;
	w->writes_since_flush = 0;
	hist_init(&w->hist[0]);
	hist_init(&w->hist[1]);
	__atomic_store_n(&w->ops_done, 0, __ATOMIC_RELAXED);

	bool seq = ph->mode == MODE_READ || ph->mode == MODE_WRITE;
	if ((seq && w->seq_end == w->seq_start) || (w->ops_limit == 0 && ph->duration_ns == 0)) {
		/* Nothing to do for this thread (fewer blocks or ops than threads). */
		w->t_start = w->t_end = now_ns();
		return 0;
	}

	start = now_ns();
	w->t_start = start;
	w->t_end = start;
	w->deadline_ns = ph->duration_ns ? start + ph->duration_ns : UINT64_MAX;
	for (unsigned i = 0; i < b->iodepth; i++) {
		if (w->ops_limit && w->ops_submitted >= w->ops_limit)
			break;
		bench_submit(w, &w->slots[i], start);
	}
	if (w->inflight == 0) {
		w->finished = true;
		return 0;
	}
	return reactor_run_until(w->r, &w->finished);
}


static void *bench_thread(void *opaque)
{
	struct bench_worker *w = opaque;
	struct bench *b = w->b;
	int ret;

	ret = reactor_new(&w->r, b->iodepth > 128 ? MIN(4096u, 2 * b->iodepth) : 0);
	if (ret < 0)
		goto gate;
	w->slots = calloc(b->iodepth, sizeof(*w->slots));
	w->bufs = calloc(b->iodepth, sizeof(*w->bufs));
	if (!w->slots || !w->bufs)
		ret = -ENOMEM;
	for (unsigned i = 0; ret == 0 && i < b->iodepth; i++) {
		struct bench_slot *s = &w->slots[i];
		w->bufs[i] = reactor_buf_get(w->r, b->bs, false);
		if (!w->bufs[i]) {
			ret = -ENOMEM;
			break;
		}
		/* Random, incompressible data for writes. */
		uint64_t *p = w->bufs[i];
		for (size_t k = 0; k < b->bs / 8; k++)
			p[k] = rng_next(w->rng);
		s->w = w;
		s->iov.iov_base = w->bufs[i];
		s->iov.iov_len = b->bs;
		s->io.done = bench_io_done;
		s->io.opaque = s;
	}
	if (ret == 0 && b->prefill) {
		struct bench_phase ph = { .mode = MODE_WRITE, .select_pct = b->prefill_pct };

		for (uint64_t blk = w->seq_start; blk < w->seq_end; blk++)
			ph.ops_limit += bench_selected(blk, b->prefill_pct);
		ret = bench_phase_run(w, &ph);
		if (ret == 0 && w->errors)
			ret = -EIO;
	}
gate:
	/* Everyone starts the measured phase together. */
	pthread_mutex_lock(&b->lock);
	w->setup_error = ret;
	b->ready++;
	pthread_cond_broadcast(&b->cond);
	while (!b->go && !b->abort)
		pthread_cond_wait(&b->cond, &b->lock);
	bool go = b->go;
	pthread_mutex_unlock(&b->lock);
	if (ret == 0 && go) {
		struct bench_phase ph = {
			.mode = b->mode,
			.duration_ns = b->total_ops ? 0 : b->duration_ns,
			.ops_limit = b->total_ops ? b->total_ops / b->nthreads +
				(w->id < b->total_ops % b->nthreads ? 1 : 0) : 0,
		};
		uint64_t cpu0 = clock_ns(CLOCK_THREAD_CPUTIME_ID);

		ret = bench_phase_run(w, &ph);
		w->cpu_ns = clock_ns(CLOCK_THREAD_CPUTIME_ID) - cpu0;
		/* The last worker out stops the process clock, before any
		 * teardown. */
		if (__atomic_sub_fetch(&b->measuring, 1, __ATOMIC_ACQ_REL) == 0)
			__atomic_store_n(&b->pcpu_end, clock_ns(CLOCK_PROCESS_CPUTIME_ID),
					 __ATOMIC_RELEASE);
		if (ret < 0)
			w->setup_error = ret;
	}
	if (w->bufs) {
		for (unsigned i = 0; i < b->iodepth; i++)
			reactor_buf_put(w->r, w->bufs[i], b->bs);
	}
	free(w->bufs);
	free(w->slots);
	w->bufs = NULL;
	w->slots = NULL;
	reactor_free(w->r);
	w->r = NULL;
	__atomic_store_n(&w->done, true, __ATOMIC_RELEASE);
	return NULL;
}

/* ---- safety ----------------------------------------------------------------- */

/* True when writes through @s can only land in RAM. */
static bool spec_writes_to_ram(const struct spec *s)
{
	const char *k = s->kind ? s->kind->name : "";

	if (strcmp(k, "mem") == 0 || strcmp(k, "memdiff") == 0)
		return true;
	if (strcmp(k, "delay") == 0 || strcmp(k, "prwrap") == 0 || strcmp(k, "crypt") == 0)
		return s->inner && spec_writes_to_ram(s->inner);
	if (strcmp(k, "striped") == 0 && s->nmembers > 0) {
		for (unsigned i = 0; i < s->nmembers; i++)
			if (!spec_writes_to_ram(s->members[i]))
				return false;
		return true;
	}
	return false;
}

/* ---- results ------------------------------------------------------------------ */

struct bench_result {
	struct bench_hist hist[2];
	uint64_t elapsed_ns;
	uint64_t cpu_ns;               /* summed over the workers */
	uint64_t process_cpu_ns;       /* the whole process, gate open to the last
	                                * worker's end of the measured phase */
	uint64_t errors;
	uint64_t flushes;
};

static void fmt_ns(uint64_t ns, char *buf, size_t len)
{
	if (ns < 10000)
		snprintf(buf, len, "%" PRIu64 "ns", ns);
	else if (ns < 10000000)
		snprintf(buf, len, "%.1fus", (double)ns / 1e3);
	else if (ns < 10000000000ull)
		snprintf(buf, len, "%.1fms", (double)ns / 1e6);
	else
		snprintf(buf, len, "%.2fs", (double)ns / 1e9);
}

static void print_text_dir(const char *name, const struct bench_hist *h, uint64_t bs, double secs)
{
	char p50[24], p99[24], p999[24], mean[24], max[24];
	double iops = secs > 0 ? (double)h->count / secs : 0;

	fmt_ns(hist_quantile(h, 0.50), p50, sizeof(p50));
	fmt_ns(hist_quantile(h, 0.99), p99, sizeof(p99));
	fmt_ns(hist_quantile(h, 0.999), p999, sizeof(p999));
	fmt_ns(h->count ? h->sum_ns / h->count : 0, mean, sizeof(mean));
	fmt_ns(h->max_ns, max, sizeof(max));
	printf("%-6s IOPS=%.0f BW=%.1fMiB/s ops=%" PRIu64 " lat mean=%s p50=%s p99=%s "
	       "p99.9=%s max=%s\n", name, iops, iops * (double)bs / 1048576.0, h->count,
	       mean, p50, p99, p999, max);
}

static json_t *json_dir(const struct bench_hist *h, uint64_t bs, double secs)
{
	double iops = secs > 0 ? (double)h->count / secs : 0;

	return json_pack("{s:I, s:f, s:f, s:I, s:{s:I, s:I, s:I, s:I, s:I, s:I}}",
			 "ops", (json_int_t)h->count, "iops", iops,
			 "mib_per_s", iops * (double)bs / 1048576.0, "bytes", (json_int_t)(h->count * bs),
			 "lat_ns", "mean", (json_int_t)(h->count ? h->sum_ns / h->count : 0),
			 "min", (json_int_t)(h->count ? h->min_ns : 0),
			 "p50", (json_int_t)hist_quantile(h, 0.50), "p99", (json_int_t)hist_quantile(h, 0.99),
			 "p99.9", (json_int_t)hist_quantile(h, 0.999), "max", (json_int_t)h->max_ns);
}

static void bench_print(const struct bench *b, const char *spec_text, const struct bench_result *res,
			bool json)
{
	struct bench_hist all;
	double secs = (double)res->elapsed_ns / 1e9;

	hist_init(&all);
	hist_merge(&all, &res->hist[0]);
	hist_merge(&all, &res->hist[1]);
	if (json) {
		json_t *o = json_pack("{s:o, s:s, s:I, s:i, s:i, s:I, s:I, s:i, s:b, s:f, s:f, s:f, "
				      "s:I, s:I, s:f, s:f, s:o, s:o, s:o, s:I, s:I}",
			"spec", tool_json_str(spec_text), "rw", mode_names[b->mode],
			"bs", (json_int_t)b->bs, "iodepth", (int)b->iodepth, "threads", (int)b->nthreads,
			"range_offset", (json_int_t)b->range_off, "range_bytes", (json_int_t)b->range_len,
			"rwmix_read", (int)(b->mode == MODE_RANDRW ? b->rwmix :
			 (b->mode == MODE_READ || b->mode == MODE_RANDREAD ? 100 : 0)),
			"prefill", (int)b->prefill, "elapsed_s", secs,
			"cpu_s", (double)res->cpu_ns / 1e9, "process_cpu_s", (double)res->process_cpu_ns / 1e9,
			"errors", (json_int_t)res->errors, "ops", (json_int_t)all.count,
			"iops", secs > 0 ? (double)all.count / secs : 0.0,
			"mib_per_s", secs > 0 ? (double)all.count * (double)b->bs / secs / 1048576.0 : 0.0,
			"read", json_dir(&res->hist[0], b->bs, secs),
			"write", json_dir(&res->hist[1], b->bs, secs),
			"total", json_dir(&all, b->bs, secs),
			"flush_every", (json_int_t)b->flush_every, "flushes", (json_int_t)res->flushes);

		if (!o || tool_json_print(stdout, o, true) < 0)
			fprintf(stderr, "diskstack bench: cannot print the JSON result\n");
		json_decref(o);
		return;
	}
	char range[32];
	tool_human_size(b->range_len, range, sizeof(range));
	printf("bench %s: rw=%s bs=%" PRIu64 " iodepth=%u threads=%u range=%s", spec_text,
	       mode_names[b->mode], b->bs, b->iodepth, b->nthreads, range);
	if (b->mode == MODE_RANDRW)
		printf(" rwmix=%u", b->rwmix);
	printf(" time=%.2fs cpu=%.2fs process-cpu=%.2fs\n", secs, (double)res->cpu_ns / 1e9,
	       (double)res->process_cpu_ns / 1e9);
	if (res->hist[0].count)
		print_text_dir("read:", &res->hist[0], b->bs, secs);
	if (res->hist[1].count)
		print_text_dir("write:", &res->hist[1], b->bs, secs);
	if ((res->hist[0].count && res->hist[1].count) || all.count == 0)
		print_text_dir("total:", &all, b->bs, secs);
	if (b->flush_every)
		printf("flush: %" PRIu64 " completed (one after every %" PRIu64 " writes per thread)\n",
		       res->flushes, b->flush_every);
}

/* ---- the command ---------------------------------------------------------------- */

static int parse_mode(const char *s, enum bench_mode *out)
{
	for (unsigned i = 0; i < ARRAY_SIZE(mode_names); i++) {
		if (strcmp(s, mode_names[i]) == 0) {
			*out = (enum bench_mode)i;
			return 0;
		}
	}
	return -EINVAL;
}

/* "[OFFSET+]LENGTH" */
static int parse_range(const char *s, uint64_t *off, uint64_t *len)
{
	const char *plus = strchr(s, '+');

	if (!plus) {
		*off = 0;
		return tool_parse_size(s, len);
	}
	char buf[64];
	size_t n = (size_t)(plus - s);
	if (n == 0 || n >= sizeof(buf))
		return -EINVAL;
	memcpy(buf, s, n);
	buf[n] = '\0';
	if (tool_parse_size(buf, off) < 0)
		return -EINVAL;
	return tool_parse_size(plus + 1, len);
}

static int bench_run(struct bench *b, const char *spec_text, bool json, bool quiet)
{
	struct bench_result res;
	uint64_t nblocks = b->range_len / b->bs;
	uint64_t first_block = b->range_off / b->bs;
	unsigned started = 0;
	int ret = 0;

	memset(&res, 0, sizeof(res));
	b->workers = calloc(b->nthreads, sizeof(*b->workers));
	if (!b->workers)
		return tool_error(cmd_name, "out of memory");
	pthread_mutex_init(&b->lock, NULL);
	pthread_cond_init(&b->cond, NULL);
	b->ready = 0;
	b->go = b->abort = false;

	uint64_t seed = now_ns() ^ ((uint64_t)getpid() << 32);
	for (unsigned i = 0; i < b->nthreads; i++) {
		struct bench_worker *w = &b->workers[i];
		w->b = b;
		w->id = i;
		w->sectors_per_block = (uint32_t)(b->bs >> b->shift);
		w->first_block = first_block;
		w->nblocks = nblocks;
		w->seq_start = first_block + nblocks * i / b->nthreads;
		w->seq_end = first_block + nblocks * (i + 1) / b->nthreads;
		w->read_threshold = ((uint64_t)b->rwmix << 32) / 100;
		for (int k = 0; k < 4; k++)
			w->rng[k] = splitmix64(&seed);
	}
	if (b->prefill && !quiet && !json) {
		char h[32];
		tool_human_size(b->range_len, h, sizeof(h));
		fprintf(stderr, "diskstack bench: prefilling %s...\n", h);
	}
	for (unsigned i = 0; i < b->nthreads; i++) {
		if (pthread_create(&b->workers[i].thread, NULL, bench_thread, &b->workers[i]) != 0) {
			ret = tool_error(cmd_name, "cannot create thread %u", i);
			break;
		}
		started++;
	}
	/* Open the gate once every started worker is ready (prefilled). */
	bool setup_ok = started == b->nthreads;
	pthread_mutex_lock(&b->lock);
	while (b->ready < started)
		pthread_cond_wait(&b->cond, &b->lock);
	for (unsigned i = 0; i < started; i++)
		if (b->workers[i].setup_error)
			setup_ok = false;
	uint64_t pcpu0 = clock_ns(CLOCK_PROCESS_CPUTIME_ID);

	b->measuring = started;
	if (setup_ok)
		b->go = true;
	else
		b->abort = true;
	pthread_cond_broadcast(&b->cond);
	pthread_mutex_unlock(&b->lock);

	/* Progress while the workers run. */
	struct progress prog;
	if (b->total_ops)
		progress_start_unit(&prog, "bench", b->total_ops, quiet || !setup_ok,
				    PROGRESS_COUNT);
	else
		progress_start_unit(&prog, "bench", b->duration_ns, quiet || !setup_ok,
				    PROGRESS_TIME_NS);
	uint64_t t0 = now_ns();
	for (;;) {
		bool all_done = true;
		uint64_t ops = 0;
		for (unsigned i = 0; i < started; i++) {
			if (!__atomic_load_n(&b->workers[i].done, __ATOMIC_ACQUIRE))
				all_done = false;
			ops += __atomic_load_n(&b->workers[i].ops_done, __ATOMIC_RELAXED);
		}
		if (all_done)
			break;
		progress_update(&prog, b->total_ops ? ops : MIN(now_ns() - t0, b->duration_ns));
		struct timespec ts = { 0, 50000000 };
		nanosleep(&ts, NULL);
	}
	progress_update(&prog, prog.total);
	progress_finish(&prog);
	for (unsigned i = 0; i < started; i++)
		pthread_join(b->workers[i].thread, NULL);
	res.process_cpu_ns =
		(b->pcpu_end ? b->pcpu_end : clock_ns(CLOCK_PROCESS_CPUTIME_ID)) - pcpu0;
	pthread_cond_destroy(&b->cond);
	pthread_mutex_destroy(&b->lock);

	/* Merge. */
	hist_init(&res.hist[0]);
	hist_init(&res.hist[1]);
	for (unsigned i = 0; i < b->nthreads; i++) {
		struct bench_worker *w = &b->workers[i];
		if (i < started && w->setup_error && !ret) {
			ret = tool_error(cmd_name, "worker %u failed: %s%s", i, strerror(-w->setup_error),
					 b->prefill && w->errors ? " (during --prefill)" : "");
		}
		hist_merge(&res.hist[0], &w->hist[0]);
		hist_merge(&res.hist[1], &w->hist[1]);
		res.errors += w->errors;
		res.flushes += w->flushes;
		res.elapsed_ns = MAX(res.elapsed_ns, w->t_end - w->t_start);
		res.cpu_ns += w->cpu_ns;
		if (w->errors && !ret) {
			ret = tool_error(cmd_name, "%" PRIu64 " request(s) failed; first: %s at sector "
					 "%" PRIu64 "%s%s", w->errors, disk_status_str(w->first_status),
					 w->first_error_sector, w->first_errno ? ": " : "",
					 w->first_errno ? strerror(w->first_errno) : "");
		}
	}
	if (ret == 0)
		bench_print(b, spec_text, &res, json);
	free(b->workers);
	b->workers = NULL;
	return ret;
}

int cmd_bench(int argc, char **argv)
{
	enum {
		OPT_RW = 256, OPT_BS, OPT_IODEPTH, OPT_THREADS, OPT_TIME, OPT_OPS, OPT_SIZE,
		OPT_RWMIX, OPT_JSON, OPT_PREFILL, OPT_FORCE_WRITE, OPT_FLUSH_EVERY,
	};
	static const struct option longopts[] = {
		{ "rw",          required_argument, NULL, OPT_RW },
		{ "bs",          required_argument, NULL, OPT_BS },
		{ "iodepth",     required_argument, NULL, OPT_IODEPTH },
		{ "threads",     required_argument, NULL, OPT_THREADS },
		{ "time",        required_argument, NULL, OPT_TIME },
		{ "ops",         required_argument, NULL, OPT_OPS },
		{ "size",        required_argument, NULL, OPT_SIZE },
		{ "rwmix",       required_argument, NULL, OPT_RWMIX },
		{ "flush-every", required_argument, NULL, OPT_FLUSH_EVERY },
		{ "json",        no_argument,       NULL, OPT_JSON },
		{ "prefill",     optional_argument, NULL, OPT_PREFILL },
		{ "force-write", no_argument,       NULL, OPT_FORCE_WRITE },
		{ "quiet",       no_argument,       NULL, 'q' },
		{ "help",        no_argument,       NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct bench b;
	bool json = false, quiet = false, force_write = false, have_time = false, have_size = false;
	uint64_t v, size_off = 0, size_len = 0;
	int opt, ret;

	memset(&b, 0, sizeof(b));
	b.mode = MODE_RANDREAD;
	b.bs = 4096;
	b.iodepth = 32;
	b.nthreads = 1;
	b.duration_ns = BENCH_DEFAULT_TIME_NS;
	b.rwmix = 70;

	opterr = 0;
	optind = 1;
	while ((opt = getopt_long(argc, argv, ":qh", longopts, NULL)) != -1) {
		switch (opt) {
		case OPT_RW:
			if (parse_mode(optarg, &b.mode) < 0)
				return tool_usage_error(cmd_name, "bad --rw '%s' (read, write, randread, "
							"randwrite or randrw)", optarg);
			break;
		case OPT_BS:
			if (tool_parse_size(optarg, &b.bs) < 0 || b.bs == 0 || b.bs > BENCH_MAX_BS)
				return tool_usage_error(cmd_name, "bad --bs '%s' (a size up to 64M)", optarg);
			break;
		case OPT_IODEPTH:
			if (tool_parse_uint(optarg, 1, BENCH_MAX_IODEPTH, &v) < 0)
				return tool_usage_error(cmd_name, "bad --iodepth '%s' (1 to %u)", optarg,
							BENCH_MAX_IODEPTH);
			b.iodepth = (unsigned)v;
			break;
		case OPT_THREADS:
			if (tool_parse_uint(optarg, 1, BENCH_MAX_THREADS, &v) < 0)
				return tool_usage_error(cmd_name, "bad --threads '%s' (1 to %u)", optarg,
							BENCH_MAX_THREADS);
			b.nthreads = (unsigned)v;
			break;
		case OPT_TIME:
			if (tool_parse_duration_ns(optarg, &b.duration_ns) < 0 || b.duration_ns == 0)
				return tool_usage_error(cmd_name, "bad --time '%s' (e.g. 5s, 500ms, 1m)",
							optarg);
			have_time = true;
			break;
		case OPT_OPS:
			if (tool_parse_uint(optarg, 1, UINT64_MAX, &b.total_ops) < 0)
				return tool_usage_error(cmd_name, "bad --ops '%s' (a positive count)", optarg);
			break;
		case OPT_SIZE:
			if (parse_range(optarg, &size_off, &size_len) < 0 || size_len == 0)
				return tool_usage_error(cmd_name, "bad --size '%s' ([OFFSET+]LENGTH, e.g. "
							"64M or 1G+64M)", optarg);
			have_size = true;
			break;
		case OPT_RWMIX:
			if (tool_parse_uint(optarg, 0, 100, &v) < 0)
				return tool_usage_error(cmd_name, "bad --rwmix '%s' (0 to 100)", optarg);
			b.rwmix = (unsigned)v;
			break;
		case OPT_FLUSH_EVERY:
			if (tool_parse_uint(optarg, 1, UINT64_MAX, &b.flush_every) < 0)
				return tool_usage_error(cmd_name, "bad --flush-every '%s' (a positive "
							"count)", optarg);
			break;
		case OPT_JSON:
			json = true;
			break;
		case OPT_PREFILL: {
			char *end;
			unsigned long pct = 100;

			if (optarg) {
				errno = 0;
				pct = strtoul(optarg, &end, 10);
				if (errno || end == optarg || (*end && strcmp(end, "%") != 0) ||
				    pct < 1 || pct > 100)
					return tool_usage_error("bench",
						"--prefill=PCT takes a percentage from 1 to 100, not '%s'", optarg);
			}
			b.prefill = true;
			b.prefill_pct = (unsigned)pct;
			break;
		}
		case OPT_FORCE_WRITE:
			force_write = true;
			break;
		case 'q':
			quiet = true;
			break;
		case 'h':
			bench_usage(stdout);
			return 0;
		default:
			return tool_bad_option(cmd_name, opt, argv);
		}
	}
	if (optind >= argc)
		return tool_usage_error(cmd_name, "missing SPEC");
	if (argc - optind > 1)
		return tool_usage_error(cmd_name, "too many arguments ('%s')", argv[optind + 1]);
	if (have_time && b.total_ops)
		return tool_usage_error(cmd_name, "--time and --ops cannot be used together");

	const char *text = argv[optind];
	bool writes = b.mode == MODE_WRITE || b.mode == MODE_RANDWRITE ||
		      (b.mode == MODE_RANDRW && b.rwmix < 100) || b.prefill;
	struct spec *spec = NULL;
	struct reactor *r = NULL;
	struct disk *d = NULL;

	if ((ret = tool_parse_spec(cmd_name, "SPEC", text, &spec)) != 0)
		return ret;
	if (writes && !spec_writes_to_ram(spec)) {
		if (!force_write) {
			ret = tool_usage_error(cmd_name, "refusing to write to '%s': bench writes "
					       "DESTROY the data on it. Use a RAM disk (mem:SIZE) or a "
					       "RAM overlay (memdiff:%s), or pass --force-write if you "
					       "mean it", text, text);
			goto out;
		}
		fprintf(stderr, "diskstack bench: WARNING: --force-write: the data on '%s' in the "
			"tested range will be overwritten\n", text);
	}

	int rc = reactor_new(&r, 0);
	if (rc < 0) {
		ret = tool_error(cmd_name, "cannot create a reactor: %s", strerror(-rc));
		goto out;
	}
	if ((ret = tool_open_spec(cmd_name, "SPEC", spec, !writes, &d)) != 0)
		goto out;

	const struct disk_info *info = disk_get_info(d);
	uint64_t disk_bytes = disk_sector_count(d) << info->sector_shift;
	if (writes && info->read_only) {
		ret = tool_usage_error(cmd_name, "'%s' is read-only; --rw %s%s writes", text,
				       mode_names[b.mode], b.prefill ? " or --prefill" : "");
		goto out;
	}
	if (b.bs % info->sector_size != 0) {
		ret = tool_usage_error(cmd_name, "--bs %" PRIu64 " is not a multiple of the sector "
				       "size (%u)", b.bs, info->sector_size);
		goto out;
	}
	if (!have_size) {
		size_off = 0;
		size_len = disk_bytes;
	}
	if (size_off % b.bs != 0) {
		ret = tool_usage_error(cmd_name, "--size offset %" PRIu64 " is not a multiple of "
				       "--bs (%" PRIu64 ")", size_off, b.bs);
		goto out;
	}
	uint64_t range_end;
	if (ADD_OVERFLOW(size_off, size_len, &range_end) || range_end > disk_bytes) {
		ret = tool_usage_error(cmd_name, "--size range %" PRIu64 "+%" PRIu64 " is past the "
				       "end of the disk (%" PRIu64 " bytes)", size_off, size_len,
				       disk_bytes);
		goto out;
	}
	b.range_off = size_off;
	b.range_len = size_len / b.bs * b.bs;
	if (b.range_len == 0) {
		ret = tool_usage_error(cmd_name, "the range (%" PRIu64 " bytes) is smaller than "
				       "--bs (%" PRIu64 ")", size_len, b.bs);
		goto out;
	}
	b.disk = d;
	b.shift = info->sector_shift;
	ret = bench_run(&b, text, json, quiet);
	if (ret == 0 && (fflush(stdout) != 0 || ferror(stdout)))
		ret = tool_error(cmd_name, "error writing output");

out:
	disk_unref(d);
	reactor_free(r);
	spec_free(spec);
	return ret;
}
