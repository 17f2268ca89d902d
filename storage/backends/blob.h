/* SPDX-License-Identifier: MIT */
/*
 * blob.h: read-only HTTP(S) blob disks through libcurl (blob:flat|vhd1:<url>,
 * docs/openvmm-compat.md §4.7).
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
	const char *unix_socket;       /* borrowed, copied at open: connect every
	                                  request (redirects included) to this
	                                  Unix socket instead of the URL's host
	                                  and port; NULL (default): TCP. For tests
	                                  and fuzzing: no name is resolved */
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

/* For tests: how many times the engine thread of blob disk @d (borrowed)
 * went to sleep for its whole idle period (1 s) while a retry with a
 * shorter backoff was waiting, which would start that retry late. Always 0
 * unless the engine is broken; counted from the timeouts it chose, never
 * from a clock. Returns the count or -EINVAL if @d is not a blob disk. */
int blob_idle_polls_over_backoff(struct disk *d);

/* ---- for tests and fuzzing: the checks of a reply to a range GET ---- */

/* Why a reply was refused before a byte of its body was accepted. */
enum blob_fail {
	BLOB_FAIL_NONE = 0,
	BLOB_FAIL_STATUS,         /* status not 2xx */
	BLOB_FAIL_RANGE_IGNORED,  /* 200 (or other 2xx) for a piece not at 0, or too long */
	BLOB_FAIL_NO_RANGE,       /* 206 without Content-Range */
	BLOB_FAIL_BAD_RANGE,      /* 206 with another range */
};

/* What the header lines of the current reply said. Zero it before each
 * attempt. */
struct blob_reply {
	long http_code;           /* of the last status line, 0 before one */
	bool range_seen;          /* a Content-Range header arrived */
	bool range_ok;            /* ... and it named exactly the range asked */
};

/* Takes one header line of the reply to a GET of bytes [@off, @off + @len)
 * (@len >= 1) as libcurl hands it over: @n bytes (borrowed), not
 * NUL-terminated, status lines included. A status line starts a new reply
 * (after 100 Continue, say). */
void blob_reply_header(struct blob_reply *r, uint64_t off, uint64_t len, const char *line,
		       size_t n);

/* Whether the reply may deliver its body, decided at its first body byte:
 * 206 with exactly the range asked, or another 2xx (the whole resource)
 * for a range starting at @off 0. */
enum blob_fail blob_reply_check(const struct blob_reply *r, uint64_t off);

#endif
