/* SPDX-License-Identifier: MIT */
/*
 * prwrap.h: the prwrap decorator (`prwrap:<spec>`) — in-memory persistent
 * reservations over any disk (docs/openvmm-compat.md §5.3, §5.4,
 * §1.6; SPC-4 / NVMe reservations for identified initiators).
 *
 * Requests without an initiator identity (io->initiator NULL or
 * host_id_len 0) see OpenVMM's DiskWithReservations exactly: one
 * registrant, §5.3's checks and generation counting, capabilities WE, EA,
 * WE-RO, EA-RO and PTPL, and I/O that is never refused because of that
 * single registrant's reservation. Requests that carry an identity share a
 * table of one registration per host id with SPC-4 semantics for all six
 * reservation types, and their I/O (and anonymous I/O, as a non-registrant)
 * is checked against it. docs/decorator-prwrap.md has the whole rule set.
 *
 * Data I/O, flush, unmap, write-zeroes, block status and metadata are
 * forwarded; eject and resize watching are not (§5.4).
 */
#ifndef DISKSTACK_STORAGE_PRWRAP_H
#define DISKSTACK_STORAGE_PRWRAP_H

#include <stddef.h>

#include "storage/disk.h"

/* Most identified initiators registered at once; a REGISTER beyond it
 * completes with DISK_IO_ERROR / ENOSPC (SCSI: INSUFFICIENT REGISTRATION
 * RESOURCES). */
#define PRWRAP_MAX_REGISTRANTS 64

/*
 * Wraps @lower (ownership passes to the new disk on success only). The
 * reservation state starts empty and lives as long as the disk. Returns 0
 * with the disk in *out, or -ENOMEM.
 */
int prwrap_new(struct disk *lower, struct disk **out);

#endif
