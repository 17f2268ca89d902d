/* SPDX-License-Identifier: MIT */
/*
 * error.c: the fault-injection decorator (error.h, docs/decorator-error.md):
 * reads, writes, flushes and unmaps fail by rule, everything else passes.
 *
 * Notes on the design
 * -------------------
 * - A rule set (struct error_set) is immutable once built, except for the
 *   counters of each rule, which are atomics. error_disk_set() parses the
 *   new text into a new set outside any lock, swaps the pointer under the
 *   write side of @lock and frees the old set after the swap: no request
 *   can still be reading it, since requests only look at a set under the
 *   read side. A request holds the read side only while it decides (a few
 *   comparisons and atomic increments); what it then does (fail now, fail
 *   after a delay, pass through) needs nothing from the set.
 * - @armed mirrors "a set with rules is installed" so that a disk without
 *   rules (after error_disk_clear, or error:: never given) costs one
 *   relaxed load per request and no lock. A request that reads a stale
 *   @armed is one decided before the swap, which is allowed.
 * - The counters give after=, count=/once and rate= their meaning across
 *   every reactor at once: the Nth matching request is the Nth increment of
 *   @matched whichever thread it came from. The rate draws from a
 *   counter-based generator (splitmix64 of seed + draw number), so with
 *   seed= the sequence of decisions is fixed for a fixed order of requests.
 * - A delayed failure waits on a reactor timer in io->hctx, as the delay
 *   decorator does (no allocation, no sleeping thread).
 * - Write-zeroes, flush, unmap and CACHE have ops of their own even where
 *   they only forward: a NULL op passes through only when the disk below
 *   has one, and the dispatcher's emulations would otherwise send writes
 *   back through this disk and count them against write rules. Everything
 *   else (block status, eject, persistent reservations, the size) is NULL
 *   and passes through.
 * - Unmap on a disk whose unmap behaviour is IGNORED never reaches this
 *   disk (the dispatcher answers it), so unmap rules cannot fire there.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/compiler.h"
#include "common/log.h"
#include "storage/decorators/error.h"
#include "storage/kind.h"

/* ---- the rules ----------------------------------------------------------------- */

#define OPBIT(op) (1u << (op))
#define RATE_ONE 1000000u          /* rate= in parts per million */

static const struct error_op_name {
	const char *name;
	uint32_t ops;
} error_ops[] = {
	{ "read", OPBIT(DISK_OP_READ) },
	/* A write-zeroes writes too (and may be emulated with writes below). */
	{ "write", OPBIT(DISK_OP_WRITE) | OPBIT(DISK_OP_WRITE_ZEROES) },
	{ "flush", OPBIT(DISK_OP_FLUSH) },
	{ "unmap", OPBIT(DISK_OP_UNMAP) },
	{ "trim", OPBIT(DISK_OP_UNMAP) },
	{ "all", OPBIT(DISK_OP_READ) | OPBIT(DISK_OP_WRITE) | OPBIT(DISK_OP_WRITE_ZEROES) |
		 OPBIT(DISK_OP_FLUSH) | OPBIT(DISK_OP_UNMAP) },
};
#define OPS_HINT "valid operations: read, write, flush, unmap (or trim), all"

static const struct error_status_name {
	const char *name;
	int status;                    /* enum disk_status */
	int os_errno;                  /* with DISK_IO_ERROR */
} error_statuses[] = {
	{ "eio", DISK_IO_ERROR, EIO },
	{ "enospc", DISK_IO_ERROR, ENOSPC },
	{ "edquot", DISK_IO_ERROR, EDQUOT },
	{ "efbig", DISK_IO_ERROR, EFBIG },
	{ "eperm", DISK_IO_ERROR, EPERM },
	{ "eacces", DISK_IO_ERROR, EACCES },
	{ "erofs", DISK_IO_ERROR, EROFS },
	{ "enomem", DISK_IO_ERROR, ENOMEM },
	{ "einval", DISK_IO_ERROR, EINVAL },
	{ "enodev", DISK_IO_ERROR, ENODEV },
	{ "enxio", DISK_IO_ERROR, ENXIO },
	{ "etimedout", DISK_IO_ERROR, ETIMEDOUT },
	{ "eagain", DISK_IO_ERROR, EAGAIN },
	{ "ebusy", DISK_IO_ERROR, EBUSY },
	{ "eshutdown", DISK_IO_ERROR, ESHUTDOWN },
	{ "enotsup", DISK_IO_ERROR, ENOTSUP },
	{ "enodata", DISK_IO_ERROR, ENODATA },
	{ "eilseq", DISK_IO_ERROR, EILSEQ },
	{ "medium", DISK_MEDIUM_ERROR, 0 },
	{ "readonly", DISK_READ_ONLY, 0 },
};
#define STATUS_HINT "valid statuses: eio, enospc, edquot, efbig, eperm, eacces, erofs, enomem, " \
	"einval, enodev, enxio, etimedout, eagain, ebusy, eshutdown, enotsup, enodata, eilseq, " \
	"medium, readonly"
#define OPTIONS_HINT "valid options: rate=<p>, range=<first>[-<last>], after=<n>, once, " \
	"count=<n>, delay=<time>, seed=<n>"
#define RULE_HINT "a rule is <ops>:<status>[;<option>...], rules are separated by '/'"

struct error_rule {
	uint8_t op_name;               /* index in error_ops */
	uint8_t status_name;           /* index in error_statuses */
	uint32_t ops;                  /* OPBIT()s */
	uint32_t rate_ppm;             /* RATE_ONE: always */
	bool has_range, has_seed, once;
	uint64_t first, last;          /* range=, inclusive LBAs */
	uint64_t after;                /* matching requests let through first */
	uint64_t count;                /* failures at most (0: no limit) */
	uint64_t delay_us;             /* before failing */
	uint64_t seed;
	_Atomic uint64_t matched;      /* requests that matched ops and range */
	_Atomic uint64_t injected;     /* of those, failed */
	_Atomic uint64_t draws;        /* numbers drawn for rate= */
};

struct error_set {
	unsigned n;
	struct error_rule rule[];
};

static bool error_is(const char *s, size_t len, const char *lit)
{
	return strlen(lit) == len && memcmp(s, lit, len) == 0;
}

/* Decimal digits, the whole of [s, s + len). */
static int error_parse_u64(const char *s, size_t len, uint64_t *out)
{
	uint64_t v = 0;

	if (len == 0)
		return -EINVAL;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -EINVAL;
		if (MUL_OVERFLOW(v, 10, &v) || ADD_OVERFLOW(v, (uint64_t)(s[i] - '0'), &v))
			return -ERANGE;
	}
	*out = v;
	return 0;
}

/* A probability: "0.25", "1", ".5" or "12.5%", into parts per million. */
static int error_parse_rate(const char *s, size_t len, uint32_t *ppm)
{
	bool percent = len > 0 && s[len - 1] == '%';
	unsigned decimals = percent ? 4 : 6;
	uint64_t whole = 0, frac = 0;
	const char *dot;
	size_t wlen, flen;

	if (percent)
		len--;
	dot = memchr(s, '.', len);
	wlen = dot ? (size_t)(dot - s) : len;
	flen = dot ? len - wlen - 1 : 0;
	if (wlen + flen == 0 || (dot && flen == 0) || flen > decimals)
		return -EINVAL;
	if (wlen && error_parse_u64(s, wlen, &whole) < 0)
		return -EINVAL;
	if (flen && error_parse_u64(dot + 1, flen, &frac) < 0)
		return -EINVAL;
	if (whole > (percent ? 100 : 1))
		return -ERANGE;
	for (size_t i = flen; i < decimals; i++)
		frac *= 10;
	/* 1 in millionths is 100 in ten-thousandths of a percent. */
	whole = whole * (percent ? 10000 : RATE_ONE) + frac;
	if (whole > RATE_ONE)
		return -ERANGE;
	*ppm = (uint32_t)whole;
	return 0;
}

/* The options, in the order of error_option_names. */
enum { OPT_RATE, OPT_RANGE, OPT_AFTER, OPT_ONCE, OPT_COUNT, OPT_DELAY, OPT_SEED, OPT_COUNT_ };
static const char *const error_option_names[OPT_COUNT_] = {
	"rate", "range", "after", "once", "count", "delay", "seed",
};

/* One option at [o, o + olen) of @t. @seen: bits of the options given. */
static int error_parse_option(const char *t, size_t o, size_t olen, struct error_rule *r,
			      unsigned *seen, struct spec_arg_error *b)
{
	const char *const *names = error_option_names;
	const char *eq = memchr(t + o, '=', olen);
	size_t nlen = eq ? (size_t)(eq - (t + o)) : olen;
	size_t v = o + nlen + 1, vlen = eq ? olen - nlen - 1 : 0;
	unsigned which = OPT_COUNT_;
	int rc;

	for (unsigned i = 0; i < OPT_COUNT_; i++)
		if (error_is(t + o, nlen, names[i]))
			which = i;
	if (which == OPT_COUNT_)
		return spec_arg_fail(b, o, olen, "unknown error rule option", OPTIONS_HINT);
	if (*seen & (1u << which))
		return spec_arg_fail(b, o, olen, "duplicate error rule option", NULL);
	*seen |= 1u << which;
	if (which == OPT_ONCE) {        /* a flag */
		if (eq)
			return spec_arg_fail(b, o, olen, "'once' takes no value", "write ;once");
		if (*seen & (1u << OPT_COUNT))
			return spec_arg_fail(b, o, olen, "second failure limit", "once is count=1");
		r->once = true;
		r->count = 1;
		return 0;
	}
	if (!eq || vlen == 0)
		return spec_arg_fail(b, o, olen, "error rule option needs a value", OPTIONS_HINT);
	switch (which) {
	case OPT_RATE:
		rc = error_parse_rate(t + v, vlen, &r->rate_ppm);
		if (rc < 0)
			return spec_arg_fail(b, v, vlen, "bad rate",
					     "a rate is a probability from 0 to 1 (0.25) or a percentage (25%), "
					     "at most 6 decimals");
		return 0;
	case OPT_RANGE: {
		const char *dash = memchr(t + v, '-', vlen);
		size_t flen = dash ? (size_t)(dash - (t + v)) : vlen;

		if (error_parse_u64(t + v, flen, &r->first) < 0 ||
		    (dash && error_parse_u64(dash + 1, vlen - flen - 1, &r->last) < 0))
			return spec_arg_fail(b, v, vlen, "bad range",
					     "a range is <first>[-<last>], inclusive sector numbers");
		if (!dash)
			r->last = r->first;
		if (r->last < r->first)
			return spec_arg_fail(b, v, vlen, "empty range",
					     "the last sector comes before the first");
		r->has_range = true;
		return 0;
	}
	case OPT_AFTER:
		if (error_parse_u64(t + v, vlen, &r->after) < 0)
			return spec_arg_fail(b, v, vlen, "bad after",
					     "after=<n> lets the first n requests pass");
		return 0;
	case OPT_COUNT:
		if (*seen & (1u << OPT_ONCE))
			return spec_arg_fail(b, o, olen, "second failure limit", "once is count=1");
		if (error_parse_u64(t + v, vlen, &r->count) < 0 || r->count == 0)
			return spec_arg_fail(b, v, vlen, "bad count",
					     "count=<n> fails at most n requests, n >= 1");
		return 0;
	case OPT_DELAY:
		rc = spec_parse_time_us(t + v, vlen, &r->delay_us);
		if (rc < 0 || r->delay_us > ERROR_MAX_DELAY_US)
			return spec_arg_fail(b, v, vlen, "bad delay",
					     "a time is digits with an optional ms or us (5, 500us), at most one hour");
		return 0;
	case OPT_SEED:
		if (error_parse_u64(t + v, vlen, &r->seed) < 0)
			return spec_arg_fail(b, v, vlen, "bad seed", "a seed is a decimal number");
		r->has_seed = true;
		return 0;
	}
	return spec_arg_fail(b, o, olen, "unknown error rule option", OPTIONS_HINT);
}

/* One rule at [off, end) of @t. */
static int error_parse_rule(const char *t, size_t off, size_t end, struct error_rule *r,
			    struct spec_arg_error *b)
{
	const char *colon = memchr(t + off, ':', end - off);
	size_t s, semi;
	unsigned seen = 0;
	bool found = false;
	int rc;

	memset(r, 0, sizeof(*r));
	r->rate_ppm = RATE_ONE;
	if (end == off)
		return spec_arg_fail(b, off, 0, "empty error rule", RULE_HINT);
	if (!colon)
		return spec_arg_fail(b, off, end - off, "missing ':<status>' in error rule",
				     RULE_HINT);
	for (unsigned i = 0; i < ARRAY_SIZE(error_ops); i++)
		if (error_is(t + off, (size_t)(colon - (t + off)), error_ops[i].name)) {
			r->op_name = (uint8_t)i;
			r->ops = error_ops[i].ops;
			found = true;
		}
	if (!found)
		return spec_arg_fail(b, off, (size_t)(colon - (t + off)),
				     colon == t + off ? "missing operation" : "unknown operation", OPS_HINT);
	s = (size_t)(colon - t) + 1;
	semi = s;
	while (semi < end && t[semi] != ';' && t[semi] != ':')
		semi++;
	found = false;
	for (unsigned i = 0; i < ARRAY_SIZE(error_statuses); i++)
		if (error_is(t + s, semi - s, error_statuses[i].name)) {
			r->status_name = (uint8_t)i;
			found = true;
		}
	if (!found)
		return spec_arg_fail(b, s, semi - s, semi == s ? "missing status" : "unknown status",
				     STATUS_HINT);
	while (semi < end) {
		size_t o = semi + 1, next = o;

		if (t[semi] == ':')
			return spec_arg_fail(b, semi, 1, "unexpected ':' in error rule", RULE_HINT);
		while (next < end && t[next] != ';' && t[next] != ':')
			next++;
		if (next == o)
			return spec_arg_fail(b, semi, 1, "empty error rule option", OPTIONS_HINT);
		rc = error_parse_option(t, o, next - o, r, &seen, b);
		if (rc < 0)
			return rc;
		semi = next;
	}
	return 0;
}

/* Parses @len bytes of @t into a new set (NULL for no rules) or fills @b. */
static int error_parse(const char *t, size_t len, struct error_set **out,
		       struct spec_arg_error *b)
{
	struct error_set *set = NULL;
	unsigned n = 1;
	size_t off = 0;
	int rc;

	*out = NULL;
	if (len == 0)
		return 0;
	for (size_t i = 0; i < len; i++)
		if (t[i] == '/')
			n++;
	if (n > ERROR_MAX_RULES)
		return spec_arg_fail(b, 0, len, "too many error rules", "at most 32 rules");
	set = calloc(1, sizeof(*set) + n * sizeof(set->rule[0]));
	if (!set)
		return -ENOMEM;
	set->n = n;
	for (unsigned i = 0; i < n; i++) {
		const char *slash = memchr(t + off, '/', len - off);
		size_t end = slash ? (size_t)(slash - t) : len;

		rc = error_parse_rule(t, off, end, &set->rule[i], b);
		if (rc < 0) {
			free(set);
			return rc;
		}
		off = end + 1;
	}
	*out = set;
	return 0;
}

int error_rules_check(const char *text, size_t len, size_t *bad_off, size_t *bad_len,
		      const char **what, const char **hint)
{
	struct spec_arg_error b = { 0 };
	struct error_set *set;
	int rc = error_parse(text, len, &set, &b);

	free(set);
	if (rc == -EINVAL) {
		if (bad_off)
			*bad_off = b.off;
		if (bad_len)
			*bad_len = b.len;
		if (what)
			*what = b.what;
		if (hint)
			*hint = b.hint;
	}
	return rc;
}

/* The canonical text of @set into @buf of @len bytes; returns the length
 * it needs (without the NUL), as snprintf. */
static size_t error_format(const struct error_set *set, char *buf, size_t len)
{
	size_t used = 0;

#define PUT(...) do { \
		int n_ = snprintf(buf + MIN(used, len), len - MIN(used, len), __VA_ARGS__); \
		used += n_ > 0 ? (size_t)n_ : 0; \
	} while (0)
	if (len)
		buf[0] = '\0';
	for (unsigned i = 0; set && i < set->n; i++) {
		const struct error_rule *r = &set->rule[i];

		PUT("%s%s:%s", i ? "/" : "", error_ops[r->op_name].name,
		    error_statuses[r->status_name].name);
		if (r->rate_ppm != RATE_ONE) {
			char frac[8];
			size_t fl;

			snprintf(frac, sizeof(frac), "%06u", r->rate_ppm);
			for (fl = 6; fl > 1 && frac[fl - 1] == '0'; fl--)
				;
			PUT(";rate=0.%.*s", (int)fl, frac);
		}
		if (r->has_range && r->first == r->last)
			PUT(";range=%llu", (unsigned long long)r->first);
		else if (r->has_range)
			PUT(";range=%llu-%llu", (unsigned long long)r->first,
			    (unsigned long long)r->last);
		if (r->after)
			PUT(";after=%llu", (unsigned long long)r->after);
		if (r->once)
			PUT(";once");
		else if (r->count)
			PUT(";count=%llu", (unsigned long long)r->count);
		if (r->delay_us % 1000 == 0 && r->delay_us)
			PUT(";delay=%llums", (unsigned long long)(r->delay_us / 1000));
		else if (r->delay_us)
			PUT(";delay=%lluus", (unsigned long long)r->delay_us);
		if (r->has_seed)
			PUT(";seed=%llu", (unsigned long long)r->seed);
	}
#undef PUT
	return used;
}

/* ---- the disk ------------------------------------------------------------------ */

struct error_disk {
	/* Protects @set (the pointer; the set's counters are atomics). */
	pthread_rwlock_t lock;
	struct error_set *set;
	_Atomic bool armed;            /* @set has rules (a hint; see the notes) */
	_Atomic uint64_t seeds;        /* for rules without seed= */
};

/* Request state in io->hctx while a failure waits: the timer, then the
 * status and its detail (errno or medium detail). */
enum { H_TIMER = 0, H_STATUS = 3, H_DETAIL = 4 };
_Static_assert(sizeof(struct reactor_timer) <= H_STATUS * sizeof(uintptr_t),
	       "a reactor timer fits in the first three hctx slots");

static const struct disk_ops error_ops_table;

static struct error_disk *error_of(const struct disk *d) { return disk_priv(d); }

static uint64_t error_mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

/* Whether @r matches @io's operation and range. */
static bool error_rule_matches(const struct error_rule *r, const struct disk_io *io)
{
	if (!(r->ops & OPBIT(io->op)))
		return false;
	if (!r->has_range)
		return true;
	/* Only requests with a range can meet one (not a flush). */
	if (io->op == DISK_OP_FLUSH || io->count == 0)
		return false;
	return io->sector <= r->last && io->sector + (io->count - 1) >= r->first;
}

/* Whether @r fails this (matching) request; counts it. */
static bool error_rule_fires(struct error_rule *r)
{
	uint64_t nth = atomic_fetch_add_explicit(&r->matched, 1, memory_order_relaxed);
	uint64_t cur;

	if (nth < r->after)
		return false;
	if (r->rate_ppm < RATE_ONE) {
		uint64_t draw = atomic_fetch_add_explicit(&r->draws, 1, memory_order_relaxed);

		if (error_mix(r->seed + draw * 0x9e3779b97f4a7c15ull) % RATE_ONE >= r->rate_ppm)
			return false;
	}
	if (!r->count) {
		atomic_fetch_add_explicit(&r->injected, 1, memory_order_relaxed);
		return true;
	}
	cur = atomic_load_explicit(&r->injected, memory_order_relaxed);
	do {
		if (cur >= r->count)
			return false;
	} while (!atomic_compare_exchange_weak_explicit(&r->injected, &cur, cur + 1,
							memory_order_relaxed, memory_order_relaxed));
	return true;
}

static void error_fire(struct reactor_timer *t)
{
	struct disk_io *io = container_of((uintptr_t *)(void *)t, struct disk_io, hctx[H_TIMER]);
	int status = (int)io->hctx[H_STATUS];

	if (status == DISK_IO_ERROR)
		io->os_errno = (int)io->hctx[H_DETAIL];
	else if (status == DISK_MEDIUM_ERROR)
		io->medium = (enum disk_medium_detail)io->hctx[H_DETAIL];
	disk_io_complete(io, status);
}

/* Decides @io's fate: a failure status (now or after a delay) or a pass. */
static int error_check(struct disk *d, struct disk_io *io)
{
	struct error_disk *ed = error_of(d);
	const struct error_rule *hit = NULL;
	uint64_t delay_us = 0;
	int status, detail = 0;

	if (!atomic_load_explicit(&ed->armed, memory_order_relaxed))
		return disk_forward(disk_lower(d), io);
	pthread_rwlock_rdlock(&ed->lock);
	for (unsigned i = 0; ed->set && i < ed->set->n; i++) {
		struct error_rule *r = &ed->set->rule[i];

		if (error_rule_matches(r, io) && error_rule_fires(r)) {
			hit = r;
			break;
		}
	}
	if (hit) {
		const struct error_status_name *sn = &error_statuses[hit->status_name];

		status = sn->status;
		if (status == DISK_IO_ERROR)
			detail = sn->os_errno;
		else if (status == DISK_MEDIUM_ERROR)
			detail = io->op == DISK_OP_READ ? DISK_MEDIUM_UNRECOVERED_READ
							: DISK_MEDIUM_WRITE_FAULT;
		delay_us = hit->delay_us;
	}
	pthread_rwlock_unlock(&ed->lock);
	if (!hit)
		return disk_forward(disk_lower(d), io);
	log_debug("error: injecting %s into %s of %llu+%llu", disk_status_str(status),
		  disk_op_str(io->op), (unsigned long long)io->sector, (unsigned long long)io->count);
	if (delay_us) {
		struct reactor_timer *t = (struct reactor_timer *)(void *)&io->hctx[H_TIMER];

		io->hctx[H_STATUS] = (uintptr_t)status;
		io->hctx[H_DETAIL] = (uintptr_t)detail;
		memset(t, 0, sizeof(*t));
		t->fn = error_fire;
		reactor_timer_start(io->reactor, t, delay_us * 1000);
		return DISK_PENDING;
	}
	if (status == DISK_IO_ERROR)
		io->os_errno = detail;
	else if (status == DISK_MEDIUM_ERROR)
		io->medium = (enum disk_medium_detail)detail;
	return status;
}

static int error_io(struct disk *d, struct disk_io *io)
{
	return error_check(d, io);
}

static int error_forward_op(struct disk *d, struct disk_io *io)
{
	return disk_forward(disk_lower(d), io);
}

static void error_describe(struct disk *d, struct disk_describer *dd)
{
	struct error_disk *ed = error_of(d);
	uint64_t injected = 0;
	char rules[1024];

	pthread_rwlock_rdlock(&ed->lock);
	error_format(ed->set, rules, sizeof(rules));
	for (unsigned i = 0; ed->set && i < ed->set->n; i++)
		injected += atomic_load(&ed->set->rule[i].injected);
	pthread_rwlock_unlock(&ed->lock);
	dd->param(dd, "rules", rules[0] ? rules : "none");
	disk_describe_paramf(dd, "injected", "%llu", (unsigned long long)injected);
}

static void error_close(struct disk *d)
{
	struct error_disk *ed = error_of(d);

	free(ed->set);
	pthread_rwlock_destroy(&ed->lock);
	free(ed);
}

static const struct disk_ops error_ops_table = {
	.version = DISK_OPS_VERSION,
	.read = error_io,
	.write = error_io,
	.flush = error_io,
	.unmap = error_io,
	.write_zeroes = error_io,
	.cache = error_forward_op,
	.describe = error_describe,
	.close = error_close,
	/* Past the end is ILLEGAL_BLOCK, not an injected failure. */
	.checks = DISK_CHECK_RANGE,
};

/* ---- the API -------------------------------------------------------------------- */

/* "<what> '<part>' at offset <off> of '<text>'[; <hint>]" into @err. */
static int error_report(const char *text, const struct spec_arg_error *b, char *err,
			size_t errlen)
{
	if (b->len)
		return errbuf_printf(err, errlen, "%s '%.*s' at offset %zu of '%s'%s%s", b->what,
				     (int)b->len, text + b->off, b->off, text, b->hint ? "; " : "",
				     b->hint ? b->hint : "");
	return errbuf_printf(err, errlen, "%s at offset %zu of '%s'%s%s", b->what, b->off, text,
			     b->hint ? "; " : "", b->hint ? b->hint : "");
}

/* Parses @rules for @ed (seeding rules without seed=). */
static int error_build(struct error_disk *ed, const char *rules, struct error_set **out,
		       char *err, size_t errlen)
{
	struct spec_arg_error b = { 0 };
	int r = error_parse(rules, strlen(rules), out, &b);

	if (r == -EINVAL)
		return error_report(rules, &b, err, errlen);
	if (r < 0)
		return errbuf_fail(err, errlen, r, "out of memory");
	for (unsigned i = 0; *out && i < (*out)->n; i++) {
		struct error_rule *rule = &(*out)->rule[i];

		if (!rule->has_seed)
			rule->seed = error_mix(reactor_now_ns() ^
					       atomic_fetch_add(&ed->seeds, 0x632be59bd9b4e019ull));
	}
	return 0;
}

/* Installs @set (owned) in @ed and frees the one it replaces. */
static void error_install(struct error_disk *ed, struct error_set *set)
{
	struct error_set *old;

	pthread_rwlock_wrlock(&ed->lock);
	old = ed->set;
	ed->set = set;
	atomic_store_explicit(&ed->armed, set != NULL, memory_order_relaxed);
	pthread_rwlock_unlock(&ed->lock);
	free(old);
}

int error_new(const char *rules, struct disk *lower, struct disk **out, char *err,
	      size_t errlen)
{
	struct error_set *set = NULL;
	struct error_disk *ed;
	struct disk_info info;
	int r;

	*out = NULL;
	ed = calloc(1, sizeof(*ed));
	if (!ed)
		return errbuf_fail(err, errlen, -ENOMEM, "out of memory");
	r = pthread_rwlock_init(&ed->lock, NULL);
	if (r != 0) {
		free(ed);
		return errbuf_fail(err, errlen, -r, "%s", strerror(r));
	}
	r = error_build(ed, rules ? rules : "", &set, err, errlen);
	if (r < 0)
		goto fail;
	error_install(ed, set);
	disk_info_inherit(&info, lower);
	info.type = "error";
	r = disk_new(&error_ops_table, &info, ed, lower, out);
	if (r < 0) {
		errbuf_printf(err, errlen, "%s", strerror(-r));
		goto fail;
	}
	return 0;

fail:
	free(ed->set);
	pthread_rwlock_destroy(&ed->lock);
	free(ed);
	return r;
}

bool error_disk_is(const struct disk *d)
{
	return d && disk_has_ops(d, &error_ops_table);
}

int error_disk_set(struct disk *d, const char *rules, char *err, size_t errlen)
{
	struct error_set *set = NULL;
	int r;

	if (!error_disk_is(d))
		return errbuf_fail(err, errlen, -ENOTTY, "not an error: disk");
	if (!rules)
		rules = "";
	r = error_build(error_of(d), rules, &set, err, errlen);
	if (r < 0)
		return r;
	error_install(error_of(d), set);
	return 0;
}

int error_disk_clear(struct disk *d)
{
	if (!error_disk_is(d))
		return -ENOTTY;
	error_install(error_of(d), NULL);
	return 0;
}

int error_disk_get(struct disk *d, char *buf, size_t len)
{
	struct error_disk *ed;
	size_t need;

	if (!error_disk_is(d))
		return -ENOTTY;
	ed = error_of(d);
	pthread_rwlock_rdlock(&ed->lock);
	need = error_format(ed->set, buf, len);
	pthread_rwlock_unlock(&ed->lock);
	if (need >= len || need > INT32_MAX) {
		if (len)
			buf[0] = '\0';
		return -ERANGE;
	}
	return (int)need;
}

int error_disk_stats(struct disk *d, unsigned index, uint64_t *matched, uint64_t *injected)
{
	struct error_disk *ed;
	int r = -ENOENT;

	if (!error_disk_is(d))
		return -ENOTTY;
	ed = error_of(d);
	pthread_rwlock_rdlock(&ed->lock);
	if (ed->set && index < ed->set->n) {
		if (matched)
			*matched = atomic_load(&ed->set->rule[index].matched);
		if (injected)
			*injected = atomic_load(&ed->set->rule[index].injected);
		r = 0;
	}
	pthread_rwlock_unlock(&ed->lock);
	return r;
}

/* ---- the spec kind ----------------------------------------------------------------- */

/*
 * How far the rules reach into "<rules>:<spec>": a rule is two
 * ':'-separated fields (<ops>:<status>[;...]), and a '/' in the status
 * field starts another rule, whose own status field follows the next ':'.
 * The rules end with the first status field without a '/'.
 */
static size_t error_rules_extent(const char *t, size_t len)
{
	size_t i = 0;

	for (;;) {
		const char *colon = memchr(t + i, ':', len - i);
		const char *next, *slash;
		size_t fend;

		if (!colon)
			return len;
		i = (size_t)(colon - t) + 1;
		next = memchr(t + i, ':', len - i);
		fend = next ? (size_t)(next - t) : len;
		slash = memchr(t + i, '/', fend - i);
		if (!slash)
			return fend;
		i = (size_t)(slash - t) + 1;
	}
}

static int error_spec_check(const char *text, size_t len, struct spec_arg_error *e)
{
	return error_rules_check(text, len, &e->off, &e->len, &e->what, &e->hint) < 0 ? -EINVAL : 0;
}

static int error_spec_wrap(const struct spec *s, struct disk *lower, void *arg,
			   struct disk **out, char *err, size_t errlen)
{
	(void)arg;
	return error_new(s->arg, lower, out, err, errlen);
}

static int error_spec_open(const struct spec *s, bool read_only, const struct spec_ctx *ctx,
			   struct disk **out, char *err, size_t errlen)
{
	return spec_open_decorator(s, read_only, ctx, error_spec_wrap, NULL, out, err, errlen);
}

const struct spec_kind error_kind_error = {
	.name = "error",
	.usage = "error:<rules>:<spec>",
	.summary = "fails requests of <spec> by rule: <ops>:<status>[;<option>...][/<rule>...]",
	.open_disk = error_spec_open,
	.args = { { .type = SPEC_ARG_URI, .name = "error rules", .field = SPEC_FIELD(arg),
		    .check = error_spec_check, .extent = error_rules_extent,
		    .hint = RULE_HINT,
		    .missing_next = "missing ':<spec>' after the error rules",
		    .missing_next_hint = "write error:<ops>:<status>:<spec>, e.g. error:read:eio:mem:1G" } },
	.nargs = 1,
	.tail = SPEC_TAIL_INNER,
};
