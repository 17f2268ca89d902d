/* SPDX-License-Identifier: MIT */
/*
 * vring.c: the device side of a split virtqueue (vring.h).
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/compiler.h"
#include "vhost/proto.h"
#include "vhost/vring.h"

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "vhost/: rings and messages are little-endian; big-endian hosts are not supported"
#endif

/* Guest memory changes under us: each shared field is loaded exactly once
 * (relaxed atomics stop the compiler from re-reading it). */
static inline uint16_t vhostvq_load16(const uint16_t *p)
{
	return __atomic_load_n(p, __ATOMIC_RELAXED);
}

static inline void vhostvq_store16(uint16_t *p, uint16_t v)
{
	__atomic_store_n(p, v, __ATOMIC_RELAXED);
}

#define AVAIL_FLAGS(vq) (&(vq)->avail[0])
#define AVAIL_IDX(vq) (&(vq)->avail[1])
#define AVAIL_RING(vq, i) (&(vq)->avail[2 + (i)])
#define USED_EVENT(vq) (&(vq)->avail[2 + (vq)->num])
#define USED_IDX(vq) ((uint16_t *)((vq)->used + 2))
#define USED_ELEM(vq, i) ((vq)->used + 4 + 8 * (size_t)(i))
#define AVAIL_EVENT(vq) ((uint16_t *)((vq)->used + 4 + 8 * (size_t)(vq)->num))

static int vhostvq_cmp_counter(const void *a, const void *b, void *arg)
{
	const struct vhostvq_inflight *inf = arg;
	uint64_t ca = inf->desc[*(const uint16_t *)a].counter;
	uint64_t cb = inf->desc[*(const uint16_t *)b].counter;

	return ca < cb ? -1 : ca > cb;
}

/* Recovers or initialises the inflight region at setup (see vring.h). */
static int vhostvq_inflight_start(struct vhostvq *vq, struct vhostvq_inflight *inf)
{
	uint16_t used_idx = vhostvq_load16(USED_IDX(vq));
	uint64_t maxc = 0;

	vq->inflight = inf;
	if (inf->version != 1 || inf->desc_num != vq->num) {
		/* A fresh region (GET_INFLIGHT_FD gave zeroes) or one for
		 * another ring size: nothing to recover. */
		memset(inf->desc, 0, sizeof(inf->desc[0]) * vq->num);
		inf->version = 1;
		inf->desc_num = vq->num;
		inf->last_batch_head = 0;
		inf->used_idx = used_idx;
		vq->inflight_counter = 1;
		return 0;
	}
	if (inf->used_idx != used_idx) {
		/* Died after publishing last_batch_head's used entry but
		 * before clearing its flag: it is done. */
		if (inf->last_batch_head < vq->num)
			inf->desc[inf->last_batch_head].inflight = 0;
		inf->used_idx = used_idx;
	}
	vq->resubmit = calloc(vq->num, sizeof(*vq->resubmit));
	if (!vq->resubmit)
		return -ENOMEM;
	for (uint16_t i = 0; i < vq->num; i++) {
		if (inf->desc[i].inflight != 1) {
			inf->desc[i].inflight = 0;
			continue;
		}
		vq->resubmit[vq->nresubmit++] = i;
		maxc = MAX(maxc, inf->desc[i].counter);
	}
	qsort_r(vq->resubmit, vq->nresubmit, sizeof(*vq->resubmit), vhostvq_cmp_counter, inf);
	vq->inflight_counter = maxc + 1;
	/* Every entry before the first untaken one was either completed
	 * (used_idx of them) or is in flight. */
	vq->last_avail = (uint16_t)(used_idx + vq->nresubmit);
	vq->used_idx = used_idx;
	return 0;
}

int vhostvq_setup(struct vhostvq *vq, const struct vhostmem *mem, uint16_t num, void *desc,
		  void *avail, void *used, bool event_idx, bool indirect, uint16_t last_avail,
		  struct vhostvq_inflight *inflight)
{
	memset(vq, 0, sizeof(*vq));
	if (num == 0 || !IS_POW2(num) || num > VIRTQ_MAX_SIZE)
		return -EINVAL;
	/* virtio 1.2 §2.7: descriptor table 16-byte, avail 2-byte, used 4-byte aligned. */
	if (((uintptr_t)desc & 15) || ((uintptr_t)avail & 1) || ((uintptr_t)used & 3))
		return -EINVAL;
	vq->num = num;
	vq->mem = mem;
	vq->desc = desc;
	vq->avail = avail;
	vq->used = used;
	vq->event_idx = event_idx;
	vq->indirect = indirect;
	vq->last_avail = last_avail;
	/* The used index is the driver's to reset; after a restart it is
	 * where the previous back-end left it. */
	vq->used_idx = vhostvq_load16(USED_IDX(vq));
	if (inflight)
		return vhostvq_inflight_start(vq, inflight);
	return 0;
}

void vhostvq_release(struct vhostvq *vq)
{
	free(vq->resubmit);
	vq->resubmit = NULL;
	vq->nresubmit = vq->resubmit_pos = 0;
}

uint16_t vhostvq_avail_idx(const struct vhostvq *vq)
{
	return vhostvq_load16(AVAIL_IDX(vq));
}

static int vhostvq_break(struct vhostvq *vq, const char *why)
{
	vq->broken = true;
	vq->why = why;
	return -EIO;
}

/* Adds one descriptor's buffer to @c. */
static int vhostvq_add_buf(struct vhostvq *vq, struct vhostvq_chain *c, uint64_t addr,
			   uint32_t len, uint16_t flags)
{
	bool writable = flags & VIRTQ_DESC_F_WRITE;
	void *p;

	if (!writable && c->in_cnt > 0)
		return vhostvq_break(vq, "a device-readable descriptor after a writable one");
	if (len == 0)
		return 0;
	if (c->out_cnt + c->in_cnt == VHOSTVQ_CHAIN_MAX)
		return vhostvq_break(vq, "more buffers in a chain than the device takes");
	p = vhostmem_gpa(vq->mem, addr, len);
	if (!p)
		return vhostvq_break(vq, "a buffer outside guest memory (or across regions)");
	if (writable) {
		if (c->in_bytes + len > UINT32_MAX)
			return vhostvq_break(vq, "a chain longer than 4 GiB");
		c->in_bytes += len;
		c->iov[c->out_cnt + c->in_cnt++] = (struct iovec){ p, len };
	} else {
		if (c->out_bytes + len > UINT32_MAX)
			return vhostvq_break(vq, "a chain longer than 4 GiB");
		c->out_bytes += len;
		c->iov[c->out_cnt++] = (struct iovec){ p, len };
	}
	return 0;
}

/* Walks an indirect table of @n descriptors at @table. */
static int vhostvq_walk_indirect(struct vhostvq *vq, struct vhostvq_chain *c, const uint8_t *table,
				 uint32_t n)
{
	uint32_t i = 0, visited = 0;

	for (;;) {
		struct virtq_desc d;
		int ret;

		if (visited++ == n)
			return vhostvq_break(vq, "a loop in an indirect table");
		memcpy(&d, table + 16 * (size_t)i, sizeof(d));
		if (d.flags & VIRTQ_DESC_F_INDIRECT)
			return vhostvq_break(vq, "an indirect descriptor inside an indirect table");
		if ((ret = vhostvq_add_buf(vq, c, d.addr, d.len, d.flags)) < 0)
			return ret;
		if (!(d.flags & VIRTQ_DESC_F_NEXT))
			return 0;
		if (d.next >= n)
			return vhostvq_break(vq, "a next index past the indirect table");
		i = d.next;
	}
}

/* Walks the chain at @head into @c. */
static int vhostvq_walk(struct vhostvq *vq, struct vhostvq_chain *c, uint16_t head)
{
	uint16_t i = head;
	unsigned visited = 0;

	c->head = head;
	c->out_cnt = c->in_cnt = 0;
	c->out_bytes = c->in_bytes = 0;
	for (;;) {
		struct virtq_desc d;
		int ret;

		if (visited++ == vq->num)
			return vhostvq_break(vq, "a loop in a descriptor chain");
		memcpy(&d, vq->desc + 16 * (size_t)i, sizeof(d));
		if (d.flags & VIRTQ_DESC_F_INDIRECT) {
			const uint8_t *table;

			if (!vq->indirect)
				return vhostvq_break(vq, "an indirect descriptor without INDIRECT_DESC");
			if (d.flags & VIRTQ_DESC_F_NEXT)
				return vhostvq_break(vq, "an indirect descriptor with NEXT");
			if (d.len == 0 || d.len % 16 || d.len / 16 > VIRTQ_MAX_SIZE)
				return vhostvq_break(vq, "an indirect table of a bad size");
			table = vhostmem_gpa(vq->mem, d.addr, d.len);
			if (!table)
				return vhostvq_break(vq, "an indirect table outside guest memory");
			return vhostvq_walk_indirect(vq, c, table, d.len / 16);
		}
		if ((ret = vhostvq_add_buf(vq, c, d.addr, d.len, d.flags)) < 0)
			return ret;
		if (!(d.flags & VIRTQ_DESC_F_NEXT))
			return 0;
		if (d.next >= vq->num)
			return vhostvq_break(vq, "a next index past the descriptor table");
		i = d.next;
	}
}

int vhostvq_pop(struct vhostvq *vq, struct vhostvq_chain *c)
{
	uint16_t avail_idx, head;

	if (vq->broken)
		return -EIO;
	if (vhostmem_damaged(vq->mem))
		return vhostvq_break(vq, "guest memory shrank under the mapping");
	if (vq->resubmit_pos < vq->nresubmit)
		return vhostvq_walk(vq, c, vq->resubmit[vq->resubmit_pos++]) < 0 ? -EIO : 1;
	avail_idx = vhostvq_load16(AVAIL_IDX(vq));
	if (avail_idx == vq->last_avail)
		return 0;
	if ((uint16_t)(avail_idx - vq->last_avail) > vq->num)
		return vhostvq_break(vq, "an avail index more than the queue size ahead");
	/* The ring entries written before the index are visible after it. */
	__atomic_thread_fence(__ATOMIC_ACQUIRE);
	head = vhostvq_load16(AVAIL_RING(vq, vq->last_avail & (vq->num - 1)));
	if (head >= vq->num)
		return vhostvq_break(vq, "a head index past the descriptor table");
	/* avail_event is left where vhostvq_enable_notify put it: while we
	 * take entries the driver then sees it behind and does not kick
	 * (virtio 1.2 §2.7.10), one eventfd write and one kick read less per
	 * entry it adds meanwhile. enable_notify moves it before we sleep. */
	vq->last_avail++;
	if (vq->inflight) {
		vq->inflight->desc[head].counter = vq->inflight_counter++;
		vq->inflight->desc[head].inflight = 1;
	}
	return vhostvq_walk(vq, c, head) < 0 ? -EIO : 1;
}

void vhostvq_push(struct vhostvq *vq, uint16_t head, uint32_t len)
{
	struct virtq_used_elem e = { .id = head, .len = len };
	struct vhostvq_inflight *inf = vq->inflight;

	if (inf)
		inf->last_batch_head = head;
	memcpy(USED_ELEM(vq, vq->used_idx & (vq->num - 1)), &e, sizeof(e));
	vq->used_idx++;
	/* The entry is visible before the index that publishes it. */
	__atomic_thread_fence(__ATOMIC_RELEASE);
	vhostvq_store16(USED_IDX(vq), vq->used_idx);
	if (inf) {
		__atomic_thread_fence(__ATOMIC_RELEASE);
		inf->desc[head].inflight = 0;
		__atomic_thread_fence(__ATOMIC_RELEASE);
		inf->used_idx = vq->used_idx;
	}
}

bool vhostvq_should_call(struct vhostvq *vq)
{
	uint16_t old = vq->signalled_used, now = vq->used_idx;
	bool valid = vq->signalled_valid;

	if (valid && old == now)
		return false;
	/* Our used index store must be visible before we read the driver's
	 * used_event / flags (virtio 1.2 §2.7.10: else an interrupt can be lost). */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	vq->signalled_used = now;
	vq->signalled_valid = true;
	if (!vq->event_idx)
		return !(vhostvq_load16(AVAIL_FLAGS(vq)) & VIRTQ_AVAIL_F_NO_INTERRUPT);
	if (!valid)
		return true;
	/* vring_need_event: the driver asked to be told when used_idx
	 * passes used_event; did it pass in (old, now]? */
	return (uint16_t)(now - vhostvq_load16(USED_EVENT(vq)) - 1) < (uint16_t)(now - old);
}

bool vhostvq_enable_notify(struct vhostvq *vq)
{
	if (vq->broken)
		return false;
	if (vq->resubmit_pos < vq->nresubmit)
		return true;
	if (vq->event_idx)
		vhostvq_store16(AVAIL_EVENT(vq), vq->last_avail);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	return vhostvq_load16(AVAIL_IDX(vq)) != vq->last_avail;
}
