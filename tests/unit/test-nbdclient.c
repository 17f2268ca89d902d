/* SPDX-License-Identifier: MIT */
/*
 * test-nbdclient.c: the NBD client backend (storage/nbdclient.c) against
 * real nbdkit servers (memory plugin, with the log, error, delay,
 * multi-conn and blocksize-policy filters): the contract suites, round
 * trips, flags reaching the server, block status, the error table, many
 * reactors on one disk with and without multi-conn, lost connections and
 * reconnects (skipped when nbdkit is not installed); and, against the
 * scripted server of nbdscript.h, replies no well-behaved server sends.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/compiler.h"
#include "storage/backends/nbdclient.h"
#include "storage/spec.h"
#include "tests/unit/contract.h"
#include "tests/unit/nbdscript.h"
#include "tests/unit/testproc.h"
#include "tests/unit/testutil.h"

#define MIB ((uint64_t)1 << 20)

/* ---- nbdkit ------------------------------------------------------------------ */

struct srv {
	pid_t pid;
	char sock[PATH_MAX];
	char pidfile[PATH_MAX];         /* written once nbdkit accepts connections */
	char log[PATH_MAX];             /* the log filter's file, if used */
	char uri[PATH_MAX + 32];
};

static bool have_nbdkit;

/* Starts "nbdkit -f -U <sock> -P <pidfile> ARGS..." (ARGS NULL-terminated;
 * "@LOG" is replaced by the log file's path) and waits for the pid file:
 * nbdkit writes it once it listens (the socket file appears earlier). */
static void srv_start(struct srv *s, const char *name, const char *const args[])
{
	char *argv[32];
	char logarg[PATH_MAX + 16];
	unsigned n = 0;

	memset(s, 0, sizeof(*s));
	snprintf(s->sock, sizeof(s->sock), "%s.sock", tu_path(name));
	snprintf(s->log, sizeof(s->log), "%s.log", tu_path(name));
	snprintf(s->pidfile, sizeof(s->pidfile), "%s.pid", tu_path(name));
	unlink(s->sock);
	unlink(s->log);
	unlink(s->pidfile);
	argv[n++] = "nbdkit";
	argv[n++] = "-f";
	argv[n++] = "-U";
	argv[n++] = s->sock;
	argv[n++] = "-P";
	argv[n++] = s->pidfile;
	for (unsigned i = 0; args[i]; i++) {
		if (strcmp(args[i], "@LOG") == 0) {
			snprintf(logarg, sizeof(logarg), "logfile=%s", s->log);
			argv[n++] = logarg;
		} else {
			argv[n++] = (char *)args[i];
		}
	}
	argv[n] = NULL;
	s->pid = tp_spawn(argv, tu_path("nbdkit.out"));
	assert_true(s->pid > 0);
	if (!tp_wait_file(s->pidfile, true, 10000, s->pid))
		fail_msg("nbdkit did not start (see %s)", tu_path("nbdkit.out"));
	snprintf(s->uri, sizeof(s->uri), "nbd+unix:///?socket=%s", s->sock);
}

static void srv_stop(struct srv *s)
{
	tp_stop(s->pid, 5000);
	s->pid = 0;
	unlink(s->sock);
}

/* Kills the server at once (a crash, not a clean stop). */
static void srv_kill(struct srv *s)
{
	kill(s->pid, SIGKILL);
	tp_stop(s->pid, 1000);
	s->pid = 0;
	unlink(s->sock);
}

#define NEED_NBDKIT() do { if (!have_nbdkit) skip(); } while (0)

static struct nbdclient_opts quick_opts(void)
{
	struct nbdclient_opts o;

	nbdclient_opts_default(&o);
	o.reconnect_delay_ms = 1;
	o.reconnect_max_ms = 2;
	return o;
}

static struct disk *open_ok(const char *uri, bool ro, const struct nbdclient_opts *o)
{
	char err[512] = "";
	struct disk *d = NULL;
	int r = nbdclient_open(uri, ro, o, &d, err, sizeof(err));

	if (r < 0)
		fail_msg("nbdclient_open(%s): %s (%s)", uri, strerror(-r), err);
	return d;
}

static int io_status(struct disk *d, enum disk_op op, uint64_t sector, uint64_t count,
		     uint32_t flags, int *os_errno)
{
	struct disk_io io = { .op = op, .sector = sector, .count = count, .flags = flags };
	int st = disk_sync_io(d, &io);

	if (os_errno)
		*os_errno = io.os_errno;
	return st;
}

static int read_st(struct disk *d, uint64_t sector, void *buf, size_t len, int *os_errno)
{
	struct iovec iov = { .iov_base = buf, .iov_len = len };
	struct disk_io io = { .op = DISK_OP_READ, .sector = sector, .iov = &iov, .iovcnt = 1 };
	int st = disk_sync_io(d, &io);

	if (os_errno)
		*os_errno = io.os_errno;
	return st;
}

static void write_pattern(struct disk *d, uint64_t off, size_t len, uint64_t tag)
{
	void *buf = malloc(len);

	assert_non_null(buf);
	tu_fill(buf, len, tag, off);
	assert_int_equal(disk_sync_write(d, off / disk_sector_size(d), buf, len, 0), DISK_OK);
	free(buf);
}

static void read_pattern(struct disk *d, uint64_t off, size_t len, uint64_t tag)
{
	void *buf = malloc(len);
	long bad;

	assert_non_null(buf);
	memset(buf, 0xee, len);
	assert_int_equal(disk_sync_read(d, off / disk_sector_size(d), buf, len), DISK_OK);
	bad = tu_check(buf, len, tag, off);
	if (bad >= 0)
		fail_msg("read at %" PRIu64 " +%zu: bad byte at %ld", off, len, bad);
	free(buf);
}

/* A describe parameter of @d ("connections" ...), or "" */
struct desc_find {
	const char *key;
	char value[256];
};

static void desc_param(struct disk_describer *dd, const char *key, const char *value)
{
	struct desc_find *f = dd->opaque;

	if (strcmp(key, f->key) == 0)
		snprintf(f->value, sizeof(f->value), "%s", value);
}

static const char *describe_get(struct disk *d, const char *key)
{
	static struct desc_find f;
	struct disk_describer dd = { .param = desc_param, .opaque = &f };

	f.key = key;
	f.value[0] = '\0';
	disk_describe(d, &dd);
	return f.value;
}

/* Number of lines of @path containing @needle. */
static int log_count(const char *path, const char *needle)
{
	FILE *f = fopen(path, "r");
	char line[1024];
	int n = 0;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (strstr(line, needle))
			n++;
	fclose(f);
	return n;
}

static int group_setup(void **state UNUSED)
{
	tu_reactor();
	have_nbdkit = tp_have("nbdkit");
	if (!have_nbdkit)
		fprintf(stderr, "# nbdkit not installed: NBD tests skipped\n");
	return 0;
}

/* ---- tables -------------------------------------------------------------------- */

static void test_nbdclient_errno_table(void **state UNUSED)
{
	assert_int_equal(nbdclient_status_of_errno(0), DISK_OK);
	assert_int_equal(nbdclient_status_of_errno(EIO), DISK_IO_ERROR);
	assert_int_equal(nbdclient_status_of_errno(ENOMEM), DISK_IO_ERROR);
	assert_int_equal(nbdclient_status_of_errno(ESHUTDOWN), DISK_IO_ERROR);
	assert_int_equal(nbdclient_status_of_errno(ENOTCONN), DISK_IO_ERROR);
	assert_int_equal(nbdclient_status_of_errno(EPERM), DISK_READ_ONLY);
	assert_int_equal(nbdclient_status_of_errno(EROFS), DISK_READ_ONLY);
	assert_int_equal(nbdclient_status_of_errno(ENOSPC), DISK_ILLEGAL_BLOCK);
	assert_int_equal(nbdclient_status_of_errno(EINVAL), DISK_ILLEGAL_BLOCK);
	assert_int_equal(nbdclient_status_of_errno(EOVERFLOW), DISK_INVALID_INPUT);
	assert_int_equal(nbdclient_status_of_errno(ENOTSUP), DISK_UNSUPPORTED);
	assert_int_equal(nbdclient_status_of_errno(EOPNOTSUPP), DISK_UNSUPPORTED);
}

static void test_nbdclient_extent_conversion(void **state UNUSED)
{
	struct disk_extent e[4];
	struct nbdclient_extent_acc a = { .ext = e, .max = 4, .shift = 9, .want = 100 };

	/* Aligned runs, equal flags merged. */
	nbdclient_extent_add(&a, 1024, 0);
	nbdclient_extent_add(&a, 512, 0);
	nbdclient_extent_add(&a, 2048, DISK_EXTENT_HOLE | DISK_EXTENT_ZERO);
	assert_int_equal(a.nr, 2);
	assert_int_equal(e[0].count, 3);
	assert_int_equal(e[0].flags, 0);
	assert_int_equal(e[1].count, 4);
	assert_int_equal(e[1].flags, DISK_EXTENT_HOLE | DISK_EXTENT_ZERO);
	assert_int_equal(e[1].layer, -1);
	/* A sector split between a hole and zeroes is only zero; one split
	 * between a hole and data is data. */
	nbdclient_extent_add(&a, 100, DISK_EXTENT_HOLE | DISK_EXTENT_ZERO);
	nbdclient_extent_add(&a, 412, DISK_EXTENT_ZERO);
	assert_int_equal(a.nr, 3);
	assert_int_equal(e[2].count, 1);
	assert_int_equal(e[2].flags, DISK_EXTENT_ZERO);
	nbdclient_extent_add(&a, 300, DISK_EXTENT_HOLE | DISK_EXTENT_ZERO);
	nbdclient_extent_add(&a, 212 + 1024, 0);
	assert_int_equal(a.nr, 4);
	assert_int_equal(e[3].count, 3);
	assert_int_equal(e[3].flags, 0);
	assert_int_equal(a.done, 3 + 4 + 1 + 3);
	/* No room for another run: stop. */
	nbdclient_extent_add(&a, 4096, DISK_EXTENT_HOLE);
	assert_int_equal(a.nr, 4);
	assert_int_equal(a.done, 11);
	nbdclient_extent_add(&a, 512, 0);
	assert_int_equal(e[3].count, 3);

	/* Never more than asked for. */
	a = (struct nbdclient_extent_acc){ .ext = e, .max = 4, .shift = 12, .want = 2 };
	nbdclient_extent_add(&a, 1 << 20, DISK_EXTENT_ZERO);
	assert_int_equal(a.nr, 1);
	assert_int_equal(e[0].count, 2);
}

/* ---- basic ------------------------------------------------------------------------ */

static void test_nbdclient_contract(void **state UNUSED)
{
	const char *args[] = { "memory", "1M", NULL };
	struct srv s;
	struct disk *d;
	const struct disk_info *info;

	NEED_NBDKIT();
	srv_start(&s, "contract", args);
	d = open_ok(s.uri, false, NULL);
	info = disk_get_info(d);
	assert_string_equal(info->type, "nbd");
	assert_int_equal(info->sector_size, 512);
	assert_int_equal(disk_sector_count(d), 2048);
	assert_false(info->read_only);
	assert_true(info->fua_respected);
	assert_int_equal(info->unmap_behavior, DISK_UNMAP_UNSPECIFIED);
	assert_true(info->caps & DISK_CAP_COHERENT);
	assert_true(info->caps & DISK_CAP_BLOCK_STATUS);
	assert_true(info->caps & DISK_CAP_FAST_ZERO);
	assert_true(info->caps & DISK_CAP_VOLATILE_CACHE);
	contract_disk(d);
	disk_unref(d);
	/* Read-only open of the same export. */
	d = open_ok(s.uri, true, NULL);
	assert_true(disk_get_info(d)->read_only);
	assert_int_equal(disk_get_info(d)->unmap_behavior, DISK_UNMAP_IGNORED);
	contract_disk(d);
	disk_unref(d);
	srv_stop(&s);
}

static void test_nbdclient_roundtrip(void **state UNUSED)
{
	/* A small maximum payload, so large requests split. */
	const char *args[] = { "--filter=blocksize-policy", "memory", "8M",
			       "blocksize-maximum=65536", "blocksize-preferred=4096", NULL };
	struct srv s;
	struct disk *d;
	uint8_t *a, *b;
	struct iovec iov[2];
	struct disk_io io = { .op = DISK_OP_WRITE, .sector = 100, .iov = iov, .iovcnt = 2 };

	NEED_NBDKIT();
	srv_start(&s, "roundtrip", args);
	d = open_ok(s.uri, false, NULL);
	assert_int_equal(disk_get_info(d)->physical_sector_size, 4096);
	write_pattern(d, 0, 4096, 1);
	write_pattern(d, 8 * MIB - 512, 512, 2);
	write_pattern(d, 1 * MIB, 3 * MIB + 512, 3);          /* 49 commands */
	read_pattern(d, 0, 4096, 1);
	read_pattern(d, 8 * MIB - 512, 512, 2);
	read_pattern(d, 1 * MIB, 3 * MIB + 512, 3);
	read_pattern(d, 2 * MIB + 1024, 70000 - 70000 % 512, 3);

	/* Scatter lists go through a bounce buffer. */
	a = malloc(1000);
	b = malloc(1048);
	assert_non_null(a);
	assert_non_null(b);
	tu_fill(a, 1000, 4, 100 * 512);
	tu_fill(b, 1048, 4, 100 * 512 + 1000);
	iov[0] = (struct iovec){ a, 1000 };
	iov[1] = (struct iovec){ b, 1048 };
	assert_int_equal(disk_sync_io(d, &io), DISK_OK);
	read_pattern(d, 100 * 512, 2048, 4);
	memset(a, 0, 1000);
	memset(b, 0, 1048);
	io.op = DISK_OP_READ;
	assert_int_equal(disk_sync_io(d, &io), DISK_OK);
	assert_true(tu_check(a, 1000, 4, 100 * 512) < 0);
	assert_true(tu_check(b, 1048, 4, 100 * 512 + 1000) < 0);
	free(a);
	free(b);
	disk_unref(d);

	/* The data is on the server: a new disk sees it. */
	d = open_ok(s.uri, true, NULL);
	read_pattern(d, 1 * MIB, 64 * 1024, 3);
	disk_unref(d);
	srv_stop(&s);
}

static void test_nbdclient_4k_export(void **state UNUSED)
{
	const char *args[] = { "--filter=blocksize-policy", "memory", "1M",
			       "blocksize-minimum=4096", "blocksize-preferred=4096",
			       "blocksize-error-policy=error", NULL };
	struct srv s;
	struct disk *d;

	NEED_NBDKIT();
	srv_start(&s, "4k", args);
	d = open_ok(s.uri, false, NULL);
	assert_int_equal(disk_sector_size(d), 4096);
	assert_int_equal(disk_sector_count(d), 256);
	write_pattern(d, 8192, 12288, 5);
	read_pattern(d, 8192, 12288, 5);
	contract_disk(d);
	disk_unref(d);
	srv_stop(&s);
}

static void test_nbdclient_flags_reach_server(void **state UNUSED)
{
	const char *args[] = { "--filter=log", "memory", "1M", "@LOG", NULL };
	struct srv s;
	struct disk *d;
	struct disk_extent ext[8];
	uint32_t nr = 0;
	uint8_t buf[4096];

	NEED_NBDKIT();
	srv_start(&s, "flags", args);
	d = open_ok(s.uri, false, NULL);
	memset(buf, 0x11, sizeof(buf));
	assert_int_equal(disk_sync_write(d, 0, buf, sizeof(buf), DISK_IO_FUA), DISK_OK);
	assert_int_equal(disk_sync_write(d, 8, buf, sizeof(buf), 0), DISK_OK);
	assert_int_equal(disk_sync_flush(d), DISK_OK);
	assert_int_equal(disk_sync_unmap(d, 0, 8, 0), DISK_OK);
	assert_int_equal(disk_sync_write_zeroes(d, 16, 8, DISK_IO_FAST_ZERO), DISK_OK);
	assert_int_equal(disk_sync_write_zeroes(d, 32, 8, DISK_IO_NO_UNMAP | DISK_IO_FUA), DISK_OK);
	assert_int_equal(io_status(d, DISK_OP_CACHE, 0, 64, 0, NULL), DISK_OK);
	assert_int_equal(disk_sync_block_status(d, 0, 2048, ext, 8, &nr), DISK_OK);
	disk_unref(d);
	srv_stop(&s);

	assert_int_equal(log_count(s.log, " Write id="), 2);
	assert_int_equal(log_count(s.log, "Write id=1 offset=0x0 count=0x1000 fua=1"), 1);
	assert_int_equal(log_count(s.log, "offset=0x1000 count=0x1000 fua=0"), 1);
	assert_int_equal(log_count(s.log, " Flush id="), 1);
	assert_int_equal(log_count(s.log, " Trim id="), 1);
	assert_int_equal(log_count(s.log, "Zero id=5 offset=0x2000 count=0x1000 trim=1 fua=0 fast=1"), 1);
	assert_int_equal(log_count(s.log, "offset=0x4000 count=0x1000 trim=0 fua=1 fast=0"), 1);
	assert_int_equal(log_count(s.log, " Cache id="), 1);
	assert_int_equal(log_count(s.log, " Extents id="), 1);
}

static void test_nbdclient_block_status(void **state UNUSED)
{
	const char *args[] = { "memory", "4M", NULL };
	struct srv s;
	struct disk *d;
	struct disk_extent ext[16];
	uint32_t nr = 0;

	NEED_NBDKIT();
	srv_start(&s, "bs", args);
	d = open_ok(s.uri, false, NULL);
	/* The memory plugin allocates in 32 KiB pages; write two. */
	write_pattern(d, 64 * 1024, 32 * 1024, 6);
	write_pattern(d, 1 * MIB, 32 * 1024, 6);
	assert_int_equal(disk_sync_block_status(d, 0, 8192, ext, 16, &nr), DISK_OK);
	assert_true(nr >= 4);
	assert_int_equal(ext[0].count, 128);                      /* [0, 64K) */
	assert_true(ext[0].flags & DISK_EXTENT_HOLE);
	assert_true(ext[0].flags & DISK_EXTENT_ZERO);
	assert_int_equal(ext[1].count, 64);                       /* [64K, 96K) */
	assert_int_equal(ext[1].flags, 0);
	assert_true(ext[2].flags & DISK_EXTENT_HOLE);
	assert_int_equal(ext[3].flags, 0);
	/* Room for one extent only: a prefix. */
	assert_int_equal(disk_sync_block_status(d, 10, 1000, ext, 1, &nr), DISK_OK);
	assert_int_equal(nr, 1);
	assert_int_equal(ext[0].count, 118);
	/* Trim makes a hole again. */
	assert_int_equal(disk_sync_unmap(d, 128, 64, 0), DISK_OK);
	assert_int_equal(disk_sync_block_status(d, 128, 64, ext, 4, &nr), DISK_OK);
	assert_int_equal(nr, 1);
	assert_true(ext[0].flags & DISK_EXTENT_ZERO);
	/* Past the end. */
	assert_int_equal(disk_sync_block_status(d, 8190, 4, ext, 4, &nr), DISK_ILLEGAL_BLOCK);
	disk_unref(d);
	srv_stop(&s);
}

static void test_nbdclient_remote_errors(void **state UNUSED)
{
	const char *args[] = { "--filter=error", "memory", "1M",
			       "error-pread=EIO", "error-pread-rate=100%",
			       "error-pwrite=ENOSPC", "error-pwrite-rate=100%",
			       "error-trim=EPERM", "error-trim-rate=100%",
			       "error-zero=EINVAL", "error-zero-rate=100%",
			       "error-cache=ESHUTDOWN", "error-cache-rate=100%",
			       "error-extents=ENOMEM", "error-extents-rate=100%", NULL };
	struct srv s;
	struct disk *d;
	uint8_t buf[512] = { 0 };
	struct disk_extent ext[2];
	uint32_t nr;
	int e = 0;

	NEED_NBDKIT();
	srv_start(&s, "errors", args);
	d = open_ok(s.uri, false, NULL);
	assert_int_equal(read_st(d, 0, buf, sizeof(buf), &e), DISK_IO_ERROR);
	assert_int_equal(e, EIO);
	assert_int_equal(disk_sync_write(d, 0, buf, sizeof(buf), 0), DISK_ILLEGAL_BLOCK);
	assert_int_equal(disk_sync_unmap(d, 0, 1, 0), DISK_READ_ONLY);
	assert_int_equal(disk_sync_write_zeroes(d, 0, 1, 0), DISK_ILLEGAL_BLOCK);
	assert_int_equal(io_status(d, DISK_OP_CACHE, 0, 1, 0, &e), DISK_IO_ERROR);
	assert_int_equal(e, ESHUTDOWN);
	assert_int_equal(disk_sync_block_status(d, 0, 8, ext, 2, &nr), DISK_IO_ERROR);
	/* Errors are per request: the connection still works. */
	assert_int_equal(disk_sync_flush(d), DISK_OK);
	assert_int_equal(read_st(d, 0, buf, sizeof(buf), &e), DISK_IO_ERROR);
	assert_int_equal(e, EIO);
	disk_unref(d);
	srv_stop(&s);
}

static void test_nbdclient_read_only_export(void **state UNUSED)
{
	const char *args[] = { "-r", "memory", "1M", NULL };
	struct srv s;
	struct disk *d = NULL;
	char err[512];
	uint8_t buf[512] = { 0 };

	NEED_NBDKIT();
	srv_start(&s, "ro", args);
	assert_int_equal(nbdclient_open(s.uri, false, NULL, &d, err, sizeof(err)), -EROFS);
	assert_null(d);
	assert_non_null(strstr(err, "read-only"));
	d = open_ok(s.uri, true, NULL);
	assert_true(disk_get_info(d)->read_only);
	assert_false(disk_get_info(d)->fua_respected);
	assert_int_equal(disk_sync_write(d, 0, buf, sizeof(buf), 0), DISK_READ_ONLY);
	assert_int_equal(disk_sync_write_zeroes(d, 0, 1, 0), DISK_READ_ONLY);
	assert_int_equal(disk_sync_unmap(d, 0, 1, 0), DISK_OK);      /* IGNORED */
	assert_int_equal(disk_sync_flush(d), DISK_OK);
	assert_int_equal(disk_sync_read(d, 0, buf, sizeof(buf)), DISK_OK);
	disk_unref(d);
	srv_stop(&s);
}

static void test_nbdclient_open_errors(void **state UNUSED)
{
	struct disk *d = NULL;
	char err[512], uri[PATH_MAX + 64];

	snprintf(uri, sizeof(uri), "nbd+unix:///?socket=%s", tu_path("nothing.sock"));
	assert_true(nbdclient_open(uri, true, NULL, &d, err, sizeof(err)) < 0);
	assert_null(d);
	assert_true(err[0] != '\0');
	assert_true(nbdclient_open("nbd://127.0.0.1:1/", true, NULL, &d, err, sizeof(err)) < 0);
	assert_null(d);
}

/* ---- several reactors -------------------------------------------------------------- */

struct worker {
	struct disk *d;
	unsigned index;
	uint64_t seed;
	int failures;
};

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	/* Each worker owns a 256 KiB region and checks what it wrote. */
	uint64_t base = (uint64_t)w->index * 256 * 1024;
	uint8_t buf[16384];

	tu_reactor();
	for (unsigned i = 0; i < 150; i++) {
		uint64_t off = base + (tu_rand(&w->seed) % 48) * 4096;
		size_t len = 4096 * (1 + tu_rand(&w->seed) % 4);

		tu_fill(buf, len, 100 + w->index + i, off);
		if (disk_sync_write(w->d, off / 512, buf, len, 0) != DISK_OK)
			w->failures++;
		memset(buf, 0, len);
		if (disk_sync_read(w->d, off / 512, buf, len) != DISK_OK ||
		    tu_check(buf, len, 100 + w->index + i, off) >= 0)
			w->failures++;
	}
	tu_reactor_done();
	return NULL;
}

static void run_workers(struct disk *d, unsigned n)
{
	pthread_t t[8];
	struct worker w[8];
	uint64_t seed = tu_seed("nbdclient workers");

	assert_true(n <= 8);
	for (unsigned i = 0; i < n; i++) {
		w[i] = (struct worker){ .d = d, .index = i, .seed = seed + i * 7919 };
		assert_int_equal(pthread_create(&t[i], NULL, worker_main, &w[i]), 0);
	}
	for (unsigned i = 0; i < n; i++) {
		pthread_join(t[i], NULL);
		assert_int_equal(w[i].failures, 0);
	}
}

static void test_nbdclient_multi_conn(void **state UNUSED)
{
	const char *args[] = { "memory", "4M", NULL };
	struct srv s;
	struct disk *d;

	NEED_NBDKIT();
	srv_start(&s, "mc", args);
	d = open_ok(s.uri, false, NULL);
	run_workers(d, 4);
	/* One connection per reactor that used it: at least 2, at most 4
	 * workers + 0 (this thread did not do I/O). */
	assert_true(strncmp(describe_get(d, "connections"), "1 of", 4) != 0);
	disk_unref(d);
	srv_stop(&s);
}

static void test_nbdclient_single_conn_shared(void **state UNUSED)
{
	const char *args[] = { "--filter=multi-conn", "memory", "4M", "multi-conn-mode=disable",
			       NULL };
	struct srv s;
	struct disk *d;

	NEED_NBDKIT();
	srv_start(&s, "sc", args);
	d = open_ok(s.uri, false, NULL);
	assert_false(disk_get_info(d)->caps & DISK_CAP_COHERENT);
	run_workers(d, 4);
	/* The four reactors took turns on one connection. */
	assert_string_equal(describe_get(d, "connections"), "1 of at most 1");
	disk_unref(d);
	srv_stop(&s);
}

/* ---- lost connections ------------------------------------------------------------- */

struct pending_read {
	bool done;
	int status, os_errno;
};

static void pending_done(struct disk_io *io)
{
	struct pending_read *p = io->opaque;

	p->status = io->status;
	p->os_errno = io->os_errno;
	p->done = true;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

static void test_nbdclient_lost_connection(void **state UNUSED)
{
	/* Reads take an hour: the server dies under one. The request can only
	 * end through the lost connection (a client that waited for the reply
	 * instead would hang here, so no clock is needed to tell). */
	const char *slow[] = { "--filter=delay", "memory", "1M", "rdelay=3600", NULL };
	const char *fast[] = { "memory", "1M", NULL };
	struct nbdclient_opts o = quick_opts();
	struct srv s;
	struct disk *d;
	uint8_t buf[4096];
	struct iovec iov = { .iov_base = buf, .iov_len = sizeof(buf) };
	struct pending_read p = { 0 };
	struct disk_io io = { .op = DISK_OP_READ, .iov = &iov, .iovcnt = 1, .done = pending_done,
			      .opaque = &p };

	NEED_NBDKIT();
	srv_start(&s, "lost", slow);
	d = open_ok(s.uri, false, &o);
	disk_submit(d, &io);
	for (int i = 0; i < 20; i++)
		reactor_run_once(tu_reactor(), false);
	sleep_ms(100);
	srv_kill(&s);
	assert_int_equal(reactor_run_until(tu_reactor(), &p.done), 0);
	/* Failed with the connection, not answered. */
	assert_int_equal(p.status, DISK_IO_ERROR);
	assert_int_equal(p.os_errno, ENOTCONN);

	/* A new server on the same socket: later requests reconnect. */
	srv_start(&s, "lost", fast);
	sleep_ms(5);
	write_pattern(d, 4096, 4096, 9);
	read_pattern(d, 4096, 4096, 9);
	assert_string_equal(describe_get(d, "connects"), "2 (reconnects included)");
	disk_unref(d);
	srv_stop(&s);
}

static void test_nbdclient_gives_up(void **state UNUSED)
{
	const char *args[] = { "memory", "1M", NULL };
	struct nbdclient_opts o = quick_opts();
	struct srv s;
	struct disk *d;
	uint8_t buf[512];
	int e = 0;

	NEED_NBDKIT();
	o.reconnect_attempts = 2;
	srv_start(&s, "giveup", args);
	d = open_ok(s.uri, false, &o);
	assert_int_equal(disk_sync_read(d, 0, buf, sizeof(buf)), DISK_OK);
	srv_kill(&s);
	/* The idle connection died with the server: the next request fails,
	 * and so do the reconnects. */
	for (int i = 0; i < 6; i++) {
		assert_int_equal(read_st(d, 0, buf, sizeof(buf), &e), DISK_IO_ERROR);
		sleep_ms(5);
	}
	assert_string_equal(describe_get(d, "state"), "failed (gave up reconnecting)");
	/* Even with a server back, the disk stays failed. */
	srv_start(&s, "giveup", args);
	assert_int_equal(read_st(d, 0, buf, sizeof(buf), &e), DISK_IO_ERROR);
	assert_int_equal(e, ENOTCONN);
	disk_unref(d);
	srv_stop(&s);
}

static void test_nbdclient_export_changed(void **state UNUSED)
{
	const char *one[] = { "memory", "1M", NULL };
	const char *two[] = { "memory", "2M", NULL };
	struct nbdclient_opts o = quick_opts();
	struct srv s;
	struct disk *d;
	uint8_t buf[512];

	NEED_NBDKIT();
	srv_start(&s, "changed", one);
	d = open_ok(s.uri, false, &o);
	srv_kill(&s);
	srv_start(&s, "changed", two);
	/* The old connection is gone; the new one shows another size. */
	for (int i = 0; i < 3; i++) {
		read_st(d, 0, buf, sizeof(buf), NULL);
		sleep_ms(5);
	}
	assert_string_equal(describe_get(d, "state"), "failed (gave up reconnecting)");
	assert_int_equal(disk_sector_count(d), 2048);
	disk_unref(d);
	srv_stop(&s);
}

/* Regression: a request on an idle connection whose server went away dies
 * inside nbd_aio_pread; libnbd 1.14 then read the retired command (a use
 * after free under valgrind). It must fail cleanly with ENOTCONN. */
static void test_nbdclient_dead_during_issue_regression(void **state UNUSED)
{
	const char *args[] = { "memory", "1M", NULL };
	struct nbdclient_opts o = quick_opts();
	struct srv s;
	struct disk *d;
	uint8_t buf[4096];
	int e = 0;

	NEED_NBDKIT();
	srv_start(&s, "deadissue", args);
	d = open_ok(s.uri, false, &o);
	srv_kill(&s);
	assert_int_equal(read_st(d, 0, buf, sizeof(buf), &e), DISK_IO_ERROR);
	assert_int_equal(e, ENOTCONN);
	disk_unref(d);
}

/* ---- specs ------------------------------------------------------------------------- */

static void test_nbdclient_spec(void **state UNUSED)
{
	const char *args[] = { "memory", "2M", NULL };
	struct srv s;
	struct disk *d = NULL;
	char spec[PATH_MAX + 64], err[512];
	uint8_t buf[4096];

	NEED_NBDKIT();
	srv_start(&s, "spec", args);
	d = open_ok(s.uri, false, NULL);
	write_pattern(d, 0, 64 * 1024, 7);
	disk_unref(d);

	/* memdiff above: writes stay in RAM, the export is untouched. */
	snprintf(spec, sizeof(spec), "memdiff:nbd:%s", s.uri);
	assert_int_equal(spec_open_str(spec, false, NULL, &d, err, sizeof(err)), 0);
	read_pattern(d, 0, 64 * 1024, 7);
	memset(buf, 0x77, sizeof(buf));
	assert_int_equal(disk_sync_write(d, 0, buf, sizeof(buf), 0), DISK_OK);
	memset(buf, 0, sizeof(buf));
	assert_int_equal(disk_sync_read(d, 0, buf, sizeof(buf)), DISK_OK);
	assert_int_equal(buf[100], 0x77);
	disk_unref(d);
	snprintf(spec, sizeof(spec), "nbd:%s", s.uri);
	assert_int_equal(spec_open_str(spec, false, NULL, &d, err, sizeof(err)), 0);
	assert_false(disk_get_info(d)->read_only);
	read_pattern(d, 0, 64 * 1024, 7);
	disk_unref(d);
	srv_stop(&s);
}

/* ---- scripted servers (nbdscript.h) ------------------------------------------ */

struct script {
	uint8_t b[1024];
	size_t len;
};

enum { SC_HOLE = 1, SC_ZERO = 2 };              /* base:allocation flags */

/* Appends @v as @bytes big-endian bytes. */
static void sc_be(struct script *s, uint64_t v, unsigned bytes)
{
	assert_true(s->len + bytes <= sizeof(s->b));
	for (unsigned i = 0; i < bytes; i++)
		s->b[s->len++] = (uint8_t)(v >> (8 * (bytes - 1 - i)));
}

/* A writable 1 MiB export with 512-byte sectors and base:allocation
 * (context id 7). */
static void sc_header(struct script *s)
{
	s->len = 0;
	sc_be(s, 0, 1);                             /* mode */
	sc_be(s, 1 | 4 | 8 | 32 | 64, 2);           /* flags: flush fua trim zeroes */
	sc_be(s, 1 << 20, 8);
	sc_be(s, 512, 4);
	sc_be(s, 4096, 4);
	sc_be(s, 1 << 20, 4);
	sc_be(s, 7, 4);
	assert_int_equal(s->len, NBDSCRIPT_HEADER_BYTES);
}

/* An OFFSET_DATA chunk of @len bytes of @fill at the request's offset +
 * @rel. */
static void sc_data(struct script *s, bool done, uint32_t rel, uint32_t len, uint8_t fill)
{
	sc_be(s, 1, 1);
	sc_be(s, done, 1);
	sc_be(s, rel, 4);
	sc_be(s, len, 4);
	sc_be(s, fill, 1);
}

/* A BLOCK_STATUS chunk for base:allocation with @n (length, flags) pairs. */
static void sc_status(struct script *s, bool done, const uint32_t *pairs, uint8_t n)
{
	sc_be(s, 3, 1);
	sc_be(s, done, 1);
	sc_be(s, 0, 4);                             /* the negotiated id */
	sc_be(s, n, 1);
	for (unsigned i = 0; i < 2u * n; i++)
		sc_be(s, pairs[i], 4);
}

static struct disk *sc_open(const struct script *s, struct nbdscript **ns)
{
	struct nbdclient_opts o;

	assert_int_equal(nbdscript_new(s->b, s->len, ns), 0);
	nbdclient_opts_default(&o);
	nbdscript_client_opts(*ns, &o);
	return open_ok("nbd+unix:///?socket=script", false, &o);
}

/* Regression: the extent callback walked nr_entries * 2 words of libnbd's
 * array, which holds nr_entries words (nbd_block_status(3)), so a reply with
 * fewer extents than asked was read past its end (ASan: heap-buffer-overflow
 * in nbdc_extents). Also: zero-length extents add nothing, an extent past
 * the range is cut at it, and a second chunk for the context is ignored. */
static void test_nbdclient_bs_short_reply_regression(void **state UNUSED)
{
	static const uint32_t one[] = { 4096, SC_ZERO };
	static const uint32_t mixed[] = { 0, 0, 1024, 0, 3072, SC_HOLE | SC_ZERO,
					  1u << 20, SC_HOLE };
	static const uint32_t first[] = { 8192, SC_ZERO };
	static const uint32_t second[] = { 8192, 0 };
	struct disk_extent e[8];
	struct nbdscript *ns;
	struct script s;
	struct disk *d;
	uint32_t nr;

	sc_header(&s);
	sc_status(&s, true, one, 1);
	sc_status(&s, true, mixed, 4);
	sc_status(&s, false, first, 1);
	sc_status(&s, true, second, 1);
	d = sc_open(&s, &ns);
	assert_true(disk_get_info(d)->caps & DISK_CAP_BLOCK_STATUS);

	assert_int_equal(disk_sync_block_status(d, 0, 2048, e, 8, &nr), DISK_OK);
	assert_int_equal(nr, 1);
	assert_int_equal(e[0].count, 8);
	assert_int_equal(e[0].flags, DISK_EXTENT_ZERO);

	assert_int_equal(disk_sync_block_status(d, 8, 2040, e, 8, &nr), DISK_OK);
	assert_int_equal(nr, 3);
	assert_int_equal(e[0].count, 2);
	assert_int_equal(e[0].flags, 0);
	assert_int_equal(e[1].count, 6);
	assert_int_equal(e[1].flags, DISK_EXTENT_HOLE | DISK_EXTENT_ZERO);
	assert_int_equal(e[2].count, 2032);
	assert_int_equal(e[2].flags, DISK_EXTENT_HOLE);

	assert_int_equal(disk_sync_block_status(d, 0, 64, e, 8, &nr), DISK_OK);
	assert_int_equal(nr, 1);
	assert_int_equal(e[0].count, 16);
	assert_int_equal(e[0].flags, DISK_EXTENT_ZERO);
	disk_unref(d);
	nbdscript_free(ns);
}

/* Regression: reads were issued with libnbd's buffer zeroing off, and
 * libnbd does not check that a successful read reply covers the request
 * (nbd_pread_structured(3)): a reply with one 512-byte chunk for 4 KiB, or
 * with overlapping chunks, left the rest of the buffer as it was (stale
 * data of earlier requests) and reported success. Now a reply that
 * covers less fails with EIO (and so does the overlap: see
 * test_nbdclient_read_duplicate_chunk_regression). */
static void test_nbdclient_read_stale_bytes_regression(void **state UNUSED)
{
	struct nbdscript *ns;
	struct script s;
	struct disk *d;
	uint8_t buf[4096];
	struct iovec iov = { .iov_base = buf, .iov_len = sizeof(buf) };
	struct disk_io io = { .op = DISK_OP_READ, .iov = &iov, .iovcnt = 1 };

	sc_header(&s);
	sc_data(&s, true, 0, 512, 0x77);            /* 512 of 4096 bytes */
	sc_data(&s, false, 0, 2048, 0x77);          /* [0, 2048) twice */
	sc_data(&s, true, 0, 2048, 0x78);
	d = sc_open(&s, &ns);

	memset(buf, 0xee, sizeof(buf));
	assert_int_equal(disk_sync_io(d, &io), DISK_IO_ERROR);
	assert_int_equal(io.os_errno, EIO);

	memset(buf, 0xee, sizeof(buf));
	assert_int_equal(disk_sync_io(d, &io), DISK_IO_ERROR);
	assert_int_equal(io.os_errno, EIO);
	disk_unref(d);
	nbdscript_free(ns);
}

/* An OFFSET_HOLE chunk of @len bytes at the request's offset + @rel. */
static void sc_hole(struct script *s, bool done, uint32_t rel, uint32_t len)
{
	sc_be(s, 2, 1);
	sc_be(s, done, 1);
	sc_be(s, rel, 4);
	sc_be(s, len, 4);
}

/* Reads 4 KiB at sector 0 from @d and checks the result: @want, with EIO
 * when it is an error. */
static void sc_read_4k(struct disk *d, uint8_t *buf, int want)
{
	struct iovec iov = { .iov_base = buf, .iov_len = 4096 };
	struct disk_io io = { .op = DISK_OP_READ, .iov = &iov, .iovcnt = 1 };

	memset(buf, 0xee, 4096);
	assert_int_equal(disk_sync_io(d, &io), want);
	if (want == DISK_IO_ERROR)
		assert_int_equal(io.os_errno, EIO);
}

/* Regression: the client summed the lengths of a read reply's chunks, so a
 * server that sent the same chunk twice (the NBD protocol forbids
 * overlapping chunks; libnbd does not check) reached the request's length
 * with half of the buffer never written, and the read succeeded with
 * zeros there. Now any overlap or gap fails the read with EIO, while
 * chunks that tile the request in any order still make a good read. */
static void test_nbdclient_read_duplicate_chunk_regression(void **state UNUSED)
{
	struct nbdscript *ns;
	struct script s;
	struct disk *d;
	static const uint8_t good[] = { 0x72, 0, 0x73, 0x71 };   /* per KiB */
	uint8_t buf[4096];

	sc_header(&s);
	sc_data(&s, false, 0, 2048, 0x77);          /* [0, 2048) twice */
	sc_data(&s, true, 0, 2048, 0x77);
	sc_data(&s, false, 0, 3072, 0x77);          /* overlap of 1 KiB */
	sc_hole(&s, true, 2048, 2048);
	sc_data(&s, false, 0, 1024, 0x77);          /* a gap, then duplicates */
	sc_hole(&s, false, 2048, 1024);
	sc_hole(&s, false, 2048, 1024);
	sc_data(&s, true, 3072, 1024, 0x77);
	sc_data(&s, false, 3072, 1024, 0x71);       /* out of order, no overlap */
	sc_hole(&s, false, 1024, 1024);
	sc_data(&s, false, 0, 1024, 0x72);
	sc_data(&s, true, 2048, 1024, 0x73);
	d = sc_open(&s, &ns);

	sc_read_4k(d, buf, DISK_IO_ERROR);
	sc_read_4k(d, buf, DISK_IO_ERROR);
	sc_read_4k(d, buf, DISK_IO_ERROR);
	sc_read_4k(d, buf, DISK_OK);
	for (size_t i = 0; i < sizeof(buf); i++)
		assert_int_equal(buf[i], good[i / 1024]);
	disk_unref(d);
	nbdscript_free(ns);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_nbdclient_errno_table),
		cmocka_unit_test(test_nbdclient_extent_conversion),
		cmocka_unit_test(test_nbdclient_contract),
		cmocka_unit_test(test_nbdclient_roundtrip),
		cmocka_unit_test(test_nbdclient_4k_export),
		cmocka_unit_test(test_nbdclient_flags_reach_server),
		cmocka_unit_test(test_nbdclient_block_status),
		cmocka_unit_test(test_nbdclient_remote_errors),
		cmocka_unit_test(test_nbdclient_read_only_export),
		cmocka_unit_test(test_nbdclient_open_errors),
		cmocka_unit_test(test_nbdclient_multi_conn),
		cmocka_unit_test(test_nbdclient_single_conn_shared),
		cmocka_unit_test(test_nbdclient_lost_connection),
		cmocka_unit_test(test_nbdclient_gives_up),
		cmocka_unit_test(test_nbdclient_export_changed),
		cmocka_unit_test(test_nbdclient_dead_during_issue_regression),
		cmocka_unit_test(test_nbdclient_spec),
		cmocka_unit_test(test_nbdclient_bs_short_reply_regression),
		cmocka_unit_test(test_nbdclient_read_stale_bytes_regression),
		cmocka_unit_test(test_nbdclient_read_duplicate_chunk_regression),
	};

	return cmocka_run_group_tests_name("nbdclient", tests, group_setup, tu_reactor_teardown);
}
