/* SPDX-License-Identifier: MIT */
/*
 * test-workpool.c: unit tests of common/workpool.c — work() runs on a pool
 * thread, done() on the submitting reactor's thread, exactly once each, from
 * several reactors at once; freeing a pool finishes queued work.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "common/compiler.h"
#include "common/reactor.h"
#include "common/workpool.h"
#include "tests/unit/testutil.h"

struct item {
	struct work_item w;
	pthread_t origin_thread;
	pthread_t work_thread;
	pthread_t done_thread;
	atomic_int work_calls;
	int done_calls;
	unsigned sleep_us;
	unsigned *ndone;
};

static void item_work(struct work_item *w)
{
	struct item *it = container_of(w, struct item, w);

	it->work_thread = pthread_self();
	atomic_fetch_add(&it->work_calls, 1);
	if (it->sleep_us)
		usleep(it->sleep_us);
}

static void item_done(struct work_item *w)
{
	struct item *it = container_of(w, struct item, w);

	it->done_thread = pthread_self();
	it->done_calls++;
	(*it->ndone)++;
}

static struct reactor *new_reactor(void)
{
	struct reactor *r = NULL;
	int ret = reactor_new(&r, 0);

	if (ret == -ENOSYS || ret == -EPERM)
		skip();
	assert_int_equal(ret, 0);
	return r;
}

static void test_workpool_done_on_origin(void **state)
{
	struct reactor *r = new_reactor();
	struct workpool *p = NULL;
	unsigned ndone = 0;
	struct item it = { .w.work = item_work, .w.done = item_done, .ndone = &ndone };

	(void)state;
	assert_int_equal(workpool_new(&p, 2), 0);
	workpool_submit(p, &it.w);
	assert_ptr_equal(it.w.origin, r);
	while (ndone == 0)
		assert_true(reactor_run_once(r, true) >= 0);
	assert_int_equal(atomic_load(&it.work_calls), 1);
	assert_int_equal(it.done_calls, 1);
	assert_false(pthread_equal(it.work_thread, pthread_self()));
	assert_true(pthread_equal(it.done_thread, pthread_self()));
	workpool_free(p);
	reactor_free(r);
}

enum { ITEMS_PER_REACTOR = 5000 };

struct submitter {
	pthread_t th;
	struct workpool *p;
	struct item *items;
	unsigned n;
	unsigned ndone;
	int ret;
};

static void *submitter_main(void *arg)
{
	struct submitter *s = arg;
	struct reactor *r = NULL;

	s->ret = reactor_new(&r, 0);
	if (s->ret < 0)
		return NULL;
	for (unsigned i = 0; i < s->n; i++) {
		s->items[i] = (struct item){ .w.work = item_work, .w.done = item_done,
					     .origin_thread = pthread_self(), .ndone = &s->ndone };
		workpool_submit(s->p, &s->items[i].w);
		/* Interleave submitting with running the loop. */
		if (i % 64 == 0)
			s->ret = reactor_run_once(r, false);
	}
	while (s->ndone < s->n && s->ret >= 0)
		s->ret = reactor_run_once(r, true);
	reactor_free(r);
	return NULL;
}

static void test_workpool_two_reactors(void **state)
{
	unsigned n = getenv("DISKSTACK_VALGRIND") ? ITEMS_PER_REACTOR / 10 : ITEMS_PER_REACTOR;
	struct submitter s[2];
	struct workpool *p = NULL;

	(void)state;
	assert_int_equal(workpool_new(&p, 4), 0);
	for (int k = 0; k < 2; k++) {
		s[k] = (struct submitter){ .p = p, .n = n };
		s[k].items = calloc(n, sizeof(*s[k].items));
		assert_non_null(s[k].items);
		assert_int_equal(pthread_create(&s[k].th, NULL, submitter_main, &s[k]), 0);
	}
	for (int k = 0; k < 2; k++) {
		pthread_join(s[k].th, NULL);
		if (s[k].ret == -ENOSYS || s[k].ret == -EPERM)
			skip();
		assert_true(s[k].ret >= 0);
		assert_int_equal(s[k].ndone, n);
		for (unsigned i = 0; i < n; i++) {
			struct item *it = &s[k].items[i];

			assert_int_equal(atomic_load(&it->work_calls), 1);
			assert_int_equal(it->done_calls, 1);
			assert_true(pthread_equal(it->done_thread, it->origin_thread));
			assert_false(pthread_equal(it->work_thread, it->origin_thread));
			assert_ptr_not_equal(it->w.origin, NULL);
		}
	}
	for (int k = 0; k < 2; k++)
		free(s[k].items);
	workpool_free(p);
}

/* workpool_free finishes queued work before joining; done() still runs on
 * the reactor afterwards. */
static void test_workpool_free_drains(void **state)
{
	struct reactor *r = new_reactor();
	struct workpool *p = NULL;
	enum { N = 16 };
	struct item it[N];
	unsigned ndone = 0;

	(void)state;
	assert_int_equal(workpool_new(&p, 1), 0);
	for (int i = 0; i < N; i++) {
		it[i] = (struct item){ .w.work = item_work, .w.done = item_done, .ndone = &ndone,
				       .sleep_us = 1000 };
		workpool_submit(p, &it[i].w);
	}
	workpool_free(p);
	for (int i = 0; i < N; i++)
		assert_int_equal(atomic_load(&it[i].work_calls), 1);
	assert_int_equal(ndone, 0);
	while (ndone < N)
		assert_true(reactor_run_once(r, true) >= 0);
	for (int i = 0; i < N; i++)
		assert_int_equal(it[i].done_calls, 1);
	workpool_free(NULL);
	reactor_free(r);
}

static void test_workpool_default(void **state)
{
	struct reactor *r = new_reactor();
	struct workpool *p = workpool_default();
	unsigned ndone = 0;
	struct item it = { .w.work = item_work, .w.done = item_done, .ndone = &ndone };

	(void)state;
	assert_non_null(p);
	assert_ptr_equal(workpool_default(), p);
	workpool_submit(p, &it.w);
	while (ndone == 0)
		assert_true(reactor_run_once(r, true) >= 0);
	assert_int_equal(it.done_calls, 1);
	reactor_free(r);
	/* The default pool is freed at exit (valgrind checks it). */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_workpool_done_on_origin),
		cmocka_unit_test(test_workpool_two_reactors),
		cmocka_unit_test(test_workpool_free_drains),
		cmocka_unit_test(test_workpool_default),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
