/* SPDX-License-Identifier: MIT */
/*
 * fuzz-vhost-ring.c: libFuzzer target for what the vhost-user back-end
 * does with guest-visible ring contents (vhost/vring.c) and the virtio-blk
 * requests in them (vhost/blk.c): the input is the guest's memory — the
 * descriptor table, the avail ring, indirect tables, headers, data — over
 * a split virtqueue, and every chain vhostvq_pop accepts goes to the
 * virtio-blk device on a mem: disk on this thread's reactor, exactly as a
 * queue thread hands it over. Guest memory is two regions with a hole
 * between them, each its own heap block, so AddressSanitizer sees any
 * byte read or written outside them.
 *
 * Input: 4 bytes of set-up, then the bytes of region 1 from its start
 * (gpa 0x20000: descriptor table at 0x20000, avail ring at 0x20400, used
 * ring at 0x20600, free space from 0x21000), then region 0 (gpa 0).
 *   cfg[0]  bits 0-2: queue size 4 << (k % 5); bit 3: EVENT_IDX; bit 4:
 *           INDIRECT_DESC
 *   cfg[1]  bit 0: a disk of 4 KiB sectors
 *   cfg[2]  bit 0: a read-only device
 *   cfg[3]  the avail index to start at
 * Checks, besides memory safety: a popped chain's buffers lie inside the
 * regions and its byte counts add up; a completion's used length is at
 * most the writable bytes plus one; the status byte written is one of the
 * three the specification defines; a broken ring gives nothing more.
 */
#include "config.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_PRELUDE_INITIALIZE
#include "tests/fuzz/fuzz-prelude.h"
#include "storage/disk.h"
#include "storage/layered.h"
#include "vhost/blk.h"
#include "vhost/mem.h"
#include "vhost/proto.h"
#include "vhost/vring.h"

#define R0_GPA 0x0ull
#define R0_BYTES 0x10000u
#define R1_GPA 0x20000ull
#define R1_BYTES 0x30000u
#define DESC_OFF 0x0
#define AVAIL_OFF 0x400
#define USED_OFF 0x600

struct fz_req {
	struct vhost_req req;
	bool done;
	uint32_t written;
};

static void fz_done(struct vhost_req *req, uint32_t written)
{
	struct fz_req *fr = req->owner;

	fr->done = true;
	fr->written = written;
}

static bool fz_inside(const struct vhostmem *m, const struct iovec *v)
{
	for (unsigned i = 0; i < m->nregions; i++) {
		const uint8_t *h = m->regions[i].host;

		if ((const uint8_t *)v->iov_base >= h &&
		    (const uint8_t *)v->iov_base + v->iov_len <= h + m->regions[i].size)
			return true;
	}
	return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct vhostvq_chain chain;
	static struct iovec scratch[VHOSTVQ_CHAIN_MAX];
	uint8_t *r0, *r1, *priv;
	struct vhostmem *mem = NULL;
	struct vhostvq vq;
	struct disk *d = NULL;
	struct vhostblk *blk = NULL;
	struct vhostblk_opts bo = { .queues = 1 };
	uint16_t qsize;
	size_t n;

	if (size < 4)
		return 0;
	qsize = (uint16_t)(4u << (data[0] % 5));
	bo.read_only = data[2] & 1;
	r0 = calloc(1, R0_BYTES);
	r1 = calloc(1, R1_BYTES);
	priv = calloc(1, vhostblk_ops.req_priv_bytes);
	if (!r0 || !r1 || !priv)
		abort();
	n = size - 4 < R1_BYTES ? size - 4 : R1_BYTES;
	memcpy(r1, data + 4, n);
	if (size - 4 > R1_BYTES)
		memcpy(r0, data + 4 + R1_BYTES,
		       size - 4 - R1_BYTES < R0_BYTES ? size - 4 - R1_BYTES : R0_BYTES);
	if (vhostmem_new(&mem) < 0 ||
	    vhostmem_add_host(mem, R0_GPA, R0_BYTES, 0x7f0000000000ull, r0) < 0 ||
	    vhostmem_add_host(mem, R1_GPA, R1_BYTES, 0x7f0000020000ull, r1) < 0)
		abort();
	if (ramdisk_new(256 << 10, data[1] & 1 ? 4096 : 512, false, &d, NULL, 0) < 0 ||
	    vhostblk_new(d, &bo, &blk) < 0)
		abort();
	if (vhostvq_setup(&vq, mem, qsize, r1 + DESC_OFF, r1 + AVAIL_OFF, r1 + USED_OFF,
			  data[0] & 8, data[0] & 16, data[3], NULL) < 0)
		abort();
	for (unsigned i = 0; i < 4u * qsize; i++) {
		struct fz_req fr = { .req = { .reactor = main_reactor, .scratch = scratch,
					      .priv = priv, .done = fz_done } };
		uint64_t out = 0, in = 0;
		int ret = vhostvq_pop(&vq, &chain);

		if (ret < 0) {
			if (vhostvq_pop(&vq, &chain) != -EIO)
				abort();
			break;
		}
		if (ret == 0 && !vhostvq_enable_notify(&vq))
			break;
		if (ret == 0)
			continue;
		for (unsigned k = 0; k < chain.out_cnt + chain.in_cnt; k++) {
			if (!fz_inside(mem, &chain.iov[k]) || chain.iov[k].iov_len == 0)
				abort();
			*(k < chain.out_cnt ? &out : &in) += chain.iov[k].iov_len;
		}
		if (out != chain.out_bytes || in != chain.in_bytes || chain.head >= qsize)
			abort();
		fr.req.owner = &fr;
		fr.req.head = chain.head;
		fr.req.iov = chain.iov;
		fr.req.out_cnt = chain.out_cnt;
		fr.req.in_cnt = chain.in_cnt;
		fr.req.out_bytes = chain.out_bytes;
		fr.req.in_bytes = chain.in_bytes;
		memset(priv, 0, vhostblk_ops.req_priv_bytes);
		vhostblk_ops.handle(blk, &fr.req);
		if (reactor_run_until(main_reactor, &fr.done) < 0)
			abort();
		if (fr.written > (chain.in_bytes ? chain.in_bytes : 0) ||
		    (chain.in_cnt == 0 && fr.written != 0))
			abort();
		if (chain.in_cnt) {
			const struct iovec *last = &chain.iov[chain.out_cnt + chain.in_cnt - 1];
			uint8_t st = ((const uint8_t *)last->iov_base)[last->iov_len - 1];

			if (st > VIRTIO_BLK_S_UNSUPP)
				abort();
		}
		vhostvq_push(&vq, chain.head, fr.written);
		(void)vhostvq_should_call(&vq);
	}
	vhostvq_release(&vq);
	vhostblk_free(blk);
	disk_unref(d);
	vhostmem_free(mem);
	free(r0);
	free(r1);
	free(priv);
	return 0;
}
