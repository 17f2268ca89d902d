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

struct serve_vhost {
	const char *socket;             /* --vhost-user-blk, NULL = off */
	unsigned queues;
	struct vhostblk *blk;
	struct vhostsrv *srv;
	const char *scsi_socket;        /* --vhost-user-scsi, NULL = off */
	const char *spec_text;          /* the positional SPEC (",dvd"), set by cmd-serve */
	struct scsi_target *target;
	struct vhostscsi *scsi;
	struct vhostsrv *scsi_srv;
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

#endif
