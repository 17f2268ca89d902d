/* SPDX-License-Identifier: MIT */
/*
 * workpool.c: a shared pool of threads for blocking calls (see workpool.h).
 *
 * Notes on the design
 * -------------------
 * - One FIFO queue of work items (intrusive through work_item.next) under
 *   one mutex; idle threads sleep on a condition variable. Blocking work is
 *   slow by nature (SQLite, HTTP, fsync), so one lock is not the bottleneck.
 * - A pool thread runs w->work(w), then posts w->task to w->origin; the
 *   origin reactor runs w->done(w). After the post the pool thread no longer
 *   touches @w, which may be freed by done().
 * - workpool_free() lets the threads finish every queued item, then joins
 *   them. The default pool is created once (pthread_once) and freed at exit
 *   by an atexit handler, so valgrind sees no leak.
 */
#include "config.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "compiler.h"
#include "log.h"
#include "workpool.h"

struct workpool {
	/* lock protects head, tail and shutdown. */
	pthread_mutex_t lock;
	pthread_cond_t cond;           /* signalled when work is queued or on shutdown */
	struct work_item *head;
	struct work_item **tail;
	bool shutdown;
	unsigned nthreads;             /* threads started */
	pthread_t *threads;
};

static void workpool_task_done(struct reactor_task *task)
{
	struct work_item *w = container_of(task, struct work_item, task);

	w->done(w);
}

static void *workpool_thread(void *arg)
{
	struct workpool *p = arg;

	pthread_mutex_lock(&p->lock);
	for (;;) {
		struct work_item *w = p->head;

		if (!w) {
			if (p->shutdown)
				break;
			pthread_cond_wait(&p->cond, &p->lock);
			continue;
		}
		p->head = w->next;
		if (!p->head)
			p->tail = &p->head;
		pthread_mutex_unlock(&p->lock);

		w->work(w);
		w->task.fn = workpool_task_done;
		reactor_post(w->origin, &w->task);

		pthread_mutex_lock(&p->lock);
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

/* Stops and joins the threads, after the queue drains. */
static void workpool_join(struct workpool *p)
{
	pthread_mutex_lock(&p->lock);
	p->shutdown = true;
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
	for (unsigned i = 0; i < p->nthreads; i++)
		pthread_join(p->threads[i], NULL);
	p->nthreads = 0;
}

void workpool_free(struct workpool *p)
{
	if (!p)
		return;
	workpool_join(p);
	assert(p->head == NULL);
	free(p->threads);
	pthread_cond_destroy(&p->cond);
	pthread_mutex_destroy(&p->lock);
	free(p);
}

int workpool_new(struct workpool **out, unsigned threads)
{
	struct workpool *p;
	int ret;

	if (threads == 0) {
		long cpus = sysconf(_SC_NPROCESSORS_ONLN);

		threads = (unsigned)MAX(4L, 2 * MAX(cpus, 1L));
	}
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->cond, NULL);
	p->tail = &p->head;
	p->threads = calloc(threads, sizeof(*p->threads));
	if (!p->threads) {
		ret = -ENOMEM;
		goto fail;
	}
	for (unsigned i = 0; i < threads; i++) {
		ret = pthread_create(&p->threads[i], NULL, workpool_thread, p);
		if (ret != 0) {
			ret = -ret;
			log_error("workpool: cannot start thread %u of %u: %s", i, threads,
				  strerror(-ret));
			goto fail;
		}
		p->nthreads++;
	}
	*out = p;
	return 0;

fail:
	workpool_free(p);
	return ret;
}

void workpool_submit(struct workpool *p, struct work_item *w)
{
	assert(w->work != NULL && w->done != NULL);
	w->origin = reactor_current();
	assert(w->origin != NULL);
	w->next = NULL;
	pthread_mutex_lock(&p->lock);
	assert(!p->shutdown);
	*p->tail = w;
	p->tail = &w->next;
	pthread_cond_signal(&p->cond);
	pthread_mutex_unlock(&p->lock);
}

/* ---- the default pool --------------------------------------------------- */

static pthread_once_t workpool_default_once = PTHREAD_ONCE_INIT;
static struct workpool *workpool_default_pool;

static void workpool_default_atexit(void)
{
	workpool_free(workpool_default_pool);
	workpool_default_pool = NULL;
}

static void workpool_default_init(void)
{
	struct workpool *p;
	int ret = workpool_new(&p, 0);

	if (ret < 0) {
		log_error("workpool: cannot create the default pool: %s", strerror(-ret));
		return;
	}
	workpool_default_pool = p;
	if (atexit(workpool_default_atexit) != 0)
		log_warn("workpool: cannot register the exit handler; the pool is leaked");
}

struct workpool *workpool_default(void)
{
	pthread_once(&workpool_default_once, workpool_default_init);
	return workpool_default_pool;
}
