/* SPDX-License-Identifier: MIT */
/*
 * test-spec.c: the disk-spec parser, the registry of kinds and the
 * resolver (storage/spec.c; docs/openvmm-compat.md §6, §3.9).
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/compiler.h"
#include "testutil.h"
#include "storage/spec.h"
#include "storage/layers/sqlitelayer.h"

#define G (1ull << 30)
#define M (1ull << 20)
#define K (1ull << 10)

/* ---- helpers ------------------------------------------------------------ */

static struct spec *parse_ok(const char *text)
{
	char err[1024] = "";
	struct spec *s = NULL;
	int r = spec_parse(text, &s, err, sizeof(err));

	if (r != 0)
		print_error("spec_parse('%s') failed: %d %s\n", text, r, err);
	assert_int_equal(r, 0);
	assert_non_null(s);
	assert_string_equal(s->text, text);
	return s;
}

/* @text must be rejected with -EINVAL and a message containing each of the
 * NULL-terminated @parts, and quoting the whole spec. */
static void parse_fails(const char *text, ...)
{
	char err[1024] = "";
	char whole[512];
	struct spec *s = (struct spec *)&err;
	va_list ap;
	int r = spec_parse(text, &s, err, sizeof(err));

	if (r != -EINVAL)
		print_error("spec_parse('%s') returned %d (%s), want -EINVAL\n", text, r, err);
	assert_int_equal(r, -EINVAL);
	assert_null(s);
	assert_true(strlen(err) > 0);
	if (*text) {
		snprintf(whole, sizeof(whole), "of '%s'", text);
		if (!strstr(err, whole))
			print_error("message for '%s' lacks the spec: %s\n", text, err);
		assert_non_null(strstr(err, whole));
	}
	va_start(ap, text);
	for (const char *part = va_arg(ap, const char *); part; part = va_arg(ap, const char *)) {
		if (!strstr(err, part))
			print_error("message for '%s' lacks \"%s\": %s\n", text, part, err);
		assert_non_null(strstr(err, part));
	}
	va_end(ap);
}

static void assert_kind(const struct spec *s, const char *name)
{
	assert_non_null(s);
	assert_non_null(s->kind);
	assert_string_equal(s->kind->name, name);
}

/* The node's own text. */
static void assert_node_text(const struct spec *s, const char *want)
{
	assert_int_equal(s->len, strlen(want));
	assert_memory_equal(s->text + s->off, want, s->len);
}

/* ---- §6.6 examples ------------------------------------------------------- */

static void test_spec_example_mem(void **state)
{
	struct spec *s = parse_ok("mem:1G");

	(void)state;
	assert_kind(s, "mem");
	assert_int_equal(s->size, G);
	assert_int_equal(s->size / 512, 2097152);
	assert_false(s->ro);
	assert_null(s->inner);
	spec_free(s);
}

static void test_spec_example_memdiff(void **state)
{
	struct spec *s = parse_ok("memdiff:file:/img/base.raw");

	(void)state;
	assert_kind(s, "memdiff");
	assert_kind(s->inner, "file");
	assert_string_equal(s->inner->path, "/img/base.raw");
	assert_false(s->inner->bare);
	assert_node_text(s->inner, "file:/img/base.raw");
	assert_null(s->inner->inner);
	spec_free(s);

	s = parse_ok("memdiff:/img/base.raw");
	assert_kind(s, "memdiff");
	assert_kind(s->inner, "file");
	assert_true(s->inner->bare);
	assert_string_equal(s->inner->path, "/img/base.raw");
	assert_false(s->inner->create);
	assert_false(s->inner->direct);
	spec_free(s);
}

static void test_spec_example_file(void **state)
{
	struct spec *s = parse_ok("file:disk.img;create=8G");

	(void)state;
	assert_kind(s, "file");
	assert_string_equal(s->path, "disk.img");
	assert_true(s->create);
	assert_int_equal(s->size, 8 * G);
	assert_false(s->direct);
	assert_false(s->ro);
	spec_free(s);

	s = parse_ok("file:/dev/sdb;direct,ro");
	assert_kind(s, "file");
	assert_string_equal(s->path, "/dev/sdb");
	assert_true(s->direct);
	assert_false(s->create);
	assert_true(s->ro);
	assert_node_text(s, "file:/dev/sdb;direct");
	spec_free(s);
}

static void test_spec_example_sql(void **state)
{
	struct spec *s = parse_ok("sql:disk.dbhd;create=4G");

	(void)state;
	assert_kind(s, "sql");
	assert_string_equal(s->path, "disk.dbhd");
	assert_true(s->create);
	assert_int_equal(s->size, 4 * G);
	spec_free(s);

	s = parse_ok("sqldiff:diff.dbhd;create:file:base.img");
	assert_kind(s, "sqldiff");
	assert_string_equal(s->path, "diff.dbhd");
	assert_true(s->create);
	assert_kind(s->inner, "file");
	assert_string_equal(s->inner->path, "base.img");
	spec_free(s);

	s = parse_ok("sqldiff:diff.dbhd:file:base.img");
	assert_kind(s, "sqldiff");
	assert_string_equal(s->path, "diff.dbhd");
	assert_false(s->create);
	assert_kind(s->inner, "file");
	assert_string_equal(s->inner->path, "base.img");
	spec_free(s);
}

static void test_spec_example_autocache(void **state)
{
	struct spec *s = parse_ok(
		"autocache::blob:vhd1:https://acct.blob.core.windows.net/c/d.vhd?<sas>,ro");

	(void)state;
	assert_kind(s, "autocache");
	assert_null(s->path);
	assert_true(s->ro);
	assert_kind(s->inner, "blob");
	assert_string_equal(s->inner->arg, "vhd1");
	assert_string_equal(s->inner->path, "https://acct.blob.core.windows.net/c/d.vhd?<sas>");
	assert_false(s->inner->ro);
	spec_free(s);

	s = parse_ok("memdiff:autocache:mykey:blob:flat:https://host/disk.raw");
	assert_kind(s, "memdiff");
	assert_false(s->ro);
	assert_kind(s->inner, "autocache");
	assert_string_equal(s->inner->path, "mykey");
	assert_kind(s->inner->inner, "blob");
	assert_string_equal(s->inner->inner->arg, "flat");
	assert_string_equal(s->inner->inner->path, "https://host/disk.raw");
	assert_node_text(s->inner->inner, "blob:flat:https://host/disk.raw");
	spec_free(s);
}

static void test_spec_example_crypt_prwrap(void **state)
{
	struct spec *s = parse_ok("crypt:xts-aes-256:/keys/k.bin:file:enc.img");

	(void)state;
	assert_kind(s, "crypt");
	assert_string_equal(s->arg, "xts-aes-256");
	assert_string_equal(s->path, "/keys/k.bin");
	assert_kind(s->inner, "file");
	assert_string_equal(s->inner->path, "enc.img");
	spec_free(s);

	s = parse_ok("prwrap:mem:1G");
	assert_kind(s, "prwrap");
	assert_kind(s->inner, "mem");
	assert_int_equal(s->inner->size, G);
	spec_free(s);

	s = parse_ok("memdiff:crypt:xts-aes-256:k.bin:file:enc.img");
	assert_kind(s, "memdiff");
	assert_kind(s->inner, "crypt");
	assert_string_equal(s->inner->path, "k.bin");
	assert_kind(s->inner->inner, "file");
	assert_string_equal(s->inner->inner->path, "enc.img");
	assert_node_text(s->inner->inner, "file:enc.img");
	spec_free(s);
}

/* ---- §6.6 error cases ------------------------------------------------------ */

static void test_spec_reference_errors(void **state)
{
	(void)state;
	parse_fails("mem:invalid", "bad size", "'invalid'", "offset 4", NULL);
	parse_fails("sqldiff:path", "'path'", "':<spec>'", NULL);
	parse_fails("blob:invalid:url", "'invalid'", "flat, vhd1", NULL);
	parse_fails("crypt:invalid:key.bin:file:disk.vhd", "'invalid'", "xts-aes-256", NULL);
	parse_fails("crypt:xts-aes-256:key.bin", "'key.bin'", "':<spec>'", NULL);
	parse_fails("invalid:path", "invalid disk kind 'invalid'",
		    "valid kinds: mem, memdiff, file, sql, sqldiff, autocache, blob, crypt, "
		    "prwrap, delay, error, striped, nbd", NULL);
	parse_fails("file:disk.vhd;create=", "'create='", NULL);
	parse_fails("file:disk.img;bogus", "'bogus'", "unknown", NULL);
	parse_fails("sql:db.sqlite;direct", "'direct'", "sql", NULL);
	parse_fails("invalid:", "invalid disk kind 'invalid'", NULL);
	parse_fails("memory:extra", "invalid disk kind 'memory'", "valid kinds:", NULL);
}

static void test_spec_more_errors(void **state)
{
	(void)state;
	/* mem sizes. */
	parse_fails("mem:", "missing size", "offset 4", NULL);
	parse_fails("mem:0", "'0'", "multiple of 512", NULL);
	parse_fails("mem:1000", "'1000'", "multiple of 512", NULL);
	parse_fails("mem:1g", "'1g'", NULL);
	parse_fails("mem:0x1000", "'0x1000'", NULL);
	parse_fails("mem:99999999999999999999", "too large", NULL);
	parse_fails("mem:16777216T", "too large", NULL);
	parse_fails("memdiff:mem:bad", "'bad'", "offset 12", NULL);
	/* file options. */
	parse_fails("file:", "missing path", NULL);
	parse_fails("file:;direct", "missing path", NULL);
	parse_fails("file:x;direct;direct", "duplicate", "'direct'", NULL);
	parse_fails("file:x;create=1M;create=2M", "duplicate", "'create=2M'", NULL);
	parse_fails("file:x;create=1M;;direct", "empty option", "offset 16", NULL);
	parse_fails("file:x;", "empty option", NULL);
	parse_fails("file:x;create", "'create'", "create=<size>", NULL);
	parse_fails("file:x;create=abc", "'abc'", NULL);
	parse_fails("file:x;create=100", "'100'", "multiple of 512", NULL);
	parse_fails("disk.img;bogus", "'bogus'", NULL);
	parse_fails("sql:x;create=1M;bogus", "'bogus'", NULL);
	parse_fails("sql:", "missing path", NULL);
	/* sqldiff. */
	parse_fails("sqldiff:p;bogus:mem:1M", "'bogus'", NULL);
	parse_fails("sqldiff:p;create;create:mem:1M", "duplicate", NULL);
	parse_fails("sqldiff:p;create=1M:mem:1M", "'create=1M'", NULL);
	parse_fails("sqldiff:p:", "missing inner disk spec", NULL);
	parse_fails("sqldiff::mem:1M", "missing path", NULL);
	/* autocache. */
	parse_fails("autocache:key", "'key'", "':<spec>'", NULL);
	parse_fails("autocache:", "':<spec>'", NULL);
	parse_fails("autocache:a/b:mem:1M", "'a/b'", NULL);
	parse_fails("autocache:..:mem:1M", "'..'", NULL);
	parse_fails("autocache::", "missing inner disk spec", NULL);
	/* blob. */
	parse_fails("blob:flat:", "missing URL", NULL);
	parse_fails("blob:flat", "missing URL", NULL);
	parse_fails("blob:", "missing blob type", NULL);
	parse_fails("blob:flat:ftp://host/x", "'ftp://host/x'", "http", NULL);
	parse_fails("blob:vhd1:https://", "'https://'", NULL);
	/* crypt. */
	parse_fails("crypt:", "missing cipher", NULL);
	parse_fails("crypt:xts-aes-256", "'xts-aes-256'", NULL);
	parse_fails("crypt:xts-aes-256::mem:1M", "missing key file", NULL);
	parse_fails("crypt:xts-aes-256:k:", "missing inner disk spec", NULL);
	parse_fails("crypt:aes:k:mem:1M", "'aes'", NULL);
	/* inner specs. */
	parse_fails("memdiff:", "missing inner disk spec", "'memdiff:'", NULL);
	parse_fails("prwrap:", "missing inner disk spec", NULL);
	parse_fails("memdiff:bogus:x", "invalid disk kind 'bogus'", "offset 8", NULL);
	/* kinds. */
	parse_fails(":x", "missing disk kind", NULL);
	parse_fails("MEM:1G", "invalid disk kind 'MEM'", NULL);
	parse_fails("", "empty disk spec", NULL);
	/* options after the comma. */
	parse_fails(",ro", "missing disk spec", NULL);
	parse_fails("mem:1M,", "empty option", NULL);
	parse_fails("mem:1M,,ro", "empty option", NULL);
	parse_fails("mem:1M,rw", "unknown option", "'rw'", NULL);
	parse_fails("mem:1M,cdrom", "unknown option", "'cdrom'", "dvd", NULL);
	parse_fails("mem:1M,ro=yes", "'ro=yes'", NULL);
	parse_fails("mem:1M,ro,ro", "duplicate", NULL);
	parse_fails("file:a,b.img", "unknown option", "'b.img'", NULL);
}

static void test_spec_bare_path(void **state)
{
	struct spec *s = parse_ok("disk.img");

	(void)state;
	assert_kind(s, "file");
	assert_true(s->bare);
	assert_string_equal(s->path, "disk.img");
	spec_free(s);

	s = parse_ok("disk.img;direct;create=1M,ro");
	assert_kind(s, "file");
	assert_true(s->bare);
	assert_string_equal(s->path, "disk.img");
	assert_true(s->direct);
	assert_true(s->create);
	assert_int_equal(s->size, M);
	assert_true(s->ro);
	spec_free(s);

	/* An absolute path may contain ':'. */
	s = parse_ok("/abs/pa:th");
	assert_kind(s, "file");
	assert_string_equal(s->path, "/abs/pa:th");
	spec_free(s);

	s = parse_ok("memdiff:/abs/pa:th;direct");
	assert_kind(s->inner, "file");
	assert_string_equal(s->inner->path, "/abs/pa:th");
	assert_true(s->inner->direct);
	spec_free(s);

	/* file: keeps everything after the first ':' as the path. */
	s = parse_ok("file:a:b");
	assert_string_equal(s->path, "a:b");
	spec_free(s);

	/* Options in any order. */
	s = parse_ok("file:x;create=64K;direct");
	assert_true(s->direct);
	assert_int_equal(s->size, 64 * K);
	spec_free(s);
}

static void test_spec_ro_option(void **state)
{
	struct spec *s = parse_ok("mem:1M,ro");

	(void)state;
	assert_true(s->ro);
	assert_node_text(s, "mem:1M");
	spec_free(s);
	s = parse_ok("mem:1M,ro=on");
	assert_true(s->ro);
	spec_free(s);
	s = parse_ok("mem:1M,ro=off");
	assert_false(s->ro);
	spec_free(s);
	s = parse_ok("memdiff:mem:1M,ro");
	assert_true(s->ro);
	assert_false(s->inner->ro);
	spec_free(s);
	/* A comma inside [...] does not split. */
	s = parse_ok("nbd:nbd://[a,b]/x,ro");
	assert_string_equal(s->path, "nbd://[a,b]/x");
	assert_true(s->ro);
	spec_free(s);
}

/* ---- sizes ------------------------------------------------------------------ */

static uint64_t size_of(const char *t, int want)
{
	uint64_t v = 0xdead;
	int r = spec_parse_size(t, strlen(t), &v);

	if (r != want)
		print_error("spec_parse_size('%s') = %d, want %d\n", t, r, want);
	assert_int_equal(r, want);
	return v;
}

static void test_spec_parse_size(void **state)
{
	(void)state;
	assert_int_equal(size_of("512", 0), 512);
	assert_int_equal(size_of("0", 0), 0);
	assert_int_equal(size_of("64K", 0), 64 * K);
	assert_int_equal(size_of("64KB", 0), 64 * K);
	assert_int_equal(size_of("3M", 0), 3 * M);
	assert_int_equal(size_of("1G", 0), G);
	assert_int_equal(size_of("1GB", 0), G);
	assert_int_equal(size_of("2T", 0), 2ull << 40);
	assert_int_equal(size_of("512B", 0), 512);
	assert_int_equal(size_of("18446744073709551615", 0), UINT64_MAX);
	assert_int_equal(size_of("16777215T", 0), 16777215ull << 40);
	size_of("18446744073709551616", -ERANGE);
	size_of("16777216T", -ERANGE);
	size_of("99999999999999999999999", -ERANGE);
	size_of("1g", -EINVAL);
	size_of("1k", -EINVAL);
	size_of("1Gb", -EINVAL);
	size_of("0x10", -EINVAL);
	size_of("", -EINVAL);
	size_of("G", -EINVAL);
	size_of("B", -EINVAL);
	size_of("-1", -EINVAL);
	size_of("+1", -EINVAL);
	size_of(" 1", -EINVAL);
	size_of("1 ", -EINVAL);
	size_of("1GG", -EINVAL);
	size_of("1BB", -EINVAL);
	size_of("1P", -EINVAL);
	size_of("1.5G", -EINVAL);

	/* The length bounds the string. */
	{
		uint64_t v;

		assert_int_equal(spec_parse_size("64Kxyz", 3, &v), 0);
		assert_int_equal(v, 64 * K);
	}
}

static void test_spec_format_size(void **state)
{
	static const struct { uint64_t v; const char *s; } cases[] = {
		{ 0, "0" }, { 512, "512" }, { 1000, "1000" }, { 1024, "1K" },
		{ 1536 * K, "1536K" }, { G, "1G" }, { 3 * M, "3M" }, { 2ull << 40, "2T" },
		{ G + 512, "1073742336" }, { UINT64_MAX, "18446744073709551615" },
	};
	char buf[32];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint64_t back;

		spec_format_size(cases[i].v, buf, sizeof(buf));
		assert_string_equal(buf, cases[i].s);
		/* What is printed parses back. */
		assert_int_equal(spec_parse_size(buf, strlen(buf), &back), 0);
		assert_int_equal(back, cases[i].v);
	}
	spec_format_size(G, buf, 2);
	assert_string_equal(buf, "1");
}

/* ---- delay, striped, nbd ------------------------------------------------------ */

static void test_spec_delay(void **state)
{
	struct spec *s = parse_ok("delay:5:mem:1G");

	(void)state;
	assert_kind(s, "delay");
	assert_int_equal(s->delay_read_us, 5000);
	assert_int_equal(s->delay_write_us, 5000);
	assert_kind(s->inner, "mem");
	spec_free(s);

	s = parse_ok("delay:500us:file:/x.img");
	assert_int_equal(s->delay_read_us, 500);
	assert_int_equal(s->delay_write_us, 500);
	assert_kind(s->inner, "file");
	spec_free(s);

	s = parse_ok("delay:10/20:mem:1M");
	assert_int_equal(s->delay_read_us, 10000);
	assert_int_equal(s->delay_write_us, 20000);
	spec_free(s);

	s = parse_ok("delay:7ms/30us:memdiff:mem:1M,ro");
	assert_int_equal(s->delay_read_us, 7000);
	assert_int_equal(s->delay_write_us, 30);
	assert_kind(s->inner, "memdiff");
	assert_true(s->ro);
	spec_free(s);

	s = parse_ok("delay:0:mem:1M");
	assert_int_equal(s->delay_read_us, 0);
	spec_free(s);

	parse_fails("delay:x:mem:1M", "bad delay", "'x'", NULL);
	parse_fails("delay:5s:mem:1M", "'5s'", NULL);
	parse_fails("delay:5ns:mem:1M", "'5ns'", NULL);
	parse_fails("delay::mem:1M", "missing delay", NULL);
	parse_fails("delay:5/:mem:1M", "missing delay", "offset 8", NULL);
	parse_fails("delay:5/6/7:mem:1M", "'6/7'", NULL);
	parse_fails("delay:5", "'5'", "':<spec>'", NULL);
	parse_fails("delay:5:", "missing inner disk spec", NULL);
	parse_fails("delay:18446744073709551615:mem:1M", "too large", NULL);
	parse_fails("delay:99999999999999999999us:mem:1M", "too large", NULL);
}

static void test_spec_striped(void **state)
{
	struct spec *s = parse_ok("striped:64K:mem:1M+mem:1M");

	(void)state;
	assert_kind(s, "striped");
	assert_int_equal(s->size, 64 * K);
	assert_int_equal(s->nmembers, 2);
	assert_kind(s->members[0], "mem");
	assert_kind(s->members[1], "mem");
	assert_node_text(s->members[1], "mem:1M");
	assert_int_equal(s->members[1]->off, strlen("striped:64K:mem:1M+"));
	spec_free(s);

	s = parse_ok("striped:128K:file:/a;direct+memdiff:file:/b+nbd:nbd://h/e+/c,ro");
	assert_int_equal(s->size, 128 * K);
	assert_int_equal(s->nmembers, 4);
	assert_kind(s->members[0], "file");
	assert_string_equal(s->members[0]->path, "/a");
	assert_true(s->members[0]->direct);
	assert_kind(s->members[1], "memdiff");
	assert_kind(s->members[1]->inner, "file");
	assert_string_equal(s->members[1]->inner->path, "/b");
	assert_kind(s->members[2], "nbd");
	assert_string_equal(s->members[2]->path, "nbd://h/e");
	assert_kind(s->members[3], "file");
	assert_true(s->members[3]->bare);
	assert_true(s->ro);
	spec_free(s);

	/* One member is allowed (§4.8: N >= 1). */
	s = parse_ok("striped:4K:mem:1M");
	assert_int_equal(s->nmembers, 1);
	spec_free(s);

	/* Nested kinds inside members. */
	s = parse_ok("memdiff:striped:1M:delay:1:mem:8M+prwrap:mem:8M");
	assert_kind(s->inner, "striped");
	assert_kind(s->inner->members[0], "delay");
	assert_kind(s->inner->members[0]->inner, "mem");
	assert_kind(s->inner->members[1], "prwrap");
	spec_free(s);

	parse_fails("striped:64K:mem:1M++mem:1M", "empty stripe member", "offset 19", NULL);
	parse_fails("striped:64K:mem:1M+", "empty stripe member", NULL);
	parse_fails("striped:64K:+mem:1M", "empty stripe member", NULL);
	parse_fails("striped:64K:", "missing member", NULL);
	parse_fails("striped:64K", "'64K'", "':<spec>'", NULL);
	parse_fails("striped::mem:1M", "missing stripe chunk size", NULL);
	parse_fails("striped:1000:mem:1M", "'1000'", "multiple of 512", NULL);
	parse_fails("striped:64k:mem:1M", "'64k'", NULL);
	parse_fails("striped:64K:mem:1M+bogus:x", "invalid disk kind 'bogus'", NULL);
	parse_fails("striped:64K:mem:1M+mem:", "missing size", NULL);
}

static void test_spec_nbd(void **state)
{
	static const char *const good[] = {
		"nbd://host/export", "nbd://host", "nbds://host:10809/e", "nbd://[::1]:10809/e",
		"nbd+unix:///e?socket=/tmp/s", "nbds+unix://?socket=/s",
		"nbd+unix:///e?tls=off&socket=/run/x.sock",
	};
	char text[128];

	(void)state;
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		struct spec *s;

		snprintf(text, sizeof(text), "nbd:%s", good[i]);
		s = parse_ok(text);
		assert_kind(s, "nbd");
		assert_string_equal(s->path, good[i]);
		assert_null(s->inner);
		spec_free(s);
	}
	parse_fails("nbd:", "missing NBD URI", NULL);
	parse_fails("nbd:http://host/x", "unsupported NBD URI scheme", "'http'", "nbd+unix://", NULL);
	parse_fails("nbd:NBD://host/x", "'NBD'", NULL);
	parse_fails("nbd:host:10809", "unsupported NBD URI scheme", "'host:10809'", NULL);
	parse_fails("nbd:nbd://", "missing host", NULL);
	parse_fails("nbd:nbd:///export", "missing host", NULL);
	parse_fails("nbd:nbd+unix:///e", "socket=", NULL);
	parse_fails("nbd:nbd+unix:///e?socket=", "socket=", NULL);
	parse_fails("nbd:nbd+vsock://1", "unsupported NBD URI scheme", NULL);
}

static void test_spec_depth_limit(void **state)
{
	char text[2048] = "";
	struct spec *s;

	(void)state;
	for (int i = 0; i < 20; i++)
		strcat(text, "memdiff:");
	strcat(text, "mem:1M");
	s = parse_ok(text);
	spec_free(s);

	text[0] = '\0';
	for (int i = 0; i < 200; i++)
		strcat(text, "memdiff:");
	strcat(text, "mem:1M");
	parse_fails(text, "nested", NULL);
}

static void test_spec_null_err(void **state)
{
	struct spec *s = NULL;

	(void)state;
	assert_int_equal(spec_parse("bogus:x", &s, NULL, 0), -EINVAL);
	assert_null(s);
	assert_int_equal(spec_parse("mem:1M", &s, NULL, 0), 0);
	spec_free(s);
	spec_free(NULL);
}

/* ---- the registry -------------------------------------------------------------- */

static void test_spec_registry(void **state)
{
	static const char *const names[] = {
		"mem", "memdiff", "file", "sql", "sqldiff", "autocache", "blob", "crypt",
		"prwrap", "delay", "error", "striped", "nbd",
	};
	/* What this build has (configure --without-* drops some). */
	static const char *const available[] = { "mem", "memdiff", "file", "prwrap", "striped",
#ifdef HAVE_CURL
						  "blob",
#endif
#ifdef HAVE_LIBNBD
						  "nbd",
#endif
#ifdef HAVE_SQLITE
						  "sql", "sqldiff", "autocache",
#endif
						  "crypt", "delay", "error" };
	unsigned n = 0;
	char *buf = NULL;
	size_t blen = 0;
	FILE *fp;

	(void)state;
	for (const struct spec_kind *const *kp = spec_kinds; *kp; kp++) {
		const struct spec_kind *k = *kp;

		assert_non_null(k->usage);
		assert_non_null(k->summary);
		/* The usage line starts with the kind's name and ':'. */
		assert_int_equal(strncmp(k->usage, k->name, strlen(k->name)), 0);
		assert_int_equal(k->usage[strlen(k->name)], ':');
		assert_false(k->open_layer && k->open_disk);
		assert_ptr_equal(spec_kind_find(k->name), k);
		n++;
	}
	assert_int_equal(n, sizeof(names) / sizeof(names[0]));
	for (size_t i = 0; i < n; i++) {
		const struct spec_kind *k = spec_kind_find(names[i]);
		bool want = false;

		assert_non_null(k);
		for (size_t j = 0; j < sizeof(available) / sizeof(available[0]); j++)
			if (strcmp(available[j], names[i]) == 0)
				want = true;
		assert_int_equal(spec_kind_available(k), want);
	}
	assert_null(spec_kind_find("memory"));
	assert_null(spec_kind_find(""));

	/* The read-only rules of §6.3. */
	assert_true(spec_kind_find("memdiff")->inner_forced_ro);
	assert_true(spec_kind_find("sqldiff")->inner_forced_ro);
	assert_false(spec_kind_find("autocache")->inner_forced_ro);
	assert_true(spec_kind_find("autocache")->read_cache);
	assert_false(spec_kind_find("prwrap")->inner_forced_ro);
	assert_false(spec_kind_find("crypt")->inner_forced_ro);

	/* --help lists every kind with its usage. */
	fp = open_memstream(&buf, &blen);
	assert_non_null(fp);
	spec_print_usage(fp, "  ");
	fclose(fp);
	for (const struct spec_kind *const *kp = spec_kinds; *kp; kp++) {
		const struct spec_kind *k = *kp;
		char line[256];

		snprintf(line, sizeof(line), "  %s", k->usage);
		assert_non_null(strstr(buf, line));
		assert_non_null(strstr(buf, k->summary));
	}
	/* Every kind has landed: none is marked unavailable (unless this
	 * build left a library out). */
	if (ARRAY_SIZE(available) == ARRAY_SIZE(names))
		assert_null(strstr(buf, "not available in this build"));
	assert_non_null(strstr(buf, "  <path>"));
	free(buf);
}

/* ---- opening ---------------------------------------------------------------------- */

static struct disk *open_ok(const char *text, bool read_only, const struct spec_ctx *ctx)
{
	char err[1024] = "";
	struct disk *d = NULL;
	int r = spec_open_str(text, read_only, ctx, &d, err, sizeof(err));

	if (r != 0)
		print_error("spec_open_str('%s') failed: %d %s\n", text, r, err);
	assert_int_equal(r, 0);
	assert_non_null(d);
	return d;
}

/* Opening @text must fail with @want_r and a message containing @part. */
static void open_fails(const char *text, bool read_only, const struct spec_ctx *ctx,
		       int want_r, const char *part)
{
	char err[1024] = "";
	struct disk *d = (struct disk *)&err;
	int r = spec_open_str(text, read_only, ctx, &d, err, sizeof(err));

	if (r != want_r || !strstr(err, part))
		print_error("spec_open_str('%s') = %d '%s', want %d with \"%s\"\n", text, r, err,
			    want_r, part);
	assert_int_equal(r, want_r);
	assert_null(d);
	assert_non_null(strstr(err, part));
}

static void make_file(const char *path, uint64_t size, uint64_t tag)
{
	static char buf[64 * 1024];
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

	assert_true(fd >= 0);
	for (uint64_t off = 0; off < size; off += sizeof(buf)) {
		size_t n = (size_t)MIN((uint64_t)sizeof(buf), size - off);

		tu_fill(buf, n, tag, off);
		assert_int_equal(pwrite(fd, buf, n, (off_t)off), (ssize_t)n);
	}
	close(fd);
}

static bool path_exists(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0;
}

static void test_spec_open_mem(void **state)
{
	char buf[4096], back[4096];
	struct disk *d = open_ok("mem:1M", false, NULL);

	(void)state;
	assert_int_equal(disk_sector_count(d), 2048);
	assert_int_equal(disk_sector_size(d), 512);
	assert_false(disk_get_info(d)->read_only);
	assert_int_equal(layered_disk_layer_count(d), 1);
	tu_fill(buf, sizeof(buf), 1, 0);
	assert_int_equal(disk_sync_write(d, 8, buf, sizeof(buf), 0), DISK_OK);
	assert_int_equal(disk_sync_read(d, 8, back, sizeof(back)), DISK_OK);
	assert_memory_equal(buf, back, sizeof(buf));
	disk_unref(d);

	d = open_ok("mem:1M,ro", false, NULL);
	assert_true(disk_get_info(d)->read_only);
	disk_unref(d);
	d = open_ok("mem:64K", true, NULL);
	assert_true(disk_get_info(d)->read_only);
	assert_int_equal(disk_sector_count(d), 128);
	disk_unref(d);
}

static void test_spec_open_memdiff_mem(void **state)
{
	struct disk *d = open_ok("memdiff:mem:1M", false, NULL);

	(void)state;
	assert_int_equal(layered_disk_layer_count(d), 2);
	assert_int_equal(disk_sector_count(d), 2048);
	assert_int_equal(disk_sector_size(d), 512);
	assert_false(disk_get_info(d)->read_only);
	disk_unref(d);

	d = open_ok("memdiff:memdiff:mem:2M", false, NULL);
	assert_int_equal(layered_disk_layer_count(d), 3);
	assert_int_equal(disk_sector_count(d), 4096);
	disk_unref(d);
}

static void test_spec_open_file_create(void **state)
{
	char text[512];
	const char *path = tu_path("create.img");
	struct disk *d;
	struct stat st;

	(void)state;
	unlink(path);
	snprintf(text, sizeof(text), "file:%s;create=1M", path);
	d = open_ok(text, false, NULL);
	/* A single plain disk is used directly. */
	assert_int_equal(layered_disk_layer_count(d), 0);
	assert_int_equal(disk_sector_count(d), 2048);
	assert_false(disk_get_info(d)->read_only);
	disk_unref(d);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_size, M);

	/* A bare path opens the same file, writable unless asked. */
	d = open_ok(path, false, NULL);
	assert_int_equal(layered_disk_layer_count(d), 0);
	assert_int_equal(disk_sector_count(d), 2048);
	assert_false(disk_get_info(d)->read_only);
	disk_unref(d);
	snprintf(text, sizeof(text), "%s,ro", path);
	d = open_ok(text, false, NULL);
	assert_true(disk_get_info(d)->read_only);
	disk_unref(d);
	d = open_ok(path, true, NULL);
	assert_true(disk_get_info(d)->read_only);
	disk_unref(d);
	unlink(path);

	/* create= with read-only: created writable, then opened read-only. */
	snprintf(text, sizeof(text), "file:%s;create=64K,ro", path);
	d = open_ok(text, false, NULL);
	assert_true(disk_get_info(d)->read_only);
	assert_int_equal(disk_sector_count(d), 128);
	disk_unref(d);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_size, 64 * K);
	unlink(path);
}

static void test_spec_open_memdiff_file_ro_flow(void **state)
{
	char text[512], buf[4096], back[4096];
	const char *path = tu_path("base.img");
	struct disk *d, *inner;
	struct layer *l;

	(void)state;
	make_file(path, M, 7);
	snprintf(text, sizeof(text), "memdiff:file:%s", path);
	d = open_ok(text, false, NULL);
	assert_int_equal(layered_disk_layer_count(d), 2);
	assert_int_equal(disk_sector_count(d), 2048);
	/* The layered disk is writable... */
	assert_false(disk_get_info(d)->read_only);
	/* ...its inner file disk was opened read-only. */
	l = layered_disk_layer(d, 1);
	assert_non_null(l);
	assert_non_null(layer_get_ops(l)->inner_disk);
	inner = layer_get_ops(l)->inner_disk(l);
	assert_non_null(inner);
	assert_true(disk_get_info(inner)->read_only);

	/* Reads see the base; writes stay in RAM. */
	assert_int_equal(disk_sync_read(d, 16, back, sizeof(back)), DISK_OK);
	assert_int_equal(tu_check(back, sizeof(back), 7, 16 * 512), -1);
	tu_fill(buf, sizeof(buf), 9, 16 * 512);
	assert_int_equal(disk_sync_write(d, 16, buf, sizeof(buf), 0), DISK_OK);
	assert_int_equal(disk_sync_read(d, 16, back, sizeof(back)), DISK_OK);
	assert_memory_equal(buf, back, sizeof(buf));
	assert_int_equal(disk_sync_read(inner, 16, back, sizeof(back)), DISK_OK);
	assert_int_equal(tu_check(back, sizeof(back), 7, 16 * 512), -1);
	disk_unref(d);

	/* create= under memdiff: the file is created, its disk read-only. */
	unlink(path);
	snprintf(text, sizeof(text), "memdiff:file:%s;create=1M", path);
	d = open_ok(text, false, NULL);
	assert_false(disk_get_info(d)->read_only);
	assert_int_equal(disk_sector_count(d), 2048);
	l = layered_disk_layer(d, 1);
	assert_true(disk_get_info(layer_get_ops(l)->inner_disk(l))->read_only);
	disk_unref(d);
	assert_true(path_exists(path));
	make_file(path, M, 7);

	/* ,ro makes the layered disk read-only too. */
	snprintf(text, sizeof(text), "memdiff:%s,ro", path);
	d = open_ok(text, false, NULL);
	assert_true(disk_get_info(d)->read_only);
	l = layered_disk_layer(d, 1);
	assert_true(disk_get_info(layer_get_ops(l)->inner_disk(l))->read_only);
	disk_unref(d);
	unlink(path);
}

/* True (with a note in the TAP output) when this build has no @kind
 * (configure --without-*): the test then has nothing to check, and
 * test_spec_registry_unavailable covers that case. cmocka's skip() would
 * print "not ok ... # SKIP", which the TAP driver counts as a failure. */
static bool kind_missing(const char *kind)
{
	const struct spec_kind *k = spec_kind_find(kind);

	if (spec_kind_available(k))
		return false;
	print_message("# %s: not in this build (%s), nothing to check\n", kind, k->unavailable);
	return true;
}

static void test_spec_open_unavailable(void **state)
{
	struct spec_ctx ctx = { .cache_dir = tu_tmpdir() };

	(void)state;
	if (kind_missing("autocache"))
		return;
	/* autocache is built in, but a RAM disk has no disk id to key it. */
	open_fails("memdiff:autocache::mem:1M", false, &ctx, -EINVAL, "disk ID");
	/* Parse errors come out of spec_open_str unchanged. */
	open_fails("mem:invalid", false, NULL, -EINVAL, "'invalid'");
}

static void test_spec_open_autocache_needs_dir(void **state)
{
	struct spec_ctx ctx = { .cache_dir = NULL };
	const char *dir = NULL;
	char err[256];
	char *saved = getenv("DISKSTACK_AUTOCACHE_DIR");

	(void)state;
	if (kind_missing("autocache"))
		return;
	saved = saved ? strdup(saved) : NULL;
	unsetenv("DISKSTACK_AUTOCACHE_DIR");
	/* Parsing does not need it. */
	spec_free(parse_ok("autocache::mem:1M"));
	open_fails("memdiff:autocache::mem:1M", false, &ctx, -EINVAL, "DISKSTACK_AUTOCACHE_DIR");
	open_fails("autocache:k:mem:1M,ro", false, NULL, -EINVAL, "autocache:k:mem:1M: ");
	assert_int_equal(sqlitelayer_autocache_dir(NULL, &dir, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "DISKSTACK_AUTOCACHE_DIR"));

	setenv("DISKSTACK_AUTOCACHE_DIR", "/tmp/from-env", 1);
	assert_int_equal(sqlitelayer_autocache_dir(&ctx, &dir, err, sizeof(err)), 0);
	assert_string_equal(dir, "/tmp/from-env");
	ctx.cache_dir = "/tmp/from-ctx";
	assert_int_equal(sqlitelayer_autocache_dir(&ctx, &dir, err, sizeof(err)), 0);
	assert_string_equal(dir, "/tmp/from-ctx");
	if (saved)
		setenv("DISKSTACK_AUTOCACHE_DIR", saved, 1);
	else
		unsetenv("DISKSTACK_AUTOCACHE_DIR");
	free(saved);
}

static void test_spec_open_missing_file(void **state)
{
	char text[512], want[512];
	const char *path = tu_path("missing.img");

	(void)state;
	unlink(path);
	snprintf(text, sizeof(text), "file:%s", path);
	snprintf(want, sizeof(want), "file:%s: ", path);
	open_fails(text, false, NULL, -ENOENT, want);
	assert_false(path_exists(path));
	open_fails(text, true, NULL, -ENOENT, path);
	assert_false(path_exists(path));

	/* Bare, ;direct, and under memdiff (the failing node is quoted). */
	open_fails(path, false, NULL, -ENOENT, path);
	snprintf(text, sizeof(text), "%s;direct", path);
	open_fails(text, false, NULL, -ENOENT, path);
	snprintf(text, sizeof(text), "memdiff:memdiff:file:%s", path);
	open_fails(text, false, NULL, -ENOENT, want);
	assert_false(path_exists(path));
}

static void test_spec_open_extensions(void **state)
{
	char text[512];
	const char *iso = tu_path("cd.iso");
	struct disk *d;

	(void)state;
	/* .vhd goes to the fixed-VHD backend (test-vhd1.c has the rest). */
	unlink(tu_path("d.vhd"));
	snprintf(text, sizeof(text), "file:%s", tu_path("d.vhd"));
	open_fails(text, false, NULL, -ENOENT, "No such file");
	snprintf(text, sizeof(text), "%s;create=1M", tu_path("d.VHD"));
	d = open_ok(text, true, NULL);
	assert_string_equal(disk_get_info(d)->type, "vhd1");
	assert_true(disk_get_info(d)->read_only);
	assert_int_equal(disk_sector_count(d), 2048);
	disk_unref(d);
	snprintf(text, sizeof(text), "%s;direct", tu_path("d.VHD"));
	open_fails(text, false, NULL, -EINVAL, "direct");
	unlink(tu_path("d.VHD"));
	snprintf(text, sizeof(text), "%s,ro", tu_path("d.vhdx"));
	open_fails(text, false, NULL, -ENOTSUP, "VHDX");

	make_file(iso, 64 * K, 3);
	open_fails(iso, false, NULL, -EROFS, "iso file cannot be opened as read/write");
	snprintf(text, sizeof(text), "%s;create=1M", iso);
	open_fails(text, false, NULL, -EINVAL, "create");
	snprintf(text, sizeof(text), "%s,ro", iso);
	d = open_ok(text, false, NULL);
	assert_true(disk_get_info(d)->read_only);
	assert_int_equal(disk_sector_count(d), 128);
	disk_unref(d);
	/* Under memdiff the ISO is opened read-only and the disk is writable. */
	snprintf(text, sizeof(text), "memdiff:%s", iso);
	d = open_ok(text, false, NULL);
	assert_false(disk_get_info(d)->read_only);
	disk_unref(d);
	unlink(iso);
}

/* ---- the registry as data (kind.h) ---------------------------------------------- */

/* Every entry of the table is complete: what the parser, --help and the
 * resolver read is there, and consistent. */
static void test_spec_registry_complete(void **state)
{
	unsigned bare = 0;

	(void)state;
	for (const struct spec_kind *const *kp = spec_kinds; *kp; kp++) {
		const struct spec_kind *k = *kp;
		bool available = k->open_layer || k->open_disk;

		assert_non_null(k->name);
		assert_true(k->name[0] != '\0');
		assert_null(strpbrk(k->name, ":/;,+"));
		for (const struct spec_kind *const *e = spec_kinds; e != kp; e++)
			assert_string_not_equal((*e)->name, k->name);
		/* A one-line usage that starts with "<name>:", and a summary. */
		assert_non_null(k->usage);
		assert_int_equal(strncmp(k->usage, k->name, strlen(k->name)), 0);
		assert_int_equal(k->usage[strlen(k->name)], ':');
		assert_null(strchr(k->usage, '\n'));
		assert_non_null(k->summary);
		assert_true(k->summary[0] != '\0');
		/* One open function, or none and the reason. */
		assert_false(k->open_layer && k->open_disk);
		assert_int_equal(available, k->unavailable == NULL);
		assert_int_equal(spec_kind_available(k), available);
		if (k->read_cache || k->inner_forced_ro)
			assert_true(k->open_layer || !available);
		/* The syntax: something after "<name>:", described fully. */
		assert_true(k->nargs <= SPEC_MAX_ARGS);
		assert_true(k->nargs > 0 || k->tail != SPEC_TAIL_NONE);
		assert_true(k->tail == SPEC_TAIL_NONE || k->tail == SPEC_TAIL_INNER ||
			    k->tail == SPEC_TAIL_MEMBERS);
		for (unsigned i = 0; i < k->nargs; i++) {
			const struct spec_arg *a = &k->args[i];
			bool final = i + 1 == k->nargs && k->tail == SPEC_TAIL_NONE;

			assert_true(a->type <= SPEC_ARG_URI);
			assert_non_null(a->name);
			assert_true(a->field < sizeof(struct spec));
			if (!final)
				assert_non_null(a->missing_next);
			if (a->type == SPEC_ARG_WORD)
				assert_true(a->words && a->words[0]);
			if (a->type == SPEC_ARG_TIMES)
				assert_int_not_equal(a->field2, a->field);
			for (const struct spec_option *o = a->options; o && o->name; o++)
				assert_true(o->type == SPEC_OPTION_FLAG ||
					    (o->type == SPEC_OPTION_SIZE && o->value_name));
		}
		if (k->bare_path) {
			bare++;
			assert_int_equal(k->nargs, 1);
			assert_int_equal(k->args[0].type, SPEC_ARG_PATH);
		}
	}
	/* Bare paths belong to exactly one kind. */
	assert_int_equal(bare, 1);
}

/* A kind is the `const struct spec_kind` its own file declares: the table
 * holds those objects, and lookups find them. */
extern const struct spec_kind ramlayer_kind_mem, ramlayer_kind_memdiff, filedisk_kind_file,
	sqlitelayer_kind_sql, sqlitelayer_kind_sqldiff, sqlitelayer_kind_autocache,
	blob_kind_blob, crypt_kind_crypt, prwrap_kind_prwrap, delay_kind_delay,
	error_kind_error, striped_kind_striped, nbdclient_kind_nbd;

static void test_spec_registry_declared(void **state)
{
	static const struct spec_kind *const declared[] = {
		&ramlayer_kind_mem, &ramlayer_kind_memdiff, &filedisk_kind_file,
		&sqlitelayer_kind_sql, &sqlitelayer_kind_sqldiff, &sqlitelayer_kind_autocache,
		&blob_kind_blob, &crypt_kind_crypt, &prwrap_kind_prwrap, &delay_kind_delay,
		&error_kind_error, &striped_kind_striped, &nbdclient_kind_nbd,
	};
	struct spec *s;
	unsigned n = 0;

	(void)state;
	for (const struct spec_kind *const *kp = spec_kinds; *kp; kp++)
		n++;
	assert_int_equal(n, ARRAY_SIZE(declared));
	for (size_t i = 0; i < ARRAY_SIZE(declared); i++) {
		assert_ptr_equal(spec_kinds[i], declared[i]);
		assert_ptr_equal(spec_kind_find(declared[i]->name), declared[i]);
	}
	/* The parser picks the declared object for a node. */
	s = parse_ok("crypt:xts-aes-256:k:striped:4K:mem:1M+disk.img");
	assert_ptr_equal(s->kind, &crypt_kind_crypt);
	assert_ptr_equal(s->inner->kind, &striped_kind_striped);
	assert_ptr_equal(s->inner->members[0]->kind, &ramlayer_kind_mem);
	assert_ptr_equal(s->inner->members[1]->kind, &filedisk_kind_file);
	spec_free(s);
}

/* Kinds left out of this build (configure --without-sqlite, --without-curl,
 * --without-libnbd) still parse, are listed with the reason, and are
 * refused by name with it when opened, before anything is opened. */
static void test_spec_registry_unavailable(void **state)
{
	static const struct { const char *kind, *text; } cases[] = {
		{ "sql", "sql:/nonexistent/x.dbhd" },
		{ "sqldiff", "sqldiff:/nonexistent/d.dbhd:mem:1M" },
		{ "autocache", "autocache:k:mem:1M" },
		{ "blob", "blob:flat:http://127.0.0.1:9/x" },
		{ "nbd", "nbd:nbd+unix:///e?socket=/nonexistent/s" },
	};
	struct spec_ctx ctx = { .cache_dir = tu_tmpdir() };
	char *buf = NULL;
	size_t blen = 0;
	FILE *fp;

	(void)state;
	fp = open_memstream(&buf, &blen);
	assert_non_null(fp);
	spec_print_usage(fp, "");
	fclose(fp);
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		const struct spec_kind *k = spec_kind_find(cases[i].kind);
		char err[1024] = "", want[256];
		struct disk *d = NULL;
		struct spec *s = parse_ok(cases[i].text);
		int r;

		assert_ptr_equal(s->kind, k);
		if (spec_kind_available(k)) {
			assert_null(k->unavailable);
			spec_free(s);
			continue;
		}
		r = spec_open(s, true, &ctx, &d, err, sizeof(err));
		spec_free(s);
		assert_int_equal(r, -ENOTSUP);
		assert_null(d);
		snprintf(want, sizeof(want), "%s: %s: this diskstack was %s", cases[i].text,
			 k->name, k->unavailable);
		assert_string_equal(err, want);
		snprintf(want, sizeof(want), "(not available in this build: %s)", k->unavailable);
		assert_non_null(strstr(buf, want));
	}
	free(buf);
}

/* ,dvd: a DVD LU for SCSI frontends; read-only, never created. */
static void test_spec_dvd_option(void **state)
{
	struct spec *s = parse_ok("file:my.iso,dvd");

	(void)state;
	assert_kind(s, "file");
	assert_string_equal(s->path, "my.iso");
	assert_true(s->dvd);
	assert_true(s->ro);
	assert_node_text(s, "file:my.iso");
	spec_free(s);
	/* With ,ro in either order, a bare path, a stack below. */
	s = parse_ok("file:my.iso,ro,dvd");
	assert_true(s->dvd && s->ro);
	spec_free(s);
	s = parse_ok("my.iso,dvd,ro=on");
	assert_true(s->dvd && s->ro && s->bare);
	spec_free(s);
	s = parse_ok("delay:5:blob:flat:https://h/x.iso,dvd");
	assert_true(s->dvd && s->ro);
	assert_false(s->inner->dvd);
	spec_free(s);
	s = parse_ok("file:my.iso,ro");
	assert_false(s->dvd);
	spec_free(s);

	assert_true(spec_is_dvd("file:my.iso,dvd"));
	assert_true(spec_is_dvd("/abs/my.iso,ro,dvd"));
	assert_false(spec_is_dvd("file:my.iso,ro"));
	assert_false(spec_is_dvd("file:my.iso"));
	assert_false(spec_is_dvd("file:my.iso,dvd,dvd"));
	assert_false(spec_is_dvd(""));

	parse_fails("file:my.iso,dvd,dvd", "duplicate option", "'dvd' at offset 16", NULL);
	parse_fails("file:my.iso,ro=off,dvd", "'dvd' cannot be combined with", "'ro=off'",
		    "read-only", NULL);
	parse_fails("file:my.iso,dvd,ro=off", "'ro=off'", NULL);
	parse_fails("file:new.iso;create=1M,dvd", "creating spec", "'file:new.iso;create=1M'",
		    "drop ';create'", NULL);
	parse_fails("memdiff:sqldiff:d.dbhd;create:x.iso,dvd", "creating spec",
		    "'sqldiff:d.dbhd;create:x.iso' at offset 8", NULL);
	parse_fails("striped:64K:a.iso+b.img;create=1M,dvd", "'b.img;create=1M'", NULL);
	parse_fails("file:my.iso,DVD", "unknown option", "'DVD'", NULL);
}

/* ,removable: a removable-medium SCSI disk; any spec, combines with ,ro. */
static void test_spec_removable_option(void **state)
{
	(void)state;
	assert_true(spec_is_removable("mem:64M,removable"));
	assert_true(spec_is_removable("file:d.img,ro,removable"));
	assert_false(spec_is_removable("mem:64M"));
	assert_false(spec_is_removable("mem:64M,removable,removable"));
	parse_fails("mem:1M,removable,removable", "duplicate option", NULL);
}

/* Where a spec's writes persist: the file under decorators, the top
 * SQLite diff layer; nothing for RAM, remote or striped disks. */
/* spec_map_files visits the file names (file:, sql:, sqldiff:, the crypt
 * key file, striped members), never URLs or the autocache key, and its
 * replacements are what spec_free frees. */
static int map_prefix(char **path, void *arg)
{
	char *n = NULL;

	if (asprintf(&n, "/abs/%s", *path) < 0)
		return -ENOMEM;
	strcat((char *)arg, *path);
	strcat((char *)arg, " ");
	free(*path);
	*path = n;
	return 0;
}

static int map_fail(char **path, void *arg)
{
	(*(int *)arg)++;
	return -EACCES;
}

static void test_spec_map_files(void **state)
{
	struct spec *s = NULL;
	char seen[256] = "";
	int calls = 0;

	(void)state;
	assert_int_equal(spec_parse("crypt:xts-aes-256:k.bin:sqldiff:d.dbhd:striped:64K:"
				    "a.img+file:b.img+nbd:nbd://h/x+sql:c.dbhd",
				    &s, NULL, 0), 0);
	assert_int_equal(spec_map_files(s, map_prefix, seen), 0);
	assert_string_equal(seen, "k.bin d.dbhd a.img b.img c.dbhd ");
	assert_string_equal(s->path, "/abs/k.bin");
	assert_string_equal(s->inner->path, "/abs/d.dbhd");
	assert_string_equal(s->inner->inner->members[2]->path, "nbd://h/x");
	spec_free(s);

	assert_int_equal(spec_parse("autocache:key:blob:flat:http://h/d", &s, NULL, 0), 0);
	seen[0] = '\0';
	assert_int_equal(spec_map_files(s, map_prefix, seen), 0);
	assert_string_equal(seen, "");
	spec_free(s);

	assert_int_equal(spec_parse("memdiff:file:x.img", &s, NULL, 0), 0);
	assert_int_equal(spec_map_files(s, map_fail, &calls), -EACCES);
	assert_int_equal(calls, 1);
	spec_free(s);
}

static void test_spec_write_path(void **state)
{
	char p[64];

	(void)state;
	assert_int_equal(spec_write_path("file:/d/a.img", p, sizeof(p)), 0);
	assert_string_equal(p, "/d/a.img");
	assert_int_equal(spec_write_path("a.img,removable", p, sizeof(p)), 0);
	assert_string_equal(p, "a.img");
	assert_int_equal(spec_write_path("delay:5:prwrap:sql:/d/b.dbhd", p, sizeof(p)), 0);
	assert_string_equal(p, "/d/b.dbhd");
	assert_int_equal(spec_write_path("sqldiff:/d/top.dbhd:file:/d/base.img", p, sizeof(p)), 0);
	assert_string_equal(p, "/d/top.dbhd");
	assert_int_equal(spec_write_path("memdiff:file:/d/a.img", p, sizeof(p)), -ENOENT);
	assert_int_equal(spec_write_path("mem:1M", p, sizeof(p)), -ENOENT);
	assert_int_equal(spec_write_path("striped:64K:a.img+b.img", p, sizeof(p)), -ENOENT);
	assert_int_equal(spec_write_path("nbd:nbd://h/x", p, sizeof(p)), -ENOENT);
	assert_int_equal(spec_write_path("autocache:k:crypt:xts-aes-256:/d/key:sql:/d/c.dbhd", p,
					 sizeof(p)), 0);
	assert_string_equal(p, "/d/c.dbhd");
	assert_int_equal(spec_write_path("prwrap:memdiff:sql:/d/c.dbhd", p, sizeof(p)), -ENOENT);
	assert_int_equal(spec_write_path("mem:", p, sizeof(p)), -EINVAL);
	assert_int_equal(spec_write_path("file:/a/very/long/path/that/does/not/fit/in/the/buffer",
					 p, 16), -ENAMETOOLONG);
}

/* spec_write_path takes a kind's word for where its writes persist: a
 * kind that says "in my path" has a PATH argument filling spec->path. */
static void test_spec_kinds_writes_declared(void **state)
{
	(void)state;
	for (const struct spec_kind *const *kp = spec_kinds; *kp; kp++) {
		const struct spec_kind *k = *kp;
		bool found = false;

		if (k->writes != SPEC_WRITES_PATH)
			continue;
		for (unsigned i = 0; i < k->nargs; i++)
			if (k->args[i].type == SPEC_ARG_PATH &&
			    k->args[i].field == SPEC_FIELD(path))
				found = true;
		assert_true(found);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_spec_example_mem),
		cmocka_unit_test(test_spec_example_memdiff),
		cmocka_unit_test(test_spec_example_file),
		cmocka_unit_test(test_spec_example_sql),
		cmocka_unit_test(test_spec_example_autocache),
		cmocka_unit_test(test_spec_example_crypt_prwrap),
		cmocka_unit_test(test_spec_reference_errors),
		cmocka_unit_test(test_spec_more_errors),
		cmocka_unit_test(test_spec_bare_path),
		cmocka_unit_test(test_spec_ro_option),
		cmocka_unit_test(test_spec_dvd_option),
		cmocka_unit_test(test_spec_removable_option),
		cmocka_unit_test(test_spec_write_path),
		cmocka_unit_test(test_spec_kinds_writes_declared),
		cmocka_unit_test(test_spec_parse_size),
		cmocka_unit_test(test_spec_format_size),
		cmocka_unit_test(test_spec_delay),
		cmocka_unit_test(test_spec_striped),
		cmocka_unit_test(test_spec_nbd),
		cmocka_unit_test(test_spec_depth_limit),
		cmocka_unit_test(test_spec_null_err),
		cmocka_unit_test(test_spec_registry),
		cmocka_unit_test(test_spec_registry_complete),
		cmocka_unit_test(test_spec_registry_declared),
		cmocka_unit_test_setup_teardown(test_spec_registry_unavailable,
						tu_reactor_setup, tu_reactor_teardown),
		cmocka_unit_test_setup_teardown(test_spec_open_mem,
						tu_reactor_setup, tu_reactor_teardown),
		cmocka_unit_test_setup_teardown(test_spec_open_memdiff_mem,
						tu_reactor_setup, tu_reactor_teardown),
		cmocka_unit_test_setup_teardown(test_spec_open_file_create,
						tu_reactor_setup, tu_reactor_teardown),
		cmocka_unit_test_setup_teardown(test_spec_open_memdiff_file_ro_flow,
						tu_reactor_setup, tu_reactor_teardown),
		cmocka_unit_test(test_spec_open_unavailable),
		cmocka_unit_test(test_spec_open_autocache_needs_dir),
		cmocka_unit_test(test_spec_map_files),
		cmocka_unit_test_setup_teardown(test_spec_open_missing_file,
						tu_reactor_setup, tu_reactor_teardown),
		cmocka_unit_test_setup_teardown(test_spec_open_extensions,
						tu_reactor_setup, tu_reactor_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
