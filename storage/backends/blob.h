/* SPDX-License-Identifier: MIT */
/*
 * blob.h: read-only HTTP(S) blob disks through libcurl (blob:flat|vhd1:<url>,
 * reference/openvmm-disk-stack.md §4.7).
 */
#ifndef DISKSTACK_STORAGE_BLOB_H
#define DISKSTACK_STORAGE_BLOB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "storage/disk.h"

struct spec;
struct spec_ctx;

enum blob_format {
	BLOB_FLAT = 0,     /* raw disk data; sector count = length / 512 */
	BLOB_VHD1,         /* fixed VHD: data followed by a 512-byte footer */
};

/* Tunables. blob_opts_default() fills the defaults used by specs. */
struct blob_opts {
	unsigned max_connections;      /* HTTP transfers in parallel (default 16) */
	uint32_t piece_bytes;          /* reads larger than this are split into
	                                  parallel range requests of this size
	                                  (multiple of 512; default 1 MiB) */
	unsigned retries;              /* extra attempts after a transient failure
	                                  (connection error, 5xx, 408, 429,
	                                  timeout, body cut short; default 4) */
	uint32_t backoff_ms;           /* delay before the first retry, doubled
	                                  each time (default 100) */
	uint32_t backoff_max_ms;       /* cap of the delay (default 2000) */
	uint32_t connect_timeout_ms;   /* TCP + TLS connect (default 10000) */
	uint32_t low_speed_bytes;      /* a transfer slower than this many bytes/s */
	uint32_t low_speed_time_s;     /* ... for this long fails (default 1024 B/s
	                                  for 30 s): a stalled server times out */
};

/* Fills @o with the defaults. */
void blob_opts_default(struct blob_opts *o);

/*
 * Opens the blob at @url (http:// or https://; borrowed) as a read-only
 * disk. The size comes from a HEAD request (200 with Content-Length,
 * following up to 5 redirects 301/302/307/308, never from HTTPS to HTTP);
 * BLOB_VHD1 then reads and checks the footer at length - 512. Reads go to
 * the URL the redirects ended at. @opts may be NULL (defaults). Returns 0
 * with an owned disk in *@out, or -errno with a message in @err (@errlen
 * bytes; it never contains the URL's credentials).
 */
int blob_open(const char *url, enum blob_format format, const struct blob_opts *opts,
	      struct disk **out, char *err, size_t errlen);

/* The open function of the blob: kind (blob-spec.c). A writable open
 * is refused with -EROFS: a layer that takes the writes must sit above. */
int blob_spec_open(const struct spec *s, bool read_only, const struct spec_ctx *ctx,
		   struct disk **out, char *err, size_t errlen);

/* For tests: true when a redirect from @from to @to is allowed (both
 * http(s), and not from https to http). */
bool blob_redirect_allowed(const char *from, const char *to);

#endif
