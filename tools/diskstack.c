/* SPDX-License-Identifier: MIT */
/*
 * diskstack.c: the diskstack command — global options, the subcommand
 * table, and the helpers every subcommand shares (tool.h).
 *
 * Adding a subcommand is one function (cmd_<name> in tools/cmd-<name>.c)
 * plus one line in tool_commands[].
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/compiler.h"
#include "common/log.h"
#include "storage/disk.h"
#include "storage/spec.h"
#include "storage/backends/url.h"
#include "tools/tool.h"

/* Options given before the command (--cache-dir) for every spec opened. */
static struct spec_ctx tool_ctx;

#define DOCS_HINT "See docs/diskstack.md, docs/diskstack-<command>.md and docs/specs.md."

struct tool_command {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *summary;
};

/* One line per subcommand; later subcommands (serve, ublk, create) are
 * appended here. */
static const struct tool_command tool_commands[] = {
	{ "info",  cmd_info,  "show a disk's geometry, properties and layer tree" },
	{ "copy",  cmd_copy,  "copy one disk stack to another (sparse-aware)" },
	{ "bench", cmd_bench, "in-process load generator (IOPS, bandwidth, latency)" },
	{ "create", cmd_create, "create a raw, fixed-VHD or SQLite (.dbhd) disk image" },
	{ "serve", cmd_serve, "serve disks over NBD (TCP, Unix socket, stdio, TLS)" },
	{ "ublk",  cmd_ublk,  "serve a disk as /dev/ublkbN (add, list, del, recover)" },
	{ "vhost-user-blk", cmd_vhost_blk, "serve a disk to QEMU as a vhost-user virtio-blk device" },
	{ "vhost-user-scsi", cmd_vhost_scsi, "serve SCSI LUNs to QEMU as a vhost-user virtio-scsi HBA" },
	{ "uml-nvme", cmd_uml_nvme, "serve disks as an NVMe PCI function to User-Mode Linux (virt-pci)" },
	{ "ctl",   cmd_ctl,   "call a method of a running serve's control socket (JSON-RPC)" },
	{ NULL, NULL, NULL },
};

static const struct tool_command *tool_command_find(const char *name)
{
	for (const struct tool_command *c = tool_commands; c->name; c++)
		if (strcmp(c->name, name) == 0)
			return c;
	return NULL;
}

static void usage_main(FILE *fp)
{
	fprintf(fp,
		"Usage: diskstack [--cache-dir DIR] COMMAND [ARGS...]\n"
		"       diskstack --help | --version\n"
		"       diskstack help [COMMAND | specs]\n"
		"\n"
		"Commands:\n");
	for (const struct tool_command *c = tool_commands; c->name; c++)
		fprintf(fp, "  %-8s %s\n", c->name, c->summary);
	fprintf(fp,
		"\n"
		"Run 'diskstack COMMAND --help' for a command's options.\n"
		"\n"
		"Global options (before COMMAND):\n"
		"  --cache-dir DIR  root of autocache: caches (default: $DISKSTACK_AUTOCACHE_DIR)\n"
		"\n"
		"Disk specs (SPEC):\n");
	spec_print_usage(fp, "  ");
	fprintf(fp,
		"\n"
		"Sizes take K/M/G/T suffixes (powers of 1024). A trailing \",ro\" opens the\n"
		"whole disk read-only.\n"
		DOCS_HINT "\n");
}

static void usage_specs(FILE *fp)
{
	fprintf(fp, "Disk specs (SPEC):\n");
	spec_print_usage(fp, "  ");
	fprintf(fp,
		"\n"
		"Sizes: digits, an optional K/M/G/T suffix (powers of 1024), then an\n"
		"optional B. A trailing \",ro\" applies to the whole disk. Layer kinds\n"
		"(memdiff:, sqldiff:, autocache:) stack on the spec that follows them.\n"
		"Examples:\n"
		"  mem:1G                           1 GiB RAM disk\n"
		"  memdiff:file:base.img            throw-away RAM overlay over base.img\n"
		"  file:disk.img;create=8G          create (or truncate) an 8 GiB raw file\n"
		DOCS_HINT "\n");
}

static int cmd_help(int argc, char **argv)
{
	if (argc < 2) {
		usage_main(stdout);
		return 0;
	}
	if (argc > 2)
		return tool_usage_error("help", "too many arguments");
	if (strcmp(argv[1], "specs") == 0 || strcmp(argv[1], "spec") == 0 ||
	    strcmp(argv[1], "SPECS") == 0) {
		usage_specs(stdout);
		return 0;
	}
	const struct tool_command *c = tool_command_find(argv[1]);
	if (!c)
		return tool_usage_error("help", "unknown command '%s' (commands: info, copy, bench, create, serve, ublk, vhost-user-blk, vhost-user-scsi, ctl, uml-nvme; "
					"or 'specs')", argv[1]);
	char *sub[] = { (char *)c->name, (char *)"--help", NULL };
	return c->run(2, sub);
}

int main(int argc, char **argv)
{
	log_set_program("diskstack");

	if (argc < 2) {
		fprintf(stderr, "diskstack: missing command\n");
		usage_main(stderr);
		return EXIT_USAGE;
	}
	const char *name = argv[1];
	if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0) {
		usage_main(stdout);
		return 0;
	}
	if (strcmp(name, "--cache-dir") == 0 || strncmp(name, "--cache-dir=", 12) == 0) {
		if (name[11] == '=') {
			tool_ctx.cache_dir = name + 12;
			argc -= 1;
			argv += 1;
		} else if (argc < 3) {
			fprintf(stderr, "diskstack: option '--cache-dir' needs an argument\n");
			return EXIT_USAGE;
		} else {
			tool_ctx.cache_dir = argv[2];
			argc -= 2;
			argv += 2;
		}
		if (!*tool_ctx.cache_dir) {
			fprintf(stderr, "diskstack: --cache-dir is empty\n");
			return EXIT_USAGE;
		}
		if (argc < 2) {
			fprintf(stderr, "diskstack: missing command\n");
			return EXIT_USAGE;
		}
		name = argv[1];
	}
	if (strcmp(name, "--version") == 0 || strcmp(name, "-V") == 0) {
		printf("diskstack %s\n", PACKAGE_VERSION);
		return 0;
	}
	if (strcmp(name, "help") == 0)
		return cmd_help(argc - 1, argv + 1);
	if (name[0] == '-') {
		fprintf(stderr, "diskstack: unknown option '%s'\n"
			"Try 'diskstack --help'.\n", name);
		return EXIT_USAGE;
	}
	const struct tool_command *c = tool_command_find(name);
	if (!c) {
		fprintf(stderr, "diskstack: unknown command '%s'\n"
			"Try 'diskstack --help' for the list of commands.\n", name);
		return EXIT_USAGE;
	}
	return c->run(argc - 1, argv + 1);
}

/* ---- shared helpers (tool.h) ------------------------------------------- */

/* "diskstack CMD: " and the message on stderr (no newline). */
static void tool_vmessage(const char *cmd, const char *fmt, va_list ap)
	__attribute__((format(printf, 2, 0)));

static void tool_vmessage(const char *cmd, const char *fmt, va_list ap)
{
	fprintf(stderr, "diskstack %s: ", cmd);
	vfprintf(stderr, fmt, ap);
}

int tool_usage_error(const char *cmd, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	tool_vmessage(cmd, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry 'diskstack %s --help'.\n", cmd);
	return EXIT_USAGE;
}

int tool_error(const char *cmd, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	tool_vmessage(cmd, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return EXIT_RUNTIME;
}

int tool_bad_option(const char *cmd, int opt, char **argv)
{
	const char *arg = optind > 0 ? argv[optind - 1] : "?";

	if (opt == ':')
		return tool_usage_error(cmd, "option '%s' needs an argument", arg);
	if (optopt && optopt != '?')
		return tool_usage_error(cmd, "unknown option '-%c'", optopt);
	return tool_usage_error(cmd, "unknown option '%s'", arg);
}

int tool_parse_size(const char *s, uint64_t *out)
{
	uint64_t v = 0;
	const char *p = s;
	unsigned shift = 0;

	if (!s || *p < '0' || *p > '9')
		return -EINVAL;
	for (; *p >= '0' && *p <= '9'; p++) {
		if (MUL_OVERFLOW(v, 10, &v) || ADD_OVERFLOW(v, (uint64_t)(*p - '0'), &v))
			return -EINVAL;
	}
	switch (*p) {
	case 'K': case 'k': shift = 10; p++; break;
	case 'M': case 'm': shift = 20; p++; break;
	case 'G': case 'g': shift = 30; p++; break;
	case 'T': case 't': shift = 40; p++; break;
	default: break;
	}
	if (shift && *p == 'i' && (p[1] == 'B' || p[1] == 'b'))
		p += 2;
	else if (*p == 'B' || *p == 'b')
		p++;
	if (*p)
		return -EINVAL;
	if (shift && v > (UINT64_MAX >> shift))
		return -EINVAL;
	*out = v << shift;
	return 0;
}

int tool_parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	uint64_t v = 0;

	if (!s || !*s)
		return -EINVAL;
	for (const char *p = s; *p; p++) {
		if (*p < '0' || *p > '9')
			return -EINVAL;
		if (MUL_OVERFLOW(v, 10, &v) || ADD_OVERFLOW(v, (uint64_t)(*p - '0'), &v))
			return -EINVAL;
	}
	if (v < min || v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

int tool_parse_duration_ns(const char *s, uint64_t *out)
{
	static const struct { const char *suffix; double ns; } units[] = {
		{ "ns", 1.0 }, { "us", 1e3 }, { "ms", 1e6 }, { "s", 1e9 }, { "", 1e9 },
		{ "m", 60e9 }, { "min", 60e9 }, { "h", 3600e9 },
	};
	const char *p = s;
	bool digits = false, dot = false;

	if (!s)
		return -EINVAL;
	for (; (*p >= '0' && *p <= '9') || (*p == '.' && !dot); p++) {
		if (*p == '.')
			dot = true;
		else
			digits = true;
	}
	if (!digits)
		return -EINVAL;
	char num[64];
	size_t n = (size_t)(p - s);
	if (n >= sizeof(num))
		return -EINVAL;
	memcpy(num, s, n);
	num[n] = '\0';
	double v = strtod(num, NULL);
	for (size_t i = 0; i < ARRAY_SIZE(units); i++) {
		if (strcmp(p, units[i].suffix) == 0) {
			double ns = v * units[i].ns;
			if (!(ns >= 0) || ns > 1e18)
				return -EINVAL;
			*out = (uint64_t)(ns + 0.5);
			return 0;
		}
	}
	return -EINVAL;
}

void tool_human_size(uint64_t bytes, char *buf, size_t len)
{
	static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB" };
	unsigned u = 0;

	while (u + 1 < ARRAY_SIZE(units) && bytes >= (1ull << (10 * (u + 1))))
		u++;
	if (u == 0) {
		snprintf(buf, len, "%" PRIu64 " B", bytes);
		return;
	}
	uint64_t unit = 1ull << (10 * u);
	if (bytes % unit == 0)
		snprintf(buf, len, "%" PRIu64 " %s", bytes / unit, units[u]);
	else
		snprintf(buf, len, "%.2f %s", (double)bytes / (double)unit, units[u]);
}

int tool_parse_spec(const char *cmd, const char *what, const char *text, struct spec **out)
{
	char err[512] = "";

	if (spec_parse(text, out, err, sizeof(err)) < 0) {
		fprintf(stderr, "diskstack %s: bad %s '%s': %s\n"
			"Run 'diskstack help specs' for the list of disk kinds.\n",
			cmd, what, text, err[0] ? err : "invalid spec");
		return EXIT_USAGE;
	}
	return 0;
}

int tool_open_spec(const char *cmd, const char *what, const struct spec *s, bool read_only,
		   struct disk **out)
{
	char err[512] = "";
	int ret = spec_open(s, read_only, &tool_ctx, out, err, sizeof(err));

	if (ret < 0) {
		char *shown = url_redact_text_dup(s->text);

		fprintf(stderr, "diskstack %s: cannot open %s '%s': %s\n", cmd, what,
			shown ? shown : "", err[0] ? err : strerror(-ret));
		free(shown);
		return ret == -EINVAL ? EXIT_USAGE : EXIT_RUNTIME;
	}
	return 0;
}

const struct spec_ctx *tool_spec_ctx(void)
{
	return &tool_ctx;
}

bool tool_spec_creates(const struct spec *s)
{
	if (!s)
		return false;
	if (s->create)
		return true;
	if (tool_spec_creates(s->inner))
		return true;
	for (unsigned i = 0; i < s->nmembers; i++)
		if (tool_spec_creates(s->members[i]))
			return true;
	return false;
}

/* Length of the valid UTF-8 sequence at @p (1..4), or 0 if invalid. */
static size_t utf8_seq_len(const unsigned char *p)
{
	unsigned char c = p[0];
	size_t n;
	uint32_t cp;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf) {
		n = 2; cp = c & 0x1f;
	} else if (c >= 0xe0 && c <= 0xef) {
		n = 3; cp = c & 0x0f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		n = 4; cp = c & 0x07;
	} else {
		return 0;
	}
	for (size_t i = 1; i < n; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (p[i] & 0x3f);
	}
	if ((n == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
	    (n == 4 && (cp < 0x10000 || cp > 0x10ffff)))
		return 0;
	return n;
}

json_t *tool_json_str(const char *s)
{
	const unsigned char *p = (const unsigned char *)(s ? s : "");
	size_t len = strlen((const char *)p), o = 0;
	/* Each invalid byte becomes U+FFFD (3 bytes). */
	char *buf = malloc(len * 3 + 1);
	json_t *j;

	if (!buf)
		return NULL;
	while (*p) {
		size_t n = utf8_seq_len(p);

		if (n == 0) {
			memcpy(buf + o, "\xef\xbf\xbd", 3);
			o += 3;
			p++;
			continue;
		}
		memcpy(buf + o, p, n);
		o += n;
		p += n;
	}
	j = json_stringn(buf, o);
	free(buf);
	return j;
}

int tool_json_print(FILE *fp, const json_t *j, bool pretty)
{
	size_t flags = JSON_ENCODE_ANY | JSON_REAL_PRECISION(10) |
		       (pretty ? JSON_INDENT(2) : JSON_COMPACT);

	if (json_dumpf(j, fp, flags) < 0 || fputc('\n', fp) == EOF)
		return -EIO;
	return 0;
}

const char *tool_unmap_str(int unmap_behavior)
{
	switch (unmap_behavior) {
	case DISK_UNMAP_UNSPECIFIED: return "unspecified";
	case DISK_UNMAP_IGNORED:     return "ignored";
	case DISK_UNMAP_ZEROES:      return "zeroes";
	default:                     return "unknown";
	}
}

void tool_caps_foreach(uint32_t caps, void (*fn)(const char *name, void *opaque), void *opaque)
{
	static const struct { uint32_t bit; const char *name; } names[] = {
		{ DISK_CAP_COHERENT,       "coherent" },
		{ DISK_CAP_VOLATILE_CACHE, "volatile-cache" },
		{ DISK_CAP_RESIZE,         "resize" },
		{ DISK_CAP_EJECT,          "eject" },
		{ DISK_CAP_PR,             "pr" },
		{ DISK_CAP_BLOCK_STATUS,   "block-status" },
		{ DISK_CAP_FAST_ZERO,      "fast-zero" },
		{ DISK_CAP_PERSISTENT,     "persistent" },
		{ DISK_CAP_XFORM,          "xform" },
		{ DISK_CAP_PIPE,           "pipe" },
	};
	uint32_t known = 0;

	for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
		known |= names[i].bit;
		if (caps & names[i].bit)
			fn(names[i].name, opaque);
	}
	for (unsigned b = 0; b < 32; b++) {
		if ((caps & ~known) & (1u << b)) {
			char hex[16];
			snprintf(hex, sizeof(hex), "0x%x", 1u << b);
			fn(hex, opaque);
		}
	}
}

struct caps_buf {
	char *buf;
	size_t len, used;
	const char *sep;
};

static void caps_append(const char *name, void *opaque)
{
	struct caps_buf *cb = opaque;
	int n;

	if (cb->used >= cb->len)
		return;
	n = snprintf(cb->buf + cb->used, cb->len - cb->used, "%s%s", cb->used ? cb->sep : "", name);
	if (n > 0)
		cb->used = MIN(cb->len, cb->used + (size_t)n);
}

void tool_caps_str(uint32_t caps, const char *sep, char *buf, size_t len)
{
	struct caps_buf cb = { buf, len, 0, sep };

	if (len)
		buf[0] = '\0';
	tool_caps_foreach(caps, caps_append, &cb);
	if (cb.used == 0)
		snprintf(buf, len, "none");
}
