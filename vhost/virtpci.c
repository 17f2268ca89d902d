/* SPDX-License-Identifier: MIT */
/*
 * virtpci.c: UML virt-pci, the device side (virtpci.h) as a vhost-user
 * device (vhost.h): virtqueue 0 carries UML's config-space and BAR
 * accesses, virtqueue 1 the buffers UML posts for our interrupts.
 *
 * Threads: the server runs each virtqueue on its own reactor thread.
 * Queue 0's thread decodes messages and calls the PCI device. Queue 1's
 * thread alone holds the posted interrupt buffers (a list threaded
 * through each request's private bytes); virtpci_msi, on any thread,
 * queues the message under irq_mu and posts irq_task to queue 1's
 * reactor, which fills buffers. The memory table pointer is swapped by
 * the control thread under mem_lock (write) and read by the DMA
 * accessors under it (read).
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/compiler.h"
#include "common/endian.h"
#include "common/log.h"
#include "common/reactor.h"
#include "storage/disk.h"
#include "vhost/mem.h"
#include "vhost/proto.h"
#include "vhost/vhost.h"
#include "vhost/virtpci.h"

#define VIRTPCI_CMD_VQ 0
#define VIRTPCI_IRQ_VQ 1
/* Distinct interrupt messages waiting for a buffer (UML has at most 32
 * MSI vectors in all, MAX_MSI_VECTORS in virt-pci.c). */
#define VIRTPCI_IRQ_PENDING 64
/* One callback's share of a longer memcpy_fromio/toio. */
#define VIRTPCI_CHUNK 4096
/* An interrupt message: header and a le32 MSI data word. */
#define VIRTPCI_IRQ_MSG_BYTES (VIRTPCI_MSG_HDR_BYTES + 4)

struct virtpci_irq {
	uint8_t op;
	uint32_t size;
	uint64_t addr;
	uint32_t data;
};

struct virtpci {
	char name[64];
	const struct virtpci_dev_ops *ops;
	void *dev;

	pthread_rwlock_t mem_lock;
	const struct vhostmem *mem;     /* the server's; NULL between sessions */

	pthread_mutex_t irq_mu;
	struct virtpci_irq pending[VIRTPCI_IRQ_PENDING];
	unsigned npending;
	bool connected;                 /* a memory table is there */
	struct reactor *irq_reactor;    /* queue 1's, once it handed us a buffer */
	bool irq_posted;
	struct reactor_task irq_task;

	/* Queue 1's thread. */
	struct vhost_req *held;         /* posted buffers, newest first */
	atomic_uint_fast64_t delivered;
};

/* vhost_req.priv of a queue 1 buffer: the next held one. */
struct virtpci_held {
	struct vhost_req *next;
};

/* ---- interrupts (queue 1's thread) ---------------------------------------- */

static struct vhost_req *virtpci_take_buffer(struct virtpci *vp)
{
	struct vhost_req *req = vp->held;

	if (req)
		vp->held = ((struct virtpci_held *)req->priv)->next;
	return req;
}

/* Writes @irq into @req and hands it back to UML. */
static void virtpci_deliver(struct virtpci *vp, struct vhost_req *req, const struct virtpci_irq *irq)
{
	uint8_t msg[VIRTPCI_IRQ_MSG_BYTES] = { irq->op };

	ds_put_le32(msg + 4, irq->size);
	ds_put_le64(msg + 8, irq->addr);
	ds_put_le32(msg + 16, irq->data);
	iov_from_buf(req->iov + req->out_cnt, (int)req->in_cnt, 0, msg,
		     VIRTPCI_MSG_HDR_BYTES + irq->size);
	atomic_fetch_add(&vp->delivered, 1);
	vhost_req_complete(req, VIRTPCI_MSG_HDR_BYTES + irq->size);
}

/* Fills held buffers with queued messages, oldest message first. */
static void virtpci_flush(struct virtpci *vp)
{
	for (;;) {
		struct virtpci_irq irq;
		struct vhost_req *req;

		pthread_mutex_lock(&vp->irq_mu);
		vp->irq_posted = false;
		if (!vp->npending || !vp->held) {
			pthread_mutex_unlock(&vp->irq_mu);
			return;
		}
		irq = vp->pending[0];
		memmove(vp->pending, vp->pending + 1, --vp->npending * sizeof(vp->pending[0]));
		req = virtpci_take_buffer(vp);
		pthread_mutex_unlock(&vp->irq_mu);
		virtpci_deliver(vp, req, &irq);
	}
}

static void virtpci_irq_task(struct reactor_task *t)
{
	virtpci_flush(container_of(t, struct virtpci, irq_task));
}

static void virtpci_irq_buffer(struct virtpci *vp, struct vhost_req *req)
{
	if (req->in_bytes < VIRTPCI_IRQ_MSG_BYTES) {
		/* Too small for any message we send: give it back unused. */
		log_debug("%s: interrupt buffer of %llu bytes ignored", vp->name,
			  (unsigned long long)req->in_bytes);
		vhost_req_complete(req, 0);
		return;
	}
	pthread_mutex_lock(&vp->irq_mu);
	((struct virtpci_held *)req->priv)->next = vp->held;
	vp->held = req;
	vp->irq_reactor = req->reactor;
	pthread_mutex_unlock(&vp->irq_mu);
	virtpci_flush(vp);
}

static int virtpci_queue_irq(struct virtpci *vp, const struct virtpci_irq *irq)
{
	int ret = 0;

	pthread_mutex_lock(&vp->irq_mu);
	if (!vp->connected) {
		ret = -ENOTCONN;
		goto out;
	}
	for (unsigned i = 0; i < vp->npending; i++) {
		const struct virtpci_irq *p = &vp->pending[i];

		/* Not yet seen by the driver: one message covers both. */
		if (p->op == irq->op && p->addr == irq->addr && p->data == irq->data)
			goto out;
	}
	if (vp->npending == VIRTPCI_IRQ_PENDING) {
		ret = -ENOSPC;
		goto out;
	}
	vp->pending[vp->npending++] = *irq;
	if (vp->irq_reactor && !vp->irq_posted) {
		vp->irq_posted = true;
		reactor_post(vp->irq_reactor, &vp->irq_task);
	}
out:
	pthread_mutex_unlock(&vp->irq_mu);
	return ret;
}

int virtpci_msi(struct virtpci *vp, uint64_t addr, uint32_t data)
{
	struct virtpci_irq irq = { .op = VIRTPCI_OP_MSI, .size = 4, .addr = addr, .data = data };

	return virtpci_queue_irq(vp, &irq);
}

int virtpci_intx(struct virtpci *vp, unsigned pin)
{
	struct virtpci_irq irq = { .op = VIRTPCI_OP_INT, .addr = pin };

	if (pin < 1 || pin > 4)
		return -EINVAL;
	return virtpci_queue_irq(vp, &irq);
}

uint64_t virtpci_msi_count(struct virtpci *vp)
{
	return atomic_load(&vp->delivered);
}

/* ---- config space and BAR accesses (queue 0's thread) -------------------- */

/* A read: the answer goes into the writable buffers (all-ones where the
 * device gave nothing, which is what UML assumes on a timeout too). */
static uint32_t virtpci_read(struct virtpci *vp, struct vhost_req *req, uint8_t op, unsigned bar,
			     uint64_t addr, uint32_t size)
{
	const struct iovec *in = req->iov + req->out_cnt;
	uint8_t buf[VIRTPCI_CHUNK];
	uint64_t room = req->in_bytes;
	uint32_t done = 0;

	if (size > room)
		size = (uint32_t)room;
	if (op == VIRTPCI_OP_CFG_READ) {
		if (size != 1 && size != 2 && size != 4 && size != 8)
			return 0;
		memset(buf, 0xff, size);
		vp->ops->config_read(vp->dev, (uint32_t)addr, buf, size);
		return (uint32_t)iov_from_buf(in, (int)req->in_cnt, 0, buf, size);
	}
	while (done < size) {
		uint32_t n = MIN(size - done, (uint32_t)VIRTPCI_CHUNK);

		memset(buf, 0xff, n);
		vp->ops->bar_read(vp->dev, bar, addr + done, buf, n);
		iov_from_buf(in, (int)req->in_cnt, done, buf, n);
		done += n;
	}
	return done;
}

/* A posted write: the data follow the header in the readable buffers. */
static void virtpci_write(struct virtpci *vp, struct vhost_req *req, uint8_t op, unsigned bar,
			  uint64_t addr, uint32_t size)
{
	uint8_t buf[VIRTPCI_CHUNK];
	uint64_t have = req->out_bytes - VIRTPCI_MSG_HDR_BYTES;
	uint32_t done = 0;

	if (op == VIRTPCI_OP_MMIO_MEMSET) {
		/* One data byte, @size times. */
		if (have < 1)
			return;
		iov_to_buf(req->iov, (int)req->out_cnt, VIRTPCI_MSG_HDR_BYTES, buf, 1);
		memset(buf + 1, buf[0], VIRTPCI_CHUNK - 1);
		while (done < size) {
			uint32_t n = MIN(size - done, (uint32_t)VIRTPCI_CHUNK);

			vp->ops->bar_write(vp->dev, bar, addr + done, buf, n);
			done += n;
		}
		return;
	}
	if (size > have) {
		log_debug("%s: write of %u bytes with %llu bytes of data dropped", vp->name, size,
			  (unsigned long long)have);
		return;
	}
	if (op == VIRTPCI_OP_CFG_WRITE) {
		if (size != 1 && size != 2 && size != 4 && size != 8)
			return;
		iov_to_buf(req->iov, (int)req->out_cnt, VIRTPCI_MSG_HDR_BYTES, buf, size);
		vp->ops->config_write(vp->dev, (uint32_t)addr, buf, size);
		return;
	}
	while (done < size) {
		uint32_t n = MIN(size - done, (uint32_t)VIRTPCI_CHUNK);

		iov_to_buf(req->iov, (int)req->out_cnt, VIRTPCI_MSG_HDR_BYTES + done, buf, n);
		vp->ops->bar_write(vp->dev, bar, addr + done, buf, n);
		done += n;
	}
}

static void virtpci_cmd(struct virtpci *vp, struct vhost_req *req)
{
	uint8_t hdr[VIRTPCI_MSG_HDR_BYTES];
	uint32_t size, written = 0;
	uint64_t addr;
	uint8_t op, bar;

	if (req->out_bytes < VIRTPCI_MSG_HDR_BYTES) {
		vhost_req_complete(req, 0);
		return;
	}
	iov_to_buf(req->iov, (int)req->out_cnt, 0, hdr, sizeof(hdr));
	op = hdr[0];
	bar = hdr[1];
	size = ds_get_le32(hdr + 4);
	addr = ds_get_le64(hdr + 8);
	switch (op) {
	case VIRTPCI_OP_CFG_READ:
		if (addr < 4096)
			written = virtpci_read(vp, req, op, 0, addr, size);
		break;
	case VIRTPCI_OP_MMIO_READ:
		if (bar < 6)
			written = virtpci_read(vp, req, op, bar, addr, size);
		break;
	case VIRTPCI_OP_CFG_WRITE:
		/* Linux 6.12's um_pci_bar_set sends its memset as CFG_WRITE
		 * with the BAR set; only a config access has bar 0 and a
		 * size of 1-8. */
		if (addr < 4096)
			virtpci_write(vp, req, op, 0, addr, size);
		break;
	case VIRTPCI_OP_MMIO_WRITE:
	case VIRTPCI_OP_MMIO_MEMSET:
		if (bar < 6)
			virtpci_write(vp, req, op, bar, addr, size);
		break;
	default:
		log_debug("%s: virt-pci message op %u ignored", vp->name, op);
		break;
	}
	vhost_req_complete(req, written);
}

/* ---- the vhost-user device ------------------------------------------------ */

static uint64_t virtpci_features(void *dev UNUSED)
{
	return 0;   /* the transport bits the server adds are all virt-pci needs */
}

static void virtpci_handle(void *dev, struct vhost_req *req)
{
	struct virtpci *vp = dev;

	if (req->qidx == VIRTPCI_IRQ_VQ)
		virtpci_irq_buffer(vp, req);
	else
		virtpci_cmd(vp, req);
}

static void virtpci_queue_stop(void *dev, unsigned qidx)
{
	struct virtpci *vp = dev;
	struct vhost_req *req;

	if (qidx != VIRTPCI_IRQ_VQ)
		return;
	/* The ring waits for every buffer it handed us: give them back
	 * unused; interrupts still queued wait for the next buffers. */
	pthread_mutex_lock(&vp->irq_mu);
	vp->irq_reactor = NULL;
	pthread_mutex_unlock(&vp->irq_mu);
	while ((req = virtpci_take_buffer(vp)))
		vhost_req_complete(req, 0);
}

static void virtpci_mem_changed(void *dev, const struct vhostmem *mem)
{
	struct virtpci *vp = dev;
	bool was;

	pthread_rwlock_wrlock(&vp->mem_lock);
	was = vp->mem != NULL;
	vp->mem = mem;
	pthread_rwlock_unlock(&vp->mem_lock);
	pthread_mutex_lock(&vp->irq_mu);
	vp->connected = mem != NULL;
	if (!mem)
		vp->npending = 0;
	pthread_mutex_unlock(&vp->irq_mu);
	if (was != (mem != NULL) && vp->ops->session)
		vp->ops->session(vp->dev, mem != NULL);
}

const struct vhost_dev_ops virtpci_vhost_ops = {
	.version = VHOST_DEV_OPS_VERSION,
	.name = "virt-pci",
	.features = virtpci_features,
	.req_priv_bytes = sizeof(struct virtpci_held),
	.handle = virtpci_handle,
	.queue_stop = virtpci_queue_stop,
	.mem_changed = virtpci_mem_changed,
};

/* ---- DMA --------------------------------------------------------------------- */

static int virtpci_mem_copy(struct virtpci *vp, uint64_t gpa, void *buf, size_t len, bool write)
{
	uint8_t *p;
	int ret = 0;

	if (!len)
		return 0;
	pthread_rwlock_rdlock(&vp->mem_lock);
	p = vp->mem ? vhostmem_gpa(vp->mem, gpa, len) : NULL;
	if (!p)
		ret = -EFAULT;
	else if (write)
		memcpy(p, buf, len);
	else
		memcpy(buf, p, len);
	pthread_rwlock_unlock(&vp->mem_lock);
	return ret;
}

int virtpci_mem_read(struct virtpci *vp, uint64_t gpa, void *buf, size_t len)
{
	return virtpci_mem_copy(vp, gpa, buf, len, false);
}

int virtpci_mem_write(struct virtpci *vp, uint64_t gpa, const void *buf, size_t len)
{
	return virtpci_mem_copy(vp, gpa, (void *)(uintptr_t)buf, len, true);
}

void *virtpci_mem_ptr(struct virtpci *vp, uint64_t gpa, size_t len)
{
	void *p;

	pthread_rwlock_rdlock(&vp->mem_lock);
	p = vp->mem ? vhostmem_gpa(vp->mem, gpa, len) : NULL;
	pthread_rwlock_unlock(&vp->mem_lock);
	return p;
}

/* ---- life cycle ------------------------------------------------------------ */

int virtpci_new(const struct virtpci_opts *o, struct virtpci **out)
{
	struct virtpci *vp;

	if (!o || !o->ops || !o->ops->config_read || !o->ops->config_write || !o->ops->bar_read ||
	    !o->ops->bar_write)
		return -EINVAL;
	vp = calloc(1, sizeof(*vp));
	if (!vp)
		return -ENOMEM;
	snprintf(vp->name, sizeof(vp->name), "%s", o->name ? o->name : "virt-pci");
	vp->ops = o->ops;
	vp->dev = o->dev;
	pthread_rwlock_init(&vp->mem_lock, NULL);
	pthread_mutex_init(&vp->irq_mu, NULL);
	vp->irq_task.fn = virtpci_irq_task;
	atomic_init(&vp->delivered, 0);
	*out = vp;
	return 0;
}

void virtpci_free(struct virtpci *vp)
{
	if (!vp)
		return;
	pthread_mutex_destroy(&vp->irq_mu);
	pthread_rwlock_destroy(&vp->mem_lock);
	free(vp);
}

int virtpci_server_new(struct virtpci *vp, struct vhostsrv **out)
{
	struct vhostsrv_opts so = {
		.name = vp->name,
		.ops = &virtpci_vhost_ops,
		.dev = vp,
		.queues = 2,
		.threads = 2,
	};

	return vhostsrv_new(&so, out);
}
