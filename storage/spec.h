/* SPDX-License-Identifier: MIT */
/*
 * spec.h: disk specs (the command-line grammar, reference/openvmm-disk-stack.md
 * §6 and DESIGN.md §6) and the registry of disk kinds.
 *
 *   mem:<size>                         RAM disk (512-byte sectors)
 *   memdiff:<spec>                     RAM diff layer over <spec> (opened read-only)
 *   file:<path>[;direct][;create=<size>]   raw file / block device
 *   <path>                             same as file:<path> (no ':' anywhere,
 *                                      or an absolute path)
 *   sql:<path>[;create=<size>]         SQLite disk (.dbhd)
 *   sqldiff:<path>[;create]:<spec>     SQLite diff layer over <spec>
 *   autocache:[<key>]:<spec>           SQLite read cache over <spec>
 *   blob:flat|vhd1:<url>               read-only HTTP(S) blob
 *   crypt:xts-aes-256:<keyfile>:<spec> XTS-AES-256 encryption
 *   prwrap:<spec>                      persistent-reservation emulation
 *   delay:<time>[/<time>]:<spec>       read[/write] delay, ms (or us suffix)
 *   striped:<chunk>:<spec>+<spec>...   striping over several disks
 *   nbd:<uri>                          a remote NBD export (libnbd)
 *
 * Sizes: decimal digits, optional K/M/G/T (powers of 1024, upper case), then
 * an optional B. Times (delay): decimal digits, then "ms" (the default) or
 * "us". A trailing ",ro" (or ",ro=on", ",ro=off") applies to the whole disk;
 * specs cannot otherwise contain commas (except inside [...]). Striped
 * members cannot contain '+'. Parsing never opens anything; errors point at
 * the offending part.
 */
#ifndef DISKSTACK_STORAGE_SPEC_H
#define DISKSTACK_STORAGE_SPEC_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "storage/disk.h"
#include "storage/layered.h"

struct spec;
struct spec_kind;

/* Options that come from the environment or the command line, not the spec. */
struct spec_ctx {
	const char *cache_dir;    /* autocache root; NULL = $DISKSTACK_AUTOCACHE_DIR */
};

/* A parsed spec node (owned by its parent; the root by the caller). */
struct spec {
	const struct spec_kind *kind;
	const char *text;         /* the whole spec string (copy owned by the root) */
	size_t off, len;          /* this node's extent in @text */
	char *path;               /* file/sql/sqldiff path, blob/nbd url, crypt key file, autocache key */
	char *arg;                /* blob format, crypt cipher */
	bool direct;              /* file: ;direct */
	bool create;              /* file/sql: ;create=<size>, sqldiff: ;create */
	uint64_t size;            /* mem size, create= size, striped chunk bytes */
	uint64_t delay_read_us, delay_write_us;
	struct spec *inner;       /* memdiff, sqldiff, autocache, crypt, prwrap, delay */
	struct spec **members;    /* striped */
	unsigned nmembers;
	bool ro;                  /* root only: trailing ,ro */
	bool bare;                /* file: given as a bare path (no "file:") */
};

/* How a kind is opened. */
enum spec_shape {
	SPEC_SHAPE_PATH,          /* file:<path>[;direct][;create=<size>] */
	SPEC_SHAPE_SIZE,          /* mem:<size> */
	SPEC_SHAPE_INNER,         /* memdiff:<spec>, prwrap:<spec> */
	SPEC_SHAPE_SQL,           /* sql:<path>[;create=<size>] */
	SPEC_SHAPE_SQLDIFF,       /* sqldiff:<path>[;create]:<spec> */
	SPEC_SHAPE_KEY_INNER,     /* autocache:[<key>]:<spec> */
	SPEC_SHAPE_BLOB,          /* blob:flat|vhd1:<url> */
	SPEC_SHAPE_CRYPT,         /* crypt:<cipher>:<keyfile>:<spec> */
	SPEC_SHAPE_DELAY,         /* delay:<time>[/<time>]:<spec> */
	SPEC_SHAPE_STRIPED,       /* striped:<chunk>:<spec>+<spec>... */
	SPEC_SHAPE_URI,           /* nbd:<uri> */
};

/*
 * A registry entry: one line per kind. Exactly one of the open functions is
 * set. A layer kind pushes one layer (and the resolver continues with
 * @inner); a disk kind makes a complete disk. Kinds whose implementation has
 * not landed have neither and are refused by the resolver by name.
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
	enum spec_shape shape;
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
	/* Appended after the first version: */
	const char *summary;      /* what it is, one line for --help and info */
	/* Layer kinds: the layer is a read cache (autocache): opened writable
	 * whatever the disk's flag, filled from the layers below (§3.9). */
	bool read_cache;
};

/* The registry, terminated by an entry with name NULL. */
extern const struct spec_kind spec_kinds[];

/* Finds a kind by name; NULL if unknown. */
const struct spec_kind *spec_kind_find(const char *name);
/* True when this build can open @k (it has an open function). */
bool spec_kind_available(const struct spec_kind *k);
/* Writes the list of kinds with their usage lines and summaries (for
 * --help), one per line, each preceded by @indent (NULL = none); kinds not
 * available in this build are marked so. Ends with the bare-path form. */
void spec_print_usage(FILE *fp, const char *indent);

/*
 * Parses @text (borrowed; the tree keeps its own copy). Returns 0 with the
 * root in *out (owned by the caller, free with spec_free), or -EINVAL with
 * a message in @err of @errlen bytes (@err may be NULL) that quotes the
 * offending part and gives its offset in @text ("bad size 'invalid' at
 * offset 4 of 'mem:invalid'") and, for unknown kinds, lists the valid ones.
 *
 * Field use per kind (others zero/NULL):
 *   mem        size
 *   memdiff    inner
 *   file       path, direct, create + size (create=)
 *   sql        path, create + size (create=)
 *   sqldiff    path, create (;create), inner
 *   autocache  path = the key (NULL when empty: use the lower disk id), inner
 *   blob       arg = "flat" or "vhd1", path = the URL (http:// or https://)
 *   crypt      arg = "xts-aes-256", path = the key file, inner
 *   prwrap     inner
 *   delay      delay_read_us, delay_write_us (the same when one time), inner
 *   striped    size = chunk bytes (non-zero multiple of 512), members (>= 1)
 *   nbd        path = the URI (scheme checked)
 * The bare-path form parses as a file node.
 */
int spec_parse(const char *text, struct spec **out, char *err, size_t errlen);
/* Frees a parsed spec (a root from spec_parse). NULL allowed. */
void spec_free(struct spec *s);

/* Parses a size ("512", "64K", "1G", "1GB"). Returns 0 or -EINVAL/-ERANGE. */
int spec_parse_size(const char *s, size_t len, uint64_t *out);
/* Formats @bytes compactly ("1G", "1536K", "1000"). */
void spec_format_size(uint64_t bytes, char *buf, size_t len);

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
 * built in are -ENOTSUP ("disk kind 'crypt' is not available in this
 * build").
 */
int spec_open(const struct spec *s, bool read_only, const struct spec_ctx *ctx,
	      struct disk **out, char *err, size_t errlen);

/* Parses and opens in one step. */
int spec_open_str(const char *text, bool read_only, const struct spec_ctx *ctx,
		  struct disk **out, char *err, size_t errlen);

/* The autocache root: ctx->cache_dir, else $DISKSTACK_AUTOCACHE_DIR (@ctx
 * may be NULL). Returns 0 with a borrowed string in *out, or -EINVAL with a
 * message in @err when neither is set. The resolver checks it before
 * opening an autocache node. */
int spec_autocache_dir(const struct spec_ctx *ctx, const char **out, char *err, size_t errlen);

#endif
