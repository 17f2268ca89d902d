/* SPDX-License-Identifier: MIT */
/*
 * server.h: the NBD server (diskstack serve): the NBD protocol on the
 * socket engine (net/netsrv.h). Exports are disks; clients speak
 * fixed-newstyle NBD over whatever the engine listens on, optionally
 * upgraded to TLS with STARTTLS.
 *
 * Use: netsrv_new (with the TLS credentials, limits and timeouts),
 * nbdsrv_new, nbdsrv_add_export, nbdsrv_protocol, then the engine's
 * listeners with that protocol, netsrv_start and netsrv_run; after
 * netsrv_run returned, nbdsrv_flush; netsrv_free, then nbdsrv_free.
 *
 * While the engine runs, exports can be added and removed from any thread
 * (the control socket, docs/ctl.md): a removed export is hidden from new
 * handshakes at once, its connections are drained or closed, and clients
 * of other exports are not touched.
 */
#ifndef DISKSTACK_NBD_SERVER_H
#define DISKSTACK_NBD_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct disk;
struct nbdsrv;
struct netsrv;
struct netsrv_proto;

enum nbdsrv_tls_mode {
	NBDSRV_TLS_OFF = 0,      /* NOTLS: STARTTLS is refused with ERR_POLICY */
	NBDSRV_TLS_ON,           /* TLS offered; plaintext clients allowed */
	NBDSRV_TLS_REQUIRE,      /* FORCEDTLS: nothing but STARTTLS/ABORT before TLS */
};

struct nbdsrv_opts {
	enum nbdsrv_tls_mode tls_mode; /* ON/REQUIRE need the engine's TLS credentials */
	unsigned max_requests;         /* in-flight requests per connection; 0 = default (128) */
};

/* Creates an NBD server with no exports. Returns 0, -EINVAL (bad
 * max_requests) or -ENOMEM. Any thread. */
int nbdsrv_new(const struct nbdsrv_opts *o, struct nbdsrv **out);

/* Adds export @name (UTF-8, at most 4096 bytes; "" is the default export)
 * with an optional @description (NULL = none; both borrowed). The server
 * takes over the reference to @disk on success. @read_only refuses writes
 * even if the disk allows them. Returns 0, -EEXIST for a duplicate name,
 * -EINVAL for a bad name or -ENOMEM. Any time, any thread (new clients
 * see the export as soon as this returns). */
int nbdsrv_add_export(struct nbdsrv *s, const char *name, const char *description,
		      struct disk *disk, bool read_only);

/* The protocol to hand to @net's listeners (borrowed from @s, valid until
 * nbdsrv_free). Returns 0, or -EINVAL when the TLS mode needs credentials
 * @net lacks. The server may have no export yet (nbdsrv_add_export works
 * while it runs). */
int nbdsrv_protocol(struct nbdsrv *s, struct netsrv *net, const struct netsrv_proto **out);

/* Removes export @name: hides it from new handshakes, then asks the
 * connections bound to it to drain (finish what is in flight, answer the
 * rest with ESHUTDOWN, close) or, with @force, closes them at once; waits
 * up to @timeout_ms for them to go, then flushes the disk (unless
 * read-only) and drops the export. *@nconns gets the number of
 * connections that were bound to it. Returns 0, -ENOENT (no such export),
 * -ETIMEDOUT (connections remain: the export stays hidden and listed as
 * removing; call again, e.g. with @force), or the flush's -EIO (the export
 * is gone anyway). On a thread with a reactor (the flush runs on it),
 * never a worker's. */
int nbdsrv_remove_export(struct nbdsrv *s, const char *name, bool force, unsigned timeout_ms,
			 unsigned *nconns);

/* What nbdsrv_foreach_export shows of an export (all borrowed for the
 * duration of the callback). */
struct nbdsrv_export_view {
	const char *name;
	const char *description;    /* NULL = none */
	struct disk *disk;
	bool read_only;
	bool removing;              /* hidden, connections draining */
	unsigned connections;       /* connections in transmission on it */
};

/* Calls @fn for each export in the order they were added, with the
 * server's lock held: @fn must not call back into @s. Any thread. */
void nbdsrv_foreach_export(struct nbdsrv *s,
			   void (*fn)(const struct nbdsrv_export_view *v, void *opaque),
			   void *opaque);

/* A new reference to the disk of export @name (not one being removed)
 * in *@out, and whether it is served read-only in *@read_only (may be
 * NULL). Returns 0 or -ENOENT. Any thread. */
int nbdsrv_export_disk(struct nbdsrv *s, const char *name, struct disk **out, bool *read_only);

/* Request classes of the statistics. */
enum nbdsrv_stat_class {
	NBDSRV_STAT_READ = 0,
	NBDSRV_STAT_WRITE,
	NBDSRV_STAT_FLUSH,
	NBDSRV_STAT_TRIM,
	NBDSRV_STAT_ZERO,
	NBDSRV_STAT_OTHER,          /* CACHE, BLOCK_STATUS */
	NBDSRV_STAT_COUNT
};

/* The statistics of one request class since stats.since_ns. Latency is
 * from the request's dispatch to its reply being queued; percentiles come
 * from a log-linear histogram (within 1/8 of the value). */
struct nbdsrv_op_stats {
	uint64_t ops, bytes, errors;      /* bytes: READ/WRITE payloads that succeeded */
	uint64_t lat_mean_ns, lat_p50_ns, lat_p90_ns, lat_p99_ns, lat_max_ns;
};

struct nbdsrv_stats {
	uint64_t since_ns;                /* CLOCK_MONOTONIC of the add or the last reset */
	struct nbdsrv_op_stats op[NBDSRV_STAT_COUNT];
};

/* Reads the statistics of export @name into *@out; @reset restarts them
 * (every request is counted in exactly one interval between resets; the
 * set as a whole is not a snapshot of one instant). Returns 0 or
 * -ENOENT. Any thread. */
int nbdsrv_export_stats(struct nbdsrv *s, const char *name, bool reset, struct nbdsrv_stats *out);
/* The name of a class ("read", "write", "flush", "trim", "zero", "other"). */
const char *nbdsrv_stat_class_name(enum nbdsrv_stat_class c);

/* What nbdsrv_foreach_conn shows of a connection (borrowed for the call). */
struct nbdsrv_conn_view {
	uint64_t id;
	const char *name;           /* "nbd #12 127.0.0.1:50234" */
	const char *export_name;    /* NULL while in the handshake */
	uint64_t since_ns;          /* CLOCK_MONOTONIC of its start */
};

/* Calls @fn for each connection (handshake or transmission) with the
 * server's lock held: @fn must not call back into @s. Any thread. */
void nbdsrv_foreach_conn(struct nbdsrv *s,
			 void (*fn)(const struct nbdsrv_conn_view *v, void *opaque), void *opaque);

/* Asks connection @id to close: drain it (as at shutdown) or, with
 * @force, drop it at once. Asynchronous: it goes on its worker. Returns 0,
 * -ENOENT or -ENOMEM. Any thread. */
int nbdsrv_close_conn(struct nbdsrv *s, uint64_t id, bool force);

/* Flushes every writable export (after netsrv_run returned: nothing
 * writes any more). Returns 0, or 1 if a flush failed (logged). On the
 * thread whose reactor the disks use. */
int nbdsrv_flush(struct nbdsrv *s);

/* Frees the exports (after netsrv_free, or if the engine never ran).
 * NULL allowed. */
void nbdsrv_free(struct nbdsrv *s);

#endif
