/* SPDX-License-Identifier: MIT */
/*
 * spec.c: disk specs — the parser of the command-line grammar
 * (reference/openvmm-disk-stack.md §6.2, §6.6; DESIGN.md §6), the registry
 * of disk kinds, and the resolver that turns a parsed spec into a disk
 * (§6.2 "Nesting", §6.3, §3.9).
 *
 * Notes on the design
 * -------------------
 * - The parser is a recursive descent over one copy of the text, owned by
 *   the root node. Every node records its extent in that copy, so errors,
 *   at parse time and at open time, can quote the part that failed and give
 *   its offset. Nesting is bounded (SPEC_MAX_DEPTH) so a hostile spec
 *   cannot exhaust the stack.
 * - The kind is the text before the first ':' of a node. A node with no ':'
 *   at all, or starting with '/', is a bare path (a file node). Each kind's
 *   argument grammar is selected by its shape in the registry; the
 *   registry (spec_kinds[]) is the only list of kinds: the parser, --help
 *   (spec_print_usage) and the info command read it.
 * - The resolver walks the node chain top-down with a running read-only
 *   flag. Layer kinds push one layer each into a single list and continue
 *   with their inner node; a disk kind ends the list. A list holding just
 *   one plain disk is that disk; anything else becomes a layered disk, with
 *   plain disks wrapped as disk-as-layer. Nothing here is on the I/O path.
 * - Kinds whose open function has not landed parse fully and are refused
 *   by name when opened.
 */
#include "config.h"

#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/compiler.h"
#include "storage/backends/blob.h"
#include "common/log.h"
#include "storage/decorators/crypt.h"
#include "storage/decorators/delay.h"
#include "storage/backends/filedisk.h"
#include "storage/backends/nbdclient.h"
#include "storage/decorators/prwrap.h"
#include "storage/spec.h"
#include "storage/decorators/striped.h"
#include "storage/backends/url.h"
#include "storage/layers/sqlitelayer.h"
#include "storage/backends/vhd1.h"

/* Deepest nesting of kinds accepted (memdiff:memdiff:...). */
#define SPEC_MAX_DEPTH 64

/* Specs never make a layer write-through (§6.2 "Nesting"). */
#define SPEC_WRITE_THROUGH false

/* Room for messages built internally before they are copied out. */
#define SPEC_ERR_MAX 1024

static int spec_open_mem(const struct spec *s, bool read_only, const struct spec_ctx *ctx,
			 struct layer **out, bool *read_cache, char *err, size_t errlen);
static int spec_open_memdiff(const struct spec *s, bool read_only, const struct spec_ctx *ctx,
			     struct layer **out, bool *read_cache, char *err, size_t errlen);
static int spec_open_file(const struct spec *s, bool read_only, const struct spec_ctx *ctx,
			  struct disk **out, char *err, size_t errlen);

/*
 * The registry. Adding a kind: one line here (name, shape, syntax, open
 * function, rules, summary) and its open function in its own file.
 */
const struct spec_kind spec_kinds[] = {
	{ .name = "mem", .shape = SPEC_SHAPE_SIZE, .usage = "mem:<size>",
	  .open_layer = spec_open_mem,
	  .summary = "RAM disk of <size> bytes, 512-byte sectors; contents are lost at exit" },
	{ .name = "memdiff", .shape = SPEC_SHAPE_INNER, .usage = "memdiff:<spec>",
	  .open_layer = spec_open_memdiff, .inner_forced_ro = true,
	  .summary = "RAM diff layer over <spec> (opened read-only); writes are lost at exit" },
	{ .name = "file", .shape = SPEC_SHAPE_PATH, .usage = "file:<path>[;direct][;create=<size>]",
	  .open_disk = spec_open_file,
	  .summary = "raw file or block device; create= creates or truncates it" },
	{ .name = "sql", .shape = SPEC_SHAPE_SQL, .usage = "sql:<path>[;create=<size>]",
	  .open_layer = sqlitelayer_spec_open_sql,
	  .summary = "SQLite disk (.dbhd); create= formats a new one" },
	{ .name = "sqldiff", .shape = SPEC_SHAPE_SQLDIFF, .usage = "sqldiff:<path>[;create]:<spec>",
	  .open_layer = sqlitelayer_spec_open_sqldiff, .inner_forced_ro = true,
	  .summary = "SQLite diff layer (.dbhd) over <spec> (opened read-only)" },
	{ .name = "autocache", .shape = SPEC_SHAPE_KEY_INNER, .usage = "autocache:[<key>]:<spec>",
	  .open_layer = sqlitelayer_spec_open_autocache, .read_cache = true,
	  .summary = "SQLite read cache over <spec> in $DISKSTACK_AUTOCACHE_DIR; no key = the disk id" },
	{ .name = "blob", .shape = SPEC_SHAPE_BLOB, .usage = "blob:flat|vhd1:<url>",
	  .open_disk = blob_spec_open,
	  .summary = "read-only HTTP(S) blob, raw (flat) or fixed VHD (vhd1)" },
	{ .name = "crypt", .shape = SPEC_SHAPE_CRYPT, .usage = "crypt:xts-aes-256:<keyfile>:<spec>",
	  .open_disk = crypt_spec_open,
	  .summary = "XTS-AES-256 encryption of <spec>; <keyfile> holds 64 raw bytes" },
	{ .name = "prwrap", .shape = SPEC_SHAPE_INNER, .usage = "prwrap:<spec>",
	  .open_disk = prwrap_spec_open,
	  .summary = "persistent-reservation emulation over <spec>" },
	{ .name = "delay", .shape = SPEC_SHAPE_DELAY, .usage = "delay:<time>[/<time>]:<spec>",
	  .open_disk = delay_spec_open,
	  .summary = "delays reads[/writes] of <spec>; time in ms, or with a 'us' suffix" },
	{ .name = "striped", .shape = SPEC_SHAPE_STRIPED, .usage = "striped:<chunk>:<spec>+<spec>...",
	  .open_disk = striped_spec_open,
	  .summary = "stripes over the member disks in <chunk>-byte chunks" },
	{ .name = "nbd", .shape = SPEC_SHAPE_URI, .usage = "nbd:<uri>",
	  .open_disk = nbdclient_spec_open,
	  .summary = "remote NBD export (nbd://, nbds://, nbd+unix://, nbds+unix:// URIs)" },
	{ .name = NULL },
};

const struct spec_kind *spec_kind_find(const char *name)
{
	for (const struct spec_kind *k = spec_kinds; k->name; k++)
		if (strcmp(k->name, name) == 0)
			return k;
	return NULL;
}

/* Same as spec_kind_find for a counted string. */
static const struct spec_kind *spec_kind_findn(const char *name, size_t len)
{
	for (const struct spec_kind *k = spec_kinds; k->name; k++)
		if (strlen(k->name) == len && memcmp(k->name, name, len) == 0)
			return k;
	return NULL;
}

bool spec_kind_available(const struct spec_kind *k)
{
	return k->open_layer || k->open_disk;
}

void spec_print_usage(FILE *fp, const char *indent)
{
	if (!indent)
		indent = "";
	for (const struct spec_kind *k = spec_kinds; k->name; k++)
		fprintf(fp, "%s%-38s %s%s\n", indent, k->usage, k->summary,
			spec_kind_available(k) ? "" : " (not available in this build)");
	fprintf(fp, "%s%-38s %s\n", indent, "<path>[;direct][;create=<size>]",
		"same as file:<path> (no ':' in it, or an absolute path)");
}

/* ---- messages ------------------------------------------------------------ */

/* ---- sizes and times ------------------------------------------------------ */

int spec_parse_size(const char *s, size_t len, uint64_t *out)
{
	uint64_t v = 0, mult = 1;
	size_t i = 0;

	if (!s || len == 0)
		return -EINVAL;
	while (i < len && s[i] >= '0' && s[i] <= '9') {
		if (MUL_OVERFLOW(v, 10, &v) || ADD_OVERFLOW(v, (uint64_t)(s[i] - '0'), &v))
			return -ERANGE;
		i++;
	}
	if (i == 0)
		return -EINVAL;
	if (i < len) {
		switch (s[i]) {
		case 'K': mult = 1ull << 10; i++; break;
		case 'M': mult = 1ull << 20; i++; break;
		case 'G': mult = 1ull << 30; i++; break;
		case 'T': mult = 1ull << 40; i++; break;
		default: break;
		}
	}
	if (i < len && s[i] == 'B')
		i++;
	if (i != len)
		return -EINVAL;
	if (MUL_OVERFLOW(v, mult, &v))
		return -ERANGE;
	*out = v;
	return 0;
}

void spec_format_size(uint64_t bytes, char *buf, size_t len)
{
	static const char suffix[] = "TGMK";

	if (!buf || len == 0)
		return;
	for (int i = 0; i < 4; i++) {
		unsigned shift = (unsigned)(40 - 10 * i);
		uint64_t unit = 1ull << shift;

		if (bytes != 0 && bytes % unit == 0) {
			snprintf(buf, len, "%llu%c", (unsigned long long)(bytes >> shift), suffix[i]);
			return;
		}
	}
	snprintf(buf, len, "%llu", (unsigned long long)bytes);
}

/* A delay: digits, then "ms" (default) or "us". Returns 0, -EINVAL or
 * -ERANGE. */
static int spec_parse_time_us(const char *s, size_t len, uint64_t *out_us)
{
	uint64_t v = 0, mult = 1000;
	size_t i = 0;

	while (i < len && s[i] >= '0' && s[i] <= '9') {
		if (MUL_OVERFLOW(v, 10, &v) || ADD_OVERFLOW(v, (uint64_t)(s[i] - '0'), &v))
			return -ERANGE;
		i++;
	}
	if (i == 0)
		return -EINVAL;
	if (len - i == 2 && memcmp(s + i, "ms", 2) == 0)
		mult = 1000;
	else if (len - i == 2 && memcmp(s + i, "us", 2) == 0)
		mult = 1;
	else if (i != len)
		return -EINVAL;
	if (MUL_OVERFLOW(v, mult, &v))
		return -ERANGE;
	*out_us = v;
	return 0;
}

/* ---- the parser ------------------------------------------------------------ */

struct spec_parser {
	const char *text;         /* the root's copy */
	char *err;
	size_t errlen;
};

/*
 * Reports an error about the part [off, off + len) of the text:
 *   "<what> '<part>' at offset <off> of '<text>'[; <hint>]"
 * (without the quoted part when it is empty). Returns -EINVAL.
 */
static int PRINTF_FMT(5, 6) spec_perr(struct spec_parser *p, size_t off, size_t len,
				      const char *hint, const char *fmt, ...)
{
	char what[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	if (len > 0)
		(void)errbuf_printf(p->err, p->errlen, "%s '%.*s' at offset %zu of '%s'%s%s", what,
			  (int)len, p->text + off, off, p->text, hint ? "; " : "", hint ? hint : "");
	else
		(void)errbuf_printf(p->err, p->errlen, "%s at offset %zu of '%s'%s%s", what, off, p->text,
			  hint ? "; " : "", hint ? hint : "");
	return -EINVAL;
}

/* Position of @c in [off, end), or end. */
static size_t spec_find(const struct spec_parser *p, size_t off, size_t end, char c)
{
	const char *q = memchr(p->text + off, c, end - off);

	return q ? (size_t)(q - p->text) : end;
}

static bool spec_part_is(const struct spec_parser *p, size_t off, size_t len, const char *lit)
{
	return strlen(lit) == len && memcmp(p->text + off, lit, len) == 0;
}

static char *spec_dup(const struct spec_parser *p, size_t off, size_t len)
{
	return strndup(p->text + off, len);
}

static void spec_free_node(struct spec *s)
{
	if (!s)
		return;
	spec_free_node(s->inner);
	for (unsigned i = 0; i < s->nmembers; i++)
		spec_free_node(s->members[i]);
	free(s->members);
	free(s->path);
	free(s->arg);
	free(s);
}

void spec_free(struct spec *s)
{
	char *text;

	if (!s)
		return;
	text = (char *)s->text;
	spec_free_node(s);
	free(text);
}

static int spec_parse_node(struct spec_parser *p, size_t off, size_t len, unsigned depth,
			   struct spec **out);

/* A size argument of @kind at [off, off + len): must be a non-zero multiple
 * of 512 (mem, create=, striped chunks). */
static int spec_parse_sector_size(struct spec_parser *p, size_t off, size_t len,
				  const char *what, uint64_t *out)
{
	uint64_t v;
	int r;

	if (len == 0)
		return spec_perr(p, off, 0, "a size is expected (512, 64K, 1G, 1GB)",
				 "missing %s", what);
	r = spec_parse_size(p->text + off, len, &v);
	if (r == -ERANGE)
		return spec_perr(p, off, len, "sizes must fit in 64 bits", "%s too large", what);
	if (r < 0)
		return spec_perr(p, off, len,
				 "sizes are decimal digits with an optional K, M, G or T and B (512, 64K, 1G, 1GB)",
				 "bad %s", what);
	if (v == 0 || v % 512 != 0)
		return spec_perr(p, off, len, "it must be a non-zero multiple of 512",
				 "invalid %s", what);
	*out = v;
	return 0;
}

/* An inner spec at [off, off + len). */
static int spec_parse_inner(struct spec_parser *p, struct spec *s, size_t off, size_t len,
			    unsigned depth)
{
	if (len == 0)
		return spec_perr(p, off, 0, NULL, "missing inner disk spec after '%s:'", s->kind->name);
	return spec_parse_node(p, off, len, depth + 1, &s->inner);
}

/* file:<path>[;direct][;create=<size>] and sql:<path>[;create=<size>]. */
static int spec_parse_path_opts(struct spec_parser *p, struct spec *s, size_t off, size_t len)
{
	bool sql = s->kind->shape == SPEC_SHAPE_SQL;
	size_t end = off + len;
	size_t semi = spec_find(p, off, end, ';');
	bool seen_direct = false, seen_create = false;

	if (semi == off)
		return spec_perr(p, off, 0, NULL, "missing path after '%s:'", s->kind->name);
	s->path = spec_dup(p, off, semi - off);
	if (!s->path)
		return -ENOMEM;
	while (semi < end) {
		size_t o = semi + 1;
		size_t next = spec_find(p, o, end, ';');
		size_t olen = next - o;

		if (olen == 0)
			return spec_perr(p, semi, 1, NULL, "empty option");
		if (spec_part_is(p, o, olen, "direct")) {
			if (sql)
				return spec_perr(p, o, olen, "sql disks take only ;create=<size>",
						 "unsupported sql option");
			if (seen_direct)
				return spec_perr(p, o, olen, NULL, "duplicate option");
			seen_direct = true;
			s->direct = true;
		} else if (olen >= 7 && memcmp(p->text + o, "create=", 7) == 0) {
			int r;

			if (seen_create)
				return spec_perr(p, o, olen, NULL, "duplicate option");
			seen_create = true;
			if (olen == 7)
				return spec_perr(p, o, olen, "write create=<size>", "missing size in option");
			r = spec_parse_sector_size(p, o + 7, olen - 7, "create size", &s->size);
			if (r < 0)
				return r;
			s->create = true;
		} else if (spec_part_is(p, o, olen, "create")) {
			return spec_perr(p, o, olen, "write create=<size>", "option needs a size");
		} else {
			return spec_perr(p, o, olen,
					 sql ? "valid options: create=<size>"
					     : "valid options: direct, create=<size>",
					 "unknown %s option", s->kind->name);
		}
		semi = next;
	}
	return 0;
}

/* sqldiff:<path>[;create]:<spec> */
static int spec_parse_sqldiff(struct spec_parser *p, struct spec *s, size_t off, size_t len,
			      unsigned depth)
{
	size_t end = off + len;
	size_t colon = spec_find(p, off, end, ':');
	size_t semi;

	if (colon == end)
		return spec_perr(p, off, len, "write sqldiff:<path>[;create]:<spec>",
				 "missing ':<spec>' after the sqldiff path");
	semi = spec_find(p, off, colon, ';');
	if (semi == off)
		return spec_perr(p, off, 0, NULL, "missing path after 'sqldiff:'");
	s->path = spec_dup(p, off, semi - off);
	if (!s->path)
		return -ENOMEM;
	while (semi < colon) {
		size_t o = semi + 1;
		size_t next = spec_find(p, o, colon, ';');
		size_t olen = next - o;

		if (olen == 0)
			return spec_perr(p, semi, 1, NULL, "empty option");
		if (!spec_part_is(p, o, olen, "create"))
			return spec_perr(p, o, olen, "the only option is ;create",
					 "unknown sqldiff option");
		if (s->create)
			return spec_perr(p, o, olen, NULL, "duplicate option");
		s->create = true;
		semi = next;
	}
	return spec_parse_inner(p, s, colon + 1, end - colon - 1, depth);
}

/* autocache:[<key>]:<spec> */
static int spec_parse_autocache(struct spec_parser *p, struct spec *s, size_t off, size_t len,
				unsigned depth)
{
	size_t end = off + len;
	size_t colon = spec_find(p, off, end, ':');
	size_t klen = colon - off;

	if (colon == end)
		return spec_perr(p, off, len, "write autocache:[<key>]:<spec> (autocache::<spec> for no key)",
				 "missing ':<spec>' after the autocache key");
	if (klen > 0) {
		/* The key names a directory under the cache root. */
		if (memchr(p->text + off, '/', klen) || spec_part_is(p, off, klen, ".") ||
		    spec_part_is(p, off, klen, ".."))
			return spec_perr(p, off, klen, "a key cannot contain '/' or be '.' or '..'",
					 "invalid autocache key");
		s->path = spec_dup(p, off, klen);
		if (!s->path)
			return -ENOMEM;
	}
	return spec_parse_inner(p, s, colon + 1, end - colon - 1, depth);
}

/* An http:// or https:// URL with something after the scheme. */
static bool spec_is_http_url(const char *u, size_t len)
{
	if (len > 7 && strncasecmp(u, "http://", 7) == 0)
		return true;
	if (len > 8 && strncasecmp(u, "https://", 8) == 0)
		return true;
	return false;
}

/* blob:flat|vhd1:<url> */
static int spec_parse_blob(struct spec_parser *p, struct spec *s, size_t off, size_t len)
{
	size_t end = off + len;
	size_t colon = spec_find(p, off, end, ':');
	size_t tlen = colon - off;

	if (!spec_part_is(p, off, tlen, "flat") && !spec_part_is(p, off, tlen, "vhd1")) {
		if (tlen == 0)
			return spec_perr(p, off, 0, "valid types: flat, vhd1", "missing blob type");
		return spec_perr(p, off, tlen, "valid types: flat, vhd1", "invalid blob type");
	}
	if (colon == end || colon + 1 == end)
		return spec_perr(p, off, len, "write blob:flat|vhd1:<url>", "missing URL after blob type");
	if (!spec_is_http_url(p->text + colon + 1, end - colon - 1))
		return spec_perr(p, colon + 1, end - colon - 1, "blobs are http:// or https:// URLs",
				 "invalid blob URL");
	s->arg = spec_dup(p, off, tlen);
	s->path = spec_dup(p, colon + 1, end - colon - 1);
	if (!s->arg || !s->path)
		return -ENOMEM;
	return 0;
}

/* crypt:xts-aes-256:<keyfile>:<spec> */
static int spec_parse_crypt(struct spec_parser *p, struct spec *s, size_t off, size_t len,
			    unsigned depth)
{
	size_t end = off + len;
	size_t c1 = spec_find(p, off, end, ':');
	size_t c2;

	if (!spec_part_is(p, off, c1 - off, "xts-aes-256")) {
		if (c1 == off)
			return spec_perr(p, off, 0, "valid ciphers: xts-aes-256", "missing cipher");
		return spec_perr(p, off, c1 - off, "valid ciphers: xts-aes-256", "invalid cipher");
	}
	if (c1 == end)
		return spec_perr(p, off, len, "write crypt:xts-aes-256:<keyfile>:<spec>",
				 "missing ':<keyfile>:<spec>' after the cipher");
	c2 = spec_find(p, c1 + 1, end, ':');
	if (c2 == c1 + 1)
		return spec_perr(p, c1 + 1, 0, "write crypt:xts-aes-256:<keyfile>:<spec>",
				 "missing key file");
	if (c2 == end)
		return spec_perr(p, c1 + 1, end - c1 - 1,
				 "write crypt:xts-aes-256:<keyfile>:<spec> (the key file path cannot contain ':')",
				 "missing ':<spec>' after the key file");
	s->arg = spec_dup(p, off, c1 - off);
	s->path = spec_dup(p, c1 + 1, c2 - c1 - 1);
	if (!s->arg || !s->path)
		return -ENOMEM;
	return spec_parse_inner(p, s, c2 + 1, end - c2 - 1, depth);
}

static int spec_parse_one_time(struct spec_parser *p, size_t off, size_t len, uint64_t *us)
{
	int r;

	if (len == 0)
		return spec_perr(p, off, 0, "a time is digits with an optional ms or us (5, 500us)",
				 "missing delay");
	r = spec_parse_time_us(p->text + off, len, us);
	if (r == -ERANGE)
		return spec_perr(p, off, len, NULL, "delay too large");
	if (r < 0)
		return spec_perr(p, off, len, "a time is digits with an optional ms or us (5, 500us)",
				 "bad delay");
	return 0;
}

/* delay:<time>[/<time>]:<spec> */
static int spec_parse_delay(struct spec_parser *p, struct spec *s, size_t off, size_t len,
			    unsigned depth)
{
	size_t end = off + len;
	size_t colon = spec_find(p, off, end, ':');
	size_t slash = spec_find(p, off, colon, '/');
	int r;

	if (colon == end)
		return spec_perr(p, off, len, "write delay:<time>[/<time>]:<spec>",
				 "missing ':<spec>' after the delay");
	r = spec_parse_one_time(p, off, slash - off, &s->delay_read_us);
	if (r < 0)
		return r;
	if (slash < colon) {
		r = spec_parse_one_time(p, slash + 1, colon - slash - 1, &s->delay_write_us);
		if (r < 0)
			return r;
	} else {
		s->delay_write_us = s->delay_read_us;
	}
	return spec_parse_inner(p, s, colon + 1, end - colon - 1, depth);
}

/* striped:<chunk>:<spec>+<spec>+... */
static int spec_parse_striped(struct spec_parser *p, struct spec *s, size_t off, size_t len,
			      unsigned depth)
{
	size_t end = off + len;
	size_t colon = spec_find(p, off, end, ':');
	size_t o;
	unsigned n = 1;
	int r;

	if (colon == end)
		return spec_perr(p, off, len, "write striped:<chunk>:<spec>+<spec>...",
				 "missing ':<spec>' after the stripe chunk size");
	r = spec_parse_sector_size(p, off, colon - off, "stripe chunk size", &s->size);
	if (r < 0)
		return r;
	if (colon + 1 == end)
		return spec_perr(p, end, 0, NULL, "missing member disk specs after 'striped:'");
	for (size_t i = colon + 1; i < end; i++)
		if (p->text[i] == '+')
			n++;
	s->members = calloc(n, sizeof(*s->members));
	if (!s->members)
		return -ENOMEM;
	o = colon + 1;
	for (unsigned i = 0; i < n; i++) {
		size_t plus = spec_find(p, o, end, '+');

		if (plus == o)
			return spec_perr(p, o, 0, "members are separated by single '+'",
					 "empty stripe member");
		r = spec_parse_node(p, o, plus - o, depth + 1, &s->members[i]);
		/* A failed member may be partly built: count it so it is freed. */
		s->nmembers = i + 1;
		if (r < 0)
			return r;
		o = plus + 1;
	}
	return 0;
}

/* nbd:<uri> with an nbd://, nbds://, nbd+unix:// or nbds+unix:// URI. */
static int spec_parse_nbd(struct spec_parser *p, struct spec *s, size_t off, size_t len)
{
	static const char *const schemes[] = { "nbd", "nbds", "nbd+unix", "nbds+unix" };
	static const char hint[] = "valid schemes: nbd://, nbds://, nbd+unix://, nbds+unix://";
	const char *u = p->text + off;
	const char *sep = len ? memmem(u, len, "://", 3) : NULL;
	size_t slen = sep ? (size_t)(sep - u) : 0;
	bool found = false, is_unix;

	if (len == 0)
		return spec_perr(p, off, 0, "write nbd:nbd://<host>[:<port>]/<export>", "missing NBD URI");
	for (size_t i = 0; sep && i < ARRAY_SIZE(schemes); i++)
		if (strlen(schemes[i]) == slen && memcmp(u, schemes[i], slen) == 0)
			found = true;
	if (!found)
		return spec_perr(p, off, sep ? slen : len, hint, "unsupported NBD URI scheme");
	is_unix = slen > 5 && memcmp(u + slen - 5, "+unix", 5) == 0;
	if (is_unix) {
		const char *q = memchr(u, '?', len);
		bool has_socket = false;

		/* The socket is a query parameter: ?socket=<path>. */
		for (const char *a = q; a && a < u + len; a = memchr(a + 1, '&', (size_t)(u + len - a - 1))) {
			if ((size_t)(u + len - a - 1) > 7 && memcmp(a + 1, "socket=", 7) == 0)
				has_socket = true;
		}
		if (!has_socket)
			return spec_perr(p, off, len, "write nbd+unix:///<export>?socket=<path>",
					 "missing socket= in NBD URI");
	} else {
		const char *h = sep + 3;
		size_t hlen = strcspn(h, "/?#");

		if ((size_t)(h - u) + hlen > len)
			hlen = len - (size_t)(h - u);
		if (hlen == 0)
			return spec_perr(p, off, len, "write nbd://<host>[:<port>]/<export>",
					 "missing host in NBD URI");
	}
	s->path = spec_dup(p, off, len);
	if (!s->path)
		return -ENOMEM;
	return 0;
}

static int spec_unknown_kind(struct spec_parser *p, size_t off, size_t klen)
{
	char kinds[256] = "";
	size_t used = 0;

	for (const struct spec_kind *k = spec_kinds; k->name; k++) {
		int n = snprintf(kinds + used, sizeof(kinds) - used, "%s%s",
				 used ? ", " : "", k->name);
		if (n < 0 || (size_t)n >= sizeof(kinds) - used)
			break;
		used += (size_t)n;
	}
	if (klen == 0)
		return spec_perr(p, off, 0, NULL, "missing disk kind; valid kinds: %s, or a path", kinds);
	/* The hint goes after the location so the list ends the message. */
	(void)errbuf_printf(p->err, p->errlen,
		  "invalid disk kind '%.*s' at offset %zu of '%s'; valid kinds: %s, or a path",
		  (int)klen, p->text + off, off, p->text, kinds);
	return -EINVAL;
}

static int spec_parse_node(struct spec_parser *p, size_t off, size_t len, unsigned depth,
			   struct spec **out)
{
	size_t end = off + len;
	size_t colon;
	struct spec *s;
	int r;

	*out = NULL;
	if (depth > SPEC_MAX_DEPTH)
		return spec_perr(p, off, 0, NULL, "disk spec nested more than %d deep", SPEC_MAX_DEPTH);
	if (len == 0)
		return spec_perr(p, off, 0, NULL, "missing disk spec");
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->text = p->text;
	s->off = off;
	s->len = len;
	*out = s;

	colon = spec_find(p, off, end, ':');
	if (colon == end || p->text[off] == '/') {
		/* A bare path: no ':' anywhere, or an absolute path. */
		s->kind = spec_kind_find("file");
		s->bare = true;
		return spec_parse_path_opts(p, s, off, len);
	}
	s->kind = spec_kind_findn(p->text + off, colon - off);
	if (!s->kind)
		return spec_unknown_kind(p, off, colon - off);

	off = colon + 1;
	len = end - off;
	switch (s->kind->shape) {
	case SPEC_SHAPE_PATH:
	case SPEC_SHAPE_SQL:
		r = spec_parse_path_opts(p, s, off, len);
		break;
	case SPEC_SHAPE_SIZE:
		r = spec_parse_sector_size(p, off, len, "size", &s->size);
		break;
	case SPEC_SHAPE_INNER:
		r = spec_parse_inner(p, s, off, len, depth);
		break;
	case SPEC_SHAPE_SQLDIFF:
		r = spec_parse_sqldiff(p, s, off, len, depth);
		break;
	case SPEC_SHAPE_KEY_INNER:
		r = spec_parse_autocache(p, s, off, len, depth);
		break;
	case SPEC_SHAPE_BLOB:
		r = spec_parse_blob(p, s, off, len);
		break;
	case SPEC_SHAPE_CRYPT:
		r = spec_parse_crypt(p, s, off, len, depth);
		break;
	case SPEC_SHAPE_DELAY:
		r = spec_parse_delay(p, s, off, len, depth);
		break;
	case SPEC_SHAPE_STRIPED:
		r = spec_parse_striped(p, s, off, len, depth);
		break;
	case SPEC_SHAPE_URI:
		r = spec_parse_nbd(p, s, off, len);
		break;
	default:
		assert(!"unknown spec shape");
		r = -EINVAL;
	}
	return r;
}

/* The end of the spec part: the first comma outside [...]. */
static size_t spec_spec_end(const char *text)
{
	int brackets = 0;
	size_t i;

	for (i = 0; text[i]; i++) {
		if (text[i] == '[')
			brackets++;
		else if (text[i] == ']' && brackets > 0)
			brackets--;
		else if (text[i] == ',' && brackets == 0)
			break;
	}
	return i;
}

/* The options after the spec: ",ro", ",ro=on", ",ro=off". */
static int spec_parse_options(struct spec_parser *p, struct spec *root, size_t comma)
{
	size_t end = strlen(p->text);
	bool seen_ro = false;

	while (comma < end) {
		size_t o = comma + 1;
		size_t next = spec_find(p, o, end, ',');
		size_t olen = next - o;

		if (olen == 0)
			return spec_perr(p, comma, 1, NULL, "empty option");
		if (spec_part_is(p, o, olen, "ro") || spec_part_is(p, o, olen, "ro=on") ||
		    spec_part_is(p, o, olen, "ro=off")) {
			if (seen_ro)
				return spec_perr(p, o, olen, NULL, "duplicate option");
			seen_ro = true;
			root->ro = !spec_part_is(p, o, olen, "ro=off");
		} else {
			return spec_perr(p, o, olen, "valid options: ro, ro=on, ro=off (disk specs cannot contain ',')",
					 "unknown option");
		}
		comma = next;
	}
	return 0;
}

int spec_parse(const char *text, struct spec **out, char *err, size_t errlen)
{
	struct spec_parser p = { .err = err, .errlen = errlen };
	struct spec *root = NULL;
	size_t send;
	int r;

	*out = NULL;
	if (err && errlen)
		err[0] = '\0';
	if (!text || !*text) {
		(void)errbuf_printf(err, errlen, "empty disk spec");
		return -EINVAL;
	}
	p.text = strdup(text);
	if (!p.text) {
		(void)errbuf_printf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	send = spec_spec_end(p.text);
	r = spec_parse_node(&p, 0, send, 0, &root);
	if (r == 0)
		r = spec_parse_options(&p, root, send);
	if (r < 0) {
		if (r == -ENOMEM)
			(void)errbuf_printf(err, errlen, "out of memory");
		spec_free_node(root);
		free((char *)p.text);
		return r;
	}
	*out = root;
	return 0;
}

/* ---- the resolver ---------------------------------------------------------- */

/* The autocache root. */
int spec_autocache_dir(const struct spec_ctx *ctx, const char **out, char *err, size_t errlen)
{
	const char *dir = ctx ? ctx->cache_dir : NULL;

	if (!dir || !*dir)
		dir = getenv("DISKSTACK_AUTOCACHE_DIR");
	if (!dir || !*dir) {
		(void)errbuf_printf(err, errlen,
			  "autocache needs a cache directory: set DISKSTACK_AUTOCACHE_DIR "
			  "(or give one on the command line)");
		return -EINVAL;
	}
	*out = dir;
	return 0;
}

/* The text of node @s with credentials in URLs removed (url.h), for
 * messages: "<node text>: <why>". */
static void spec_node_shown(const struct spec *s, char *buf, size_t len)
{
	char raw[SPEC_ERR_MAX];

	snprintf(raw, sizeof(raw), "%.*s", (int)s->len, s->text + s->off);
	url_redact_text(raw, buf, len);
}

/* True when @msg already starts with the (shown) text of @s or a node below
 * it followed by ": " (an inner spec_open already said where it failed). */
static bool spec_msg_prefixed(const struct spec *s, const char *msg)
{
	char shown[SPEC_ERR_MAX];
	size_t n;

	if (!s)
		return false;
	spec_node_shown(s, shown, sizeof(shown));
	n = strlen(shown);
	if (strncmp(msg, shown, n) == 0 && strncmp(msg + n, ": ", 2) == 0)
		return true;
	if (spec_msg_prefixed(s->inner, msg))
		return true;
	for (unsigned i = 0; i < s->nmembers; i++)
		if (spec_msg_prefixed(s->members[i], msg))
			return true;
	return false;
}

/* Writes "<node text>: <msg>" (or strerror when the open function gave no
 * message) to @err; returns @r. URLs in the node text lose their
 * credentials (the open functions never put any in @msg). */
static int spec_open_err(const struct spec *s, int r, const char *msg, char *err, size_t errlen)
{
	char shown[SPEC_ERR_MAX];

	if (!msg[0])
		msg = strerror(-r);
	if (spec_msg_prefixed(s, msg)) {
		(void)errbuf_printf(err, errlen, "%s", msg);
	} else {
		spec_node_shown(s, shown, sizeof(shown));
		(void)errbuf_printf(err, errlen, "%s: %s", shown, msg);
	}
	return r;
}

/* One entry of the list being built: a layer, or a plain disk. */
struct spec_entry {
	struct layer *layer;
	struct disk *disk;
	bool read_cache;
};

struct spec_list {
	struct spec_entry *v;
	unsigned n, cap;
};

static int spec_list_push(struct spec_list *l, struct spec_entry e)
{
	if (l->n == l->cap) {
		unsigned cap = l->cap ? 2 * l->cap : 4;
		struct spec_entry *v = realloc(l->v, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		l->v = v;
		l->cap = cap;
	}
	l->v[l->n++] = e;
	return 0;
}

static void spec_list_free(struct spec_list *l)
{
	for (unsigned i = 0; i < l->n; i++) {
		layer_free(l->v[i].layer);
		disk_unref(l->v[i].disk);
	}
	free(l->v);
	l->v = NULL;
	l->n = l->cap = 0;
}

/* Checks, before anything is opened or created, that every node of the tree
 * can be opened in this build (and that autocache has a directory). On
 * failure, *bad is the node and @msg says why. */
static int spec_check_openable(const struct spec *s, const struct spec_ctx *ctx,
			       const struct spec **bad, char *msg, size_t msglen)
{
	int r;

	if (s->kind->shape == SPEC_SHAPE_KEY_INNER) {
		const char *dir;

		r = spec_autocache_dir(ctx, &dir, msg, msglen);
		if (r < 0) {
			*bad = s;
			return r;
		}
	}
	if (!spec_kind_available(s->kind)) {
		*bad = s;
		snprintf(msg, msglen, "disk kind '%s' is not available in this build", s->kind->name);
		return -ENOTSUP;
	}
	if (s->inner) {
		r = spec_check_openable(s->inner, ctx, bad, msg, msglen);
		if (r < 0)
			return r;
	}
	for (unsigned i = 0; i < s->nmembers; i++) {
		r = spec_check_openable(s->members[i], ctx, bad, msg, msglen);
		if (r < 0)
			return r;
	}
	return 0;
}

int spec_open(const struct spec *s, bool read_only, const struct spec_ctx *ctx,
	      struct disk **out, char *err, size_t errlen)
{
	struct spec_list list = { 0 };
	struct layered_entry *entries = NULL;
	bool disk_ro = read_only || s->ro;
	bool ro = disk_ro;
	const struct spec *top = s;
	char msg[SPEC_ERR_MAX];
	int r;

	*out = NULL;
	if (err && errlen)
		err[0] = '\0';
	msg[0] = '\0';
	r = spec_check_openable(s, ctx, &s, msg, sizeof(msg));
	if (r < 0)
		return spec_open_err(s, r, msg, err, errlen);
	for (;;) {
		const struct spec_kind *k = s->kind;

		msg[0] = '\0';
		if (k->open_layer) {
			struct spec_entry e = { 0 };
			bool layer_ro = ro && !k->read_cache;

			e.read_cache = k->read_cache;
			r = k->open_layer(s, layer_ro, ctx, &e.layer, &e.read_cache, msg, sizeof(msg));
			if (r < 0)
				goto fail_node;
			r = spec_list_push(&list, e);
			if (r < 0) {
				layer_free(e.layer);
				goto fail_node;
			}
			if (!s->inner)
				break;
			/* §3.9: below a layer without write-through (the CLI
			 * never sets it) everything is read-only; §6.3:
			 * memdiff and sqldiff demand it anyway. */
			if (!SPEC_WRITE_THROUGH || k->inner_forced_ro)
				ro = true;
			s = s->inner;
		} else if (k->open_disk) {
			struct spec_entry e = { 0 };

			r = k->open_disk(s, ro, ctx, &e.disk, msg, sizeof(msg));
			if (r < 0)
				goto fail_node;
			r = spec_list_push(&list, e);
			if (r < 0) {
				disk_unref(e.disk);
				goto fail_node;
			}
			break;
		} else {
			/* spec_check_openable() said otherwise. */
			assert(!"spec kind without an open function");
			r = -ENOTSUP;
			goto fail_node;
		}
	}

	if (list.n == 1 && list.v[0].disk) {
		*out = list.v[0].disk;
		list.v[0].disk = NULL;
		spec_list_free(&list);
		return 0;
	}

	/* Plain disks inside the list become disk-as-layer entries. */
	for (unsigned i = 0; i < list.n; i++) {
		struct layer *l = NULL;

		if (!list.v[i].disk)
			continue;
		r = disklayer_new(list.v[i].disk, &l);
		if (r < 0) {
			snprintf(msg, sizeof(msg), "cannot use the disk as a layer: %s", strerror(-r));
			goto fail_top;
		}
		list.v[i].layer = l;
		list.v[i].disk = NULL;
	}
	entries = calloc(list.n, sizeof(*entries));
	if (!entries) {
		r = -ENOMEM;
		msg[0] = '\0';
		goto fail_top;
	}
	for (unsigned i = 0; i < list.n; i++) {
		entries[i].layer = list.v[i].layer;
		entries[i].read_cache = list.v[i].read_cache;
		entries[i].write_through = SPEC_WRITE_THROUGH;
	}
	msg[0] = '\0';
	r = layered_disk_new(entries, list.n, disk_ro, out, msg, sizeof(msg));
	free(entries);
	if (r < 0)
		goto fail_top;
	/* The layers belong to the disk now. */
	free(list.v);
	return 0;

fail_top:
	s = top;
fail_node:
	spec_list_free(&list);
	return spec_open_err(s, r, msg, err, errlen);
}

int spec_open_str(const char *text, bool read_only, const struct spec_ctx *ctx,
		  struct disk **out, char *err, size_t errlen)
{
	struct spec *s;
	int r;

	*out = NULL;
	r = spec_parse(text, &s, err, errlen);
	if (r < 0)
		return r;
	r = spec_open(s, read_only, ctx, out, err, errlen);
	spec_free(s);
	return r;
}

/* ---- mem, memdiff, file ------------------------------------------------------ */

static int spec_open_mem(const struct spec *s, bool read_only UNUSED,
			 const struct spec_ctx *ctx UNUSED, struct layer **out,
			 bool *read_cache UNUSED, char *err, size_t errlen)
{
	return ramlayer_new(s->size, 512, out, err, errlen);
}

static int spec_open_memdiff(const struct spec *s UNUSED, bool read_only UNUSED,
			     const struct spec_ctx *ctx UNUSED, struct layer **out,
			     bool *read_cache UNUSED, char *err, size_t errlen)
{
	/* Lazily sized: size and sector size come from the layer below. */
	return ramlayer_new(0, 0, out, err, errlen);
}

/* The extension of @path's last component, or "". */
static const char *spec_path_ext(const char *path)
{
	const char *base = strrchr(path, '/');
	const char *dot;

	base = base ? base + 1 : path;
	dot = strrchr(base, '.');
	return dot && dot != base ? dot + 1 : "";
}

/* Drops a leading "<path>: " from a backend's message: the resolver puts
 * the node's text (which holds the path) in front. */
static void spec_strip_path(char *err, size_t errlen, const char *path)
{
	size_t n = strlen(path);

	if (err && errlen && strncmp(err, path, n) == 0 && strncmp(err + n, ": ", 2) == 0)
		memmove(err, err + n + 2, strlen(err + n + 2) + 1);
}

static int spec_open_file(const struct spec *s, bool read_only, const struct spec_ctx *ctx UNUSED,
			  struct disk **out, char *err, size_t errlen)
{
	struct filedisk_opts o = {
		.read_only = read_only,
		.direct = s->direct,
		.create = s->create,
		.create_size = s->size,
	};
	const char *ext = spec_path_ext(s->path);
	int r;

	/* §6.4: the extension chooses the backend. */
	if (strcasecmp(ext, "vhd") == 0 || strcasecmp(ext, "vmgs") == 0) {
		struct vhd1_opts vo = {
			.read_only = read_only,
			.create = s->create,
			.create_size = s->size,
		};

		if (s->direct) {
			(void)errbuf_printf(err, errlen, "';direct' is not supported for VHD files");
			return -EINVAL;
		}
		/* §6.4: create= opens writable whatever the flag says. */
		r = vhd1_open(s->path, &vo, out, err, errlen);
		spec_strip_path(err, errlen, s->path);
		return r;
	}
	if (strcasecmp(ext, "vhdx") == 0) {
		(void)errbuf_printf(err, errlen, "VHDX files are not supported");
		return -ENOTSUP;
	}
	if (strcasecmp(ext, "iso") == 0) {
		if (s->create) {
			(void)errbuf_printf(err, errlen, "cannot create an .iso file");
			return -EINVAL;
		}
		if (!read_only) {
			(void)errbuf_printf(err, errlen, "iso file cannot be opened as read/write; add ,ro");
			return -EROFS;
		}
	}
	if (o.create && o.read_only) {
		/* §6.4: creating opens the file writable whatever the flag;
		 * create it, then open the result read-only. */
		struct disk *d;

		o.read_only = false;
		r = filedisk_open(s->path, &o, &d, err, errlen);
		if (r < 0) {
			spec_strip_path(err, errlen, s->path);
			return r;
		}
		disk_unref(d);
		o.read_only = true;
		o.create = false;
		o.create_size = 0;
	}
	r = filedisk_open(s->path, &o, out, err, errlen);
	spec_strip_path(err, errlen, s->path);
	return r;
}
