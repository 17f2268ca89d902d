/* SPDX-License-Identifier: MIT */
/*
 * scsi.h: the virtio-scsi device (virtio 1.2 §5.6) on the vhost-user
 * library: one SCSI target of the core (scsi/scsi.h) behind a struct
 * vhost_dev_ops, for QEMU's vhost-user-scsi-pci (docs/vhost.md). CDBs from
 * the request queues run in the core with the guest's buffers as data-in
 * and data-out; the control queue answers task management and
 * asynchronous-notification requests; the event queue tells the guest of
 * LUNs added, media changed and capacities changed.
 */
#ifndef DISKSTACK_VHOST_SCSI_H
#define DISKSTACK_VHOST_SCSI_H

#include <stdint.h>

#include "vhost/vhost.h"

struct scsi_target;
struct vhostscsi;

struct vhostscsi_opts {
	unsigned request_queues;        /* >= 1; the server needs 2 + this virtqueues */
	/* The initiator name of the device's I_T nexus (logs, persistent
	 * reservations; its SAS address is a hash of it). NULL:
	 * "vhost-user-scsi". Borrowed during vhostscsi_new only. */
	const char *initiator;
};

/* The device's ops: give them with the device to vhostsrv_new. */
extern const struct vhost_dev_ops vhostscsi_ops;

/*
 * Creates a device over target @t (borrowed: it must outlive the device,
 * and no other device may listen to its events) with one I_T nexus, the
 * guest's. LUs added to @t later (scsi_target_add_lu) and media changed
 * with scsi_lu_change_media reach the guest as events. Returns 0, -EINVAL
 * (bad options) or -ENOMEM.
 */
int vhostscsi_new(struct scsi_target *t, const struct vhostscsi_opts *o, struct vhostscsi **out);

/* Virtqueues the device has: control, event, and the request queues
 * (vhostsrv_opts.queues). */
unsigned vhostscsi_queues(const struct vhostscsi *s);

/* Frees the device (after the server that used it). NULL allowed. */
void vhostscsi_free(struct vhostscsi *s);

#endif
