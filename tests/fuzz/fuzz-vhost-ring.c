/* SPDX-License-Identifier: MIT */
/*
 * fuzz-vhost-ring.c: libFuzzer target for what the vhost-user back-end
 * does with guest-visible ring contents (vhost/vring.c) and the requests
 * in them: virtio-blk (vhost/blk.c) on a mem: disk, or virtio-scsi
 * (vhost/scsi.c) with LUN 0 a mem: disk and LUN 1 a DVD, on its control,
 * event or a request queue. The input is the guest's memory — the
 * descriptor table, the avail ring, indirect tables, headers, data — over
 * a split virtqueue, and every chain vhostvq_pop accepts goes to the
 * device on this thread's reactor, exactly as a queue thread hands it
 * over. Guest memory is two regions with a hole between them, each its
 * own heap block, so AddressSanitizer sees any byte read or written
 * outside them.
 *
 * Input: 4 bytes of set-up, then the bytes of region 1 from its start
 * (gpa 0x20000: descriptor table at 0x20000, avail ring at 0x20400, used
 * ring at 0x20600, free space from 0x21000), then region 0 (gpa 0).
 *   cfg[0]  bits 0-2: queue size 4 << (k % 5); bit 3: EVENT_IDX; bit 4:
 *           INDIRECT_DESC
 *   cfg[1]  bit 0: a disk of 4 KiB sectors; bit 1: virtio-scsi, not blk
 *   cfg[2]  blk: bit 0: a read-only device; scsi: bits 1-2 the virtqueue
 *           (0 control, 1 event, 2 and 3 the request queue); bit 3 (scsi,
 *           event queue): the DVD's medium is ejected while buffers are held
 *   cfg[3]  the avail index to start at
 * Checks, besides memory safety: a popped chain's buffers lie inside the
 * regions and its byte counts add up; a completion's used length is at
 * most the writable bytes; virtio-blk's status byte is one of the three
 * the specification defines, virtio-scsi's response code one of its
 * thirteen; event buffers the device holds come back when the queue
 * stops; a broken ring gives nothing more.
 */
#include "config.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_PRELUDE_INITIALIZE
#include "tests/fuzz/fuzz-prelude.h"
#include "common/compiler.h"
#include "scsi/scsi.h"
#include "storage/disk.h"
#include "storage/layered.h"
#include "vhost/blk.h"
#include "vhost/mem.h"
#include "vhost/proto.h"
#include "vhost/scsi.h"
#include "vhost/vring.h"

#define R0_GPA 0x0ull
#define R0_BYTES 0x10000u
#define R1_GPA 0x20000ull
#define R1_BYTES 0x30000u
#define DESC_OFF 0x0
#define AVAIL_OFF 0x400
#define USED_OFF 0x600

/* One popped request; the event queue's may stay with the device. */
struct fz_slot {
	struct vhost_req req;
	bool done;
	uint32_t written;
	struct vhostvq_chain chain;
	struct iovec scratch[VHOSTVQ_CHAIN_MAX];
	uint8_t *priv;
};

#define FZ_SLOTS (4u * 64u)

static void fz_done(struct vhost_req *req, uint32_t written)
{
	struct fz_slot *fs = req->owner;

	fs->done = true;
	fs->written = written;
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

/* The byte at offset @off of the chain's writable buffers (0 past them). */
static uint8_t fz_in_byte(const struct vhostvq_chain *c, uint64_t off)
{
	for (unsigned k = c->out_cnt; k < c->out_cnt + c->in_cnt; k++) {
		if (off < c->iov[k].iov_len)
			return ((const uint8_t *)c->iov[k].iov_base)[off];
		off -= c->iov[k].iov_len;
	}
	return 0;
}

/* What the device wrote must be a response the driver can read. */
static void fz_check(const struct fz_slot *fs, bool scsi, unsigned qidx)
{
	const struct vhostvq_chain *c = &fs->chain;

	if (fs->written > c->in_bytes || (c->in_cnt == 0 && fs->written != 0))
		abort();
	if (!scsi) {
		if (c->in_cnt) {
			const struct iovec *last = &c->iov[c->out_cnt + c->in_cnt - 1];
			uint8_t st = ((const uint8_t *)last->iov_base)[last->iov_len - 1];

			if (st > VIRTIO_BLK_S_UNSUPP)
				abort();
		}
		return;
	}
	/* virtio 1.2 §5.6.6: the command response's code is byte 11, a
	 * TMF's byte 0, an AN's byte 4; sense_len (bytes 0-3) fits. */
	if (qidx >= VIRTIO_SCSI_VQ_REQUEST && fs->written >= VIRTIO_SCSI_CMD_RESP_BYTES) {
		uint32_t sense_len = fz_in_byte(c, 0) | (uint32_t)fz_in_byte(c, 1) << 8 |
				     (uint32_t)fz_in_byte(c, 2) << 16 |
				     (uint32_t)fz_in_byte(c, 3) << 24;

		if (fz_in_byte(c, 11) > VIRTIO_SCSI_S_INCORRECT_LUN ||
		    sense_len > VIRTIO_SCSI_SENSE_SIZE)
			abort();
	}
	if (qidx == VIRTIO_SCSI_VQ_CONTROL && fs->written >= 1 &&
	    fz_in_byte(c, fs->written >= VIRTIO_SCSI_AN_RESP_BYTES ? 4 : 0) >
		    VIRTIO_SCSI_S_INCORRECT_LUN && fz_in_byte(c, 0) > VIRTIO_SCSI_S_INCORRECT_LUN)
		abort();
}

/* The device: virtio-blk or virtio-scsi, and what to free. */
struct fz_dev {
	const struct vhost_dev_ops *ops;
	void *dev;
	struct disk *d, *medium;
	struct vhostblk *blk;
	struct scsi_target *t;
	struct vhostscsi *scsi;
	struct scsi_lu *lu0;
};

static void fz_dev_new(struct fz_dev *fd, const uint8_t *cfg)
{
	uint32_t ss = cfg[1] & 1 ? 4096 : 512;

	if (ramdisk_new(256 << 10, ss, false, &fd->d, NULL, 0) < 0)
		abort();
	if (!(cfg[1] & 2)) {
		struct vhostblk_opts bo = { .queues = 1, .read_only = cfg[2] & 1 };

		if (vhostblk_new(fd->d, &bo, &fd->blk) < 0)
			abort();
		fd->ops = &vhostblk_ops;
		fd->dev = fd->blk;
		return;
	}
	struct scsi_lu_opts dvd = { .type = SCSI_LU_DVD };
	struct scsi_lu *lu1 = NULL;

	if (ramdisk_new(64 << 10, 2048, true, &fd->medium, NULL, 0) < 0 ||
	    scsi_target_new("iqn.2026-12.org.example:fuzz", &fd->t) < 0 ||
	    scsi_lu_new(fd->d, NULL, &fd->lu0, NULL, 0) < 0 ||
	    scsi_target_add_lu(fd->t, 0, fd->lu0) < 0 ||
	    scsi_lu_new(fd->medium, &dvd, &lu1, NULL, 0) < 0 ||
	    scsi_target_add_lu(fd->t, 1, lu1) < 0 ||
	    vhostscsi_new(fd->t, &(struct vhostscsi_opts){ .request_queues = 1 }, &fd->scsi) < 0 ||
	    vhostscsi_ops.attach(fd->scsi, NULL) < 0)
		abort();
	vhostscsi_ops.set_features(fd->scsi, 1ull << VIRTIO_SCSI_F_HOTPLUG |
					     1ull << VIRTIO_SCSI_F_CHANGE);
	fd->ops = &vhostscsi_ops;
	fd->dev = fd->scsi;
}

static void fz_dev_free(struct fz_dev *fd)
{
	if (fd->scsi)
		vhostscsi_ops.detach(fd->scsi);
	vhostscsi_free(fd->scsi);
	scsi_target_free(fd->t);
	vhostblk_free(fd->blk);
	disk_unref(fd->d);
	disk_unref(fd->medium);
}

static struct fz_slot *slots;
static size_t priv_bytes;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *r0, *r1;
	struct vhostmem *mem = NULL;
	struct vhostvq vq;
	struct fz_dev fd = { 0 };
	unsigned qidx = 0, nslots = 0;
	bool scsi;
	uint16_t qsize;
	size_t n;

	if (size < 4)
		return 0;
	if (!slots) {
		priv_bytes = MAX(vhostblk_ops.req_priv_bytes, vhostscsi_ops.req_priv_bytes);
		slots = calloc(FZ_SLOTS, sizeof(*slots));
		if (!slots)
			abort();
		for (unsigned i = 0; i < FZ_SLOTS; i++)
			if (!(slots[i].priv = calloc(1, priv_bytes)))
				abort();
	}
	qsize = (uint16_t)(4u << (data[0] % 5));
	scsi = data[1] & 2;
	if (scsi)
		qidx = MIN((data[2] >> 1) & 3, VIRTIO_SCSI_VQ_REQUEST);
	r0 = calloc(1, R0_BYTES);
	r1 = calloc(1, R1_BYTES);
	if (!r0 || !r1)
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
	fz_dev_new(&fd, data);
	if (vhostvq_setup(&vq, mem, qsize, r1 + DESC_OFF, r1 + AVAIL_OFF, r1 + USED_OFF,
			  data[0] & 8, data[0] & 16, data[3], NULL) < 0)
		abort();
	for (unsigned i = 0; i < 4u * qsize && nslots < FZ_SLOTS; i++) {
		struct fz_slot *fs = &slots[nslots];
		uint64_t out = 0, in = 0;
		int ret = vhostvq_pop(&vq, &fs->chain);

		if (ret < 0) {
			if (vhostvq_pop(&vq, &fs->chain) != -EIO)
				abort();
			break;
		}
		if (ret == 0 && !vhostvq_enable_notify(&vq))
			break;
		if (ret == 0)
			continue;
		for (unsigned k = 0; k < fs->chain.out_cnt + fs->chain.in_cnt; k++) {
			if (!fz_inside(mem, &fs->chain.iov[k]) || fs->chain.iov[k].iov_len == 0)
				abort();
			*(k < fs->chain.out_cnt ? &out : &in) += fs->chain.iov[k].iov_len;
		}
		if (out != fs->chain.out_bytes || in != fs->chain.in_bytes || fs->chain.head >= qsize)
			abort();
		fs->req = (struct vhost_req){ .qidx = (uint16_t)qidx, .head = fs->chain.head,
					      .reactor = main_reactor, .iov = fs->chain.iov,
					      .out_cnt = fs->chain.out_cnt,
					      .in_cnt = fs->chain.in_cnt,
					      .out_bytes = fs->chain.out_bytes,
					      .in_bytes = fs->chain.in_bytes,
					      .scratch = fs->scratch, .priv = fs->priv,
					      .done = fz_done, .owner = fs };
		fs->done = false;
		memset(fs->priv, 0, priv_bytes);
		fd.ops->handle(fd.dev, &fs->req);
		if (scsi && qidx == VIRTIO_SCSI_VQ_EVENT) {
			/* The device holds event buffers until an event. */
			nslots++;
			continue;
		}
		if (reactor_run_until(main_reactor, &fs->done) < 0)
			abort();
		fz_check(fs, scsi, qidx);
		vhostvq_push(&vq, fs->chain.head, fs->written);
		(void)vhostvq_should_call(&vq);
	}
	if (nslots) {
		/* An event for one held buffer, then the queue stops: the
		 * rest come back as NO_EVENT. */
		if (data[2] & 8 &&
		    scsi_lu_change_media(scsi_target_lu(fd.t, 1), NULL, true) < 0)
			abort();
		if (reactor_run_once(main_reactor, false) < 0)
			abort();
		fd.ops->queue_stop(fd.dev, qidx);
		for (unsigned i = 0; i < nslots; i++) {
			if (reactor_run_until(main_reactor, &slots[i].done) < 0)
				abort();
			fz_check(&slots[i], scsi, qidx);
			vhostvq_push(&vq, slots[i].chain.head, slots[i].written);
		}
	}
	/* A task the device posted to the queue's reactor runs before the
	 * device goes (the server's reactor threads end before it does). */
	if (reactor_run_once(main_reactor, false) < 0)
		abort();
	vhostvq_release(&vq);
	fz_dev_free(&fd);
	vhostmem_free(mem);
	free(r0);
	free(r1);
	return 0;
}
