/* SPDX-License-Identifier: MIT */
/*
 * server.h: the control socket (docs/ctl.md): a Unix stream socket served
 * by a thread of its own, speaking JSON-RPC 2.0 (ctl/rpc.h), for
 * `diskstack serve --control PATH`.
 *
 * Security: the socket file is made mode 0600 right after bind (until
 * then it has the umask's mode, which never grants others write access
 * with the usual 022), and every client's SO_PEERCRED uid must be the
 * server's effective uid or root; anyone else gets one -32006 error and
 * is disconnected. A live server on the path is never replaced
 * (netsrv_unix_listen_socket's rules). There is no TCP listener.
 *
 * Threading: ctl_server_start runs every method on the control thread,
 * which has a reactor of its own (methods may use the disk_sync_*
 * helpers); a slow method delays other control calls, never I/O.
 */
#ifndef DISKSTACK_CTL_SERVER_H
#define DISKSTACK_CTL_SERVER_H

#include <stddef.h>

#include "ctl/rpc.h"

struct ctl_server;

/* Clients at once; more are accepted and closed. */
#define CTL_MAX_CLIENTS 16u

/* Binds the socket at @path (borrowed; the file is removed by
 * ctl_server_free) for the methods of @rpc (borrowed until
 * ctl_server_free). Returns 0 or -errno with a message in @err
 * (-EADDRINUSE: a live server owns @path). */
int ctl_server_new(const char *path, const struct ctl_rpc *rpc, struct ctl_server **out,
		   char *err, size_t errlen);
/* Starts the control thread. Returns 0 or -errno. */
int ctl_server_start(struct ctl_server *s);
/* Stops the thread (a method in progress finishes first; clients are
 * disconnected) and waits for it. Any thread but the control thread;
 * idempotent. */
void ctl_server_stop(struct ctl_server *s);
/* Stops, closes the socket and removes its file. NULL allowed. */
void ctl_server_free(struct ctl_server *s);

#endif
