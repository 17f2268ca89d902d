/* SPDX-License-Identifier: MIT */
/*
 * blockdev.h: what the file backend (storage/filedisk.c) adds for block
 * devices beyond reading and writing them (docs/openvmm-compat.md
 * §4.5): a live sector count that follows kernel uevents and wakes resize
 * watchers, persistent-reservation passthrough (NVMe, SCSI) through the
 * Linux PR ioctls, and CD-ROM eject.
 *
 * The file backend is the only user; the test hooks at the end let unit
 * tests replace the system calls (ioctl, sysfs) to emulate devices this
 * machine does not have.
 */
#ifndef DISKSTACK_STORAGE_BLOCKDEV_H
#define DISKSTACK_STORAGE_BLOCKDEV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "storage/disk.h"

struct blockdev;

/*
 * Creates the block-device state for a device already open as @fd
 * (borrowed: it must stay open until blockdev_close), with device number
 * @rdev, logical sector size 1 << @shift and @sector_count sectors (read by
 * the caller at open). @path is copied, for logs. Probes sysfs and the
 * device for what it supports (never fails because a probe fails: the
 * capability is then simply absent) and registers the device with the
 * process-wide uevent listener. On success *out is owned by the caller.
 * Returns 0 or -ENOMEM.
 */
int blockdev_open(int fd, dev_t rdev, const char *path, uint32_t shift, uint64_t sector_count,
		  struct blockdev **out);

/* Unregisters from the uevent listener (after it returns, no watcher
 * callback runs for @bd) and frees @bd. No request may be in flight. NULL
 * allowed. */
void blockdev_close(struct blockdev *bd);

/* The DISK_CAP_* bits @bd supports: RESIZE (the uevent listener runs), PR
 * (the device answers reservations and its capabilities are known), EJECT
 * (removable or CD-ROM). Fixed at open. */
uint32_t blockdev_caps(const struct blockdev *bd);

/* The current size in logical sectors; re-read with BLKGETSIZE64 when a
 * uevent said it may have changed (and then watchers are told). Any
 * thread. */
uint64_t blockdev_sector_count(struct blockdev *bd);

/* The watch_resize/unwatch_resize ops (storage/disk.h). watch returns 0,
 * or -EOPNOTSUPP when the device has no DISK_CAP_RESIZE. Any thread. */
int blockdev_watch_resize(struct blockdev *bd, struct disk_resize_watch *w);
void blockdev_unwatch_resize(struct blockdev *bd, struct disk_resize_watch *w);

/* The pr op: every DISK_OP_PR_* request. UNSUPPORTED when the device has no
 * DISK_CAP_PR; PR_CAPS completes at once; the others run on the worker
 * pool. Reactor thread; returns a status or DISK_PENDING. */
int blockdev_pr(struct blockdev *bd, struct disk_io *io);

/* The eject op: CDROM_LOCKDOOR 0 then CDROMEJECT on the worker pool.
 * UNSUPPORTED without DISK_CAP_EJECT. Reactor thread. */
int blockdev_eject(struct blockdev *bd, struct disk_io *io);

/* Adds "resize", "reservations" and "eject" parameters to @dd. */
void blockdev_describe(struct blockdev *bd, struct disk_describer *dd);

/* Maps an errno from a device syscall to a disk_status (§4.5, devices
 * only): EBADE → RESERVATION_CONFLICT, ENOSPC → ILLEGAL_BLOCK, anything
 * else → IO_ERROR. */
int blockdev_errno_status(int err);

/* How a device answers reservations. */
enum blockdev_pr_kind {
	BLOCKDEV_PR_NONE = 0,
	BLOCKDEV_PR_NVME,
	BLOCKDEV_PR_SCSI,
};

/*
 * Maps the return value @ret of a Linux PR ioctl (IOC_PR_*) on a device of
 * @kind to a disk_status. 0 is OK; a negative value is -errno (-EBADE is a
 * reservation conflict, anything else an I/O error with *os_errno set); a
 * positive value is a device status: PR_STS_RESERVATION_CONFLICT (0x18,
 * kernels >= 6.5 for both kinds), a raw NVMe status whose code is
 * RESERVATION CONFLICT (0x83, older kernels) or a raw SCSI result whose
 * status byte is RESERVATION CONFLICT (0x18) is a conflict; any other is an
 * I/O error (*os_errno = EIO).
 */
int blockdev_pr_ioctl_status(enum blockdev_pr_kind kind, int ret, int *os_errno);

/* ---- test hooks -------------------------------------------------------- */

/* The system calls blockdev.c makes, replaceable by tests ("thin wrappers
 * where tests inject faults"). */
struct blockdev_sys {
	/* ioctl(2): returns the ioctl's result (>= 0) or -errno. */
	int (*ioctl)(int fd, unsigned long request, void *arg);
	/* Reads up to @len - 1 bytes of file @path into @buf, NUL-terminated.
	 * Returns the length or -errno. */
	int (*read_file)(const char *path, char *buf, size_t len);
	/* True when @path exists. */
	bool (*exists)(const char *path);
};

/* Replaces the system calls for devices opened afterwards, and for the
 * requests and uevents of every device (NULL restores the real ones).
 * @sys is borrowed until it is replaced. Tests only; not thread-safe
 * against open devices' requests in flight. */
void blockdev_set_sys(const struct blockdev_sys *sys);

/* The real system calls (static; never NULL), for hooks that pass most
 * calls through. */
const struct blockdev_sys *blockdev_sys_real(void);

/* What a uevent message asks for. */
enum blockdev_uevent {
	BLOCKDEV_UEVENT_NONE = 0,  /* nothing for us */
	BLOCKDEV_UEVENT_RESCAN,    /* RESCAN=true: every device re-reads its size */
	BLOCKDEV_UEVENT_DEVICE,    /* a change of the size of block device *dev */
};

/*
 * Parses one kernel uevent message (the "ACTION@DEVPATH" header then
 * NUL-separated KEY=VALUE strings; @len bytes, need not end in NUL).
 * RESCAN=true → RESCAN. ACTION=change, SUBSYSTEM=block, MAJOR and MINOR,
 * and RESIZE=1 (upstream) or DISK_MEDIA_CHANGE=1 (diskstack: a new medium
 * or a detached loop device has a new size too) → DEVICE with *dev set.
 * Anything else, or a malformed message → NONE.
 */
enum blockdev_uevent blockdev_uevent_parse(const char *msg, size_t len, dev_t *dev);

/* Handles @msg as if the listener had received it from the kernel (tests:
 * drives the resize path without root or a resizable device). */
void blockdev_uevent_inject(const char *msg, size_t len);

#endif
