/* SPDX-License-Identifier: MIT */
/*
 * test-blob.c: the HTTP blob backend (storage/blob.c,
 * docs/openvmm-compat.md §4.7 and the blob tests of §7.3).
 *
 * A real nginx (tests/http/nginx-start.sh) serves a flat image, a fixed
 * VHD and redirect chains; a deliberately misbehaving server
 * (tests/http/badserver.py under /usr/bin/python3) answers short bodies,
 * ignored ranges, 416, connections closed mid-body, stalls, 5xx and
 * redirect loops. Every misbehaviour must end in an error, never in
 * success with wrong data. Tests needing a server that is not installed
 * are skipped.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/compiler.h"
#include "storage/backends/blob.h"
#include "storage/spec.h"
#include "storage/backends/vhdfooter.h"
#include "tests/unit/contract.h"
#include "tests/unit/testproc.h"
#include "tests/unit/testutil.h"

#define MIB ((uint64_t)1 << 20)
#define FLAT_BYTES (4 * MIB)
#define FLAT_TAG 0x51
#define VHD_DATA_BYTES (2 * MIB)
#define VHD_TAG 0x56
#define BAD_BYTES MIB           /* size of the misbehaving server's blob */
#define BAD_TAG 0x42

static const uint8_t vhd_id[16] = {
	0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0x46, 0xa7,
	0x88, 0xa9, 0xaa, 0xab, 0xac, 0xad, 0xae, 0xaf,
};

static struct {
	char nginx_dir[PATH_MAX];
	pid_t nginx_pid;
	char nginx[64];                 /* "http://127.0.0.1:PORT" */
	pid_t bad_pid;
	char bad[64];
} F;

/* ---- fixture --------------------------------------------------------------- */

static void write_file(const char *path, const void *buf, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, buf, len), (ssize_t)len);
	close(fd);
}

static void make_docroot(const char *root)
{
	uint8_t *buf = malloc(FLAT_BYTES);
	char path[PATH_MAX];

	assert_non_null(buf);
	mkdir(root, 0755);
	tu_fill(buf, FLAT_BYTES, FLAT_TAG, 0);
	snprintf(path, sizeof(path), "%s/flat.img", root);
	write_file(path, buf, FLAT_BYTES);

	/* A fixed VHD: pattern data, then its footer. */
	tu_fill(buf, VHD_DATA_BYTES, VHD_TAG, 0);
	vhdfooter_build(VHD_DATA_BYTES, vhd_id, buf + VHD_DATA_BYTES);
	snprintf(path, sizeof(path), "%s/disk.vhd", root);
	write_file(path, buf, VHD_DATA_BYTES + VHDFOOTER_BYTES);

	/* A VHD with a broken checksum, a blob too small for a VHD, and one
	 * whose length is not a whole number of sectors. */
	buf[VHD_DATA_BYTES + 100] ^= 1;
	snprintf(path, sizeof(path), "%s/badsum.vhd", root);
	write_file(path, buf, VHD_DATA_BYTES + VHDFOOTER_BYTES);
	snprintf(path, sizeof(path), "%s/tiny.img", root);
	write_file(path, buf, 100);
	tu_fill(buf, 1000, FLAT_TAG, 0);
	snprintf(path, sizeof(path), "%s/odd.img", root);
	write_file(path, buf, 1000);
	free(buf);
}

static int group_setup(void **state UNUSED)
{
	char cmd[PATH_MAX * 3], line[64], pidbuf[32];
	const char *root = tu_path("www");
	int st;

	tu_reactor();
	make_docroot(root);

	snprintf(F.nginx_dir, sizeof(F.nginx_dir), "%s", tu_path("nginx"));
	snprintf(cmd, sizeof(cmd), "NGINX_PARENT_PID=%d sh '%s/tests/http/nginx-start.sh' '%s' '%s' 1 2>&1",
		 (int)getpid(), tp_srcdir(), F.nginx_dir, root);
	st = tp_run_line(cmd, line, sizeof(line));
	if (st == 0 && atoi(line) > 0) {
		char pidfile[PATH_MAX + 16];

		snprintf(F.nginx, sizeof(F.nginx), "http://127.0.0.1:%d", atoi(line));
		snprintf(pidfile, sizeof(pidfile), "%s/nginx.pid", F.nginx_dir);
		if (tp_read_file(pidfile, pidbuf, sizeof(pidbuf)) > 0)
			F.nginx_pid = atoi(pidbuf);
	} else {
		fprintf(stderr, "# nginx not available (%d: %s): nginx tests skipped\n", st, line);
	}

	if (tp_have("/usr/bin/python3")) {
		char script[PATH_MAX], size[32];
		const char *portfile = tu_path("badserver.port");
		char *argv[] = { "/usr/bin/python3", script, (char *)portfile, size, NULL };

		snprintf(script, sizeof(script), "%s/tests/http/badserver.py", tp_srcdir());
		snprintf(size, sizeof(size), "%" PRIu64, BAD_BYTES);
		F.bad_pid = tp_spawn(argv, tu_path("badserver.log"));
		if (F.bad_pid > 0 && tp_wait_file(portfile, true, 10000, F.bad_pid) &&
		    tp_read_file(portfile, line, sizeof(line)) > 0)
			snprintf(F.bad, sizeof(F.bad), "http://127.0.0.1:%d", atoi(line));
		else
			fprintf(stderr, "# badserver.py did not start: misbehaviour tests skipped\n");
	}
	return 0;
}

static int group_teardown(void **state UNUSED)
{
	tp_stop(F.nginx_pid, 3000);
	tp_stop(F.bad_pid, 3000);
	tu_reactor_done();
	return 0;
}

#define NEED_NGINX() do { if (!F.nginx[0]) skip(); } while (0)
#define NEED_BAD() do { if (!F.bad[0]) skip(); } while (0)

/* ---- helpers ----------------------------------------------------------------- */

static const char *url(const char *base, const char *path)
{
	static char bufs[4][256];
	static unsigned next;
	char *b = bufs[next++ % 4];

	snprintf(b, 256, "%s%s", base, path);
	return b;
}

/* Options for the misbehaving server: quick retries. */
static struct blob_opts fast_opts(unsigned retries)
{
	struct blob_opts o;

	blob_opts_default(&o);
	o.retries = retries;
	o.backoff_ms = 1;
	o.backoff_max_ms = 5;
	o.low_speed_time_s = 2;
	return o;
}

static struct disk *open_ok(const char *u, enum blob_format f, const struct blob_opts *o)
{
	char err[512] = "";
	struct disk *d = NULL;
	int r = blob_open(u, f, o, &d, err, sizeof(err));

	if (r < 0)
		fail_msg("blob_open(%s): %s (%s)", u, strerror(-r), err);
	return d;
}

static int open_err(const char *u, enum blob_format f, const struct blob_opts *o, char *err,
		    size_t errlen)
{
	struct disk *d = NULL;
	int r = blob_open(u, f, o, &d, err, errlen);

	assert_true(r < 0);
	assert_null(d);
	return r;
}

/* Reads [off, off+len) and checks the pattern. */
static void read_check(struct disk *d, uint64_t off, size_t len, uint64_t tag)
{
	uint8_t *buf = malloc(len);
	long bad;

	assert_non_null(buf);
	memset(buf, 0xee, len);
	assert_int_equal(disk_sync_read(d, off / 512, buf, len), DISK_OK);
	bad = tu_check(buf, len, tag, off);
	if (bad >= 0)
		fail_msg("read at %" PRIu64 " +%zu: wrong byte at %ld", off, len, bad);
	free(buf);
}

/* Reads and returns the status (and errno). */
static int read_status(struct disk *d, uint64_t sector, size_t len, int *os_errno)
{
	void *buf = malloc(len ? len : 1);
	struct iovec iov = { .iov_base = buf, .iov_len = len };
	struct disk_io io = { .op = DISK_OP_READ, .sector = sector, .iov = &iov, .iovcnt = 1 };
	int st;

	assert_non_null(buf);
	st = disk_sync_io(d, &io);
	if (os_errno)
		*os_errno = io.os_errno;
	free(buf);
	return st;
}

/* The misbehaving server's request counters: the count for @key
 * ("GET /path") and the number of connections. */
static int bad_stat(const char *key, int *connections)
{
	char cmd[512], line[8192];
	const char *p;

	snprintf(cmd, sizeof(cmd),
		 "/usr/bin/python3 -c 'import sys, urllib.request; "
		 "print(urllib.request.urlopen(sys.argv[1]).read().decode())' '%s/stats'", F.bad);
	if (tp_run_line(cmd, line, sizeof(line)) != 0)
		fail_msg("cannot read the server's stats");
	if (connections) {
		p = strstr(line, "\"connections\": ");
		*connections = p ? atoi(p + 15) : -1;
	}
	snprintf(cmd, sizeof(cmd), "\"%s\": ", key);
	p = strstr(line, cmd);
	return p ? atoi(p + strlen(cmd)) : 0;
}

/* ---- rules ------------------------------------------------------------------- */

static void test_blob_redirect_rule(void **state UNUSED)
{
	assert_true(blob_redirect_allowed("http://a/x", "http://b/y"));
	assert_true(blob_redirect_allowed("http://a/x", "https://b/y"));
	assert_true(blob_redirect_allowed("https://a/x", "https://b/y"));
	assert_true(blob_redirect_allowed("HTTPS://a/x", "Https://b/y"));
	assert_false(blob_redirect_allowed("https://a/x", "http://b/y"));
	assert_false(blob_redirect_allowed("http://a/x", "ftp://b/y"));
	assert_false(blob_redirect_allowed("http://a/x", "file:///etc/passwd"));
}

static void test_blob_bad_opts(void **state UNUSED)
{
	struct blob_opts o;
	char err[256];

	blob_opts_default(&o);
	o.piece_bytes = 1000;
	assert_int_equal(open_err("http://127.0.0.1:1/x", BLOB_FLAT, &o, err, sizeof(err)), -EINVAL);
	blob_opts_default(&o);
	o.max_connections = 0;
	assert_int_equal(open_err("http://127.0.0.1:1/x", BLOB_FLAT, &o, err, sizeof(err)), -EINVAL);
	assert_int_equal(open_err("ftp://127.0.0.1/x", BLOB_FLAT, NULL, err, sizeof(err)), -EINVAL);
}

static void test_blob_connection_refused(void **state UNUSED)
{
	struct blob_opts o = fast_opts(1);
	char err[512];

	/* Port 1 on loopback: nothing listens there. */
	assert_int_equal(open_err("http://user:pw@127.0.0.1:1/x.img?sig=SECRET", BLOB_FLAT, &o, err,
				  sizeof(err)), -ECONNREFUSED);
	assert_non_null(strstr(err, "HEAD"));
	assert_null(strstr(err, "SECRET"));
	assert_null(strstr(err, "pw@"));
}

static void test_blob_unix_socket(void **state UNUSED)
{
	struct blob_opts o = fast_opts(0);
	char err[512];

	/* Every request goes to the socket, so the host is never resolved:
	 * a socket that does not exist refuses the connection, where the
	 * host alone would have been a resolver error. */
	o.unix_socket = tu_path("no-such.sock");
	assert_int_equal(open_err("http://blob.invalid/x.img", BLOB_FLAT, &o, err, sizeof(err)),
			 -ECONNREFUSED);
	assert_non_null(strstr(err, "HEAD"));
}

/* ---- reply checks (found by tests/fuzz/fuzz-blob-reply) ---------------------- */

/* Feeds @line (without its NUL, as libcurl does) for a GET of bytes
 * [off, off + len) after a 206 status line; returns range_ok. */
static bool range_accepted(uint64_t off, uint64_t len, const char *line, size_t n)
{
	static const char st[] = "HTTP/1.1 206 Partial Content\r\n";
	struct blob_reply r = { 0 };

	blob_reply_header(&r, off, len, st, sizeof(st) - 1);
	blob_reply_header(&r, off, len, line, n);
	assert_true(r.range_seen);
	assert_int_equal(blob_reply_check(&r, off),
			 r.range_ok ? BLOB_FAIL_NONE : BLOB_FAIL_BAD_RANGE);
	return r.range_ok;
}

#define RANGE_OK(off, len, s) range_accepted(off, len, s, sizeof(s) - 1)

static void test_blob_content_range_length_not_beyond_last_regression(void **state UNUSED)
{
	/* RFC 9110 §14.4: a complete length not beyond last-pos, or one
	 * that is not a number, makes the value invalid; it used to be
	 * ignored. */
	assert_true(RANGE_OK(0, 512, "Content-Range: bytes 0-511/512\r\n"));
	assert_true(RANGE_OK(0, 512, "Content-Range: bytes 0-511/*\r\n"));
	assert_true(RANGE_OK(512, 512, "content-range:\tbytes 512-1023/1048576 \r\n"));
	assert_false(RANGE_OK(0, 512, "Content-Range: bytes 0-511/100\r\n"));
	assert_false(RANGE_OK(0, 512, "Content-Range: bytes 0-511/511\r\n"));
	assert_false(RANGE_OK(0, 512, "Content-Range: bytes 0-511/\r\n"));
	assert_false(RANGE_OK(0, 512, "Content-Range: bytes 0-511/junk\r\n"));
	assert_false(RANGE_OK(0, 512, "Content-Range: bytes 0-511/1024x\r\n"));
	assert_false(RANGE_OK(0, 512, "Content-Range: bytes 0-511/**\r\n"));
	assert_false(RANGE_OK(0, 512, "Content-Range: bytes 0-511/18446744073709551616\r\n"));
}

static void test_blob_content_range_nul_in_length_regression(void **state UNUSED)
{
	/* The value is its bytes, not a C string: a NUL inside it ended the
	 * parse and the rest was never looked at. */
	assert_false(RANGE_OK(512, 1, "Content-Range: bytes 512-512/5206\0\0 \r\n"));
	assert_false(RANGE_OK(0, 512, "Content-Range: bytes 0-511/*\0junk\r\n"));
	assert_false(RANGE_OK(0, 512, "Content-Range: bytes 0-511\0/1024\r\n"));
}

static void test_blob_status_line_without_nul_regression(void **state UNUSED)
{
	/* libcurl's header data is not NUL-terminated: the status code is
	 * read from the line's own bytes. Before, strtol ran on into what
	 * followed the line (here "9999", making 2069999 of a 206). */
	static const char mem[] = "HTTP/1.1 2069999";
	struct blob_reply r = { 0 };

	blob_reply_header(&r, 0, 512, mem, strlen("HTTP/1.1 206"));
	assert_int_equal(r.http_code, 206);
	blob_reply_header(&r, 0, 512, mem, strlen("HTTP/1.1 20"));
	assert_int_equal(r.http_code, 0);       /* too short for a status */
	blob_reply_header(&r, 0, 512, mem, sizeof(mem) - 1);
	assert_int_equal(r.http_code, 1000);    /* not a 3-digit status */
	assert_int_equal(blob_reply_check(&r, 0), BLOB_FAIL_STATUS);
}

/* ---- nginx ------------------------------------------------------------------- */

static void test_blob_flat_geometry(void **state UNUSED)
{
	struct disk *d;
	const struct disk_info *info;

	NEED_NGINX();
	d = open_ok(url(F.nginx, "/flat.img"), BLOB_FLAT, NULL);
	info = disk_get_info(d);
	assert_string_equal(info->type, "blob");
	assert_int_equal(info->sector_size, 512);
	assert_int_equal(info->physical_sector_size, 4096);
	assert_true(info->read_only);
	assert_false(info->fua_respected);
	assert_false(info->has_disk_id);
	assert_int_equal(info->unmap_behavior, DISK_UNMAP_IGNORED);
	assert_int_equal(disk_sector_count(d), FLAT_BYTES / 512);
	disk_unref(d);

	/* A length that is not a whole number of sectors rounds down. */
	d = open_ok(url(F.nginx, "/odd.img"), BLOB_FLAT, NULL);
	assert_int_equal(disk_sector_count(d), 1);
	read_check(d, 0, 512, FLAT_TAG);
	assert_int_equal(read_status(d, 1, 512, NULL), DISK_ILLEGAL_BLOCK);
	disk_unref(d);
}

static void test_blob_flat_contract(void **state UNUSED)
{
	struct disk *d;

	NEED_NGINX();
	d = open_ok(url(F.nginx, "/flat.img"), BLOB_FLAT, NULL);
	contract_disk(d);
	disk_unref(d);
}

static void test_blob_flat_reads(void **state UNUSED)
{
	struct blob_opts o;
	struct disk *d;
	uint8_t *a, *b, *c;
	struct iovec iov[3];
	struct disk_io io = { .op = DISK_OP_READ, .iov = iov, .iovcnt = 3 };

	NEED_NGINX();
	blob_opts_default(&o);
	o.piece_bytes = 64 * 1024;        /* so that reads split into many pieces */
	d = open_ok(url(F.nginx, "/flat.img"), BLOB_FLAT, &o);
	read_check(d, 0, 512, FLAT_TAG);
	read_check(d, 512 * 7, 4096, FLAT_TAG);
	read_check(d, FLAT_BYTES - 512, 512, FLAT_TAG);
	read_check(d, 64 * 1024 - 512, 1024, FLAT_TAG);        /* straddles a piece */
	read_check(d, 4096, FLAT_BYTES - 8192, FLAT_TAG);      /* 63 pieces in parallel */
	read_check(d, 0, FLAT_BYTES, FLAT_TAG);                /* the whole blob */

	/* Scatter list with odd segment sizes, across piece boundaries. */
	a = malloc(100 * 1024);
	b = malloc(512 * 3 - 100);
	c = malloc(60 * 1024 + 100);
	assert_non_null(a);
	assert_non_null(b);
	assert_non_null(c);
	iov[0] = (struct iovec){ a, 100 * 1024 };
	iov[1] = (struct iovec){ b, 512 * 3 - 100 };
	iov[2] = (struct iovec){ c, 60 * 1024 + 100 };
	io.sector = 1000;
	assert_int_equal(disk_sync_io(d, &io), DISK_OK);
	assert_true(tu_check(a, iov[0].iov_len, FLAT_TAG, 1000 * 512) < 0);
	assert_true(tu_check(b, iov[1].iov_len, FLAT_TAG, 1000 * 512 + iov[0].iov_len) < 0);
	assert_true(tu_check(c, iov[2].iov_len, FLAT_TAG,
			     1000 * 512 + iov[0].iov_len + iov[1].iov_len) < 0);
	free(a);
	free(b);
	free(c);
	disk_unref(d);
}

/* Many requests in flight at once, more than there are connections. */
struct par_state {
	unsigned left;
	unsigned failed;
	bool done;
};

static void par_done(struct disk_io *io)
{
	struct par_state *ps = io->opaque;

	if (io->status != DISK_OK)
		ps->failed++;
	if (--ps->left == 0)
		ps->done = true;
}

static void test_blob_parallel(void **state UNUSED)
{
	enum { N = 96, LEN = 32 * 1024 };
	struct blob_opts o;
	struct disk *d;
	struct disk_io *ios = calloc(N, sizeof(*ios));
	struct iovec *iov = calloc(N, sizeof(*iov));
	uint8_t *buf = malloc((size_t)N * LEN);
	struct par_state ps = { .left = N };
	uint64_t seed = tu_seed(__func__);

	NEED_NGINX();
	assert_non_null(ios);
	assert_non_null(iov);
	assert_non_null(buf);
	blob_opts_default(&o);
	o.max_connections = 8;
	d = open_ok(url(F.nginx, "/flat.img"), BLOB_FLAT, &o);
	for (unsigned i = 0; i < N; i++) {
		iov[i] = (struct iovec){ buf + (size_t)i * LEN, LEN };
		ios[i] = (struct disk_io){ .op = DISK_OP_READ, .iov = &iov[i], .iovcnt = 1,
					   .sector = tu_rand(&seed) % ((FLAT_BYTES - LEN) / 512),
					   .done = par_done, .opaque = &ps };
		disk_submit(d, &ios[i]);
	}
	assert_int_equal(reactor_run_until(tu_reactor(), &ps.done), 0);
	assert_int_equal(ps.failed, 0);
	for (unsigned i = 0; i < N; i++)
		assert_true(tu_check(iov[i].iov_base, LEN, FLAT_TAG, ios[i].sector * 512) < 0);
	disk_unref(d);
	free(ios);
	free(iov);
	free(buf);
}

static void test_blob_vhd1(void **state UNUSED)
{
	struct disk *d;
	const struct disk_info *info;
	uint8_t buf[1024];
	uint64_t n;

	NEED_NGINX();
	d = open_ok(url(F.nginx, "/disk.vhd"), BLOB_VHD1, NULL);
	info = disk_get_info(d);
	n = disk_sector_count(d);
	assert_int_equal(n, VHD_DATA_BYTES / 512);
	assert_true(info->has_disk_id);
	assert_memory_equal(info->disk_id, vhd_id, 16);
	assert_int_equal(info->physical_sector_size, 4096);
	read_check(d, 0, 64 * 1024, VHD_TAG);
	read_check(d, VHD_DATA_BYTES - 512, 512, VHD_TAG);

	/* §7.3: one sector past the end is ILLEGAL_BLOCK and never the
	 * footer, whatever the request's shape. */
	memset(buf, 0, sizeof(buf));
	assert_int_equal(disk_sync_read(d, n, buf, 512), DISK_ILLEGAL_BLOCK);
	assert_true(tu_is_zero(buf, sizeof(buf)));
	assert_int_equal(disk_sync_read(d, n - 1, buf, 1024), DISK_ILLEGAL_BLOCK);
	assert_null(memmem(buf, sizeof(buf), "conectix", 8));
	contract_disk(d);
	disk_unref(d);

	/* The same blob read flat shows the footer in its last sector. */
	d = open_ok(url(F.nginx, "/disk.vhd"), BLOB_FLAT, NULL);
	assert_int_equal(disk_sector_count(d), n + 1);
	assert_int_equal(disk_sync_read(d, n, buf, 512), DISK_OK);
	assert_memory_equal(buf, "conectix", 8);
	disk_unref(d);
}

static void test_blob_vhd1_open_errors(void **state UNUSED)
{
	char err[512];

	NEED_NGINX();
	assert_int_equal(open_err(url(F.nginx, "/flat.img"), BLOB_VHD1, NULL, err, sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "cookie"));
	assert_int_equal(open_err(url(F.nginx, "/badsum.vhd"), BLOB_VHD1, NULL, err, sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "checksum"));
	assert_int_equal(open_err(url(F.nginx, "/tiny.img"), BLOB_VHD1, NULL, err, sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "too small"));
	assert_int_equal(open_err(url(F.nginx, "/missing.img"), BLOB_FLAT, NULL, err, sizeof(err)),
			 -ENOENT);
	assert_non_null(strstr(err, "404"));
}

static void test_blob_redirects(void **state UNUSED)
{
	struct disk *d;
	char err[512];

	NEED_NGINX();
	/* 5 redirects (301, 302, 307, 308, 302): the limit. */
	d = open_ok(url(F.nginx, "/chain5"), BLOB_FLAT, NULL);
	assert_int_equal(disk_sector_count(d), FLAT_BYTES / 512);
	read_check(d, 8192, 65536, FLAT_TAG);
	disk_unref(d);
	d = open_ok(url(F.nginx, "/redirect/disk.vhd"), BLOB_VHD1, NULL);
	assert_int_equal(disk_sector_count(d), VHD_DATA_BYTES / 512);
	read_check(d, 0, 4096, VHD_TAG);
	disk_unref(d);
	/* 6 redirects: refused. */
	assert_int_equal(open_err(url(F.nginx, "/chain6"), BLOB_FLAT, NULL, err, sizeof(err)),
			 -ELOOP);
	assert_non_null(strstr(err, "too many redirects"));
}

/* A flush of a read-only blob failed with READ_ONLY, so `nbdkit diskstack
 * blob:...,ro` and `diskstack serve` answered NBD_CMD_FLUSH (advertised on
 * read-only exports too) with EPERM, and the plugin logged an error at
 * every shutdown. Nothing was written, so the flush succeeds. */
static void test_blob_flush_read_only_regression(void **state UNUSED)
{
	struct disk *d;

	NEED_NGINX();
	d = open_ok(url(F.nginx, "/flat.img"), BLOB_FLAT, NULL);
	assert_int_equal(disk_sync_flush(d), DISK_OK);
	disk_unref(d);
}

static void test_blob_read_only_ops(void **state UNUSED)
{
	struct disk *d;
	uint8_t buf[512] = { 0 };
	uint64_t n;

	NEED_NGINX();
	d = open_ok(url(F.nginx, "/flat.img"), BLOB_FLAT, NULL);
	n = disk_sector_count(d);
	assert_int_equal(disk_sync_write(d, 0, buf, 512, 0), DISK_READ_ONLY);
	assert_int_equal(disk_sync_write(d, 0, buf, 512, DISK_IO_FUA), DISK_READ_ONLY);
	assert_int_equal(disk_sync_write_zeroes(d, 0, 1, 0), DISK_READ_ONLY);
	/* The dispatcher's order (disk_ops.checks): the range, then read-only,
	 * then an empty request. */
	assert_int_equal(disk_sync_write(d, n, buf, 512, 0), DISK_ILLEGAL_BLOCK);
	assert_int_equal(disk_sync_write_zeroes(d, n - 1, 2, 0), DISK_ILLEGAL_BLOCK);
	assert_int_equal(disk_sync_write_zeroes(d, 0, 0, 0), DISK_READ_ONLY);
	/* Unmap is IGNORED: fine in range, still range-checked. */
	assert_int_equal(disk_sync_unmap(d, 0, 8, 0), DISK_OK);
	assert_int_equal(disk_sync_unmap(d, n, 1, 0), DISK_ILLEGAL_BLOCK);
	/* The data did not change. */
	read_check(d, 0, 4096, FLAT_TAG);
	disk_unref(d);
}

static void test_blob_spec(void **state UNUSED)
{
	char spec[512], err[1024];
	struct disk *d = NULL;
	uint8_t buf[4096];

	NEED_NGINX();
	/* A plain writable blob is refused with the hint. */
	snprintf(spec, sizeof(spec), "blob:flat:%s", url(F.nginx, "/flat.img"));
	assert_int_equal(spec_open_str(spec, false, NULL, &d, err, sizeof(err)), -EROFS);
	assert_null(d);
	assert_non_null(strstr(err, "writable blob disks are not supported"));
	assert_non_null(strstr(err, "memdiff:"));
	/* ,ro and read-only opens work. */
	snprintf(spec, sizeof(spec), "blob:flat:%s,ro", url(F.nginx, "/flat.img"));
	assert_int_equal(spec_open_str(spec, false, NULL, &d, err, sizeof(err)), 0);
	disk_unref(d);
	snprintf(spec, sizeof(spec), "blob:vhd1:%s", url(F.nginx, "/disk.vhd"));
	assert_int_equal(spec_open_str(spec, true, NULL, &d, err, sizeof(err)), 0);
	assert_int_equal(disk_sector_count(d), VHD_DATA_BYTES / 512);
	disk_unref(d);

	/* memdiff above: writable, and writes stay in RAM. */
	snprintf(spec, sizeof(spec), "memdiff:blob:flat:%s", url(F.nginx, "/flat.img"));
	assert_int_equal(spec_open_str(spec, false, NULL, &d, err, sizeof(err)), 0);
	assert_false(disk_get_info(d)->read_only);
	memset(buf, 0x5a, sizeof(buf));
	assert_int_equal(disk_sync_write(d, 8, buf, sizeof(buf), 0), DISK_OK);
	memset(buf, 0, sizeof(buf));
	assert_int_equal(disk_sync_read(d, 8, buf, sizeof(buf)), DISK_OK);
	for (size_t i = 0; i < sizeof(buf); i++)
		assert_int_equal(buf[i], 0x5a);
	read_check(d, 0, 4096, FLAT_TAG);          /* untouched sectors: the blob */
	read_check(d, 8 * 512 + 4096, 4096, FLAT_TAG);
	disk_unref(d);
	/* The blob itself is unchanged. */
	d = open_ok(url(F.nginx, "/flat.img"), BLOB_FLAT, NULL);
	read_check(d, 0, 16384, FLAT_TAG);
	disk_unref(d);
}

/* ---- the misbehaving server ------------------------------------------------ */

/* Opens /@path on the bad server and expects the read of @len bytes at
 * byte @off to fail with IO_ERROR. */
static void expect_read_error(const char *path, unsigned retries, uint64_t off, size_t len,
			      int want_errno)
{
	struct blob_opts o = fast_opts(retries);
	struct disk *d = open_ok(url(F.bad, path), BLOB_FLAT, &o);
	int e = 0;

	assert_int_equal(read_status(d, off / 512, len, &e), DISK_IO_ERROR);
	if (want_errno)
		assert_int_equal(e, want_errno);
	else
		assert_true(e > 0);
	disk_unref(d);
}

static void test_blob_bad_good(void **state UNUSED)
{
	struct blob_opts o = fast_opts(0);
	struct disk *d;

	NEED_BAD();
	d = open_ok(url(F.bad, "/good"), BLOB_FLAT, &o);
	assert_int_equal(disk_sector_count(d), BAD_BYTES / 512);
	read_check(d, 0, 4096, BAD_TAG);
	read_check(d, 123 * 512, 70000 - 70000 % 512, BAD_TAG);
	contract_disk(d);
	disk_unref(d);
}

static void test_blob_bad_short_body(void **state UNUSED)
{
	NEED_BAD();
	expect_read_error("/short", 3, 4096, 8192, EIO);
	/* Not retried: a short, complete body is the server's answer. */
	assert_int_equal(bad_stat("GET /short", NULL), 1);
}

static void test_blob_bad_range_ignored(void **state UNUSED)
{
	NEED_BAD();
	/* 200 with the whole blob: longer than asked at 0, from the wrong
	 * place anywhere else. */
	expect_read_error("/norange", 3, 0, 4096, EIO);
	expect_read_error("/norange", 3, 4096, 4096, EIO);
	/* 206 for another range, 206 without Content-Range. */
	expect_read_error("/badrange", 3, 8192, 4096, EIO);
	expect_read_error("/nocr", 3, 8192, 4096, EIO);
}

static void test_blob_bad_status(void **state UNUSED)
{
	NEED_BAD();
	expect_read_error("/416", 3, 0, 512, EIO);
	assert_int_equal(bad_stat("GET /416", NULL), 1);
	expect_read_error("/404", 3, 0, 512, ENOENT);
	/* 5xx is transient: retried, then given up. */
	expect_read_error("/500", 2, 0, 512, EIO);
	assert_int_equal(bad_stat("GET /500", NULL), 3);
}

static void test_blob_bad_close_mid_body(void **state UNUSED)
{
	NEED_BAD();
	expect_read_error("/close", 1, 0, 65536, ECONNRESET);
	assert_int_equal(bad_stat("GET /close", NULL), 2);
}

/* The server sends 1 KiB and then nothing for 10 minutes: only the
 * low-speed limit (1 s here) can end the read with ETIMEDOUT; a server that
 * gave up first would cut the connection (another error). */
static void test_blob_bad_stall(void **state UNUSED)
{
	struct blob_opts o = fast_opts(0);
	struct disk *d;
	int e = 0;

	NEED_BAD();
	o.low_speed_time_s = 1;
	d = open_ok(url(F.bad, "/stall"), BLOB_FLAT, &o);
	assert_int_equal(read_status(d, 0, 65536, &e), DISK_IO_ERROR);
	assert_int_equal(e, ETIMEDOUT);
	disk_unref(d);
}

static void test_blob_bad_shrunk(void **state UNUSED)
{
	struct blob_opts o = fast_opts(0);
	struct disk *d;

	NEED_BAD();
	d = open_ok(url(F.bad, "/shrink"), BLOB_FLAT, &o);
	assert_int_equal(disk_sector_count(d), BAD_BYTES / 512);
	read_check(d, 0, 4096, BAD_TAG);
	/* Past the new end: an I/O error, not ILLEGAL_BLOCK. */
	assert_int_equal(read_status(d, BAD_BYTES / 512 - 8, 4096, NULL), DISK_IO_ERROR);
	disk_unref(d);
}

static void test_blob_bad_transient_recovers(void **state UNUSED)
{
	struct blob_opts o = fast_opts(4);
	struct disk *d;

	NEED_BAD();
	/* Two 503s, then the data. */
	d = open_ok(url(F.bad, "/flaky2"), BLOB_FLAT, &o);
	read_check(d, 4096, 8192, BAD_TAG);
	assert_int_equal(bad_stat("GET /flaky2", NULL), 3);
	disk_unref(d);
	/* A connection cut mid-body, then the data. */
	d = open_ok(url(F.bad, "/flakyclose"), BLOB_FLAT, &o);
	read_check(d, 0, 65536, BAD_TAG);
	assert_int_equal(bad_stat("GET /flakyclose", NULL), 2);
	disk_unref(d);
}

/* Regression: a retry scheduled while reaping waited for the engine's idle
 * poll (1 s) instead of its backoff: eight retries of 1 ms each took more
 * than 8 s. Checked by counting the engine's idle polls with a retry
 * waiting (a clock would make the test fail on a busy machine). */
static void test_blob_retry_not_delayed_by_idle_poll_regression(void **state UNUSED)
{
	struct blob_opts o = fast_opts(8);
	struct disk *d;

	NEED_BAD();
	o.backoff_max_ms = 1;
	d = open_ok(url(F.bad, "/flaky8"), BLOB_FLAT, &o);
	read_check(d, 0, 4096, BAD_TAG);
	assert_int_equal(bad_stat("GET /flaky8", NULL), 9);
	assert_int_equal(blob_idle_polls_over_backoff(d), 0);
	assert_int_equal(blob_idle_polls_over_backoff(NULL), -EINVAL);
	disk_unref(d);
}

static void test_blob_bad_head(void **state UNUSED)
{
	struct blob_opts o = fast_opts(0);
	struct disk *d;
	char err[512];

	NEED_BAD();
	assert_int_equal(open_err(url(F.bad, "/nolength"), BLOB_FLAT, &o, err, sizeof(err)), -EIO);
	assert_non_null(strstr(err, "Content-Length"));
	/* A redirect loop stops after 6 HEADs. */
	assert_int_equal(open_err(url(F.bad, "/loop"), BLOB_FLAT, &o, err, sizeof(err)), -ELOOP);
	assert_non_null(strstr(err, "too many redirects"));
	assert_int_equal(bad_stat("HEAD /loop", NULL), 6);
	/* A HEAD that never answers times out. */
	o.low_speed_time_s = 1;
	assert_int_equal(open_err(url(F.bad, "/stallhead"), BLOB_FLAT, &o, err, sizeof(err)),
			 -ETIMEDOUT);
	/* A relative Location is resolved; reads go where it pointed. */
	d = open_ok(url(F.bad, "/relredir"), BLOB_FLAT, &o);
	read_check(d, 0, 4096, BAD_TAG);
	assert_int_equal(bad_stat("GET /relredir", NULL), 0);
	disk_unref(d);
}

/*
 * libcurl before 8.1.0 (curl issue 11101) appends a reply's leading folded
 * header line (obs-fold, RFC 9112 §5.2) to the previous transfer's last
 * header, already freed, when an easy handle is used again: a server could
 * crash us through a redirect (the second HEAD) or any second GET of a
 * transfer slot. Found by fuzz-blob; the ASan build caught it. Such a reply
 * must fail its request, nothing more.
 */
static void test_blob_curl_folded_header_after_reuse_regression(void **state UNUSED)
{
	struct blob_opts o = fast_opts(0);
	struct disk *d;
	char err[512];
	int e = 0;

	NEED_BAD();
	assert_int_equal(open_err(url(F.bad, "/foldredir"), BLOB_FLAT, &o, err, sizeof(err)), -EIO);
	assert_non_null(strstr(err, "/foldhead"));
	assert_int_equal(bad_stat("HEAD /foldhead", NULL), 1);
	/* One transfer slot: the first GET is well formed, the second is not;
	 * the disk stays usable for the well-formed first piece. */
	o.max_connections = 1;
	d = open_ok(url(F.bad, "/folded"), BLOB_FLAT, &o);
	read_check(d, 0, 4096, BAD_TAG);
	assert_int_equal(read_status(d, 8, 4096, &e), DISK_IO_ERROR);
	assert_int_equal(e, EIO);
	disk_unref(d);
}

static void test_blob_bad_vhd(void **state UNUSED)
{
	struct blob_opts o = fast_opts(0);
	struct disk *d;
	uint8_t buf[512];

	NEED_BAD();
	d = open_ok(url(F.bad, "/vhd"), BLOB_VHD1, &o);
	assert_int_equal(disk_sector_count(d), (BAD_BYTES - 512) / 512);
	read_check(d, BAD_BYTES - 1024, 512, BAD_TAG);
	memset(buf, 0, sizeof(buf));
	assert_int_equal(disk_sync_read(d, disk_sector_count(d), buf, 512), DISK_ILLEGAL_BLOCK);
	assert_true(tu_is_zero(buf, sizeof(buf)));
	disk_unref(d);
}

static void test_blob_keepalive(void **state UNUSED)
{
	struct blob_opts o = fast_opts(0);
	struct disk *d;
	int conns_before, conns_after;

	NEED_BAD();
	bad_stat("x", &conns_before);
	d = open_ok(url(F.bad, "/good"), BLOB_FLAT, &o);
	for (unsigned i = 0; i < 50; i++)
		read_check(d, (uint64_t)i * 4096, 4096, BAD_TAG);
	disk_unref(d);
	bad_stat("x", &conns_after);
	/* One for the HEAD, one for the reads (plus the stats calls): 50
	 * sequential reads reuse one connection. */
	assert_true(conns_after - conns_before <= 4);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_blob_redirect_rule),
		cmocka_unit_test(test_blob_bad_opts),
		cmocka_unit_test(test_blob_connection_refused),
		cmocka_unit_test(test_blob_unix_socket),
		cmocka_unit_test(test_blob_content_range_length_not_beyond_last_regression),
		cmocka_unit_test(test_blob_content_range_nul_in_length_regression),
		cmocka_unit_test(test_blob_status_line_without_nul_regression),
		cmocka_unit_test(test_blob_flat_geometry),
		cmocka_unit_test(test_blob_flat_contract),
		cmocka_unit_test(test_blob_flat_reads),
		cmocka_unit_test(test_blob_parallel),
		cmocka_unit_test(test_blob_vhd1),
		cmocka_unit_test(test_blob_vhd1_open_errors),
		cmocka_unit_test(test_blob_redirects),
		cmocka_unit_test(test_blob_read_only_ops),
		cmocka_unit_test(test_blob_flush_read_only_regression),
		cmocka_unit_test(test_blob_spec),
		cmocka_unit_test(test_blob_bad_good),
		cmocka_unit_test(test_blob_bad_short_body),
		cmocka_unit_test(test_blob_bad_range_ignored),
		cmocka_unit_test(test_blob_bad_status),
		cmocka_unit_test(test_blob_bad_close_mid_body),
		cmocka_unit_test(test_blob_bad_stall),
		cmocka_unit_test(test_blob_bad_shrunk),
		cmocka_unit_test(test_blob_bad_transient_recovers),
		cmocka_unit_test(test_blob_retry_not_delayed_by_idle_poll_regression),
		cmocka_unit_test(test_blob_bad_head),
		cmocka_unit_test(test_blob_curl_folded_header_after_reuse_regression),
		cmocka_unit_test(test_blob_bad_vhd),
		cmocka_unit_test(test_blob_keepalive),
	};

	return cmocka_run_group_tests_name("blob", tests, group_setup, group_teardown);
}
