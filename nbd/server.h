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
 * -EINVAL for a bad name or -ENOMEM. Before nbdsrv_protocol only. */
int nbdsrv_add_export(struct nbdsrv *s, const char *name, const char *description,
		      struct disk *disk, bool read_only);

/* The protocol to hand to @net's listeners (borrowed from @s, valid until
 * nbdsrv_free). Returns 0, or -EINVAL when there is no export or the TLS
 * mode needs credentials @net lacks. */
int nbdsrv_protocol(struct nbdsrv *s, struct netsrv *net, const struct netsrv_proto **out);

/* Flushes every writable export (after netsrv_run returned: nothing
 * writes any more). Returns 0, or 1 if a flush failed (logged). On the
 * thread whose reactor the disks use. */
int nbdsrv_flush(struct nbdsrv *s);

/* Frees the exports (after netsrv_free, or if the engine never ran).
 * NULL allowed. */
void nbdsrv_free(struct nbdsrv *s);

#endif
