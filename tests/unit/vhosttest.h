/* SPDX-License-Identifier: MIT */
/*
 * vhosttest.h: the fixture of the vhost unit tests: a RAM disk, the
 * virtio-blk device on it (or a device the test brings), a vhost-user
 * server on its threads and the test front-end (vhostfront.h) connected
 * to it, realized and started.
 */
#ifndef DISKSTACK_TESTS_VHOSTTEST_H
#define DISKSTACK_TESTS_VHOSTTEST_H

#include <stdbool.h>
#include <stdint.h>

#include "tests/unit/vhostfront.h"

struct disk;
struct vhostblk;
struct vhostsrv;

struct vt_opts {
	uint64_t size;                  /* disk bytes, default 16 MiB */
	uint32_t sector_size;           /* default 512 */
	unsigned queues;                /* default 1 (the front-end uses as many) */
	bool read_only;
	struct disk *disk;              /* borrowed instead of a RAM disk */
	const char *path;               /* listen here instead of a socketpair */
	bool no_start;                  /* realize only */
	struct vfront_opts fo;
	/* Another device instead of virtio-blk on a disk (then @queues is
	 * the server's virtqueue count and no disk is made). Borrowed. */
	const struct vhost_dev_ops *ops;
	void *dev;
};

struct vt {
	struct disk *disk;
	struct vhostblk *blk;
	struct vhostsrv *srv;
	struct vfront *f;
	const char *path;
};

/* Builds everything (the test fails on an error). */
void vt_setup(struct vt *t, const struct vt_opts *o);
/* Stops and frees everything. */
void vt_teardown(struct vt *t);

#endif
