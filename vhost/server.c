/* SPDX-License-Identifier: MIT */
/*
 * server.c: the vhost-user back-end server (vhost.h): the socket, the
 * session state machine and the rings on their reactor threads.
 *
 * Notes on the design
 * -------------------
 * - The control thread owns everything of the session: negotiated
 *   features, the memory table, each ring's configuration (size,
 *   addresses, base, fds, enable) and the inflight buffer. A ring is
 *   "running" when handed to its reactor thread; from then until it is
 *   taken back the thread alone touches its struct vhostvq, slots, kick
 *   read and call fd. Handing over and taking back are tasks posted to the
 *   thread (reactor_post) that the control thread waits for, so every
 *   field has one owner at a time and the data path takes no lock.
 * - Taking a ring back (stop) waits for its requests to complete (their
 *   used entries are published) and for its kick read to be cancelled,
 *   then reports last_avail: what GET_VRING_BASE must answer. Anything
 *   that changes what a running ring uses (SET_MEM_TABLE, SET_VRING_NUM,
 *   ADDR, BASE, KICK) stops it first; it starts again once it can run
 *   (vhostsrv_reconcile). SET_VRING_CALL and ERR swap the fd on the
 *   ring's thread instead, since QEMU sends them while rings run.
 * - Slots: a running ring has one preallocated slot per queue entry (the
 *   most it can have in flight), each with the chain's iovecs, a scratch
 *   iovec array and the device's private bytes: no allocation per request.
 * - Interrupts: completions push used entries at once and defer one
 *   "call" task per pass of the reactor, which writes the call eventfd if
 *   vhostvq_should_call says the driver wants it, as an io_uring write
 *   that rides on the reactor's next io_uring_enter (the wait).
 * - Framing errors (bad version, oversized payload, wrong payload size
 *   for a known request, missing fds) end the connection, as the spec
 *   allows; the front-end then sees EOF and may reconnect.
 */
#include "config.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/compiler.h"
#include "common/log.h"
#include "common/reactor.h"
#include "net/netsrv.h"
#include "vhost/mem.h"
#include "vhost/proto.h"
#include "vhost/vhost.h"
#include "vhost/vring.h"

#define BIT(n) (1ull << (n))

/* The protocol features the server itself implements. */
#define VHOSTSRV_PROTO (BIT(VHU_PROTO_MQ) | BIT(VHU_PROTO_REPLY_ACK) | \
			BIT(VHU_PROTO_BACKEND_REQ) | BIT(VHU_PROTO_INFLIGHT_SHMFD))
/* Virtio transport features every device gets. */
#define VHOSTSRV_FEATURES (BIT(VIRTIO_F_VERSION_1) | BIT(VIRTIO_F_INDIRECT_DESC) | \
			   BIT(VIRTIO_F_EVENT_IDX) | BIT(VHU_F_PROTOCOL_FEATURES))

struct vhostsrv_queue;

struct vhostsrv_slot {
	struct vhost_req req;
	struct vhostsrv_queue *q;
	unsigned next_free;
	struct vhostvq_chain chain;
	struct iovec scratch[VHOSTVQ_CHAIN_MAX];
	/* the device's private bytes follow */
};

struct vhostsrv_thread {
	struct vhostsrv *s;
	pthread_t tid;
	struct reactor *r;
	bool created;
	int init_ret;                   /* reactor_new's, read after the start handshake */
};

struct vhostsrv_queue {
	struct vhostsrv *s;
	unsigned idx;
	struct vhostsrv_thread *thr;

	/* Configuration: the control thread's (the ring's thread reads it
	 * only while running). */
	uint32_t num;
	bool addr_set;
	struct vhu_vring_addr addr;
	uint16_t base;                  /* next avail index at the next start */
	int kick_fd, call_fd, err_fd;
	bool kicked;                    /* SET_VRING_KICK since the last stop */
	bool enabled;
	bool running;

	/* The ring's thread's while running. */
	struct vhostvq vq;
	uint8_t *slots;
	size_t slot_bytes;
	unsigned free_head;             /* UINT_MAX: none */
	unsigned fresh;                 /* slots [0, fresh) initialised */
	unsigned inflight;
	bool stopping, finishing, kick_armed, call_queued, broken_logged;
	uint64_t kick_val;
	struct reactor_op kick_op, cancel_op;
	struct reactor_task start_task, stop_task, finish_task, call_task, swap_task;
	int swap_fd;                    /* the new fd for swap_task */
	bool swap_err;                  /* swap_task swaps err_fd, not call_fd */
};

struct vhostsrv {
	char name[64];
	const struct vhost_dev_ops *ops;
	void *dev;
	unsigned nqueues, nthreads;
	struct vhostsrv_queue *queues;
	struct vhostsrv_thread *threads;

	char *path;                     /* the socket file we made, removed at free */
	int listen_fd;
	int conn_fd;                    /* the front-end, -1 between connections */
	int stop_efd;                   /* vhostsrv_stop */
	int config_efd;                 /* vhostsrv_config_changed */
	atomic_bool stopping;
	atomic_uint connections;
	pthread_t ctl;
	bool ctl_started, started, attached, waited;

	/* Session state (control thread). */
	uint64_t features;              /* SET_FEATURES */
	uint64_t proto;                 /* SET_PROTOCOL_FEATURES */
	struct vhostmem *mem;
	int backend_fd;                 /* SET_BACKEND_REQ_FD */
	void *inflight;                 /* mapped inflight buffer */
	size_t inflight_len;
	uint16_t inflight_queues, inflight_qsize;

	/* The control thread waits for tasks it posted. */
	pthread_mutex_t sync_mu;
	pthread_cond_t sync_cv;
	bool sync_done;
};

static void vhostsrv_close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

/* ---- control <-> ring thread handshakes -------------------------------- */

static void vhostsrv_sync_signal(struct vhostsrv *s)
{
	pthread_mutex_lock(&s->sync_mu);
	s->sync_done = true;
	pthread_cond_broadcast(&s->sync_cv);
	pthread_mutex_unlock(&s->sync_mu);
}

/* Posts @task to @q's thread and waits until the thread signals. */
static void vhostsrv_sync_post(struct vhostsrv_queue *q, struct reactor_task *task)
{
	struct vhostsrv *s = q->s;

	pthread_mutex_lock(&s->sync_mu);
	s->sync_done = false;
	pthread_mutex_unlock(&s->sync_mu);
	reactor_post(q->thr->r, task);
	pthread_mutex_lock(&s->sync_mu);
	while (!s->sync_done)
		pthread_cond_wait(&s->sync_cv, &s->sync_mu);
	pthread_mutex_unlock(&s->sync_mu);
}

/* ---- the ring's thread ------------------------------------------------- */

static struct vhostsrv_slot *vhostsrv_slot(struct vhostsrv_queue *q, unsigned i)
{
	return (struct vhostsrv_slot *)(void *)(q->slots + (size_t)i * q->slot_bytes);
}

static void vhostsrv_signal_fd(int fd)
{
	if (fd >= 0 && eventfd_write(fd, 1) < 0)
		log_debug("vhost: eventfd write: %s", strerror(errno));
}

/*
 * Interrupts the driver if it wants one. The eventfd write is a quiet SQE
 * (reactor_write_quiet), not a write(2): it goes to the kernel with the
 * io_uring_enter the reactor makes anyway to wait for the next kick, and
 * posts no completion that would end that wait at once. A call is about
 * one per request when the guest is slower than the back-end
 * (docs/bench-vhost.md), so that is one syscall less per request. The fd
 * must not close while the SQE is unsubmitted: whoever closes or swaps it
 * flushes first (vhostsrv_swap_task, vhostsrv_finish_task).
 */
static void vhostsrv_call(struct vhostsrv_queue *q)
{
	static const uint64_t one = 1;

	if (q->call_fd < 0 || !vhostvq_should_call(&q->vq))
		return;
	if (reactor_write_quiet(q->thr->r, q->call_fd, &one, sizeof(one)) < 0)
		vhostsrv_signal_fd(q->call_fd);
}

static void vhostsrv_call_task(struct reactor_task *t)
{
	struct vhostsrv_queue *q = container_of(t, struct vhostsrv_queue, call_task);

	q->call_queued = false;
	if (q->running)
		vhostsrv_call(q);
}

static void vhostsrv_finish_task(struct reactor_task *t)
{
	struct vhostsrv_queue *q = container_of(t, struct vhostsrv_queue, finish_task);

	vhostsrv_call(q);
	/* The control thread may close the call fd once we signal. */
	(void)reactor_flush(q->thr->r);
	vhostsrv_sync_signal(q->s);
}

/* A stopping ring is done when nothing is in flight and no kick read is
 * armed. The finish task runs after any call task already deferred. */
static void vhostsrv_maybe_finish(struct vhostsrv_queue *q)
{
	if (!q->stopping || q->finishing || q->kick_armed || q->inflight)
		return;
	q->finishing = true;
	reactor_defer(q->thr->r, &q->finish_task);
}

static void vhostsrv_req_done(struct vhost_req *req, uint32_t written)
{
	struct vhostsrv_slot *slot = req->owner;
	struct vhostsrv_queue *q = slot->q;
	unsigned i = (unsigned)(((uint8_t *)slot - q->slots) / q->slot_bytes);

	vhostvq_push(&q->vq, slot->chain.head, written);
	slot->next_free = q->free_head;
	q->free_head = i;
	q->inflight--;
	if (!q->call_queued) {
		q->call_queued = true;
		reactor_defer(q->thr->r, &q->call_task);
	}
	vhostsrv_maybe_finish(q);
}

static void vhostsrv_broken(struct vhostsrv_queue *q)
{
	if (!q->broken_logged) {
		q->broken_logged = true;
		log_error("%s: queue %u stopped: the driver put %s in it (avail index %u); the "
			  "ring stays stopped until the device is reset", q->s->name, q->idx,
			  q->vq.why ? q->vq.why : "a bad chain", q->vq.last_avail);
	}
	vhostsrv_signal_fd(q->err_fd);
}

/*
 * Readies slot @i and puts it on the free list. Slots are readied the first
 * time one more is needed, not at ring start: the array is calloc'd (for a
 * large ring, fresh zero pages from mmap), so a ring of 32768 entries costs
 * memory only for the requests the driver really keeps in flight, not
 * 272 MB touched at every start.
 */
static void vhostsrv_slot_init(struct vhostsrv_queue *q, unsigned i)
{
	struct vhostsrv_slot *slot = vhostsrv_slot(q, i);

	slot->q = q;
	slot->req.qidx = (uint16_t)q->idx;
	slot->req.reactor = q->thr->r;
	slot->req.scratch = slot->scratch;
	slot->req.priv = (uint8_t *)slot + sizeof(*slot);
	slot->req.done = vhostsrv_req_done;
	slot->req.owner = slot;
	slot->next_free = q->free_head;
	q->free_head = i;
}

/* Takes every available request and hands it to the device. */
static void vhostsrv_process(struct vhostsrv_queue *q)
{
	const struct vhost_dev_ops *ops = q->s->ops;

	while (!q->stopping) {
		struct vhostsrv_slot *slot;
		int ret;

		if (q->free_head == UINT_MAX && q->fresh < q->num)
			vhostsrv_slot_init(q, q->fresh++);
		if (q->free_head == UINT_MAX) {
			/* Every entry in flight, so the ring is empty: the
			 * driver adds the next one after a completion, and
			 * must kick for it (vhostvq_pop leaves avail_event
			 * behind). */
			(void)vhostvq_enable_notify(&q->vq);
			return;
		}
		slot = vhostsrv_slot(q, q->free_head);
		ret = vhostvq_pop(&q->vq, &slot->chain);
		if (ret < 0) {
			vhostsrv_broken(q);
			return;
		}
		if (ret == 0) {
			if (vhostvq_enable_notify(&q->vq))
				continue;
			return;
		}
		q->free_head = slot->next_free;
		q->inflight++;
		slot->req.head = slot->chain.head;
		slot->req.iov = slot->chain.iov;
		slot->req.out_cnt = slot->chain.out_cnt;
		slot->req.in_cnt = slot->chain.in_cnt;
		slot->req.out_bytes = slot->chain.out_bytes;
		slot->req.in_bytes = slot->chain.in_bytes;
		if (ops->req_priv_bytes)
			memset(slot->req.priv, 0, ops->req_priv_bytes);
		ops->handle(q->s->dev, &slot->req);
	}
}

static void vhostsrv_arm_kick(struct vhostsrv_queue *q);

static void vhostsrv_kick_cb(struct reactor_op *op, int res)
{
	struct vhostsrv_queue *q = container_of(op, struct vhostsrv_queue, kick_op);

	q->kick_armed = false;
	if (q->stopping) {
		vhostsrv_maybe_finish(q);
		return;
	}
	if (res < 0 && res != -EAGAIN && res != -EINTR) {
		log_error("%s: queue %u: reading the kick eventfd: %s", q->s->name, q->idx,
			  strerror(-res));
		return;
	}
	vhostsrv_process(q);
	if (!q->vq.broken)
		vhostsrv_arm_kick(q);
}

static void vhostsrv_arm_kick(struct vhostsrv_queue *q)
{
	struct io_uring_sqe *sqe = reactor_get_sqe(q->thr->r);

	io_uring_prep_read(sqe, q->kick_fd, &q->kick_val, sizeof(q->kick_val), 0);
	reactor_sqe_set_op(sqe, &q->kick_op);
	q->kick_armed = true;
}

static void vhostsrv_cancel_cb(struct reactor_op *op UNUSED, int res UNUSED)
{
}

static void vhostsrv_start_task(struct reactor_task *t)
{
	struct vhostsrv_queue *q = container_of(t, struct vhostsrv_queue, start_task);

	q->stopping = q->finishing = false;
	/* The driver may have queued requests before the ring started. */
	vhostsrv_process(q);
	if (!q->vq.broken)
		vhostsrv_arm_kick(q);
	vhostsrv_sync_signal(q->s);
}

static void vhostsrv_stop_task(struct reactor_task *t)
{
	struct vhostsrv_queue *q = container_of(t, struct vhostsrv_queue, stop_task);

	q->stopping = true;
	if (q->s->ops->version >= 2 && q->s->ops->queue_stop)
		q->s->ops->queue_stop(q->s->dev, q->idx);
	if (q->kick_armed) {
		struct io_uring_sqe *sqe = reactor_get_sqe(q->thr->r);

		io_uring_prep_cancel(sqe, &q->kick_op, 0);
		reactor_sqe_set_op(sqe, &q->cancel_op);
	}
	vhostsrv_maybe_finish(q);
}

static void vhostsrv_swap_task(struct reactor_task *t)
{
	struct vhostsrv_queue *q = container_of(t, struct vhostsrv_queue, swap_task);
	int *fd = q->swap_err ? &q->err_fd : &q->call_fd;

	/* Interrupts owed to the driver go to the new fd; a call write
	 * queued for the old one is submitted before it closes. */
	(void)reactor_flush(q->thr->r);
	vhostsrv_close_fd(fd);
	*fd = q->swap_fd;
	if (!q->swap_err)
		vhostsrv_signal_fd(*fd);
	vhostsrv_sync_signal(q->s);
}

static void *vhostsrv_thread_main(void *arg)
{
	struct vhostsrv_thread *th = arg;
	int ret = reactor_new(&th->r, 0);

	th->init_ret = ret;
	vhostsrv_sync_signal(th->s);
	if (ret < 0)
		return NULL;
	if ((ret = reactor_run(th->r)) < 0)
		log_error("vhost: reactor thread: %s", strerror(-ret));
	/* Rings were all taken back before the stop: nothing is pending. */
	reactor_free(th->r);
	return NULL;
}

/* ---- rings: start and stop (control thread) ----------------------------- */

static bool vhostsrv_can_run(struct vhostsrv *s, struct vhostsrv_queue *q)
{
	bool enabled = q->enabled || !(s->features & BIT(VHU_F_PROTOCOL_FEATURES));

	return s->mem && q->num && q->addr_set && q->kick_fd >= 0 && q->kicked && enabled &&
	       !atomic_load(&s->stopping);
}

static struct vhostvq_inflight *vhostsrv_inflight_of(struct vhostsrv *s, struct vhostsrv_queue *q)
{
	if (!s->inflight || q->idx >= s->inflight_queues || q->num != s->inflight_qsize)
		return NULL;
	return (struct vhostvq_inflight *)(void *)((uint8_t *)s->inflight +
						   q->idx * vhostvq_inflight_bytes(s->inflight_qsize));
}

static void vhostsrv_ring_start(struct vhostsrv *s, struct vhostsrv_queue *q)
{
	uint64_t n = q->num;
	void *desc = vhostmem_uva(s->mem, q->addr.desc_user_addr, 16 * n);
	void *avail = vhostmem_uva(s->mem, q->addr.avail_user_addr, 6 + 2 * n);
	void *used = vhostmem_uva(s->mem, q->addr.used_user_addr, 6 + 8 * n);
	int ret;

	if (!desc || !avail || !used) {
		/* QEMU with guest RAM that is not fd-backed sends no regions
		 * and then ring addresses nothing translates. */
		log_error("%s: queue %u: ring addresses outside the shared guest memory (is the "
			  "guest's RAM a shared memory backend, e.g. memory-backend-memfd?)",
			  s->name, q->idx);
		vhostsrv_signal_fd(q->err_fd);
		return;
	}
	ret = vhostvq_setup(&q->vq, s->mem, (uint16_t)q->num, desc, avail, used,
			    s->features & BIT(VIRTIO_F_EVENT_IDX),
			    s->features & BIT(VIRTIO_F_INDIRECT_DESC), q->base,
			    vhostsrv_inflight_of(s, q));
	if (ret < 0) {
		log_error("%s: queue %u: cannot set the ring up: %s", s->name, q->idx,
			  strerror(-ret));
		vhostsrv_signal_fd(q->err_fd);
		return;
	}
	if (q->vq.nresubmit)
		log_info("%s: queue %u: resubmitting %u requests in flight before the reconnect",
			 s->name, q->idx, q->vq.nresubmit);
	q->slot_bytes = ROUND_UP(sizeof(struct vhostsrv_slot) + s->ops->req_priv_bytes, 64);
	q->slots = calloc(q->num, q->slot_bytes);
	if (!q->slots) {
		log_error("%s: queue %u: out of memory", s->name, q->idx);
		vhostvq_release(&q->vq);
		return;
	}
	q->free_head = UINT_MAX;
	q->fresh = 0;
	q->inflight = 0;
	q->broken_logged = false;
	q->running = true;
	vhostsrv_sync_post(q, &q->start_task);
	log_debug("%s: queue %u started (size %u, avail index %u)", s->name, q->idx, q->num,
		  q->vq.last_avail);
}

/* Takes a running ring back: its requests complete first. */
static void vhostsrv_ring_stop(struct vhostsrv *s, struct vhostsrv_queue *q)
{
	if (!q->running)
		return;
	vhostsrv_sync_post(q, &q->stop_task);
	q->running = false;
	q->base = q->vq.last_avail;
	vhostvq_release(&q->vq);
	free(q->slots);
	q->slots = NULL;
	log_debug("%s: queue %u stopped at avail index %u", s->name, q->idx, q->base);
}

/* Starts every ring that can run and is not running. */
static void vhostsrv_reconcile(struct vhostsrv *s)
{
	for (unsigned i = 0; i < s->nqueues; i++) {
		struct vhostsrv_queue *q = &s->queues[i];

		if (!q->running && vhostsrv_can_run(s, q))
			vhostsrv_ring_start(s, q);
		else if (q->running && !vhostsrv_can_run(s, q))
			vhostsrv_ring_stop(s, q);
	}
}

static void vhostsrv_stop_all(struct vhostsrv *s)
{
	for (unsigned i = 0; i < s->nqueues; i++)
		vhostsrv_ring_stop(s, &s->queues[i]);
}

static void vhostsrv_inflight_unmap(struct vhostsrv *s)
{
	if (s->inflight)
		munmap(s->inflight, s->inflight_len);
	s->inflight = NULL;
	s->inflight_len = 0;
	s->inflight_queues = s->inflight_qsize = 0;
}

/* Forgets every ring's configuration (RESET_OWNER, RESET_DEVICE, EOF). */
static void vhostsrv_reset_rings(struct vhostsrv *s)
{
	vhostsrv_stop_all(s);
	for (unsigned i = 0; i < s->nqueues; i++) {
		struct vhostsrv_queue *q = &s->queues[i];

		vhostsrv_close_fd(&q->kick_fd);
		vhostsrv_close_fd(&q->call_fd);
		vhostsrv_close_fd(&q->err_fd);
		q->num = 0;
		q->addr_set = false;
		q->base = 0;
		q->kicked = q->enabled = false;
	}
}

/* Replaces the memory table (rings stopped); the device hears of it
 * before the old table is unmapped. */
static void vhostsrv_set_mem(struct vhostsrv *s, struct vhostmem *mem)
{
	struct vhostmem *old = s->mem;

	s->mem = mem;
	if (s->ops->version >= 3 && s->ops->mem_changed && (old || mem))
		s->ops->mem_changed(s->dev, mem);
	vhostmem_free(old);
}

/* The front-end left: back to the state before its first message. */
static void vhostsrv_end_session(struct vhostsrv *s)
{
	vhostsrv_reset_rings(s);
	vhostsrv_set_mem(s, NULL);
	vhostsrv_inflight_unmap(s);
	vhostsrv_close_fd(&s->backend_fd);
	vhostsrv_close_fd(&s->conn_fd);
	s->features = 0;
	s->proto = 0;
}

/* ---- messages ------------------------------------------------------------ */

struct vhostsrv_msg {
	uint32_t request, flags, size;
	union {
		uint64_t u64;
		struct vhu_vring_state state;
		struct vhu_vring_addr addr;
		struct vhu_mem_table mem;
		struct vhu_inflight inflight;
		uint8_t bytes[VHU_MAX_PAYLOAD];
	} u;
	int fds[VHU_MAX_FDS];
	unsigned nfds;
	bool replied;
};

/* Waits until @fd is readable or the server is asked to stop. Returns 0,
 * or -ECANCELED on a stop. */
static int vhostsrv_wait_readable(struct vhostsrv *s, int fd)
{
	struct pollfd p[2] = { { .fd = fd, .events = POLLIN }, { .fd = s->stop_efd, .events = POLLIN } };

	for (;;) {
		int n = poll(p, 2, -1);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (p[1].revents)
			return -ECANCELED;
		return 0;
	}
}

/* Reads exactly @len bytes, collecting fds from the first segment. */
static int vhostsrv_read_full(struct vhostsrv *s, struct vhostsrv_msg *m, void *buf, size_t len,
			      bool take_fds)
{
	size_t got = 0;

	while (got < len) {
		ssize_t n;
		int ret;

		if ((ret = vhostsrv_wait_readable(s, s->conn_fd)) < 0)
			return ret;
		n = vhu_recvmsg(s->conn_fd, (uint8_t *)buf + got, len - got, MSG_DONTWAIT,
				take_fds ? m->fds : NULL, &m->nfds);
		if (n == -EINTR || n == -EAGAIN)
			continue;
		if (n < 0)
			return (int)n;
		if (n == 0)
			return got == 0 ? -ENOTCONN : -EPROTO;
		got += (size_t)n;
		take_fds = false;
	}
	return 0;
}

static void vhostsrv_msg_close_fds(struct vhostsrv_msg *m)
{
	for (unsigned i = 0; i < m->nfds; i++)
		if (m->fds[i] >= 0)
			close(m->fds[i]);
	m->nfds = 0;
}

/* Takes the message's only fd (or -1). */
static int vhostsrv_msg_take_fd(struct vhostsrv_msg *m)
{
	int fd;

	if (m->nfds == 0)
		return -1;
	fd = m->fds[0];
	m->fds[0] = -1;
	return fd;
}

int vhu_sendmsg(int sock, const void *hdr, const void *payload, size_t len, const int *fds,
		unsigned nfds)
{
	struct iovec iov[2] = { { (void *)hdr, VHU_HDR_BYTES }, { (void *)payload, len } };
	union {
		char buf[CMSG_SPACE(VHU_MAX_FDS * sizeof(int))];
		struct cmsghdr align;
	} cm;
	struct msghdr mh = { .msg_iov = iov, .msg_iovlen = len ? 2 : 1 };
	ssize_t n;

	assert(nfds <= VHU_MAX_FDS);
	if (nfds) {
		struct cmsghdr *c;

		memset(&cm, 0, sizeof(cm));
		mh.msg_control = cm.buf;
		mh.msg_controllen = CMSG_SPACE(nfds * sizeof(int));
		c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(nfds * sizeof(int));
		memcpy(CMSG_DATA(c), fds, nfds * sizeof(int));
	}
	do {
		n = sendmsg(sock, &mh, MSG_NOSIGNAL);
	} while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	return (size_t)n == VHU_HDR_BYTES + len ? 0 : -EPROTO;
}

ssize_t vhu_recvmsg(int sock, void *buf, size_t len, int flags, int *fds, unsigned *nfds)
{
	union {
		char buf[CMSG_SPACE(VHU_MAX_FDS * sizeof(int))];
		struct cmsghdr align;
	} cm;
	struct iovec iov = { buf, len };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	ssize_t n;

	if (fds) {
		mh.msg_control = cm.buf;
		mh.msg_controllen = sizeof(cm.buf);
	}
	n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC | flags);
	if (n < 0)
		return -errno;
	for (struct cmsghdr *c = fds ? CMSG_FIRSTHDR(&mh) : NULL; c; c = CMSG_NXTHDR(&mh, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		size_t nf = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		int got[VHU_MAX_FDS];

		memcpy(got, CMSG_DATA(c), MIN(nf, (size_t)VHU_MAX_FDS) * sizeof(int));
		for (size_t i = 0; i < nf && i < VHU_MAX_FDS; i++) {
			if (*nfds < VHU_MAX_FDS)
				fds[(*nfds)++] = got[i];
			else
				close(got[i]);
		}
	}
	if (fds && (mh.msg_flags & MSG_CTRUNC))
		return -EPROTO;
	return n;
}

static int vhostsrv_send(int fd, uint32_t request, uint32_t flags, const void *payload,
			 uint32_t size, int pass_fd)
{
	uint8_t hdr[VHU_HDR_BYTES];

	memcpy(hdr, &request, 4);
	memcpy(hdr + 4, &flags, 4);
	memcpy(hdr + 8, &size, 4);
	return vhu_sendmsg(fd, hdr, payload, size, &pass_fd, pass_fd >= 0 ? 1 : 0);
}

static int vhostsrv_reply(struct vhostsrv *s, struct vhostsrv_msg *m, const void *payload,
			  uint32_t size, int pass_fd)
{
	m->replied = true;
	return vhostsrv_send(s->conn_fd, m->request, VHU_VERSION | VHU_FLAG_REPLY, payload, size,
			     pass_fd);
}

static int vhostsrv_reply_u64(struct vhostsrv *s, struct vhostsrv_msg *m, uint64_t v)
{
	return vhostsrv_reply(s, m, &v, sizeof(v), -1);
}

static struct vhostsrv_queue *vhostsrv_msg_queue(struct vhostsrv *s, uint32_t idx)
{
	if (idx >= s->nqueues) {
		log_error("%s: the front-end named queue %u; the device has %u", s->name, idx,
			  s->nqueues);
		return NULL;
	}
	return &s->queues[idx];
}

static int vhostsrv_set_mem_table(struct vhostsrv *s, struct vhostsrv_msg *m)
{
	const struct vhu_mem_table *t = &m->u.mem;
	struct vhostmem *mem = NULL;
	int ret;

	if (m->size < 8 || t->nregions > VHU_MAX_REGIONS || m->size < 8 + 32 * t->nregions ||
	    m->nfds != t->nregions) {
		log_error("%s: SET_MEM_TABLE with %u regions, %u bytes and %u fds", s->name,
			  t->nregions, m->size, m->nfds);
		return -EPROTO;
	}
	if ((ret = vhostmem_new(&mem)) < 0)
		return ret;
	for (unsigned i = 0; i < t->nregions; i++) {
		const struct vhu_region *r = &t->regions[i];

		ret = vhostmem_add_fd(mem, r->guest_phys, r->size, r->user_addr, m->fds[i],
				      r->mmap_offset);
		if (ret < 0) {
			log_error("%s: cannot map guest memory region %u (gpa 0x%llx, %llu bytes): %s",
				  s->name, i, (unsigned long long)r->guest_phys,
				  (unsigned long long)r->size, strerror(-ret));
			vhostmem_free(mem);
			return -EINVAL;     /* a failed ack, not a protocol error */
		}
	}
	/* Rings must not see the old mapping go: take them back, swap,
	 * start them again over the new table. */
	vhostsrv_stop_all(s);
	vhostsrv_set_mem(s, mem);
	vhostsrv_reconcile(s);
	return 0;
}

static int vhostsrv_get_inflight(struct vhostsrv *s, struct vhostsrv_msg *m)
{
	struct vhu_inflight in = m->u.inflight;
	CLEANUP_CLOSE int fd = -1;
	uint64_t len;
	void *p;

	if (in.num_queues == 0 || in.num_queues > s->nqueues || in.queue_size == 0 ||
	    in.queue_size > VIRTQ_MAX_SIZE) {
		log_error("%s: GET_INFLIGHT_FD for %u queues of %u entries", s->name,
			  in.num_queues, in.queue_size);
		return -EINVAL;
	}
	len = in.num_queues * vhostvq_inflight_bytes(in.queue_size);
	/* The front-end gets this fd: sealed, it cannot shrink the file
	 * under our mapping (SIGBUS) nor change its size at all. */
	fd = memfd_create("diskstack-vhost-inflight", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0 || ftruncate(fd, (off_t)len) < 0 ||
	    fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0)
		return -errno;
	p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		return -errno;
	/* Rings running over the old buffer (none in QEMU's order, but a
	 * front-end may ask again at any time) stop before it goes, and
	 * start again over the new one. */
	vhostsrv_stop_all(s);
	vhostsrv_inflight_unmap(s);
	s->inflight = p;
	s->inflight_len = len;
	s->inflight_queues = in.num_queues;
	s->inflight_qsize = in.queue_size;
	vhostsrv_reconcile(s);
	memset(&in, 0, sizeof(in));
	in.mmap_size = len;
	in.num_queues = s->inflight_queues;
	in.queue_size = s->inflight_qsize;
	return vhostsrv_reply(s, m, &in, sizeof(in), fd);
}

static int vhostsrv_set_inflight(struct vhostsrv *s, struct vhostsrv_msg *m)
{
	const struct vhu_inflight *in = &m->u.inflight;
	CLEANUP_CLOSE int fd = vhostsrv_msg_take_fd(m);
	void *p;

	if (fd < 0)
		return -EPROTO;
	if (in->num_queues == 0 || in->queue_size == 0 || in->queue_size > VIRTQ_MAX_SIZE ||
	    in->mmap_size < in->num_queues * vhostvq_inflight_bytes(in->queue_size) ||
	    in->mmap_size > SIZE_MAX || in->mmap_offset > INT64_MAX) {
		log_error("%s: SET_INFLIGHT_FD with %llu bytes for %u queues of %u entries", s->name,
			  (unsigned long long)in->mmap_size, in->num_queues, in->queue_size);
		return -EINVAL;
	}
	if (vhostmem_fd_seal(fd, "inflight buffer") < 0 ||
	    vhostmem_fd_covers(fd, in->mmap_offset, in->mmap_size) < 0) {
		log_error("%s: SET_INFLIGHT_FD: %llu bytes at offset %llu are past the end of the "
			  "file", s->name, (unsigned long long)in->mmap_size,
			  (unsigned long long)in->mmap_offset);
		return -EINVAL;
	}
	p = mmap(NULL, in->mmap_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd,
		 (off_t)in->mmap_offset);
	if (p == MAP_FAILED)
		return -errno;
	/* Rings running over the old buffer (none in QEMU's order) move. */
	vhostsrv_stop_all(s);
	vhostsrv_inflight_unmap(s);
	s->inflight = p;
	s->inflight_len = in->mmap_size;
	s->inflight_queues = in->num_queues;
	s->inflight_qsize = in->queue_size;
	vhostsrv_reconcile(s);
	return 0;
}

static int vhostsrv_get_config(struct vhostsrv *s, struct vhostsrv_msg *m)
{
	uint32_t off, size, flags;
	uint8_t out[VHU_CONFIG_HDR_BYTES + VHU_CONFIG_MAX];
	int ret = -ENOTSUP;

	memcpy(&off, m->u.bytes, 4);
	memcpy(&size, m->u.bytes + 4, 4);
	memcpy(&flags, m->u.bytes + 8, 4);
	if (size > VHU_CONFIG_MAX || off > VHU_CONFIG_MAX - size)
		return vhostsrv_reply(s, m, NULL, 0, -1);
	memset(out, 0, sizeof(out));
	memcpy(out, m->u.bytes, VHU_CONFIG_HDR_BYTES);
	if (s->ops->get_config)
		ret = s->ops->get_config(s->dev, off, out + VHU_CONFIG_HDR_BYTES, size);
	if (ret < 0) {
		/* An empty reply is the spec's way to fail GET_CONFIG. */
		log_debug("%s: GET_CONFIG %u+%u: %s", s->name, off, size, strerror(-ret));
		return vhostsrv_reply(s, m, NULL, 0, -1);
	}
	return vhostsrv_reply(s, m, out, VHU_CONFIG_HDR_BYTES + size, -1);
}

static int vhostsrv_set_config(struct vhostsrv *s, struct vhostsrv_msg *m)
{
	uint32_t off, size;

	memcpy(&off, m->u.bytes, 4);
	memcpy(&size, m->u.bytes + 4, 4);
	if (size > VHU_CONFIG_MAX || off > VHU_CONFIG_MAX - size ||
	    m->size < VHU_CONFIG_HDR_BYTES + size)
		return -EINVAL;
	if (!s->ops->set_config)
		return -ENOTSUP;
	return s->ops->set_config(s->dev, off, m->u.bytes + VHU_CONFIG_HDR_BYTES, size);
}

/* SET_VRING_KICK, CALL, ERR. */
static int vhostsrv_set_vring_fd(struct vhostsrv *s, struct vhostsrv_msg *m)
{
	struct vhostsrv_queue *q = vhostsrv_msg_queue(s, (uint32_t)(m->u.u64 & VHU_VRING_IDX_MASK));
	bool nofd = m->u.u64 & VHU_VRING_NOFD;
	int fd;

	if (!q)
		return -EINVAL;
	if (!nofd && m->nfds != 1)
		return -EPROTO;
	fd = nofd ? -1 : vhostsrv_msg_take_fd(m);
	switch (m->request) {
	case VHU_SET_VRING_KICK:
		vhostsrv_ring_stop(s, q);
		vhostsrv_close_fd(&q->kick_fd);
		q->kick_fd = fd;
		if (fd < 0)
			log_warn("%s: queue %u: no kick fd (polling mode) is not supported", s->name,
				 q->idx);
		/* The spec: a kick fd starts the ring. */
		q->kicked = true;
		vhostsrv_reconcile(s);
		return 0;
	case VHU_SET_VRING_CALL:
	case VHU_SET_VRING_ERR:
		if (q->running) {
			q->swap_fd = fd;
			q->swap_err = m->request == VHU_SET_VRING_ERR;
			vhostsrv_sync_post(q, &q->swap_task);
		} else if (m->request == VHU_SET_VRING_CALL) {
			vhostsrv_close_fd(&q->call_fd);
			q->call_fd = fd;
		} else {
			vhostsrv_close_fd(&q->err_fd);
			q->err_fd = fd;
		}
		return 0;
	}
	return -EINVAL;
}

/* Expected payload sizes of the fixed-size requests (0: none or variable). */
static int vhostsrv_check_size(const struct vhostsrv_msg *m)
{
	uint32_t want;

	switch (m->request) {
	case VHU_SET_FEATURES:
	case VHU_SET_PROTOCOL_FEATURES:
	case VHU_SET_VRING_KICK:
	case VHU_SET_VRING_CALL:
	case VHU_SET_VRING_ERR:
		want = 8;
		break;
	case VHU_SET_VRING_NUM:
	case VHU_SET_VRING_BASE:
	case VHU_GET_VRING_BASE:
	case VHU_SET_VRING_ENABLE:
		want = sizeof(struct vhu_vring_state);
		break;
	case VHU_SET_VRING_ADDR:
		want = sizeof(struct vhu_vring_addr);
		break;
	case VHU_GET_CONFIG:
	case VHU_SET_CONFIG:
		return m->size >= VHU_CONFIG_HDR_BYTES ? 0 : -EPROTO;
	case VHU_GET_INFLIGHT_FD:
	case VHU_SET_INFLIGHT_FD:
		/* QEMU sends the padded struct (24); the fields end at 20. */
		return m->size >= 20 ? 0 : -EPROTO;
	default:
		return 0;
	}
	return m->size == want ? 0 : -EPROTO;
}

static const char *vhostsrv_req_name(uint32_t r)
{
	static const char *const names[] = {
		[VHU_GET_FEATURES] = "GET_FEATURES", [VHU_SET_FEATURES] = "SET_FEATURES",
		[VHU_SET_OWNER] = "SET_OWNER", [VHU_RESET_OWNER] = "RESET_OWNER",
		[VHU_SET_MEM_TABLE] = "SET_MEM_TABLE", [VHU_SET_LOG_BASE] = "SET_LOG_BASE",
		[VHU_SET_LOG_FD] = "SET_LOG_FD", [VHU_SET_VRING_NUM] = "SET_VRING_NUM",
		[VHU_SET_VRING_ADDR] = "SET_VRING_ADDR", [VHU_SET_VRING_BASE] = "SET_VRING_BASE",
		[VHU_GET_VRING_BASE] = "GET_VRING_BASE", [VHU_SET_VRING_KICK] = "SET_VRING_KICK",
		[VHU_SET_VRING_CALL] = "SET_VRING_CALL", [VHU_SET_VRING_ERR] = "SET_VRING_ERR",
		[VHU_GET_PROTOCOL_FEATURES] = "GET_PROTOCOL_FEATURES",
		[VHU_SET_PROTOCOL_FEATURES] = "SET_PROTOCOL_FEATURES",
		[VHU_GET_QUEUE_NUM] = "GET_QUEUE_NUM", [VHU_SET_VRING_ENABLE] = "SET_VRING_ENABLE",
		[VHU_SET_BACKEND_REQ_FD] = "SET_BACKEND_REQ_FD", [VHU_GET_CONFIG] = "GET_CONFIG",
		[VHU_SET_CONFIG] = "SET_CONFIG", [VHU_GET_INFLIGHT_FD] = "GET_INFLIGHT_FD",
		[VHU_SET_INFLIGHT_FD] = "SET_INFLIGHT_FD", [VHU_RESET_DEVICE] = "RESET_DEVICE",
		[VHU_GET_MAX_MEM_SLOTS] = "GET_MAX_MEM_SLOTS", [VHU_ADD_MEM_REG] = "ADD_MEM_REG",
		[VHU_REM_MEM_REG] = "REM_MEM_REG",
	};

	return r < ARRAY_SIZE(names) && names[r] ? names[r] : "unknown request";
}

/*
 * Handles one message. Returns 0 or a -errno that fails it (acked as a
 * failure when the front-end asked for an ack), or -EPROTO to end the
 * connection.
 */
static int vhostsrv_dispatch(struct vhostsrv *s, struct vhostsrv_msg *m)
{
	struct vhostsrv_queue *q;
	int ret;

	if ((ret = vhostsrv_check_size(m)) < 0) {
		log_error("%s: %s with a %u-byte payload", s->name, vhostsrv_req_name(m->request),
			  m->size);
		return ret;
	}
	switch (m->request) {
	case VHU_GET_FEATURES:
		return vhostsrv_reply_u64(s, m, s->ops->features(s->dev) | VHOSTSRV_FEATURES);
	case VHU_SET_FEATURES:
		s->features = m->u.u64;
		if (s->ops->set_features)
			s->ops->set_features(s->dev, s->features);
		/* Without protocol features rings run without an enable. */
		vhostsrv_reconcile(s);
		return 0;
	case VHU_SET_OWNER:
		return 0;
	case VHU_RESET_OWNER:
	case VHU_RESET_DEVICE:
		vhostsrv_reset_rings(s);
		s->features = 0;
		return 0;
	case VHU_GET_PROTOCOL_FEATURES:
		return vhostsrv_reply_u64(s, m, VHOSTSRV_PROTO | s->ops->protocol_features);
	case VHU_SET_PROTOCOL_FEATURES:
		s->proto = m->u.u64 & (VHOSTSRV_PROTO | s->ops->protocol_features);
		return 0;
	case VHU_GET_QUEUE_NUM:
		return vhostsrv_reply_u64(s, m, s->nqueues);
	case VHU_GET_MAX_MEM_SLOTS:
		return vhostsrv_reply_u64(s, m, VHOSTMEM_MAX_REGIONS);
	case VHU_SET_MEM_TABLE:
		return vhostsrv_set_mem_table(s, m);
	case VHU_SET_VRING_NUM:
		if (!(q = vhostsrv_msg_queue(s, m->u.state.index)))
			return -EINVAL;
		if (m->u.state.num == 0 || m->u.state.num > VIRTQ_MAX_SIZE ||
		    !IS_POW2(m->u.state.num)) {
			log_error("%s: queue %u: size %u is not a power of two up to 32768", s->name,
				  q->idx, m->u.state.num);
			return -EINVAL;
		}
		vhostsrv_ring_stop(s, q);
		q->num = m->u.state.num;
		vhostsrv_reconcile(s);
		return 0;
	case VHU_SET_VRING_ADDR:
		if (!(q = vhostsrv_msg_queue(s, m->u.addr.index)))
			return -EINVAL;
		vhostsrv_ring_stop(s, q);
		q->addr = m->u.addr;
		q->addr_set = true;
		vhostsrv_reconcile(s);
		return 0;
	case VHU_SET_VRING_BASE:
		if (!(q = vhostsrv_msg_queue(s, m->u.state.index)))
			return -EINVAL;
		vhostsrv_ring_stop(s, q);
		q->base = (uint16_t)m->u.state.num;
		vhostsrv_reconcile(s);
		return 0;
	case VHU_GET_VRING_BASE: {
		struct vhu_vring_state st = m->u.state;

		if (!(q = vhostsrv_msg_queue(s, st.index)))
			return -EINVAL;
		/* Stops the ring until the next SET_VRING_KICK. */
		vhostsrv_ring_stop(s, q);
		q->kicked = false;
		vhostsrv_close_fd(&q->kick_fd);
		st.num = q->base;
		return vhostsrv_reply(s, m, &st, sizeof(st), -1);
	}
	case VHU_SET_VRING_KICK:
	case VHU_SET_VRING_CALL:
	case VHU_SET_VRING_ERR:
		return vhostsrv_set_vring_fd(s, m);
	case VHU_SET_VRING_ENABLE:
		if (!(q = vhostsrv_msg_queue(s, m->u.state.index)))
			return -EINVAL;
		q->enabled = m->u.state.num != 0;
		vhostsrv_reconcile(s);
		return 0;
	case VHU_SET_BACKEND_REQ_FD:
		if (m->nfds != 1)
			return -EPROTO;
		vhostsrv_close_fd(&s->backend_fd);
		s->backend_fd = vhostsrv_msg_take_fd(m);
		return 0;
	case VHU_GET_CONFIG:
		return vhostsrv_get_config(s, m);
	case VHU_SET_CONFIG:
		return vhostsrv_set_config(s, m);
	case VHU_GET_INFLIGHT_FD:
		return vhostsrv_get_inflight(s, m);
	case VHU_SET_INFLIGHT_FD:
		return vhostsrv_set_inflight(s, m);
	default:
		/* Not offered (logging, IOTLB, memory slots, ...). */
		log_warn("%s: %s (%u) is not supported", s->name, vhostsrv_req_name(m->request),
			 m->request);
		return -ENOTSUP;
	}
}

/* Requests answered with a reply of their own. */
static bool vhostsrv_has_reply(uint32_t r)
{
	return r == VHU_GET_FEATURES || r == VHU_GET_PROTOCOL_FEATURES || r == VHU_GET_VRING_BASE ||
	       r == VHU_GET_QUEUE_NUM || r == VHU_GET_CONFIG || r == VHU_GET_INFLIGHT_FD ||
	       r == VHU_GET_MAX_MEM_SLOTS;
}

/* Reads and handles one message. Returns 0, or -errno to end the
 * connection (-ENOTCONN: the front-end closed it). */
static int vhostsrv_handle_one(struct vhostsrv *s)
{
	static __thread struct vhostsrv_msg m;
	uint8_t hdr[VHU_HDR_BYTES];
	int ret;

	m.nfds = 0;
	m.replied = false;
	if ((ret = vhostsrv_read_full(s, &m, hdr, sizeof(hdr), true)) < 0)
		goto out;
	memcpy(&m.request, hdr, 4);
	memcpy(&m.flags, hdr + 4, 4);
	memcpy(&m.size, hdr + 8, 4);
	if ((m.flags & VHU_FLAG_VERSION_MASK) != VHU_VERSION || m.size > VHU_MAX_PAYLOAD) {
		log_error("%s: bad message header (request %u, flags 0x%x, %u bytes)", s->name,
			  m.request, m.flags, m.size);
		ret = -EPROTO;
		goto out;
	}
	memset(&m.u, 0, sizeof(m.u));
	if (m.size && (ret = vhostsrv_read_full(s, &m, m.u.bytes, m.size, false)) < 0)
		goto out;
	log_debug("%s: %s (%u bytes, %u fds)", s->name, vhostsrv_req_name(m.request), m.size,
		  m.nfds);
	ret = vhostsrv_dispatch(s, &m);
	if (ret == -EPROTO)
		goto out;
	if (!m.replied && vhostsrv_has_reply(m.request)) {
		/* The front-end waits for this reply: failing it is all we
		 * can do (QEMU then reports the error and may reconnect). */
		log_error("%s: %s failed: %s", s->name, vhostsrv_req_name(m.request),
			  strerror(-ret));
		ret = -EPROTO;
		goto out;
	}
	if (ret < 0)
		log_debug("%s: %s failed: %s", s->name, vhostsrv_req_name(m.request), strerror(-ret));
	/* REPLY_ACK: a status for every request that asked and has no reply
	 * of its own. */
	if (!m.replied && (m.flags & VHU_FLAG_NEED_REPLY) && (s->proto & BIT(VHU_PROTO_REPLY_ACK)))
		ret = vhostsrv_reply_u64(s, &m, ret < 0 ? 1 : 0);
	else
		ret = ret < 0 && m.replied ? ret : 0;
	if (ret == -ECANCELED)
		ret = 0;
out:
	vhostsrv_msg_close_fds(&m);
	return ret;
}

static void vhostsrv_send_config_change(struct vhostsrv *s)
{
	int ret;

	if (s->backend_fd < 0 || !(s->proto & BIT(VHU_PROTO_BACKEND_REQ))) {
		log_debug("%s: config changed, but the front-end gave no back-end channel", s->name);
		return;
	}
	ret = vhostsrv_send(s->backend_fd, VHU_BACKEND_CONFIG_CHANGE_MSG, VHU_VERSION, NULL, 0, -1);
	if (ret < 0)
		log_warn("%s: cannot send CONFIG_CHANGE_MSG: %s", s->name, strerror(-ret));
	else
		log_info("%s: told the front-end the config space changed", s->name);
}

/* ---- the control thread ------------------------------------------------ */

static int vhostsrv_accept(struct vhostsrv *s)
{
	for (;;) {
		int ret = vhostsrv_wait_readable(s, s->listen_fd), fd;

		if (ret < 0)
			return ret;
		fd = accept4(s->listen_fd, NULL, NULL, SOCK_CLOEXEC);
		if (fd >= 0) {
			s->conn_fd = fd;
			return 0;
		}
		if (errno != EINTR && errno != EAGAIN && errno != ECONNABORTED)
			return -errno;
	}
}

static void *vhostsrv_control_main(void *arg)
{
	struct vhostsrv *s = arg;

	for (;;) {
		struct pollfd p[3];
		int ret;

		if (s->conn_fd < 0) {
			if (s->listen_fd < 0 || vhostsrv_accept(s) < 0)
				break;
			log_info("%s: front-end connected", s->name);
			atomic_fetch_add(&s->connections, 1);
		}
		p[0] = (struct pollfd){ .fd = s->conn_fd, .events = POLLIN };
		p[1] = (struct pollfd){ .fd = s->stop_efd, .events = POLLIN };
		p[2] = (struct pollfd){ .fd = s->config_efd, .events = POLLIN };
		if (poll(p, 3, -1) < 0) {
			if (errno == EINTR)
				continue;
			log_error("%s: poll: %s", s->name, strerror(errno));
			break;
		}
		if (p[1].revents)
			break;
		if (p[2].revents) {
			eventfd_t v;

			(void)eventfd_read(s->config_efd, &v);
			vhostsrv_send_config_change(s);
		}
		if (!p[0].revents)
			continue;
		ret = vhostsrv_handle_one(s);
		if (ret == -ECANCELED)
			break;
		if (ret < 0) {
			if (ret == -ENOTCONN)
				log_info("%s: front-end disconnected", s->name);
			else
				log_error("%s: closing the connection: %s", s->name, strerror(-ret));
			vhostsrv_end_session(s);
		}
	}
	/* Stopping (or nothing more to serve): requests in flight finish
	 * and are published before the connection closes. */
	vhostsrv_end_session(s);
	for (unsigned i = 0; i < s->nthreads; i++)
		if (s->threads[i].created)
			reactor_stop(s->threads[i].r);
	return NULL;
}

/* ---- the public API ------------------------------------------------------ */

int vhostsrv_new(const struct vhostsrv_opts *o, struct vhostsrv **out)
{
	struct vhostsrv *s;
	int ret;

	if (!o->ops || o->ops->version < 1 || !o->ops->features || !o->ops->handle ||
	    o->queues == 0 || o->queues > VHOSTSRV_MAX_QUEUES || o->threads > o->queues)
		return -EINVAL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	snprintf(s->name, sizeof(s->name), "%s", o->name ? o->name : "vhost-user");
	s->ops = o->ops;
	s->dev = o->dev;
	s->nqueues = o->queues;
	s->nthreads = o->threads ? o->threads : o->queues;
	s->listen_fd = s->conn_fd = s->backend_fd = -1;
	pthread_mutex_init(&s->sync_mu, NULL);
	pthread_cond_init(&s->sync_cv, NULL);
	s->stop_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	s->config_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	s->queues = calloc(s->nqueues, sizeof(*s->queues));
	s->threads = calloc(s->nthreads, sizeof(*s->threads));
	if (s->stop_efd < 0 || s->config_efd < 0 || !s->queues || !s->threads) {
		ret = s->stop_efd < 0 || s->config_efd < 0 ? -errno : -ENOMEM;
		goto fail;
	}
	for (unsigned i = 0; i < s->nthreads; i++)
		s->threads[i].s = s;
	for (unsigned i = 0; i < s->nqueues; i++) {
		struct vhostsrv_queue *q = &s->queues[i];

		q->s = s;
		q->idx = i;
		q->thr = &s->threads[i % s->nthreads];
		q->kick_fd = q->call_fd = q->err_fd = -1;
		q->kick_op.cb = vhostsrv_kick_cb;
		q->cancel_op.cb = vhostsrv_cancel_cb;
		q->start_task.fn = vhostsrv_start_task;
		q->stop_task.fn = vhostsrv_stop_task;
		q->finish_task.fn = vhostsrv_finish_task;
		q->call_task.fn = vhostsrv_call_task;
		q->swap_task.fn = vhostsrv_swap_task;
	}
	if (o->ops->attach && (ret = o->ops->attach(o->dev, s)) < 0)
		goto fail;
	s->attached = true;
	*out = s;
	return 0;
fail:
	vhostsrv_free(s);
	return ret;
}

int vhostsrv_listen_unix(struct vhostsrv *s, const char *path, char *err, size_t errlen)
{
	int fd, ret;

	if (s->listen_fd >= 0)
		return errbuf_fail(err, errlen, -EBUSY, "already listening");
	if ((ret = netsrv_unix_listen_socket(path, &fd, err, errlen)) < 0)
		return ret;
	s->path = strdup(path);
	if (!s->path) {
		close(fd);
		unlink(path);
		return errbuf_fail(err, errlen, -ENOMEM, "out of memory");
	}
	s->listen_fd = fd;
	return 0;
}

int vhostsrv_serve_fd(struct vhostsrv *s, int fd)
{
	if (s->conn_fd >= 0 || s->ctl_started)
		return -EBUSY;
	s->conn_fd = fd;
	atomic_fetch_add(&s->connections, 1);
	return 0;
}

int vhostsrv_start(struct vhostsrv *s)
{
	int ret;

	if (s->started)
		return -EBUSY;
	s->started = true;
	for (unsigned i = 0; i < s->nthreads; i++) {
		struct vhostsrv_thread *th = &s->threads[i];

		pthread_mutex_lock(&s->sync_mu);
		s->sync_done = false;
		pthread_mutex_unlock(&s->sync_mu);
		if ((ret = pthread_create(&th->tid, NULL, vhostsrv_thread_main, th)) != 0)
			goto fail;
		pthread_mutex_lock(&s->sync_mu);
		while (!s->sync_done)
			pthread_cond_wait(&s->sync_cv, &s->sync_mu);
		pthread_mutex_unlock(&s->sync_mu);
		if (th->init_ret < 0) {
			pthread_join(th->tid, NULL);
			ret = -th->init_ret;
			goto fail;
		}
		th->created = true;
	}
	if ((ret = pthread_create(&s->ctl, NULL, vhostsrv_control_main, s)) != 0)
		goto fail;
	s->ctl_started = true;
	return 0;
fail:
	for (unsigned i = 0; i < s->nthreads; i++) {
		if (s->threads[i].created) {
			reactor_stop(s->threads[i].r);
			pthread_join(s->threads[i].tid, NULL);
			s->threads[i].created = false;
		}
	}
	return -ret;
}

void vhostsrv_stop(struct vhostsrv *s)
{
	atomic_store(&s->stopping, true);
	vhostsrv_signal_fd(s->stop_efd);
}

int vhostsrv_wait(struct vhostsrv *s)
{
	if (s->waited || !s->ctl_started)
		return 0;
	pthread_join(s->ctl, NULL);
	for (unsigned i = 0; i < s->nthreads; i++) {
		if (s->threads[i].created) {
			pthread_join(s->threads[i].tid, NULL);
			s->threads[i].created = false;
		}
	}
	s->waited = true;
	return 0;
}

void vhostsrv_config_changed(struct vhostsrv *s)
{
	vhostsrv_signal_fd(s->config_efd);
}

unsigned vhostsrv_connections(struct vhostsrv *s)
{
	return atomic_load(&s->connections);
}

void vhostsrv_free(struct vhostsrv *s)
{
	if (!s)
		return;
	if (s->ctl_started) {
		vhostsrv_stop(s);
		vhostsrv_wait(s);
	} else if (s->queues) {
		vhostsrv_end_session(s);
	}
	if (s->attached && s->ops->detach)
		s->ops->detach(s->dev);
	vhostsrv_close_fd(&s->listen_fd);
	if (s->path)
		unlink(s->path);
	free(s->path);
	vhostsrv_close_fd(&s->stop_efd);
	vhostsrv_close_fd(&s->config_efd);
	free(s->queues);
	free(s->threads);
	pthread_mutex_destroy(&s->sync_mu);
	pthread_cond_destroy(&s->sync_cv);
	free(s);
}
