/* SPDX-License-Identifier: MIT */
/*
 * diskemu.h: the embedding API of libdiskemu, as installed (docs/nvme.md,
 * "Embedding"). A VMM includes this one header and links with
 * `pkg-config --cflags --libs diskemu`; it gets
 *
 *   - the NVMe controller as a PCI function (nvme_emul/nvme_pci.h) and
 *     the NVMe command core it drives (nvme_emul/nvme.h),
 *   - the SCSI target core (scsi/scsi.h),
 *   - and the few pieces of diskstack they need, which are otherwise
 *     internal: opening a disk from a spec (docs/specs.md) and threads that
 *     run reactors, the event loops the devices' queues and the disks' I/O
 *     run on.
 *
 * Notes on the design
 * -------------------
 * - Only what the installed headers declare is exported from the shared
 *   library (a version script made from these headers); struct disk and
 *   struct reactor stay opaque to the embedder.
 * - A diskemu thread owns one reactor, made on that thread and run there
 *   until diskemu_thread_stop. The PCI function's queues take the
 *   reactors of such threads (struct nvmeemu_pci_opts.reactors); the
 *   VMM's vCPU threads call the config and MMIO handlers directly.
 * - Errors: functions that can fail return 0 or -errno, with a message
 *   for humans in @err where they take one.
 */
#ifndef DISKSTACK_DISKEMU_DISKEMU_H
#define DISKSTACK_DISKEMU_DISKEMU_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nvme_emul/nvme.h"
#include "nvme_emul/nvme_pci.h"
#include "scsi/scsi.h"

/* The version of this API. The major number is the shared library's
 * (libdiskemu.so.N) and changes when a declaration of the installed
 * headers changes incompatibly; the minor one when declarations are
 * added. */
#define DISKEMU_API_MAJOR 0
#define DISKEMU_API_MINOR 1

struct disk;
struct reactor;
struct diskemu_thread;

/* The package version of the library the program runs with ("0.1.0"). */
const char *diskemu_version(void);

/*
 * Opens the disk that @spec describes (docs/specs.md: "mem:64M",
 * "file:/path", "memdiff:file:base.img", ...), read-only when @read_only.
 * Any thread. On success *@out holds a reference (owned by the caller,
 * dropped with diskemu_disk_unref); nvmeemu_subsys_add_ns and the SCSI
 * logical units take references of their own. Returns 0 or -errno with a
 * message in @err (@errlen bytes).
 */
int diskemu_disk_open(const char *spec, bool read_only, struct disk **out, char *err,
		      size_t errlen);
/* Drops the reference @d. NULL allowed. Any thread. */
void diskemu_disk_unref(struct disk *d);
/* The disk's size in bytes and its logical sector size. Any thread. */
uint64_t diskemu_disk_bytes(struct disk *d);
uint32_t diskemu_disk_sector_size(struct disk *d);

/*
 * Starts a thread that makes a reactor and runs it until
 * diskemu_thread_stop. Returns 0 or -errno (-ENOSYS: no io_uring in this
 * kernel, or it is disabled).
 */
int diskemu_thread_start(struct diskemu_thread **out);
/* The thread's reactor (borrowed: valid until diskemu_thread_stop), for
 * struct nvmeemu_pci_opts.reactors. */
struct reactor *diskemu_thread_reactor(struct diskemu_thread *t);
/*
 * Runs @fn(@arg) on @t's thread, later; for what must run on a reactor
 * thread (scsi_cmd_submit, nvmeemu_cmd_submit). Allocates a small task
 * per call: fine for control paths, not meant for every I/O. Any thread.
 * Returns 0 or -ENOMEM.
 */
int diskemu_thread_call(struct diskemu_thread *t, void (*fn)(void *arg), void *arg);
/*
 * Stops @t: its reactor finishes the tasks and I/O already given to it
 * (a freed PCI function's last task, nvme_pci.h), then the thread frees
 * the reactor and ends. Call it after freeing what runs on the reactor
 * (nvmeemu_pci_free, scsi targets). Not on @t's own thread. NULL allowed.
 */
void diskemu_thread_stop(struct diskemu_thread *t);

#endif
