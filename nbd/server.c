/* SPDX-License-Identifier: MIT */
/*
 * server.c: the NBD server's exports and its glue to the socket engine
 * (server.h): the protocol table the engine's listeners carry, and what
 * each of its callbacks means for NBD. The handshake is in handshake.c,
 * the transmission phase in transmit.c; sockets, threads, TLS, limits and
 * the drain are the engine's (net/netsrv.h).
 *
 * Notes on the design
 * -------------------
 * - Exports are immutable once connections run (disks are thread-safe by
 *   contract), so every worker reads them without a lock.
 * - A connection's NBD state is split by phase (server-internal.h): the
 *   handshake state exists from the greeting to GO/EXPORT_NAME, the
 *   transmission state from then on; struct nbdsrv_conn, in the engine's
 *   private area, only points at them.
 * - What the engine asks (struct netsrv_proto): start sends the greeting;
 *   drain answers ERR_SHUTDOWN in the handshake and ESHUTDOWN to buffered
 *   requests in transmission; busy reports requests in flight, which hold
 *   a graceful close (their replies go out), keep the connection from
 *   counting as idle, and keep it allocated until their disk requests
 *   complete; closed releases a WRITE whose payload will never arrive.
 * - Memory: the handshake state is allocated when a connection starts,
 *   the request slots and receive buffers when it enters transmission.
 *   Nothing is allocated per request in steady state (see transmit.c).
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/compiler.h"
#include "common/log.h"
#include "nbd/server-internal.h"

/* ---- the engine's callbacks ---------------------------------------------- */

static void srv_conn_start(struct netsrv_conn *nc, void *ctx)
{
	struct nbdsrv_conn *c = netsrv_conn_priv(nc);

	c->nc = nc;
	c->srv = ctx;
	c->r = netsrv_conn_reactor(nc);
	c->name = netsrv_conn_name(nc);
	c->hs = calloc(1, sizeof(*c->hs));
	if (!c->hs) {
		log_error("%s: out of memory starting the handshake", c->name);
		netsrv_conn_close(nc, false, NULL);
		return;
	}
	nbdsrv_hs_begin(c);
}

static void srv_conn_drain(struct netsrv_conn *nc)
{
	struct nbdsrv_conn *c = netsrv_conn_priv(nc);

	if (c->x)
		nbdsrv_xmit_drain(c->x);
	else if (c->hs)
		nbdsrv_hs_shutdown(c);
}

static bool srv_conn_busy(struct netsrv_conn *nc, enum netsrv_busy what)
{
	const struct nbdsrv_conn *c = netsrv_conn_priv(nc);
	const struct nbdsrv_xmit *x = c->x;

	if (!x)
		return false;
	switch (what) {
	case NETSRV_BUSY_OUTPUT:
		/* A WRITE whose payload is still arriving has no reply coming. */
		return x->ninflight > (x->payload_req ? 1u : 0u) || x->xmit_task_busy;
	case NETSRV_BUSY_REFS:
		return x->ninflight > 0 || x->xmit_task_busy;
	case NETSRV_BUSY_IDLE:
		/* Work the server owes the client keeps a connection alive; a
		 * WRITE whose payload is still to come and replies the client is
		 * not reading do not (regression: a client that vanished in the
		 * middle of a payload held its slot for ever). Bytes received or
		 * sent count as activity (net/conn.c). */
		return x->ninflight > x->nreplying + (x->payload_req ? 1u : 0u) ||
		       x->draining || x->disc;
	}
	return false;
}

static void srv_conn_closed(struct netsrv_conn *nc)
{
	struct nbdsrv_conn *c = netsrv_conn_priv(nc);

	if (c->x && c->x->payload_req)
		nbdsrv_xmit_free_payload_req(c->x);
}

static void srv_conn_free(struct netsrv_conn *nc)
{
	struct nbdsrv_conn *c = netsrv_conn_priv(nc);
	const struct nbdsrv_xmit *x = c->x;

	if (!c->nc)
		return;             /* never started */
	log_debug("%s: closed after %llu requests (%llu read passes split, %llu waits for "
		  "the in-flight budget, %llu write blocks adopted)", c->name,
		  (unsigned long long)(x ? x->nrequests : 0),
		  (unsigned long long)(x ? x->npass_splits : 0),
		  (unsigned long long)(x ? x->nbudget_waits : 0),
		  (unsigned long long)(x ? x->nadopted : 0));
	nbdsrv_xmit_free(c);
	nbdsrv_hs_free(c);
}

/* ---- creation and exports ------------------------------------------------ */

int nbdsrv_new(const struct nbdsrv_opts *o, struct nbdsrv **out)
{
	struct nbdsrv *s;

	if (o->max_requests > NBDSRV_MAX_REQUESTS)
		return -EINVAL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->opts = *o;
	if (s->opts.max_requests == 0)
		s->opts.max_requests = NBDSRV_DEFAULT_REQUESTS;
	s->proto = (struct netsrv_proto){
		.version = NETSRV_PROTO_VERSION,
		.name = "nbd",
		.ctx = s,
		.priv_bytes = sizeof(struct nbdsrv_conn),
		.start = srv_conn_start,
		.drain = srv_conn_drain,
		.busy = srv_conn_busy,
		.closed = srv_conn_closed,
		.free = srv_conn_free,
	};
	*out = s;
	return 0;
}

static bool valid_utf8_name(const char *s, size_t len)
{
	/* Names are UTF-8 without NUL; reject control bytes outright and let
	 * the rest through (clients compare bytes). */
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return false;
	return true;
}

int nbdsrv_add_export(struct nbdsrv *s, const char *name, const char *description,
		      struct disk *disk, bool read_only)
{
	struct nbdsrv_export *e, **v;
	size_t len = strlen(name);

	if (len > NBDW_STRING_MAX || !valid_utf8_name(name, len))
		return -EINVAL;
	if (description && strlen(description) > NBDW_STRING_MAX)
		return -EINVAL;
	if (nbdsrv_find_export(s, name, len))
		return -EEXIST;
	e = calloc(1, sizeof(*e));
	if (!e)
		return -ENOMEM;
	e->name = strdup(name);
	e->description = description ? strdup(description) : NULL;
	v = realloc(s->exports, (s->nexports + 1) * sizeof(*v));
	if (!e->name || (description && !e->description) || !v) {
		free(e->name);
		free(e->description);
		free(e);
		if (v)
			s->exports = v;
		return -ENOMEM;
	}
	e->namelen = len;
	e->disk = disk;
	e->read_only = read_only || disk_get_info(disk)->read_only;
	s->exports = v;
	s->exports[s->nexports++] = e;
	return 0;
}

struct nbdsrv_export *nbdsrv_find_export(struct nbdsrv *s, const char *name, size_t len)
{
	for (unsigned i = 0; i < s->nexports; i++) {
		struct nbdsrv_export *e = s->exports[i];

		if (e->namelen == len && memcmp(e->name, name, len) == 0)
			return e;
	}
	return NULL;
}

int nbdsrv_protocol(struct nbdsrv *s, struct netsrv *net, const struct netsrv_proto **out)
{
	if (s->nexports == 0)
		return -EINVAL;
	if (s->opts.tls_mode != NBDSRV_TLS_OFF && !netsrv_tls_of(net))
		return -EINVAL;
	*out = &s->proto;
	return 0;
}

int nbdsrv_flush(struct nbdsrv *s)
{
	int status = 0;

	for (unsigned i = 0; i < s->nexports; i++) {
		struct nbdsrv_export *e = s->exports[i];
		int st;

		if (e->read_only)
			continue;
		st = disk_sync_flush(e->disk);
		if (st != DISK_OK) {
			log_error("nbd: export '%s': flush at shutdown failed: %s", e->name,
				  disk_status_str(st));
			status = 1;
		}
	}
	return status;
}

void nbdsrv_free(struct nbdsrv *s)
{
	if (!s)
		return;
	for (unsigned i = 0; i < s->nexports; i++) {
		disk_unref(s->exports[i]->disk);
		free(s->exports[i]->name);
		free(s->exports[i]->description);
		free(s->exports[i]);
	}
	free(s->exports);
	free(s);
}
