/* SPDX-License-Identifier: MIT */
/*
 * fuzz-dbhd.c: libFuzzer target for .dbhd files opened by the SQLite layer
 * (storage/sqlitelayer.c, docs/layer-sqlite.md "Files from elsewhere"). The
 * input is the database file. Each run writes it to a file of its own
 * (in $TMPDIR, or /dev/shm when it exists), then opens it through the spec
 * resolver as `sql:` read-only, `sql:` read-write and `sqldiff:` over a
 * `mem:1M` disk, and drives each disk through the disk interface: reads at
 * both ends, block status, a write, a flush, a read back, an unmap and a
 * write-zeroes. Whatever the bytes, an open fails with a message or
 * succeeds, and every request completes with a status: no crash, hang,
 * leak or sanitizer report. And what the disk acknowledged it keeps: a
 * write that completed DISK_OK reads back as written, when the read back
 * succeeds, in every file that SQLite's integrity_check passes. (A b-tree
 * damaged in ways SQLite does not notice while it reads, keys out of
 * order, can hide a row just written: a limit documented in
 * docs/layer-sqlite.md, since checking a whole file at open costs a read
 * of all of it.)
 *
 * Seeds: tests/fuzz/run-fuzz.sh makes .dbhd files with `diskstack create`
 * and `copy` (data, zero and absent sectors, 512 and 4096-byte sectors, an
 * autocache file) and crafted ones with sqlite3 (a TEXT sector column, a
 * trigger, a view, an index, rows of the wrong type).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <sqlite3.h>

#include "common/compiler.h"
#include "common/log.h"
#include "common/reactor.h"
#include "storage/disk.h"
#include "storage/spec.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Largest buffer one request moves (a 1 MiB sector size is allowed). */
#define FUZZ_MAX_IO_BYTES (2u << 20)
/* Sectors read at each end of the disk, at most. */
#define FUZZ_READ_SECTORS 64u

static struct reactor *main_reactor;
static char dir[256], path[300];
static uint8_t *buf, *pattern;

static void rm_files(void)
{
	static const char *const sfx[] = { "", "-wal", "-shm", "-journal" };
	char p[320];

	for (size_t i = 0; i < sizeof(sfx) / sizeof(sfx[0]); i++) {
		snprintf(p, sizeof(p), "%s%s", path, sfx[i]);
		unlink(p);
	}
}

static void at_exit_cleanup(void)
{
	rm_files();
	rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *tmp = getenv("TMPDIR");
	struct stat st;

	(void)argc;
	(void)argv;
	log_set_level(getenv("FUZZ_VERBOSE") ? LOG_LEVEL_DEBUG : LOG_LEVEL_ERROR);
	if (!tmp || !*tmp)
		tmp = stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) ? "/dev/shm" : "/tmp";
	snprintf(dir, sizeof(dir), "%s/fuzz-dbhd.XXXXXX", tmp);
	if (!mkdtemp(dir))
		abort();
	snprintf(path, sizeof(path), "%s/f.dbhd", dir);
	atexit(at_exit_cleanup);
	if (reactor_new(&main_reactor, 0) < 0)
		abort();
	buf = malloc(FUZZ_MAX_IO_BYTES);
	pattern = malloc(FUZZ_MAX_IO_BYTES);
	if (!buf || !pattern)
		abort();
	for (size_t i = 0; i < FUZZ_MAX_IO_BYTES; i++)
		pattern[i] = (uint8_t)(i * 7 + 1);
	return 0;
}

/* Every status a request may end with here. */
static void check_status(int st)
{
	if (st < 0 || st >= DISK_STATUS_COUNT)
		abort();
}

/* True when SQLite finds the input file sound (PRAGMA integrity_check),
 * on a connection of our own with the same defences as the layer's. */
static bool file_is_sound(void)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	bool ok = false;

	if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
	    sqlite3_db_config(db, SQLITE_DBCONFIG_DEFENSIVE, 1, NULL) == SQLITE_OK &&
	    sqlite3_db_config(db, SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0, NULL) == SQLITE_OK &&
	    sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL) == SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_ROW) {
		const char *v = (const char *)sqlite3_column_text(st, 0);

		ok = v && strcmp(v, "ok") == 0;
	}
	sqlite3_finalize(st);
	sqlite3_close(db);
	return ok;
}

static void exercise(struct disk *d, bool read_only, bool sound, uint64_t pick)
{
	uint64_t n = disk_sector_count(d);
	uint32_t ss = disk_sector_size(d);
	uint64_t cnt, s;
	struct disk_extent ext[4];
	uint32_t nr;
	int st;

	if (n == 0 || ss > FUZZ_MAX_IO_BYTES)
		return;
	cnt = MIN((uint64_t)FUZZ_READ_SECTORS, MIN(n, (uint64_t)(FUZZ_MAX_IO_BYTES / ss)));
	check_status(disk_sync_read(d, 0, buf, cnt * ss));
	check_status(disk_sync_read(d, n - cnt, buf, cnt * ss));
	for (s = 0; s < n && s < 4096; s += MAX((uint64_t)1, ext[0].count)) {
		memset(ext, 0, sizeof(ext));
		nr = 0;
		st = disk_sync_block_status(d, s, MIN(n - s, (uint64_t)1024), ext, 4, &nr);
		check_status(st);
		if (st != DISK_OK)
			break;
		if (nr == 0 || nr > 4 || ext[0].count == 0 || ext[0].count > n - s)
			abort();
	}
	if (read_only)
		return;

	/* An acknowledged write reads back as written. */
	s = pick % n;
	st = disk_sync_write(d, s, pattern, ss, 0);
	check_status(st);
	check_status(disk_sync_flush(d));
	if (st == DISK_OK && sound) {
		memset(buf, 0xa5, ss);
		if (disk_sync_read(d, s, buf, ss) == DISK_OK && memcmp(buf, pattern, ss) != 0)
			abort();
	}
	cnt = MIN(n - s, (uint64_t)8);
	check_status(disk_sync_unmap(d, s, cnt, 0));
	check_status(disk_sync_write_zeroes(d, n - cnt, cnt, 0));
	check_status(disk_sync_read(d, n - cnt, buf, cnt * ss));
	check_status(disk_sync_flush(d));
}

/* Opens <@kind>:<path><@tail> and exercises it. */
static void run(const char *kind, const char *tail, bool read_only, bool sound, uint64_t pick)
{
	char spec[400], err[512] = "";
	struct disk *d = NULL;
	int r;

	snprintf(spec, sizeof(spec), "%s:%s%s", kind, path, tail);
	r = spec_open_str(spec, read_only, NULL, &d, err, sizeof(err));
	if (r < 0) {
		if (d || !err[0])
			abort();   /* a failed open says why and returns nothing */
		return;
	}
	exercise(d, read_only, sound, pick);
	disk_unref(d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint64_t pick = 0;
	bool sound;
	int fd;

	rm_files();
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || write(fd, data, size) != (ssize_t)size)
		abort();
	close(fd);
	/* Where the write goes: some bytes of the input (the file's tail). */
	for (size_t i = 0; i < 8 && i < size; i++)
		pick = pick << 8 | data[size - 1 - i];

	sound = file_is_sound();
	run("sql", "", true, sound, pick);
	run("sql", "", false, sound, pick);
	run("sqldiff", ":mem:1M", false, sound, pick);
	return 0;
}
