/* SPDX-License-Identifier: MIT */
/*
 * server-internal.h: structures and functions shared by the files of the
 * NBD server (server.c, handshake.c, transmit.c). Not included from
 * outside nbd/. The bytes move through the socket engine (net/netsrv.h);
 * a connection's NBD state is split by phase: struct nbdsrv_conn (the
 * engine's private area), the handshake (struct nbdsrv_hs, from the
 * connection's start to GO/EXPORT_NAME) and transmission (struct
 * nbdsrv_xmit, from GO).
 */
#ifndef DISKSTACK_NBD_SERVER_INTERNAL_H
#define DISKSTACK_NBD_SERVER_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "common/histo.h"
#include "common/reactor.h"
#include "nbd/proto.h"
#include "nbd/server.h"
#include "net/netsrv.h"
#include "storage/disk.h"

/* ---- limits ------------------------------------------------------------- */

/* Largest READ/WRITE payload (also advertised as the maximum block size). */
#define NBDSRV_MAX_PAYLOAD (32u << 20)
/* Largest piece of a WRITE payload asked for in one receive (see
 * xmit_payload_rx). */
#define NBDSRV_PAYLOAD_PIECE (1u << 20)
/* In-flight requests per connection: default and ceiling. */
#define NBDSRV_DEFAULT_REQUESTS 128u
#define NBDSRV_MAX_REQUESTS 4096u
/* Bytes in flight per connection before reading stops (one request is
 * always allowed): READ and WRITE payloads, the bytes a CACHE reads, the
 * reply buffer of a BLOCK_STATUS (transmit.c, xmit_cost). */
#define NBDSRV_INFLIGHT_BYTES (64u << 20)
/* READ bytes dispatched per loop pass: parsing stops there and resumes
 * after the pass's replies were handed to the kernel (see transmit.c). */
#define NBDSRV_PASS_READ_BYTES (1u << 20)
/* Receive buffers for request headers and small payloads: a WRITE whose
 * payload arrived whole is written from its receive buffer, which the
 * connection then cannot reuse until the write completes; it switches to
 * another of its NBDSRV_RBUFS buffers meanwhile. */
#define NBDSRV_RBUF_BYTES (256u << 10)
#define NBDSRV_RBUFS 8u
/* Option data buffered during the handshake; larger options are skipped
 * (ERR_TOO_BIG / ERR_UNSUP) up to NBDSRV_OPT_SKIP_MAX, beyond that the
 * client is dropped. */
#define NBDSRV_OPT_MAX (64u << 10)
#define NBDSRV_OPT_SKIP_MAX (16u << 20)
/* Options per connection before the client is dropped (option flood). */
#define NBDSRV_MAX_OPTIONS 4096u
/* Extents asked for to find holes in a structured READ, and the smallest
 * read that looks for them. A connection keeps probing while probes find
 * holes; after NBDSRV_HOLE_CREDIT probes in a row find none it probes again
 * only once per NBDSRV_HOLE_REPROBE_BYTES of reads (see transmit.c). */
#define NBDSRV_READ_EXTENTS 8u
#define NBDSRV_HOLE_MIN_BYTES (64u << 10)
#define NBDSRV_HOLE_CREDIT 16u
#define NBDSRV_HOLE_REPROBE_BYTES (256ull << 20)
/* Extents per BLOCK_STATUS request, and the most of the export one request
 * looks at: a longer one is answered for its first NBDSRV_BS_MAX_BYTES
 * (the protocol lets a server describe less than was asked). */
#define NBDSRV_BS_EXTENTS 1024u
#define NBDSRV_BS_MAX_BYTES (1u << 30)
/* Payload buffers up to this size stay attached to their request slot, up
 * to NBDSRV_CONN_CACHE_BYTES per connection. */
#define NBDSRV_SLOT_KEEP_BYTES (1u << 20)
#define NBDSRV_CONN_CACHE_BYTES (16u << 20)
/* Error message carried in structured error chunks. */
#define NBDSRV_ERRMSG_MAX 96u
/* WRITE payloads of at least this many bytes go straight into page-sized
 * blocks the export's disk may adopt (disk_info.adopt_bytes; transmit.c),
 * up to this many blocks (IOV_MAX bounds one recvmsg). */
#define NBDSRV_ADOPT_MIN_BYTES (64u << 10)
#define NBDSRV_ADOPT_MAX_IOV 1024u

/* ---- the server --------------------------------------------------------- */

struct nbdsrv_xmit;

/* Latency bins of the export statistics (common/histo.h). */
#define NBDSRV_LAT_BITS 3u
#define NBDSRV_LAT_BINS HISTO_SIZE(NBDSRV_LAT_BITS)

/* Counters of one request class kept by one connection in transmission
 * (struct nbdsrv_xmit): only the connection's worker writes them, with a
 * relaxed load and store (no locked read-modify-write, no cache line
 * shared with another worker); nbdsrv_export_stats reads them, relaxed,
 * under nbdsrv.lock. The latency maximum is not here: see
 * nbdsrv_export.lat_max_ns. */
struct nbdsrv_op_counters {
	_Atomic uint64_t ops, bytes, errors, lat_sum_ns;
	_Atomic uint64_t lat[NBDSRV_LAT_BINS];
};

/* The same counters as plain sums (under nbdsrv.lock). */
struct nbdsrv_op_sums {
	uint64_t ops, bytes, errors, lat_sum_ns;
	uint64_t lat[NBDSRV_LAT_BINS];
};

/*
 * An export. Reference-counted: the table holds one reference while the
 * export is listed; a handshake that found it and a connection in
 * transmission on it hold one each. The last nbdsrv_export_put frees it
 * (and drops the disk), on whichever thread that is.
 */
struct nbdsrv_export {
	char *name;                 /* owned, NUL-terminated */
	size_t namelen;
	char *description;          /* owned, NULL = none */
	struct disk *disk;          /* owned reference */
	bool read_only;             /* refuse writes */
	_Atomic unsigned refs;
	bool removing;              /* hidden from clients (under nbdsrv.lock) */
	uint64_t since_ns;          /* statistics count from here (under nbdsrv.lock) */
	/* Statistics (docs/ctl.md, "stats"): what is reported is retired +
	 * the live connections' counters - base, each under nbdsrv.lock.
	 * @retired: the counters of connections that have closed; @base: the
	 * total at the last reset, so a reset never writes a counter a worker
	 * owns. */
	struct nbdsrv_op_sums retired[NBDSRV_STAT_COUNT];
	struct nbdsrv_op_sums base[NBDSRV_STAT_COUNT];
	/* Largest latency since the last reset, per class: shared by every
	 * worker, but read on each request and written only when a request
	 * beats it, so the line stays shared in every cache. */
	_Atomic uint64_t lat_max_ns[NBDSRV_STAT_COUNT];
};

/*
 * The server. @lock protects the export table (which may change while
 * connections run: export-add/remove over the control socket), the
 * @removing flags and the list of connections; it is never held across a
 * call into a disk or the engine, except the posting of a task.
 */
struct nbdsrv {
	struct nbdsrv_opts opts;
	pthread_mutex_t lock;
	struct nbdsrv_export **exports;
	unsigned nexports;
	struct nbdsrv_conn *conns;  /* every started connection (under @lock) */
	uint64_t next_conn_id;
	struct netsrv_proto proto;  /* handed to the engine's listeners */
};

/* Takes a reference to @e. */
void nbdsrv_export_get(struct nbdsrv_export *e);
/* Drops a reference; the last frees @e. NULL allowed. */
void nbdsrv_export_put(struct nbdsrv_export *e);
/* Binds connection @c to @e as it enters transmission (c->exp): false if
 * @e is being removed (the caller then closes the connection). */
bool nbdsrv_conn_bind(struct nbdsrv_conn *c, struct nbdsrv_export *e);
/* Counts a finished request of NBD command @type of connection @x for
 * its export's statistics; on @x's worker. */
void nbdsrv_stats_count(struct nbdsrv_xmit *x, uint16_t type, uint32_t len, bool failed,
			uint64_t lat_ns);
/* Adds the counters of connection @c to its export's retired sums as it
 * leaves the connection list; under nbdsrv.lock. */
void nbdsrv_stats_retire(struct nbdsrv_conn *c);

/* ---- connections -------------------------------------------------------- */

/* A receive buffer and the WRITEs whose payload still points into it. */
struct nbdsrv_rbuf {
	uint8_t *data;              /* NBDSRV_RBUF_BYTES (reactor_buf), NULL until needed */
	unsigned refs;
};

struct nbdsrv_conn;

/* A request slot (preallocated per connection). */
struct nbdsrv_req {
	struct nbdsrv_xmit *x;
	struct nbdsrv_req *next_free;
	struct disk_io io;          /* the command's disk request */
	struct disk_io io2;         /* READ: block status for holes */
	struct netsrv_tx tx;        /* the reply */
	uint64_t cookie, offset;
	uint32_t len;
	uint16_t type, flags;
	uint32_t error;             /* NBD error to send, 0 = success */
	const char *errmsg;         /* static text for structured errors */
	unsigned pending;           /* disk requests outstanding */
	unsigned stage;             /* TRIM+FUA: 1 while the flush runs */
	bool holes;                 /* io2 ran and succeeded */
	struct nbdsrv_rbuf *rb;     /* WRITE: payload in this receive buffer... */
	uint8_t *wdata;             /* ...at this address (else it is in buf) */
	void *buf;                  /* payload / block-status buffer (reactor_buf) */
	size_t buf_cap;             /* its size (a power of two), 0 = none */
	uint64_t charged;           /* bytes counted in x->inflight_bytes */
	struct iovec dio;           /* the disk request's buffer */
	/* WRITE received into blocks the disk may adopt (aiov != NULL):
	 * @naiov entries, the blocks from x->apool; aorig: what was in each
	 * before the write. Both in one reactor buffer of aiov_bytes while the
	 * request lives; NULL otherwise. */
	unsigned naiov;
	struct iovec *aiov;
	void **aorig;
	size_t aiov_bytes;
	struct disk_extent ext[NBDSRV_READ_EXTENTS];
	struct iovec riov[2 * NBDSRV_READ_EXTENTS + 4];
	uint8_t hdr[(NBDSRV_READ_EXTENTS + 1) * 32 + NBDW_CHUNK_HDR_BYTES + 6 + NBDSRV_ERRMSG_MAX];
	uint64_t t0_ns;             /* dispatch time, for the export's latency stats */
};

/* The handshake: allocated when the connection starts, freed when it
 * enters transmission (or closes). Options are read one at a time. */
struct nbdsrv_hs {
	uint8_t hdr[NBDW_OPT_HDR_BYTES];
	uint32_t opt, optlen;       /* the option being handled */
	uint8_t *in;                /* option data (malloc, <= NBDSRV_OPT_MAX) */
	size_t in_cap;
	uint8_t *rbuf;              /* exact-read target */
	size_t want, got;
	void (*next)(struct nbdsrv_conn *c);
	uint64_t skip_left;         /* option bytes still to discard */
	uint8_t *out;               /* replies being built (malloc) */
	size_t out_len, out_cap;
	struct netsrv_tx tx;
	struct iovec iov;
	void (*after)(struct nbdsrv_conn *c);
	unsigned nopts;
	bool fixed, no_zeroes;
	bool idle;                  /* waiting for the next option header */
	bool sr;                    /* structured replies negotiated */
	uint32_t meta;              /* selected contexts (NBDSRV_META_*) */
	char *meta_export;          /* export name they were selected for (malloc) */
	size_t meta_export_len;
	struct nbdsrv_export *exp;  /* GO/EXPORT_NAME: entered once the reply is out (a reference) */
};

/* Transmission: created at GO/EXPORT_NAME, freed with the connection. */
struct nbdsrv_xmit {
	struct nbdsrv_conn *c;
	struct netsrv_conn *nc;     /* the engine's connection (borrowed) */
	struct nbdsrv *srv;
	struct reactor *r;          /* the connection's worker */
	const char *name;           /* for logs (borrowed from nc) */
	struct nbdsrv_export *exp;  /* a reference, dropped in nbdsrv_xmit_free */
	struct disk *disk;          /* borrowed from exp */
	uint64_t size;              /* bytes, fixed at GO */
	uint32_t ss, shift;         /* sector size and log2 */
	uint16_t tflags;
	bool sr;                    /* structured replies */
	uint32_t meta_active;       /* contexts usable by BLOCK_STATUS */
	bool ro;
	bool holes;                 /* structured READs may look for holes */
	uint32_t hole_credit;       /* probes left before backing off */
	uint64_t hole_unprobed;     /* bytes read since the last probe */
	struct nbdsrv_req *slots;
	unsigned nslots;
	struct nbdsrv_req *free_slots;
	unsigned ninflight;         /* slots in use */
	unsigned nreplying;         /* of those, replies queued and not yet sent */
	uint64_t inflight_bytes;
	size_t cached_bytes;        /* payload buffers attached to slots */
	struct nbdsrv_rbuf rbufs[NBDSRV_RBUFS];
	struct nbdsrv_rbuf *rb;     /* the one being filled */
	uint8_t *rbuf;              /* rb->data */
	size_t rhead, rtail;        /* parsed up to rhead, received up to rtail */
	bool rx_blocked;            /* parsing waits for a free slot or receive buffer */
	bool parse_later;           /* pass read budget spent: parse after the flush */
	struct nbdsrv_req *payload_req;  /* WRITE whose payload is arriving */
	uint32_t payload_got;
	struct reactor_task xmit_task;  /* resumes parsing after a slot frees */
	bool xmit_task_busy;
	bool disc;                  /* NBD_CMD_DISC received */
	bool draining;              /* server stopping */
	uint64_t nrequests;
	uint64_t npass_splits;      /* passes cut short by NBDSRV_PASS_READ_BYTES */
	uint64_t nbudget_waits;     /* parsing stopped by NBDSRV_INFLIGHT_BYTES */
	/* Adopted WRITE payloads (transmit.c). */
	uint32_t adopt_bytes;       /* the disk's block size, 0 = copy */
	void **apool;               /* spare blocks of adopt_bytes (in cached_bytes) */
	unsigned napool, apool_cap;
	struct iovec *arx;          /* the receive's view of a payload */
	uint64_t nadopted;          /* blocks the disk kept */
	/* This connection's share of its export's statistics (written by
	 * the worker alone; read under nbdsrv.lock while c->exp is set). */
	struct nbdsrv_op_counters st[NBDSRV_STAT_COUNT];
};

/* A connection's NBD state: the engine's private area (proto.priv_bytes).
 * Exactly one of hs and x is set while the connection runs. */
struct nbdsrv_conn {
	struct netsrv_conn *nc;     /* the engine's connection (borrowed) */
	struct nbdsrv *srv;
	struct reactor *r;          /* the connection's worker */
	const char *name;           /* "nbd #12 127.0.0.1:50234" (borrowed from nc) */
	struct nbdsrv_hs *hs;       /* owned; handshake only */
	struct nbdsrv_xmit *x;      /* owned; transmission only */
	/* The connection list (nbdsrv.conns, under nbdsrv.lock). */
	uint64_t id;                /* 1, 2, ... in start order */
	uint64_t since_ns;
	struct nbdsrv_export *exp;  /* bound in transmission (x holds the reference) */
	struct nbdsrv_conn *next, *prev;
	bool listed;
};

/* handshake.c */
/* Sends the greeting and runs the handshake (c->hs allocated). */
void nbdsrv_hs_begin(struct nbdsrv_conn *c);
/* Frees c->hs (NULL allowed). */
void nbdsrv_hs_free(struct nbdsrv_conn *c);
/* Server stopping during the handshake: an idle client is let go, an
 * option being received is answered with ERR_SHUTDOWN. */
void nbdsrv_hs_shutdown(struct nbdsrv_conn *c);
/* Transmission flags of @e for a connection that negotiated @sr. */
uint16_t nbdsrv_tflags(const struct nbdsrv_export *e, bool sr);
/* Looks an export up by name and takes a reference (nbdsrv_export_put);
 * NULL if unknown or being removed. Any thread. */
struct nbdsrv_export *nbdsrv_find_export(struct nbdsrv *s, const char *name, size_t len);

/* transmit.c */
/* Enters transmission on export @e (after GO/EXPORT_NAME was answered and
 * c->hs freed) with what the handshake negotiated. */
void nbdsrv_xmit_begin(struct nbdsrv_conn *c, struct nbdsrv_export *e, bool sr,
		       uint32_t meta_active);
/* Frees c->x: slots and buffers (connection teardown; nothing in flight). */
void nbdsrv_xmit_free(struct nbdsrv_conn *c);
/* Server stopping: finish what is in flight, answer what is buffered with
 * ESHUTDOWN, then close. */
void nbdsrv_xmit_drain(struct nbdsrv_xmit *x);
/* Releases the slot of a WRITE whose payload never fully arrived
 * (teardown, after the receive stopped). */
void nbdsrv_xmit_free_payload_req(struct nbdsrv_xmit *x);

#endif
