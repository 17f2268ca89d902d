/* SPDX-License-Identifier: MIT */
/*
 * server.h: the NBD server (diskstack serve). Exports are disks; clients
 * speak fixed-newstyle NBD over TCP, Unix sockets, an inherited socket
 * (systemd activation) or stdin/stdout, optionally upgraded to TLS.
 *
 * Use: nbdsrv_new, add exports and listeners, nbdsrv_start (starts the
 * reactor threads), then nbdsrv_run on a thread that has a reactor (it runs
 * the acceptor until nbdsrv_stop and returns once every connection is
 * closed and every export flushed). nbdsrv_free last.
 */
#ifndef DISKSTACK_NBD_SERVER_H
#define DISKSTACK_NBD_SERVER_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct disk;
struct nbdsrv;
struct nbdsrv_tls;

enum nbdsrv_tls_mode {
	NBDSRV_TLS_OFF = 0,      /* NOTLS: STARTTLS is refused with ERR_POLICY */
	NBDSRV_TLS_ON,           /* TLS offered; plaintext clients allowed */
	NBDSRV_TLS_REQUIRE,      /* FORCEDTLS: nothing but STARTTLS/ABORT before TLS */
};

struct nbdsrv_opts {
	unsigned threads;              /* reactor threads; 0 = one per online CPU */
	enum nbdsrv_tls_mode tls_mode;
	struct nbdsrv_tls *tls;        /* credentials, owned by the server on success;
					* required unless tls_mode is OFF */
	unsigned max_requests;         /* in-flight requests per connection; 0 = default (128) */
	/* Connections at once (handshake and transmission; more are accepted
	 * and closed at once): 0 = default (NBDSRV_DEFAULT_CONNECTIONS),
	 * NBDSRV_NO_LIMIT = none. */
	unsigned max_connections;
	/* Seconds a client gets to finish the whole handshake: 0 = default
	 * (NBDSRV_DEFAULT_HANDSHAKE_S), NBDSRV_NO_LIMIT = none. */
	unsigned handshake_timeout_s;
	/* Seconds a connection in transmission may stay idle (nothing in
	 * flight, nothing received) before it is closed: 0 = never. */
	unsigned idle_timeout_s;
};

#define NBDSRV_NO_LIMIT UINT_MAX
/* qemu's NBD server allows 100 since CVE-2024-7409; multi-conn clients
 * use 4 to 16 (docs/diskstack-serve.md). */
#define NBDSRV_DEFAULT_CONNECTIONS 100u
#define NBDSRV_DEFAULT_HANDSHAKE_S 30u

/* Creates a server (no threads yet). Returns 0 or -errno. On failure
 * o->tls still belongs to the caller. */
int nbdsrv_new(const struct nbdsrv_opts *o, struct nbdsrv **out);

/* Adds export @name (UTF-8, at most 4096 bytes; "" is the default export)
 * with an optional @description (NULL = none). The server takes over the
 * reference to @disk on success. @read_only refuses writes even if the
 * disk allows them. Returns 0, -EEXIST for a duplicate name, -EINVAL for a
 * bad name or -ENOMEM. Before nbdsrv_start only. */
int nbdsrv_add_export(struct nbdsrv *s, const char *name, const char *description,
		      struct disk *disk, bool read_only);

/* Listens on TCP @host (NULL = 127.0.0.1; "::" etc. allowed) port @port
 * (0 = any: the bound port is returned in *@bound). Every address the name
 * resolves to is bound. Returns 0 or -errno with a message in @err. */
int nbdsrv_listen_tcp(struct nbdsrv *s, const char *host, uint16_t port, uint16_t *bound,
		      char *err, size_t errlen);
/* Listens on Unix socket @path. A socket file nobody listens on (stale) is
 * replaced; -EADDRINUSE when a live server answers on it; anything else at
 * @path is an error. The file is removed by nbdsrv_free. */
int nbdsrv_listen_unix(struct nbdsrv *s, const char *path, char *err, size_t errlen);
/* Uses an already listening socket @fd (socket activation); owned on
 * success. */
int nbdsrv_listen_fd(struct nbdsrv *s, int fd, char *err, size_t errlen);
/* Serves exactly one connection on @rfd/@wfd (stdin/stdout mode); the
 * server stops when it ends. The fds are closed by the server. */
int nbdsrv_serve_fds(struct nbdsrv *s, int rfd, int wfd);

/* Starts the reactor threads. Returns 0 or -errno. */
int nbdsrv_start(struct nbdsrv *s);

/* Accepts and serves until nbdsrv_stop, then drains: in-flight requests
 * finish, new ones get ESHUTDOWN, handshakes get ERR_SHUTDOWN, connections
 * close, the threads end and every export is flushed. Must run on a thread
 * with a reactor (the one current when nbdsrv_start was called). Returns 0,
 * or 1 if a flush failed. */
int nbdsrv_run(struct nbdsrv *s);

/* Asks the server to stop (see nbdsrv_run). Thread-safe, idempotent; a
 * second call after a few seconds' drain closes the remaining connections
 * at once. */
void nbdsrv_stop(struct nbdsrv *s);

/* Frees everything (after nbdsrv_run returned, or if it never started).
 * NULL allowed. */
void nbdsrv_free(struct nbdsrv *s);

/* Number of exports and connections served so far (for logs/tests). */
uint64_t nbdsrv_connections_served(const struct nbdsrv *s);

#endif
