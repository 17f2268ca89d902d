/* SPDX-License-Identifier: MIT */
/*
 * sqlitelayer.h: the SQLite layer (.dbhd files, byte-compatible with
 * OpenVMM's disklayer_sqlite, docs/openvmm-compat.md §4.2), the
 * auto-cache layer built on it (§4.3), and the spec kinds sql:, sqldiff:
 * and autocache:.
 *
 * A .dbhd is a SQLite 3 database in WAL mode with two tables: sectors (one
 * row per present logical sector; data NULL = present and all zero) and
 * meta (one JSON row: logically_read_only, sector_count, sector_size).
 */
#ifndef DISKSTACK_STORAGE_SQLITELAYER_H
#define DISKSTACK_STORAGE_SQLITELAYER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "storage/layered.h"
#include "storage/kind.h"

/* Parameters of a format (§4.2 "Formatting" and "Format-on-attach"). */
struct sqlitelayer_format {
	bool logically_read_only;  /* the layer takes only write-no-overwrite (caches) */
	uint64_t len_bytes;        /* 0 = the lower layer's size (attach fails without one) */
	uint32_t sector_size;      /* 0 = the lower layer's, else 512; else a power of two >= 512 */
	/* Appended: the origin a cache is bound to (struct disk_info.origin),
	 * stored as the meta row's "origin" field; NULL = none. Borrowed. */
	const char *origin;
};

struct sqlitelayer_opts {
	bool read_only;            /* open the file read-only (no writer connection) */
	/* Format the file when the layer is attached (creating it if needed),
	 * with these parameters; NULL = open an existing .dbhd. Borrowed: copied. */
	const struct sqlitelayer_format *format;
	unsigned reader_conns;     /* reader connections, 0 = default (4) */
};

/*
 * Creates a SQLite layer over @path (borrowed; copied). Without @opts->format
 * the file is opened now and its meta row read: a missing file, a file that
 * is not a .dbhd, or bad metadata fail here (-ENOENT, -EINVAL, -EIO, with a
 * message in @err). With a format, the file is created/formatted when the
 * layer is attached, so that size and sector size can come from the layer
 * below. Returns 0 or -errno.
 */
int sqlitelayer_new(const char *path, const struct sqlitelayer_opts *opts, struct layer **out,
		    char *err, size_t errlen);

/*
 * Formats @path as a .dbhd now (creating the file if it does not exist;
 * wiping an existing database), with @fmt->len_bytes and @fmt->sector_size
 * (0 = 512) taken literally. Returns 0 or -errno with a message in @err.
 */
int sqlitelayer_format_file(const char *path, const struct sqlitelayer_format *fmt, char *err,
			    size_t errlen);

/*
 * Creates an auto-cache layer (§4.3): at attach, the cache file is
 * <@cache_root>/<key>/cache.dbhd, where key is @key or, when @key is NULL,
 * the lower layer's disk id as 32 lowercase hex digits (then the lower
 * layer must also tell its origin). A missing file is created atomically
 * (formatted in a temporary directory, then hard-linked into place, so
 * racing processes end up sharing one valid file), unless @read_only.
 * The cache is bound to the lower layer's origin (layer_meta.origin, NULL
 * included), sector count and sector size, recorded in its meta row: an
 * existing cache made for anything else is emptied and rebound in one
 * transaction (opened @read_only: refused), and a process whose cache was
 * rebound under it by another stops using it (docs/layer-autocache.md).
 * The layer is logically read-only (it is filled only through
 * write-no-overwrite), so it can sit in the write path of read-only disks
 * only. Returns 0 or -errno.
 */
int autocache_layer_new(const char *cache_root, const char *key, bool read_only,
			struct layer **out, char *err, size_t errlen);

/* Formats @bytes' 16 disk-id bytes as 32 lowercase hex digits into @buf
 * (room for 33). */
void autocache_key_from_id(const uint8_t id[16], char buf[33]);

/* The file path of an attached SQLite or auto-cache layer (borrowed), or
 * NULL if @l is not one. */
const char *sqlitelayer_path(struct layer *l);

/* How many per-reactor contexts the layer @l holds (0 if @l is not an
 * SQLite layer): one per live reactor that has used it. For tests. */
unsigned sqlitelayer_reactor_contexts(struct layer *l);

/* Spec open functions (the kinds in sqlitelayer-spec.c): sql:, sqldiff:, autocache:. */
int sqlitelayer_spec_open_sql(const struct spec *s, bool read_only, const struct spec_ctx *ctx,
			      struct layer **out, bool *read_cache, char *err, size_t errlen);
int sqlitelayer_spec_open_sqldiff(const struct spec *s, bool read_only,
				  const struct spec_ctx *ctx, struct layer **out,
				  bool *read_cache, char *err, size_t errlen);
int sqlitelayer_spec_open_autocache(const struct spec *s, bool read_only,
				    const struct spec_ctx *ctx, struct layer **out,
				    bool *read_cache, char *err, size_t errlen);

/* The autocache root: ctx->cache_dir, else $DISKSTACK_AUTOCACHE_DIR (@ctx
 * may be NULL). Returns 0 with a borrowed string in *out, or -EINVAL with a
 * message in @err when neither is set. Built with or without SQLite (the
 * kind's precheck uses it). */
int sqlitelayer_autocache_dir(const struct spec_ctx *ctx, const char **out, char *err,
			      size_t errlen);

#endif
