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
 * - Exports can come and go while connections run (export-add/remove over
 *   the control socket, docs/ctl.md). The table and the connection list
 *   are under one mutex taken only by handshakes (lookups, NBD_OPT_LIST),
 *   connection start and end, and the control thread, never per request.
 *   An export is reference-counted: a handshake that found it and each
 *   connection in transmission on it hold a reference, so removal never
 *   frees a disk a worker still uses. Removal hides the name first, then
 *   drains the bound connections through a task posted to each one's
 *   worker (the only thread that may touch a connection), found again by
 *   id there, since it may have ended meanwhile.
 * - Statistics: each finished request bumps its connection's counters
 *   and latency bin (nbdsrv_stats_count; one writer each, no shared
 *   line); a stats call sums the export's live connections with what
 *   closed ones left behind, less the total at the last reset.
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
#include <unistd.h>

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
	c->since_ns = reactor_now_ns();
	pthread_mutex_lock(&c->srv->lock);
	c->id = ++c->srv->next_conn_id;
	c->next = c->srv->conns;
	if (c->next)
		c->next->prev = c;
	c->srv->conns = c;
	c->listed = true;
	pthread_mutex_unlock(&c->srv->lock);
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
	pthread_mutex_lock(&c->srv->lock);
	nbdsrv_stats_retire(c);
	if (c->listed) {
		if (c->prev)
			c->prev->next = c->next;
		else
			c->srv->conns = c->next;
		if (c->next)
			c->next->prev = c->prev;
		c->listed = false;
	}
	c->exp = NULL;
	pthread_mutex_unlock(&c->srv->lock);
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
	if (pthread_mutex_init(&s->lock, NULL) != 0) {
		free(s);
		return -ENOMEM;
	}
	if (s->opts.max_requests == 0)
		s->opts.max_requests = NBDSRV_DEFAULT_REQUESTS;
	s->proto = NETSRV_PROTO_INIT("nbd", s, struct nbdsrv_conn);
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

/* Finds @name in the table, removing or not; the caller holds the lock. */
static struct nbdsrv_export *find_locked(struct nbdsrv *s, const char *name, size_t len,
					 unsigned *index)
{
	for (unsigned i = 0; i < s->nexports; i++) {
		struct nbdsrv_export *e = s->exports[i];

		if (e->namelen == len && memcmp(e->name, name, len) == 0) {
			if (index)
				*index = i;
			return e;
		}
	}
	return NULL;
}

static void export_free(struct nbdsrv_export *e)
{
	disk_unref(e->disk);
	free(e->name);
	free(e->description);
	free(e);
}

void nbdsrv_export_get(struct nbdsrv_export *e)
{
	atomic_fetch_add_explicit(&e->refs, 1, memory_order_relaxed);
}

void nbdsrv_export_put(struct nbdsrv_export *e)
{
	if (e && atomic_fetch_sub_explicit(&e->refs, 1, memory_order_acq_rel) == 1)
		export_free(e);
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
	e = calloc(1, sizeof(*e));
	if (!e)
		return -ENOMEM;
	e->name = strdup(name);
	e->description = description ? strdup(description) : NULL;
	if (!e->name || (description && !e->description)) {
		free(e->name);
		free(e->description);
		free(e);
		return -ENOMEM;
	}
	e->namelen = len;
	e->read_only = read_only || disk_get_info(disk)->read_only;
	e->since_ns = reactor_now_ns();
	atomic_init(&e->refs, 1);
	pthread_mutex_lock(&s->lock);
	if (find_locked(s, name, len, NULL)) {
		pthread_mutex_unlock(&s->lock);
		free(e->name);
		free(e->description);
		free(e);
		return -EEXIST;
	}
	v = realloc(s->exports, (s->nexports + 1) * sizeof(*v));
	if (!v) {
		pthread_mutex_unlock(&s->lock);
		free(e->name);
		free(e->description);
		free(e);
		return -ENOMEM;
	}
	e->disk = disk;             /* only now: on failure the caller keeps it */
	s->exports = v;
	s->exports[s->nexports++] = e;
	pthread_mutex_unlock(&s->lock);
	return 0;
}

struct nbdsrv_export *nbdsrv_find_export(struct nbdsrv *s, const char *name, size_t len)
{
	struct nbdsrv_export *e;

	pthread_mutex_lock(&s->lock);
	e = find_locked(s, name, len, NULL);
	if (e && e->removing)
		e = NULL;
	if (e)
		nbdsrv_export_get(e);
	pthread_mutex_unlock(&s->lock);
	return e;
}

bool nbdsrv_conn_bind(struct nbdsrv_conn *c, struct nbdsrv_export *e)
{
	bool ok;

	pthread_mutex_lock(&c->srv->lock);
	ok = !e->removing;
	if (ok)
		c->exp = e;
	pthread_mutex_unlock(&c->srv->lock);
	return ok;
}

/* ---- runtime management (docs/ctl.md) ------------------------------------ */

/* A request to close a connection, run on its worker. */
struct close_task {
	struct reactor_task task;
	struct nbdsrv *srv;
	uint64_t id;
	bool force;
};

static void close_task_fn(struct reactor_task *t)
{
	struct close_task *ct = container_of(t, struct close_task, task);
	struct nbdsrv_conn *c;

	/* Only this worker frees the connection, so if it is still listed
	 * now it stays alive until this function returns. */
	pthread_mutex_lock(&ct->srv->lock);
	for (c = ct->srv->conns; c && c->id != ct->id; c = c->next)
		;
	pthread_mutex_unlock(&ct->srv->lock);
	if (c && !netsrv_conn_closing(c->nc)) {
		if (c->x && !ct->force)
			nbdsrv_xmit_drain(c->x);
		else
			netsrv_conn_close(c->nc, false, "closed over the control socket");
	}
	free(ct);
}

/* Posts a close of @c to its worker; the caller holds the lock. */
static int post_close_locked(struct nbdsrv *s, struct nbdsrv_conn *c, bool force)
{
	struct close_task *ct = calloc(1, sizeof(*ct));

	if (!ct)
		return -ENOMEM;
	ct->task.fn = close_task_fn;
	ct->srv = s;
	ct->id = c->id;
	ct->force = force;
	/* The connection is listed, so its worker's reactor is alive. */
	reactor_post(c->r, &ct->task);
	return 0;
}

static unsigned conns_bound_locked(struct nbdsrv *s, const struct nbdsrv_export *e)
{
	unsigned n = 0;

	for (const struct nbdsrv_conn *c = s->conns; c; c = c->next)
		n += c->exp == e;
	return n;
}

int nbdsrv_remove_export(struct nbdsrv *s, const char *name, bool force, unsigned timeout_ms,
			 unsigned *nconns)
{
	uint64_t deadline = reactor_now_ns() + (uint64_t)timeout_ms * 1000000u;
	struct nbdsrv_export *e;
	unsigned idx, n;
	int ret = 0;

	pthread_mutex_lock(&s->lock);
	e = find_locked(s, name, strlen(name), NULL);
	if (!e) {
		pthread_mutex_unlock(&s->lock);
		return -ENOENT;
	}
	e->removing = true;
	n = 0;
	for (struct nbdsrv_conn *c = s->conns; c; c = c->next) {
		if (c->exp != e)
			continue;
		n++;
		(void)post_close_locked(s, c, force);   /* -ENOMEM: the timeout reports it */
	}
	*nconns = n;
	pthread_mutex_unlock(&s->lock);
	/* Connections leave on their workers; poll, as this thread has
	 * nothing else to do (the control thread, never a worker). */
	for (;;) {
		pthread_mutex_lock(&s->lock);
		n = conns_bound_locked(s, e);
		pthread_mutex_unlock(&s->lock);
		if (n == 0)
			break;
		if (reactor_now_ns() >= deadline)
			return -ETIMEDOUT;
		usleep(2000);
	}
	pthread_mutex_lock(&s->lock);
	if (find_locked(s, name, strlen(name), &idx) == e) {
		memmove(&s->exports[idx], &s->exports[idx + 1],
			(s->nexports - idx - 1) * sizeof(s->exports[0]));
		s->nexports--;
	} else {
		e = NULL;               /* a concurrent remove finished first */
	}
	pthread_mutex_unlock(&s->lock);
	if (!e)
		return 0;
	if (!e->read_only) {
		int st = disk_sync_flush(e->disk);

		if (st != DISK_OK) {
			log_error("nbd: export '%s': flush at removal failed: %s", e->name,
				  disk_status_str(st));
			ret = -EIO;
		}
	}
	nbdsrv_export_put(e);       /* handshakes may still hold it briefly */
	return ret;
}

void nbdsrv_foreach_export(struct nbdsrv *s,
			   void (*fn)(const struct nbdsrv_export_view *v, void *opaque),
			   void *opaque)
{
	pthread_mutex_lock(&s->lock);
	for (unsigned i = 0; i < s->nexports; i++) {
		const struct nbdsrv_export *e = s->exports[i];
		struct nbdsrv_export_view v = {
			.name = e->name, .description = e->description, .disk = e->disk,
			.read_only = e->read_only, .removing = e->removing,
			.connections = conns_bound_locked(s, e),
		};

		fn(&v, opaque);
	}
	pthread_mutex_unlock(&s->lock);
}

int nbdsrv_export_disk(struct nbdsrv *s, const char *name, struct disk **out, bool *read_only)
{
	struct nbdsrv_export *e = nbdsrv_find_export(s, name, strlen(name));

	if (!e)
		return -ENOENT;
	*out = disk_ref(e->disk);
	if (read_only)
		*read_only = e->read_only;
	nbdsrv_export_put(e);
	return 0;
}

static enum nbdsrv_stat_class stat_class(uint16_t type)
{
	switch (type) {
	case NBDW_CMD_READ: return NBDSRV_STAT_READ;
	case NBDW_CMD_WRITE: return NBDSRV_STAT_WRITE;
	case NBDW_CMD_FLUSH: return NBDSRV_STAT_FLUSH;
	case NBDW_CMD_TRIM: return NBDSRV_STAT_TRIM;
	case NBDW_CMD_WRITE_ZEROES: return NBDSRV_STAT_ZERO;
	default: return NBDSRV_STAT_OTHER;
	}
}

void nbdsrv_stats_count(struct nbdsrv_xmit *x, uint16_t type, uint32_t len, bool failed,
			uint64_t lat_ns)
{
	enum nbdsrv_stat_class cls = stat_class(type);

	iostats_count(&x->st[cls], failed,
		      type == NBDW_CMD_READ || type == NBDW_CMD_WRITE ? len : 0, lat_ns,
		      &x->exp->lat_max_ns[cls]);
}

void nbdsrv_stats_retire(struct nbdsrv_conn *c)
{
	if (!c->exp || !c->x)
		return;
	for (unsigned k = 0; k < NBDSRV_STAT_COUNT; k++)
		iostats_sums_add(&c->exp->retired[k], &c->x->st[k]);
}

/* Totals of export @e's class @cls: retired + every live connection's
 * (under s->lock, which keeps the connections and their counters). */
static void export_totals(struct nbdsrv *s, struct nbdsrv_export *e, unsigned cls,
			  struct iostats_sums *t)
{
	*t = e->retired[cls];
	for (const struct nbdsrv_conn *c = s->conns; c; c = c->next)
		if (c->exp == e && c->x)
			iostats_sums_add(t, &c->x->st[cls]);
}

int nbdsrv_export_stats(struct nbdsrv *s, const char *name, bool reset, struct nbdsrv_stats *out)
{
	struct nbdsrv_export *e;
	uint64_t now = reactor_now_ns();
	struct iostats_sums sums, *t = &sums;   /* 4 KiB */

	pthread_mutex_lock(&s->lock);
	e = find_locked(s, name, strlen(name), NULL);
	if (!e) {
		pthread_mutex_unlock(&s->lock);
		return -ENOENT;
	}
	out->since_ns = e->since_ns;
	if (reset)
		e->since_ns = now;
	for (unsigned c = 0; c < NBDSRV_STAT_COUNT; c++) {
		/* Every request lands in exactly one interval between
		 * resets (common/iostats.h). */
		export_totals(s, e, c, t);
		iostats_report(t, &e->base[c], reset,
			       reset ? atomic_exchange_explicit(&e->lat_max_ns[c], 0,
								memory_order_relaxed)
				     : atomic_load_explicit(&e->lat_max_ns[c], memory_order_relaxed),
			       &out->op[c]);
	}
	pthread_mutex_unlock(&s->lock);
	return 0;
}

const char *nbdsrv_stat_class_name(enum nbdsrv_stat_class c)
{
	return iostats_class_name(c);
}

void nbdsrv_foreach_conn(struct nbdsrv *s,
			 void (*fn)(const struct nbdsrv_conn_view *v, void *opaque), void *opaque)
{
	pthread_mutex_lock(&s->lock);
	for (const struct nbdsrv_conn *c = s->conns; c; c = c->next) {
		struct nbdsrv_conn_view v = {
			.id = c->id, .name = c->name, .since_ns = c->since_ns,
			.export_name = c->exp ? c->exp->name : NULL,
		};

		fn(&v, opaque);
	}
	pthread_mutex_unlock(&s->lock);
}

int nbdsrv_close_conn(struct nbdsrv *s, uint64_t id, bool force)
{
	struct nbdsrv_conn *c;
	int ret = -ENOENT;

	pthread_mutex_lock(&s->lock);
	for (c = s->conns; c && c->id != id; c = c->next)
		;
	if (c)
		ret = post_close_locked(s, c, force);
	pthread_mutex_unlock(&s->lock);
	return ret;
}

int nbdsrv_protocol(struct nbdsrv *s, struct netsrv *net, const struct netsrv_proto **out)
{
	/* No export yet is fine: they can be added while it runs. */
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
	for (unsigned i = 0; i < s->nexports; i++)
		nbdsrv_export_put(s->exports[i]);
	free(s->exports);
	pthread_mutex_destroy(&s->lock);
	free(s);
}
