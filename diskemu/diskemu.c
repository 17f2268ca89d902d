/* SPDX-License-Identifier: MIT */
/*
 * diskemu.c: the embedding helpers of diskemu.h -- disks from specs and
 * reactor threads -- over diskstack's internal storage/ and common/.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#include "common/compiler.h"
#include "common/reactor.h"
#include "diskemu/diskemu.h"
#include "storage/disk.h"
#include "storage/spec.h"

struct diskemu_thread {
	pthread_t tid;
	struct reactor *r;              /* set by the thread before it signals */
	int start_err;                  /* the thread's reactor_new result */
	bool started;                   /* under lock */
	pthread_mutex_t lock;
	pthread_cond_t cond;
};

/* A diskemu_thread_call: freed by the task itself. */
struct diskemu_call {
	struct reactor_task task;
	void (*fn)(void *arg);
	void *arg;
};

const char *diskemu_version(void)
{
	return PACKAGE_VERSION;
}

int diskemu_disk_open(const char *spec, bool read_only, struct disk **out, char *err,
		      size_t errlen)
{
	return spec_open_str(spec, read_only, NULL, out, err, errlen);
}

void diskemu_disk_unref(struct disk *d)
{
	disk_unref(d);
}

uint64_t diskemu_disk_bytes(struct disk *d)
{
	return disk_sector_count(d) * disk_sector_size(d);
}

uint32_t diskemu_disk_sector_size(struct disk *d)
{
	return disk_sector_size(d);
}

static void *diskemu_thread_main(void *arg)
{
	struct diskemu_thread *t = arg;
	struct reactor *r = NULL;
	int ret = reactor_new(&r, 0);

	pthread_mutex_lock(&t->lock);
	t->r = r;
	t->start_err = ret;
	t->started = true;
	pthread_cond_signal(&t->cond);
	pthread_mutex_unlock(&t->lock);
	if (ret < 0)
		return NULL;
	reactor_run(r);
	/* Finish what was handed over before the stop: a freed PCI
	 * function's last task, disk requests still in flight. */
	for (;;) {
		int n = reactor_run_once(r, reactor_pending(r) > 0);

		if (n < 0 || (n == 0 && reactor_pending(r) == 0))
			break;
	}
	reactor_free(r);
	return NULL;
}

int diskemu_thread_start(struct diskemu_thread **out)
{
	struct diskemu_thread *t = calloc(1, sizeof(*t));
	int ret;

	if (!t)
		return -ENOMEM;
	pthread_mutex_init(&t->lock, NULL);
	pthread_cond_init(&t->cond, NULL);
	ret = -pthread_create(&t->tid, NULL, diskemu_thread_main, t);
	if (ret < 0)
		goto fail;
	pthread_mutex_lock(&t->lock);
	while (!t->started)
		pthread_cond_wait(&t->cond, &t->lock);
	pthread_mutex_unlock(&t->lock);
	ret = t->start_err;
	if (ret < 0) {
		pthread_join(t->tid, NULL);
		goto fail;
	}
	*out = t;
	return 0;
fail:
	pthread_cond_destroy(&t->cond);
	pthread_mutex_destroy(&t->lock);
	free(t);
	return ret;
}

struct reactor *diskemu_thread_reactor(struct diskemu_thread *t)
{
	return t->r;
}

static void diskemu_call_run(struct reactor_task *task)
{
	struct diskemu_call *c = container_of(task, struct diskemu_call, task);

	c->fn(c->arg);
	free(c);
}

int diskemu_thread_call(struct diskemu_thread *t, void (*fn)(void *arg), void *arg)
{
	struct diskemu_call *c = malloc(sizeof(*c));

	if (!c)
		return -ENOMEM;
	*c = (struct diskemu_call){ .task.fn = diskemu_call_run, .fn = fn, .arg = arg };
	reactor_post(t->r, &c->task);
	return 0;
}

void diskemu_thread_stop(struct diskemu_thread *t)
{
	if (!t)
		return;
	reactor_stop(t->r);
	pthread_join(t->tid, NULL);
	pthread_cond_destroy(&t->cond);
	pthread_mutex_destroy(&t->lock);
	free(t);
}
