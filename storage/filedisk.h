/* SPDX-License-Identifier: MIT */
/*
 * filedisk.h: the file and block-device backend on io_uring
 * (reference/openvmm-disk-stack.md §4.5; what OpenVMM uses on Linux for raw
 * files and block devices).
 */
#ifndef DISKSTACK_STORAGE_FILEDISK_H
#define DISKSTACK_STORAGE_FILEDISK_H

#include "disk.h"

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
};

/*
 * Opens @path (a regular file or a block device) as a disk. Regular files:
 * 512-byte sectors, physical = st_blksize, size fixed at open and a multiple
 * of 512, unmap by punch hole when the non-destructive probe succeeds
 * (behaviour ZEROES, else IGNORED). Block devices: geometry from sysfs,
 * FUA from queue/fua, unmap by BLKDISCARD on the worker pool (UNSPECIFIED).
 * Errors: -errno from open/stat, -EINVAL for a bad type or size (a message
 * in @err of @errlen bytes).
 */
int filedisk_open(const char *path, const struct filedisk_opts *opts, struct disk **out,
		  char *err, size_t errlen);

#endif
