/* SPDX-License-Identifier: MIT */
/*
 * test-sqlitelayer.c: unit tests of the SQLite layer and the auto-cache
 * layer (storage/sqlitelayer.c, docs/openvmm-compat.md §4.2, §4.3,
 * §7.1): the .dbhd schema and meta row, NULL = zero sectors, marking,
 * write-no-overwrite, unmap with and without next_is_zero, block status,
 * read-only rules, persistence, format-on-attach, open errors, the contract
 * suites (layer, and disks at 512 and 4096), a seeded model check from
 * several reactor threads, sqldiff, and the auto-cache key, fill and reopen
 * rules.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>
#include <cmocka.h>
#include <sqlite3.h>

#include "common/bitmap.h"
#include "common/compiler.h"
#include "storage/disk.h"
#include "storage/layered.h"
#include "storage/spec.h"
#include "storage/layers/sqlitelayer.h"
#include "tests/unit/contract.h"
#include "tests/unit/mockdisk.h"
#include "tests/unit/testutil.h"

#define KiB (1024ull)
#define MiB (1024ull * 1024)

static const char want_sectors_sql[] =
	"CREATE TABLE sectors (\n"
	"    -- if data is NULL, that indicates an all-zero sector.\n"
	"    -- otherwise, data has len == SECTOR_SIZE, containing the sector data.\n"
	"    sector INTEGER NOT NULL,\n"
	"    data   BLOB,\n"
	"    PRIMARY KEY (sector)\n"
	")";
static const char want_meta_sql[] =
	"CREATE TABLE meta (\n"
	"    metadata TEXT NOT NULL -- stored as JSON\n"
	")";

/* ---- helpers ------------------------------------------------------------ */

static void rm_db(const char *path)
{
	char p[4096];

	unlink(path);
	snprintf(p, sizeof(p), "%s-wal", path);
	unlink(p);
	snprintf(p, sizeof(p), "%s-shm", path);
	unlink(p);
}

/* A fresh attached layer formatted at @path with @size bytes of @ss. */
static struct layer *new_layer(const char *path, uint64_t size, uint32_t ss, bool lro,
			       struct layer_meta *meta)
{
	struct sqlitelayer_format f = { .logically_read_only = lro, .len_bytes = size,
					.sector_size = ss };
	struct sqlitelayer_opts o = { .format = &f };
	struct layer *l = NULL;
	char err[512] = "";
	int r;

	rm_db(path);
	r = sqlitelayer_new(path, &o, &l, err, sizeof(err));
	if (r)
		print_error("sqlitelayer_new: %s\n", err);
	assert_int_equal(r, 0);
	r = layer_attach(l, NULL, err, sizeof(err));
	if (r)
		print_error("attach: %s\n", err);
	assert_int_equal(r, 0);
	tu_layer_set_sector_size(l, layer_get_meta(l)->sector_size);
	if (meta)
		*meta = *layer_get_meta(l);
	return l;
}

/* Opens an existing .dbhd as an attached layer. */
static struct layer *open_layer(const char *path, bool ro)
{
	struct sqlitelayer_opts o = { .read_only = ro };
	struct layer *l = NULL;
	char err[512] = "";
	int r = sqlitelayer_new(path, &o, &l, err, sizeof(err));

	if (r)
		print_error("sqlitelayer_new(%s): %s\n", path, err);
	assert_int_equal(r, 0);
	assert_int_equal(layer_attach(l, NULL, err, sizeof(err)), 0);
	tu_layer_set_sector_size(l, layer_get_meta(l)->sector_size);
	return l;
}

/* A query's single integer result, through a separate connection. */
static long long q_int(const char *path, const char *sql)
{
	sqlite3 *db;
	sqlite3_stmt *st;
	long long v = -1;

	assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
	if (sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	sqlite3_close(db);
	return v;
}

/* A query's single text result (static buffer). */
static const char *q_text(const char *path, const char *sql)
{
	static char buf[1024];
	sqlite3 *db;
	sqlite3_stmt *st;

	buf[0] = '\0';
	assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
	if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
		snprintf(buf, sizeof(buf), "%s", (const char *)sqlite3_column_text(st, 0));
	sqlite3_finalize(st);
	sqlite3_close(db);
	return buf;
}

static void q_exec(const char *path, const char *sql)
{
	sqlite3 *db;

	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
}

/* Reads [s, s+n) and returns the number of sectors the layer marked. */
static uint64_t read_marked(struct layer *l, uint64_t s, uint64_t n, void *buf, int *status)
{
	uint64_t nmarked = 0;

	*status = tu_layer_read(l, s, buf, n * layer_get_meta(l)->sector_size, &nmarked);
	return nmarked;
}

static int layer_bs(struct layer *l, uint64_t s, uint64_t n, struct disk_extent *e)
{
	struct disk_io io = { 0 };

	memset(e, 0, sizeof(*e));
	io.op = DISK_OP_BLOCK_STATUS;
	io.sector = s;
	io.count = n;
	io.u.bs.extents = e;
	io.u.bs.max = 1;
	return tu_layer_io(l, &io);
}

static int layer_flush(struct layer *l)
{
	struct disk_io io = { .op = DISK_OP_FLUSH };

	return tu_layer_io(l, &io);
}

/* ---- format and schema ---------------------------------------------------- */

static void test_sqlitelayer_schema_and_meta(void **state)
{
	const char *p = tu_path("schema.dbhd");
	struct layer_meta m;
	struct layer *l;

	(void)state;
	l = new_layer(p, 1 * MiB, 512, false, &m);
	assert_int_equal(m.sector_size, 512);
	assert_int_equal(m.sector_count, 2048);
	assert_int_equal(m.physical_sector_size, 512);
	assert_int_equal(m.unmap_behavior, DISK_UNMAP_ZEROES);
	assert_false(m.fua_respected);
	assert_false(m.read_only);
	assert_true(m.can_read_cache);
	assert_false(m.has_disk_id);
	assert_int_equal(m.caps, DISK_CAP_PERSISTENT | DISK_CAP_VOLATILE_CACHE | DISK_CAP_COHERENT);
	assert_string_equal(layer_get_ops(l)->type, "sqlite");
	layer_free(l);

	assert_string_equal(q_text(p, "SELECT sql FROM sqlite_master WHERE name = 'sectors'"),
			    want_sectors_sql);
	assert_string_equal(q_text(p, "SELECT sql FROM sqlite_master WHERE name = 'meta'"),
			    want_meta_sql);
	assert_int_equal(q_int(p, "SELECT count(*) FROM sqlite_master"), 2);
	assert_string_equal(q_text(p, "SELECT metadata FROM meta"),
			    "{\"logically_read_only\":false,\"sector_count\":2048,\"sector_size\":512}");
	assert_string_equal(q_text(p, "PRAGMA journal_mode"), "wal");

	/* 4 KiB sectors, logically read-only. */
	l = new_layer(p, 1 * MiB, 4096, true, &m);
	assert_int_equal(m.sector_count, 256);
	assert_int_equal(m.sector_size, 4096);
	assert_true(m.read_only);
	layer_free(l);
	assert_string_equal(q_text(p, "SELECT metadata FROM meta"),
			    "{\"logically_read_only\":true,\"sector_count\":256,\"sector_size\":4096}");
	rm_db(p);
}

static void test_sqlitelayer_format_errors(void **state)
{
	const char *p = tu_path("fmterr.dbhd");
	struct sqlitelayer_format f = { 0 };
	struct sqlitelayer_opts o = { .format = &f };
	struct layer_meta lower = { .sector_size = 4096, .sector_count = 10 };
	struct layer *l;
	char err[512];

	(void)state;
	rm_db(p);
	/* Inherit with nothing below. */
	assert_int_equal(sqlitelayer_new(p, &o, &l, err, sizeof(err)), 0);
	assert_int_equal(layer_attach(l, NULL, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "no base layer to infer sector_count from"));
	layer_free(l);
	/* Inherit size and sector size from the layer below (§4.2). */
	assert_int_equal(sqlitelayer_new(p, &o, &l, err, sizeof(err)), 0);
	assert_int_equal(layer_attach(l, &lower, err, sizeof(err)), 0);
	assert_int_equal(layer_get_meta(l)->sector_size, 4096);
	assert_int_equal(layer_get_meta(l)->sector_count, 10);
	layer_free(l);
	/* Bad sizes. */
	f.len_bytes = 5000;
	f.sector_size = 4096;
	assert_int_equal(sqlitelayer_format_file(p, &f, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "not a multiple"));
	f.sector_size = 1000;
	assert_int_equal(sqlitelayer_new(p, &o, &l, err, sizeof(err)), -EINVAL);
	f.sector_size = 256;
	assert_int_equal(sqlitelayer_format_file(p, &f, err, sizeof(err)), -EINVAL);
	f.len_bytes = 0;
	f.sector_size = 512;
	assert_int_equal(sqlitelayer_format_file(p, &f, err, sizeof(err)), -EINVAL);
	rm_db(p);
}

static void test_sqlitelayer_open_errors(void **state)
{
	const char *p = tu_path("openerr.dbhd");
	struct sqlitelayer_opts o = { 0 };
	struct layer *l = NULL;
	char err[512];
	FILE *fp;

	(void)state;
	rm_db(p);
	assert_int_equal(sqlitelayer_new(p, &o, &l, err, sizeof(err)), -ENOENT);
	assert_null(l);

	/* Not a database. */
	fp = fopen(p, "w");
	assert_non_null(fp);
	for (int i = 0; i < 2000; i++)
		fputs("not a database ", fp);
	fclose(fp);
	assert_int_equal(sqlitelayer_new(p, &o, &l, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "not a .dbhd"));
	rm_db(p);

	/* A database without the tables. */
	q_exec(p, "CREATE TABLE x (y)");
	assert_int_equal(sqlitelayer_new(p, &o, &l, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "unexpected table 'x'"));
	q_exec(p, "DROP TABLE x");
	assert_int_equal(sqlitelayer_new(p, &o, &l, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "no table sectors"));
	/* Tables but no meta row. */
	q_exec(p, want_meta_sql);
	q_exec(p, want_sectors_sql);
	assert_int_equal(sqlitelayer_new(p, &o, &l, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "missing meta row"));
	/* Bad meta rows. */
	q_exec(p, "INSERT INTO meta VALUES ('{\"logically_read_only\":false,\"sector_count\":8,"
		  "\"sector_size\":1000}')");
	assert_int_equal(sqlitelayer_new(p, &o, &l, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "sector_size"));
	q_exec(p, "UPDATE meta SET metadata = '{\"sector_count\":8,\"sector_size\":512}'");
	assert_int_equal(sqlitelayer_new(p, &o, &l, err, sizeof(err)), -EINVAL);
	q_exec(p, "UPDATE meta SET metadata = '{\"logically_read_only\":0,\"sector_count\":8,"
		  "\"sector_size\":512}'");
	assert_int_equal(sqlitelayer_new(p, &o, &l, err, sizeof(err)), -EINVAL);
	q_exec(p, "UPDATE meta SET metadata = 'garbage'");
	assert_int_equal(sqlitelayer_new(p, &o, &l, err, sizeof(err)), -EINVAL);
	/* A correct one opens; fields in another order and spacing are fine. */
	q_exec(p, "UPDATE meta SET metadata = '{ \"sector_size\": 512, \"sector_count\": 8, "
		  "\"logically_read_only\": false }'");
	assert_int_equal(sqlitelayer_new(p, &o, &l, err, sizeof(err)), 0);
	assert_int_equal(layer_attach(l, NULL, err, sizeof(err)), 0);
	assert_int_equal(layer_get_meta(l)->sector_count, 8);
	layer_free(l);
	rm_db(p);
}

/* ---- I/O ------------------------------------------------------------------ */

static void test_sqlitelayer_read_write(void **state)
{
	const char *p = tu_path("rw.dbhd");
	uint8_t buf[8 * 512], want[8 * 512];
	struct layer *l;
	int st;

	(void)state;
	l = new_layer(p, 64 * KiB, 512, false, NULL);
	/* Nothing present: nothing marked, buffer untouched. */
	memset(buf, 0xee, sizeof(buf));
	assert_int_equal(read_marked(l, 0, 8, buf, &st), 0);
	assert_int_equal(st, DISK_OK);
	assert_int_equal(buf[0], 0xee);

	/* Sectors 2..4: data, data, zero. */
	tu_fill(want, 3 * 512, 1, 0);
	memset(want + 2 * 512, 0, 512);
	assert_int_equal(tu_layer_write(l, 2, want, 3 * 512, 0), DISK_OK);
	memset(buf, 0xee, sizeof(buf));
	assert_int_equal(read_marked(l, 0, 8, buf, &st), 3);
	assert_int_equal(st, DISK_OK);
	assert_int_equal(buf[0], 0xee);
	assert_memory_equal(buf + 2 * 512, want, 3 * 512);
	assert_int_equal(buf[5 * 512], 0xee);

	/* The zero sector is a NULL row, the others blobs of 512 bytes. */
	layer_free(l);
	assert_int_equal(q_int(p, "SELECT count(*) FROM sectors"), 3);
	assert_int_equal(q_int(p, "SELECT count(*) FROM sectors WHERE data IS NULL"), 1);
	assert_int_equal(q_int(p, "SELECT sector FROM sectors WHERE data IS NULL"), 4);
	assert_int_equal(q_int(p, "SELECT count(*) FROM sectors WHERE length(data) = 512"), 2);

	/* Persistence across reopen. */
	l = open_layer(p, false);
	memset(buf, 0xee, sizeof(buf));
	assert_int_equal(read_marked(l, 2, 3, buf, &st), 3);
	assert_memory_equal(buf, want, 3 * 512);

	/* Write-no-overwrite keeps present sectors and fills absent ones. */
	tu_fill(buf, 4 * 512, 2, 0);
	assert_int_equal(tu_layer_write(l, 1, buf, 4 * 512, DISK_IO_NO_OVERWRITE), DISK_OK);
	assert_int_equal(read_marked(l, 0, 8, buf, &st), 4);
	assert_int_equal(tu_check(buf + 512, 512, 2, 0), -1);
	assert_memory_equal(buf + 2 * 512, want, 3 * 512);

	/* Overwrite with data replaces the NULL row. */
	tu_fill(buf, 512, 3, 0);
	assert_int_equal(tu_layer_write(l, 4, buf, 512, 0), DISK_OK);
	assert_int_equal(read_marked(l, 4, 1, buf, &st), 1);
	assert_int_equal(tu_check(buf, 512, 3, 0), -1);

	/* A scattered iovec with a sector split between entries. */
	{
		uint8_t a[700], b[1024 - 700], out[1024];
		struct iovec iov[2] = { { a, sizeof(a) }, { b, sizeof(b) } };
		struct disk_io io = { .op = DISK_OP_WRITE, .sector = 10, .count = 2,
				      .iov = iov, .iovcnt = 2 };

		tu_fill(out, sizeof(out), 4, 0);
		memcpy(a, out, sizeof(a));
		memcpy(b, out + sizeof(a), sizeof(b));
		assert_int_equal(tu_layer_io(l, &io), DISK_OK);
		memset(a, 0, sizeof(a));
		memset(b, 0, sizeof(b));
		io.op = DISK_OP_READ;
		io.u.marker = NULL;
		assert_int_equal(tu_layer_io(l, &io), DISK_OK);
		assert_memory_equal(a, out, sizeof(a));
		assert_memory_equal(b, out + sizeof(a), sizeof(b));
	}

	/* Zero-length requests at the end are fine, past it not. */
	assert_int_equal(tu_layer_write(l, 128, buf, 0, 0), DISK_OK);
	assert_int_equal(tu_layer_write(l, 129, buf, 0, 0), DISK_ILLEGAL_BLOCK);
	assert_int_equal(tu_layer_unmap(l, 128, 0, true), DISK_OK);
	assert_int_equal(tu_layer_unmap(l, 129, 0, false), DISK_ILLEGAL_BLOCK);
	assert_int_equal(read_marked(l, 128, 0, buf, &st), 0);
	assert_int_equal(st, DISK_OK);
	assert_int_equal(layer_flush(l), DISK_OK);
	layer_free(l);
	rm_db(p);
}

static void test_sqlitelayer_unmap(void **state)
{
	const char *p = tu_path("unmap.dbhd");
	uint8_t buf[16 * 512];
	struct layer *l;
	int st;

	(void)state;
	l = new_layer(p, 64 * KiB, 512, false, NULL);
	tu_fill(buf, sizeof(buf), 5, 0);
	assert_int_equal(tu_layer_write(l, 0, buf, sizeof(buf), 0), DISK_OK);

	/* Count 0 is a no-op with either flag (upstream underflows). */
	assert_int_equal(tu_layer_unmap(l, 3, 0, true), DISK_OK);
	assert_int_equal(tu_layer_unmap(l, 3, 0, false), DISK_OK);
	assert_int_equal(q_int(p, "SELECT count(*) FROM sectors"), 16);

	/* next_is_zero: the rows go away (absent). */
	assert_int_equal(tu_layer_unmap(l, 2, 3, true), DISK_OK);
	assert_int_equal(read_marked(l, 0, 16, buf, &st), 13);
	assert_int_equal(q_int(p, "SELECT count(*) FROM sectors WHERE sector BETWEEN 2 AND 4"), 0);

	/* Without: explicit NULL rows (present zeroes), also over absent
	 * sectors. */
	assert_int_equal(tu_layer_unmap(l, 4, 4, false), DISK_OK);
	assert_int_equal(q_int(p, "SELECT count(*) FROM sectors WHERE data IS NULL"), 4);
	memset(buf, 0xee, sizeof(buf));
	assert_int_equal(read_marked(l, 0, 16, buf, &st), 14);
	assert_true(tu_is_zero(buf + 4 * 512, 4 * 512));
	assert_int_equal(buf[2 * 512], 0xee);
	assert_int_equal(tu_check(buf + 8 * 512, 512, 5, 8 * 512), -1);

	/* A large present-zero range in one statement. */
	layer_free(l);
	l = new_layer(p, 64 * MiB, 512, false, NULL);
	assert_int_equal(tu_layer_unmap(l, 1000, 100000, false), DISK_OK);
	assert_int_equal(q_int(p, "SELECT count(*) FROM sectors"), 100000);
	assert_int_equal(q_int(p, "SELECT min(sector) FROM sectors"), 1000);
	assert_int_equal(q_int(p, "SELECT max(sector) FROM sectors"), 100999);
	assert_int_equal(tu_layer_unmap(l, 0, 131072, true), DISK_OK);
	assert_int_equal(q_int(p, "SELECT count(*) FROM sectors"), 0);
	layer_free(l);
	rm_db(p);
}

static void test_sqlitelayer_block_status(void **state)
{
	const char *p = tu_path("bs.dbhd");
	uint8_t buf[4 * 512];
	struct disk_extent e;
	struct layer *l;

	(void)state;
	l = new_layer(p, 64 * KiB, 512, false, NULL);
	tu_fill(buf, sizeof(buf), 6, 0);
	assert_int_equal(tu_layer_write(l, 10, buf, 4 * 512, 0), DISK_OK);
	assert_int_equal(tu_layer_unmap(l, 14, 3, false), DISK_OK);

	assert_int_equal(layer_bs(l, 0, 128, &e), DISK_OK);
	assert_int_equal(e.count, 10);
	assert_int_equal(e.flags, DISK_EXTENT_HOLE);
	assert_int_equal(layer_bs(l, 10, 118, &e), DISK_OK);
	assert_int_equal(e.count, 4);
	assert_int_equal(e.flags, 0);
	assert_int_equal(layer_bs(l, 12, 100, &e), DISK_OK);
	assert_int_equal(e.count, 2);
	assert_int_equal(layer_bs(l, 14, 100, &e), DISK_OK);
	assert_int_equal(e.count, 3);
	assert_int_equal(e.flags, DISK_EXTENT_ZERO);
	assert_int_equal(layer_bs(l, 15, 1, &e), DISK_OK);
	assert_int_equal(e.count, 1);
	assert_int_equal(e.flags, DISK_EXTENT_ZERO);
	assert_int_equal(layer_bs(l, 17, 111, &e), DISK_OK);
	assert_int_equal(e.count, 111);
	assert_int_equal(e.flags, DISK_EXTENT_HOLE);
	assert_int_equal(layer_bs(l, 127, 2, &e), DISK_ILLEGAL_BLOCK);
	layer_free(l);
	rm_db(p);
}

static void test_sqlitelayer_read_only(void **state)
{
	const char *p = tu_path("ro.dbhd");
	uint8_t buf[512];
	struct layer *l;
	int st;

	(void)state;
	/* Logically read-only: normal writes and unmaps refused, caches fill. */
	l = new_layer(p, 64 * KiB, 512, true, NULL);
	tu_fill(buf, sizeof(buf), 7, 0);
	assert_int_equal(tu_layer_write(l, 1, buf, 512, 0), DISK_READ_ONLY);
	assert_int_equal(tu_layer_write(l, 200, buf, 512, 0), DISK_ILLEGAL_BLOCK);
	assert_int_equal(tu_layer_unmap(l, 1, 1, true), DISK_READ_ONLY);
	assert_int_equal(tu_layer_write(l, 1, buf, 512, DISK_IO_NO_OVERWRITE), DISK_OK);
	memset(buf, 0, sizeof(buf));
	assert_int_equal(read_marked(l, 1, 1, buf, &st), 1);
	assert_int_equal(tu_check(buf, 512, 7, 0), -1);
	layer_free(l);

	/* Opened read-only: every write refused, reads work, nothing changes. */
	l = new_layer(p, 64 * KiB, 512, false, NULL);
	assert_int_equal(tu_layer_write(l, 3, buf, 512, 0), DISK_OK);
	layer_free(l);
	l = open_layer(p, true);
	assert_true(layer_get_meta(l)->read_only);
	assert_false(layer_get_meta(l)->can_read_cache);
	assert_int_equal(tu_layer_write(l, 1, buf, 512, 0), DISK_READ_ONLY);
	assert_int_equal(tu_layer_write(l, 1, buf, 512, DISK_IO_NO_OVERWRITE), DISK_READ_ONLY);
	assert_int_equal(tu_layer_unmap(l, 1, 1, false), DISK_READ_ONLY);
	assert_int_equal(layer_flush(l), DISK_OK);
	assert_int_equal(read_marked(l, 0, 8, buf, &st), 1);
	layer_free(l);
	assert_int_equal(q_int(p, "SELECT count(*) FROM sectors"), 1);
	rm_db(p);
}

static void test_sqlitelayer_bad_sector_size(void **state)
{
	const char *p = tu_path("badsize.dbhd");
	uint8_t buf[4 * 512];
	struct layer *l;
	int st;

	(void)state;
	l = new_layer(p, 64 * KiB, 512, false, NULL);
	layer_free(l);
	q_exec(p, "INSERT INTO sectors VALUES (2, x'0102')");
	l = open_layer(p, false);
	assert_int_equal(tu_layer_read(l, 0, buf, sizeof(buf), NULL), DISK_MEDIUM_ERROR);
	/* Other sectors still read. */
	assert_int_equal(read_marked(l, 3, 1, buf, &st), 0);
	assert_int_equal(st, DISK_OK);
	layer_free(l);
	rm_db(p);
}

/* ---- crafted files ---------------------------------------------------------- */

/* sqlitelayer_new on @p must fail with -EINVAL and a message holding @what. */
static void open_refused(const char *p, const char *what)
{
	struct sqlitelayer_opts o = { 0 };
	struct layer *l = NULL;
	char err[512] = "";

	assert_int_equal(sqlitelayer_new(p, &o, &l, err, sizeof(err)), -EINVAL);
	assert_null(l);
	if (!strstr(err, what))
		fail_msg("error '%s' does not mention '%s'", err, what);
	o.read_only = true;
	assert_int_equal(sqlitelayer_new(p, &o, &l, err, sizeof(err)), -EINVAL);
}

/* A sectors table whose sector column is TEXT: a range query compares the
 * bound LBAs as text, so reading [0, 64) returned sectors '100' and '9'
 * and tripped the assertion in the read path (an out-of-bounds write into
 * the marker without asserts). The file must be refused at open. */
static void test_sqlitelayer_text_sector_column_crashes_read(void **state)
{
	const char *p = tu_path("textsector.dbhd");

	(void)state;
	rm_db(p);
	q_exec(p, "CREATE TABLE sectors (sector TEXT NOT NULL, data BLOB, PRIMARY KEY (sector));"
		  "CREATE TABLE meta (metadata TEXT NOT NULL);"
		  "INSERT INTO meta VALUES (json('{\"logically_read_only\":false,"
		  "\"sector_count\":64,\"sector_size\":512}'));"
		  "INSERT INTO sectors VALUES ('10', zeroblob(512)), ('9', NULL), ('100', NULL)");
	open_refused(p, "'sectors' is not the table the format creates");
	rm_db(p);
}

/* An AFTER INSERT trigger deleting what was just written: every write
 * completed DISK_OK and read back as zeroes. Refused at open; and a trigger
 * added by another process while the layer is open does not fire either. */
static void test_sqlitelayer_trigger_drops_acked_writes(void **state)
{
	const char *p = tu_path("trigger.dbhd");
	uint8_t buf[4 * 512], back[4 * 512];
	struct layer *l;

	(void)state;
	tu_fill(buf, sizeof(buf), 21, 0);
	l = new_layer(p, 64 * KiB, 512, false, NULL);
	/* A read first: the reader connection is opened (and checked) now. */
	assert_int_equal(tu_layer_read(l, 4, back, sizeof(back), NULL), DISK_OK);
	q_exec(p, "CREATE TRIGGER drop_writes AFTER INSERT ON sectors BEGIN "
		  "DELETE FROM sectors WHERE sector = new.sector; END");
	assert_int_equal(tu_layer_write(l, 4, buf, sizeof(buf), 0), DISK_OK);
	assert_int_equal(layer_flush(l), DISK_OK);
	assert_int_equal(tu_layer_read(l, 4, back, sizeof(back), NULL), DISK_OK);
	assert_memory_equal(buf, back, sizeof(buf));
	layer_free(l);
	assert_int_equal(q_int(p, "SELECT count(*) FROM sectors"), 4);
	open_refused(p, "unexpected trigger 'drop_writes'");
	rm_db(p);
}

/* Only our two tables, with our statement text: any other object or
 * variant is refused. */
static void test_sqlitelayer_schema_exact(void **state)
{
	static const struct {
		const char *sql;             /* run on a fresh, valid file */
		const char *what;            /* in the error */
	} bad[] = {
		{ "CREATE VIEW v AS SELECT * FROM sectors", "unexpected view 'v'" },
		{ "CREATE INDEX i ON sectors (data)", "unexpected index 'i'" },
		{ "CREATE TABLE extra (x)", "unexpected table 'extra'" },
		/* (and its shadow tables ft_node, ...) */
		{ "CREATE VIRTUAL TABLE ft USING rtree(id, x0, x1)", "unexpected table 'ft" },
		{ "DROP TABLE meta; CREATE VIEW meta AS SELECT json('{\"logically_read_only\":false,"
		  "\"sector_count\":8,\"sector_size\":512}') AS metadata",
		  "'meta' is not the table the format creates" },
		{ "DROP TABLE sectors; CREATE TABLE sectors (sector INTEGER NOT NULL, data BLOB, "
		  "PRIMARY KEY (sector))", "'sectors' is not the table the format creates" },
		{ "DROP TABLE sectors; CREATE TABLE sectors (sector INTEGER PRIMARY KEY "
		  "AUTOINCREMENT, data BLOB)", "'sectors' is not the table the format creates" },
		{ "DROP TABLE sectors", "no table sectors" },
	};
	const char *p = tu_path("schema-exact.dbhd");

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		layer_free(new_layer(p, 4 * KiB, 512, false, NULL));
		q_exec(p, bad[i].sql);
		open_refused(p, bad[i].what);
	}
	rm_db(p);
}

/* Renames table @from of @p to @name with the statement text @sql by
 * editing sqlite_schema (SQLite refuses to create tables named sqlite_*). */
static void q_forge_table(const char *p, const char *from, const char *name, const char *sql)
{
	char *q = sqlite3_mprintf("PRAGMA writable_schema = ON; UPDATE sqlite_schema SET name = %Q, "
				  "tbl_name = %Q, sql = %Q WHERE name = %Q", name, name, sql, from);

	assert_non_null(q);
	q_exec(p, q);
	sqlite3_free(q);
}

/* Regression: ANALYZE or PRAGMA optimize (run by anyone who opens the file
 * with the sqlite3 shell) adds SQLite's statistics table sqlite_stat1, or
 * sqlite_stat4 in builds with SQLITE_ENABLE_STAT4, and the file was no
 * longer "a .dbhd". They are allowed with the text SQLite creates them
 * with; a table of that name with other columns, or another sqlite_stat
 * table, is still refused. */
static void test_sqlitelayer_analyze_stat_tables_regression(void **state)
{
	static const struct {
		const char *name, *sql;
	} bad[] = {
		{ "sqlite_stat1", "CREATE TABLE sqlite_stat1(tbl,idx,stat,extra)" },
		{ "sqlite_stat4", "CREATE TABLE sqlite_stat4(tbl,idx,neq,nlt,ndlt)" },
		{ "sqlite_stat3", "CREATE TABLE sqlite_stat3(tbl,idx,neq,nlt,ndlt,sample)" },
	};
	const char *p = tu_path("analyze.dbhd");
	uint8_t buf[4 * 512], back[4 * 512];
	struct layer *l;

	(void)state;
	tu_fill(buf, sizeof(buf), 31, 8 * 512);
	l = new_layer(p, 64 * KiB, 512, false, NULL);
	assert_int_equal(tu_layer_write(l, 8, buf, sizeof(buf), 0), DISK_OK);
	layer_free(l);
	q_exec(p, "ANALYZE; PRAGMA optimize");
	assert_int_equal(q_int(p, "SELECT count(*) FROM sqlite_stat1"), 2);
	q_exec(p, "CREATE TABLE stat4 (tbl, idx, neq, nlt, ndlt, sample)");
	q_forge_table(p, "stat4", "sqlite_stat4",
		      "CREATE TABLE sqlite_stat4(tbl,idx,neq,nlt,ndlt,sample)");
	l = open_layer(p, false);
	memset(back, 0xee, sizeof(back));
	assert_int_equal(tu_layer_read(l, 8, back, sizeof(back), NULL), DISK_OK);
	assert_memory_equal(buf, back, sizeof(buf));
	assert_int_equal(tu_layer_write(l, 0, buf, 512, 0), DISK_OK);
	layer_free(l);

	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		layer_free(new_layer(p, 4 * KiB, 512, false, NULL));
		q_exec(p, "CREATE TABLE impostor (x)");
		q_forge_table(p, "impostor", bad[i].name, bad[i].sql);
		open_refused(p, bad[i].name);
	}
	rm_db(p);
}

/* Replaces the one occurrence of @from (@len bytes) in file @p by @to. */
static void patch_once(const char *p, const uint8_t *from, const uint8_t *to, size_t len)
{
	FILE *fp = fopen(p, "r+b");
	static uint8_t data[1 << 20];
	size_t n, hits = 0, at = 0;

	assert_non_null(fp);
	n = fread(data, 1, sizeof(data), fp);
	for (size_t i = 0; i + len <= n; i++) {
		if (memcmp(data + i, from, len) == 0) {
			hits++;
			at = i;
		}
	}
	assert_int_equal(hits, 1);
	assert_int_equal(fseek(fp, (long)at, SEEK_SET), 0);
	assert_int_equal(fwrite(to, 1, len, fp), len);
	fclose(fp);
}

/* Rows that break the layout behind a correct schema (a value of another
 * type, a rowid b-tree out of order): a medium error on that request, never
 * an assertion; other ranges still work. */
static void test_sqlitelayer_bad_rows_medium_error(void **state)
{
	/* Table leaf cell of row 5 (payload 3 bytes, rowid 5, a record of two
	 * NULLs: the rowid alias and data), made to claim rowid 2. */
	static const uint8_t cell5[] = { 0x03, 0x05, 0x03, 0x00, 0x00 };
	static const uint8_t cell2[] = { 0x03, 0x02, 0x03, 0x00, 0x00 };
	const char *p = tu_path("badrows.dbhd");
	uint8_t buf[10 * 512];
	struct disk_extent e;
	struct layer *l;
	int st;

	(void)state;
	layer_free(new_layer(p, 64 * KiB, 512, false, NULL));
	q_exec(p, "INSERT INTO sectors VALUES (20, 'text, not a blob'), (21, 7), (22, 1.5)");
	l = open_layer(p, false);
	for (unsigned s = 20; s < 23; s++) {
		assert_int_equal(tu_layer_read(l, s, buf, 512, NULL), DISK_MEDIUM_ERROR);
		assert_int_equal(layer_bs(l, s, 1, &e), DISK_MEDIUM_ERROR);
	}
	assert_int_equal(read_marked(l, 23, 1, buf, &st), 0);
	assert_int_equal(st, DISK_OK);
	layer_free(l);

	layer_free(new_layer(p, 64 * KiB, 512, false, NULL));
	q_exec(p, "WITH RECURSIVE r(x) AS (VALUES (0) UNION ALL SELECT x + 1 FROM r WHERE x < 9) "
		  "INSERT INTO sectors SELECT x, NULL FROM r");
	patch_once(p, cell5, cell2, sizeof(cell5));
	l = open_layer(p, false);
	assert_int_equal(tu_layer_read(l, 0, buf, sizeof(buf), NULL), DISK_MEDIUM_ERROR);
	assert_int_equal(layer_bs(l, 0, 10, &e), DISK_MEDIUM_ERROR);
	assert_int_equal(read_marked(l, 6, 4, buf, &st), 4);
	assert_int_equal(st, DISK_OK);
	layer_free(l);
	rm_db(p);
}

/* ---- contract suites ------------------------------------------------------- */

static void test_sqlitelayer_contract_layer(void **state)
{
	const char *p = tu_path("contract-layer.dbhd");
	struct layer_meta m;
	struct layer *l;

	(void)state;
	l = new_layer(p, 1 * MiB, 512, false, &m);
	contract_layer(l, &m);
	layer_free(l);
	l = new_layer(p, 1 * MiB, 4096, false, &m);
	contract_layer(l, &m);
	layer_free(l);
	rm_db(p);
}

/* A one-layer sql disk over a freshly formatted file (the API route for
 * 4 KiB sectors). */
static struct disk *new_sql_disk(const char *p, uint64_t size, uint32_t ss)
{
	struct layered_entry e = { 0 };
	struct disk *d = NULL;
	char err[512];

	e.layer = new_layer(p, size, ss, false, NULL);
	assert_int_equal(layered_disk_new(&e, 1, false, &d, err, sizeof(err)), 0);
	return d;
}

static void test_sqlitelayer_contract_disk(void **state)
{
	const char *p = tu_path("contract-disk.dbhd");
	uint8_t buf[8192];
	struct disk *d;

	(void)state;
	d = new_sql_disk(p, 1 * MiB, 512);
	assert_int_equal(disk_get_info(d)->unmap_behavior, DISK_UNMAP_ZEROES);
	assert_true(disk_get_info(d)->caps & DISK_CAP_PERSISTENT);
	contract_disk(d);
	disk_unref(d);

	d = new_sql_disk(p, 1 * MiB, 4096);
	assert_int_equal(disk_sector_size(d), 4096);
	assert_int_equal(disk_sector_count(d), 256);
	contract_disk(d);
	tu_fill(buf, sizeof(buf), 8, 0);
	assert_int_equal(disk_sync_write(d, 254, buf, sizeof(buf), DISK_IO_FUA), DISK_OK);
	memset(buf, 0, sizeof(buf));
	assert_int_equal(disk_sync_read(d, 254, buf, sizeof(buf)), DISK_OK);
	assert_int_equal(tu_check(buf, sizeof(buf), 8, 0), -1);
	/* Write-zeroes becomes an unmap that deletes (bottom layer). */
	assert_int_equal(disk_sync_write_zeroes(d, 254, 2, 0), DISK_OK);
	assert_int_equal(disk_sync_read(d, 254, buf, sizeof(buf)), DISK_OK);
	assert_true(tu_is_zero(buf, sizeof(buf)));
	assert_int_equal(disk_sync_flush(d), DISK_OK);
	disk_unref(d);
	assert_int_equal(q_int(p, "SELECT count(*) FROM sectors"), 0);
	rm_db(p);
}

/* ---- many reactors at once against a model ----------------------------------------- */

#define MT_THREADS 4
#define MT_SECTORS 512u
#define MT_OPS 400

struct mt_arg {
	struct disk *d;
	unsigned id;
	uint64_t seed;
	int failures;
};

/* Each thread owns sectors i with i % MT_THREADS == id, and keeps a model
 * of them: tag per sector (0 = zero). Requests run iodepth 8 through
 * disk_sync-style waits on the thread's own reactor. */
static void *mt_thread(void *opaque)
{
	struct mt_arg *a = opaque;
	uint64_t model[MT_SECTORS / MT_THREADS] = { 0 };
	uint64_t rng = a->seed;
	uint8_t buf[512];

	tu_reactor();
	for (int i = 0; i < MT_OPS; i++) {
		uint64_t k = tu_rand(&rng) % (MT_SECTORS / MT_THREADS);
		uint64_t lba = k * MT_THREADS + a->id;
		unsigned what = (unsigned)(tu_rand(&rng) % 10);
		int st;

		if (what < 5) {
			uint64_t tag = (uint64_t)i + 1 + ((uint64_t)a->id << 20);

			tu_fill(buf, 512, tag, lba * 512);
			st = disk_sync_write(a->d, lba, buf, 512, 0);
			if (st == DISK_OK)
				model[k] = tag;
		} else if (what < 6) {
			st = disk_sync_unmap(a->d, lba, 1, 0);
			if (st == DISK_OK)
				model[k] = 0;
		} else if (what < 7) {
			st = disk_sync_flush(a->d);
		} else {
			st = disk_sync_read(a->d, lba, buf, 512);
			if (st == DISK_OK && (model[k] ? tu_check(buf, 512, model[k], lba * 512) != -1
						       : !tu_is_zero(buf, 512)))
				a->failures++;
		}
		if (st != DISK_OK)
			a->failures++;
	}
	tu_reactor_done();
	return NULL;
}

static void test_sqlitelayer_threads(void **state)
{
	const char *p = tu_path("threads.dbhd");
	struct mt_arg args[MT_THREADS];
	pthread_t th[MT_THREADS];
	uint64_t seed = tu_seed("test_sqlitelayer_threads");
	struct disk *d;

	(void)state;
	d = new_sql_disk(p, MT_SECTORS * 512, 512);
	for (unsigned i = 0; i < MT_THREADS; i++) {
		args[i] = (struct mt_arg){ .d = d, .id = i, .seed = seed + i };
		assert_int_equal(pthread_create(&th[i], NULL, mt_thread, &args[i]), 0);
	}
	for (unsigned i = 0; i < MT_THREADS; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(args[i].failures, 0);
	}
	disk_unref(d);
	rm_db(p);
}

/* Regression (nbdkit_plugin_reactors_leak_contexts): a reactor that goes
 * away takes its per-reactor contexts with it. Under the nbdkit plugin
 * every worker thread makes a reactor and nbdkit makes workers per
 * connection; the layer kept one context per reactor that had ever used
 * it, until the layer closed. */
static void *rctx_thread(void *arg)
{
	uint8_t buf[512];

	tu_reactor();
	assert_int_equal(disk_sync_read(arg, 0, buf, sizeof(buf)), DISK_OK);
	assert_int_equal(disk_sync_write(arg, 1, buf, sizeof(buf), 0), DISK_OK);
	tu_reactor_done();
	return NULL;
}

static void test_sqlitelayer_reactor_contexts_freed(void **state)
{
	const char *p = tu_path("rctx.dbhd");
	struct disk *d;
	struct layer *l;

	(void)state;
	d = new_sql_disk(p, 1 * MiB, 512);
	l = layered_disk_layer(d, 0);
	for (int i = 0; i < 20; i++) {
		pthread_t th;

		assert_int_equal(pthread_create(&th, NULL, rctx_thread, d), 0);
		pthread_join(th, NULL);
		assert_int_equal(sqlitelayer_reactor_contexts(l), 0);
	}
	/* A live reactor keeps its context; closing the layer first (the
	 * other order) leaves the reactor, which lives on (the later tests
	 * use it), nothing to free. */
	tu_reactor();
	assert_int_equal(disk_sync_flush(d), DISK_OK);
	assert_int_equal(sqlitelayer_reactor_contexts(l), 1);
	disk_unref(d);
	rm_db(p);
}

/* Many writes in flight on one reactor: they are batched; each completes
 * with its data committed. */
struct burst {
	unsigned left;
	bool done;
	int bad;
};

static void burst_done(struct disk_io *io)
{
	struct burst *b = io->opaque;

	if (io->status != DISK_OK)
		b->bad++;
	if (--b->left == 0)
		b->done = true;
}

static void test_sqlitelayer_batched(void **state)
{
	const char *p = tu_path("batch.dbhd");
	enum { N = 64 };
	static struct disk_io ios[N + 1];
	static struct iovec iov[N];
	static uint8_t bufs[N][4096];
	struct burst b = { .left = N + 1 };
	struct disk *d;
	uint8_t rd[4096];

	(void)state;
	d = new_sql_disk(p, 4 * MiB, 4096);
	for (unsigned i = 0; i < N; i++) {
		tu_fill(bufs[i], 4096, 9 + i, 0);
		iov[i] = (struct iovec){ bufs[i], 4096 };
		ios[i] = (struct disk_io){ .op = DISK_OP_WRITE, .sector = i * 7 % 1024,
					   .iov = &iov[i], .iovcnt = 1, .done = burst_done,
					   .opaque = &b };
		disk_submit(d, &ios[i]);
	}
	ios[N] = (struct disk_io){ .op = DISK_OP_FLUSH, .done = burst_done, .opaque = &b };
	disk_submit(d, &ios[N]);
	assert_int_equal(reactor_run_until(tu_reactor(), &b.done), 0);
	assert_int_equal(b.bad, 0);
	for (unsigned i = 0; i < N; i++) {
		assert_int_equal(disk_sync_read(d, i * 7 % 1024, rd, 4096), DISK_OK);
		assert_int_equal(tu_check(rd, 4096, 9 + i, 0), -1);
	}
	disk_unref(d);
	assert_int_equal(q_int(p, "SELECT count(*) FROM sectors"), N);
	rm_db(p);
}

/* ---- specs: sql:, sqldiff: -------------------------------------------------------------- */

static struct disk *open_spec(const char *text, bool ro)
{
	char err[1024] = "";
	struct disk *d = NULL;
	int r = spec_open_str(text, ro, NULL, &d, err, sizeof(err));

	if (r)
		print_error("spec_open_str(%s): %s\n", text, err);
	assert_int_equal(r, 0);
	return d;
}

static void spec_fails(const char *text, bool ro, const struct spec_ctx *ctx, int want,
		       const char *part)
{
	char err[1024] = "";
	struct disk *d = NULL;
	int r = spec_open_str(text, ro, ctx, &d, err, sizeof(err));

	if (r != want || !strstr(err, part))
		print_error("spec_open_str(%s) = %d '%s'; want %d '%s'\n", text, r, err, want, part);
	assert_int_equal(r, want);
	assert_null(d);
	assert_non_null(strstr(err, part));
}

static void test_sqlitelayer_spec_sql(void **state)
{
	const char *p = tu_path("spec.dbhd");
	char text[1024];
	uint8_t buf[4096];
	struct disk *d;

	(void)state;
	rm_db(p);
	snprintf(text, sizeof(text), "sql:%s", p);
	spec_fails(text, false, NULL, -ENOENT, "No such file");
	snprintf(text, sizeof(text), "sql:%s;create=1M", p);
	d = open_spec(text, false);
	assert_int_equal(disk_sector_count(d), 2048);
	assert_int_equal(disk_sector_size(d), 512);
	assert_string_equal(disk_get_info(d)->type, "layered");
	assert_int_equal(disk_get_info(d)->unmap_behavior, DISK_UNMAP_ZEROES);
	contract_disk(d);
	tu_fill(buf, sizeof(buf), 10, 0);
	assert_int_equal(disk_sync_write(d, 100, buf, sizeof(buf), 0), DISK_OK);
	disk_unref(d);
	/* create= on an existing file is refused and leaves it alone. */
	spec_fails(text, false, NULL, -EEXIST, "already exists");
	snprintf(text, sizeof(text), "sql:%s,ro", p);
	d = open_spec(text, false);
	assert_true(disk_get_info(d)->read_only);
	memset(buf, 0, sizeof(buf));
	assert_int_equal(disk_sync_read(d, 100, buf, sizeof(buf)), DISK_OK);
	assert_int_equal(tu_check(buf, sizeof(buf), 10, 0), -1);
	assert_int_equal(disk_sync_write(d, 100, buf, 512, 0), DISK_READ_ONLY);
	disk_unref(d);
	/* Read-only from the caller's flag too. */
	snprintf(text, sizeof(text), "sql:%s", p);
	d = open_spec(text, true);
	assert_true(disk_get_info(d)->read_only);
	disk_unref(d);
	rm_db(p);
}

static void test_sqlitelayer_spec_sqldiff(void **state)
{
	const char *p = tu_path("diff.dbhd");
	const char *base = tu_path("diff-base.img");
	uint8_t buf[8192], orig[8192];
	char text[1024];
	struct disk *d;
	FILE *fp;

	(void)state;
	rm_db(p);
	tu_fill(orig, sizeof(orig), 11, 0);
	fp = fopen(base, "w");
	assert_non_null(fp);
	for (int i = 0; i < 32; i++)
		assert_int_equal(fwrite(orig, 1, sizeof(orig), fp), sizeof(orig));
	fclose(fp);

	snprintf(text, sizeof(text), "sqldiff:%s:file:%s", p, base);
	spec_fails(text, false, NULL, -ENOENT, "No such file");
	snprintf(text, sizeof(text), "sqldiff:%s;create:file:%s", p, base);
	d = open_spec(text, false);
	assert_int_equal(disk_sector_count(d), 512);
	assert_int_equal(layered_disk_layer_count(d), 2);
	/* Reads fall through to the base; writes land in the diff. */
	assert_int_equal(disk_sync_read(d, 16, buf, sizeof(buf)), DISK_OK);
	assert_memory_equal(buf, orig, sizeof(buf));
	memset(buf, 0x5a, 512);
	assert_int_equal(disk_sync_write(d, 17, buf, 512, 0), DISK_OK);
	/* Unmap over a non-zero base stores present zeroes (NULL rows). */
	assert_int_equal(disk_sync_unmap(d, 20, 2, 0), DISK_OK);
	assert_int_equal(disk_sync_read(d, 16, buf, sizeof(buf)), DISK_OK);
	assert_memory_equal(buf, orig, 512);
	assert_int_equal(buf[512], 0x5a);
	assert_memory_equal(buf + 1024, orig + 1024, 2 * 512);
	assert_true(tu_is_zero(buf + 4 * 512, 2 * 512));
	assert_memory_equal(buf + 6 * 512, orig + 6 * 512, 10 * 512);
	assert_int_equal(disk_sync_flush(d), DISK_OK);
	disk_unref(d);
	assert_int_equal(q_int(p, "SELECT count(*) FROM sectors"), 3);
	assert_int_equal(q_int(p, "SELECT count(*) FROM sectors WHERE data IS NULL"), 2);
	assert_string_equal(q_text(p, "SELECT metadata FROM meta"),
			    "{\"logically_read_only\":false,\"sector_count\":512,\"sector_size\":512}");

	/* The base is unchanged; reopening the diff sees the writes. */
	fp = fopen(base, "r");
	assert_non_null(fp);
	for (int i = 0; i < 32; i++) {
		assert_int_equal(fread(buf, 1, sizeof(buf), fp), sizeof(buf));
		assert_memory_equal(buf, orig, sizeof(buf));
	}
	fclose(fp);
	snprintf(text, sizeof(text), "sqldiff:%s:file:%s", p, base);
	d = open_spec(text, false);
	assert_int_equal(disk_sync_read(d, 17, buf, 512), DISK_OK);
	assert_int_equal(buf[0], 0x5a);
	disk_unref(d);
	snprintf(text, sizeof(text), "sqldiff:%s;create:file:%s", p, base);
	spec_fails(text, false, NULL, -EEXIST, "already exists");
	rm_db(p);
	unlink(base);
}

/* ---- auto-cache ------------------------------------------------------------------------------ */

static const uint8_t test_id[16] = { 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef,
				     0xfe, 0xdc, 0xba, 0x98, 0x76, 0x54, 0x32, 0x10 };

static void test_sqlitelayer_autocache_key(void **state)
{
	char key[33];

	(void)state;
	autocache_key_from_id(test_id, key);
	assert_string_equal(key, "0123456789abcdeffedcba9876543210");
}

/* An autocache layer (read cache) over a mock disk with an id and
 * @origin, filled with the pattern of @tag, as a read-only layered disk. */
static struct disk *new_cached_from(struct mockdisk *m, const char *root, const char *key,
				    bool ro, const char *origin, uint64_t tag, int *r_out,
				    char *err, size_t errlen)
{
	struct mockdisk_opts mo = { .sectors = 256, .has_disk_id = true, .read_only = true,
				    .origin = origin };
	struct layered_entry e[2] = { 0 };
	struct disk *lower, *d = NULL;
	int r;

	memcpy(mo.disk_id, test_id, 16);
	lower = mockdisk_new(m, &mo);
	assert_non_null(lower);
	for (unsigned i = 0; i < 256; i++)
		tu_fill(m->data + i * 512, 512, tag, i * 512);
	assert_int_equal(autocache_layer_new(root, key, false, &e[0].layer, err, errlen), 0);
	e[0].read_cache = true;
	assert_int_equal(disklayer_new(lower, &e[1].layer), 0);
	r = layered_disk_new(e, 2, ro, &d, err, errlen);
	*r_out = r;
	if (r < 0) {
		layer_free(e[0].layer);
		layer_free(e[1].layer);
	}
	return d;
}

static struct disk *new_cached(struct mockdisk *m, const char *root, const char *key, bool ro,
			       int *r_out, char *err, size_t errlen)
{
	return new_cached_from(m, root, key, ro, "mock:a", 12, r_out, err, errlen);
}

static void test_sqlitelayer_autocache(void **state)
{
	char root[1024], path[1200], err[512];
	struct mockdisk m = { 0 };
	uint8_t buf[16 * 512];
	struct disk *d;
	unsigned reads;
	int r;

	(void)state;
	snprintf(root, sizeof(root), "%s/cache-root", tu_tmpdir());
	snprintf(path, sizeof(path), "%s/0123456789abcdeffedcba9876543210/cache.dbhd", root);

	/* In the write path of a writable disk: refused (logically RO). */
	d = new_cached(&m, root, NULL, false, &r, err, sizeof(err));
	assert_int_equal(r, -EINVAL);
	assert_non_null(strstr(err, "read-only"));
	mockdisk_release(&m);
	memset(&m, 0, sizeof(m));

	d = new_cached(&m, root, NULL, true, &r, err, sizeof(err));
	if (r)
		print_error("%s\n", err);
	assert_int_equal(r, 0);
	assert_string_equal(q_text(path, "SELECT metadata FROM meta"),
			    "{\"logically_read_only\":true,\"sector_count\":256,\"sector_size\":512,"
			    "\"origin\":\"mock:a\"}");
	/* First read: from the lower disk, fills the cache. */
	reads = m.reads;
	assert_int_equal(disk_sync_read(d, 8, buf, sizeof(buf)), DISK_OK);
	assert_int_equal(tu_check(buf, sizeof(buf), 12, 8 * 512), -1);
	assert_true(m.reads > reads);
	assert_int_equal(q_int(path, "SELECT count(*) FROM sectors"), 16);
	/* Second read: served from the cache alone. */
	reads = m.reads;
	memset(buf, 0, sizeof(buf));
	assert_int_equal(disk_sync_read(d, 8, buf, sizeof(buf)), DISK_OK);
	assert_int_equal(tu_check(buf, sizeof(buf), 12, 8 * 512), -1);
	assert_int_equal(m.reads, reads);
	/* Partly cached: only the missing run goes down. */
	assert_int_equal(disk_sync_read(d, 4, buf, sizeof(buf)), DISK_OK);
	assert_int_equal(tu_check(buf, sizeof(buf), 12, 4 * 512), -1);
	assert_int_equal(m.reads, reads + 1);
	assert_int_equal(q_int(path, "SELECT count(*) FROM sectors"), 20);
	disk_unref(d);
	mockdisk_release(&m);
	memset(&m, 0, sizeof(m));

	/* Leftovers of creators that died: a stale one (2 hours old) is
	 * removed at the next open, a fresh one (maybe still working) kept. */
	char stale[1300], fresh[1300], f[1400];
	struct timeval old[2] = { { time(NULL) - 7200, 0 }, { time(NULL) - 7200, 0 } };

	snprintf(stale, sizeof(stale), "%s/0123456789abcdeffedcba9876543210/.tmp-AAAAAA", root);
	snprintf(fresh, sizeof(fresh), "%s/0123456789abcdeffedcba9876543210/.tmp-BBBBBB", root);
	assert_int_equal(mkdir(stale, 0755), 0);
	assert_int_equal(mkdir(fresh, 0755), 0);
	snprintf(f, sizeof(f), "%s/cache.dbhd", stale);
	FILE *fp = fopen(f, "w");

	assert_non_null(fp);
	fclose(fp);
	assert_int_equal(utimes(stale, old), 0);

	/* Reopen: still cached, no lower read. */
	d = new_cached(&m, root, NULL, true, &r, err, sizeof(err));
	assert_int_equal(r, 0);
	assert_int_equal(access(stale, F_OK), -1);
	assert_int_equal(access(fresh, F_OK), 0);
	assert_int_equal(rmdir(fresh), 0);
	reads = m.reads;
	assert_int_equal(disk_sync_read(d, 8, buf, sizeof(buf)), DISK_OK);
	assert_int_equal(tu_check(buf, sizeof(buf), 12, 8 * 512), -1);
	assert_int_equal(m.reads, reads);
	disk_unref(d);
	mockdisk_release(&m);
	memset(&m, 0, sizeof(m));

	/* A cache of another size under the same key is emptied and rebound
	 * (a stale read cache is worth nothing). */
	q_exec(path, "UPDATE meta SET metadata = json_set(metadata, '$.sector_count', 100)");
	d = new_cached(&m, root, NULL, true, &r, err, sizeof(err));
	assert_int_equal(r, 0);
	assert_int_equal(q_int(path, "SELECT count(*) FROM sectors"), 0);
	assert_string_equal(q_text(path, "SELECT metadata FROM meta"),
			    "{\"logically_read_only\":true,\"sector_count\":256,\"sector_size\":512,"
			    "\"origin\":\"mock:a\"}");
	disk_unref(d);
	mockdisk_release(&m);
	memset(&m, 0, sizeof(m));

	/* An explicit key. */
	d = new_cached(&m, root, "mykey", true, &r, err, sizeof(err));
	assert_int_equal(r, 0);
	assert_int_equal(disk_sync_read(d, 0, buf, 512), DISK_OK);
	disk_unref(d);
	mockdisk_release(&m);
	snprintf(path, sizeof(path), "%s/mykey/cache.dbhd", root);
	assert_int_equal(q_int(path, "SELECT count(*) FROM sectors"), 1);
}

/*
 * One image's cache served another image's data: the key was the VHD id
 * and only the sector count was checked, so a copy of an image (same id)
 * changed afterwards read back the original's bytes. The cache is bound to
 * its origin: another origin empties and rebinds it; and a process still
 * using the old binding neither reads the new origin's rows nor stores its
 * own fills there.
 */
static void test_sqlitelayer_autocache_other_image_served(void **state)
{
	char root[1024], path[1200], err[512];
	struct mockdisk ma = { 0 }, mb = { 0 };
	uint8_t buf[16 * 512];
	struct disk *a, *b;
	unsigned reads;
	int r;

	(void)state;
	snprintf(root, sizeof(root), "%s/cache-origin", tu_tmpdir());
	snprintf(path, sizeof(path), "%s/0123456789abcdeffedcba9876543210/cache.dbhd", root);

	/* One after the other: b reads its own bytes, and the cache is b's. */
	a = new_cached_from(&ma, root, NULL, true, "mock:a", 12, &r, err, sizeof(err));
	assert_int_equal(r, 0);
	assert_int_equal(disk_sync_read(a, 0, buf, sizeof(buf)), DISK_OK);
	assert_int_equal(tu_check(buf, sizeof(buf), 12, 0), -1);
	disk_unref(a);
	mockdisk_release(&ma);
	b = new_cached_from(&mb, root, NULL, true, "mock:b", 13, &r, err, sizeof(err));
	assert_int_equal(r, 0);
	assert_int_equal(disk_sync_read(b, 0, buf, sizeof(buf)), DISK_OK);
	assert_int_equal(tu_check(buf, sizeof(buf), 13, 0), -1);
	assert_string_equal(q_text(path, "SELECT json_extract(metadata, '$.origin') FROM meta"),
			    "mock:b");
	disk_unref(b);
	mockdisk_release(&mb);

	/* Both open: a binds and fills, then b rebinds and fills half. */
	a = new_cached_from(&ma, root, NULL, true, "mock:a", 12, &r, err, sizeof(err));
	assert_int_equal(r, 0);
	assert_int_equal(disk_sync_read(a, 0, buf, sizeof(buf)), DISK_OK);
	b = new_cached_from(&mb, root, NULL, true, "mock:b", 13, &r, err, sizeof(err));
	assert_int_equal(r, 0);
	assert_int_equal(disk_sync_read(b, 0, buf, 8 * 512), DISK_OK);
	assert_int_equal(tu_check(buf, 8 * 512, 13, 0), -1);
	/* a reads its own bytes from below, and stores nothing. */
	reads = ma.reads;
	assert_int_equal(disk_sync_read(a, 0, buf, sizeof(buf)), DISK_OK);
	assert_int_equal(tu_check(buf, sizeof(buf), 12, 0), -1);
	assert_true(ma.reads > reads);
	assert_int_equal(disk_sync_read(a, 32, buf, sizeof(buf)), DISK_OK);
	assert_int_equal(tu_check(buf, sizeof(buf), 12, 32 * 512), -1);
	assert_int_equal(q_int(path, "SELECT count(*) FROM sectors"), 8);
	/* b's cache holds b's bytes only. */
	assert_int_equal(disk_sync_read(b, 0, buf, sizeof(buf)), DISK_OK);
	assert_int_equal(tu_check(buf, sizeof(buf), 13, 0), -1);
	assert_int_equal(disk_sync_read(b, 32, buf, sizeof(buf)), DISK_OK);
	assert_int_equal(tu_check(buf, sizeof(buf), 13, 32 * 512), -1);
	disk_unref(a);
	disk_unref(b);
	mockdisk_release(&ma);
	mockdisk_release(&mb);
}

static void test_sqlitelayer_autocache_errors(void **state)
{
	char root[1024], err[512];
	struct layer *l;
	struct layer_meta lower = { .sector_size = 512, .sector_count = 8 };

	(void)state;
	snprintf(root, sizeof(root), "%s/cache-err", tu_tmpdir());
	/* Nothing below. */
	assert_int_equal(autocache_layer_new(root, NULL, false, &l, err, sizeof(err)), 0);
	assert_int_equal(layer_attach(l, NULL, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "no layer to cache"));
	layer_free(l);
	/* No disk id and no key. */
	assert_int_equal(autocache_layer_new(root, NULL, false, &l, err, sizeof(err)), 0);
	assert_int_equal(layer_attach(l, &lower, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "cannot cache without a disk ID"));
	layer_free(l);
	/* A bad key. */
	assert_int_equal(autocache_layer_new(root, "a/b", false, &l, err, sizeof(err)), 0);
	assert_int_equal(layer_attach(l, &lower, err, sizeof(err)), -EINVAL);
	layer_free(l);
	/* A disk id without an origin: an id alone names no particular bytes. */
	lower.has_disk_id = true;
	assert_int_equal(autocache_layer_new(root, NULL, false, &l, err, sizeof(err)), 0);
	assert_int_equal(layer_attach(l, &lower, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "does not tell where its data comes from"));
	layer_free(l);
	/* Read-only and no cache yet. */
	assert_int_equal(autocache_layer_new(root, "nocache", true, &l, err, sizeof(err)), 0);
	assert_int_equal(layer_attach(l, &lower, err, sizeof(err)), -ENOENT);
	layer_free(l);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sqlitelayer_schema_and_meta),
		cmocka_unit_test(test_sqlitelayer_format_errors),
		cmocka_unit_test(test_sqlitelayer_open_errors),
		cmocka_unit_test(test_sqlitelayer_read_write),
		cmocka_unit_test(test_sqlitelayer_unmap),
		cmocka_unit_test(test_sqlitelayer_block_status),
		cmocka_unit_test(test_sqlitelayer_read_only),
		cmocka_unit_test(test_sqlitelayer_bad_sector_size),
		cmocka_unit_test(test_sqlitelayer_text_sector_column_crashes_read),
		cmocka_unit_test(test_sqlitelayer_trigger_drops_acked_writes),
		cmocka_unit_test(test_sqlitelayer_schema_exact),
		cmocka_unit_test(test_sqlitelayer_analyze_stat_tables_regression),
		cmocka_unit_test(test_sqlitelayer_bad_rows_medium_error),
		cmocka_unit_test(test_sqlitelayer_contract_layer),
		cmocka_unit_test(test_sqlitelayer_contract_disk),
		cmocka_unit_test(test_sqlitelayer_threads),
		cmocka_unit_test(test_sqlitelayer_reactor_contexts_freed),
		cmocka_unit_test(test_sqlitelayer_batched),
		cmocka_unit_test(test_sqlitelayer_spec_sql),
		cmocka_unit_test(test_sqlitelayer_spec_sqldiff),
		cmocka_unit_test(test_sqlitelayer_autocache_key),
		cmocka_unit_test(test_sqlitelayer_autocache),
		cmocka_unit_test(test_sqlitelayer_autocache_other_image_served),
		cmocka_unit_test(test_sqlitelayer_autocache_errors),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
