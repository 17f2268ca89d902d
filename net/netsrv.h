/* SPDX-License-Identifier: MIT */
/*
 * netsrv.h: the socket engine every network target runs on (docs/net.md).
 * It owns listeners, the reactor threads connections are spread over,
 * buffered receive and send on io_uring, TLS, connection limits, the
 * handshake deadline and idle timeout, and the orderly drain at shutdown.
 * A protocol (NBD today; iSCSI, RFC 7143, and NVMe/TCP next) brings a
 * table of callbacks and per-connection private state, and never touches
 * a socket itself.
 *
 * Notes on the design
 * -------------------
 * - Shape. struct netsrv is one engine: listeners, worker threads, limits
 *   and TLS credentials. Each listener (and the stdio connection) names
 *   the protocol its connections speak (struct netsrv_proto), so one
 *   engine and one set of threads could serve several protocols on
 *   several ports. A connection (struct netsrv_conn) is created on the
 *   acceptor thread, handed to the worker with the fewest connections,
 *   and from then on lives on that worker's reactor: every callback below
 *   runs there, so a protocol needs no lock for its connection state.
 * - Protocol state. proto->priv_bytes of zeroed memory are allocated with
 *   the connection (netsrv_conn_priv); the protocol hangs its per-phase
 *   state off it (login or handshake, then full feature or transmission).
 * - Receive. At most one receive is in flight per connection, driven by
 *   the protocol: netsrv_rx (a buffer; TLS or not) or netsrv_rxv (an
 *   iovec, plain sockets: payloads straight into their final buffers).
 *   Results always arrive on a later callback. Both iSCSI and NVMe/TCP
 *   are "read a fixed basic header, then the rest of the PDU it announces,
 *   digests included": exactly these two calls. Header and data digests
 *   (CRC32C) are the protocol's to compute over the bytes it received.
 * - Send. A FIFO of items (struct netsrv_tx, embedded in the protocol's
 *   request or reply), each a list of iovecs; a kick gathers as many as
 *   fit into one sendmsg, or encrypts up to a quantum of them under TLS.
 *   An item may end with bytes of a pipe (netsrv_tx_queue_pipe), which
 *   are spliced into the socket after its iovecs.
 *   netsrv_tx_schedule defers the kick to the end of the loop pass so
 *   replies finished in one pass share a syscall; netsrv_rx_later has
 *   that deferred flush also arm the protocol's next receive, so the send
 *   and the receive reach the kernel in one io_uring_enter.
 * - The socket path (net/conn.c, behind netsrv_rx, no protocol change):
 *   plain sockets receive with a multishot recv into a per-connection
 *   ring of engine buffers, copied into the protocol's buffer when it
 *   asks (payloads of 32 KiB or more still land straight in their final
 *   buffers); sockets are fixed files of the worker's ring, whose fd is
 *   registered. Each falls back when the kernel lacks it (docs/net.md).
 * - Back-pressure is the protocol's: it simply does not arm the next
 *   receive while it has too much in flight, and arms it again from the
 *   completion that freed room.
 * - Teardown. netsrv_conn_close marks the connection closing and cancels
 *   its socket ops; a graceful close first lets queued output (and the
 *   TLS close_notify) go out. Queued items are released (their sent
 *   callback runs) once nothing is in flight on the socket; the protocol
 *   then drops what waited on the socket (proto->closed) and the engine
 *   frees the connection when proto->busy(NETSRV_BUSY_REFS) says nothing
 *   else refers to it; work finishing later calls netsrv_conn_maybe_free.
 * - Drain. netsrv_stop (any thread, e.g. a signal thread) stops accepting,
 *   asks every connection's protocol to drain (proto->drain), arms a
 *   force-close timer (NETSRV_DRAIN_TIMEOUT_NS) and returns from
 *   netsrv_run once every connection is gone; a second netsrv_stop drops
 *   them at once.
 * - Errors: functions that can fail return 0 or -errno; listener setup
 *   also writes a message for humans into a caller's buffer.
 */
#ifndef DISKSTACK_NET_NETSRV_H
#define DISKSTACK_NET_NETSRV_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

struct netsrv;
struct netsrv_conn;
struct netsrv_tls;
struct reactor;

/* ---- the protocol's side --------------------------------------------------- */

/* What proto->busy is asked about. */
enum netsrv_busy {
	/* Work that will still queue output (requests in flight): a graceful
	 * close waits for it before the TLS close_notify and the close. */
	NETSRV_BUSY_OUTPUT = 0,
	/* Anything that refers to the connection once its socket is quiet
	 * (disk requests, deferred tasks): the engine does not free it. */
	NETSRV_BUSY_REFS,
	/* Anything that keeps the connection from counting as idle for the
	 * idle timeout (requests in flight, a drain in progress). */
	NETSRV_BUSY_IDLE,
};

/*
 * A protocol: callbacks plus its server object. Owned by the protocol,
 * borrowed by the engine for as long as a listener or connection uses it
 * (until netsrv_free). Every callback runs on the connection's worker
 * thread; none may free the connection (use netsrv_conn_close).
 */
struct netsrv_proto {
	unsigned version;           /* NETSRV_PROTO_VERSION */
	const char *name;           /* "nbd": prefix of every log line (borrowed) */
	void *ctx;                  /* the protocol's server object (borrowed), passed to start */
	size_t priv_bytes;          /* zeroed per-connection state (netsrv_conn_priv) */
	/* Required. The connection is on its worker and may receive and send:
	 * set up state in netsrv_conn_priv and begin (a greeting, or wait for
	 * a login PDU). Failure: netsrv_conn_close. */
	void (*start)(struct netsrv_conn *c, void *ctx);
	/* Required. The server is stopping: finish or refuse what is in
	 * progress and close the connection (gracefully) when done. Called at
	 * most once, never on a closing connection. */
	void (*drain)(struct netsrv_conn *c);
	/* Optional (NULL = never busy). See enum netsrv_busy. Must not
	 * change state. */
	bool (*busy)(struct netsrv_conn *c, enum netsrv_busy what);
	/* Optional. Teardown: the socket has nothing in flight and never
	 * will; release what waited for bytes that will not come (a payload
	 * half received). May run more than once. */
	void (*closed)(struct netsrv_conn *c);
	/* Optional. Called once, just before the connection is freed:
	 * release the protocol's state (nothing refers to it any more). */
	void (*free)(struct netsrv_conn *c);
};

#define NETSRV_PROTO_VERSION 1u

/*
 * The protocol of a server file that defines its callbacks as static
 * functions named srv_conn_start, srv_conn_drain, srv_conn_busy,
 * srv_conn_closed and srv_conn_free (nbd/, iscsi/ and nvmf/ do), with
 * @server as ctx and @conn_type as its per-connection state. One place
 * fills the table, so a member appended to struct netsrv_proto is not
 * forgotten by one of the servers.
 */
#define NETSRV_PROTO_INIT(proto_name, server, conn_type)                                    \
	((struct netsrv_proto){ .version = NETSRV_PROTO_VERSION,                            \
				.name = (proto_name),                                       \
				.ctx = (server),                                            \
				.priv_bytes = sizeof(conn_type),                            \
				.start = srv_conn_start,                                    \
				.drain = srv_conn_drain,                                    \
				.busy = srv_conn_busy,                                      \
				.closed = srv_conn_closed,                                  \
				.free = srv_conn_free })

/* An item of a connection's send queue: @iovcnt iovecs at @iov (borrowed
 * until @sent) sent in order. Embedded in the protocol's reply; the
 * protocol sets iov, iovcnt and sent, the engine the rest. @sent runs on the worker once
 * every byte is on the wire (plaintext) or encrypted (TLS), or when the
 * connection is torn down with the item still queued
 * (netsrv_conn_closing is then true); the item may be reused from it. */
struct netsrv_tx {
	struct iovec *iov;
	unsigned iovcnt;
	void (*sent)(struct netsrv_conn *c, struct netsrv_tx *tx);
	/* engine only */
	struct netsrv_tx *next;
	unsigned idx;               /* first iovec not fully consumed */
	size_t off;                 /* bytes of iov[idx] already consumed */
	int pipe_fd;                /* netsrv_tx_queue_pipe: the pipe's read end */
	size_t pipe_len, pipe_off;  /* its bytes to send, and sent */
};

/* A receive completion: the byte count, 0 at end of stream, or -errno
 * (-ECANCELED when the receive was cancelled by netsrv_rx_cancel or a
 * drain). Never called on a closing connection. */
typedef void (*netsrv_rx_cb)(struct netsrv_conn *c, ssize_t res);

/* ---- the engine ------------------------------------------------------------- */

#define NETSRV_NO_LIMIT UINT_MAX
/* qemu's NBD server allows 100 since CVE-2024-7409; multi-conn NBD
 * clients use 4 to 16, iSCSI initiators a few per session
 * (docs/net.md). */
#define NETSRV_DEFAULT_CONNECTIONS 100u
#define NETSRV_DEFAULT_HANDSHAKE_S 30u
/* Time connections get to drain at shutdown before they are dropped. */
#define NETSRV_DRAIN_TIMEOUT_NS (10ull * 1000000000ull)

struct netsrv_opts {
	const char *name;              /* log prefix for server-wide lines ("nbd"), borrowed */
	unsigned threads;              /* reactor threads; 0 = one per online CPU */
	struct netsrv_tls *tls;        /* credentials, owned by the engine on success; NULL = none */
	/* Connections at once (more are accepted and closed at once):
	 * 0 = NETSRV_DEFAULT_CONNECTIONS, NETSRV_NO_LIMIT = none. */
	unsigned max_connections;
	/* Seconds from accept until the protocol calls netsrv_conn_established:
	 * 0 = NETSRV_DEFAULT_HANDSHAKE_S, NETSRV_NO_LIMIT = none. */
	unsigned handshake_timeout_s;
	/* Seconds an established connection may stay idle (nothing received,
	 * proto->busy(NETSRV_BUSY_IDLE) false) before it is closed: 0 = never. */
	unsigned idle_timeout_s;
};

/* Creates an engine (no threads yet). Returns 0 or -errno (-EINVAL, -ENOMEM).
 * On failure o->tls still belongs to the caller. Any thread. */
int netsrv_new(const struct netsrv_opts *o, struct netsrv **out);

/* The TLS credentials (borrowed; NULL = none). */
struct netsrv_tls *netsrv_tls_of(const struct netsrv *s);

/* Listens on TCP @host (NULL = 127.0.0.1; "::" etc. allowed) port @port
 * (0 = any: the bound port is returned in *@bound, may be NULL); every
 * address the name resolves to is bound. Connections speak @p (borrowed).
 * Returns 0 or -errno with a message in @err. Before netsrv_run. */
int netsrv_listen_tcp(struct netsrv *s, const struct netsrv_proto *p, const char *host,
		      uint16_t port, uint16_t *bound, char *err, size_t errlen);
/* Listens on Unix socket @path (borrowed). A socket file nobody listens
 * on (stale) is replaced; -EADDRINUSE when a live server answers on it;
 * anything else at @path is an error. The file is removed by netsrv_free.
 * Returns 0 or -errno with a message in @err. */
int netsrv_listen_unix(struct netsrv *s, const struct netsrv_proto *p, const char *path,
		       char *err, size_t errlen);
/* The socket part of netsrv_listen_unix, for servers that run their own
 * accept loop (vhost/, which passes fds with SCM_RIGHTS): binds and
 * listens on @path with the same stale-socket rules and returns the
 * listening fd in *@out (owned by the caller, who also removes the file).
 * Returns 0 or -errno with a message in @err. */
int netsrv_unix_listen_socket(const char *path, int *out, char *err, size_t errlen);
/* Uses an already listening socket @fd (socket activation); owned on
 * success. Returns 0 or -errno with a message in @err. */
int netsrv_listen_fd(struct netsrv *s, const struct netsrv_proto *p, int fd, char *err,
		     size_t errlen);
/* Serves exactly one connection on @rfd/@wfd (stdin/stdout mode, a pipe
 * pair or a socket); the engine stops when it ends. The fds are owned and
 * closed by the engine. Returns 0 or -EBUSY (one only). */
int netsrv_serve_fds(struct netsrv *s, const struct netsrv_proto *p, int rfd, int wfd);

/* systemd socket activation (sd_listen_fds(3)): the number of listening
 * sockets passed from fd 3 when LISTEN_PID is this process (then the
 * LISTEN_* variables are removed), 0 when none, -EINVAL when LISTEN_FDS
 * is malformed. */
int netsrv_activation_fds(void);
/* Makes a private directory under $TMPDIR (else /tmp) named
 * @prefix.XXXXXX and writes it into @dir and "<dir>/socket" into @path.
 * Returns 0 or -errno (-ENAMETOOLONG when it does not fit). The caller
 * removes the directory (rmdir) after netsrv_free. */
int netsrv_private_unix_path(const char *prefix, char *dir, size_t dirlen, char *path,
			     size_t pathlen);
/* The address a local client dials for TCP listener @host (NULL =
 * 127.0.0.1): wildcard addresses become loopback, IPv6 literals get
 * brackets ("[::1]"), for URIs. Writes into @out (room @len). */
void netsrv_client_host(const char *host, char *out, size_t len);

/* Starts the reactor threads. Must be called on a thread with a current
 * reactor (it becomes the acceptor's). Returns 0 or -errno. */
int netsrv_start(struct netsrv *s);
/* Accepts and serves until netsrv_stop (or the stdio connection's end),
 * then drains (see the design notes) and joins the threads. On the
 * thread that called netsrv_start. Returns 0, or 1 if the acceptor's
 * reactor failed. */
int netsrv_run(struct netsrv *s);
/* Asks the engine to stop (see netsrv_run). Thread-safe, idempotent; a
 * second call drops the remaining connections at once. */
void netsrv_stop(struct netsrv *s);
/* Frees everything (after netsrv_run returned, or if it never ran). NULL
 * allowed. */
void netsrv_free(struct netsrv *s);
/* Connections accepted so far (for logs and tests). Any thread. */
uint64_t netsrv_connections_served(const struct netsrv *s);

/* ---- a connection (worker thread only) --------------------------------------- */

/* The protocol's zeroed state of proto->priv_bytes (owned by the engine). */
void *netsrv_conn_priv(const struct netsrv_conn *c);
/* "nbd #12 127.0.0.1:50234", for log lines (borrowed, lives as long as @c). */
const char *netsrv_conn_name(const struct netsrv_conn *c);
/* The worker's reactor (borrowed): timers, tasks, buffers. */
struct reactor *netsrv_conn_reactor(const struct netsrv_conn *c);
/* The engine's TLS credentials (borrowed; NULL = none). */
struct netsrv_tls *netsrv_conn_tls_creds(const struct netsrv_conn *c);
/* Whether the engine is stopping (netsrv_stop was called). */
bool netsrv_conn_stopping(const struct netsrv_conn *c);
/* Whether the connection is closing (no new work: replies are dropped). */
bool netsrv_conn_closing(const struct netsrv_conn *c);
/* Whether the peer has closed its side (or the connection failed), by a
 * zero-timeout poll(2) of the socket: true before the worker has read
 * the end of stream. Any thread, while @c is not yet freed: lets a
 * protocol treat a session as lost at once when another thread needs to
 * know (an iSCSI nexus whose PREVENT an eject waits on). */
bool netsrv_conn_peer_gone(const struct netsrv_conn *c);
/* Whether TLS is established on the connection. */
bool netsrv_conn_tls(const struct netsrv_conn *c);
/* Whether netsrv_rxv may be used (a plain socket without TLS). */
bool netsrv_conn_can_rxv(const struct netsrv_conn *c);
/* The handshake or login is over: cancels the handshake deadline and
 * starts the idle timer (netsrv_opts.idle_timeout_s). */
void netsrv_conn_established(struct netsrv_conn *c);
/* The connection just went quiet (its last request finished): the idle
 * timeout counts from now. Cheap; a no-op without an idle timeout. */
void netsrv_conn_touch(struct netsrv_conn *c);

/* Begins closing: @graceful lets queued output (and the TLS close_notify)
 * go out first and waits for proto->busy(NETSRV_BUSY_OUTPUT); otherwise
 * queued output is dropped. @why is logged at debug level (NULL =
 * quietly). A graceful close may later become hard, not the reverse. */
void netsrv_conn_close(struct netsrv_conn *c, bool graceful, const char *why);
/* Frees a closing connection once nothing refers to it; the protocol
 * calls it when it drops a reference that proto->busy reported. No-op on
 * an open connection. @c may be gone on return. */
void netsrv_conn_maybe_free(struct netsrv_conn *c);

/* Receives up to @len bytes (plaintext: decrypted under TLS) into @buf
 * (borrowed until @cb); @cb runs later. @all: wait for all @len (a hint,
 * plaintext sockets only; the count may still be short). One receive at a
 * time. */
void netsrv_rx(struct netsrv_conn *c, void *buf, size_t len, bool all, netsrv_rx_cb cb);
/* Receives @len bytes into @buf (borrowed until @cb) with one-shot
 * receives that wait for all of them, past the multishot ring (bytes it
 * already holds come first): for a header the protocol expects to be
 * followed by a payload it will receive in place, so that the ring does
 * not take that payload first and make it a copy. The count may still be
 * short. Under TLS or without the ring it is netsrv_rx(..., true, @cb). */
void netsrv_rx_exact(struct netsrv_conn *c, void *buf, size_t len, netsrv_rx_cb cb);
/* Receives exactly the bytes @iov describes (netsrv_conn_can_rxv must be
 * true); @iov (borrowed) stays valid until @cb runs. */
void netsrv_rxv(struct netsrv_conn *c, struct iovec *iov, int iovcnt, netsrv_rx_cb cb);
/* Receives @len bytes from the socket into pipe @pipe_wfd (its write
 * end, borrowed until @cb) with splice(2), so a payload can reach a file
 * without a copy through this process (storage/disk.h, DISK_IO_PIPE).
 * Plain sockets only (netsrv_conn_can_rxv). The count may be short, as
 * with netsrv_rx. -EAGAIN: use memory instead, nothing was taken from
 * the socket by this call -- the engine already holds bytes of the
 * stream (the multishot ring), or the pipe filled up (a socket's
 * buffers can take a pipe buffer for less than a page each). Cancelled
 * (netsrv_rx_cancel): -ECANCELED, and bytes may have gone into the pipe,
 * so the stream's position is lost: cancel only to stop receiving. */
void netsrv_rx_pipe(struct netsrv_conn *c, int pipe_wfd, size_t len, netsrv_rx_cb cb);
/* Cancels the receive in flight, if any (its callback gets -ECANCELED,
 * or does not run if the connection closes). */
void netsrv_rx_cancel(struct netsrv_conn *c);
/* Whether a receive was asked for and its callback is still to come. */
bool netsrv_rx_busy(const struct netsrv_conn *c);
/* Whether a receive is waiting for the peer, nothing of it received yet
 * (a TLS result that is ready but not delivered does not count). */
bool netsrv_rx_waiting(const struct netsrv_conn *c);
/* Has the deferred flush (netsrv_tx_schedule) call @arm after it queued
 * the send, so the send and the next receive go to the kernel in one
 * io_uring_enter. @arm is skipped when the connection is closing. */
void netsrv_rx_later(struct netsrv_conn *c, void (*arm)(struct netsrv_conn *c));

/* Appends @tx (borrowed until tx->sent) to the send queue. */
void netsrv_tx_queue(struct netsrv_conn *c, struct netsrv_tx *tx);
/* Like netsrv_tx_queue, with @len bytes of pipe @pipe_rfd (its read end,
 * borrowed until tx->sent) sent after @tx's iovecs: splice(2) into the
 * socket, so pages a disk put into the pipe (storage/disk.h,
 * DISK_IO_PIPE) go out without a copy through this process. Plain
 * sockets only (netsrv_conn_can_rxv). The pipe must hold the @len bytes
 * when the item's turn comes; an item torn down before they all went
 * leaves the rest in the pipe (the protocol drains or closes it). */
void netsrv_tx_queue_pipe(struct netsrv_conn *c, struct netsrv_tx *tx, int pipe_rfd, size_t len);
/* Sends what is queued at the end of this loop pass (coalescing). */
void netsrv_tx_schedule(struct netsrv_conn *c);
/* Starts sending now if nothing is in flight. */
void netsrv_tx_kick(struct netsrv_conn *c);

/* Starts the server side of a TLS handshake on the next bytes received
 * (STARTTLS; a protocol with TLS from the first byte calls it from
 * proto->start). @ready runs once TLS is up; on failure the connection is
 * closed and @ready never runs. Needs credentials (netsrv_conn_tls_creds). */
void netsrv_tls_begin(struct netsrv_conn *c, void (*ready)(struct netsrv_conn *c));

/* The local address of the connection's socket (getsockname: the address
 * the peer dialled, e.g. for iSCSI SendTargets). Returns 0, or -ENOTSOCK
 * for the stdio connection, or -errno. Worker thread. */
struct sockaddr;
int netsrv_conn_local_addr(const struct netsrv_conn *c, struct sockaddr *addr, unsigned *len);

#endif
