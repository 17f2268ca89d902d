/* SPDX-License-Identifier: MIT */
/*
 * server-internal.h: structures and functions shared by the files of the
 * NBD server (server.c, conn.c, handshake.c, transmit.c). Not included
 * from outside nbd/.
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

#include <openssl/ssl.h>

#include "common/reactor.h"
#include "nbd/proto.h"
#include "nbd/server.h"
#include "storage/disk.h"

/* ---- limits ------------------------------------------------------------- */

/* Largest READ/WRITE payload (also advertised as the maximum block size). */
#define NBDSRV_MAX_PAYLOAD (32u << 20)
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
/* Time connections get to drain at shutdown before they are dropped. */
#define NBDSRV_DRAIN_TIMEOUT_NS (10ull * 1000000000ull)
/* iovecs gathered into one sendmsg. */
#define NBDSRV_TX_IOV 256u
/* Extents asked for to find holes in a structured READ, and the smallest
 * read that looks for them. A connection keeps probing while probes find
 * holes; after NBDSRV_HOLE_CREDIT probes in a row find none it probes again
 * only once per NBDSRV_HOLE_REPROBE_BYTES of reads (see transmit.c). */
#define NBDSRV_READ_EXTENTS 8u
#define NBDSRV_HOLE_MIN_BYTES (64u << 10)
#define NBDSRV_HOLE_CREDIT 16u
#define NBDSRV_HOLE_REPROBE_BYTES (256ull << 20)
/* Send buffer asked for on accepted Unix sockets. */
#define NBDSRV_UNIX_SNDBUF (4 << 20)
/* Extents per BLOCK_STATUS request, and the most of the export one request
 * looks at: a longer one is answered for its first NBDSRV_BS_MAX_BYTES
 * (the protocol lets a server describe less than was asked). */
#define NBDSRV_BS_EXTENTS 1024u
#define NBDSRV_BS_MAX_BYTES (1u << 30)
/* Payload buffers up to this size stay attached to their request slot, up
 * to NBDSRV_CONN_CACHE_BYTES per connection. */
#define NBDSRV_SLOT_KEEP_BYTES (1u << 20)
#define NBDSRV_CONN_CACHE_BYTES (16u << 20)
/* TLS: ciphertext receive buffer, ciphertext send buffer, plaintext
 * encrypted per pass, and the staging buffer that coalesces small pieces
 * into one record. */
#define NBDSRV_TLS_IN_BYTES (64u << 10)
#define NBDSRV_TLS_OUT_BYTES (512u << 10)
#define NBDSRV_TLS_QUANTUM (256u << 10)
#define NBDSRV_TLS_STAGE_BYTES (16u << 10)
/* Error message carried in structured error chunks. */
#define NBDSRV_ERRMSG_MAX 96u
/* WRITE payloads of at least this many bytes go straight into page-sized
 * blocks the export's disk may adopt (disk_info.adopt_bytes; transmit.c),
 * up to this many blocks (IOV_MAX bounds one recvmsg). */
#define NBDSRV_ADOPT_MIN_BYTES (64u << 10)
#define NBDSRV_ADOPT_MAX_IOV 1024u

/* ---- the server --------------------------------------------------------- */

struct nbdsrv_conn;

struct nbdsrv_export {
	char *name;                 /* owned, NUL-terminated */
	size_t namelen;
	char *description;          /* owned, NULL = none */
	struct disk *disk;          /* owned reference */
	bool read_only;             /* refuse writes */
};

/* One reactor thread. Fields after "worker thread only" are touched only
 * by the thread itself. */
struct nbdsrv_worker {
	struct nbdsrv *srv;
	unsigned index;
	pthread_t thread;
	bool started;
	struct reactor *r;          /* set by the thread before it signals ready */
	atomic_uint nconns;         /* live connections; read by the acceptor */

	/* worker thread only */
	struct nbdsrv_conn *conns;  /* live connections (doubly linked) */
	bool stopping;              /* nbdsrv_stop reached this worker */
	bool done_posted;
	struct reactor_task stop_task, force_task;
	struct reactor_task done_task;  /* posted to the acceptor */
	struct reactor_timer drain_timer;
};

struct nbdsrv_listener {
	struct nbdsrv *srv;
	int fd;
	bool armed;                 /* an accept is in flight */
	bool is_tcp;
	struct reactor_op op;
	struct reactor_op cancel_op;
	char desc[128];             /* "127.0.0.1:10809", "unix:/path" */
	char *unix_path;            /* owned; removed at exit */
};

struct nbdsrv {
	struct nbdsrv_opts opts;    /* opts.tls is owned */
	struct nbdsrv_export **exports;
	unsigned nexports;
	struct nbdsrv_listener *listeners;
	unsigned nlisteners;
	struct nbdsrv_worker *workers;
	unsigned nworkers;
	struct reactor *main_r;     /* the acceptor's reactor */

	/* stdin/stdout mode */
	bool stdio;
	int stdio_rfd, stdio_wfd;

	atomic_bool stop_requested;
	atomic_bool force_requested;
	atomic_uint_fast64_t next_conn_id;
	atomic_uint rr;
	/* Live connections (accepted, not yet freed): the acceptor adds, the
	 * workers subtract. */
	atomic_uint nconns;
	uint64_t nrefused;          /* acceptor only: over max_connections */
	bool refusing;              /* acceptor only: the limit was logged */

	/* main thread only */
	struct reactor_task stop_task, force_task;
	atomic_uint workers_done;   /* posted by workers, read by main */
	bool accepting_stopped;
	bool run_done;
};

/* ---- connections -------------------------------------------------------- */

enum nbdsrv_phase {
	NBDSRV_PH_HANDSHAKE = 0,
	NBDSRV_PH_TRANSMIT,
};

/* An item in a connection's send queue: a list of iovecs sent in order.
 * @sent runs once every byte is on the wire (plaintext) or encrypted
 * (TLS), or when the connection is torn down with the item still queued. */
struct nbdsrv_tx {
	struct nbdsrv_tx *next;
	struct iovec *iov;
	unsigned iovcnt;
	unsigned idx;               /* first iovec not fully consumed */
	size_t off;                 /* bytes of iov[idx] already consumed */
	void (*sent)(struct nbdsrv_conn *c, struct nbdsrv_tx *tx);
};

/* A receive buffer and the WRITEs whose payload still points into it. */
struct nbdsrv_rbuf {
	uint8_t *data;              /* NBDSRV_RBUF_BYTES (reactor_buf), NULL until needed */
	unsigned refs;
};

/* A request slot (preallocated per connection). */
struct nbdsrv_req {
	struct nbdsrv_conn *c;
	struct nbdsrv_req *next_free;
	struct disk_io io;          /* the command's disk request */
	struct disk_io io2;         /* READ: block status for holes */
	struct nbdsrv_tx tx;        /* the reply */
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
	uint64_t charged;           /* bytes counted in c->inflight_bytes */
	struct iovec dio;           /* the disk request's buffer */
	/* WRITE received into blocks the disk may adopt (aiov != NULL):
	 * @naiov entries, the blocks from c->apool; aorig: what was in each
	 * before the write. Both in one reactor buffer of aiov_bytes while the
	 * request lives; NULL otherwise. */
	unsigned naiov;
	struct iovec *aiov;
	void **aorig;
	size_t aiov_bytes;
	struct disk_extent ext[NBDSRV_READ_EXTENTS];
	struct iovec riov[2 * NBDSRV_READ_EXTENTS + 4];
	uint8_t hdr[(NBDSRV_READ_EXTENTS + 1) * 32 + NBDW_CHUNK_HDR_BYTES + 6 + NBDSRV_ERRMSG_MAX];
};

typedef void (*nbdsrv_rx_cb)(struct nbdsrv_conn *c, ssize_t res);

struct nbdsrv_conn {
	struct nbdsrv *srv;
	struct nbdsrv_worker *w;
	struct reactor *r;
	struct nbdsrv_conn *next, *prev;  /* worker's list */
	uint64_t id;
	char name[96];              /* "#12 127.0.0.1:50234", for logs */
	int rfd, wfd;
	bool is_sock;
	bool stdio;
	struct sockaddr_storage peer;
	socklen_t peerlen;
	struct reactor_task start_task;
	enum nbdsrv_phase phase;

	/* Teardown. */
	bool closing;               /* no new work; freed once idle */
	bool hard;                  /* drop queued replies */
	bool tls_bye;               /* close_notify queued */
	bool shut_wr;               /* shutdown(SHUT_RDWR) done */
	bool freed;                 /* (debug) */

	/* Receive side: at most one receive in flight. */
	struct reactor_op rx_op;
	bool rx_busy;
	nbdsrv_rx_cb rx_cb;
	void *rx_buf;
	size_t rx_len;
	bool rx_all;
	struct msghdr rx_msg;       /* nbdsrv_rxv: msg_iov set while it runs */
	struct reactor_task rx_task;  /* delivers a TLS result that was ready at once */
	bool rx_task_busy;
	ssize_t rx_task_res;

	/* Send side: at most one send in flight. */
	struct reactor_op tx_op;
	bool tx_busy;
	struct nbdsrv_tx *txq_head, **txq_tail;
	struct msghdr msg;
	struct iovec txiov[NBDSRV_TX_IOV];
	struct reactor_task tx_task;  /* "flush": send what is queued, then arm rx_want */
	bool tx_task_busy;
	bool rx_want;               /* the flush task calls rx_arm */
	void (*rx_arm)(struct nbdsrv_conn *c);

	/* Cancellation of in-flight socket ops at teardown. */
	struct reactor_op cancel_op;
	unsigned cancels_busy;

	/* Handshake: the deadline for all of it. Transmission: the idle
	 * timer (opts.idle_timeout_s), with the last time the connection
	 * received something or went quiet (nothing in flight). */
	struct reactor_timer hs_timer;
	struct reactor_timer idle_timer;
	uint64_t idle_ns;           /* opts.idle_timeout_s in ns, 0 = off */
	uint64_t last_active_ns;
	uint8_t hs_hdr[NBDW_OPT_HDR_BYTES];
	uint32_t opt, optlen;
	uint8_t *hs_in;             /* option data (malloc, <= NBDSRV_OPT_MAX) */
	size_t hs_in_cap;
	uint8_t *hs_rbuf;           /* exact-read target */
	size_t hs_want, hs_got;
	void (*hs_next)(struct nbdsrv_conn *c);
	uint64_t skip_left;         /* option bytes still to discard */
	uint8_t *hs_out;            /* replies being built (malloc) */
	size_t hs_out_len, hs_out_cap;
	struct nbdsrv_tx hs_tx;
	struct iovec hs_iov;
	void (*hs_after)(struct nbdsrv_conn *c);
	unsigned nopts;
	bool fixed, no_zeroes;
	bool hs_idle;               /* waiting for the next option header */
	bool sr;                    /* structured replies negotiated */
	bool tls;                   /* TLS established */
	uint32_t meta;              /* selected contexts (NBDSRV_META_*) */
	char *meta_export;          /* export name they were selected for (malloc) */
	size_t meta_export_len;

	/* TLS transport. */
	SSL *ssl;
	uint8_t *tls_in;            /* received ciphertext */
	uint8_t *tls_out;           /* ciphertext being sent */
	size_t tls_out_len, tls_out_off;
	uint8_t *tls_stage;         /* small plaintext pieces coalesced */
	size_t tls_stage_len;
	void (*tls_ready)(struct nbdsrv_conn *c);

	/* Transmission. */
	struct nbdsrv_export *exp;
	struct disk *disk;          /* borrowed from exp */
	uint64_t size;              /* bytes, fixed at GO */
	uint32_t ss, shift;         /* sector size and log2 */
	uint16_t tflags;
	uint32_t meta_active;       /* contexts usable by BLOCK_STATUS */
	bool ro;
	bool holes;                 /* structured READs may look for holes */
	uint32_t hole_credit;       /* probes left before backing off */
	uint64_t hole_unprobed;     /* bytes read since the last probe */
	struct nbdsrv_req *slots;
	unsigned nslots;
	struct nbdsrv_req *free_slots;
	unsigned ninflight;         /* slots in use */
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
};

/* conn.c: lifetime and transport. */
struct nbdsrv_conn *nbdsrv_conn_new(struct nbdsrv *s, int rfd, int wfd,
				    const struct sockaddr *peer, socklen_t peerlen);
void nbdsrv_conn_start(struct reactor_task *t);
/* Begins closing: graceful lets queued replies (and TLS close_notify) go
 * out first; hard drops them. @why is logged (NULL = quietly). */
void nbdsrv_conn_close(struct nbdsrv_conn *c, bool graceful, const char *why);
/* Frees the connection once nothing is in flight. */
void nbdsrv_conn_maybe_free(struct nbdsrv_conn *c);
/* Server stopping: handshakes get ERR_SHUTDOWN, transmission drains. */
void nbdsrv_conn_shutdown(struct nbdsrv_conn *c);

/* Receives up to @len plaintext bytes into @buf; @cb runs later with the
 * count, 0 at end of stream or -errno. @all: wait for all @len (plaintext
 * sockets only; a hint). One receive at a time. */
void nbdsrv_rx(struct nbdsrv_conn *c, void *buf, size_t len, bool all, nbdsrv_rx_cb cb);
/* Receives exactly iov_length(@iov) plaintext bytes into @iov (a plain
 * socket, no TLS); @iov must stay valid until @cb runs with the count, 0
 * at end of stream or -errno. */
void nbdsrv_rxv(struct nbdsrv_conn *c, struct iovec *iov, int iovcnt, nbdsrv_rx_cb cb);
/* Cancels the receive in flight, if any. */
void nbdsrv_rx_cancel(struct nbdsrv_conn *c);
/* Appends @tx to the send queue (send with nbdsrv_tx_schedule/kick). */
void nbdsrv_tx_queue(struct nbdsrv_conn *c, struct nbdsrv_tx *tx);
/* Sends queued items on a later pass (coalescing replies). */
void nbdsrv_tx_schedule(struct nbdsrv_conn *c);
/* Has the flush task call c->rx_arm after it queued the send, so the
 * send and the next receive go to the kernel in one io_uring_enter. */
void nbdsrv_rx_later(struct nbdsrv_conn *c);
/* Starts sending now if nothing is in flight. */
void nbdsrv_tx_kick(struct nbdsrv_conn *c);
/* Starts the server side of a TLS handshake; @ready runs when it is done
 * (the connection is closed on failure). */
void nbdsrv_tls_begin(struct nbdsrv_conn *c, void (*ready)(struct nbdsrv_conn *c));

/* handshake.c */
void nbdsrv_hs_begin(struct nbdsrv_conn *c);
void nbdsrv_hs_free(struct nbdsrv_conn *c);
/* Server stopping during the handshake: an idle client is let go, an
 * option being received is answered with ERR_SHUTDOWN. */
void nbdsrv_hs_shutdown(struct nbdsrv_conn *c);
/* Transmission flags of @e for a connection that negotiated @sr. */
uint16_t nbdsrv_tflags(const struct nbdsrv_export *e, bool sr);
/* Looks an export up by name; NULL if unknown. */
struct nbdsrv_export *nbdsrv_find_export(struct nbdsrv *s, const char *name, size_t len);

/* transmit.c */
/* Enters transmission on export @e (after GO/EXPORT_NAME was answered). */
void nbdsrv_xmit_begin(struct nbdsrv_conn *c, struct nbdsrv_export *e);
/* Frees slots and buffers (connection teardown; nothing in flight). */
void nbdsrv_xmit_free(struct nbdsrv_conn *c);
/* Server stopping: finish what is in flight, answer what is buffered with
 * ESHUTDOWN, then close. */
void nbdsrv_xmit_drain(struct nbdsrv_conn *c);
/* Releases the slot of a WRITE whose payload never fully arrived
 * (teardown, after the receive stopped). */
void nbdsrv_xmit_free_payload_req(struct nbdsrv_conn *c);

/* server.c: a connection of worker @w was freed. */
void nbdsrv_worker_conn_gone(struct nbdsrv_worker *w, bool stdio);

#endif
