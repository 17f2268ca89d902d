/* SPDX-License-Identifier: MIT */
/*
 * workpool.h: a shared pool of threads for blocking calls (SQLite, libcurl,
 * BLKDISCARD, fsync on some filesystems). A work item's work() runs on a pool
 * thread; its done() then runs on the reactor that submitted it, through that
 * reactor's mailbox ("unblock", as OpenVMM's FileDisk does).
 */
#ifndef DISKSTACK_COMMON_WORKPOOL_H
#define DISKSTACK_COMMON_WORKPOOL_H

#include "reactor.h"

struct workpool;

/* A unit of blocking work. Embed it in the request it belongs to. */
struct work_item {
	void (*work)(struct work_item *w);   /* runs on a pool thread */
	void (*done)(struct work_item *w);   /* runs on @origin's thread */
	struct reactor *origin;              /* set by workpool_submit */
	struct reactor_task task;            /* private */
	struct work_item *next;              /* private */
};

/* Creates a pool of @threads threads (0 = max(4, 2 * online CPUs)).
 * Returns 0 or -errno. */
int workpool_new(struct workpool **out, unsigned threads);

/* Waits for queued work to finish, then joins the threads. NULL allowed.
 * done() callbacks already posted still run on their reactors. */
void workpool_free(struct workpool *p);

/* The process-wide pool, created on first use. NULL if creation failed. */
struct workpool *workpool_default(void);

/* Queues @w. Must be called on a reactor thread; done() runs there. */
void workpool_submit(struct workpool *p, struct work_item *w);

#endif
