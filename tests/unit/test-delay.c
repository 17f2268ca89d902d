/* SPDX-License-Identifier: MIT */
/*
 * test-delay.c: the delay decorator (storage/delay.c): a request never
 * completes before its delay, concurrent requests wait side by side, a
 * zero delay arms no timer, delay_set() applies to the next request (and
 * from another thread), separate read and write delays, the forwarding
 * rules of docs/openvmm-compat.md §5.4, the spec and describe, and the
 * contract suites. Timing checks are lower bounds only ("not before the
 * delay"): that something is prompt is shown without a clock (done within
 * non-waiting passes of the loop, or waiting side by side on armed timers).
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
#include "storage/decorators/delay.h"
#include "storage/spec.h"
#include "tests/unit/contract.h"
#include "tests/unit/mockdisk.h"
#include "tests/unit/testutil.h"

#define MS 1000000ull   /* ns */

static char err[512];

static struct disk *ram(uint64_t bytes, uint32_t ss)
{
	struct disk *d;

	if (ramdisk_new(bytes, ss, false, &d, err, sizeof(err)) != 0)
		fail_msg("ramdisk_new: %s", err);
	return d;
}

static struct disk *delay_over(struct disk *lower, uint64_t read_us, uint64_t write_us)
{
	struct disk *d;

	if (delay_new(read_us, write_us, lower, &d, err, sizeof(err)) != 0)
		fail_msg("delay_new: %s", err);
	return d;
}

/* An asynchronous request with its timing. */
struct timed {
	struct disk_io io;
	struct iovec iov;
	uint8_t buf[4096];
	uint64_t submit_ns, done_ns;
	bool done;
};

static void timed_done(struct disk_io *io)
{
	struct timed *t = io->opaque;

	t->done_ns = reactor_now_ns();
	t->done = true;
}

static void timed_submit(struct disk *d, struct timed *t, enum disk_op op, uint64_t sector)
{
	memset(&t->io, 0, sizeof(t->io));
	t->done = false;
	t->iov.iov_base = t->buf;
	t->iov.iov_len = 512;
	t->io.op = op;
	t->io.sector = sector;
	t->io.iov = &t->iov;
	t->io.iovcnt = 1;
	t->io.done = timed_done;
	t->io.opaque = t;
	t->submit_ns = reactor_now_ns();
	disk_submit(d, &t->io);
}

static void timed_wait(struct timed *t)
{
	assert_true(reactor_run_until(tu_reactor(), &t->done) >= 0);
	assert_int_equal(t->io.status, DISK_OK);
}

/* Runs a few non-blocking passes of the loop: enough for anything that does
 * not wait on a timer (the RAM disk completes through deferred tasks). */
static void run_passes(void)
{
	for (int i = 0; i < 8; i++)
		assert_true(reactor_run_once(tu_reactor(), false) >= 0);
}

static void flag_done(struct disk_io *io)
{
	*(bool *)io->opaque = true;
}

/* Submits @io and runs non-waiting passes only: returns its status, and
 * fails the test unless it is done by then (it did not wait on a timer). */
static int io_now(struct disk *d, struct disk_io *io)
{
	bool done = false;

	io->done = flag_done;
	io->opaque = &done;
	disk_submit(d, io);
	run_passes();
	assert_true(done);
	return io->status;
}

/* ---- tests --------------------------------------------------------------------- */

/* A read never completes before its delay, and a delayed request is not
 * done while the loop only runs passes that do not wait. */
static void test_delay_read_waits(void **state UNUSED)
{
	struct disk *d = delay_over(ram(1 << 20, 512), 40000, 0);
	struct timed *t = calloc(1, sizeof(*t));

	for (int i = 0; i < 5; i++) {
		timed_submit(d, t, DISK_OP_READ, (uint64_t)i);
		run_passes();
		/* Unless this thread was descheduled for the whole delay. */
		if (reactor_now_ns() - t->submit_ns < 40 * MS)
			assert_false(t->done);
		timed_wait(t);
		assert_true(t->done_ns - t->submit_ns >= 40 * MS);
	}
	disk_unref(d);
	free(t);
}

/* Separate read and write delays: writes wait, reads do not. */
static void test_delay_write_delay(void **state UNUSED)
{
	struct disk *d = delay_over(ram(1 << 20, 512), 0, 30000);
	struct timed *t = calloc(1, sizeof(*t));
	uint64_t r, w;

	assert_int_equal(delay_get(d, &r, &w), 0);
	assert_int_equal(r, 0);
	assert_int_equal(w, 30000);
	memset(t->buf, 0x5a, sizeof(t->buf));
	timed_submit(d, t, DISK_OP_WRITE, 3);
	timed_wait(t);
	assert_true(t->done_ns - t->submit_ns >= 30 * MS);
	/* A zero delay goes straight through: done without waiting. */
	memset(t->buf, 0, sizeof(t->buf));
	timed_submit(d, t, DISK_OP_READ, 3);
	run_passes();
	assert_true(t->done);
	assert_int_equal(t->io.status, DISK_OK);
	assert_int_equal(t->buf[0], 0x5a);
	assert_int_equal(t->buf[511], 0x5a);
	disk_unref(d);
	free(t);
}

/* 32 concurrent reads overlap: each waits on its own timer, all armed as
 * they arrive, rather than one after another. */
static void test_delay_concurrent(void **state UNUSED)
{
	enum { N = 32 };
	const uint64_t delay_ns = 50 * MS;
	struct disk *d = delay_over(ram(1 << 20, 512), delay_ns / 1000, 0);
	struct timed *t = calloc(N, sizeof(*t));
	unsigned pending0 = reactor_pending(tu_reactor());

	for (int i = 0; i < N; i++)
		timed_submit(d, &t[i], DISK_OP_READ, (uint64_t)i);
	assert_int_equal(reactor_pending(tu_reactor()), pending0 + N);
	for (int i = 0; i < N; i++)
		timed_wait(&t[i]);
	for (int i = 0; i < N; i++)
		assert_true(t[i].done_ns - t[i].submit_ns >= delay_ns);
	assert_int_equal(reactor_pending(tu_reactor()), pending0);
	disk_unref(d);
	free(t);
}

/* delay_set applies to the next request; a waiting one keeps its delay. */
static void test_delay_set_next_request(void **state UNUSED)
{
	struct disk *d = delay_over(ram(1 << 20, 512), 0, 0);
	struct timed *a = calloc(1, sizeof(*a)), *b = calloc(1, sizeof(*b));

	timed_submit(d, a, DISK_OP_READ, 0);
	run_passes();
	assert_true(a->done);
	assert_int_equal(delay_set(d, 60000, 0), 0);
	timed_submit(d, a, DISK_OP_READ, 0);
	assert_int_equal(delay_set(d, 0, 0), 0);
	/* Issued after the change: no delay. */
	timed_submit(d, b, DISK_OP_READ, 1);
	run_passes();
	assert_true(b->done);
	timed_wait(a);
	assert_true(a->done_ns - a->submit_ns >= 60 * MS);
	assert_true(a->done_ns >= b->done_ns);
	/* And back up again. */
	assert_int_equal(delay_set(d, 25000, 0), 0);
	timed_submit(d, a, DISK_OP_READ, 0);
	timed_wait(a);
	assert_true(a->done_ns - a->submit_ns >= 25 * MS);
	disk_unref(d);
	free(a);
	free(b);
}

struct setter {
	struct disk *d;
	atomic_bool stop;
	atomic_uint sets;
	int errors;
};

static void *setter_main(void *arg)
{
	struct setter *s = arg;

	while (!atomic_load(&s->stop)) {
		unsigned n = atomic_load(&s->sets);
		uint64_t us = n % 2 ? 200 : 0;

		if (delay_set(s->d, us, us) != 0)
			s->errors++;
		atomic_store(&s->sets, n + 1);
	}
	if (delay_set(s->d, 0, 0) != 0)
		s->errors++;
	return NULL;
}

/* Another thread changes the delay while this one serves requests. */
static void test_delay_set_from_another_thread(void **state UNUSED)
{
	struct setter s = { .d = delay_over(ram(1 << 20, 512), 0, 0) };
	uint8_t buf[4096];
	pthread_t th;

	assert_int_equal(pthread_create(&th, NULL, setter_main, &s), 0);
	/* Let the setter start first: under valgrind threads take turns, and
	 * this thread would otherwise run its whole loop alone. */
	for (int w = 0; w < 10000 && atomic_load(&s.sets) == 0; w++)
		usleep(1000);
	/* Until the other thread has changed the delay a few times. */
	for (int i = 0; i < 200 || (atomic_load(&s.sets) < 50 && i < 200000); i++) {
		uint64_t lba = (uint64_t)i % 2000;

		memset(buf, i, sizeof(buf));
		assert_int_equal(disk_sync_write(s.d, lba, buf, sizeof(buf), 0), DISK_OK);
		assert_int_equal(disk_sync_read(s.d, lba, buf, 512), DISK_OK);
		assert_int_equal(buf[0], (uint8_t)i);
	}
	atomic_store(&s.stop, true);
	assert_int_equal(pthread_join(th, NULL), 0);
	assert_int_equal(s.errors, 0);
	assert_true(atomic_load(&s.sets) > 0);
	disk_unref(s.d);
}

static void test_delay_api_errors(void **state UNUSED)
{
	struct disk *mem = ram(1 << 20, 512), *d;

	assert_int_equal(delay_set(mem, 1, 1), -EINVAL);
	assert_int_equal(delay_get(mem, NULL, NULL), -EINVAL);
	assert_int_equal(delay_set(NULL, 1, 1), -EINVAL);
	assert_int_equal(delay_new(DELAY_MAX_US + 1, 0, mem, &d, err, sizeof(err)), -EINVAL);
	assert_null(d);
	assert_non_null(strstr(err, "too long"));
	d = delay_over(mem, 1, 2);
	assert_int_equal(delay_set(d, DELAY_MAX_US + 1, 0), -EINVAL);
	assert_int_equal(delay_set(d, 0, DELAY_MAX_US + 1), -EINVAL);
	assert_int_equal(delay_set(d, DELAY_MAX_US, DELAY_MAX_US), 0);
	disk_unref(d);
}

/* With huge delays, everything but read and write is still immediate:
 * done within passes of the loop that never wait (an hour's timer would
 * not have fired). */
static void test_delay_forwarding(void **state UNUSED)
{
	struct mockdisk m = { 0 };
	struct mockdisk_opts o = { .sectors = 64, .sector_size = 512, .fua = true,
				   .unmap = DISK_UNMAP_ZEROES, .caps = DISK_CAP_EJECT | DISK_CAP_PR };
	struct disk *d = delay_over(mockdisk_new(&m, &o), DELAY_MAX_US, DELAY_MAX_US);
	struct disk_io io;
	struct disk_extent ext[2];

	m.unmap_zeroes = true;
	assert_string_equal(disk_get_info(d)->type, "delay");
	assert_int_equal(disk_get_info(d)->unmap_behavior, DISK_UNMAP_ZEROES);
	assert_int_equal(disk_get_info(d)->caps & DISK_CAP_EJECT, 0);
	assert_int_equal(disk_sector_count(d), 64);
	io = (struct disk_io){ .op = DISK_OP_FLUSH };
	assert_int_equal(io_now(d, &io), DISK_OK);
	assert_int_equal(m.flushes, 1);
	io = (struct disk_io){ .op = DISK_OP_UNMAP, .sector = 0, .count = 4 };
	assert_int_equal(io_now(d, &io), DISK_OK);
	assert_int_equal(m.unmaps, 1);
	io = (struct disk_io){ .op = DISK_OP_PR_CAPS };
	assert_int_equal(io_now(d, &io), DISK_OK);
	assert_int_equal(io.u.pr.caps, DISK_PR_CAP_WE);
	assert_int_equal(m.prs, 1);
	io = (struct disk_io){ .op = DISK_OP_BLOCK_STATUS, .sector = 0, .count = 64 };
	io.u.bs.extents = ext;
	io.u.bs.max = 2;
	assert_int_equal(io_now(d, &io), DISK_OK);
	io = (struct disk_io){ .op = DISK_OP_EJECT };
	assert_int_equal(io_now(d, &io), DISK_UNSUPPORTED);
	/* Write-zeroes goes below undelayed (emulated there with writes). */
	io = (struct disk_io){ .op = DISK_OP_WRITE_ZEROES, .flags = DISK_IO_NO_UNMAP,
			       .sector = 8, .count = 8 };
	assert_int_equal(io_now(d, &io), DISK_OK);
	assert_true(m.writes >= 1);
	io = (struct disk_io){ .op = DISK_OP_CACHE, .count = 64 };
	assert_int_equal(io_now(d, &io), DISK_OK);
	assert_true(m.reads >= 1);
	/* FUA reaches the disk below with the write. */
	assert_int_equal(delay_set(d, 0, 0), 0);
	{
		uint8_t buf[512] = { 1 };

		assert_int_equal(disk_sync_write(d, 1, buf, sizeof(buf), DISK_IO_FUA), DISK_OK);
		assert_int_equal(m.fua_writes, 1);
	}
	disk_unref(d);
	assert_int_equal(m.closes, 1);
	mockdisk_release(&m);
}

static void test_delay_spec_and_describe(void **state UNUSED)
{
	struct tu_described cap;
	struct disk *d;
	uint64_t r, w;

	if (spec_open_str("delay:5/250us:mem:1M", false, NULL, &d, err, sizeof(err)) != 0)
		fail_msg("spec_open_str: %s", err);
	assert_int_equal(delay_get(d, &r, &w), 0);
	assert_int_equal(r, 5000);
	assert_int_equal(w, 250);
	tu_describe(d, &cap);
	assert_non_null(strstr(cap.text, "read-delay=5ms\n"));
	assert_non_null(strstr(cap.text, "write-delay=250us\n"));
	disk_unref(d);
	if (spec_open_str("delay:7:mem:1M", false, NULL, &d, err, sizeof(err)) != 0)
		fail_msg("spec_open_str: %s", err);
	assert_int_equal(delay_get(d, &r, &w), 0);
	assert_int_equal(r, 7000);
	assert_int_equal(w, 7000);
	disk_unref(d);
	assert_int_equal(spec_open_str("delay:3600001:mem:1M", false, NULL, &d, err, sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "too long"));
}

static void test_delay_contract(void **state UNUSED)
{
	static const uint32_t sizes[] = { 512, 4096 };

	for (unsigned i = 0; i < ARRAY_SIZE(sizes); i++) {
		struct disk *d = delay_over(ram(1 << 20, sizes[i]), 0, 0);

		contract_disk(d);
		disk_unref(d);
		/* And with a (short) delay, the same answers, only later. */
		d = delay_over(ram(1 << 20, sizes[i]), 100, 100);
		contract_disk(d);
		disk_unref(d);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_delay_read_waits),
		cmocka_unit_test(test_delay_write_delay),
		cmocka_unit_test(test_delay_concurrent),
		cmocka_unit_test(test_delay_set_next_request),
		cmocka_unit_test(test_delay_set_from_another_thread),
		cmocka_unit_test(test_delay_api_errors),
		cmocka_unit_test(test_delay_forwarding),
		cmocka_unit_test(test_delay_spec_and_describe),
		cmocka_unit_test(test_delay_contract),
	};

	return cmocka_run_group_tests_name("delay", tests, tu_reactor_setup, tu_reactor_teardown);
}
