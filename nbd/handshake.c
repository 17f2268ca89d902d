/* SPDX-License-Identifier: MIT */
/*
 * handshake.c: the fixed-newstyle handshake (the NBD protocol, doc/proto.md
 * in the nbd project: "Fixed newstyle negotiation", "Option types", "Option
 * reply types", "Metadata querying", "Size constraints", "TLS support"):
 * greeting, client flags, and every option up to NBD_OPT_GO /
 * NBD_OPT_EXPORT_NAME.
 *
 * Notes on the design
 * -------------------
 * - One option at a time, as the protocol requires: read the 16-byte
 *   header exactly, read (or skip) the data exactly, build every reply for
 *   it into hs_out, send, then read the next header. Exact reads mean no
 *   byte after the option is consumed, which matters for STARTTLS (the
 *   ClientHello follows) and for the switch to transmission.
 * - Bounds: option data up to NBDSRV_OPT_MAX is buffered; up to
 *   NBDSRV_OPT_SKIP_MAX it is read and discarded (ERR_TOO_BIG, or
 *   ERR_UNSUP for unknown options); beyond that, and past
 *   NBDSRV_MAX_OPTIONS options, the client is dropped. Strings are at most
 *   4096 bytes.
 * - Time: the whole handshake, from the greeting to GO, must finish
 *   within the engine's handshake deadline (net/conn.c says why a
 *   deadline); GO and EXPORT_NAME end it (netsrv_conn_established). A
 *   real client needs a few round trips and perhaps a TLS handshake.
 * - State the spec makes stateful (structured replies, the selected meta
 *   contexts and the export they were selected for) is forgotten at
 *   STARTTLS. INFO and GO compute the same answer from the same inputs,
 *   so a GO after an INFO repeats it exactly.
 * - TLS modes: OFF answers STARTTLS with ERR_POLICY; REQUIRE answers
 *   everything but STARTTLS and ABORT with ERR_TLS_REQD before TLS, and
 *   drops EXPORT_NAME (which cannot fail politely).
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/compiler.h"
#include "common/log.h"
#include "nbd/meta.h"
#include "nbd/server-internal.h"

static void hs_wait_option(struct nbdsrv_conn *c);

/* ---- plumbing ------------------------------------------------------------- */

/* Makes *@buf (of *@cap bytes) hold @need bytes, reallocating it to
 * @new_cap (>= @need) when it is smaller. False when out of memory (*@buf
 * is unchanged then). */
static bool hs_grow(uint8_t **buf, size_t *cap, size_t need, size_t new_cap)
{
	uint8_t *p;

	if (need <= *cap)
		return true;
	p = realloc(*buf, new_cap);
	if (!p)
		return false;
	*buf = p;
	*cap = new_cap;
	return true;
}

static bool hs_reserve(struct nbdsrv_conn *c, size_t more)
{
	size_t need = c->hs->out_len + more;

	return hs_grow(&c->hs->out, &c->hs->out_cap, need,
		       MAX(c->hs->out_cap * 2, MAX(need, (size_t)4096)));
}

/* Appends raw bytes to the pending output. */
static void hs_put(struct nbdsrv_conn *c, const void *p, size_t len)
{
	if (!hs_reserve(c, len)) {
		log_error("%s: out of memory building a handshake reply", c->name);
		netsrv_conn_close(c->nc, false, NULL);
		return;
	}
	memcpy(c->hs->out + c->hs->out_len, p, len);
	c->hs->out_len += len;
}

/* Appends an option reply header for the current option. */
static void hs_reply_hdr(struct nbdsrv_conn *c, uint32_t type, uint32_t len)
{
	uint8_t h[NBDW_OPT_REPLY_HDR_BYTES];

	ds_put_be64(h, NBDW_OPT_REPLY_MAGIC);
	ds_put_be32(h + 8, c->hs->opt);
	ds_put_be32(h + 12, type);
	ds_put_be32(h + 16, len);
	hs_put(c, h, sizeof(h));
}

static void hs_reply(struct nbdsrv_conn *c, uint32_t type, const void *data, uint32_t len)
{
	hs_reply_hdr(c, type, len);
	if (len)
		hs_put(c, data, len);
}

/* An error reply with a message for humans. */
static void hs_error(struct nbdsrv_conn *c, uint32_t type, const char *fmt, ...) PRINTF_FMT(3, 4);
static void hs_error(struct nbdsrv_conn *c, uint32_t type, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (n < 0)
		n = 0;
	n = MIN(n, (int)sizeof(msg) - 1);
	log_debug("%s: option %u refused: %s", c->name, c->hs->opt, msg);
	hs_reply(c, type, msg, (uint32_t)n);
}

static void hs_sent(struct netsrv_conn *nc, struct netsrv_tx *tx UNUSED)
{
	struct nbdsrv_conn *c = netsrv_conn_priv(nc);
	void (*after)(struct nbdsrv_conn *c) = c->hs->after;

	c->hs->out_len = 0;
	c->hs->after = NULL;
	if (netsrv_conn_closing(c->nc) || !after)
		return;
	after(c);
}

/* Sends what was built, then runs @after. */
static void hs_send(struct nbdsrv_conn *c, void (*after)(struct nbdsrv_conn *c))
{
	if (netsrv_conn_closing(c->nc))
		return;
	c->hs->after = after;
	c->hs->iov.iov_base = c->hs->out;
	c->hs->iov.iov_len = c->hs->out_len;
	c->hs->tx.iov = &c->hs->iov;
	c->hs->tx.iovcnt = 1;
	c->hs->tx.sent = hs_sent;
	netsrv_tx_queue(c->nc, &c->hs->tx);
	netsrv_tx_kick(c->nc);
}

static void hs_rx_cb(struct netsrv_conn *nc, ssize_t res)
{
	struct nbdsrv_conn *c = netsrv_conn_priv(nc);

	if (res <= 0) {
		if (res == 0 && c->hs->idle && c->hs->got == 0)
			netsrv_conn_close(c->nc, true, "client left during the handshake");
		else {
			log_warn("%s: handshake cut short: %s", c->name,
				 res == 0 ? "client closed the connection mid-message"
					  : strerror((int)-res));
			netsrv_conn_close(c->nc, false, NULL);
		}
		return;
	}
	c->hs->got += (size_t)res;
	if (c->hs->got < c->hs->want) {
		netsrv_rx(c->nc, c->hs->rbuf + c->hs->got, c->hs->want - c->hs->got, true, hs_rx_cb);
		return;
	}
	c->hs->next(c);
}

/* Reads exactly @len bytes into @buf, then runs @next. */
static void hs_read(struct nbdsrv_conn *c, void *buf, size_t len, void (*next)(struct nbdsrv_conn *c))
{
	c->hs->rbuf = buf;
	c->hs->want = len;
	c->hs->got = 0;
	c->hs->next = next;
	if (len == 0) {
		next(c);
		return;
	}
	netsrv_rx(c->nc, buf, len, true, hs_rx_cb);
}

static bool hs_stopping(struct nbdsrv_conn *c)
{
	return netsrv_conn_stopping(c->nc);
}

/* ---- exports and flags ----------------------------------------------------- */

uint16_t nbdsrv_tflags(const struct nbdsrv_export *e, bool sr)
{
	const struct disk_info *info = disk_get_info(e->disk);
	uint16_t f = NBDW_FLAG_HAS_FLAGS | NBDW_FLAG_SEND_FLUSH | NBDW_FLAG_SEND_CACHE;

	if (e->read_only) {
		f |= NBDW_FLAG_READ_ONLY;
	} else {
		/* FUA is native or emulated with a flush by the dispatcher;
		 * write-zeroes is native or emulated with writes; both are
		 * honoured, so both are advertised. */
		f |= NBDW_FLAG_SEND_FUA | NBDW_FLAG_SEND_WRITE_ZEROES;
		if (info->unmap_behavior != DISK_UNMAP_IGNORED)
			f |= NBDW_FLAG_SEND_TRIM;
		if (info->caps & DISK_CAP_FAST_ZERO)
			f |= NBDW_FLAG_SEND_FAST_ZERO;
	}
	if (sr)
		f |= NBDW_FLAG_SEND_DF;
	if (info->caps & DISK_CAP_COHERENT)
		f |= NBDW_FLAG_CAN_MULTI_CONN;
	return f;
}

static uint64_t hs_export_size(const struct nbdsrv_export *e)
{
	const struct disk_info *info = disk_get_info(e->disk);

	return disk_sector_count(e->disk) << info->sector_shift;
}

static void hs_block_sizes(const struct nbdsrv_export *e, uint32_t *min, uint32_t *pref,
			   uint32_t *max)
{
	const struct disk_info *info = disk_get_info(e->disk);

	*min = info->sector_size;
	/* Below the physical sector (or 4 KiB, the spec's default) a write
	 * costs a read-modify-write somewhere down the stack. */
	*pref = MAX(info->physical_sector_size, MAX(info->sector_size, 4096u));
	*max = NBDSRV_MAX_PAYLOAD;
}

/* ---- entering transmission ---------------------------------------------------- */

static void hs_enter(struct nbdsrv_conn *c, struct nbdsrv_export *e)
{
	bool same = c->hs->meta_export && c->hs->meta_export_len == e->namelen &&
		    memcmp(c->hs->meta_export, e->name, e->namelen) == 0;
	/* Contexts selected for another name do not carry over. */
	uint32_t meta_active = (c->hs->meta && same) ? c->hs->meta : 0;
	bool sr = c->hs->sr;

	netsrv_conn_established(c->nc);
	nbdsrv_hs_free(c);
	nbdsrv_xmit_begin(c, e, sr, meta_active);
}

static void hs_enter_after_send(struct nbdsrv_conn *c)
{
	struct nbdsrv_export *e = c->hs->exp;

	c->hs->exp = NULL;
	hs_enter(c, e);
}

/* ---- options --------------------------------------------------------------------- */

static void hs_opt_export_name(struct nbdsrv_conn *c)
{
	struct nbdsrv_export *e = nbdsrv_find_export(c->srv, (const char *)c->hs->in, c->hs->optlen);
	uint8_t r[NBDW_EXPORT_NAME_REPLY_BYTES + NBDW_EXPORT_NAME_PAD_BYTES];
	size_t len = NBDW_EXPORT_NAME_REPLY_BYTES;

	if (!e) {
		log_warn("%s: NBD_OPT_EXPORT_NAME for unknown export '%.*s': dropping the client",
			 c->name, (int)MIN(c->hs->optlen, 256u), (const char *)c->hs->in);
		netsrv_conn_close(c->nc, false, NULL);
		return;
	}
	memset(r, 0, sizeof(r));
	ds_put_be64(r, hs_export_size(e));
	ds_put_be16(r + 8, nbdsrv_tflags(e, c->hs->sr));
	if (!c->hs->no_zeroes)
		len += NBDW_EXPORT_NAME_PAD_BYTES;
	hs_put(c, r, len);
	c->hs->exp = e;
	hs_send(c, hs_enter_after_send);
}

static void hs_opt_list(struct nbdsrv_conn *c)
{
	if (c->hs->optlen != 0) {
		hs_error(c, NBDW_REP_ERR_INVALID, "NBD_OPT_LIST takes no data");
		return;
	}
	pthread_mutex_lock(&c->srv->lock);
	for (unsigned i = 0; i < c->srv->nexports; i++) {
		const struct nbdsrv_export *e = c->srv->exports[i];
		size_t dlen = e->description ? strlen(e->description) : 0;
		uint8_t n[4];

		if (e->removing)
			continue;

		ds_put_be32(n, (uint32_t)e->namelen);
		hs_reply_hdr(c, NBDW_REP_SERVER, (uint32_t)(4 + e->namelen + dlen));
		hs_put(c, n, 4);
		hs_put(c, e->name, e->namelen);
		if (dlen)
			hs_put(c, e->description, dlen);
	}
	pthread_mutex_unlock(&c->srv->lock);
	hs_reply(c, NBDW_REP_ACK, NULL, 0);
}

static void hs_tls_ready(struct netsrv_conn *nc)
{
	hs_wait_option(netsrv_conn_priv(nc));
}

static void hs_start_tls_after_ack(struct nbdsrv_conn *c)
{
	/* The spec: nothing negotiated before STARTTLS survives it. */
	c->hs->sr = false;
	c->hs->meta = 0;
	free(c->hs->meta_export);
	c->hs->meta_export = NULL;
	c->hs->meta_export_len = 0;
	netsrv_tls_begin(c->nc, hs_tls_ready);
}

static bool hs_opt_starttls(struct nbdsrv_conn *c)
{
	if (c->hs->optlen != 0) {
		hs_error(c, NBDW_REP_ERR_INVALID, "NBD_OPT_STARTTLS takes no data");
		return false;
	}
	if (c->srv->opts.tls_mode == NBDSRV_TLS_OFF) {
		hs_error(c, NBDW_REP_ERR_POLICY, "TLS is not enabled on this server");
		return false;
	}
	if (netsrv_conn_tls(c->nc)) {
		hs_error(c, NBDW_REP_ERR_INVALID, "TLS is already active");
		return false;
	}
	hs_reply(c, NBDW_REP_ACK, NULL, 0);
	return true;
}

/* INFO and GO. Returns the export to enter (GO success) or NULL. */
static struct nbdsrv_export *hs_opt_info_go(struct nbdsrv_conn *c)
{
	const uint8_t *d = c->hs->in;
	uint32_t namelen, min, pref, max;
	bool want_name = false, want_desc = false, want_bs = false;
	struct nbdsrv_export *e;
	uint16_t nreq;
	uint8_t b[14];

	if (c->hs->optlen < 6) {
		hs_error(c, NBDW_REP_ERR_INVALID, "option too short");
		return NULL;
	}
	namelen = ds_get_be32(d);
	if (namelen > c->hs->optlen - 6) {
		hs_error(c, NBDW_REP_ERR_INVALID, "export name length %u exceeds the option",
			 namelen);
		return NULL;
	}
	if (namelen > NBDW_STRING_MAX) {
		hs_error(c, NBDW_REP_ERR_INVALID, "export name longer than %u bytes",
			 NBDW_STRING_MAX);
		return NULL;
	}
	nreq = ds_get_be16(d + 4 + namelen);
	if (4 + namelen + 2 + 2 * (uint32_t)nreq != c->hs->optlen) {
		hs_error(c, NBDW_REP_ERR_INVALID, "%u information requests do not fit the option",
			 nreq);
		return NULL;
	}
	for (unsigned i = 0; i < nreq; i++) {
		switch (ds_get_be16(d + 4 + namelen + 2 + 2 * i)) {
		case NBDW_INFO_NAME: want_name = true; break;
		case NBDW_INFO_DESCRIPTION: want_desc = true; break;
		case NBDW_INFO_BLOCK_SIZE: want_bs = true; break;
		default: break;  /* INFO_EXPORT is always sent; others ignored */
		}
	}
	e = nbdsrv_find_export(c->srv, (const char *)d + 4, namelen);
	if (!e) {
		hs_error(c, NBDW_REP_ERR_UNKNOWN, "export '%.*s' not found", (int)MIN(namelen, 256u),
			 (const char *)d + 4);
		return NULL;
	}
	hs_block_sizes(e, &min, &pref, &max);
	ds_put_be16(b, NBDW_INFO_BLOCK_SIZE);
	ds_put_be32(b + 2, min);
	ds_put_be32(b + 6, pref);
	ds_put_be32(b + 10, max);
	if (c->hs->opt == NBDW_OPT_GO && !want_bs && min > 512) {
		/* Clients that did not ask default to 512-byte requests, which
		 * this export would refuse. */
		hs_reply(c, NBDW_REP_INFO, b, 14);
		hs_error(c, NBDW_REP_ERR_BLOCK_SIZE_REQD,
			 "export '%s' needs %u-byte aligned requests: request NBD_INFO_BLOCK_SIZE",
			 e->name, min);
		nbdsrv_export_put(e);
		return NULL;
	}
	{
		uint8_t x[12];

		ds_put_be16(x, NBDW_INFO_EXPORT);
		ds_put_be64(x + 2, hs_export_size(e));
		ds_put_be16(x + 10, nbdsrv_tflags(e, c->hs->sr));
		hs_reply(c, NBDW_REP_INFO, x, 12);
	}
	if (want_name) {
		uint8_t t[2];

		ds_put_be16(t, NBDW_INFO_NAME);
		hs_reply_hdr(c, NBDW_REP_INFO, (uint32_t)(2 + e->namelen));
		hs_put(c, t, 2);
		hs_put(c, e->name, e->namelen);
	}
	if (want_desc && e->description) {
		size_t dl = strlen(e->description);
		uint8_t t[2];

		ds_put_be16(t, NBDW_INFO_DESCRIPTION);
		hs_reply_hdr(c, NBDW_REP_INFO, (uint32_t)(2 + dl));
		hs_put(c, t, 2);
		hs_put(c, e->description, dl);
	}
	hs_reply(c, NBDW_REP_INFO, b, 14);
	hs_reply(c, NBDW_REP_ACK, NULL, 0);
	if (c->hs->opt == NBDW_OPT_GO)
		return e;           /* the reference goes to transmission */
	nbdsrv_export_put(e);
	return NULL;
}

static void hs_opt_structured_reply(struct nbdsrv_conn *c)
{
	if (c->hs->optlen != 0) {
		hs_error(c, NBDW_REP_ERR_INVALID, "NBD_OPT_STRUCTURED_REPLY takes no data");
		return;
	}
	if (c->hs->sr) {
		hs_error(c, NBDW_REP_ERR_INVALID, "structured replies are already negotiated");
		return;
	}
	c->hs->sr = true;
	hs_reply(c, NBDW_REP_ACK, NULL, 0);
}

static void hs_opt_meta(struct nbdsrv_conn *c)
{
	const bool set = c->hs->opt == NBDW_OPT_SET_META_CONTEXT;
	const uint8_t *d = c->hs->in;
	uint32_t namelen, nq, pos, mask = 0;

	if (set) {
		/* SET replaces the selection, even when it fails. */
		c->hs->meta = 0;
		free(c->hs->meta_export);
		c->hs->meta_export = NULL;
		c->hs->meta_export_len = 0;
	}
	if (!c->hs->sr) {
		hs_error(c, NBDW_REP_ERR_INVALID, "negotiate structured replies first");
		return;
	}
	if (c->hs->optlen < 8) {
		hs_error(c, NBDW_REP_ERR_INVALID, "option too short");
		return;
	}
	namelen = ds_get_be32(d);
	if (namelen > c->hs->optlen - 8 || namelen > NBDW_STRING_MAX) {
		hs_error(c, NBDW_REP_ERR_INVALID, "bad export name length %u", namelen);
		return;
	}
	pos = 4 + namelen;
	nq = ds_get_be32(d + pos);
	pos += 4;
	if (nq > (c->hs->optlen - pos) / 4) {
		hs_error(c, NBDW_REP_ERR_INVALID, "%u queries do not fit the option", nq);
		return;
	}
	for (uint32_t i = 0; i < nq; i++) {
		uint32_t qlen, m;

		if (c->hs->optlen - pos < 4) {
			hs_error(c, NBDW_REP_ERR_INVALID, "query %u is truncated", i);
			return;
		}
		qlen = ds_get_be32(d + pos);
		pos += 4;
		if (qlen > c->hs->optlen - pos) {
			hs_error(c, NBDW_REP_ERR_INVALID, "query %u length %u exceeds the option", i,
				 qlen);
			return;
		}
		if (qlen > NBDW_STRING_MAX) {
			hs_error(c, NBDW_REP_ERR_TOO_BIG, "query %u longer than %u bytes", i,
				 NBDW_STRING_MAX);
			return;
		}
		if (nbdsrv_meta_match((const char *)d + pos, qlen, !set, &m) < 0) {
			hs_error(c, NBDW_REP_ERR_INVALID, "query '%.*s' has no namespace",
				 (int)MIN(qlen, 256u), (const char *)d + pos);
			return;
		}
		mask |= m;
		pos += qlen;
	}
	if (pos != c->hs->optlen) {
		hs_error(c, NBDW_REP_ERR_INVALID, "%u bytes after the last query", c->hs->optlen - pos);
		return;
	}
	{
		struct nbdsrv_export *e = nbdsrv_find_export(c->srv, (const char *)d + 4, namelen);

		if (!e) {
			hs_error(c, NBDW_REP_ERR_UNKNOWN, "export '%.*s' not found",
				 (int)MIN(namelen, 256u), (const char *)d + 4);
			return;
		}
		nbdsrv_export_put(e);
	}
	if (nq == 0)
		mask = set ? 0 : NBDSRV_META_ALL;
	for (unsigned i = 0; i < NBDSRV_META_COUNT; i++) {
		const char *name = nbdsrv_meta_name(i);
		uint8_t id[4];

		if (!(mask & (1u << i)))
			continue;
		ds_put_be32(id, set ? nbdsrv_meta_id(i) : 0);
		hs_reply_hdr(c, NBDW_REP_META_CONTEXT, (uint32_t)(4 + strlen(name)));
		hs_put(c, id, 4);
		hs_put(c, name, strlen(name));
	}
	if (set) {
		c->hs->meta_export = malloc(namelen + 1);
		if (!c->hs->meta_export) {
			c->hs->out_len = 0;
			hs_error(c, NBDW_REP_ERR_TOO_BIG, "out of memory");
			return;
		}
		memcpy(c->hs->meta_export, d + 4, namelen);
		c->hs->meta_export[namelen] = '\0';
		c->hs->meta_export_len = namelen;
		c->hs->meta = mask;
	}
	hs_reply(c, NBDW_REP_ACK, NULL, 0);
}

/* Handles the option in c->hs->opt whose data (c->hs->optlen bytes) is in hs_in. */
static void hs_got_option(struct nbdsrv_conn *c)
{
	struct nbdsrv_export *e;

	if (hs_stopping(c) && c->hs->opt != NBDW_OPT_ABORT) {
		if (c->hs->opt == NBDW_OPT_EXPORT_NAME) {
			netsrv_conn_close(c->nc, false, "EXPORT_NAME while shutting down");
			return;
		}
		hs_error(c, NBDW_REP_ERR_SHUTDOWN, "the server is shutting down");
		hs_send(c, hs_wait_option);
		return;
	}
	if (c->srv->opts.tls_mode == NBDSRV_TLS_REQUIRE && !netsrv_conn_tls(c->nc) &&
	    c->hs->opt != NBDW_OPT_STARTTLS && c->hs->opt != NBDW_OPT_ABORT) {
		if (c->hs->opt == NBDW_OPT_EXPORT_NAME) {
			log_warn("%s: NBD_OPT_EXPORT_NAME without TLS, which this server "
				 "requires: dropping the client", c->name);
			netsrv_conn_close(c->nc, false, NULL);
			return;
		}
		hs_error(c, NBDW_REP_ERR_TLS_REQD, "this server requires TLS: send NBD_OPT_STARTTLS");
		hs_send(c, hs_wait_option);
		return;
	}
	switch (c->hs->opt) {
	case NBDW_OPT_EXPORT_NAME:
		hs_opt_export_name(c);
		return;
	case NBDW_OPT_ABORT:
		hs_reply(c, NBDW_REP_ACK, NULL, 0);
		hs_send(c, NULL);
		netsrv_conn_close(c->nc, true, "client sent NBD_OPT_ABORT");
		return;
	case NBDW_OPT_LIST:
		hs_opt_list(c);
		break;
	case NBDW_OPT_STARTTLS:
		if (hs_opt_starttls(c)) {
			hs_send(c, hs_start_tls_after_ack);
			return;
		}
		break;
	case NBDW_OPT_INFO:
	case NBDW_OPT_GO:
		e = hs_opt_info_go(c);
		if (e) {
			c->hs->exp = e;
			hs_send(c, hs_enter_after_send);
			return;
		}
		break;
	case NBDW_OPT_STRUCTURED_REPLY:
		hs_opt_structured_reply(c);
		break;
	case NBDW_OPT_LIST_META_CONTEXT:
	case NBDW_OPT_SET_META_CONTEXT:
		hs_opt_meta(c);
		break;
	default:
		/* Includes the withdrawn PEEK_EXPORT and the experimental
		 * EXTENDED_HEADERS, which this server does not implement. */
		hs_error(c, NBDW_REP_ERR_UNSUP, "option %u is not supported", c->hs->opt);
		break;
	}
	hs_send(c, hs_wait_option);
}

static void hs_skip_more(struct nbdsrv_conn *c);

static void hs_skip_step(struct nbdsrv_conn *c)
{
	c->hs->skip_left -= c->hs->want;
	hs_skip_more(c);
}

/* Discards the rest of an oversized option, then refuses it. */
static void hs_skip_more(struct nbdsrv_conn *c)
{
	if (c->hs->skip_left > 0) {
		hs_read(c, c->hs->in, (size_t)MIN(c->hs->skip_left, (uint64_t)c->hs->in_cap), hs_skip_step);
		return;
	}
	switch (c->hs->opt) {
	case NBDW_OPT_LIST:
	case NBDW_OPT_STARTTLS:
	case NBDW_OPT_INFO:
	case NBDW_OPT_GO:
	case NBDW_OPT_STRUCTURED_REPLY:
	case NBDW_OPT_LIST_META_CONTEXT:
	case NBDW_OPT_SET_META_CONTEXT:
		hs_error(c, NBDW_REP_ERR_TOO_BIG, "option data of %u bytes is over the limit of %u",
			 c->hs->optlen, NBDSRV_OPT_MAX);
		if (c->hs->opt == NBDW_OPT_SET_META_CONTEXT) {
			c->hs->meta = 0;
			free(c->hs->meta_export);
			c->hs->meta_export = NULL;
		}
		break;
	case NBDW_OPT_ABORT:
		hs_reply(c, NBDW_REP_ACK, NULL, 0);
		hs_send(c, NULL);
		netsrv_conn_close(c->nc, true, "client sent NBD_OPT_ABORT");
		return;
	default:
		hs_error(c, NBDW_REP_ERR_UNSUP, "option %u is not supported", c->hs->opt);
		break;
	}
	hs_send(c, hs_wait_option);
}

static bool hs_in_reserve(struct nbdsrv_conn *c, size_t n)
{
	return hs_grow(&c->hs->in, &c->hs->in_cap, n, n);
}

static void hs_got_header(struct nbdsrv_conn *c)
{
	c->hs->idle = false;
	if (ds_get_be64(c->hs->hdr) != NBDW_IHAVEOPT) {
		log_warn("%s: bad option magic 0x%016llx: dropping the client", c->name,
			 (unsigned long long)ds_get_be64(c->hs->hdr));
		netsrv_conn_close(c->nc, false, NULL);
		return;
	}
	c->hs->opt = ds_get_be32(c->hs->hdr + 8);
	c->hs->optlen = ds_get_be32(c->hs->hdr + 12);
	if (++c->hs->nopts > NBDSRV_MAX_OPTIONS) {
		log_warn("%s: more than %u options: dropping the client", c->name,
			 NBDSRV_MAX_OPTIONS);
		netsrv_conn_close(c->nc, false, NULL);
		return;
	}
	log_debug("%s: option %u, %u bytes", c->name, c->hs->opt, c->hs->optlen);
	if (c->hs->optlen > NBDSRV_OPT_MAX) {
		if (c->hs->opt == NBDW_OPT_EXPORT_NAME || c->hs->optlen > NBDSRV_OPT_SKIP_MAX) {
			log_warn("%s: option %u with %u bytes of data: dropping the client",
				 c->name, c->hs->opt, c->hs->optlen);
			netsrv_conn_close(c->nc, false, NULL);
			return;
		}
		if (!hs_in_reserve(c, NBDSRV_OPT_MAX)) {
			netsrv_conn_close(c->nc, false, "out of memory");
			return;
		}
		c->hs->skip_left = c->hs->optlen;
		hs_skip_more(c);
		return;
	}
	if (c->hs->opt == NBDW_OPT_EXPORT_NAME && c->hs->optlen > NBDW_STRING_MAX) {
		log_warn("%s: export name of %u bytes: dropping the client", c->name, c->hs->optlen);
		netsrv_conn_close(c->nc, false, NULL);
		return;
	}
	if (!hs_in_reserve(c, MAX(c->hs->optlen, 64u))) {
		netsrv_conn_close(c->nc, false, "out of memory");
		return;
	}
	hs_read(c, c->hs->in, c->hs->optlen, hs_got_option);
}

static void hs_wait_option(struct nbdsrv_conn *c)
{
	if (netsrv_conn_closing(c->nc))
		return;
	if (hs_stopping(c)) {
		netsrv_conn_close(c->nc, true, "server is shutting down");
		return;
	}
	c->hs->idle = true;
	hs_read(c, c->hs->hdr, NBDW_OPT_HDR_BYTES, hs_got_header);
}

static void hs_got_client_flags(struct nbdsrv_conn *c)
{
	uint32_t f = ds_get_be32(c->hs->hdr);

	if (f & ~(NBDW_FLAG_C_FIXED_NEWSTYLE | NBDW_FLAG_C_NO_ZEROES)) {
		log_warn("%s: unknown client flags 0x%x: dropping the client", c->name, f);
		netsrv_conn_close(c->nc, false, NULL);
		return;
	}
	c->hs->fixed = f & NBDW_FLAG_C_FIXED_NEWSTYLE;
	c->hs->no_zeroes = f & NBDW_FLAG_C_NO_ZEROES;
	if (!c->hs->fixed && c->srv->opts.tls_mode == NBDSRV_TLS_REQUIRE) {
		/* TLS needs fixed newstyle; this client can only EXPORT_NAME. */
		log_warn("%s: client does not speak fixed newstyle and TLS is required: "
			 "dropping it", c->name);
		netsrv_conn_close(c->nc, false, NULL);
		return;
	}
	hs_wait_option(c);
}

static void hs_greeted(struct nbdsrv_conn *c)
{
	hs_read(c, c->hs->hdr, 4, hs_got_client_flags);
}

void nbdsrv_hs_begin(struct nbdsrv_conn *c)
{
	uint8_t g[NBDW_GREETING_BYTES];

	ds_put_be64(g, NBDW_INIT_PASSWD);
	ds_put_be64(g + 8, NBDW_IHAVEOPT);
	ds_put_be16(g + 16, NBDW_FLAG_FIXED_NEWSTYLE | NBDW_FLAG_NO_ZEROES);
	hs_put(c, g, sizeof(g));
	hs_send(c, hs_greeted);
}

void nbdsrv_hs_shutdown(struct nbdsrv_conn *c)
{
	/* Waiting for a new option with nothing of it received yet: there is
	 * nothing to answer, so let the client go. Otherwise the option in
	 * progress gets ERR_SHUTDOWN and the client is let go after it. */
	if (c->hs->idle && c->hs->got == 0 && netsrv_rx_waiting(c->nc))
		netsrv_conn_close(c->nc, true, "server is shutting down");
}

void nbdsrv_hs_free(struct nbdsrv_conn *c)
{
	struct nbdsrv_hs *h = c->hs;

	if (!h)
		return;
	c->hs = NULL;
	nbdsrv_export_put(h->exp);  /* closed before transmission began */
	free(h->in);
	free(h->out);
	free(h->meta_export);
	free(h);
}
