/* SPDX-License-Identifier: MIT */
/*
 * filedisk.h: the file and block-device backend on io_uring
 * (docs/openvmm-compat.md §4.5; what OpenVMM uses on Linux for raw
 * files and block devices).
 */
#ifndef DISKSTACK_STORAGE_FILEDISK_H
#define DISKSTACK_STORAGE_FILEDISK_H

#include "storage/disk.h"

struct filedisk_opts {
	bool read_only;           /* open O_RDONLY; the disk reports read-only */
	bool direct;              /* O_DIRECT; unaligned buffers are bounced */
	bool create;              /* create/truncate to @create_size bytes first */
	uint64_t create_size;     /* with @create: a non-zero multiple of 512 */
	bool always_bounce;       /* tests: bounce every request */
	/* Appended: 0 = the disk is the whole file; else it covers only the
	 * first @limit_bytes bytes (a multiple of the sector size, at most the
	 * file size), e.g. the data region of a fixed VHD before its footer.
	 * Everything past it is out of range (ILLEGAL_BLOCK) and never touched. */
	uint64_t limit_bytes;
	/* Appended: how reads, writes and flushes are issued (the default,
	 * FILEDISK_RW_AUTO, is right outside tests and benchmarks). */
	enum filedisk_rw_mode {
		/* io_uring SQEs, except buffered files on tmpfs or ramfs,
		 * which use FILEDISK_RW_INLINE; the environment variable
		 * DISKSTACK_FILE_RW=uring|inline (benchmarks, diagnosis)
		 * replaces that choice */
		FILEDISK_RW_AUTO = 0,
		/* always io_uring SQEs */
		FILEDISK_RW_URING,
		/* preadv2/pwritev2/fsync on the submitting thread; the
		 * completion is still deferred to the reactor's next pass */
		FILEDISK_RW_INLINE,
	} rw_mode;
};

/*
 * Opens @path (a regular file or a block device) as a disk; @opts is
 * borrowed. On success *out is a new reference (the caller owns it).
 *
 * Regular files (type "file"): 512-byte sectors, physical = st_blksize,
 * size set at open and a multiple of 512, never extended by a write (only
 * by filedisk_grow).
 * Unmap by punching holes when the file is writable and a non-destructive
 * probe punch succeeds (behaviour ZEROES, else IGNORED); write-zeroes by
 * fallocate; block status from SEEK_DATA/SEEK_HOLE.
 * Block devices (type "block_device"): geometry from sysfs (the parent's
 * queue/ for a partition), FUA from queue/fua, unmap by BLKDISCARD on the
 * worker pool (UNSPECIFIED), write-zeroes by BLKZEROOUT. Their size follows
 * kernel resize uevents and wakes resize watchers (DISK_CAP_RESIZE);
 * reservations pass through where the device supports them (DISK_CAP_PR)
 * and removable/CD-ROM devices eject (DISK_CAP_EJECT): storage/blockdev.h.
 * @opts->create makes (or truncates) a regular file of create_size bytes
 * first; without it nothing is ever created or truncated. @opts->read_only
 * opens O_RDONLY and reports read-only (the disk refuses nothing itself).
 *
 * Buffered files on tmpfs or ramfs (fstatfs) move their data with
 * synchronous preadv2/pwritev2 on the submitting thread instead of io_uring
 * (@opts->rw_mode overrides that choice); describe() says which ("rw").
 *
 * Errors: -errno from open/fstat/ftruncate (e.g. -ENOENT); -EINVAL for a
 * path that is neither a regular file nor a block device, a file size that
 * is not a multiple of 512, bad device geometry, or bad options (create
 * with a size of 0 or not a multiple of 512, create with read_only, create
 * on a block device). A message goes to @err (@errlen bytes; NULL allowed).
 */
int filedisk_open(const char *path, const struct filedisk_opts *opts, struct disk **out,
		  char *err, size_t errlen);

/* True when @d (NULL allowed) is a regular-file disk from filedisk_open
 * (not one above or below it). Any thread. */
bool filedisk_is_file(const struct disk *d);

/*
 * Grows the regular file behind @d to @new_bytes (a multiple of the
 * sector size, at least the current size; equal is a no-op): the file is
 * extended (ftruncate), then requests submitted afterwards may use the new
 * sectors, which read as zeroes. Files have no resize watchers: frontends
 * see the size when they next ask (an NBD export's next client).
 * Shrinking is refused: a write still in flight past the new end would
 * extend the file again behind the disk's back. Returns 0, -ENOTTY (not a
 * file disk), -EROFS (opened read-only), -EINVAL (smaller, unaligned, or a
 * disk limited by opts.limit_bytes), or ftruncate's -errno (the size is
 * then unchanged). Any thread, while requests run.
 */
int filedisk_grow(struct disk *d, uint64_t new_bytes);

#endif
