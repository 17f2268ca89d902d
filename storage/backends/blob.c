/* SPDX-License-Identifier: MIT */
/*
 * blob.c: read-only HTTP(S) blob disks through libcurl
 * (blob:flat|vhd1:<url>, docs/openvmm-compat.md §4.7).
 *
 * Notes on the design
 * -------------------
 * - Open is synchronous (it runs on the command line or at server start):
 *   a HEAD chain gives the length and the URL to read from (redirects
 *   301/302/307/308, at most 6 HEADs, never HTTPS to HTTP), and for vhd1 a
 *   ranged GET of the last 512 bytes gives the footer (storage/vhdfooter.c).
 *   Everything learnt there is fixed for the life of the disk.
 * - I/O runs on one engine thread per disk that drives a curl multi handle.
 *   A reactor's read is range-checked, queued on a mutex-protected mailbox
 *   (intrusive, through io->hctx) and the engine woken with
 *   curl_multi_wakeup() when the mailbox goes from empty to non-empty. The
 *   engine cuts requests into pieces of at most piece_bytes, runs up to
 *   max_connections pieces at once on a fixed pool of easy handles
 *   (allocated at open; libcurl keeps the connections alive in the multi
 *   handle's cache, so handles and connections are reused), and posts the
 *   request back to its reactor (reactor_post) when the last piece is done.
 *   The body is written straight into the caller's iovec from the engine
 *   thread: the buffers belong to the request until it completes. A curl
 *   multi handle is not thread-safe, so only the engine touches it (and
 *   the easy handles), apart from curl_multi_wakeup.
 *   Why a thread and not the worker pool: a blocking easy handle per
 *   request would tie up a pool thread for a whole transfer (30 s when a
 *   server stalls) and the pool is shared with SQLite; one multi handle
 *   runs any number of transfers from one thread.
 * - Every reply is validated before a byte is accepted: a 206 must carry
 *   a Content-Range that is exactly the range asked for; any other 2xx means
 *   the server ignored the range and sent the resource from byte 0, which
 *   is only acceptable for a piece that starts at 0 (and the body must then
 *   not be longer than asked). A longer body, a missing or different
 *   Content-Range, a short body, 416 or any other status fail the piece;
 *   nothing past the piece's slice of the buffer is ever written. A piece
 *   whose connection breaks mid-body, times out, or gets 5xx/408/429 is
 *   retried from its start after a backoff (doubling, capped), at most
 *   opts.retries times; a stalled server trips the low-speed limit.
 * - Range checks: the backend checks sector + count against the disk's
 *   size itself, so a read past the end of a vhd1 disk is ILLEGAL_BLOCK and
 *   never reaches the footer. A blob that shrank since open answers 416 or a
 *   short body: IO_ERROR.
 * - Write and unmap return READ_ONLY (unmap is IGNORED, so the
 *   dispatcher answers it before the op); flush succeeds, as on every
 *   read-only disk: nothing was written, so nothing is owed (NBD servers
 *   advertise NBD_FLAG_SEND_FLUSH on read-only exports too, and nbdkit's
 *   plugin flushes at shutdown: docs/nbdkit-plugin.md); CACHE is a no-op (nothing to
 *   prefetch into here: a read cache above is filled by the layered disk).
 * - Nothing persistent is written; a crash loses nothing.
 * - Credentials: URLs are only ever shown through url_redact().
 * - opts.unix_socket sends every request, redirects included, to one Unix
 *   socket (libcurl's CURLOPT_UNIX_SOCKET_PATH; the URL's host only goes
 *   into the Host header): tests/fuzz/fuzz-blob answers from its own
 *   process that way, with no name to resolve and no port to pick.
 * - Expected workload: sequential and random reads of 4 KiB-8 MiB from an
 *   object store or a local web server, tens of requests in flight.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <curl/curl.h>

#include "common/compiler.h"
#include "common/log.h"
#include "common/reactor.h"
#include "storage/backends/blob.h"
#include "storage/kind.h"
#include "storage/backends/url.h"
#include "storage/backends/vhdfooter.h"

#define BLOB_SECTOR_SIZE 512u
#define BLOB_PHYSICAL_SECTOR_SIZE 4096u
#define BLOB_MAX_HEADS 6             /* the first HEAD and 5 redirects */
#define BLOB_MAX_CONNECTIONS 256
/* libcurl's receive buffer per handle (its default is 16 KiB): larger
 * buffers mean fewer write callbacks per MiB and read faster
 * (docs/backend-blob.md, "Performance"). Costs up to 8 MiB per disk with
 * 16 connections. */
#define BLOB_RECV_BUFFER_BYTES (512 * 1024L)
#define BLOB_IDLE_POLL_MS 1000

/* One HTTP transfer: a piece of a request (engine) or an open-time GET. */
struct blob_xfer {
	struct blob *b;
	CURL *easy;                   /* owned; a new one for every attempt
				       * (blob_xfer_renew) */
	struct disk_io *io;           /* the request (engine pieces), else NULL */
	/* Destination: the slice [dst_off, dst_off + len) of an iovec list,
	 * written through a cursor. */
	const struct iovec *iov;
	int iovcnt;
	int cur_idx;                  /* cursor: segment */
	size_t cur_off;               /* cursor: offset in the segment */
	size_t dst_off;
	uint64_t off, len;            /* byte range in the blob */
	uint64_t got;                 /* body bytes accepted */
	struct blob_reply rep;        /* what the current response's headers said */
	bool validated;               /* status checked at the first body byte */
	enum blob_fail fail;
	unsigned attempt;             /* attempts started */
	uint64_t due_ns;              /* retry: start again at this time */
	struct blob_xfer *next;       /* free list or retry list */
	char range[48];
	char errbuf[CURL_ERROR_SIZE];
};

struct blob {
	char *url;                    /* owned: where GETs go (after redirects) */
	char *url_shown;              /* owned: the given URL, redacted */
	char *final_shown;            /* owned: @url, redacted */
	char *unix_socket;            /* owned: o.unix_socket points here */
	enum blob_format format;
	uint64_t blob_bytes;          /* length at open */
	uint64_t sector_count;
	unsigned redirects;
	struct blob_opts o;
	bool has_id;
	uint8_t id[16];
	char *validator;              /* owned: ETag and Last-Modified of the HEAD, or NULL */
	char *origin;                 /* owned: disk_info.origin */

	/* lock protects q_head, q_tail and stop: the mailbox from the reactors
	 * to the engine thread. */
	pthread_mutex_t lock;
	struct disk_io *q_head, *q_tail;
	bool stop;

	CURLM *multi;                 /* engine only (and curl_multi_wakeup) */
	bool thread_started;
	pthread_t thread;

	/* Engine-thread state. */
	struct blob_xfer *xfers;      /* o.max_connections of them */
	struct blob_xfer *free_xfers;
	struct blob_xfer *retry_list; /* waiting for due_ns; short, unsorted */
	struct disk_io *work_head, *work_tail;  /* requests still being cut */
	unsigned active;              /* pieces added to the multi handle */
	/* Engine polls that were to sleep the whole idle period while a retry
	 * with a shorter backoff waited (blob_idle_polls_over_backoff);
	 * written by the engine, read by tests from any thread. */
	atomic_uint idle_polls_over_backoff;
};

/* Per-request state, in io->hctx. */
struct blob_req {
	struct disk_io *next;         /* mailbox / work list link */
	uint64_t carved;              /* bytes handed to pieces */
	uint32_t pieces;              /* pieces not finished */
	int status;                   /* first failure, DISK_OK so far */
	int os_errno;
	bool listed;                  /* in the mailbox or on the work list */
};

_Static_assert(sizeof(struct blob_req) <= sizeof(((struct disk_io *)0)->hctx),
	       "blob_req must fit in disk_io.hctx");

static struct blob_req *req_of(struct disk_io *io)
{
	return (struct blob_req *)(void *)io->hctx;
}

static uint64_t io_bytes(const struct disk_io *io)
{
	return io->count * BLOB_SECTOR_SIZE;
}

void blob_opts_default(struct blob_opts *o)
{
	*o = (struct blob_opts){
		.max_connections = 16,
		.piece_bytes = 1u << 20,
		.retries = 4,
		.backoff_ms = 100,
		.backoff_max_ms = 2000,
		.connect_timeout_ms = 10000,
		.low_speed_bytes = 1024,
		.low_speed_time_s = 30,
	};
}

/* ---- libcurl setup ---------------------------------------------------------- */

static pthread_once_t blob_curl_once = PTHREAD_ONCE_INIT;
static CURLcode blob_curl_init_rc;

static void blob_curl_cleanup(void)
{
	curl_global_cleanup();
}

static void blob_curl_init(void)
{
	blob_curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
	if (blob_curl_init_rc == CURLE_OK)
		atexit(blob_curl_cleanup);
}

static bool url_is_https(const char *u)
{
	return strncasecmp(u, "https://", 8) == 0;
}

static bool url_is_http(const char *u)
{
	return strncasecmp(u, "http://", 7) == 0;
}

bool blob_redirect_allowed(const char *from, const char *to)
{
	if (!url_is_http(to) && !url_is_https(to))
		return false;
	return !(url_is_https(from) && !url_is_https(to));
}

/* Options every easy handle gets. */
static int blob_easy_setup(const struct blob_opts *o, CURL *e, char *errbuf)
{
	CURLcode rc = CURLE_OK;

#define SET(opt, val) do { if (rc == CURLE_OK) rc = curl_easy_setopt(e, opt, val); } while (0)
	SET(CURLOPT_NOSIGNAL, 1L);
	SET(CURLOPT_ERRORBUFFER, errbuf);
#if LIBCURL_VERSION_NUM >= 0x075500
	SET(CURLOPT_PROTOCOLS_STR, "http,https");
#else
	SET(CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
	SET(CURLOPT_FOLLOWLOCATION, 0L);
	SET(CURLOPT_CONNECTTIMEOUT_MS, (long)o->connect_timeout_ms);
	SET(CURLOPT_LOW_SPEED_LIMIT, (long)o->low_speed_bytes);
	SET(CURLOPT_LOW_SPEED_TIME, (long)o->low_speed_time_s);
	SET(CURLOPT_TCP_KEEPALIVE, 1L);
	SET(CURLOPT_TCP_NODELAY, 1L);
	SET(CURLOPT_USERAGENT, PACKAGE_NAME "/" PACKAGE_VERSION);
	if (o->unix_socket)
		SET(CURLOPT_UNIX_SOCKET_PATH, o->unix_socket);
#undef SET
	if (rc != CURLE_OK)
		return -EINVAL;
	/* A larger receive buffer means fewer recv calls for big pieces;
	 * older libcurl caps it lower, which is harmless. */
	curl_easy_setopt(e, CURLOPT_BUFFERSIZE, BLOB_RECV_BUFFER_BYTES);
	return 0;
}

/* ---- one transfer ----------------------------------------------------------- */

/* Parses "bytes <first>-<last>/<complete-length or *>" (RFC 9110 §14.4).
 * A value the RFC calls invalid (last < first, a complete length not
 * beyond last, anything but digits or "*" after the slash) is refused:
 * its recipient "MUST NOT attempt to recombine the received content". */
static bool blob_parse_content_range(const char *v, size_t n, uint64_t *first, uint64_t *last)
{
	char buf[128];
	char *p, *end;
	uint64_t total;

	while (n && (*v == ' ' || *v == '\t')) {
		v++;
		n--;
	}
	while (n && (v[n - 1] == '\r' || v[n - 1] == '\n' || v[n - 1] == ' ' || v[n - 1] == '\t'))
		n--;
	if (n >= sizeof(buf) || n < 6 || strncasecmp(v, "bytes ", 6) != 0)
		return false;
	memcpy(buf, v + 6, n - 6);
	buf[n - 6] = '\0';
	p = buf;
	if (*p < '0' || *p > '9')
		return false;
	errno = 0;
	*first = strtoull(p, &end, 10);
	if (errno || *end != '-' || end[1] < '0' || end[1] > '9')
		return false;
	*last = strtoull(end + 1, &end, 10);
	if (errno || *end != '/' || *last < *first)
		return false;
	/* The rest of the value, up to its length (a NUL inside it ends
	 * strtoull, not the value). */
	p = end + 1;
	if (p == buf + n - 7 && *p == '*')
		return true;
	if (*p < '0' || *p > '9')
		return false;
	total = strtoull(p, &end, 10);
	return !errno && end == buf + n - 6 && total > *last;
}

/* The status code at @s, from its @n bytes only: libcurl hands header
 * lines over without a NUL. More than three digits (RFC 9110 §15: a
 * status code is 3DIGIT) reads as 1000, refused as not 2xx. */
static long blob_parse_status(const char *s, size_t n)
{
	long code = 0;

	for (size_t i = 0; i < n && s[i] >= '0' && s[i] <= '9'; i++)
		code = MIN(code * 10 + (s[i] - '0'), 1000L);
	return code;
}

void blob_reply_header(struct blob_reply *r, uint64_t off, uint64_t len, const char *line,
		       size_t n)
{
	static const char cr[] = "content-range:";

	if (n >= 5 && memcmp(line, "HTTP/", 5) == 0) {
		/* A new response (after 100 Continue, say): start over. */
		const char *sp = memchr(line, ' ', n);

		*r = (struct blob_reply){ 0 };
		if (sp && (size_t)(sp - line) + 4 <= n && sp[1] >= '0' && sp[1] <= '9')
			r->http_code = blob_parse_status(sp + 1, n - (size_t)(sp + 1 - line));
	} else if (n > sizeof(cr) - 1 && strncasecmp(line, cr, sizeof(cr) - 1) == 0) {
		uint64_t first, last;

		r->range_seen = true;
		r->range_ok = blob_parse_content_range(line + sizeof(cr) - 1, n - (sizeof(cr) - 1),
						       &first, &last) &&
			      first == off && last == off + len - 1;
	}
}

enum blob_fail blob_reply_check(const struct blob_reply *r, uint64_t off)
{
	long code = r->http_code;

	if (code == 206) {
		if (!r->range_seen)
			return BLOB_FAIL_NO_RANGE;
		if (!r->range_ok)
			return BLOB_FAIL_BAD_RANGE;
		return BLOB_FAIL_NONE;
	}
	if (code >= 200 && code < 300) {
		/* The whole resource from byte 0: usable only from 0. */
		return off == 0 ? BLOB_FAIL_NONE : BLOB_FAIL_RANGE_IGNORED;
	}
	return BLOB_FAIL_STATUS;
}

static size_t blob_header_cb(char *data, size_t size, size_t nmemb, void *opaque)
{
	struct blob_xfer *x = opaque;
	size_t n = size * nmemb;

	blob_reply_header(&x->rep, x->off, x->len, data, n);
	return n;
}

static size_t blob_write_cb(char *data, size_t size, size_t nmemb, void *opaque)
{
	struct blob_xfer *x = opaque;
	size_t n = size * nmemb;
	size_t left = n;

	if (n == 0)
		return 0;
	if (!x->validated) {
		x->fail = blob_reply_check(&x->rep, x->off);
		if (x->fail != BLOB_FAIL_NONE)
			return 0;           /* aborts the transfer: CURLE_WRITE_ERROR */
		x->validated = true;
	}
	if (n > x->len - x->got) {
		x->fail = BLOB_FAIL_RANGE_IGNORED;
		return 0;
	}
	while (left) {
		const struct iovec *v = &x->iov[x->cur_idx];
		size_t room = v->iov_len - x->cur_off;
		size_t k = MIN(room, left);

		memcpy((char *)v->iov_base + x->cur_off, data, k);
		data += k;
		left -= k;
		x->cur_off += k;
		if (x->cur_off == v->iov_len) {
			x->cur_idx++;
			x->cur_off = 0;
		}
	}
	x->got += n;
	return n;
}

/* Points @x at [off, off + len) of the blob, written to bytes
 * [dst_off, dst_off + len) of @iov. */
static void blob_xfer_prepare(struct blob_xfer *x, const struct iovec *iov, int iovcnt,
			     size_t dst_off, uint64_t off, uint64_t len)
{
	size_t skip = dst_off;
	int i = 0;

	while (i < iovcnt && skip >= iov[i].iov_len) {
		skip -= iov[i].iov_len;
		i++;
	}
	x->iov = iov;
	x->iovcnt = iovcnt;
	x->cur_idx = i;
	x->cur_off = skip;
	x->dst_off = dst_off;
	x->off = off;
	x->len = len;
	x->attempt = 0;
	snprintf(x->range, sizeof(x->range), "%" PRIu64 "-%" PRIu64, off, off + len - 1);
}

/*
 * Gives @x a new easy handle for a ranged GET of its piece. No easy handle
 * is used for a second transfer: libcurl before 8.1.0 (Debian bookworm has
 * 7.88.1) keeps a pointer to the previous transfer's last response header
 * after freeing it, and a response that starts with a folded header line
 * (leading whitespace, RFC 9112 §5.2 obs-fold) makes it append to that
 * freed header (curl issue 11101, fixed by curl pull request 11103). Any
 * server could crash us with it. Connections are still reused: under a
 * multi handle the connection cache is the multi's.
 */
static int blob_xfer_renew(struct blob_xfer *x)
{
	CURLcode rc = CURLE_OK;

	if (x->easy)
		curl_easy_cleanup(x->easy);
	x->easy = curl_easy_init();
	if (!x->easy)
		return -ENOMEM;
	if (blob_easy_setup(&x->b->o, x->easy, x->errbuf) < 0)
		return -EINVAL;
#define SET(opt, val) do { if (rc == CURLE_OK) rc = curl_easy_setopt(x->easy, opt, val); } while (0)
	SET(CURLOPT_URL, x->b->url);
	SET(CURLOPT_HTTPGET, 1L);
	/* >= 400 ends the transfer before any body is handed over. */
	SET(CURLOPT_FAILONERROR, 1L);
	SET(CURLOPT_WRITEFUNCTION, blob_write_cb);
	SET(CURLOPT_WRITEDATA, x);
	SET(CURLOPT_HEADERFUNCTION, blob_header_cb);
	SET(CURLOPT_HEADERDATA, x);
	SET(CURLOPT_PRIVATE, x);
	SET(CURLOPT_RANGE, x->range);
#undef SET
	return rc == CURLE_OK ? 0 : -EINVAL;
}

/* Resets the per-attempt state (a retry starts the piece over) and gives
 * the attempt its own easy handle. */
static int blob_xfer_rewind(struct blob_xfer *x)
{
	size_t skip = x->dst_off;
	int i = 0;

	while (i < x->iovcnt && skip >= x->iov[i].iov_len) {
		skip -= x->iov[i].iov_len;
		i++;
	}
	x->cur_idx = i;
	x->cur_off = skip;
	x->got = 0;
	x->rep = (struct blob_reply){ 0 };
	x->validated = false;
	x->fail = BLOB_FAIL_NONE;
	x->errbuf[0] = '\0';
	x->attempt++;
	return blob_xfer_renew(x);
}

enum blob_verdict { BLOB_DONE, BLOB_RETRY, BLOB_FAILED };

/* What a finished attempt means. On failure *@err is the errno for
 * DISK_IO_ERROR and @why says what happened. */
static enum blob_verdict blob_xfer_verdict(struct blob_xfer *x, CURLcode rc, int *err,
					   char *why, size_t whylen)
{
	long code = 0;

	curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &code);
	*err = EIO;
	switch (rc) {
	case CURLE_OK:
		if (code < 200 || code >= 300) {
			snprintf(why, whylen, "HTTP status %ld", code);
			return BLOB_FAILED;
		}
		if (x->got == x->len)
			return BLOB_DONE;
		snprintf(why, whylen, "short body: %" PRIu64 " of %" PRIu64 " bytes "
			 "(the blob is shorter than at open?)", x->got, x->len);
		return BLOB_FAILED;
	case CURLE_WRITE_ERROR:
		switch (x->fail) {
		case BLOB_FAIL_STATUS:
			snprintf(why, whylen, "HTTP status %ld", x->rep.http_code);
			return BLOB_FAILED;
		case BLOB_FAIL_RANGE_IGNORED:
			snprintf(why, whylen, "server did not respect range query (HTTP %ld)",
				 x->rep.http_code);
			return BLOB_FAILED;
		case BLOB_FAIL_NO_RANGE:
			snprintf(why, whylen, "HTTP 206 without Content-Range");
			return BLOB_FAILED;
		case BLOB_FAIL_BAD_RANGE:
			snprintf(why, whylen, "HTTP 206 for another range than asked");
			return BLOB_FAILED;
		case BLOB_FAIL_NONE:
			break;
		}
		break;
	case CURLE_HTTP_RETURNED_ERROR:
		snprintf(why, whylen, "HTTP status %ld", code);
		if (code >= 500 || code == 408 || code == 429)
			return BLOB_RETRY;
		if (code == 401 || code == 403)
			*err = EACCES;
		else if (code == 404 || code == 410)
			*err = ENOENT;
		return BLOB_FAILED;
	case CURLE_OPERATION_TIMEDOUT:
		*err = ETIMEDOUT;
		snprintf(why, whylen, "%s", x->errbuf[0] ? x->errbuf : curl_easy_strerror(rc));
		return BLOB_RETRY;
	case CURLE_COULDNT_CONNECT:
		*err = ECONNREFUSED;
		snprintf(why, whylen, "%s", x->errbuf[0] ? x->errbuf : curl_easy_strerror(rc));
		return BLOB_RETRY;
	case CURLE_PARTIAL_FILE:
	case CURLE_RECV_ERROR:
	case CURLE_SEND_ERROR:
	case CURLE_GOT_NOTHING:
		*err = ECONNRESET;
		snprintf(why, whylen, "%s", x->errbuf[0] ? x->errbuf : curl_easy_strerror(rc));
		return BLOB_RETRY;
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
	case CURLE_SSL_CONNECT_ERROR:
#if LIBCURL_VERSION_NUM >= 0x072600
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
#endif
		snprintf(why, whylen, "%s", x->errbuf[0] ? x->errbuf : curl_easy_strerror(rc));
		return BLOB_RETRY;
	default:
		break;
	}
	snprintf(why, whylen, "%s", x->errbuf[0] ? x->errbuf : curl_easy_strerror(rc));
	return BLOB_FAILED;
}

/* Delay before retry number @attempt (1 = first retry). */
static uint64_t blob_backoff_ns(const struct blob_opts *o, unsigned attempt)
{
	uint64_t ms = o->backoff_ms;

	for (unsigned i = 1; i < attempt && ms < o->backoff_max_ms; i++)
		ms *= 2;
	return MIN(ms, (uint64_t)o->backoff_max_ms) * 1000000ull;
}

static void blob_sleep_ns(uint64_t ns)
{
	struct timespec ts = { .tv_sec = (time_t)(ns / 1000000000ull),
			       .tv_nsec = (long)(ns % 1000000000ull) };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* ---- open-time requests (blocking) ------------------------------------------ */

/*
 * A ranged GET of [off, off + len) into @buf with the same checks and
 * retries as the engine's pieces (open time only). Returns 0 or -errno
 * with a message.
 */
static int blob_sync_get(struct blob *b, uint64_t off, void *buf, uint64_t len,
			 char *err, size_t errlen)
{
	struct blob_xfer x = { .b = b };
	struct iovec iov = { .iov_base = buf, .iov_len = len };
	char why[256];
	int r, e = EIO;

	blob_xfer_prepare(&x, &iov, 1, 0, off, len);
	for (;;) {
		enum blob_verdict v;

		r = blob_xfer_rewind(&x);
		if (r < 0) {
			snprintf(err, errlen, "cannot set up libcurl: %s", strerror(-r));
			break;
		}
		v = blob_xfer_verdict(&x, curl_easy_perform(x.easy), &e, why, sizeof(why));
		if (v == BLOB_DONE) {
			r = 0;
			break;
		}
		if (v == BLOB_FAILED || x.attempt > b->o.retries) {
			snprintf(err, errlen, "GET of bytes %" PRIu64 "-%" PRIu64 " failed: %s", off,
				 off + len - 1, why);
			r = -e;
			break;
		}
		log_debug("blob %s: GET of bytes %" PRIu64 "-%" PRIu64 ": %s; retrying",
			  b->url_shown, off, off + len - 1, why);
		blob_sleep_ns(blob_backoff_ns(&b->o, x.attempt));
	}
	curl_easy_cleanup(x.easy);
	return r;
}

/*
 * The version of the resource a HEAD answered 200 for (RFC 9110 §8.8): its
 * ETag and Last-Modified, as ";etag=...;last-modified=..." (either may be
 * missing; "" when both are). An autocache binds to it through the disk's
 * origin. Returns a new string, or NULL when out of memory.
 */
static char *blob_validator(CURL *e)
{
	static const char *const names[] = { "ETag", "Last-Modified" };
	static const char *const keys[] = { "etag", "last-modified" };
	char buf[600] = "";
	size_t n = 0;

	for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
#if LIBCURL_VERSION_NUM >= 0x075300   /* curl_easy_header: 7.83.0 */
		struct curl_header *h = NULL;

		if (curl_easy_header(e, names[i], 0, CURLH_HEADER, -1, &h) == CURLHE_OK && h &&
		    h->value && n < sizeof(buf))
			n += (size_t)snprintf(buf + n, sizeof(buf) - n, ";%s=%.256s", keys[i],
					      h->value);
#else
		(void)e;
		(void)names;
		(void)keys;
#endif
	}
	return strdup(buf);
}

/*
 * The HEAD chain: sets b->url (the URL the redirects end at), b->redirects
 * and b->blob_bytes. Returns 0 or -errno with a message.
 */
static int blob_head(struct blob *b, const char *url, char *err, size_t errlen)
{
	char errbuf[CURL_ERROR_SIZE] = "";
	char shown[512];
	CURL *e = NULL;
	char *cur = strdup(url);
	unsigned attempt = 0;
	int r = 0;

	if (!cur) {
		r = -ENOMEM;
		goto out;
	}
	for (unsigned heads = 1;; ) {
		CURLcode rc;
		long code = 0;
		curl_off_t length = -1;
		char *location = NULL;

		/* One easy handle per request, as blob_xfer_renew explains. */
		curl_easy_cleanup(e);
		e = curl_easy_init();
		if (!e) {
			r = -ENOMEM;
			goto out;
		}
		if (blob_easy_setup(&b->o, e, errbuf) < 0 ||
		    curl_easy_setopt(e, CURLOPT_NOBODY, 1L) != CURLE_OK ||
		    curl_easy_setopt(e, CURLOPT_URL, cur) != CURLE_OK) {
			snprintf(err, errlen, "cannot set up libcurl");
			r = -EINVAL;
			goto out;
		}
		errbuf[0] = '\0';
		rc = curl_easy_perform(e);
		if (rc == CURLE_OK)
			curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code);
		url_redact(cur, strlen(cur), shown, sizeof(shown));
		if (rc != CURLE_OK || code >= 500 || code == 408 || code == 429) {
			bool transient = code != 0 || rc == CURLE_COULDNT_CONNECT ||
					 rc == CURLE_OPERATION_TIMEDOUT || rc == CURLE_RECV_ERROR ||
					 rc == CURLE_SEND_ERROR || rc == CURLE_GOT_NOTHING ||
					 rc == CURLE_COULDNT_RESOLVE_HOST || rc == CURLE_SSL_CONNECT_ERROR;

			if (transient && attempt < b->o.retries) {
				attempt++;
				blob_sleep_ns(blob_backoff_ns(&b->o, attempt));
				continue;
			}
			if (rc != CURLE_OK)
				snprintf(err, errlen, "HEAD %s failed: %s", shown,
					 errbuf[0] ? errbuf : curl_easy_strerror(rc));
			else
				snprintf(err, errlen, "HEAD %s: HTTP status %ld", shown, code);
			r = rc == CURLE_COULDNT_CONNECT ? -ECONNREFUSED :
			    rc == CURLE_OPERATION_TIMEDOUT ? -ETIMEDOUT : -EIO;
			goto out;
		}
		attempt = 0;
		if (code == 200) {
			curl_easy_getinfo(e, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &length);
			if (length < 0) {
				snprintf(err, errlen, "HEAD %s: no Content-Length in the reply", shown);
				r = -EIO;
				goto out;
			}
			b->blob_bytes = (uint64_t)length;
			b->validator = blob_validator(e);
			b->url = cur;
			cur = NULL;
			goto out;
		}
		if (code != 301 && code != 302 && code != 307 && code != 308) {
			snprintf(err, errlen, "HEAD %s: HTTP status %ld", shown, code);
			r = code == 404 || code == 410 ? -ENOENT :
			    code == 401 || code == 403 ? -EACCES : -EIO;
			goto out;
		}
		if (heads == BLOB_MAX_HEADS) {
			snprintf(err, errlen, "HEAD %s: too many redirects (more than %d; the "
				 "last went to %s)", b->url_shown, BLOB_MAX_HEADS - 1, shown);
			r = -ELOOP;
			goto out;
		}
		curl_easy_getinfo(e, CURLINFO_REDIRECT_URL, &location);
		if (!location) {
			snprintf(err, errlen, "HEAD %s: redirect (HTTP %ld) without a Location", shown,
				 code);
			r = -EIO;
			goto out;
		}
		if (!blob_redirect_allowed(cur, location)) {
			char to[512];

			url_redact(location, strlen(location), to, sizeof(to));
			snprintf(err, errlen, "HEAD %s: refusing a redirect to %s (%s)", shown, to,
				 url_is_https(cur) && url_is_http(location)
					 ? "HTTPS to HTTP downgrade" : "not an http(s) URL");
			r = -EPERM;
			goto out;
		}
		free(cur);
		cur = strdup(location);
		if (!cur) {
			r = -ENOMEM;
			goto out;
		}
		b->redirects++;
		heads++;
	}
out:
	if (r == -ENOMEM)
		snprintf(err, errlen, "out of memory");
	free(cur);
	curl_easy_cleanup(e);
	return r;
}

/* ---- the engine thread ------------------------------------------------------- */

/* Sends @io back to its reactor. */
static void blob_finish_req(struct disk_io *io)
{
	struct blob_req *rq = req_of(io);

	disk_io_complete_later(io, rq->status, rq->os_errno, true);
}

static void blob_piece_done(struct blob *b, struct blob_xfer *x, int status, int err)
{
	struct disk_io *io = x->io;
	struct blob_req *rq = req_of(io);

	if (status != DISK_OK && rq->status == DISK_OK) {
		rq->status = status;
		rq->os_errno = err;
	}
	x->io = NULL;
	x->next = b->free_xfers;
	b->free_xfers = x;
	rq->pieces--;
	/* A request still on the work list is finished by blob_carve. */
	if (rq->pieces == 0 && !rq->listed)
		blob_finish_req(io);
}

static int blob_piece_start(struct blob *b, struct blob_xfer *x)
{
	int r = blob_xfer_rewind(x);

	if (r < 0)
		return r;
	if (curl_multi_add_handle(b->multi, x->easy) != CURLM_OK)
		return -ENOMEM;
	b->active++;
	return 0;
}

/* Cuts queued requests into pieces while transfers are free. */
static void blob_carve(struct blob *b)
{
	while (b->work_head) {
		struct disk_io *io = b->work_head;
		struct blob_req *rq = req_of(io);
		uint64_t total = io_bytes(io);
		struct blob_xfer *x;
		uint64_t n;

		if (rq->status != DISK_OK)
			rq->carved = total;         /* a piece failed: cut no more */
		if (rq->carved == total) {
			b->work_head = rq->next;
			if (!b->work_head)
				b->work_tail = NULL;
			rq->next = NULL;
			rq->listed = false;
			if (rq->pieces == 0)
				blob_finish_req(io);
			continue;
		}
		x = b->free_xfers;
		if (!x)
			break;
		b->free_xfers = x->next;
		x->next = NULL;
		n = MIN((uint64_t)b->o.piece_bytes, total - rq->carved);
		x->io = io;
		rq->pieces++;
		blob_xfer_prepare(x, io->iov, io->iovcnt, rq->carved,
				  io->sector * BLOB_SECTOR_SIZE + rq->carved, n);
		if (blob_piece_start(b, x) < 0) {
			rq->carved = total;
			log_error("blob %s: cannot start a transfer", b->final_shown);
			blob_piece_done(b, x, DISK_IO_ERROR, ENOMEM);
			continue;
		}
		rq->carved += n;
	}
}

/* Collects finished transfers. */
static void blob_reap(struct blob *b)
{
	CURLMsg *m;
	int left;

	while ((m = curl_multi_info_read(b->multi, &left))) {
		struct blob_xfer *x;
		enum blob_verdict v;
		char why[256];
		char *priv = NULL;
		int err;

		if (m->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, &priv);
		x = (struct blob_xfer *)(void *)priv;
		v = blob_xfer_verdict(x, m->data.result, &err, why, sizeof(why));
		curl_multi_remove_handle(b->multi, x->easy);
		b->active--;
		if (v == BLOB_DONE) {
			blob_piece_done(b, x, DISK_OK, 0);
		} else if (v == BLOB_RETRY && x->attempt <= b->o.retries &&
			   req_of(x->io)->status == DISK_OK) {
			uint64_t delay = blob_backoff_ns(&b->o, x->attempt);

			log_debug("blob %s: read at byte %" PRIu64 ", %" PRIu64 " bytes: %s; "
				  "retry %u in %" PRIu64 " ms", b->final_shown, x->off, x->len, why,
				  x->attempt, delay / 1000000);
			x->due_ns = reactor_now_ns() + delay;
			x->next = b->retry_list;
			b->retry_list = x;
		} else {
			if (req_of(x->io)->status == DISK_OK)
				log_error("blob %s: read at byte %" PRIu64 ", %" PRIu64 " bytes: %s%s",
					  b->final_shown, x->off, x->len, why,
					  v == BLOB_RETRY ? " (retries exhausted)" : "");
			blob_piece_done(b, x, DISK_IO_ERROR, err);
		}
	}
}

/* Restarts pieces whose backoff is over; returns ms until the next one is
 * due (or BLOB_IDLE_POLL_MS). */
static int blob_retry_due(struct blob *b)
{
	uint64_t now = reactor_now_ns();
	uint64_t next = UINT64_MAX;
	struct blob_xfer **pp = &b->retry_list;

	while (*pp) {
		struct blob_xfer *x = *pp;

		if (x->due_ns <= now) {
			*pp = x->next;
			x->next = NULL;
			if (blob_piece_start(b, x) < 0)
				blob_piece_done(b, x, DISK_IO_ERROR, ENOMEM);
			continue;
		}
		next = MIN(next, x->due_ns);
		pp = &x->next;
	}
	if (next == UINT64_MAX)
		return BLOB_IDLE_POLL_MS;
	return (int)MIN((next - now + 999999) / 1000000, (uint64_t)BLOB_IDLE_POLL_MS);
}

/* True when a retry on the list has a backoff shorter than the idle poll:
 * a poll for the whole idle period would start it late. No clock is read,
 * so the answer does not depend on how busy the machine is. */
static bool blob_retry_needs_early_wake(const struct blob *b)
{
	for (const struct blob_xfer *x = b->retry_list; x; x = x->next)
		if (blob_backoff_ns(&b->o, x->attempt) < BLOB_IDLE_POLL_MS * 1000000ull)
			return true;
	return false;
}

static void *blob_engine(void *arg)
{
	struct blob *b = arg;

	for (;;) {
		struct disk_io *head;
		bool stop;
		int running = 0, timeout_ms;

		pthread_mutex_lock(&b->lock);
		head = b->q_head;
		if (head) {
			if (b->work_tail)
				req_of(b->work_tail)->next = head;
			else
				b->work_head = head;
			b->work_tail = b->q_tail;
			b->q_head = b->q_tail = NULL;
		}
		stop = b->stop;
		pthread_mutex_unlock(&b->lock);
		if (stop)
			break;

		blob_retry_due(b);
		blob_carve(b);
		curl_multi_perform(b->multi, &running);
		blob_reap(b);
		if (b->work_head && b->free_xfers)
			continue;                   /* pieces freed up: start more now */
		/* After reaping, which may have scheduled retries. */
		timeout_ms = blob_retry_due(b);
		if (timeout_ms == BLOB_IDLE_POLL_MS && blob_retry_needs_early_wake(b))
			atomic_fetch_add_explicit(&b->idle_polls_over_backoff, 1,
						  memory_order_relaxed);
		curl_multi_poll(b->multi, NULL, 0, timeout_ms, NULL);
	}
	return NULL;
}

/* ---- disk ops -------------------------------------------------------------- */

static uint64_t blob_sector_count(struct disk *d)
{
	struct blob *b = disk_priv(d);

	return b->sector_count;
}

static int blob_read(struct disk *d, struct disk_io *io)
{
	struct blob *b = disk_priv(d);
	struct blob_req *rq = req_of(io);
	bool wake;

	/* In range and not empty: blob_ops.checks. */
	rq->next = NULL;
	rq->carved = 0;
	rq->pieces = 0;
	rq->status = DISK_OK;
	rq->os_errno = 0;
	rq->listed = true;
	pthread_mutex_lock(&b->lock);
	wake = !b->q_head;
	if (b->q_tail)
		req_of(b->q_tail)->next = io;
	else
		b->q_head = io;
	b->q_tail = io;
	pthread_mutex_unlock(&b->lock);
	/* A non-empty mailbox means a wakeup is already on its way. */
	if (wake)
		curl_multi_wakeup(b->multi);
	return DISK_PENDING;
}

static int blob_read_only_op(struct disk *d UNUSED, struct disk_io *io UNUSED)
{
	return DISK_READ_ONLY;
}

static int blob_cache(struct disk *d UNUSED, struct disk_io *io UNUSED)
{
	/* Nothing to prefetch into: read caches above are filled by the
	 * layered disk's own CACHE emulation. The range: blob_ops.checks. */
	return DISK_OK;
}

static void blob_describe(struct disk *d, struct disk_describer *dd)
{
	struct blob *b = disk_priv(d);

	dd->param(dd, "url", b->url_shown);
	if (b->redirects)
		dd->param(dd, "redirected to", b->final_shown);
	dd->param(dd, "format", b->format == BLOB_VHD1 ? "vhd1" : "flat");
	disk_describe_paramf(dd, "blob bytes", "%" PRIu64, b->blob_bytes);
	disk_describe_paramf(dd, "parallel requests", "%u", b->o.max_connections);
	disk_describe_paramf(dd, "request split", "%" PRIu32 " bytes", b->o.piece_bytes);
	disk_describe_paramf(dd, "retries", "%u", b->o.retries);
}

static void blob_free(struct blob *b)
{
	if (!b)
		return;
	if (b->thread_started) {
		pthread_mutex_lock(&b->lock);
		b->stop = true;
		pthread_mutex_unlock(&b->lock);
		curl_multi_wakeup(b->multi);
		pthread_join(b->thread, NULL);
	}
	/* No request is in flight (disk contract), so no handle is in the
	 * multi; remove defensively anyway. */
	for (unsigned i = 0; b->xfers && i < b->o.max_connections; i++) {
		if (!b->xfers[i].easy)
			continue;
		if (b->multi)
			curl_multi_remove_handle(b->multi, b->xfers[i].easy);
		curl_easy_cleanup(b->xfers[i].easy);
	}
	if (b->multi)
		curl_multi_cleanup(b->multi);
	pthread_mutex_destroy(&b->lock);
	free(b->xfers);
	free(b->url);
	free(b->url_shown);
	free(b->final_shown);
	free(b->validator);
	free(b->origin);
	free(b->unix_socket);
	free(b);
}

static void blob_close(struct disk *d)
{
	blob_free(disk_priv(d));
}

static const struct disk_ops blob_ops = {
	.version = DISK_OPS_VERSION,
	.sector_count = blob_sector_count,
	.read = blob_read,
	.write = blob_read_only_op,
	/* .flush NULL: nothing to make durable; the dispatcher answers OK. */
	.unmap = blob_read_only_op,
	.write_zeroes = blob_read_only_op,
	.cache = blob_cache,
	.describe = blob_describe,
	.close = blob_close,
	/* A blob's size is fixed at open; disk_info.read_only is always set. */
	.checks = DISK_CHECK_RANGE | DISK_CHECK_READ_ONLY | DISK_CHECK_EMPTY,
};

int blob_idle_polls_over_backoff(struct disk *d)
{
	struct blob *b;
	unsigned n;

	if (!d || !disk_has_ops(d, &blob_ops))
		return -EINVAL;
	b = disk_priv(d);
	n = atomic_load_explicit(&b->idle_polls_over_backoff, memory_order_relaxed);
	return (int)MIN(n, (unsigned)INT_MAX);
}

/* ---- open ------------------------------------------------------------------ */

static int blob_check_opts(const struct blob_opts *o, char *err, size_t errlen)
{
	if (o->max_connections == 0 || o->max_connections > BLOB_MAX_CONNECTIONS) {
		snprintf(err, errlen, "parallel requests must be 1..%d", BLOB_MAX_CONNECTIONS);
		return -EINVAL;
	}
	if (o->piece_bytes == 0 || o->piece_bytes % BLOB_SECTOR_SIZE != 0) {
		snprintf(err, errlen, "the request split size must be a non-zero multiple of 512");
		return -EINVAL;
	}
	return 0;
}

/* Reads and checks the vhd1 footer; sets the sector count and disk id. */
static int blob_open_vhd1(struct blob *b, char *err, size_t errlen)
{
	uint8_t footer[VHDFOOTER_BYTES];
	struct vhdfooter f;
	enum vhdfooter_error why;
	int r;

	if (b->blob_bytes < VHDFOOTER_BYTES) {
		snprintf(err, errlen, "blob is too small for a VHD (%" PRIu64 " bytes)", b->blob_bytes);
		return -EINVAL;
	}
	r = blob_sync_get(b, b->blob_bytes - VHDFOOTER_BYTES, footer, VHDFOOTER_BYTES, err, errlen);
	if (r < 0)
		return r;
	why = vhdfooter_parse(footer, b->blob_bytes - VHDFOOTER_BYTES, &f);
	if (why != VHDFOOTER_OK)
		return vhdfooter_explain(why, &f, b->blob_bytes, err, errlen);
	b->sector_count = f.current_size / BLOB_SECTOR_SIZE;
	b->has_id = true;
	memcpy(b->id, f.unique_id, 16);
	return 0;
}

int blob_open(const char *url, enum blob_format format, const struct blob_opts *opts,
	      struct disk **out, char *err, size_t errlen)
{
	struct disk_info info = {
		.type = "blob",
		.sector_size = BLOB_SECTOR_SIZE,
		.physical_sector_size = BLOB_PHYSICAL_SECTOR_SIZE,
		.fua_respected = false,
		.read_only = true,
		.unmap_behavior = DISK_UNMAP_IGNORED,
		.optimal_unmap_sectors = 1,
		.caps = DISK_CAP_COHERENT | DISK_CAP_PERSISTENT,
	};
	struct blob *b;
	int r;

	*out = NULL;
	if (err && errlen)
		err[0] = '\0';
	if (!url_is_http(url) && !url_is_https(url)) {
		snprintf(err, errlen, "not an http:// or https:// URL");
		return -EINVAL;
	}
	pthread_once(&blob_curl_once, blob_curl_init);
	if (blob_curl_init_rc != CURLE_OK) {
		snprintf(err, errlen, "libcurl initialisation failed: %s",
			 curl_easy_strerror(blob_curl_init_rc));
		return -EIO;
	}
	b = calloc(1, sizeof(*b));
	if (!b) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	pthread_mutex_init(&b->lock, NULL);
	b->format = format;
	if (opts)
		b->o = *opts;
	else
		blob_opts_default(&b->o);
	r = blob_check_opts(&b->o, err, errlen);
	if (r < 0)
		goto fail;
	if (b->o.unix_socket) {
		b->unix_socket = strdup(b->o.unix_socket);
		if (!b->unix_socket)
			goto nomem;
		b->o.unix_socket = b->unix_socket;
	}
	b->url_shown = url_redact_dup(url);
	if (!b->url_shown)
		goto nomem;

	r = blob_head(b, url, err, errlen);
	if (r < 0)
		goto fail;
	b->final_shown = url_redact_dup(b->url);
	if (!b->final_shown)
		goto nomem;
	if (format == BLOB_VHD1) {
		r = blob_open_vhd1(b, err, errlen);
		if (r < 0)
			goto fail;
	} else {
		b->sector_count = b->blob_bytes / BLOB_SECTOR_SIZE;
	}

	/* The engine: a multi handle, its transfers and its thread. */
	b->multi = curl_multi_init();
	b->xfers = calloc(b->o.max_connections, sizeof(*b->xfers));
	if (!b->multi || !b->xfers)
		goto nomem;
	curl_multi_setopt(b->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)b->o.max_connections);
	curl_multi_setopt(b->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)b->o.max_connections);
	curl_multi_setopt(b->multi, CURLMOPT_MAXCONNECTS, (long)b->o.max_connections);
	for (unsigned i = 0; i < b->o.max_connections; i++) {
		b->xfers[i].b = b;
		b->xfers[i].next = b->free_xfers;
		b->free_xfers = &b->xfers[i];
	}
	r = -pthread_create(&b->thread, NULL, blob_engine, b);
	if (r < 0) {
		snprintf(err, errlen, "cannot start the HTTP thread: %s", strerror(-r));
		goto fail;
	}
	b->thread_started = true;

	info.has_disk_id = b->has_id;
	memcpy(info.disk_id, b->id, 16);
	/* The given URL (the redirects may lead to a signed URL that changes
	 * every time), without credentials, and the version from the HEAD. */
	if (asprintf(&b->origin, "blob:%s:%s;size=%" PRIu64 "%s",
		     format == BLOB_VHD1 ? "vhd1" : "flat", b->url_shown, b->blob_bytes,
		     b->validator ? b->validator : "") < 0) {
		b->origin = NULL;
		goto nomem;
	}
	info.origin = b->origin;
	r = disk_new(&blob_ops, &info, b, NULL, out);
	if (r < 0) {
		snprintf(err, errlen, "%s", strerror(-r));
		goto fail;
	}
	return 0;

nomem:
	r = -ENOMEM;
	snprintf(err, errlen, "out of memory");
fail:
	blob_free(b);
	return r;
}

int blob_spec_open(const struct spec *s, bool read_only, const struct spec_ctx *ctx UNUSED,
		   struct disk **out, char *err, size_t errlen)
{
	enum blob_format f = strcmp(s->arg, "vhd1") == 0 ? BLOB_VHD1 : BLOB_FLAT;

	*out = NULL;
	if (!read_only) {
		snprintf(err, errlen, "writable blob disks are not supported; put memdiff:, "
			 "sqldiff: or autocache: above it, or add ,ro");
		return -EROFS;
	}
	return blob_open(s->path, f, NULL, out, err, errlen);
}
