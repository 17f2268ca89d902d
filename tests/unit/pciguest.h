/* SPDX-License-Identifier: MIT */
/*
 * pciguest.h: an in-process guest driver for the NVMe PCI function
 * (nvme_emul/nvme_pci.h), for the unit tests, the fuzz target and the
 * benchmark: guest memory is a malloc'd buffer (GPA = offset; anything
 * past it fails with -EFAULT), MSI-X messages are counted per vector
 * (data = vector), and the function's reactor is run on the calling
 * thread. It brings the controller up as the Linux NVMe PCI driver does
 * (docs/nvme.md). No cmocka: calls return 0 or -errno.
 */
#ifndef DISKSTACK_TESTS_PCIGUEST_H
#define DISKSTACK_TESTS_PCIGUEST_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "nvme_emul/nvme_pci.h"

#define PG_MAXQ 8

struct pg_queue {
	uint64_t sq, cq;                /* GPAs */
	uint32_t size, sq_tail, cq_head;
	bool phase;
};

struct pg {
	uint8_t *mem;
	uint64_t mem_bytes, brk;        /* bump allocator of 4 KiB pages */
	bool no_map;                    /* offer no mem_map (copy path) */
	struct reactor *r;
	struct nvmeemu_pci *p;
	atomic_uint msi[NVMEEMU_PCI_MAX_VECTORS];
	struct pg_queue q[PG_MAXQ + 1];
	unsigned nq;
	uint16_t cid;
};

/* Guest memory of @mem_bytes and a function on reactor @r over @s. */
int pg_new(struct pg *g, struct nvmeemu_subsys *s, struct reactor *r, uint64_t mem_bytes,
	   uint16_t max_io_queues);
void pg_free(struct pg *g);
/* @n 4 KiB pages of guest memory (zeroed): their GPA. */
uint64_t pg_alloc(struct pg *g, unsigned n);
static inline uint8_t *pg_ptr(struct pg *g, uint64_t gpa) { return g->mem + gpa; }

uint32_t pg_rd32(struct pg *g, uint64_t off);
void pg_wr32(struct pg *g, uint64_t off, uint32_t v);
/* Config space, BAR programming and MSI-X, then the Linux register
 * sequence (CC = 0, AQA 1Fh/1Fh, ASQ, ACQ, CC 460000h, CC 460001h, poll
 * RDY), admin queues of @asize entries. */
int pg_enable(struct pg *g, uint32_t asize);
/* CC.EN = 0 and waits for RDY = 0. */
int pg_disable(struct pg *g);
/* Runs the reactor until @cond(g, arg) holds (-ETIMEDOUT after ~10 s). */
int pg_run_until(struct pg *g, bool (*cond)(struct pg *, void *), void *arg);

/* Writes @sqe (64 bytes; its CID is set) to queue @q's SQ without
 * ringing: returns the CID. */
uint16_t pg_push(struct pg *g, unsigned q, uint8_t sqe[64]);
void pg_ring(struct pg *g, unsigned q);
/* The next completion of queue @q if its phase says it is there (copies
 * it to @cqe, advances and rings the head doorbell). */
bool pg_pop(struct pg *g, unsigned q, uint8_t cqe[16]);
/* The same without the doorbell, and the doorbell for what was reaped
 * (Linux rings the CQ head once per batch of completions). */
bool pg_reap(struct pg *g, unsigned q, uint8_t cqe[16]);
void pg_cq_ring(struct pg *g, unsigned q);
/* Submits @sqe on @q, waits for its completion; returns the status field
 * (DNR included) and fills @cqe (may be NULL); -errno on a stall. */
int pg_cmd(struct pg *g, unsigned q, uint8_t sqe[64], uint8_t *cqe);

/* Admin: Set Features Number of Queues, then @n CQ/SQ pairs of @size
 * entries, CQ i on vector i. */
int pg_create_queues(struct pg *g, unsigned n, uint32_t size);
/* An SQE (opcode, NSID, PRP1, PRP2, CDW10..12). */
void pg_sqe(uint8_t sqe[64], uint8_t opc, uint32_t nsid, uint64_t prp1, uint64_t prp2,
	    uint32_t d10, uint32_t d11, uint32_t d12);
/* Fills PRP1/PRP2 of @sqe for @len bytes at the guest pages @pages
 * (PRP1 at offset @off0 in pages[0]); a list goes to @list (a GPA). */
void pg_prps(struct pg *g, uint8_t sqe[64], const uint64_t *pages, unsigned npages, uint32_t off0,
	     uint64_t len, uint64_t list);

#endif
