/* SPDX-License-Identifier: MIT */
/*
 * vring.h: the device side of a split virtqueue (virtio 1.2 §2.7) over a
 * guest memory table (mem.h), with EVENT_IDX (§2.7.7, §2.7.10), indirect
 * descriptors (§2.7.5.3) and the vhost-user "Inflight I/O tracking" region
 * for reconnects.
 *
 * Notes on the design
 * -------------------
 * - One thread owns a ring (its queue's reactor thread). Nothing here
 *   locks; the guest changes the ring concurrently, so every value read
 *   from guest memory is read once into a local and validated there.
 * - Untrusted chains: vhostvq_pop walks a chain with a bound on the
 *   descriptors visited (the queue size for the ring, the table size for
 *   an indirect table) and on the buffers kept (VHOSTVQ_CHAIN_MAX), checks
 *   every index, flag combination and buffer range (inside one memory
 *   region), refuses a readable descriptor after a writable one, nested
 *   indirect tables, and a chain whose total length does not fit in 32
 *   bits. Any of these breaks the ring (the driver is not following the
 *   specification, virtio 1.2 §2.1.2): the ring stops and stays stopped until the
 *   front-end restarts it. What the buffers contain is the device's to
 *   check (vhostblk answers VIRTIO_BLK_S_IOERR).
 * - Inflight tracking: with a region set (vhostvq_setup's @inflight), a
 *   head is marked in flight when popped and cleared when its used entry
 *   is published, following the spec's split-ring recipe (last_batch_head
 *   and used_idx make the window between the two recoverable). At setup a
 *   region that already describes this ring is recovered: its in-flight
 *   heads are handed out again first, oldest first, and the next avail
 *   index is the used index plus their number.
 * - Each completion publishes used->idx at once (no batching of the index)
 *   so that the inflight region always describes at most one unfinished
 *   publication; interrupts are batched by the caller (vhostvq_should_call).
 */
#ifndef DISKSTACK_VHOST_VRING_H
#define DISKSTACK_VHOST_VRING_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "vhost/mem.h"

/* Buffers (descriptors with a length) one request may have. */
#define VHOSTVQ_CHAIN_MAX 256

/* The spec's split-ring inflight layout (vhost-user, "Inflight I/O
 * tracking"): a 16-byte header and one 16-byte entry per descriptor. */
struct vhostvq_inflight_desc {
	uint8_t inflight;
	uint8_t padding[5];
	uint16_t next;
	uint64_t counter;
};

struct vhostvq_inflight {
	uint64_t features;
	uint16_t version;
	uint16_t desc_num;
	uint16_t last_batch_head;
	uint16_t used_idx;
	struct vhostvq_inflight_desc desc[];
};

/* Bytes of one queue's inflight region for a ring of @num entries
 * (rounded to 64 bytes so that queues do not share cache lines). */
static inline uint64_t vhostvq_inflight_bytes(uint16_t num)
{
	return ((16 + 16 * (uint64_t)num) + 63) & ~(uint64_t)63;
}

struct vhostvq {
	uint16_t num;                   /* queue size, a power of two */
	bool event_idx;                 /* VIRTIO_F_EVENT_IDX negotiated */
	bool indirect;                  /* VIRTIO_F_INDIRECT_DESC negotiated */
	bool broken;                    /* a chain broke the ring: pop returns -EIO */
	uint16_t last_avail;            /* next avail entry to take */
	uint16_t used_idx;              /* our copy of used->idx */
	uint16_t signalled_used;        /* used_idx at the last interrupt */
	bool signalled_valid;
	const struct vhostmem *mem;
	const uint8_t *desc;            /* num x 16 bytes */
	uint16_t *avail;                /* flags, idx, ring[num], used_event */
	uint8_t *used;                  /* flags, idx, ring[num] x 8, avail_event */
	struct vhostvq_inflight *inflight;   /* NULL: no tracking */
	uint64_t inflight_counter;
	uint16_t *resubmit;             /* recovered heads, oldest first */
	unsigned nresubmit, resubmit_pos;
	const char *why;                /* what broke the ring (static string) */
};

/* One request as popped: iov[0, out_cnt) are device-readable, then in_cnt
 * device-writable buffers. Pointers into guest memory. */
struct vhostvq_chain {
	uint16_t head;
	unsigned out_cnt, in_cnt;
	uint64_t out_bytes, in_bytes;
	struct iovec iov[VHOSTVQ_CHAIN_MAX];
};

/*
 * Sets @vq up over @mem (borrowed; must stay while the ring runs) with the
 * ring areas at the given host pointers (already translated and bounds
 * checked by the caller: desc num x 16, avail 6 + 2 num, used 6 + 8 num
 * bytes), starting at avail index @last_avail. @inflight (borrowed, may be
 * NULL) is this ring's tracking region, recovered if it describes a ring
 * of @num entries, else initialised. Returns 0, -EINVAL for a size that is
 * not a power of two in [1, 32768] or misaligned ring areas, -ENOMEM.
 * vhostvq_release frees what setup allocated.
 */
int vhostvq_setup(struct vhostvq *vq, const struct vhostmem *mem, uint16_t num, void *desc,
		  void *avail, void *used, bool event_idx, bool indirect, uint16_t last_avail,
		  struct vhostvq_inflight *inflight);
void vhostvq_release(struct vhostvq *vq);

/*
 * Takes the next request: 1 with @c filled, 0 when the ring is empty, or
 * -EIO when the chain broke the ring (vq->broken and vq->why are set; the
 * ring gives nothing more).
 */
int vhostvq_pop(struct vhostvq *vq, struct vhostvq_chain *c);

/* Publishes @head as used with @len bytes written into its writable
 * buffers. */
void vhostvq_push(struct vhostvq *vq, uint16_t head, uint32_t len);

/* True when the driver wants an interrupt for what was pushed since the
 * last time this returned true (EVENT_IDX's used_event, else the avail
 * ring's NO_INTERRUPT flag). */
bool vhostvq_should_call(struct vhostvq *vq);

/* After vhostvq_pop returned 0: asks for a kick at the next avail entry
 * (EVENT_IDX's avail_event) and returns true when entries arrived
 * meanwhile (pop again instead of waiting for a kick). Only this moves
 * avail_event: while the device pops, the driver does not kick. */
bool vhostvq_enable_notify(struct vhostvq *vq);

/* The avail index the driver published (for tests and stop). */
uint16_t vhostvq_avail_idx(const struct vhostvq *vq);

#endif
