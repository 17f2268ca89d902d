/* SPDX-License-Identifier: MIT */
/*
 * spec.c: disk specs — the parser of the command-line grammar
 * (docs/openvmm-compat.md §6.2, §6.6; docs/specs.md), the registry
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
 *   at all, or starting with '/', is a bare path (a node of the kind that
 *   says bare_path: file). The kinds are data (kind.h): each declares its
 *   arguments, of a few generic types, and its tail (nothing, one inner
 *   spec, or '+'-separated members), and this parser walks that
 *   description; it includes no backend's header. The registry
 *   (storage/registry.c) is the only list of kinds: the parser, --help
 *   (spec_print_usage) and the info command read it.
 * - The resolver walks the node chain top-down with a running read-only
 *   flag. Layer kinds push one layer each into a single list and continue
 *   with their inner node; a disk kind ends the list. A list holding just
 *   one plain disk is that disk; anything else becomes a layered disk, with
 *   plain disks wrapped as disk-as-layer. Nothing here is on the I/O path.
 * - Kinds this build left out (a missing optional library) still parse
 *   and are refused by name, with the reason, when opened.
 */
#include "config.h"

#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "common/compiler.h"
#include "common/log.h"
#include "storage/spec.h"

/* Deepest nesting of kinds accepted (memdiff:memdiff:...). */
#define SPEC_MAX_DEPTH 64

/* Specs never make a layer write-through (§6.2 "Nesting"). */
#define SPEC_WRITE_THROUGH false

/* Room for messages built internally before they are copied out. */
#define SPEC_ERR_MAX 1024

/* ---- the registry ---------------------------------------------------------- */

/* Same as spec_kind_find for a counted string. */
static const struct spec_kind *spec_kind_findn(const char *name, size_t len)
{
	for (const struct spec_kind *const *k = spec_kinds; *k; k++)
		if (strlen((*k)->name) == len && memcmp((*k)->name, name, len) == 0)
			return *k;
	return NULL;
}

const struct spec_kind *spec_kind_find(const char *name)
{
	return spec_kind_findn(name, strlen(name));
}

/* The kind a bare path is a node of. */
static const struct spec_kind *spec_kind_bare(void)
{
	for (const struct spec_kind *const *k = spec_kinds; *k; k++)
		if ((*k)->bare_path)
			return *k;
	return NULL;
}

bool spec_kind_available(const struct spec_kind *k)
{
	return k->open_layer || k->open_disk;
}

void spec_print_usage(FILE *fp, const char *indent)
{
	const struct spec_kind *bare = spec_kind_bare();

	if (!indent)
		indent = "";
	for (const struct spec_kind *const *kp = spec_kinds; *kp; kp++) {
		const struct spec_kind *k = *kp;

		if (spec_kind_available(k))
			fprintf(fp, "%s%-38s %s\n", indent, k->usage, k->summary);
		else
			fprintf(fp, "%s%-38s %s (not available in this build: %s)\n", indent,
				k->usage, k->summary, k->unavailable ? k->unavailable : "no open function");
	}
	if (bare) {
		char what[64];

		snprintf(what, sizeof(what), "same as %s:<path> (no ':' in it, or an absolute path)",
			 bare->name);
		fprintf(fp, "%s%-38s %s\n", indent, bare->usage + strlen(bare->name) + 1, what);
	}
}

/* ---- messages ------------------------------------------------------------ */

/* ---- sizes and times ------------------------------------------------------ */

/* The decimal digits at the start of @s (at most @len bytes) into *@v;
 * *@i is the count. Returns 0, -EINVAL (no digit) or -ERANGE. */
static int spec_parse_digits(const char *s, size_t len, uint64_t *v, size_t *i)
{
	*v = 0;
	for (*i = 0; *i < len && s[*i] >= '0' && s[*i] <= '9'; (*i)++)
		if (MUL_OVERFLOW(*v, 10, v) || ADD_OVERFLOW(*v, (uint64_t)(s[*i] - '0'), v))
			return -ERANGE;
	return *i ? 0 : -EINVAL;
}

int spec_parse_size(const char *s, size_t len, uint64_t *out)
{
	uint64_t v, mult = 1;
	size_t i;
	int r;

	if (!s || len == 0)
		return -EINVAL;
	r = spec_parse_digits(s, len, &v, &i);
	if (r < 0)
		return r;
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

int spec_parse_time_us(const char *s, size_t len, uint64_t *out_us)
{
	uint64_t v, mult = 1000;
	size_t i;
	int r = spec_parse_digits(s, len, &v, &i);

	if (r < 0)
		return r;
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

/* <spec>+<spec>+... at [off, off + len). */
static int spec_parse_members(struct spec_parser *p, struct spec *s, size_t off, size_t len,
			      unsigned depth)
{
	size_t end = off + len;
	unsigned n = 1;
	int r;

	if (len == 0)
		return spec_perr(p, off, 0, NULL, "missing member disk specs after '%s:'",
				 s->kind->name);
	for (size_t i = off; i < end; i++)
		if (p->text[i] == '+')
			n++;
	s->members = calloc(n, sizeof(*s->members));
	if (!s->members)
		return -ENOMEM;
	for (unsigned i = 0; i < n; i++) {
		size_t plus = spec_find(p, off, end, '+');

		if (plus == off)
			return spec_perr(p, off, 0, "members are separated by single '+'",
					 "empty stripe member");
		r = spec_parse_node(p, off, plus - off, depth + 1, &s->members[i]);
		/* A failed member may be partly built: count it so it is freed. */
		s->nmembers = i + 1;
		if (r < 0)
			return r;
		off = plus + 1;
	}
	return 0;
}

/* The field of @s at offset @field, as a T. */
#define SPEC_AT(s, field, T) ((T *)(void *)((char *)(s) + (field)))

/* Stores a copy of [off, off + len) in the string field @field of @s. */
static int spec_set_string(const struct spec_parser *p, struct spec *s, size_t field,
			   size_t off, size_t len)
{
	char **dst = SPEC_AT(s, field, char *);

	*dst = spec_dup(p, off, len);
	return *dst ? 0 : -ENOMEM;
}

/* The ;option of @a that [off, off + len) names, or NULL; *index is its
 * position in the list. A size option matches with or without "=...". */
static const struct spec_option *spec_option_find(const struct spec_parser *p,
						  const struct spec_arg *a, size_t off, size_t len,
						  unsigned *index)
{
	*index = 0;
	for (const struct spec_option *o = a->options; o && o->name; o++, (*index)++) {
		size_t n = strlen(o->name);

		if (o->type == SPEC_OPTION_FLAG && spec_part_is(p, off, len, o->name))
			return o;
		if (o->type == SPEC_OPTION_SIZE && len >= n && memcmp(p->text + off, o->name, n) == 0 &&
		    (len == n || p->text[off + n] == '='))
			return o;
	}
	return NULL;
}

/* "valid options: direct, create=<size>" for @a. */
static void spec_option_hint(const struct spec_arg *a, char *buf, size_t len)
{
	size_t used = (size_t)snprintf(buf, len, "valid options:");

	for (const struct spec_option *o = a->options; o && o->name && used < len; o++)
		used += (size_t)snprintf(buf + used, len - used, "%s %s%s", o == a->options ? "" : ",",
					 o->name, o->type == SPEC_OPTION_SIZE ? "=<size>" : "");
}

/* <path>[;<option>...] at [off, off + len) (file:, sql:, sqldiff:). */
static int spec_parse_path_opts(struct spec_parser *p, struct spec *s, const struct spec_arg *a,
				size_t off, size_t len)
{
	size_t end = off + len;
	size_t semi = spec_find(p, off, end, ';');
	uint32_t seen = 0;
	int r;

	if (semi == off)
		return spec_perr(p, off, 0, NULL, "missing path after '%s:'", s->kind->name);
	r = spec_set_string(p, s, a->field, off, semi - off);
	if (r < 0)
		return r;
	while (semi < end) {
		size_t o = semi + 1;
		size_t next = spec_find(p, o, end, ';');
		size_t olen = next - o;
		const struct spec_option *opt;
		unsigned i;

		if (olen == 0)
			return spec_perr(p, semi, 1, NULL, "empty option");
		opt = spec_option_find(p, a, o, olen, &i);
		if (!opt) {
			char hint[128];

			spec_option_hint(a, hint, sizeof(hint));
			return spec_perr(p, o, olen, hint, "unknown %s option", s->kind->name);
		}
		if (opt->type == SPEC_OPTION_SIZE) {
			size_t n = strlen(opt->name);
			char hint[64];

			snprintf(hint, sizeof(hint), "write %s=<size>", opt->name);
			if (olen == n)
				return spec_perr(p, o, olen, hint, "option needs a size");
			if (seen & (1u << i))
				return spec_perr(p, o, olen, NULL, "duplicate option");
			if (olen == n + 1)
				return spec_perr(p, o, olen, hint, "missing size in option");
			r = spec_parse_sector_size(p, o + n + 1, olen - n - 1, opt->value_name,
						   SPEC_AT(s, opt->value, uint64_t));
			if (r < 0)
				return r;
		} else if (seen & (1u << i)) {
			return spec_perr(p, o, olen, NULL, "duplicate option");
		}
		seen |= 1u << i;
		*SPEC_AT(s, opt->set, bool) = true;
		semi = next;
	}
	return 0;
}

/* One time of a SPEC_ARG_TIMES argument. */
static int spec_parse_one_time(struct spec_parser *p, size_t off, size_t len, const char *what,
			       uint64_t *us)
{
	int r;

	if (len == 0)
		return spec_perr(p, off, 0, "a time is digits with an optional ms or us (5, 500us)",
				 "missing %s", what);
	r = spec_parse_time_us(p->text + off, len, us);
	if (r == -ERANGE)
		return spec_perr(p, off, len, NULL, "%s too large", what);
	if (r < 0)
		return spec_perr(p, off, len, "a time is digits with an optional ms or us (5, 500us)",
				 "bad %s", what);
	return 0;
}

/* "missing <name>" for an empty argument. */
static int spec_missing(struct spec_parser *p, const struct spec_arg *a, size_t off)
{
	return spec_perr(p, off, 0, a->missing_hint ? a->missing_hint : a->hint, "missing %s",
			 a->name);
}

/* The argument @a of @s at [off, off + len). */
static int spec_parse_arg(struct spec_parser *p, struct spec *s, const struct spec_arg *a,
			  size_t off, size_t len)
{
	switch (a->type) {
	case SPEC_ARG_SIZE:
		return spec_parse_sector_size(p, off, len, a->name, SPEC_AT(s, a->field, uint64_t));
	case SPEC_ARG_PATH:
		return spec_parse_path_opts(p, s, a, off, len);
	case SPEC_ARG_WORD:
		for (const char *const *w = a->words; w && *w; w++)
			if (spec_part_is(p, off, len, *w))
				return spec_set_string(p, s, a->field, off, len);
		if (len == 0)
			return spec_missing(p, a, off);
		return spec_perr(p, off, len, a->hint, "invalid %s", a->name);
	case SPEC_ARG_STRING:
		if (len == 0)
			return spec_missing(p, a, off);
		return spec_set_string(p, s, a->field, off, len);
	case SPEC_ARG_NAME:
		if (len == 0)
			return 0;
		/* A name is one path component (a directory under a root). */
		if (memchr(p->text + off, '/', len) || spec_part_is(p, off, len, ".") ||
		    spec_part_is(p, off, len, ".."))
			return spec_perr(p, off, len, a->hint, "invalid %s", a->name);
		return spec_set_string(p, s, a->field, off, len);
	case SPEC_ARG_TIMES: {
		size_t slash = spec_find(p, off, off + len, '/');
		uint64_t *first = SPEC_AT(s, a->field, uint64_t);
		uint64_t *second = SPEC_AT(s, a->field2, uint64_t);
		int r = spec_parse_one_time(p, off, slash - off, a->name, first);

		if (r < 0)
			return r;
		if (slash == off + len) {
			*second = *first;
			return 0;
		}
		return spec_parse_one_time(p, slash + 1, off + len - slash - 1, a->name, second);
	}
	case SPEC_ARG_URI:
		if (len == 0)
			return spec_missing(p, a, off);
		if (a->check) {
			struct spec_arg_error e = { 0 };

			if (a->check(p->text + off, len, &e) < 0)
				return spec_perr(p, off + e.off, e.len, e.hint, "%s", e.what);
		}
		return spec_set_string(p, s, a->field, off, len);
	}
	assert(!"unknown spec argument type");
	return -EINVAL;
}

/* The arguments and the tail of @s, at [off, off + len): each argument
 * but a final one (no tail) ends at the next ':'. */
static int spec_parse_args(struct spec_parser *p, struct spec *s, size_t off, size_t len,
			   unsigned depth)
{
	const struct spec_kind *k = s->kind;
	size_t end = off + len;
	int r;

	for (unsigned i = 0; i < k->nargs; i++) {
		const struct spec_arg *a = &k->args[i];
		bool rest = i + 1 == k->nargs && k->tail == SPEC_TAIL_NONE;
		size_t stop = rest ? end
				   : a->extent ? off + MIN(a->extent(p->text + off, end - off), end - off)
				   : spec_find(p, off, end, ':');
		/* A word or string is judged before what must follow it;
		 * the other types after ("missing ':<spec>' after the
		 * delay" rather than "bad delay" for "delay:x"). */
		bool value_first = a->type == SPEC_ARG_WORD || a->type == SPEC_ARG_STRING;

		if (!rest && stop == end && !value_first)
			goto missing_next;
		r = spec_parse_arg(p, s, a, off, stop - off);
		if (r < 0 || rest)
			return r;
		if (stop == end)
			goto missing_next;
		off = stop + 1;
		continue;
missing_next:
		return spec_perr(p, off, end - off, a->missing_next_hint, "%s",
				 a->missing_next ? a->missing_next : "missing ':'");
	}
	switch (k->tail) {
	case SPEC_TAIL_NONE:
		return 0;
	case SPEC_TAIL_INNER:
		return spec_parse_inner(p, s, off, end - off, depth);
	case SPEC_TAIL_MEMBERS:
		return spec_parse_members(p, s, off, end - off, depth);
	}
	assert(!"unknown spec tail");
	return -EINVAL;
}

static int spec_unknown_kind(struct spec_parser *p, size_t off, size_t klen)
{
	char kinds[256] = "";
	size_t used = 0;

	for (const struct spec_kind *const *k = spec_kinds; *k; k++) {
		int n = snprintf(kinds + used, sizeof(kinds) - used, "%s%s",
				 used ? ", " : "", (*k)->name);
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
		s->kind = spec_kind_bare();
		s->bare = true;
		assert(s->kind);
		return spec_parse_args(p, s, off, len, depth);
	}
	s->kind = spec_kind_findn(p->text + off, colon - off);
	if (!s->kind)
		return spec_unknown_kind(p, off, colon - off);
	return spec_parse_args(p, s, colon + 1, end - colon - 1, depth);
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

/* Whether the tree under @s creates something when opened (;create= of
 * file and sql, ;create of sqldiff): such a spec is not a medium. */
static const struct spec *spec_find_create(const struct spec *s)
{
	const struct spec *c;

	if (s->create)
		return s;
	if (s->inner && (c = spec_find_create(s->inner)))
		return c;
	for (unsigned i = 0; i < s->nmembers; i++)
		if ((c = spec_find_create(s->members[i])))
			return c;
	return NULL;
}

/* The options after the spec: ",ro", ",ro=on", ",ro=off", ",dvd" and
 * ",removable". */
static int spec_parse_options(struct spec_parser *p, struct spec *root, size_t comma)
{
	size_t end = strlen(p->text);
	bool seen_ro = false;
	size_t ro_off = 0, ro_len = 0;

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
			ro_off = o;
			ro_len = olen;
			root->ro = !spec_part_is(p, o, olen, "ro=off");
		} else if (spec_part_is(p, o, olen, "dvd")) {
			if (root->dvd)
				return spec_perr(p, o, olen, NULL, "duplicate option");
			root->dvd = true;
		} else if (spec_part_is(p, o, olen, "removable")) {
			if (root->removable)
				return spec_perr(p, o, olen, NULL, "duplicate option");
			root->removable = true;
		} else {
			return spec_perr(p, o, olen,
					 "valid options: ro, ro=on, ro=off, dvd, removable (disk specs "
					 "cannot contain ',')",
					 "unknown option");
		}
		comma = next;
	}
	if (root->dvd) {
		const struct spec *c = spec_find_create(root);

		/* A DVD is read-only media (MMC-6 DVD-ROM profile): ,dvd
		 * implies ,ro and refuses what would write. */
		if (seen_ro && !root->ro)
			return spec_perr(p, ro_off, ro_len, "a DVD is read-only",
					 "'dvd' cannot be combined with");
		if (c)
			return spec_perr(p, c->off, c->len,
					 "a DVD medium must exist already (drop ';create')",
					 "'dvd' cannot be combined with the creating spec");
		root->ro = true;
	}
	return 0;
}

/* The bool at offset @field of the parsed root of @text (false when it
 * does not parse). */
static bool spec_root_flag(const char *text, size_t field)
{
	struct spec *s = NULL;
	bool v;

	if (spec_parse(text, &s, NULL, 0) < 0)
		return false;
	v = *(const bool *)(const void *)((const char *)s + field);
	spec_free(s);
	return v;
}

bool spec_is_dvd(const char *text)
{
	return spec_root_flag(text, SPEC_FIELD(dvd));
}

bool spec_is_removable(const char *text)
{
	return spec_root_flag(text, SPEC_FIELD(removable));
}


int spec_write_path(const char *text, char *buf, size_t len)
{
	struct spec *s = NULL, *n;
	int r = -ENOENT;

	if (spec_parse(text, &s, NULL, 0) < 0)
		return -EINVAL;
	/* Down the chain of single inner specs to the node writes land in,
	 * as each kind declares (kind.h: enum spec_writes). A node that keeps
	 * them itself, several members or a remote disk keep nothing here. */
	for (n = s; n; n = n->inner) {
		if (n->kind->writes == SPEC_WRITES_PATH) {
			r = snprintf(buf, len, "%s", n->path) < (int)len ? 0 : -ENAMETOOLONG;
			break;
		}
		if (n->kind->writes == SPEC_WRITES_LOST)
			break;
	}
	spec_free(s);
	return r;
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

/* The text of node @s with secrets removed (each kind that takes URLs
 * gives its redact function), for messages: "<node text>: <why>". */
static void spec_node_shown(const struct spec *s, char *buf, size_t len)
{
	char raw[SPEC_ERR_MAX];

	snprintf(buf, len, "%.*s", (int)s->len, s->text + s->off);
	for (const struct spec_kind *const *k = spec_kinds; *k; k++) {
		bool done = false;

		if (!(*k)->redact)
			continue;
		for (const struct spec_kind *const *e = spec_kinds; e != k; e++)
			if ((*e)->redact == (*k)->redact)
				done = true;
		if (done)
			continue;
		snprintf(raw, sizeof(raw), "%s", buf);
		(*k)->redact(raw, buf, len);
	}
}

int spec_map_files(struct spec *s, int (*fn)(char **path, void *arg), void *arg)
{
	int r;

	if (!s)
		return 0;
	for (unsigned i = 0; i < s->kind->nargs; i++) {
		const struct spec_arg *a = &s->kind->args[i];
		char **v;

		if (a->type != SPEC_ARG_PATH && !(a->type == SPEC_ARG_STRING && a->local_file))
			continue;
		v = SPEC_AT(s, a->field, char *);
		if (*v && (r = fn(v, arg)) < 0)
			return r;
	}
	if ((r = spec_map_files(s->inner, fn, arg)) < 0)
		return r;
	for (unsigned i = 0; i < s->nmembers; i++)
		if ((r = spec_map_files(s->members[i], fn, arg)) < 0)
			return r;
	return 0;
}

const struct spec *spec_find_node(const struct spec *s,
				  bool (*match)(const struct spec *node, const void *arg),
				  const void *arg)
{
	const struct spec *hit;

	if (!s || match(s, arg))
		return s;
	if ((hit = spec_find_node(s->inner, match, arg)))
		return hit;
	for (unsigned i = 0; i < s->nmembers; i++)
		if ((hit = spec_find_node(s->members[i], match, arg)))
			return hit;
	return NULL;
}

/* True when @msg starts with the (shown) text of @s followed by ": ". */
static bool spec_node_prefixes(const struct spec *s, const void *msg)
{
	char shown[SPEC_ERR_MAX];
	size_t n;

	spec_node_shown(s, shown, sizeof(shown));
	n = strlen(shown);
	return strncmp(msg, shown, n) == 0 && strncmp((const char *)msg + n, ": ", 2) == 0;
}

/* True when @msg already starts with the (shown) text of @s or a node below
 * it followed by ": " (an inner spec_open already said where it failed). */
static bool spec_msg_prefixed(const struct spec *s, const char *msg)
{
	return spec_find_node(s, spec_node_prefixes, msg) != NULL;
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
 * can be opened in this build and has what it needs from @ctx (the kind's
 * precheck: autocache's directory). On failure, *bad is the node and @msg
 * says why. */
static int spec_check_openable(const struct spec *s, const struct spec_ctx *ctx,
			       const struct spec **bad, char *msg, size_t msglen)
{
	int r;

	if (!spec_kind_available(s->kind)) {
		*bad = s;
		if (s->kind->unavailable)
			snprintf(msg, msglen, "%s: this diskstack was %s", s->kind->name,
				 s->kind->unavailable);
		else
			snprintf(msg, msglen, "disk kind '%s' is not available in this build",
				 s->kind->name);
		return -ENOTSUP;
	}
	if (s->kind->precheck) {
		r = s->kind->precheck(s, ctx, msg, msglen);
		if (r < 0) {
			*bad = s;
			return r;
		}
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

int spec_open_decorator(const struct spec *s, bool read_only, const struct spec_ctx *ctx,
			int (*wrap)(const struct spec *s, struct disk *lower, void *arg,
				    struct disk **out, char *err, size_t errlen),
			void *arg, struct disk **out, char *err, size_t errlen)
{
	struct disk *lower;
	int r;

	*out = NULL;
	r = spec_open(s->inner, read_only, ctx, &lower, err, errlen);
	if (r < 0)
		return r;
	r = wrap(s, lower, arg, out, err, errlen);
	if (r < 0)
		disk_unref(lower);
	return r;
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
