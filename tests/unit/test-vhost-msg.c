/* SPDX-License-Identifier: MIT */
/*
 * test-vhost-msg.c: vhost-user messages a front-end must not send
 * (vhost/server.c), each a defect the message fuzz target
 * (tests/fuzz/fuzz-vhost-msg.c) found: the back-end refuses the message
 * (a failed REPLY_ACK) and keeps serving, never crashes or hangs.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>
#include <cmocka.h>

#include "common/compiler.h"
#include "tests/fuzz/fuzz-poll.h"
#include "tests/unit/testutil.h"
#include "tests/unit/vhosttest.h"
#include "vhost/proto.h"
#include "vhost/vring.h"

/* A memfd of @bytes. */
static int small_memfd(size_t bytes)
{
	int fd = memfd_create("test-vhost-msg", MFD_CLOEXEC);

	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)bytes), 0);
	return fd;
}

/* The device still reads and writes. */
static void works(struct vt *t)
{
	static uint8_t w[4096], r[4096];
	uint8_t st = 0xee;

	tu_fill(w, sizeof(w), 3, 0);
	assert_int_equal(vfront_blk(t->f, 0, VIRTIO_BLK_T_OUT, 8, w, sizeof(w), false, &st, NULL), 0);
	assert_int_equal(st, VIRTIO_BLK_S_OK);
	assert_int_equal(vfront_blk(t->f, 0, VIRTIO_BLK_T_IN, 8, r, sizeof(r), true, &st, NULL), 0);
	assert_int_equal(st, VIRTIO_BLK_S_OK);
	assert_memory_equal(r, w, sizeof(w));
}

/* SET_INFLIGHT_FD whose mmap_size is past the end of its memfd: the ring
 * start read the buffer's header and died of SIGBUS. */
static void test_vhost_msg_inflight_past_file_end(void **state)
{
	struct vhu_inflight in = { .num_queues = 1, .queue_size = 128 };
	struct vt t;
	int fd = small_memfd(0);

	(void)state;
	vt_setup(&t, &(struct vt_opts){ 0 });
	in.mmap_size = 1 << 20;
	assert_int_equal(vfront_msg(t.f, VHU_SET_INFLIGHT_FD, VHU_FLAG_NEED_REPLY, &in, sizeof(in),
				    &fd, 1, NULL, 0), -EIO);
	/* The offset counts too. */
	assert_int_equal(ftruncate(fd, 4096), 0);
	in.mmap_size = vhostvq_inflight_bytes(128);
	in.mmap_offset = 4096;
	assert_int_equal(vfront_msg(t.f, VHU_SET_INFLIGHT_FD, VHU_FLAG_NEED_REPLY, &in, sizeof(in),
				    &fd, 1, NULL, 0), -EIO);
	close(fd);
	works(&t);
	vt_teardown(&t);
}

/* SET_MEM_TABLE with a region larger than its memfd: the first request
 * in the part past the end died of SIGBUS. */
static void test_vhost_msg_region_past_file_end(void **state)
{
	struct {
		uint32_t nregions, padding;
		struct vhu_region r;
	} mt = { .nregions = 1, .r = { .guest_phys = 0, .size = 2 << 20,
				       .user_addr = 0x7e0000000000ull } };
	struct vt t;
	int fd = small_memfd(64 << 10);

	(void)state;
	vt_setup(&t, &(struct vt_opts){ 0 });
	assert_int_equal(vfront_msg(t.f, VHU_SET_MEM_TABLE, VHU_FLAG_NEED_REPLY, &mt, sizeof(mt),
				    &fd, 1, NULL, 0), -EIO);
	close(fd);
	/* The old table is still in force. */
	works(&t);
	vt_teardown(&t);
}

/* The front-end leaves while the server's threads are busy, many times:
 * every reactor thread must end. The server stops them with reactor_stop
 * from its control thread, which a reactor used to miss (a stop consumed
 * by a pass that ran nothing, then a wait: test_reactor_stop_lost_wakeup
 * in test-reactor.c); vhostsrv_wait then never returned. The race is
 * narrow: this repeats the fuzzer's pattern (a request in flight, then
 * EOF) to hit it now and then; fuzz-vhost-msg hung three times in about
 * 7,000 inputs with it. */
static void test_vhost_msg_stop_lost(void **state)
{
	for (unsigned i = 0; i < 100; i++) {
		struct vt t;
		static uint8_t buf[4096];
		uint64_t st;

		vt_setup(&t, &(struct vt_opts){ .queues = 2, .fo = { .queues = 2 } });
		(void)state;
		vfront_arena_reset(t.f);
		memcpy(vfront_ptr(t.f, vfront_alloc(t.f, sizeof(buf))), buf, sizeof(buf));
		assert_true(vfront_blk_submit(t.f, i % 2, VIRTIO_BLK_T_IN, 0,
					      vfront_alloc(t.f, sizeof(buf)), sizeof(buf), true,
					      &st) >= 0);
		vfront_disconnect(t.f);
		vt_teardown(&t);
	}
}

/* The front-end shrinks its memfd after SET_MEM_TABLE: the back-end's
 * next access to the lost pages died of SIGBUS. The back-end now seals a
 * sealable file against shrinking before it maps it (the front-end may
 * still grow it); the inflight buffer it makes is sealed whole. A file
 * that cannot be sealed is still accepted (QEMU's seal=off). */
static void test_vhost_msg_region_shrunk_after_mapping(void **state)
{
	struct {
		uint32_t nregions, padding;
		struct vhu_region r;
	} mt = { .nregions = 1, .r = { .guest_phys = 0, .size = 64 << 10,
				       .user_addr = 0x7e0000000000ull } };
	struct vhu_inflight in = { .num_queues = 1, .queue_size = 128 };
	int fd, seals, ifd = -1;
	uint32_t size = 0;
	struct vt t;

	(void)state;
	vt_setup(&t, &(struct vt_opts){ 0 });
	fd = vfront_memfd(t.f);
	seals = fcntl(fd, F_GET_SEALS);
	assert_true(seals >= 0 && (seals & F_SEAL_SHRINK));
	assert_int_equal(ftruncate(fd, 4096), -1);
	assert_int_equal(errno, EPERM);
	assert_int_equal(ftruncate(fd, (off_t)vfront_mem_bytes(t.f) * 2), 0);
	works(&t);

	/* GET_INFLIGHT_FD: the buffer handed out cannot change size. */
	assert_int_equal(vfront_send(t.f, VHU_GET_INFLIGHT_FD, 0, &in, sizeof(in), NULL, 0), 0);
	assert_int_equal(vfront_recv(t.f, VHU_GET_INFLIGHT_FD, &in, sizeof(in), &size, &ifd), 0);
	assert_true(ifd >= 0);
	assert_int_equal(ftruncate(ifd, 0), -1);
	assert_int_equal(errno, EPERM);
	close(ifd);

	/* Not sealable (no MFD_ALLOW_SEALING): accepted, with a warning. */
	fd = small_memfd(64 << 10);
	assert_int_equal(vfront_msg(t.f, VHU_SET_MEM_TABLE, VHU_FLAG_NEED_REPLY, &mt, sizeof(mt),
				    &fd, 1, NULL, 0), 0);
	close(fd);
	vt_teardown(&t);
}

/* fuzz-vhost-msg aborted about once in 10,000 inputs with "a reply did not
 * come in 20 s" while the reply sat in its socket: libFuzzer's -timeout
 * timer interrupts the target's poll with SIGALRM, and the target took
 * poll's -1/EINTR for a hang (gdb on a paused run: errno EINTR, 20 bytes
 * of GET_QUEUE_NUM reply unread). Its wait now goes on across signals. Here
 * the reply comes only after the wait has been interrupted three times. */
static atomic_uint reply_wait_signals;

static void reply_wait_on_alarm(int sig UNUSED)
{
	atomic_fetch_add(&reply_wait_signals, 1);
}

static void *reply_wait_writer(void *arg)
{
	int fd = *(int *)arg;
	sigset_t all;

	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);     /* the signals go to the waiter */
	while (atomic_load(&reply_wait_signals) < 3)
		sched_yield();
	assert_int_equal(write(fd, "r", 1), 1);
	return NULL;
}

static void test_vhost_msg_reply_wait_interrupted(void **state)
{
	struct sigaction sa = { .sa_handler = reply_wait_on_alarm }, old;
	struct itimerval every_5ms = { { 0, 5000 }, { 0, 5000 } }, off = { { 0, 0 }, { 0, 0 } };
	pthread_t th;
	int sv[2];
	char c;

	(void)state;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	atomic_store(&reply_wait_signals, 0);
	sigemptyset(&sa.sa_mask);
	assert_int_equal(sigaction(SIGALRM, &sa, &old), 0);    /* no SA_RESTART, as libFuzzer */
	assert_int_equal(pthread_create(&th, NULL, reply_wait_writer, &sv[1]), 0);
	assert_int_equal(setitimer(ITIMER_REAL, &every_5ms, NULL), 0);
	assert_int_equal(fuzz_poll_in(sv[0], 600000), 1);
	assert_int_equal(setitimer(ITIMER_REAL, &off, NULL), 0);
	pthread_join(th, NULL);
	assert_true(atomic_load(&reply_wait_signals) >= 3);
	assert_int_equal(read(sv[0], &c, 1), 1);
	assert_int_equal(sigaction(SIGALRM, &old, NULL), 0);
	close(sv[0]);
	close(sv[1]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_vhost_msg_inflight_past_file_end),
		cmocka_unit_test(test_vhost_msg_region_past_file_end),
		cmocka_unit_test(test_vhost_msg_stop_lost),
		cmocka_unit_test(test_vhost_msg_region_shrunk_after_mapping),
		cmocka_unit_test(test_vhost_msg_reply_wait_interrupted),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
