/* SPDX-License-Identifier: MIT */
/*
 * server.h: the iSCSI target (diskstack serve --iscsi, docs/iscsi.md):
 * RFC 7143 on the socket engine (net/netsrv.h) in front of the SCSI core
 * (scsi/scsi.h). Targets are SCSI targets with their LUs; initiators log
 * in (CHAP optional), discover targets with SendTargets, and run SCSI
 * commands in the full-feature phase.
 *
 * Use: netsrv_new, iscsisrv_new, iscsisrv_add_target for each target,
 * iscsisrv_protocol, then the engine's listeners with that protocol,
 * netsrv_start and netsrv_run; after netsrv_free, iscsisrv_free.
 */
#ifndef DISKSTACK_ISCSI_SERVER_H
#define DISKSTACK_ISCSI_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct iscsisrv;
struct netsrv_proto;
struct scsi_target;

struct iscsisrv_opts {
	/* CHAP (RFC 7143 §12.1.3), copied: NULL user = no authentication.
	 * With target_user/target_secret the target also proves itself when
	 * the initiator asks (mutual CHAP). */
	const char *chap_user, *chap_secret;
	const char *chap_target_user, *chap_target_secret;
	/* "ADDR:PORT" advertised by SendTargets (copied); NULL = the address
	 * each initiator connected to (wrong behind NAT). */
	const char *portal;
	/* Seconds without a PDU from the initiator before the target pings
	 * it with a NOP-In, and again before it gives up: 0 = default (30),
	 * UINT32_MAX = never. */
	unsigned nop_interval_s;
	/* Commands each session may have outstanding (the CmdSN window):
	 * 0 = default (128), at most 1024. */
	unsigned window;
};

/* Creates a target server without targets. Returns 0, -EINVAL (bad
 * window, incomplete CHAP credentials) or -ENOMEM. Any thread. */
int iscsisrv_new(const struct iscsisrv_opts *o, struct iscsisrv **out);

/* Adds SCSI target @t (named by its iSCSI name, scsi_target_name). The
 * server owns it from then on, also on failure. Returns 0, -EEXIST (the
 * name is taken) or -ENOMEM. Any time, any thread: new logins find it as
 * soon as this returns. */
int iscsisrv_add_target(struct iscsisrv *s, struct scsi_target *t);

/* Removes target @name: new logins no longer find it (SendTargets leaves
 * it out, a login under way is refused with Target Removed) and each of
 * its sessions is asked, on its worker, to drain as at shutdown (commands
 * in flight finish, then an Async Message says the target drops the
 * connection, and it closes) or, with @force, is closed at once.
 * Asynchronous: iscsisrv_target_sessions tells when they are gone. The
 * target (its LUs untouched: the caller removes them) stays valid until
 * iscsisrv_free, in *@out; *@nsessions: the sessions asked. A target
 * removed before is found again and its sessions asked again. Returns 0,
 * -ENOENT, or -ENOMEM (*@out unset when nothing changed, else some
 * session was not asked). Any thread. */
int iscsisrv_remove_target(struct iscsisrv *s, const char *name, bool force,
			   struct scsi_target **out, unsigned *nsessions);

/* The number of sessions logged in to @t. Any thread. */
unsigned iscsisrv_target_sessions(struct iscsisrv *s, const struct scsi_target *t);

/* The protocol for the engine's listeners (borrowed from @s, valid until
 * iscsisrv_free). Returns 0, or -EINVAL when there is no target. */
int iscsisrv_protocol(struct iscsisrv *s, const struct netsrv_proto **out);

/* Frees the server and its targets (after netsrv_free, or if the engine
 * never ran). NULL allowed. */
void iscsisrv_free(struct iscsisrv *s);

#endif
