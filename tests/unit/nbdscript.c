/* SPDX-License-Identifier: MIT */
/*
 * nbdscript.c: a scripted NBD server for tests of the nbd: backend (the
 * script format is in nbdscript.h). The protocol is the NBD project's
 * doc/proto.md: fixed newstyle handshake, structured replies, the
 * base:allocation context.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <linux/sockios.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/compiler.h"
#include "common/endian.h"
#include "common/reactor.h"
#include "storage/backends/nbdclient.h"
#include "tests/unit/nbdscript.h"

/* NBD protocol constants (doc/proto.md of the NBD project). */
#define NBDMAGIC 0x4e42444d41474943ull
#define IHAVEOPT 0x49484156454f5054ull
#define REPLY_OPT_MAGIC 0x0003e889045565a9ull
#define REQUEST_MAGIC 0x25609513u
#define SIMPLE_MAGIC 0x67446698u
#define STRUCTURED_MAGIC 0x668e33efu
enum {
	OPT_EXPORT_NAME = 1, OPT_ABORT = 2, OPT_INFO = 6, OPT_GO = 7,
	OPT_STRUCTURED_REPLY = 8, OPT_SET_META_CONTEXT = 10,
	REP_ACK = 1, REP_INFO = 3, REP_META_CONTEXT = 4,
	INFO_EXPORT = 0, INFO_BLOCK_SIZE = 3,
	CMD_READ = 0, CMD_WRITE = 1, CMD_DISC = 2,
	CHUNK_OFFSET_DATA = 1, CHUNK_OFFSET_HOLE = 2, CHUNK_BLOCK_STATUS = 5,
	REPLY_FLAG_DONE = 1,
	FLAG_HAS_FLAGS = 1, FLAG_READ_ONLY = 2,
};
#define REP_ERR_UNSUP 0x80000001u

#define MAX_CONNS 3
#define MAX_PAYLOAD (4u << 20)          /* larger writes or replies: close */
#define STALL_CHECKS 3
#define STALL_POLL_MS 5

struct hdr {
	uint8_t mode;
	uint16_t tflags;
	uint64_t size;
	uint32_t min_block, pref_block, max_block;
	uint32_t ctx_id;
};

/* One input: the scripted server's state. The program cursor (@pos) is used
 * by one server thread at a time (a new one starts only after the previous
 * one was joined). */
struct nbdscript {
	const uint8_t *data;
	size_t size, pos;
	struct hdr h;
	unsigned nconns;
	pthread_t th;
	bool th_live;
	int fd;                             /* the server's end */
	/* The client thread, for the stall check: blocked in its reactor
	 * after a pass that ran nothing, and how many passes it has made. */
	_Atomic bool client_blocked;
	_Atomic uint64_t client_passes;
	uint8_t *scratch;                   /* reply payloads */
};

bool nbdscript_verbose;

/* ---- the program ------------------------------------------------------------- */

static bool take(struct nbdscript *f, void *out, size_t n)
{
	size_t k = MIN(n, f->size - f->pos);

	memcpy(out, f->data + f->pos, k);
	memset((uint8_t *)out + k, 0, n - k);
	f->pos += k;
	return k == n;
}

static uint8_t take8(struct nbdscript *f)
{
	uint8_t v;

	take(f, &v, 1);
	return v;
}

static uint16_t take16(struct nbdscript *f)
{
	uint8_t b[2];

	take(f, b, 2);
	return ds_get_be16(b);
}

static uint32_t take32(struct nbdscript *f)
{
	uint8_t b[4];

	take(f, b, 4);
	return ds_get_be32(b);
}

static uint64_t take64(struct nbdscript *f)
{
	uint64_t hi = take32(f);

	return hi << 32 | take32(f);
}

/* ---- the server's socket --------------------------------------------------------- */

/* Sends (@out) or receives all @len bytes of @buf on the blocking socket.
 * Returns 0 or -1 (peer gone, EOF, error). */
static int srv_xfer(struct nbdscript *f, void *buf, size_t len, bool out)
{
	uint8_t *p = buf;

	while (len > 0) {
		ssize_t n = out ? send(f->fd, p, len, MSG_NOSIGNAL) : recv(f->fd, p, len, 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int srv_write(struct nbdscript *f, const void *buf, size_t len)
{
	return srv_xfer(f, (void *)buf, len, true);
}

static int srv_read(struct nbdscript *f, void *buf, size_t len)
{
	return srv_xfer(f, buf, len, false);
}

/* Is the client waiting for a reply that will not come? It is blocked in
 * its reactor after a pass that ran nothing, has made no pass since the
 * last check, and has taken everything sent (SIOCOUTQ: bytes still in the
 * peer's receive queue). */
static bool srv_client_stuck(struct nbdscript *f, uint64_t *last_passes)
{
	uint64_t passes = atomic_load(&f->client_passes);
	int outq = 0;
	bool stuck;

	stuck = atomic_load(&f->client_blocked) && passes == *last_passes &&
		ioctl(f->fd, SIOCOUTQ, &outq) == 0 && outq == 0;
	*last_passes = passes;
	return stuck;
}

/* Waits for the next request. Returns 0 when there is something to read,
 * -1 when the client is gone or stuck (then the connection ends). */
static int srv_wait_request(struct nbdscript *f)
{
	uint64_t last = UINT64_MAX;
	unsigned stalls = 0;

	for (unsigned i = 0; i < 10000 / STALL_POLL_MS; i++) {
		struct pollfd pfd = { .fd = f->fd, .events = POLLIN };
		int r = poll(&pfd, 1, STALL_POLL_MS);

		if (r > 0)
			return 0;
		if (r < 0 && errno != EINTR)
			return -1;
		if (r == 0 && srv_client_stuck(f, &last)) {
			if (++stalls == STALL_CHECKS)
				return -1;
		} else {
			stalls = 0;
		}
	}
	return -1;                                  /* 10 s: give up on it */
}

static int srv_opt_reply(struct nbdscript *f, uint32_t opt, uint32_t type, const void *data, uint32_t len)
{
	uint8_t h[20];

	ds_put_be64(h, REPLY_OPT_MAGIC);
	ds_put_be32(h + 8, opt);
	ds_put_be32(h + 12, type);
	ds_put_be32(h + 16, len);
	if (srv_write(f, h, sizeof(h)) < 0)
		return -1;
	return len ? srv_write(f, data, len) : 0;
}

/* Answers SET_META_CONTEXT: base:allocation (if asked for) under the
 * header's id. */
static int srv_set_meta(struct nbdscript *f, uint32_t opt, const uint8_t *d, uint32_t len)
{
	static const char base[] = "base:allocation";
	uint8_t rep[4 + 64];
	uint32_t off = 0, nq, namelen;

	if (f->h.mode & NBDSCRIPT_NO_META)
		return srv_opt_reply(f, opt, REP_ERR_UNSUP, NULL, 0);
	/* u32 export name length, name, u32 number of queries, queries. */
	if (len < 4 || (namelen = ds_get_be32(d)) > len - 8)
		return srv_opt_reply(f, opt, REP_ERR_UNSUP, NULL, 0);
	off = 4 + namelen;
	nq = ds_get_be32(d + off);
	off += 4;
	for (uint32_t i = 0; i < nq && off + 4 <= len; i++) {
		uint32_t ql = ds_get_be32(d + off);

		off += 4;
		if (ql > len - off)
			break;
		if (ql == sizeof(base) - 1 && memcmp(d + off, base, ql) == 0) {
			const char *name = f->h.mode & NBDSCRIPT_META_OTHER ? "base:allocatioN" : base;

			ds_put_be32(rep, f->h.ctx_id);
			memcpy(rep + 4, name, sizeof(base) - 1);
			if (srv_opt_reply(f, opt, REP_META_CONTEXT, rep, 4 + sizeof(base) - 1) < 0)
				return -1;
		}
		off += ql;
	}
	return srv_opt_reply(f, opt, REP_ACK, NULL, 0);
}

/* Answers INFO/GO with the export and (unless told not to) block sizes. */
static int srv_go(struct nbdscript *f, uint32_t opt)
{
	uint8_t info[14];

	ds_put_be16(info, INFO_EXPORT);
	ds_put_be64(info + 2, f->h.size);
	ds_put_be16(info + 10, f->h.tflags);
	if (srv_opt_reply(f, opt, REP_INFO, info, 12) < 0)
		return -1;
	if (!(f->h.mode & NBDSCRIPT_NO_BLOCK_SIZE)) {
		ds_put_be16(info, INFO_BLOCK_SIZE);
		ds_put_be32(info + 2, f->h.min_block);
		ds_put_be32(info + 6, f->h.pref_block);
		ds_put_be32(info + 10, f->h.max_block);
		if (srv_opt_reply(f, opt, REP_INFO, info, 14) < 0)
			return -1;
	}
	return srv_opt_reply(f, opt, REP_ACK, NULL, 0);
}

/* The fixed-newstyle handshake. Returns 1 in transmission, 0 or -1 when
 * the connection ends. */
static int srv_handshake(struct nbdscript *f)
{
	uint8_t g[18], cflags[4], oh[16];
	static uint8_t od[4096];

	ds_put_be64(g, NBDMAGIC);
	ds_put_be64(g + 8, IHAVEOPT);
	ds_put_be16(g + 16, 3);                           /* FIXED_NEWSTYLE | NO_ZEROES */
	if (srv_write(f, g, sizeof(g)) < 0 || srv_read(f, cflags, 4) < 0)
		return -1;
	for (unsigned n = 0; n < 32; n++) {
		uint32_t opt, len;

		if (srv_read(f, oh, sizeof(oh)) < 0 || ds_get_be64(oh) != IHAVEOPT)
			return -1;
		opt = ds_get_be32(oh + 8);
		len = ds_get_be32(oh + 12);
		if (len > sizeof(od) || srv_read(f, od, len) < 0)
			return -1;
		switch (opt) {
		case OPT_EXPORT_NAME: {
			uint8_t e[10];

			ds_put_be64(e, f->h.size);
			ds_put_be16(e + 8, f->h.tflags);
			return srv_write(f, e, sizeof(e)) < 0 ? -1 : 1;
		}
		case OPT_ABORT:
			(void)srv_opt_reply(f, opt, REP_ACK, NULL, 0);
			return 0;
		case OPT_STRUCTURED_REPLY:
			if (srv_opt_reply(f, opt, f->h.mode & NBDSCRIPT_NO_SR ? REP_ERR_UNSUP : REP_ACK,
					  NULL, 0) < 0)
				return -1;
			break;
		case OPT_SET_META_CONTEXT:
			if (srv_set_meta(f, opt, od, len) < 0)
				return -1;
			break;
		case OPT_GO:
		case OPT_INFO:
			if (opt == OPT_GO && (f->h.mode & NBDSCRIPT_NO_GO)) {
				if (srv_opt_reply(f, opt, REP_ERR_UNSUP, NULL, 0) < 0)
					return -1;
				break;
			}
			if (srv_go(f, opt) < 0)
				return -1;
			if (opt == OPT_GO)
				return 1;
			break;
		default:
			if (srv_opt_reply(f, opt, REP_ERR_UNSUP, NULL, 0) < 0)
				return -1;
			break;
		}
	}
	return -1;
}

struct request {
	uint16_t type;
	uint8_t cookie[8];
	uint64_t offset;
	uint32_t length;
};

static int srv_chunk(struct nbdscript *f, const struct request *rq, uint16_t flags, uint16_t type,
		     const void *payload, uint32_t len)
{
	uint8_t h[20];

	ds_put_be32(h, STRUCTURED_MAGIC);
	ds_put_be16(h + 4, flags);
	ds_put_be16(h + 6, type);
	memcpy(h + 8, rq->cookie, 8);
	ds_put_be32(h + 16, len);
	if (srv_write(f, h, sizeof(h)) < 0)
		return -1;
	return len ? srv_write(f, payload, len) : 0;
}

/* Runs one op of the program for @rq. Returns 1 if the reply ended, 0 if
 * not, -1 when the connection ends. */
static int srv_op(struct nbdscript *f, const struct request *rq)
{
	uint8_t op = take8(f) & 7;

	switch (op) {
	case 0:
	case 7: {
		uint32_t err = op == 0 ? take32(f) : 0;
		uint8_t h[16];

		ds_put_be32(h, SIMPLE_MAGIC);
		ds_put_be32(h + 4, err);
		memcpy(h + 8, rq->cookie, 8);
		if (srv_write(f, h, sizeof(h)) < 0)
			return -1;
		if (rq->type == CMD_READ && err == 0) {
			if (rq->length > MAX_PAYLOAD)
				return -1;
			memset(f->scratch, 0xa5, rq->length);
			if (srv_write(f, f->scratch, rq->length) < 0)
				return -1;
		}
		return 1;
	}
	case 1: {
		uint16_t flags = take8(f);
		uint32_t rel = take32(f);
		uint32_t len = take32(f);
		uint8_t fill = take8(f);

		if (len == UINT32_MAX)
			len = rq->length;
		if (len > MAX_PAYLOAD)
			return -1;
		ds_put_be64(f->scratch, rq->offset + rel);
		memset(f->scratch + 8, fill, len);
		if (srv_chunk(f, rq, flags, CHUNK_OFFSET_DATA, f->scratch, 8 + len) < 0)
			return -1;
		return flags & REPLY_FLAG_DONE;
	}
	case 2: {
		uint16_t flags = take8(f);
		uint32_t rel = take32(f);
		uint32_t len = take32(f);

		ds_put_be64(f->scratch, rq->offset + rel);
		ds_put_be32(f->scratch + 8, len == UINT32_MAX ? rq->length : len);
		if (srv_chunk(f, rq, flags, CHUNK_OFFSET_HOLE, f->scratch, 12) < 0)
			return -1;
		return flags & REPLY_FLAG_DONE;
	}
	case 3: {
		uint16_t flags = take8(f);
		uint32_t id = take32(f) ^ f->h.ctx_id;
		uint8_t n = take8(f);

		ds_put_be32(f->scratch, id);
		take(f, f->scratch + 4, 8u * n);
		if (srv_chunk(f, rq, flags, CHUNK_BLOCK_STATUS, f->scratch, 4 + 8u * n) < 0)
			return -1;
		return flags & REPLY_FLAG_DONE;
	}
	case 4: {
		uint16_t flags = take8(f);
		uint16_t type = take16(f);
		uint16_t len = take16(f);

		take(f, f->scratch, len);
		if (srv_chunk(f, rq, flags, type, f->scratch, len) < 0)
			return -1;
		return flags & REPLY_FLAG_DONE;
	}
	case 5: {
		uint16_t len = take16(f);

		take(f, f->scratch, len);
		return srv_write(f, f->scratch, len) < 0 ? -1 : 0;
	}
	default:
		return -1;                          /* CLOSE */
	}
}

/* Transmission: one request, then the program's reply to it. */
static void srv_transmission(struct nbdscript *f)
{
	for (;;) {
		uint8_t h[28];
		struct request rq;
		int r;

		if (srv_wait_request(f) < 0 || srv_read(f, h, sizeof(h)) < 0 ||
		    ds_get_be32(h) != REQUEST_MAGIC)
			return;
		rq.type = (uint16_t)(h[6] << 8 | h[7]);
		memcpy(rq.cookie, h + 8, 8);
		rq.offset = ds_get_be64(h + 16);
		rq.length = ds_get_be32(h + 24);
		if (nbdscript_verbose)
			fprintf(stderr, "server: request %u at %" PRIu64 ", %" PRIu32 " bytes\n",
				rq.type, rq.offset, rq.length);
		if (rq.type == CMD_DISC)
			return;
		if (rq.type == CMD_WRITE &&
		    (rq.length > MAX_PAYLOAD || srv_read(f, f->scratch, rq.length) < 0))
			return;
		do {
			if (f->pos >= f->size)
				return;             /* the program is over */
			r = srv_op(f, &rq);
		} while (r == 0);
		if (r < 0)
			return;
	}
}

/* Raw mode: sends the rest of the input while discarding what the client
 * sends, then ends its side and drains until the client closes. */
static void srv_raw(struct nbdscript *f)
{
	bool wr_done = f->pos >= f->size;
	char buf[4096];

	if (wr_done)
		(void)shutdown(f->fd, SHUT_WR);
	for (;;) {
		struct pollfd pfd = { .fd = f->fd, .events = POLLIN | (wr_done ? 0 : POLLOUT) };

		if (poll(&pfd, 1, 10000) <= 0)
			return;
		if (pfd.revents & (POLLIN | POLLHUP | POLLERR)) {
			ssize_t n = recv(f->fd, buf, sizeof(buf), MSG_DONTWAIT);

			if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
				return;
		}
		if (!wr_done && (pfd.revents & POLLOUT)) {
			ssize_t n = send(f->fd, f->data + f->pos, f->size - f->pos,
					 MSG_NOSIGNAL | MSG_DONTWAIT);

			if (n > 0)
				f->pos += (size_t)n;
			else if (n < 0 && errno != EAGAIN && errno != EINTR)
				return;
			if (f->pos == f->size) {
				wr_done = true;
				(void)shutdown(f->fd, SHUT_WR);
			}
		}
	}
}

static void *srv_main(void *arg)
{
	struct nbdscript *f = arg;

	if (f->h.mode & NBDSCRIPT_RAW)
		srv_raw(f);
	else if (srv_handshake(f) == 1)
		srv_transmission(f);
	close(f->fd);
	return NULL;
}

static void srv_join(struct nbdscript *f)
{
	if (f->th_live) {
		pthread_join(f->th, NULL);
		f->th_live = false;
	}
}

/* The backend's connect_fd hook: a new socketpair and a server thread on
 * its other end (after the previous connection's thread has ended: the
 * backend closed that connection before reconnecting). */
static int nbdscript_connect(void *opaque)
{
	struct nbdscript *f = opaque;
	int sv[2];

	srv_join(f);
	if (f->nconns == MAX_CONNS || (f->nconns > 0 && f->pos >= f->size))
		return -ECONNREFUSED;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		return -errno;
	f->nconns++;
	f->fd = sv[1];
	if (pthread_create(&f->th, NULL, srv_main, f) != 0)
		abort();
	f->th_live = true;
	return sv[0];
}

/* ---- the client's side ----------------------------------------------------------- */

int nbdscript_new(const uint8_t *script, size_t size, struct nbdscript **out)
{
	struct nbdscript *f = calloc(1, sizeof(*f));

	*out = NULL;
	if (!f || !(f->scratch = malloc(MAX_PAYLOAD + 64 + 8 * 256))) {
		free(f);
		return -ENOMEM;
	}
	f->data = script;
	f->size = size;
	f->fd = -1;
	f->h.mode = take8(f);
	f->h.tflags = take16(f) | FLAG_HAS_FLAGS;
	f->h.size = take64(f);
	f->h.min_block = take32(f);
	f->h.pref_block = take32(f);
	f->h.max_block = take32(f);
	f->h.ctx_id = take32(f);
	*out = f;
	return 0;
}

void nbdscript_free(struct nbdscript *f)
{
	if (!f)
		return;
	srv_join(f);
	free(f->scratch);
	free(f);
}

void nbdscript_client_opts(struct nbdscript *f, struct nbdclient_opts *o)
{
	o->connect_fd = nbdscript_connect;
	o->connect_opaque = f;
}

bool nbdscript_read_only(const struct nbdscript *f)
{
	return (f->h.tflags & FLAG_READ_ONLY) || (f->h.mode & NBDSCRIPT_OPEN_RO);
}

void nbdscript_run_until(struct nbdscript *f, struct reactor *r, const unsigned *left)
{
	while (*left > 0) {
		if (reactor_run_once(r, false) > 0)
			continue;
		atomic_store(&f->client_blocked, true);
		(void)reactor_run_once(r, true);
		atomic_store(&f->client_blocked, false);
		atomic_fetch_add(&f->client_passes, 1);
	}
}
