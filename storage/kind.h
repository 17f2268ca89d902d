/* SPDX-License-Identifier: MIT */
/*
 * kind.h: the contract between the spec parser (spec.h) and the disk kinds
 * (docs/specs.md; bare § numbers below are docs/openvmm-compat.md's). A
 * backend, layer or decorator that can be named in a spec declares one
 * `const struct spec_kind` in its own file, describing its syntax as data
 * and giving its open function; the table in storage/registry.c lists them.
 * The parser knows only the generic pieces below, never a kind's header.
 *
 * The grammar of a node is
 *
 *     <kind>:<arg>:<arg>...[:<tail>]
 *
 * with the kind's arguments (struct spec_arg, each of a generic type) in
 * order, separated by ':', and then its tail: nothing (the last argument
 * takes the rest of the node, ':' included), one inner spec, or a list of
 * member specs separated by '+'. That covers every shape a kind has: a size
 * (mem:), a path with ;options (file:, sql:), an inner spec (memdiff:,
 * prwrap:), leading arguments then an inner spec (sqldiff:, autocache:,
 * crypt:, delay:, error:, whose rules argument spans several ':'-fields
 * through its extent function), a list of members (striped:) and an
 * opaque URI (nbd:, blob:). Parsed values land in the fields of struct
 * spec that the descriptors name.
 */
#ifndef DISKSTACK_STORAGE_KIND_H
#define DISKSTACK_STORAGE_KIND_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "storage/disk.h"
#include "storage/layered.h"

struct spec_kind;

/* Options that come from the environment or the command line, not the spec. */
struct spec_ctx {
	const char *cache_dir;    /* autocache root; NULL = $DISKSTACK_AUTOCACHE_DIR */
};

/* A parsed spec node (owned by its parent; the root by the caller). Which
 * fields a kind fills is said by its descriptors (spec.h lists them). */
struct spec {
	const struct spec_kind *kind;
	const char *text;         /* the whole spec string (copy owned by the root) */
	size_t off, len;          /* this node's extent in @text */
	char *path;               /* file/sql/sqldiff path, blob/nbd url, crypt key file, autocache key */
	char *arg;                /* blob format, crypt cipher, error rules */
	bool direct;              /* file: ;direct */
	bool create;              /* file/sql: ;create=<size>, sqldiff: ;create */
	uint64_t size;            /* mem size, create= size, striped chunk bytes */
	uint64_t delay_read_us, delay_write_us;
	struct spec *inner;       /* memdiff, sqldiff, autocache, crypt, prwrap, delay */
	struct spec **members;    /* striped */
	unsigned nmembers;
	bool ro;                  /* root only: trailing ,ro */
	bool dvd;                 /* root only: trailing ,dvd (a DVD LU; sets ro) */
	bool removable;           /* root only: trailing ,removable (a removable SCSI disk) */
	bool bare;                /* file: given as a bare path (no "file:") */
};

/* ---- the syntax of a kind, as data ------------------------------------------- */

/* Where a value goes: the offset of a field of struct spec. */
#define SPEC_FIELD(member) offsetof(struct spec, member)

/* A ;option of a SPEC_ARG_PATH argument. */
enum spec_option_type {
	SPEC_OPTION_FLAG,         /* ;<name>: sets the bool at @set */
	SPEC_OPTION_SIZE,         /* ;<name>=<size>: sets the bool at @set and the
	                           * uint64_t at @value (non-zero multiple of 512) */
};

struct spec_option {
	const char *name;         /* "direct", "create"; NULL ends a list */
	enum spec_option_type type;
	size_t set;               /* SPEC_FIELD of a bool */
	size_t value;             /* SIZE: SPEC_FIELD of a uint64_t */
	const char *value_name;   /* SIZE: in messages ("create size") */
};

enum spec_arg_type {
	SPEC_ARG_SIZE,            /* a size, non-zero multiple of 512 -> uint64_t */
	SPEC_ARG_PATH,            /* <path>[;<option>...] -> char *, options as listed */
	SPEC_ARG_WORD,            /* one of @words -> char * */
	SPEC_ARG_STRING,          /* any non-empty text -> char * */
	SPEC_ARG_NAME,            /* optional; no '/', not "." or ".." -> char * or NULL */
	SPEC_ARG_TIMES,           /* <time>[/<time>] (ms, or us suffix) -> two uint64_t in
	                           * microseconds; one time sets both */
	SPEC_ARG_URI,             /* opaque non-empty text, vetted by @check -> char * */
};

/* What SPEC_ARG_URI's check found wrong: the part [off, off + len) of the
 * argument (len 0: no quote), a message and an optional hint. */
struct spec_arg_error {
	size_t off, len;
	const char *what;
	const char *hint;
};

/* Fills @e (the kinds' checks and parsers report through it) and returns
 * -EINVAL, so that a check can end with `return spec_arg_fail(...)`. */
static inline int spec_arg_fail(struct spec_arg_error *e, size_t off, size_t len,
				const char *what, const char *hint)
{
	e->off = off;
	e->len = len;
	e->what = what;
	e->hint = hint;
	return -EINVAL;
}

struct spec_arg {
	enum spec_arg_type type;
	/* The noun in messages: "missing <name>", "bad <name>", "invalid
	 * <name>" ("size", "cipher", "NBD URI"). */
	const char *name;
	size_t field;             /* SPEC_FIELD of where the value goes */
	size_t field2;            /* TIMES: the second (write) time */
	const char *const *words; /* WORD: the valid words, NULL-terminated */
	const struct spec_option *options; /* PATH: the ;options, ended by a NULL name */
	const char *hint;         /* added to errors about the value ("valid types: flat, vhd1") */
	const char *missing_hint; /* added to "missing <name>" (default: @hint, or the type's) */
	/* When no ':' follows this (non-final) argument: the message and its
	 * hint ("missing ':<spec>' after the delay", "write delay:..."). */
	const char *missing_next;
	const char *missing_next_hint;
	/* URI: returns 0, or -EINVAL with @e filled. */
	int (*check)(const char *text, size_t len, struct spec_arg_error *e);
	/* Optional, for an argument that may itself contain ':' (error:
	 * rules): the length of the argument at the start of @text, the
	 * @len bytes of the node left; at most @len. Without it a (non-final)
	 * argument ends at the next ':'. */
	size_t (*extent)(const char *text, size_t len);
	/* STRING: the value names a local file the open function opens (the
	 * crypt key file), as every PATH argument does: spec_map_files
	 * visits it. */
	bool local_file;
};

/* What follows the arguments. */
enum spec_tail {
	SPEC_TAIL_NONE,           /* nothing: the last argument takes the rest */
	SPEC_TAIL_INNER,          /* ':' and one inner spec (-> inner) */
	SPEC_TAIL_MEMBERS,        /* ':' and <spec>+<spec>... (-> members, nmembers) */
};

#define SPEC_MAX_ARGS 4

/* Where a node's writes persist (spec_write_path: frontends keep state
 * next to the data, e.g. a SCSI LU's persistent reservations). */
enum spec_writes {
	SPEC_WRITES_BELOW,        /* in its inner spec, if it has one (decorators,
	                           * read caches); none without (the default) */
	SPEC_WRITES_PATH,         /* in the local file its @path names */
	SPEC_WRITES_LOST,         /* kept by the node itself, nowhere lasting (RAM) */
};

/* ---- the registry entry ------------------------------------------------------ */

/*
 * A kind. Exactly one of the open functions is set in a build that has the
 * kind; neither when a dependency was left out (@unavailable then says
 * which), and such a kind still parses but is refused by name when opened.
 *
 * Open functions write a bare message to @err (no spec text: the resolver
 * prefixes the node's text, e.g. "file:/x.img: No such file or directory")
 * and return -errno. A disk kind with inner specs (crypt, prwrap, delay,
 * striped) opens each one as a separate disk with spec_open(inner,
 * read_only, ctx, ...) and may copy its message through unchanged (it is
 * already prefixed with the inner node's text).
 */
struct spec_kind {
	const char *name;
	const char *usage;        /* syntax, one line for --help ("mem:<size>") */
	/* Layer kinds: open the layer this node adds. @read_only is the flag
	 * for this layer (§3.9: false for read caches). *read_cache starts as
	 * the kind's @read_cache and tells the layered disk to fill the layer
	 * with what lower layers return. */
	int (*open_layer)(const struct spec *s, bool read_only, const struct spec_ctx *ctx,
			  struct layer **out, bool *read_cache, char *err, size_t errlen);
	/* For layer kinds with an inner spec: whether the inner spec is opened
	 * read-only regardless of the disk's flag (memdiff, sqldiff). */
	bool inner_forced_ro;
	/* Disk kinds: open the complete disk for @s. */
	int (*open_disk)(const struct spec *s, bool read_only, const struct spec_ctx *ctx,
			 struct disk **out, char *err, size_t errlen);
	const char *summary;      /* what it is, one line for --help and info */
	/* Layer kinds: the layer is a read cache (autocache): opened writable
	 * whatever the disk's flag, filled from the layers below (§3.9). */
	bool read_cache;

	/* The syntax: @nargs arguments, then the tail. */
	struct spec_arg args[SPEC_MAX_ARGS];
	unsigned nargs;
	enum spec_tail tail;
	/* A spec with no ':' (or starting with '/') is a node of this kind,
	 * parsed as its arguments (one kind only: file). */
	bool bare_path;
	/* Where writes through this node persist (spec_write_path). */
	enum spec_writes writes;
	/* Optional: checks, before anything in the tree is opened or
	 * created, what the node needs from the context (autocache: a cache
	 * directory). 0, or -errno with a message in @err. */
	int (*precheck)(const struct spec *s, const struct spec_ctx *ctx, char *err, size_t errlen);
	/* Optional: removes secrets from a spec text before it is shown
	 * (url_redact_text for kinds that take URLs); returns the length
	 * written to @out (always NUL-terminated). */
	size_t (*redact)(const char *text, char *out, size_t outlen);
	/* Why this build cannot open the kind ("this diskstack was built
	 * without SQLite"); NULL when it can. */
	const char *unavailable;
};

/* ---- what kinds call back ---------------------------------------------------- */

/*
 * Opens a parsed spec (@s borrowed; may be an inner node). The disk is
 * read-only when @read_only or the spec's ,ro is set. Layer kinds push
 * layers into one list, top first; a disk kind ends the list (inside a
 * list it becomes a disk-as-layer). A single plain disk is returned as is,
 * anything else becomes a layered disk with the disk's read-only flag.
 * Read-only flows as §6.3 / §3.9: each layer is opened with the running
 * flag (read caches writable), and everything below a layer is read-only
 * (no layer is write-through from the CLI; memdiff and sqldiff force it
 * anyway). Returns 0 with an owned reference in *out, or -errno with a
 * message in @err that starts with the failing node's text; kinds not
 * built in are -ENOTSUP ("sql:x.dbhd: this diskstack was built without
 * SQLite").
 */
int spec_open(const struct spec *s, bool read_only, const struct spec_ctx *ctx,
	      struct disk **out, char *err, size_t errlen);

/*
 * The open function of a decorator (a disk kind over one inner spec):
 * opens @s->inner with spec_open(@read_only), then calls @wrap with the
 * lower disk and @arg (borrowed). @wrap takes the lower disk over only on
 * success; when it fails the lower disk is released here. Returns 0 with
 * an owned reference in *out, or -errno (*out NULL) with a message in @err
 * from spec_open or @wrap.
 */
int spec_open_decorator(const struct spec *s, bool read_only, const struct spec_ctx *ctx,
			int (*wrap)(const struct spec *s, struct disk *lower, void *arg,
				    struct disk **out, char *err, size_t errlen),
			void *arg, struct disk **out, char *err, size_t errlen);

/* Parses a size ("512", "64K", "1G", "1GB"). Returns 0 or -EINVAL/-ERANGE. */
int spec_parse_size(const char *s, size_t len, uint64_t *out);
/* Parses a time: decimal digits, then "ms" (the default) or "us", into
 * microseconds. Returns 0 or -EINVAL/-ERANGE. */
int spec_parse_time_us(const char *s, size_t len, uint64_t *out_us);
/* Formats @bytes compactly ("1G", "1536K", "1000"). */
void spec_format_size(uint64_t bytes, char *buf, size_t len);

#endif
