/* SPDX-License-Identifier: MIT */
/*
 * blk.h: the virtio-blk device (virtio 1.2 §5.2) on the vhost-user library:
 * a disk (storage/disk.h) behind a struct vhost_dev_ops. Requests go from
 * guest-memory iovecs straight into the disk stack; the config space is
 * the disk's geometry; a resize of the disk becomes a config-change
 * notification to the front-end (docs/vhost.md).
 */
#ifndef DISKSTACK_VHOST_BLK_H
#define DISKSTACK_VHOST_BLK_H

#include <stdbool.h>
#include <stdint.h>

#include "vhost/vhost.h"

struct disk;
struct vhostblk;

struct vhostblk_opts {
	unsigned queues;                /* num_queues in the config space, >= 1 */
	bool read_only;                 /* VIRTIO_BLK_F_RO (also when the disk is) */
	uint32_t seg_max;               /* 0 = 126 (fits a 128-entry ring without
	                                 * indirect descriptors) */
};

/* The device's ops: give them with the device to vhostsrv_new. */
extern const struct vhost_dev_ops vhostblk_ops;

/* Creates a device over @d (a reference is taken; the caller keeps its
 * own). Returns 0, -EINVAL (bad options) or -ENOMEM. */
int vhostblk_new(struct disk *d, const struct vhostblk_opts *o, struct vhostblk **out);

/* Frees the device (after the server that used it). NULL allowed. */
void vhostblk_free(struct vhostblk *b);

/* The virtio-blk status byte for a disk_status (virtio 1.2 §5.2.6). */
uint8_t vhostblk_status(int disk_status);

#endif
