/* SPDX-License-Identifier: MIT */
/*
 * test-layered-commit.c: layered_commit_* (docs/layered.md "Commit"):
 * a memdiff: overlay over a file committed into the file (reopened alone
 * and compared with a flat model), the overlay kept and still reading the
 * same, data and zeroed runs, commits under concurrent writes against a
 * seeded model, a sqldiff: top layer, cancel, a write error of the disk below (the job fails
 * with its errno and the overlay loses nothing), and the refusals.
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/compiler.h"
#include "storage/spec.h"
#include "tests/unit/contract.h"
#include "tests/unit/testutil.h"

#define SS 512u
#define SECTORS 16384u          /* 8 MiB */
#define BYTES ((size_t)SECTORS * SS)

static char err[512];

/* Opens the spec formatted from @fmt; asserts success. */
static struct disk *open_spec(bool ro, const char *fmt, ...) PRINTF_FMT(2, 3);

static struct disk *open_spec(bool ro, const char *fmt, ...)
{
	char text[512];
	struct disk *d = NULL;
	va_list ap;
	int r;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	r = spec_open_str(text, ro, NULL, &d, err, sizeof(err));
	if (r != 0)
		print_error("spec_open_str(%s): %s\n", text, err);
	assert_int_equal(r, 0);
	return d;
}

/* A file of SECTORS sectors holding tu_fill's pattern with tag 1, and the
 * model of it. */
static const char *base_file(const char *name, uint8_t **model)
{
	const char *path = tu_path(name);
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

	assert_true(fd >= 0);
	*model = malloc(BYTES);
	assert_non_null(*model);
	tu_fill(*model, BYTES, 1, 0);
	tu_write_full(fd, *model, BYTES);
	close(fd);
	return path;
}

/* Writes @n sectors at @s through @d and into @model: tu_fill's pattern
 * with @tag, or zeroes (write-zeroes, a zeroed run in the RAM layer) when
 * @tag is 0. */
static void put(struct disk *d, uint8_t *model, uint64_t s, uint64_t n, uint64_t tag)
{
	uint8_t *p = model + s * SS;

	if (tag == 0) {
		memset(p, 0, n * SS);
		assert_int_equal(disk_sync_write_zeroes(d, s, n, 0), DISK_OK);
		return;
	}
	tu_fill(p, n * SS, tag, s * SS);
	assert_int_equal(disk_sync_write(d, s, p, n * SS, 0), DISK_OK);
}

/* Asserts that @d reads exactly @model. */
static void expect_model(struct disk *d, const uint8_t *model)
{
	uint8_t *buf = malloc(BYTES);

	assert_non_null(buf);
	assert_int_equal(disk_sync_read(d, 0, buf, BYTES), DISK_OK);
	for (size_t i = 0; i < BYTES; i += SS) {
		if (memcmp(buf + i, model + i, SS) != 0) {
			print_error("sector %zu differs from the model\n", i / SS);
			fail();
		}
	}
	free(buf);
}

/* Asserts that the file at @path, opened alone, holds @model. */
static void expect_file(const char *path, const uint8_t *model)
{
	struct disk *f = open_spec(true, "file:%s", path);

	contract_disk(f);
	expect_model(f, model);
	disk_unref(f);
}

static uint64_t top_sectors(struct disk *d)
{
	uint64_t data, alloc;

	ramlayer_memory(layered_disk_layer(d, 0), &data, &alloc);
	return data / SS;
}

/* Commits d's top layer into the file at path, waits for the job and
 * expects it done; returns the final progress for further checks. */
static struct layered_commit_progress commit_into_file(struct disk *d, const char *path)
{
	struct layered_commit *c;
	struct layered_commit_progress p;

	assert_int_equal(layered_commit_start(d, open_spec(false, "file:%s", path), &c, err,
					      sizeof(err)), 0);
	layered_commit_wait(c, &p);
	assert_int_equal(p.state, LAYERED_COMMIT_DONE);
	layered_commit_free(c);
	return p;
}

/* The end of every test: drop the overlay, then the file alone must read
 * as the model. */
static void close_expect_file(struct disk *d, const char *path, uint8_t *model)
{
	disk_unref(d);
	expect_file(path, model);
	free(model);
}

static void test_layered_commit_into_file(void **state UNUSED)
{
	uint8_t *model;
	const char *path = base_file("commit.img", &model);
	struct disk *d = open_spec(false, "memdiff:file:%s", path);
	struct layered_commit_progress p;

	put(d, model, 0, 1, 2);
	put(d, model, 100, 300, 3);          /* crosses chunks */
	put(d, model, 1000, 64, 0);          /* a zeroed run */
	put(d, model, 1010, 4, 4);           /* data inside it */
	put(d, model, SECTORS - 3, 3, 5);    /* the last sectors */
	assert_int_equal(top_sectors(d), 1 + 300 + 4 + 3);
	p = commit_into_file(d, path);
	assert_int_equal(p.error, 0);
	assert_true(p.passes >= 1);
	/* Everything the top layer held: data and zeroed sectors. */
	assert_int_equal(p.done_sectors, 1 + 300 + 64 + 3);
	assert_int_equal(p.total_sectors, p.done_sectors);
	/* The overlay is kept and reads the same; the file alone too. */
	assert_int_equal(top_sectors(d), 1 + 300 + 4 + 3);
	expect_model(d, model);
	expect_file(path, model);
	/* A second commit of the same overlay is allowed and changes nothing. */
	commit_into_file(d, path);
	close_expect_file(d, path, model);
}

/* Random writes (data and zeroes) through the overlay while a commit runs
 * into a file whose writes are slowed down (delay:), checked against a
 * flat model. Every write completed before the commit's last look at the
 * dirty chunks is in the file: proved when a pass started after the last
 * write had completed. If the commit ended before that (it never should
 * with the delay, but that is a matter of timing), a second commit with
 * no writes going on must bring the file to the model. */
static void test_layered_commit_concurrent_writes(void **state UNUSED)
{
	uint64_t seed = tu_seed("test_layered_commit_concurrent_writes"), rng = seed | 1;
	uint8_t *model;
	const char *path = base_file("concurrent.img", &model);
	struct disk *d = open_spec(false, "memdiff:file:%s", path);
	struct layered_commit *c;
	struct layered_commit_progress p;
	unsigned passes_after, round;

	/* Scattered runs, so the first pass makes many slow target writes. */
	for (unsigned i = 0; i < 200; i++)
		put(d, model, tu_rand(&rng) % (SECTORS - 8), 1 + tu_rand(&rng) % 8,
		    tu_rand(&rng) % 5 ? 100 + i : 0);
	for (round = 0;; round++) {
		assert_true(round < 2);
		assert_int_equal(layered_commit_start(d, open_spec(false, "delay:1us/1ms:file:%s",
								   path), &c, err, sizeof(err)), 0);
		for (unsigned i = 0; round == 0 && i < 300; i++) {
			uint64_t n = 1 + tu_rand(&rng) % 32;

			put(d, model, tu_rand(&rng) % (SECTORS - n), n,
			    tu_rand(&rng) % 6 ? 1000 + i : 0);
		}
		layered_commit_poll(c, &p);
		passes_after = p.passes;
		layered_commit_wait(c, &p);
		assert_int_equal(p.state, LAYERED_COMMIT_DONE);
		assert_true(p.done_sectors <= p.total_sectors);
		layered_commit_free(c);
		if (p.passes > passes_after)
			break;
		print_message("commit ended %s the writes (seed %llu): committing again\n",
			      round == 0 ? "before" : "after", (unsigned long long)seed);
	}
	expect_model(d, model);
	close_expect_file(d, path, model);
}

/* A cancelled commit leaves the overlay authoritative: the disk reads
 * the same, and a later commit finishes the job. */
static void test_layered_commit_cancel(void **state UNUSED)
{
	uint8_t *model;
	const char *path = base_file("cancel.img", &model);
	struct disk *d = open_spec(false, "memdiff:file:%s", path);
	struct layered_commit *c;
	struct layered_commit_progress p;

	for (uint64_t s = 0; s < SECTORS; s += 16)
		put(d, model, s, 8, 7);
	assert_int_equal(layered_commit_start(d, open_spec(false, "delay:1us/1ms:file:%s", path),
					      &c, err, sizeof(err)), 0);
	layered_commit_cancel(c);
	layered_commit_wait(c, &p);
	/* It may have finished before it saw the cancel. */
	assert_true(p.state == LAYERED_COMMIT_CANCELLED || p.state == LAYERED_COMMIT_DONE);
	assert_true(p.done_sectors <= p.total_sectors);
	layered_commit_free(c);
	expect_model(d, model);
	assert_int_equal(top_sectors(d), SECTORS / 2);
	commit_into_file(d, path);
	close_expect_file(d, path, model);
}

/* A write error of the disk below fails the job with its errno; nothing
 * is lost: the overlay still holds and serves every sector. */
static void test_layered_commit_write_error(void **state UNUSED)
{
	uint8_t *model;
	const char *path = base_file("error.img", &model);
	struct disk *d = open_spec(false, "memdiff:file:%s", path);
	struct layered_commit *c;
	struct layered_commit_progress p;

	put(d, model, 10, 20, 8);
	put(d, model, 5000, 20, 9);
	assert_int_equal(layered_commit_start(d, open_spec(false, "error:write:enospc;after=1:file:%s",
							   path), &c, err, sizeof(err)), 0);
	layered_commit_wait(c, &p);
	assert_int_equal(p.state, LAYERED_COMMIT_FAILED);
	assert_int_equal(p.error, -ENOSPC);
	assert_non_null(strstr(p.message, "writing the disk below at sector 5000"));
	assert_int_equal(p.done_sectors, 20);
	layered_commit_free(c);
	assert_int_equal(top_sectors(d), 40);
	expect_model(d, model);
	/* With the disk below healthy again, the commit completes. */
	commit_into_file(d, path);
	close_expect_file(d, path, model);
}

/* A sqldiff: top layer (read through the SQLite layer's worker pool) is
 * committed the same way. */
static void test_layered_commit_sqldiff(void **state UNUSED)
{
#ifdef HAVE_SQLITE
	uint8_t *model;
	const char *path = base_file("sqldiff.img", &model);
	const char *db = tu_path("sqldiff.dbhd");
	struct disk *d = open_spec(false, "sqldiff:%s;create:file:%s", db, path);
	struct layered_commit_progress p;

	put(d, model, 3, 40, 12);
	put(d, model, 9000, 16, 0);
	put(d, model, SECTORS - 1, 1, 13);
	p = commit_into_file(d, path);
	assert_int_equal(p.done_sectors, 40 + 16 + 1);
	expect_model(d, model);
	close_expect_file(d, path, model);
#else
	skip();
#endif
}

static void test_layered_commit_refusals(void **state UNUSED)
{
	uint8_t *model;
	const char *path = base_file("refuse.img", &model);
	struct disk *d = open_spec(false, "memdiff:file:%s", path);
	struct disk *ro = open_spec(true, "file:%s", path);
	struct disk *mem = open_spec(false, "mem:8M");
	struct disk *small = open_spec(false, "mem:4M");
	struct disk *t1 = open_spec(false, "delay:1us/1ms:file:%s", path);
	struct layered_commit *c, *c2;
	struct layered_commit_progress p;

	/* Read-only target, non-overlay disk, smaller target: refused, and
	 * the target stays the caller's. */
	assert_int_equal(layered_commit_start(d, ro, &c, err, sizeof(err)), -EROFS);
	assert_int_equal(layered_commit_start(mem, t1, &c, err, sizeof(err)), -EINVAL);
	assert_int_equal(layered_commit_start(d, small, &c, err, sizeof(err)), -EFBIG);
	/* One commit at a time. */
	for (uint64_t s = 0; s < SECTORS; s += 16)
		put(d, model, s, 1, 11);
	assert_int_equal(layered_commit_start(d, t1, &c, err, sizeof(err)), 0);
	assert_int_equal(layered_commit_start(d, mem, &c2, err, sizeof(err)), -EBUSY);
	layered_commit_wait(c, &p);
	assert_int_equal(p.state, LAYERED_COMMIT_DONE);
	layered_commit_free(c);
	assert_string_equal(layered_commit_state_str(LAYERED_COMMIT_CANCELLED), "cancelled");
	disk_unref(ro);
	disk_unref(mem);
	disk_unref(small);
	close_expect_file(d, path, model);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_layered_commit_into_file, tu_reactor_setup,
						tu_reactor_teardown),
		cmocka_unit_test_setup_teardown(test_layered_commit_concurrent_writes,
						tu_reactor_setup, tu_reactor_teardown),
		cmocka_unit_test_setup_teardown(test_layered_commit_cancel, tu_reactor_setup,
						tu_reactor_teardown),
		cmocka_unit_test_setup_teardown(test_layered_commit_write_error, tu_reactor_setup,
						tu_reactor_teardown),
		cmocka_unit_test_setup_teardown(test_layered_commit_sqldiff, tu_reactor_setup,
						tu_reactor_teardown),
		cmocka_unit_test_setup_teardown(test_layered_commit_refusals, tu_reactor_setup,
						tu_reactor_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
