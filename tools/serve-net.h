/* SPDX-License-Identifier: MIT */
/*
 * serve-net.h: what the network targets of `diskstack serve` beyond NBD
 * (serve-iscsi.h, serve-nvmf.h) share: the [ADDR]:PORT grammar of their
 * listener and portal options, the default name built from the host
 * name, the TCP listener, and the disks they keep to flush at the end.
 * Defined in serve-net.c; every int function returns 0 or an exit code
 * (tool.h) with the message printed.
 */
#ifndef DISKSTACK_TOOLS_SERVE_NET_H
#define DISKSTACK_TOOLS_SERVE_NET_H

#include <stddef.h>
#include <stdint.h>

struct disk;
struct netsrv;
struct netsrv_proto;

/* One disk a LUN or namespace sits on. */
struct serve_unit {
	struct disk *disk;              /* a reference */
	const void *owner;              /* the LUN's SCSI target; NULL for a namespace */
	unsigned id;                    /* the LUN or the NSID */
	char *spec;                     /* its spec, URL credentials redacted (owned); NULL: unknown */
};

/* The disks a target's LUNs or namespaces sit on: own references,
 * flushed at shutdown (serve_disks_flush), dropped by serve_disks_free;
 * the control socket lists them (serve-ctl-fe.c) and adds and drops
 * some while serve runs, on its thread. */
struct serve_disks {
	struct serve_unit *v;
	unsigned n;
};

/* Splits @a, PORT, ADDR, ADDR:PORT, [V6] or [V6]:PORT, given to option
 * @opt, into @host (room @hlen; empty: the default address) and *@port
 * (left alone when @a names none). */
int serve_split_addr(const char *cmd, const char *opt, const char *a, char *host, size_t hlen,
		     uint64_t *port);

/* Writes @prefix followed by the host name reduced to lower-case letters,
 * digits, '.' and '-' (anything else becomes '-') into @out (room @len):
 * "iqn.2026-12.org.diskstack:" or "nqn.2026-12.org.diskstack:" names. */
void serve_default_name(const char *prefix, char *out, size_t len);

/* Listens for @proto (borrowed) on the [ADDR]:PORT @listen of option
 * @opt, @default_port when it names no port; @what ("iSCSI") prefixes
 * the messages. The bound port goes to *@bound (logged when PORT is 0). */
int serve_listen_tcp(const char *cmd, struct netsrv *net, const struct netsrv_proto *proto,
		     const char *what, const char *opt, const char *listen, uint16_t default_port,
		     uint16_t *bound);

/* Keeps a reference to @d (borrowed) in @sd as unit @id of @owner, opened
 * from @spec_text (NULL: unknown). Returns 0 or -ENOMEM. */
int serve_disks_add(struct serve_disks *sd, struct disk *d, const void *owner, unsigned id,
		    const char *spec_text);
/* serve_disks_add with an exit code and a message for serve's start. */
int serve_disks_keep(struct serve_disks *sd, const char *cmd, struct disk *d, const void *owner,
		     unsigned id, const char *spec_text);
/* Flushes (unless read-only) and drops unit @id of @owner. Returns 0,
 * -EIO when the flush failed (it is dropped anyway) or -ENOENT. */
int serve_disks_drop(struct serve_disks *sd, const void *owner, unsigned id, const char *proto);

/* Takes unit @id of @owner out of @sd without flushing it: its disk
 * reference and spec move to *@out. Returns 0 or -ENOENT. */
int serve_disks_take(struct serve_disks *sd, const void *owner, unsigned id,
		     struct serve_unit *out);
/* Flushes @u's disk unless it is read-only, logging a failure with the
 * prefix @proto. Returns 0 or -EIO. Any thread with a reactor. */
int serve_unit_flush(const struct serve_unit *u, const char *proto);

/* Flushes the writable disks of @sd, logging a failure with the prefix
 * @proto ("iscsi"). Returns 0, or 1 if a flush failed. */
int serve_disks_flush(const struct serve_disks *sd, const char *proto);

/* Drops the references of @sd and empties it. */
void serve_disks_free(struct serve_disks *sd);

#endif
