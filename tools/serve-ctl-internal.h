/* SPDX-License-Identifier: MIT */
/*
 * serve-ctl-internal.h: what serve-ctl.c (the NBD exports and the disks)
 * and serve-ctl-fe.c (the other frontends of serve: ublk devices, iSCSI
 * LUNs, NVMe/TCP namespaces, vhost-user devices) share. Everything here
 * runs on the control thread (docs/ctl.md).
 */
#ifndef DISKSTACK_TOOLS_SERVE_CTL_INTERNAL_H
#define DISKSTACK_TOOLS_SERVE_CTL_INTERNAL_H

#include <stdbool.h>

#include "ctl/rpc.h"

struct disk;
struct serve_ctl_fe;

/* export-remove's default timeout_ms. */
#define SERVE_CTL_REMOVE_TIMEOUT_MS 10000u
struct serve_ctl_opts;

/* ---- serve-ctl.c ------------------------------------------------------- */

/* What serve gave the control socket (borrowed). */
const struct serve_ctl_opts *serve_ctl_opts_of(struct ctl_call *c);
/* The frontends' state of the call's server. */
struct serve_ctl_fe *serve_ctl_fe_of(struct ctl_call *c);
/* -32001 with {target}. Returns NULL. */
json_t *serve_ctl_not_found(struct ctl_call *c, const char *target);
/* -32004 with {target, reason}. Returns NULL. */
json_t *serve_ctl_not_supported(struct ctl_call *c, const char *target, const char *reason);
/* The disk of NBD export @name (a new reference; *@read_only may be
 * NULL), or NULL after failing @c with -32001. */
struct disk *serve_ctl_export_disk(struct ctl_call *c, const char *name, bool *read_only);
/* True (after failing @c with -32007) once shutdown was asked for. */
bool serve_ctl_refuse_when_stopping(struct ctl_call *c);
/* True (after failing @c with -32602) when @read_only is false on a
 * server that runs read-only (serve -r). */
bool serve_ctl_refuse_writable(struct ctl_call *c, bool read_only);
/* Turns the dispatcher's statistics on for every disk of @top's stack. */
void serve_ctl_stats_enable(struct disk *top);
/* Parses and opens @text (a new disk, *@out), or fails @c (-32003 for a
 * bad spec, -32000 for an OS error) and returns a negative errno. */
int serve_ctl_open_spec(struct ctl_call *c, const char *text, bool read_only, struct disk **out);

/* A function run on a thread of its own (with a reactor, so it may flush
 * synchronously), for an operation that may outlive its call: a removal
 * waiting for the commands on a hung disk. */
struct serve_ctl_bg;
/* Starts @fn(@arg) on a new thread; @free_arg(@arg) runs when it is freed
 * (NULL: none). @type ("iscsi-lun-remove") and @target name it as a job.
 * NULL when out of memory or threads (nothing started). */
struct serve_ctl_bg *serve_ctl_bg_start(const char *type, const char *target,
					int (*fn)(void *arg), void *arg,
					void (*free_arg)(void *arg));
/* Waits up to @timeout_ms for @bg to end: true (fn's result in *@ret) if
 * it did. */
bool serve_ctl_bg_wait(struct serve_ctl_bg *bg, unsigned timeout_ms, int *ret);
/* Joins and frees @bg (blocks until fn returned). NULL allowed. */
void serve_ctl_bg_free(struct serve_ctl_bg *bg);
/* Lists @bg (taken over) as a job for job-list/job-get; returns its
 * job-get object (NULL after waiting for it when out of memory). */
json_t *serve_ctl_bg_to_job(struct ctl_call *c, struct serve_ctl_bg *bg);

/* ---- serve-ctl-fe.c ---------------------------------------------------- */

int serve_ctl_fe_new(struct serve_ctl_fe **out);
/* Stops the ublk and vhost-user devices (after the control thread
 * stopped, before the exports' final flush; the main thread). */
void serve_ctl_fe_stop(struct serve_ctl_fe *fe);
void serve_ctl_fe_free(struct serve_ctl_fe *fe);
/* Appends the non-NBD exports (matching @only when not NULL) to @out. */
void serve_ctl_fe_list(struct ctl_call *c, const char *only, json_t *out);
/* The frontends serve runs ("nbd", "iscsi", ...): a new array. */
json_t *serve_ctl_fe_frontends(const struct serve_ctl_opts *o, struct serve_ctl_fe *fe);
/* After @d was resized: tells the ublk devices serving it (UPDATE_SIZE)
 * and adds {"ublk": [{id, updated, reason?}]} to @res when there are any. */
void serve_ctl_fe_resized(struct ctl_call *c, struct disk *d, json_t *res);

/* A disk another frontend serves, as stats and targets name it
 * (docs/ctl.md, "Methods"). Everything borrowed for the callback. */
struct serve_ctl_fe_unit {
	const char *frontend;           /* "iscsi", "nvme-tcp", "ublk", "vhost-user-blk", ... */
	const char *name;               /* the target: "IQN/LUN", "NQN/NSID", "/dev/ublkbN", socket */
	const char *spec;               /* NULL: none (served from an NBD export's disk) */
	const char *export;             /* the NBD export it serves, or NULL */
	struct disk *disk;
};
/* Calls @fn for every disk the other frontends serve (control thread, or
 * the main thread before it starts). */
void serve_ctl_fe_foreach(const struct serve_ctl_opts *o, struct serve_ctl_fe *fe,
			  void (*fn)(const struct serve_ctl_fe_unit *u, void *opaque),
			  void *opaque);
/* The disk of the unit named @name (a new reference; *@spec may be NULL),
 * or NULL. */
struct disk *serve_ctl_fe_find(struct ctl_call *c, const char *name, const char **spec);

/* export-add and export-remove with a frontend other than "nbd" (an
 * iSCSI target, an NVMe/TCP subsystem). */
json_t *serve_ctl_fe_export_add(struct ctl_call *c, json_t *params, const char *frontend);
json_t *serve_ctl_fe_export_remove(struct ctl_call *c, json_t *params, const char *frontend);

json_t *serve_ctl_ublk_add(struct ctl_call *c, json_t *params);
json_t *serve_ctl_ublk_del(struct ctl_call *c, json_t *params);
json_t *serve_ctl_ublk_list(struct ctl_call *c, json_t *params);
json_t *serve_ctl_iscsi_lun_add(struct ctl_call *c, json_t *params);
json_t *serve_ctl_iscsi_lun_remove(struct ctl_call *c, json_t *params);
json_t *serve_ctl_nvme_ns_add(struct ctl_call *c, json_t *params);
json_t *serve_ctl_nvme_ns_remove(struct ctl_call *c, json_t *params);
json_t *serve_ctl_vhost_blk_add(struct ctl_call *c, json_t *params);
json_t *serve_ctl_vhost_blk_del(struct ctl_call *c, json_t *params);
json_t *serve_ctl_vhost_scsi_add(struct ctl_call *c, json_t *params);
json_t *serve_ctl_vhost_scsi_del(struct ctl_call *c, json_t *params);
json_t *serve_ctl_vhost_scsi_lun_add(struct ctl_call *c, json_t *params);
json_t *serve_ctl_vhost_scsi_lun_remove(struct ctl_call *c, json_t *params);

#endif
