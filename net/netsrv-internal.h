/* SPDX-License-Identifier: MIT */
/*
 * netsrv-internal.h: structures shared by the files of the socket engine
 * (server.c, conn.c). Not included from outside net/.
 */
#ifndef DISKSTACK_NET_NETSRV_INTERNAL_H
#define DISKSTACK_NET_NETSRV_INTERNAL_H

#include <pthread.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

#include <openssl/ssl.h>

#include "common/reactor.h"
#include "net/netsrv.h"

/* ---- limits ------------------------------------------------------------- */

/* iovecs gathered into one sendmsg. */
#define NETSRV_TX_IOV 256u
/* Multishot receive (conn.c): the engine's buffers per connection, their
 * size, and the size from which a payload receive (netsrv_rx with @all,
 * netsrv_rxv) stops the multishot receive and goes straight into the
 * protocol's buffers instead of being copied out of the engine's. */
#define NETSRV_MS_BUFS 16u
#define NETSRV_MS_BUF_BYTES (16u << 10)
#define NETSRV_MS_DIRECT_BYTES (32u << 10)
/* After such a payload, the receives (headers) that may come before the
 * next one without the multishot receive being armed again (conn.c,
 * conn_rx_start). */
#define NETSRV_MS_QUIET_RX 16u
/* Send buffer asked for on accepted Unix sockets. */
#define NETSRV_UNIX_SNDBUF (4 << 20)
/* TLS: ciphertext receive buffer, ciphertext send buffer, plaintext
 * encrypted per pass, and the staging buffer that coalesces small pieces
 * into one record. */
#define NETSRV_TLS_IN_BYTES (64u << 10)
#define NETSRV_TLS_OUT_BYTES (512u << 10)
#define NETSRV_TLS_QUANTUM (256u << 10)
#define NETSRV_TLS_STAGE_BYTES (16u << 10)

/* ---- the engine ---------------------------------------------------------- */

/* One reactor thread. Fields after "worker thread only" are touched only
 * by the thread itself. */
struct netsrv_worker {
	struct netsrv *srv;
	unsigned index;
	pthread_t thread;
	bool started;
	struct reactor *r;          /* set by the thread before it signals ready */
	atomic_uint nconns;         /* live connections; read by the acceptor */

	/* worker thread only */
	struct netsrv_conn *conns;  /* live connections (doubly linked) */
	bool stopping;              /* netsrv_stop reached this worker */
	bool done_posted;
	struct reactor_task stop_task, force_task;
	struct reactor_task done_task;  /* posted to the acceptor */
	struct reactor_timer drain_timer;
};

struct netsrv_listener {
	struct netsrv *srv;
	const struct netsrv_proto *proto;  /* borrowed */
	int fd;
	bool armed;                 /* an accept is in flight */
	bool is_tcp;
	struct reactor_op op;
	struct reactor_op cancel_op;
	char desc[128];             /* "127.0.0.1:10809", "unix:/path" */
	char *unix_path;            /* owned; removed at exit */
};

struct netsrv {
	struct netsrv_opts opts;    /* opts.tls is owned, opts.name borrowed */
	uint64_t handshake_ns;      /* 0 = no deadline */
	uint64_t idle_ns;           /* 0 = no idle timeout */
	struct netsrv_listener *listeners;
	unsigned nlisteners;
	struct netsrv_worker *workers;
	unsigned nworkers;
	struct reactor *main_r;     /* the acceptor's reactor */

	/* stdin/stdout mode */
	bool stdio;
	const struct netsrv_proto *stdio_proto;
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

/* ---- a connection -------------------------------------------------------- */

struct netsrv_conn {
	struct netsrv *srv;
	const struct netsrv_proto *proto;  /* borrowed */
	struct netsrv_worker *w;
	struct reactor *r;
	struct netsrv_conn *next, *prev;  /* worker's list */
	uint64_t id;
	char name[112];             /* "nbd #12 127.0.0.1:50234", for logs */
	int rfd, wfd;
	int rfix, wfix;             /* their fixed-file indexes; -1 = use the fd */
	bool is_sock;
	bool stdio;
	struct sockaddr_storage peer;
	socklen_t peerlen;
	struct reactor_task start_task;

	/* Teardown. */
	bool closing;               /* no new work; freed once idle */
	bool hard;                  /* drop queued output */
	bool tls_bye;               /* close_notify queued */
	bool shut_wr;               /* shutdown(SHUT_RDWR) done */

	/* Receive side: at most one receive in flight. */
	struct reactor_op rx_op;
	bool rx_busy;
	netsrv_rx_cb rx_cb;
	void *rx_buf;
	size_t rx_len;
	struct msghdr rx_msg;       /* netsrv_rxv: msg_iov set while it runs */
	struct reactor_task rx_task;  /* delivers a result that was ready at once */
	bool rx_task_busy;
	ssize_t rx_task_res;
	struct iovec rx_one;        /* netsrv_rx's buffer as an iovec */

	/* Multishot receive (plain sockets): the kernel receives into the
	 * engine's buffers (ms_ring) while the op stays armed; filled
	 * buffers wait in ms_q, oldest first, and are copied into the
	 * protocol's buffer when it asks (rx_want). */
	struct reactor_bufring *ms_ring;
	struct reactor_op ms_op;
	bool ms_busy;               /* the multishot op is in flight */
	bool ms_cancelling;         /* and a cancel of it is */
	bool ms_off;                /* not on this connection: one-shot receives */
	bool ms_worked;             /* it has received bytes (so -EINVAL is no probe) */
	bool ms_ended;              /* the stream ended (ms_res) after ms_q */
	int ms_res;
	struct {
		uint16_t bid;
		uint32_t off, len;
	} ms_q[NETSRV_MS_BUFS];
	unsigned ms_qhead, ms_qlen;
	bool rx_want;               /* the protocol waits for bytes via ms_q */
	bool rx_direct;             /* ... and wants them straight in its buffer */
	unsigned ms_quiet;          /* receives left that stay one-shot (conn_rx_start) */
	bool rx_all;                /* netsrv_rx's @all */
	bool tls_parked;            /* a TLS receive waits for the multishot op's end */
	const struct iovec *rx_iov; /* its target (rx_one or netsrv_rxv's) */
	int rx_iovcnt;

	/* Send side: at most one send in flight. */
	struct reactor_op tx_op;
	bool tx_busy;
	bool tx_splice;             /* tx_op is for the head item's pipe bytes: */
	bool tx_polled;             /* its splice (else the poll for room before it) */
	int rx_pipe_fd;             /* netsrv_rx_pipe: the pipe, the bytes asked for, */
	size_t rx_pipe_len;
	bool rx_pipe_cancel;        /* and netsrv_rx_cancel asked to stop */
	struct netsrv_tx *txq_head, **txq_tail;
	struct msghdr msg;
	struct iovec txiov[NETSRV_TX_IOV];
	struct reactor_task tx_task;  /* "flush": send what is queued, then call rx_arm */
	bool tx_task_busy;
	void (*rx_arm)(struct netsrv_conn *c);  /* set by netsrv_rx_later, cleared when called */

	/* Cancellation of in-flight socket ops at teardown. */
	struct reactor_op cancel_op;
	unsigned cancels_busy;

	/* The handshake deadline; then the idle timer, with the last time
	 * the connection received something or went quiet. */
	struct reactor_timer hs_timer;
	struct reactor_timer idle_timer;
	bool idle_on;
	bool tx_fresh;              /* output queued since the idle timer last looked */
	uint64_t last_active_ns;

	/* TLS transport. */
	SSL *ssl;
	bool tls;                   /* established */
	uint8_t *tls_in;            /* received ciphertext */
	uint8_t *tls_out;           /* ciphertext being sent */
	size_t tls_out_len, tls_out_off;
	uint8_t *tls_stage;         /* small plaintext pieces coalesced */
	size_t tls_stage_len;
	void (*tls_ready)(struct netsrv_conn *c);

	/* proto->priv_bytes of protocol state follow. */
	alignas(max_align_t) unsigned char priv[];
};

/* conn.c */
struct netsrv_conn *netsrv_conn_new(struct netsrv *s, const struct netsrv_proto *p, int rfd,
				    int wfd, const struct sockaddr *peer, socklen_t peerlen);
/* The worker's task that starts a dispatched connection. */
void netsrv_conn_start(struct reactor_task *t);
/* Server stopping: hands the connection to proto->drain. */
void netsrv_conn_drain(struct netsrv_conn *c);

/* server.c: formats @sa as "127.0.0.1:10809", "[::1]:10809" or "unix". */
void netsrv_format_addr(const struct sockaddr *sa, char *buf, size_t len);
/* server.c: a connection of worker @w was freed. */
void netsrv_worker_conn_gone(struct netsrv_worker *w, bool stdio);

#endif
