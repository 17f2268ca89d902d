/* SPDX-License-Identifier: MIT */
/*
 * test-vhost-virtpci.c: UML virt-pci, the device side (vhost/virtpci.c on
 * vhost/server.c), driven through its two virtqueues by the host-side
 * test front-end (vhostfront.h) the way Linux's arch/um/drivers/virt-pci.c
 * drives it: struct virtio_pcidev_msg requests on queue 0 (reads with a
 * writable answer buffer, posted writes with the data in the same or a
 * second buffer), interrupt buffers posted on queue 1. The PCI function is
 * a tiny test device: a config space and a BAR 0 register file, where a
 * write to the doorbell register raises one MSI and a write to the DMA
 * register copies guest memory.
 */
#include "config.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "common/compiler.h"
#include "common/endian.h"
#include "tests/unit/testutil.h"
#include "tests/unit/vhosttest.h"
#include "vhost/proto.h"
#include "vhost/vhost.h"
#include "vhost/virtpci.h"

#define CMD 0
#define IRQ 1
#define BAR0_BYTES 4096
/* Test device registers in BAR 0. */
#define REG_DOORBELL 0x10       /* le32 write: MSI with this data */
#define REG_DMA 0x20            /* le64 write: copy 64 bytes from gpa to gpa + 4096 */
#define REG_DMA_STATUS 0x28     /* le32: the DMA's return value */
#define MSI_ADDR 0xa0000ull     /* what UML programs into every MSI-X entry */

struct tdev {
	struct virtpci *vp;
	uint8_t cfg[256];
	uint8_t bar0[BAR0_BYTES];
	unsigned sessions_up, sessions_down;
	unsigned bad_bar;
};

static void tdev_config_read(void *dev, uint32_t off, void *buf, uint32_t len)
{
	struct tdev *d = dev;

	if (off + len <= sizeof(d->cfg))
		memcpy(buf, d->cfg + off, len);
}

static void tdev_config_write(void *dev, uint32_t off, const void *buf, uint32_t len)
{
	struct tdev *d = dev;

	/* Vendor and device IDs are read-only, as on real hardware. */
	if (off >= 4 && off + len <= sizeof(d->cfg))
		memcpy(d->cfg + off, buf, len);
}

static void tdev_bar_read(void *dev, unsigned bar, uint64_t off, void *buf, uint32_t len)
{
	struct tdev *d = dev;

	if (bar != 0 || off + len > BAR0_BYTES) {
		d->bad_bar++;
		return;
	}
	memcpy(buf, d->bar0 + off, len);
}

static void tdev_bar_write(void *dev, unsigned bar, uint64_t off, const void *buf, uint32_t len)
{
	struct tdev *d = dev;

	if (bar != 0 || off + len > BAR0_BYTES) {
		d->bad_bar++;
		return;
	}
	memcpy(d->bar0 + off, buf, len);
	if (off == REG_DOORBELL && len == 4) {
		assert_int_equal(virtpci_msi(d->vp, MSI_ADDR, ds_get_le32(buf)), 0);
	} else if (off == REG_DMA && len == 8) {
		uint64_t gpa = ds_get_le64(buf);
		uint8_t tmp[64];
		int ret = virtpci_mem_read(d->vp, gpa, tmp, sizeof(tmp));

		if (ret == 0)
			ret = virtpci_mem_write(d->vp, gpa + 4096, tmp, sizeof(tmp));
		ds_put_le32(d->bar0 + REG_DMA_STATUS, (uint32_t)ret);
	}
}

static void tdev_session(void *dev, bool connected)
{
	struct tdev *d = dev;

	if (connected)
		d->sessions_up++;
	else
		d->sessions_down++;
}

static const struct virtpci_dev_ops tdev_ops = {
	.config_read = tdev_config_read,
	.config_write = tdev_config_write,
	.bar_read = tdev_bar_read,
	.bar_write = tdev_bar_write,
	.session = tdev_session,
};

struct fix {
	struct vt vt;
	struct tdev d;
};

static void fix_setup(struct fix *x)
{
	struct virtpci_opts po = { .name = "virtpci-test", .ops = &tdev_ops, .dev = &x->d };
	struct vt_opts o = { .ops = &virtpci_vhost_ops, .queues = 2 };

	memset(x, 0, sizeof(*x));
	x->d.cfg[0] = 0x14;     /* vendor 1414h, device c03eh */
	x->d.cfg[1] = 0x14;
	x->d.cfg[2] = 0x3e;
	x->d.cfg[3] = 0xc0;
	assert_int_equal(virtpci_new(&po, &x->d.vp), 0);
	o.dev = x->d.vp;
	vt_setup(&x->vt, &o);
	assert_int_equal(x->d.sessions_up, 1);
}

static void fix_teardown(struct fix *x)
{
	struct virtpci *vp = x->d.vp;

	vt_teardown(&x->vt);
	assert_int_equal(x->d.sessions_down, 1);
	virtpci_free(vp);
}

static void put_hdr(uint8_t *p, uint8_t op, uint8_t bar, uint32_t size, uint64_t addr)
{
	memset(p, 0, VIRTPCI_MSG_HDR_BYTES);
	p[0] = op;
	p[1] = bar;
	ds_put_le32(p + 4, size);
	ds_put_le64(p + 8, addr);
}

/*
 * One request on queue 0 as virt-pci sends it: the header, then @dlen data
 * bytes in the same buffer (@split: in a second readable buffer, as
 * um_pci_send_cmd does for a non-posted copy), then an @alen-byte answer
 * buffer when @alen. Returns the used length; the answer in @ans.
 */
static uint32_t cmd(struct fix *x, uint8_t op, uint8_t bar, uint64_t addr, uint32_t size,
		    const void *data, uint32_t dlen, bool split, void *ans, uint32_t alen)
{
	struct vfront *f = x->vt.f;
	uint64_t msg = vfront_alloc(f, VIRTPCI_MSG_HDR_BYTES + dlen + 8);
	uint64_t dgpa = msg + VIRTPCI_MSG_HDR_BYTES;
	uint64_t agpa = alen ? vfront_alloc(f, alen) : 0;
	struct vfront_buf b[3];
	unsigned n = 0;
	uint16_t id;
	uint32_t len = UINT32_MAX;

	assert_true(msg != 0);
	put_hdr(vfront_ptr(f, msg), op, bar, size, addr);
	if (dlen)
		memcpy(vfront_ptr(f, dgpa), data, dlen);
	if (split && dlen) {
		b[n++] = (struct vfront_buf){ msg, VIRTPCI_MSG_HDR_BYTES, false };
		b[n++] = (struct vfront_buf){ dgpa, dlen, false };
	} else {
		b[n++] = (struct vfront_buf){ msg, VIRTPCI_MSG_HDR_BYTES + dlen, false };
	}
	if (alen) {
		memset(vfront_ptr(f, agpa), 0xee, alen);
		b[n++] = (struct vfront_buf){ agpa, alen, true };
	}
	assert_true(vfront_add_chain(f, CMD, b, n, false) >= 0);
	assert_int_equal(vfront_wait_used(f, CMD, &id, &len), 0);
	if (alen)
		memcpy(ans, vfront_ptr(f, agpa), alen);
	return len;
}

static uint32_t rd32(struct fix *x, uint8_t op, uint64_t addr)
{
	uint8_t a[8];

	assert_int_equal(cmd(x, op, 0, addr, 4, NULL, 0, false, a, sizeof(a)), 4);
	return ds_get_le32(a);
}

static void wr32(struct fix *x, uint8_t op, uint64_t addr, uint32_t v)
{
	uint8_t d[8] = { 0 };

	/* virt-pci sends config writes with all 8 data bytes. */
	ds_put_le32(d, v);
	assert_int_equal(cmd(x, op, 0, addr, 4, d, op == VIRTPCI_OP_CFG_WRITE ? 8 : 4, false,
			     NULL, 0), 0);
}

/* Posts an interrupt buffer (20 bytes, as virt-pci's NUM_IRQ_MSGS). */
static uint64_t post_irq_buf(struct fix *x)
{
	struct vfront *f = x->vt.f;
	uint64_t gpa = vfront_alloc(f, 20);
	struct vfront_buf b = { gpa, 20, true };

	memset(vfront_ptr(f, gpa), 0, 20);
	assert_true(vfront_add_chain(f, IRQ, &b, 1, false) >= 0);
	return gpa;
}

/* Waits for the next interrupt message and checks it is MSI @data. */
static void expect_msi(struct fix *x, uint64_t *gpas, unsigned nbufs, uint32_t data)
{
	struct vfront *f = x->vt.f;
	uint16_t id;
	uint32_t len;
	const uint8_t *m = NULL;

	assert_int_equal(vfront_wait_used(f, IRQ, &id, &len), 0);
	assert_int_equal(len, 20);
	/* The used id is the descriptor head: find which buffer it was by
	 * its content (the others are still zero). */
	for (unsigned i = 0; i < nbufs; i++) {
		const uint8_t *p = vfront_ptr(f, gpas[i]);

		if (p[0] == VIRTPCI_OP_MSI && ds_get_le32(p + 16) == data)
			m = p;
	}
	assert_non_null(m);
	assert_int_equal(ds_get_le32(m + 4), 4);
	assert_int_equal(ds_get_le64(m + 8), MSI_ADDR);
}

static void test_virtpci_config(void **state UNUSED)
{
	struct fix x;
	uint8_t a[8];

	fix_setup(&x);
	assert_int_equal(rd32(&x, VIRTPCI_OP_CFG_READ, 0), 0xc03e1414);
	/* 1- and 2-byte reads answer exactly that many bytes. */
	assert_int_equal(cmd(&x, VIRTPCI_OP_CFG_READ, 0, 2, 2, NULL, 0, false, a, sizeof(a)), 2);
	assert_int_equal(ds_get_le16(a), 0xc03e);
	assert_int_equal(a[2], 0xee);
	assert_int_equal(cmd(&x, VIRTPCI_OP_CFG_READ, 0, 1, 1, NULL, 0, false, a, sizeof(a)), 1);
	assert_int_equal(a[0], 0x14);
	wr32(&x, VIRTPCI_OP_CFG_WRITE, 0x10, 0xf0000004);
	assert_int_equal(rd32(&x, VIRTPCI_OP_CFG_READ, 0x10), 0xf0000004);
	/* What the device does not answer reads as all-ones. */
	assert_int_equal(rd32(&x, VIRTPCI_OP_CFG_READ, 0x400), 0xffffffff);
	/* An access size PCI config space does not have answers nothing. */
	assert_int_equal(cmd(&x, VIRTPCI_OP_CFG_READ, 0, 0, 3, NULL, 0, false, a, sizeof(a)), 0);
	assert_int_equal(cmd(&x, VIRTPCI_OP_CFG_READ, 0, 8192, 4, NULL, 0, false, a, sizeof(a)), 0);
	fix_teardown(&x);
}

static void test_virtpci_bar(void **state UNUSED)
{
	struct fix x;
	uint8_t big[300], back[300], a[8];

	fix_setup(&x);
	wr32(&x, VIRTPCI_OP_MMIO_WRITE, 0x100, 0x12345678);
	assert_int_equal(rd32(&x, VIRTPCI_OP_MMIO_READ, 0x100), 0x12345678);
	assert_memory_equal(x.d.bar0 + 0x100, "\x78\x56\x34\x12", 4);
	/* 8-byte access. */
	ds_put_le64(a, 0x1122334455667788ull);
	assert_int_equal(cmd(&x, VIRTPCI_OP_MMIO_WRITE, 0, 0x200, 8, a, 8, false, NULL, 0), 0);
	memset(a, 0, sizeof(a));
	assert_int_equal(cmd(&x, VIRTPCI_OP_MMIO_READ, 0, 0x200, 8, NULL, 0, false, a, 8), 8);
	assert_int_equal(ds_get_le64(a), 0x1122334455667788ull);
	/* memcpy_toio / memcpy_fromio: long copies, data in a second buffer. */
	for (unsigned i = 0; i < sizeof(big); i++)
		big[i] = (uint8_t)(i * 7 + 1);
	assert_int_equal(cmd(&x, VIRTPCI_OP_MMIO_WRITE, 0, 0x400, sizeof(big), big, sizeof(big),
			     true, NULL, 0), 0);
	assert_memory_equal(x.d.bar0 + 0x400, big, sizeof(big));
	assert_int_equal(cmd(&x, VIRTPCI_OP_MMIO_READ, 0, 0x400, sizeof(back), NULL, 0, false,
			     back, sizeof(back)), sizeof(back));
	assert_memory_equal(back, big, sizeof(big));
	/* memset_io: one data byte, size times. */
	assert_int_equal(cmd(&x, VIRTPCI_OP_MMIO_MEMSET, 0, 0x800, 100, "\x5a", 1, false, NULL, 0),
			 0);
	for (unsigned i = 0; i < 100; i++)
		assert_int_equal(x.d.bar0[0x800 + i], 0x5a);
	assert_int_equal(x.d.bar0[0x800 + 100], 0);
	/* A write whose data are shorter than its size is dropped. */
	assert_int_equal(cmd(&x, VIRTPCI_OP_MMIO_WRITE, 0, 0x900, 8, "abcd", 4, false, NULL, 0), 0);
	assert_int_equal(x.d.bar0[0x900], 0);
	/* A read larger than its answer buffer fills the buffer only. */
	assert_int_equal(cmd(&x, VIRTPCI_OP_MMIO_READ, 0, 0x400, 64, NULL, 0, false, a, 8), 8);
	assert_memory_equal(a, big, 8);
	/* Malformed: a header cut short, an unknown op, BAR 7. */
	{
		struct vfront *f = x.vt.f;
		uint64_t g = vfront_alloc(f, 16);
		struct vfront_buf b = { g, 8, false };
		uint16_t id;
		uint32_t len;

		put_hdr(vfront_ptr(f, g), VIRTPCI_OP_MMIO_WRITE, 0, 4, 0);
		assert_true(vfront_add_chain(f, CMD, &b, 1, false) >= 0);
		assert_int_equal(vfront_wait_used(f, CMD, &id, &len), 0);
		assert_int_equal(len, 0);
	}
	assert_int_equal(cmd(&x, 99, 0, 0, 4, NULL, 0, false, a, 8), 0);
	assert_int_equal(cmd(&x, VIRTPCI_OP_MMIO_READ, 7, 0, 4, NULL, 0, false, a, 8), 0);
	assert_int_equal(x.d.bad_bar, 0);
	fix_teardown(&x);
}

static void test_virtpci_msi(void **state UNUSED)
{
	struct fix x;
	uint64_t bufs[4];

	fix_setup(&x);
	/* An interrupt raised before UML posted any buffer waits for one. */
	wr32(&x, VIRTPCI_OP_MMIO_WRITE, REG_DOORBELL, 33);
	/* The same message again before delivery is merged. */
	wr32(&x, VIRTPCI_OP_MMIO_WRITE, REG_DOORBELL, 33);
	/* A different vector is its own message. */
	wr32(&x, VIRTPCI_OP_MMIO_WRITE, REG_DOORBELL, 34);
	bufs[0] = post_irq_buf(&x);
	expect_msi(&x, bufs, 1, 33);
	bufs[1] = post_irq_buf(&x);
	expect_msi(&x, bufs, 2, 34);
	assert_int_equal(virtpci_msi_count(x.d.vp), 2);
	/* Nothing more is owed: new buffers stay with the device (a
	 * config read afterwards has passed through the device's thread,
	 * not queue 1's, so this only checks nothing arrived by then). */
	bufs[2] = post_irq_buf(&x);
	bufs[3] = post_irq_buf(&x);
	(void)rd32(&x, VIRTPCI_OP_CFG_READ, 0);
	assert_int_equal(vfront_used_idx(x.vt.f, IRQ), 2);
	/* With buffers posted, a doorbell interrupts at once. */
	memset(vfront_ptr(x.vt.f, bufs[0]), 0, 20);
	memset(vfront_ptr(x.vt.f, bufs[1]), 0, 20);
	wr32(&x, VIRTPCI_OP_MMIO_WRITE, REG_DOORBELL, 35);
	expect_msi(&x, bufs, 4, 35);
	assert_int_equal(virtpci_intx(x.d.vp, 0), -EINVAL);
	/* Teardown: the one buffer still held is handed back unused. */
	fix_teardown(&x);
}

static void test_virtpci_dma(void **state UNUSED)
{
	struct fix x;
	uint8_t a[8], pat[64];
	uint64_t gpa;

	fix_setup(&x);
	gpa = vfront_alloc(x.vt.f, 8192);
	for (unsigned i = 0; i < sizeof(pat); i++)
		pat[i] = (uint8_t)(0xa0 ^ i);
	memcpy(vfront_ptr(x.vt.f, gpa), pat, sizeof(pat));
	ds_put_le64(a, gpa);
	assert_int_equal(cmd(&x, VIRTPCI_OP_MMIO_WRITE, 0, REG_DMA, 8, a, 8, false, NULL, 0), 0);
	assert_int_equal(rd32(&x, VIRTPCI_OP_MMIO_READ, REG_DMA_STATUS), 0);
	assert_memory_equal(vfront_ptr(x.vt.f, gpa + 4096), pat, sizeof(pat));
	/* The same guest memory through a plain pointer (our own mapping of
	 * the front-end's memfd). */
	assert_non_null(virtpci_mem_ptr(x.d.vp, gpa, 64));
	assert_memory_equal(virtpci_mem_ptr(x.d.vp, gpa + 4096, 64), pat, sizeof(pat));
	/* Outside guest memory (the pc hole, past the end, wrapping): an
	 * error instead of a fault. */
	assert_int_equal(virtpci_mem_read(x.d.vp, VFRONT_HOLE_START, pat, 8), -EFAULT);
	assert_int_equal(virtpci_mem_write(x.d.vp, vfront_mem_bytes(x.vt.f), pat, 8), -EFAULT);
	assert_int_equal(virtpci_mem_read(x.d.vp, UINT64_MAX - 3, pat, 8), -EFAULT);
	assert_null(virtpci_mem_ptr(x.d.vp, VFRONT_HOLE_START - 4, 8));
	ds_put_le64(a, VFRONT_HOLE_START);
	assert_int_equal(cmd(&x, VIRTPCI_OP_MMIO_WRITE, 0, REG_DMA, 8, a, 8, false, NULL, 0), 0);
	assert_int_equal((int32_t)rd32(&x, VIRTPCI_OP_MMIO_READ, REG_DMA_STATUS), -EFAULT);
	fix_teardown(&x);
	/* No front-end: no memory, no interrupts. */
}

static void test_virtpci_no_session(void **state UNUSED)
{
	struct tdev d = { 0 };
	struct virtpci_opts po = { .ops = &tdev_ops, .dev = &d };
	struct virtpci_opts bad = { .ops = NULL };
	struct virtpci *vp;
	uint8_t b[4];

	assert_int_equal(virtpci_new(&bad, &vp), -EINVAL);
	assert_int_equal(virtpci_new(&po, &vp), 0);
	assert_int_equal(virtpci_msi(vp, MSI_ADDR, 1), -ENOTCONN);
	assert_int_equal(virtpci_mem_read(vp, 0, b, sizeof(b)), -EFAULT);
	assert_null(virtpci_mem_ptr(vp, 0, 4));
	virtpci_free(vp);
	virtpci_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_virtpci_config),
		cmocka_unit_test(test_virtpci_bar),
		cmocka_unit_test(test_virtpci_msi),
		cmocka_unit_test(test_virtpci_dma),
		cmocka_unit_test(test_virtpci_no_session),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
