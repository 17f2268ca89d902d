/* SPDX-License-Identifier: MIT */
/*
 * test-error.c: the fault-injection decorator (storage/decorators/error.c):
 * each status and operation, each rule option (rate with a fixed seed,
 * range, after, once/count, delay), several rules in order, the spec and
 * its error messages, the live API (set, clear, get, stats) including
 * from another thread while two reactors serve I/O, the layered disk over
 * a failing lower layer, and the contract suites. The delay check is a
 * lower bound only.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/compiler.h"
#include "storage/decorators/error.h"
#include "storage/spec.h"
#include "tests/unit/contract.h"
#include "tests/unit/testutil.h"

static char err[1024];

static struct disk *open_spec(const char *text)
{
	struct disk *d;

	if (spec_open_str(text, false, NULL, &d, err, sizeof(err)) != 0)
		fail_msg("%s: %s", text, err);
	return d;
}

static struct disk *error_over_ram(const char *rules)
{
	struct disk *mem, *d;

	if (ramdisk_new(1 << 20, 512, false, &mem, err, sizeof(err)) != 0)
		fail_msg("ramdisk_new: %s", err);
	if (error_new(rules, mem, &d, err, sizeof(err)) != 0)
		fail_msg("error_new(%s): %s", rules, err);
	return d;
}

/* The result of one synchronous request. */
struct result {
	int status;
	int os_errno;
	enum disk_medium_detail medium;
};

static struct result do_io(struct disk *d, enum disk_op op, uint64_t sector, uint64_t count)
{
	static uint8_t buf[64 * 512];
	struct iovec iov = { buf, (size_t)count * 512 };
	struct disk_io io = { .op = op, .sector = sector };
	struct result r;

	assert_true(count * 512 <= sizeof(buf));
	if (op == DISK_OP_READ || op == DISK_OP_WRITE) {
		io.iov = &iov;
		io.iovcnt = 1;
	} else if (op != DISK_OP_FLUSH) {
		io.count = count;
	}
	r.status = disk_sync_io(d, &io);
	r.os_errno = io.os_errno;
	r.medium = io.medium;
	return r;
}

static void expect_ok(struct disk *d, enum disk_op op, uint64_t sector, uint64_t count)
{
	struct result r = do_io(d, op, sector, count);

	if (r.status != DISK_OK)
		fail_msg("%s %llu+%llu: %s (errno %d)", disk_op_str(op), (unsigned long long)sector,
			 (unsigned long long)count, disk_status_str(r.status), r.os_errno);
}

static void expect_errno(struct disk *d, enum disk_op op, uint64_t sector, uint64_t count, int e)
{
	struct result r = do_io(d, op, sector, count);

	if (r.status != DISK_IO_ERROR || r.os_errno != e)
		fail_msg("%s %llu+%llu: %s (errno %d), expected errno %d", disk_op_str(op),
			 (unsigned long long)sector, (unsigned long long)count,
			 disk_status_str(r.status), r.os_errno, e);
}

static void set_rules(struct disk *d, const char *rules)
{
	if (error_disk_set(d, rules, err, sizeof(err)) != 0)
		fail_msg("error_disk_set(%s): %s", rules, err);
}

/* ---- tests --------------------------------------------------------------------- */

/* The simplest form: every read fails with EIO, everything else works. */
static void test_error_read_eio(void **state UNUSED)
{
	struct disk *d = open_spec("error:read:eio:mem:1M");

	assert_true(error_disk_is(d));
	expect_errno(d, DISK_OP_READ, 0, 1, EIO);
	expect_errno(d, DISK_OP_READ, 100, 8, EIO);
	expect_ok(d, DISK_OP_WRITE, 0, 1);
	expect_ok(d, DISK_OP_FLUSH, 0, 0);
	expect_ok(d, DISK_OP_UNMAP, 0, 8);
	expect_ok(d, DISK_OP_WRITE_ZEROES, 0, 8);
	expect_ok(d, DISK_OP_CACHE, 0, 8);
	/* Past the end stays ILLEGAL_BLOCK, not an injected error. */
	assert_int_equal(do_io(d, DISK_OP_READ, 2048, 1).status, DISK_ILLEGAL_BLOCK);
	disk_unref(d);
}

/* Each status class and each operation selector. */
static void test_error_statuses_and_ops(void **state UNUSED)
{
	struct disk *d = error_over_ram("");
	struct result r;

	set_rules(d, "read:medium");
	r = do_io(d, DISK_OP_READ, 3, 1);
	assert_int_equal(r.status, DISK_MEDIUM_ERROR);
	assert_int_equal(r.medium, DISK_MEDIUM_UNRECOVERED_READ);

	set_rules(d, "write:medium");
	expect_ok(d, DISK_OP_READ, 3, 1);
	r = do_io(d, DISK_OP_WRITE, 3, 1);
	assert_int_equal(r.status, DISK_MEDIUM_ERROR);
	assert_int_equal(r.medium, DISK_MEDIUM_WRITE_FAULT);
	/* write covers write-zeroes too. */
	r = do_io(d, DISK_OP_WRITE_ZEROES, 3, 1);
	assert_int_equal(r.status, DISK_MEDIUM_ERROR);

	set_rules(d, "write:readonly");
	assert_int_equal(do_io(d, DISK_OP_WRITE, 0, 1).status, DISK_READ_ONLY);
	expect_ok(d, DISK_OP_FLUSH, 0, 0);

	set_rules(d, "write:enospc");
	expect_errno(d, DISK_OP_WRITE, 0, 1, ENOSPC);
	set_rules(d, "write:edquot");
	expect_errno(d, DISK_OP_WRITE, 0, 1, EDQUOT);
	set_rules(d, "read:etimedout");
	expect_errno(d, DISK_OP_READ, 0, 1, ETIMEDOUT);
	set_rules(d, "write:erofs");
	expect_errno(d, DISK_OP_WRITE, 0, 1, EROFS);

	set_rules(d, "flush:eio");
	expect_errno(d, DISK_OP_FLUSH, 0, 0, EIO);
	expect_ok(d, DISK_OP_WRITE, 0, 1);

	set_rules(d, "unmap:eperm");
	expect_errno(d, DISK_OP_UNMAP, 0, 4, EPERM);
	set_rules(d, "trim:eio");
	expect_errno(d, DISK_OP_UNMAP, 0, 4, EIO);
	expect_ok(d, DISK_OP_WRITE, 0, 1);

	set_rules(d, "all:eio");
	expect_errno(d, DISK_OP_READ, 0, 1, EIO);
	expect_errno(d, DISK_OP_WRITE, 0, 1, EIO);
	expect_errno(d, DISK_OP_WRITE_ZEROES, 0, 1, EIO);
	expect_errno(d, DISK_OP_FLUSH, 0, 0, EIO);
	expect_errno(d, DISK_OP_UNMAP, 0, 1, EIO);
	/* Block status and prefetch are not failed. */
	expect_ok(d, DISK_OP_CACHE, 0, 1);
	disk_unref(d);
}

/* range= matches requests that overlap it (inclusive) and never a flush. */
static void test_error_range(void **state UNUSED)
{
	struct disk *d = error_over_ram("read:eio;range=10-19/flush:eio;range=0");

	expect_ok(d, DISK_OP_READ, 9, 1);
	expect_errno(d, DISK_OP_READ, 10, 1, EIO);
	expect_errno(d, DISK_OP_READ, 19, 1, EIO);
	expect_ok(d, DISK_OP_READ, 20, 8);
	expect_errno(d, DISK_OP_READ, 5, 6, EIO);   /* 5..10 touches 10 */
	expect_ok(d, DISK_OP_READ, 5, 5);           /* 5..9 does not */
	expect_errno(d, DISK_OP_READ, 0, 64, EIO);
	expect_ok(d, DISK_OP_WRITE, 10, 1);
	expect_ok(d, DISK_OP_FLUSH, 0, 0);
	set_rules(d, "read:eio;range=7");
	expect_ok(d, DISK_OP_READ, 6, 1);
	expect_errno(d, DISK_OP_READ, 7, 1, EIO);
	expect_ok(d, DISK_OP_READ, 8, 1);
	disk_unref(d);
}

/* after=N lets N matching requests through; once and count=N limit the
 * failures; requests that do not match are not counted. */
static void test_error_after_once_count(void **state UNUSED)
{
	struct disk *d = error_over_ram("write:eio;after=3");
	uint64_t matched, injected;

	for (int i = 0; i < 3; i++) {
		expect_ok(d, DISK_OP_WRITE, (uint64_t)i, 1);
		expect_ok(d, DISK_OP_READ, 0, 1);
	}
	expect_errno(d, DISK_OP_WRITE, 3, 1, EIO);
	expect_errno(d, DISK_OP_WRITE, 4, 1, EIO);
	assert_int_equal(error_disk_stats(d, 0, &matched, &injected), 0);
	assert_int_equal(matched, 5);
	assert_int_equal(injected, 2);
	assert_int_equal(error_disk_stats(d, 1, &matched, &injected), -ENOENT);

	set_rules(d, "read:eio;once");
	expect_errno(d, DISK_OP_READ, 0, 1, EIO);
	for (int i = 0; i < 5; i++)
		expect_ok(d, DISK_OP_READ, 0, 1);

	set_rules(d, "read:medium;after=2;count=2");
	expect_ok(d, DISK_OP_READ, 0, 1);
	expect_ok(d, DISK_OP_READ, 0, 1);
	assert_int_equal(do_io(d, DISK_OP_READ, 0, 1).status, DISK_MEDIUM_ERROR);
	assert_int_equal(do_io(d, DISK_OP_READ, 0, 1).status, DISK_MEDIUM_ERROR);
	expect_ok(d, DISK_OP_READ, 0, 1);

	/* Setting the same rules again starts the counters again. */
	set_rules(d, "read:eio;once");
	expect_errno(d, DISK_OP_READ, 0, 1, EIO);
	expect_ok(d, DISK_OP_READ, 0, 1);
	disk_unref(d);
}

/* Fills @pattern with which of @n reads fail under @rules. */
static unsigned rate_pattern(struct disk *d, const char *rules, bool *pattern, unsigned n)
{
	unsigned fails = 0;

	set_rules(d, rules);
	for (unsigned i = 0; i < n; i++) {
		struct result r = do_io(d, DISK_OP_READ, i % 64, 1);

		assert_true(r.status == DISK_OK || (r.status == DISK_IO_ERROR && r.os_errno == EIO));
		pattern[i] = r.status != DISK_OK;
		fails += pattern[i];
	}
	return fails;
}

/* rate= with seed= fails a fixed subset of requests: the same one each
 * time the rules are set, another with another seed; rate 0 never fails
 * and rate 1 always does. */
static void test_error_rate_seeded(void **state UNUSED)
{
	struct disk *d = error_over_ram("");
	bool a[200], b[200], c[200];
	unsigned fa, fb;

	fa = rate_pattern(d, "read:eio;rate=0.5;seed=42", a, 200);
	fb = rate_pattern(d, "read:eio;rate=50%;seed=42", b, 200);
	assert_int_equal(fa, fb);
	assert_memory_equal(a, b, sizeof(a));
	/* Some fail, some pass (fixed by the seed, not a statistical claim). */
	assert_true(fa > 0 && fa < 200);
	rate_pattern(d, "read:eio;rate=0.5;seed=43", c, 200);
	assert_memory_not_equal(a, c, sizeof(a));
	assert_int_equal(rate_pattern(d, "read:eio;rate=0", a, 200), 0);
	assert_int_equal(rate_pattern(d, "read:eio;rate=1", a, 200), 200);
	assert_int_equal(rate_pattern(d, "read:eio;rate=100%", a, 200), 200);
	disk_unref(d);
}

static void flag_done(struct disk_io *io)
{
	*(bool *)io->opaque = true;
}

/* delay= fails the request only after the delay: not within passes of the
 * loop that do not wait, and not before the time. */
static void test_error_delay(void **state UNUSED)
{
	struct disk *d = error_over_ram("read:eio;delay=20ms");
	uint8_t buf[512];
	struct iovec iov = { buf, sizeof(buf) };
	struct disk_io io = { .op = DISK_OP_READ, .iov = &iov, .iovcnt = 1 };
	bool done = false;
	uint64_t t0 = reactor_now_ns();

	io.done = flag_done;
	io.opaque = &done;
	disk_submit(d, &io);
	for (int i = 0; i < 8; i++)
		assert_true(reactor_run_once(tu_reactor(), false) >= 0);
	assert_false(done);
	assert_true(reactor_run_until(tu_reactor(), &done) >= 0);
	assert_true(reactor_now_ns() - t0 >= 20 * 1000000ull);
	assert_int_equal(io.status, DISK_IO_ERROR);
	assert_int_equal(io.os_errno, EIO);
	/* Writes are not delayed. */
	expect_ok(d, DISK_OP_WRITE, 0, 1);
	/* A medium error keeps its detail across the delay. */
	set_rules(d, "write:medium;delay=500us");
	assert_int_equal(do_io(d, DISK_OP_WRITE, 0, 1).medium, DISK_MEDIUM_WRITE_FAULT);
	disk_unref(d);
}

/* Rules are tried in order; the first that fires decides. */
static void test_error_several_rules(void **state UNUSED)
{
	struct disk *d = open_spec("error:read:eio;range=0/read:medium/write:enospc;once:mem:1M");
	char text[256];

	expect_errno(d, DISK_OP_READ, 0, 1, EIO);
	assert_int_equal(do_io(d, DISK_OP_READ, 1, 1).status, DISK_MEDIUM_ERROR);
	expect_errno(d, DISK_OP_WRITE, 1, 1, ENOSPC);
	expect_ok(d, DISK_OP_WRITE, 1, 1);
	assert_int_equal(error_disk_get(d, text, sizeof(text)),
			 (int)strlen("read:eio;range=0/read:medium/write:enospc;once"));
	assert_string_equal(text, "read:eio;range=0/read:medium/write:enospc;once");
	disk_unref(d);
}

/* get gives the canonical form, which set accepts back unchanged. */
static void test_error_get_canonical(void **state UNUSED)
{
	static const char *const in[][2] = {
		{ "read:eio", "read:eio" },
		{ "trim:eio", "trim:eio" },
		{ "read:eio;seed=7;rate=25%;once", "read:eio;rate=0.25;once;seed=7" },
		{ "write:medium;delay=1500us;after=10;range=5-9", "write:medium;range=5-9;after=10;delay=1500us" },
		{ "all:readonly;delay=2000us;count=3;range=4-4", "all:readonly;range=4;count=3;delay=2ms" },
		{ "flush:eio;rate=.000001", "flush:eio;rate=0.000001" },
	};
	struct disk *d = error_over_ram("");
	char text[256], small[4];

	assert_int_equal(error_disk_get(d, text, sizeof(text)), 0);
	assert_string_equal(text, "");
	for (unsigned i = 0; i < ARRAY_SIZE(in); i++) {
		set_rules(d, in[i][0]);
		assert_int_equal(error_disk_get(d, text, sizeof(text)), (int)strlen(in[i][1]));
		assert_string_equal(text, in[i][1]);
		set_rules(d, text);
		assert_int_equal(error_disk_get(d, text, sizeof(text)), (int)strlen(in[i][1]));
		assert_string_equal(text, in[i][1]);
	}
	assert_int_equal(error_disk_get(d, small, sizeof(small)), -ERANGE);
	assert_string_equal(small, "");
	assert_int_equal(error_disk_clear(d), 0);
	assert_int_equal(error_disk_get(d, text, sizeof(text)), 0);
	expect_ok(d, DISK_OP_READ, 0, 1);
	disk_unref(d);
}

/* Bad rules are refused with a message quoting the part, and the old rules
 * stay; the API refuses other disks. */
static void test_error_bad_rules(void **state UNUSED)
{
	static const char *const bad[][2] = {
		{ "reed:eio", "unknown operation 'reed'" },
		{ "read", "missing ':<status>'" },
		{ "read:", "missing status" },
		{ ":eio", "missing operation" },
		{ "read:eoi", "unknown status 'eoi'" },
		{ "read:eio;", "empty error rule option" },
		{ "read:eio;bogus", "unknown error rule option 'bogus'" },
		{ "read:eio;rate=2", "bad rate '2'" },
		{ "read:eio;rate=101%", "bad rate" },
		{ "read:eio;rate=0.1234567", "bad rate" },
		{ "read:eio;rate=", "needs a value" },
		{ "read:eio;range=9-3", "empty range '9-3'" },
		{ "read:eio;range=x", "bad range 'x'" },
		{ "read:eio;after=-1", "bad after" },
		{ "read:eio;count=0", "bad count" },
		{ "read:eio;once;count=2", "second failure limit 'count=2'" },
		{ "read:eio;count=2;once", "second failure limit 'once'" },
		{ "read:eio;once=1", "'once' takes no value" },
		{ "read:eio;once;once", "duplicate error rule option" },
		{ "read:eio;delay=5s", "bad delay" },
		{ "read:eio;delay=3600001ms", "bad delay" },
		{ "read:eio;seed=abc", "bad seed" },
		{ "read:eio//write:eio", "empty error rule" },
		{ "read:eio:write", "unexpected ':'" },
	};
	struct disk *d = error_over_ram("read:eio"), *mem, *none;
	char text[64];

	for (unsigned i = 0; i < ARRAY_SIZE(bad); i++) {
		err[0] = '\0';
		assert_int_equal(error_disk_set(d, bad[i][0], err, sizeof(err)), -EINVAL);
		if (!strstr(err, bad[i][1]))
			fail_msg("rules '%s': message '%s' lacks '%s'", bad[i][0], err, bad[i][1]);
	}
	assert_int_equal(error_disk_get(d, text, sizeof(text)), 8);
	assert_string_equal(text, "read:eio");
	expect_errno(d, DISK_OP_READ, 0, 1, EIO);

	assert_int_equal(ramdisk_new(1 << 20, 512, false, &mem, err, sizeof(err)), 0);
	assert_false(error_disk_is(mem));
	assert_false(error_disk_is(NULL));
	assert_int_equal(error_disk_set(mem, "read:eio", err, sizeof(err)), -ENOTTY);
	assert_int_equal(error_disk_clear(mem), -ENOTTY);
	assert_int_equal(error_disk_get(mem, text, sizeof(text)), -ENOTTY);
	assert_int_equal(error_disk_stats(mem, 0, NULL, NULL), -ENOTTY);
	assert_int_equal(error_new("read:nope", mem, &none, err, sizeof(err)), -EINVAL);
	assert_null(none);
	assert_non_null(strstr(err, "unknown status 'nope'"));
	disk_unref(mem);
	disk_unref(d);
}

/* The spec grammar: where the rules end, and the messages for bad ones. */
static void test_error_spec(void **state UNUSED)
{
	static const char *const bad[][2] = {
		{ "error:read:eio", "missing ':<spec>' after the error rules" },
		{ "error:read:eoi:mem:1M", "unknown status 'eoi' at offset 11" },
		{ "error:write:eio;rate=3:mem:1M", "bad rate '3'" },
		{ "error:read:eio/:mem:1M", "missing operation" },
		{ "error:read:eio:", "missing inner disk spec" },
	};
	struct disk *d;
	struct spec *s;
	struct tu_described desc;

	for (unsigned i = 0; i < ARRAY_SIZE(bad); i++) {
		assert_int_equal(spec_parse(bad[i][0], &s, err, sizeof(err)), -EINVAL);
		if (!strstr(err, bad[i][1]))
			fail_msg("spec '%s': message '%s' lacks '%s'", bad[i][0], err, bad[i][1]);
	}
	/* Rules followed by a spec with ':' and options of its own. */
	d = open_spec("error:read:eio;range=1/write:medium;after=1:memdiff:mem:1M,ro");
	assert_true(disk_get_info(d)->read_only);
	tu_describe(d, &desc);
	assert_non_null(strstr(desc.text, "rules=read:eio;range=1/write:medium;after=1"));
	disk_unref(d);
	/* Nested error disks, inside a striped member too. */
	d = open_spec("striped:4K:error:read:eio;range=0:error:write:eio:mem:1M+mem:1M");
	expect_errno(d, DISK_OP_READ, 0, 1, EIO);
	expect_ok(d, DISK_OP_READ, 8, 1);
	disk_unref(d);
}

/* memdiff over an error disk: sectors in the top layer still read; a read
 * that needs the failing layer below fails with its status and detail. */
static void test_error_layered_lower_fails(void **state UNUSED)
{
	struct disk *d = open_spec("memdiff:error:read:eio;range=4-1000:mem:1M");
	struct result r;

	expect_ok(d, DISK_OP_WRITE, 4, 2);       /* lands in the RAM layer */
	expect_ok(d, DISK_OP_READ, 4, 2);        /* served from the top */
	expect_ok(d, DISK_OP_READ, 0, 4);        /* below, outside the range */
	expect_errno(d, DISK_OP_READ, 6, 1, EIO);
	expect_errno(d, DISK_OP_READ, 0, 16, EIO); /* mid-read: 0-3 and 4-5 fine, 6.. not */
	disk_unref(d);

	d = open_spec("memdiff:error:read:medium:mem:1M");
	expect_ok(d, DISK_OP_WRITE, 0, 1);
	expect_ok(d, DISK_OP_READ, 0, 1);
	r = do_io(d, DISK_OP_READ, 0, 8);
	assert_int_equal(r.status, DISK_MEDIUM_ERROR);
	assert_int_equal(r.medium, DISK_MEDIUM_UNRECOVERED_READ);
	disk_unref(d);
}

/* ---- the live API under concurrent I/O ------------------------------------------ */

struct worker {
	pthread_t th;
	struct disk *d;
	atomic_bool *stop;
	unsigned id;
	unsigned ok, failed, bad;
	unsigned tail_failed;            /* of the 100 reads after @stop */
};

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	uint8_t buf[4096], want[4096];
	uint64_t lba = 64 * w->id;

	(void)tu_reactor();
	tu_fill(want, sizeof(want), w->id, 0);
	/* The data is written once, before any rule can fail it. */
	while (disk_sync_write(w->d, lba, want, sizeof(want), 0) != DISK_OK)
		;
	/* Until @stop, then 100 reads more: those run after the last
	 * set_rules("read:eio") returned, so every one of them must fail. */
	for (unsigned tail = 0; tail < 100;) {
		struct disk_io io = { .op = DISK_OP_READ, .sector = lba };
		struct iovec iov = { buf, sizeof(buf) };
		bool after = atomic_load(w->stop);
		int st;

		io.iov = &iov;
		io.iovcnt = 1;
		st = disk_sync_io(w->d, &io);
		if (st == DISK_OK && memcmp(buf, want, sizeof(buf)) == 0)
			w->ok++;
		else if ((st == DISK_IO_ERROR && io.os_errno == EIO) ||
			 (st == DISK_MEDIUM_ERROR && io.medium == DISK_MEDIUM_UNRECOVERED_READ))
			w->failed++;
		else
			w->bad++;
		if (after) {
			tail++;
			w->tail_failed += st == DISK_IO_ERROR && io.os_errno == EIO;
		}
	}
	tu_reactor_done();
	return NULL;
}

/* One thread replaces the rules over and over while two others (each with
 * its own reactor) read: every read either succeeds with the right data
 * or fails with one of the statuses some rule set asked for. */
static void test_error_set_under_io(void **state UNUSED)
{
	static const char *const sets[] = { "read:eio", "", "read:medium;rate=0.5;seed=1",
					    "write:eio/read:eio;after=2", "read:eio;once" };
	struct disk *d = error_over_ram("write:eio;range=100000");
	atomic_bool stop = false;
	struct worker w[2];
	char text[128];

	for (unsigned i = 0; i < 2; i++) {
		w[i] = (struct worker){ .d = d, .stop = &stop, .id = i };
		assert_int_equal(pthread_create(&w[i].th, NULL, worker_main, &w[i]), 0);
	}
	for (unsigned i = 0; i < 2000; i++) {
		if (i % 7 == 6)
			assert_int_equal(error_disk_clear(d), 0);
		else
			set_rules(d, sets[i % ARRAY_SIZE(sets)]);
		assert_true(error_disk_get(d, text, sizeof(text)) >= 0);
		if (i % 100 == 0)
			usleep(100);
	}
	set_rules(d, "read:eio");
	atomic_store(&stop, true);
	for (unsigned i = 0; i < 2; i++) {
		assert_int_equal(pthread_join(w[i].th, NULL), 0);
		assert_int_equal(w[i].bad, 0);
		/* The last 100 reads began after read:eio was set. (Before,
		 * the loop ended at @stop once it had read 100 times in all,
		 * so a worker could end with no read under read:eio, and with
		 * none failed when the cycling sets let its reads through.) */
		assert_int_equal(w[i].tail_failed, 100);
	}
	disk_unref(d);
}

/* The contract suites, with no rules and with rules that do not touch what
 * they check. */
static void test_error_contract(void **state UNUSED)
{
	struct disk *d = error_over_ram("");

	contract_disk(d);
	disk_unref(d);
	d = error_over_ram("flush:eio/read:eio;range=1000");
	contract_disk(d);
	disk_unref(d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_error_read_eio),
		cmocka_unit_test(test_error_statuses_and_ops),
		cmocka_unit_test(test_error_range),
		cmocka_unit_test(test_error_after_once_count),
		cmocka_unit_test(test_error_rate_seeded),
		cmocka_unit_test(test_error_delay),
		cmocka_unit_test(test_error_several_rules),
		cmocka_unit_test(test_error_get_canonical),
		cmocka_unit_test(test_error_bad_rules),
		cmocka_unit_test(test_error_spec),
		cmocka_unit_test(test_error_layered_lower_fails),
		cmocka_unit_test(test_error_set_under_io),
		cmocka_unit_test(test_error_contract),
	};

	return cmocka_run_group_tests_name("error", tests, tu_reactor_setup, tu_reactor_teardown);
}
