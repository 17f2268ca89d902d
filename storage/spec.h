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
 * an optional B. A trailing ",ro" (or ",ro=on") applies to the whole disk.
 * Parsing never opens anything; errors point at the offending part.
 */
#ifndef DISKSTACK_STORAGE_SPEC_H
#define DISKSTACK_STORAGE_SPEC_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "disk.h"
#include "layered.h"

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
 */
struct spec_kind {
	const char *name;
	enum spec_shape shape;
	const char *usage;        /* one line for --help */
	/* Layer kinds: open the layer this node adds. *read_cache tells the
	 * layered disk to fill it with what lower layers return. */
	int (*open_layer)(const struct spec *s, bool read_only, const struct spec_ctx *ctx,
			  struct layer **out, bool *read_cache, char *err, size_t errlen);
	/* For layer kinds with an inner spec: whether the inner spec is opened
	 * read-only regardless of the disk's flag (memdiff, sqldiff). */
	bool inner_forced_ro;
	/* Disk kinds: open the complete disk for @s. */
	int (*open_disk)(const struct spec *s, bool read_only, const struct spec_ctx *ctx,
			 struct disk **out, char *err, size_t errlen);
};

/* The registry, terminated by an entry with name NULL. */
extern const struct spec_kind spec_kinds[];

/* Finds a kind by name; NULL if unknown. */
const struct spec_kind *spec_kind_find(const char *name);
/* Writes the list of kinds with their usage lines (for --help). */
void spec_print_usage(FILE *fp, const char *indent);

/* Parses @text. Returns 0 or -EINVAL with a message in @err pointing at the
 * offending part and, for unknown kinds, listing the valid ones. */
int spec_parse(const char *text, struct spec **out, char *err, size_t errlen);
/* Frees a parsed spec. NULL allowed. */
void spec_free(struct spec *s);

/* Parses a size ("512", "64K", "1G", "1GB"). Returns 0 or -EINVAL/-ERANGE. */
int spec_parse_size(const char *s, size_t len, uint64_t *out);
/* Formats @bytes compactly ("1G", "1536K", "1000"). */
void spec_format_size(uint64_t bytes, char *buf, size_t len);

/*
 * Opens a parsed spec. @read_only is the caller's flag OR'd with the spec's
 * ,ro. Read-only flows as §6.3 / §3.9: memdiff and sqldiff open their inner
 * spec read-only; read caches are opened writable. Returns 0 or -errno with
 * a message in @err.
 */
int spec_open(const struct spec *s, bool read_only, const struct spec_ctx *ctx,
	      struct disk **out, char *err, size_t errlen);

/* Parses and opens in one step. */
int spec_open_str(const char *text, bool read_only, const struct spec_ctx *ctx,
		  struct disk **out, char *err, size_t errlen);

#endif
