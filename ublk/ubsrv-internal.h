/* SPDX-License-Identifier: MIT */
/*
 * ubsrv-internal.h: declarations shared by the files of ublk/ (never
 * included from outside the folder).
 */
#ifndef DISKSTACK_UBLK_UBSRV_INTERNAL_H
#define DISKSTACK_UBLK_UBSRV_INTERNAL_H

#include <assert.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "common/reactor.h"
#include "storage/disk.h"
#include "ublk/ubsrv.h"

/* A uring_cmd's command area starts at byte 48 of the SQE (sqe->cmd). */
#define UBSRV_SQE_CMD_OFFSET 48
static_assert(offsetof(struct io_uring_sqe, cmd) == UBSRV_SQE_CMD_OFFSET, "sqe->cmd offset");

/* ---- control commands (ubsrv-ctrl.c) ------------------------------------- */

int ubsrv_ctrl_add_dev(struct ubsrv_ctrl *c, struct ubsrv_ctrl_dev_info *info);
int ubsrv_ctrl_set_params(struct ubsrv_ctrl *c, uint32_t id, const struct ubsrv_params *p);
int ubsrv_ctrl_start_dev(struct ubsrv_ctrl *c, uint32_t id, int pid);
int ubsrv_ctrl_stop_dev(struct ubsrv_ctrl *c, uint32_t id);
int ubsrv_ctrl_del_dev(struct ubsrv_ctrl *c, uint32_t id);
/* UPDATE_SIZE (UBSRV_F_UPDATE_SIZE): the live device's capacity becomes
 * @sectors 512-byte sectors. */
int ubsrv_ctrl_update_size(struct ubsrv_ctrl *c, uint32_t id, uint64_t sectors);
int ubsrv_ctrl_start_recovery(struct ubsrv_ctrl *c, uint32_t id);
int ubsrv_ctrl_end_recovery(struct ubsrv_ctrl *c, uint32_t id, int pid);
/* The CPUs blk-mq maps to queue @q. */
int ubsrv_ctrl_queue_affinity(struct ubsrv_ctrl *c, uint32_t id, unsigned q, cpu_set_t *set);

/* ---- queues (ubsrv-queue.c) ---------------------------------------------- */

struct ubsrv_queue;

/* One tag: the uring_cmd that waits for (or commits) its request, and the
 * disk request serving it. Preallocated; nothing is allocated per request. */
struct ubsrv_tag {
	struct reactor_op op;         /* completion of the tag's FETCH / COMMIT_AND_FETCH */
	struct disk_io io;            /* the request on the disk */
	struct iovec iov;
	struct ubsrv_queue *q;
	uint8_t *buf;                 /* max_io_bytes of data */
	uint32_t bytes;               /* READ/WRITE length of the request being served */
	uint16_t tag;
	bool armed;                   /* a command of this tag is in the kernel */
	bool busy;                    /* a disk request is in flight */
};

/*
 * One hardware queue: a thread running its own reactor, whose ring carries
 * the tags' uring_cmds and the disk's I/O. Everything below @thread is
 * touched only by that thread once it runs, except the atomics.
 */
struct ubsrv_queue {
	struct ubsrv_dev *dev;
	unsigned q_id;
	int cpu;                      /* pinned CPU, or -1 */
	pthread_t thread;
	bool thread_ok;

	const struct ubsrv_io_desc *descs;   /* read-only mmap of the descriptors */
	size_t descs_len;
	uint8_t *bufs;                /* one anonymous mapping: depth * max_io_bytes */
	size_t bufs_len;
	struct ubsrv_tag *tags;

	struct reactor *r;
	unsigned armed;               /* tags with a command in the kernel */
	unsigned busy;                /* tags with a disk request in flight */

	atomic_bool exited;
	atomic_uint_fast64_t nr_ios, nr_errors;
};

/* Sets up @q's buffers and descriptor mapping (on the calling thread). */
int ubsrv_queue_init(struct ubsrv_queue *q, struct ubsrv_dev *dev, unsigned q_id, char *err,
		     size_t errlen);
/* Starts @q's thread; it reports through ubsrv_dev_queue_started(). */
int ubsrv_queue_start(struct ubsrv_queue *q);
/* Joins the thread (after the kernel aborted its commands) and frees the
 * buffers and the mapping. */
void ubsrv_queue_fini(struct ubsrv_queue *q);

/* ---- the device (ubsrv-dev.c) --------------------------------------------- */

struct ubsrv_dev {
	struct ubsrv_ctrl *ctrl;      /* borrowed */
	struct disk *disk;            /* a reference */
	struct ubsrv_ctrl_dev_info info;   /* as negotiated with the kernel */
	uint32_t id;
	uint32_t sector_shift;
	bool read_only;
	bool user_copy;
	bool io_encoded;              /* I/O commands ioctl-encoded */
	int cdev_fd;
	bool added;                   /* ADD_DEV succeeded: DEL_DEV on teardown */
	bool started;                 /* START_DEV or END_USER_RECOVERY succeeded */
	unsigned nr_queues;
	struct ubsrv_queue *queues;

	/* Queue start-up: the threads report here; the control thread waits. */
	pthread_mutex_t lock;         /* protects nr_ready, nr_failed */
	pthread_cond_t cond;
	unsigned nr_ready, nr_failed;

	int exit_efd;                 /* written by a queue thread when it exits */
};

/* Called by a queue thread once its FETCHes are in (@status 0) or it failed. */
void ubsrv_dev_queue_started(struct ubsrv_dev *dev, int status);
/* Called by a queue thread just before it returns. */
void ubsrv_dev_queue_exited(struct ubsrv_dev *dev);

#endif
