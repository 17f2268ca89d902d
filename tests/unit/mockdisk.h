/* SPDX-License-Identifier: MIT */
/*
 * mockdisk.h: a flat in-memory disk backend for tests, with knobs and
 * counters of what reached it. It completes every op at once.
 */
#ifndef DISKSTACK_TESTS_MOCKDISK_H
#define DISKSTACK_TESTS_MOCKDISK_H

#include "storage/disk.h"

struct mockdisk {
	uint8_t *data;
	uint64_t sectors;
	uint32_t ss;
	unsigned reads, writes, fua_writes, flushes, unmaps, prs, closes;
	unsigned adopt_writes;       /* writes that arrived with DISK_IO_ADOPT (never should) */
	bool unmap_zeroes;           /* unmap zeroes the range */
	int pr_status;               /* returned by the pr op */
};

struct mockdisk_opts {
	uint64_t sectors;
	uint32_t sector_size;        /* 0 = 512 */
	enum disk_unmap_behavior unmap;
	bool fua;
	bool read_only;
	bool has_disk_id;
	uint8_t disk_id[16];
	uint32_t caps;
	const char *origin;          /* disk_info.origin; borrowed, must outlive the disk */
};

/* Creates a disk over @m (caller-owned, must outlive the disk; its data is
 * allocated zeroed here and freed by mockdisk_release). */
struct disk *mockdisk_new(struct mockdisk *m, const struct mockdisk_opts *o);
/* Frees @m's data (after the disk is gone). */
void mockdisk_release(struct mockdisk *m);

#endif
