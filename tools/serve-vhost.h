/* SPDX-License-Identifier: MIT */
/*
 * serve-vhost.h: the vhost-user half of `diskstack serve` (docs/vhost.md):
 * --vhost-user-blk SOCKET serves the positional SPEC also as a virtio-blk
 * device to a vhost-user front-end, beside NBD, from the same disk handle;
 * --vhost-user-scsi SOCKET serves it as LUN 0 behind a virtio-scsi HBA.
 * cmd-serve.c calls these in the order they are declared.
 */
#ifndef DISKSTACK_TOOLS_SERVE_VHOST_H
#define DISKSTACK_TOOLS_SERVE_VHOST_H

#include <stdbool.h>
#include <stddef.h>

#include "tools/serve-net.h"

struct disk;

/* Option codes (getopt_long values above 600, beside cmd-serve's and
 * serve-iscsi's). */
enum {
	SERVE_VHOST_OPT_BLK = 600,
	SERVE_VHOST_OPT_QUEUES,
	SERVE_VHOST_OPT_SCSI,
	SERVE_VHOST_OPT_LAST,
};

#define SERVE_VHOST_LONGOPTS \
	{ "vhost-user-blk",    required_argument, NULL, SERVE_VHOST_OPT_BLK }, \
	{ "vhost-queues",      required_argument, NULL, SERVE_VHOST_OPT_QUEUES }, \
	{ "vhost-user-scsi",   required_argument, NULL, SERVE_VHOST_OPT_SCSI }

#define SERVE_VHOST_USAGE \
	"vhost-user (QEMU's vhost-user-blk-pci, vhost-user-scsi-pci; docs/vhost.md):\n" \
	"      --vhost-user-blk SOCKET  also serve SPEC as a virtio-blk device on the\n" \
	"                           Unix socket SOCKET (removed at exit)\n" \
	"      --vhost-user-scsi SOCKET  also serve SPEC as LUN 0 of a virtio-scsi HBA\n" \
	"                           (SPEC,dvd: a DVD drive; more LUNs: diskstack\n" \
	"                           vhost-user-scsi)\n" \
	"      --vhost-queues N     virtqueues (blk) or request queues (scsi), one\n" \
	"                           thread each (default 1)\n" \
	"\n"

/* One vhost-user-scsi device: a SCSI target of its own behind a
 * virtio-scsi HBA on its own socket and threads. serve's control socket
 * adds and removes its LUNs (and whole devices) on its thread. */
struct serve_vscsi {
	char *socket;
	char name[300];                 /* the target's name (scsi_target_new copies it) */
	struct scsi_target *target;
	struct vhostscsi *dev;
	struct vhostsrv *srv;
	struct serve_disks disks;       /* its LUNs' disks; owner: target, id: the LUN */
	struct serve_vscsi *next;       /* the control socket's list */
};

struct serve_vhost {
	const char *socket;             /* --vhost-user-blk, NULL = off */
	unsigned queues;
	struct vhostblk *blk;
	struct vhostsrv *srv;
	const char *scsi_socket;        /* --vhost-user-scsi, NULL = off */
	const char *spec_text;          /* the positional SPEC (",dvd"), set by cmd-serve */
	/* The --vhost-user-scsi device; NULL before start, or once the
	 * control socket removed it (vhost-scsi-del). */
	struct serve_vscsi *scsi;
};

static inline bool serve_vhost_is_opt(int opt)
{
	return opt >= SERVE_VHOST_OPT_BLK && opt < SERVE_VHOST_OPT_LAST;
}

/* Takes one option. Returns 0 or an exit code (usage error printed). */
int serve_vhost_opt(struct serve_vhost *sv, const char *cmd, int opt, const char *arg);
/* Checks the options; @have_default: a positional SPEC exists. Returns 0
 * or an exit code. */
int serve_vhost_check(struct serve_vhost *sv, const char *cmd, bool have_default);
/* Creates the devices on @disk (borrowed; a reference is taken), listens
 * and starts the server threads. Returns 0 or an exit code. */
int serve_vhost_start(struct serve_vhost *sv, const char *cmd, struct disk *disk, bool read_only);
/* Stops the server (requests in flight finish), removes the socket and
 * frees everything. Safe to call when nothing was started. */
void serve_vhost_free(struct serve_vhost *sv);

/* "iqn.2026-12.org.diskstack:vhost.<socket path>" with the path reduced
 * to the characters an iSCSI name may hold ('/' becomes '-'), into @out
 * (room @len): LUs without a disk id get their identity (WWN, serial)
 * from the target name, so each socket must get its own (the same with
 * `diskstack vhost-user-scsi`). A path the reduction could confuse with
 * another (upper case, '-', '_', ..., or too long for @len) gets
 * ".h<FNV-1a of the whole path, 8 hex digits>" appended; a path of only
 * [a-z0-9./] keeps the plain name it always had. */
void serve_vhost_scsi_target_name(const char *sock, char *out, size_t len);

/* A device for socket @sock with an empty target named @name (NULL: from
 * the socket), not yet serving: add its LUs (scsi_target_add_lu, and
 * their disks to ->disks), then serve_vscsi_start. 0 or -ENOMEM. */
int serve_vscsi_new(const char *sock, const char *name, struct serve_vscsi **out);
/* Makes the virtio-scsi device with @queues request queues, listens on
 * its socket and starts its threads. 0 or -errno with a message in @err
 * (-EADDRINUSE: a live server owns the socket). */
int serve_vscsi_start(struct serve_vscsi *v, unsigned queues, char *err, size_t errlen);
/* Stops @v's server (requests in flight complete, the front-end is
 * disconnected, the socket file goes), flushes its LUNs' writable disks
 * and frees it all. Returns 0, or -EIO when a flush failed (logged).
 * NULL allowed. On a thread with a reactor. */
int serve_vscsi_free(struct serve_vscsi *v);

#endif
