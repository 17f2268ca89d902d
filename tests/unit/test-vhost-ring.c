/* SPDX-License-Identifier: MIT */
/*
 * test-vhost-ring.c: what the vhost-user back-end does with chains a
 * driver must not build (virtio 1.2 §2.7.5, vhost/vring.h): loops, indexes
 * past the table, buffers outside guest memory or across regions,
 * readable after writable, nested or malformed indirect tables, chains too
 * long or too big. Each one stops the ring and signals its error eventfd
 * (the ring works again after a reset), never crashes the back-end; each
 * request-level mistake (a read into device-readable buffers, a short
 * header, no status byte) fails only that request.
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
#include <sys/mman.h>
#include <unistd.h>
#include <cmocka.h>

#include "tests/unit/testutil.h"
#include "tests/unit/vhosttest.h"
#include "vhost/mem.h"
#include "vhost/proto.h"
#include "vhost/vring.h"

#define QSIZE 128
#define D(i) (vfront_desc(t->f, 0)[(i)])
#define R VIRTQ_DESC_F_NEXT
#define W (VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT)

/* The ring's avail index, written directly. */
static uint16_t *avail_idx_ptr(struct vt *t)
{
	return (uint16_t *)vfront_ptr(t->f, 0x100000 + 0x4000) + 1;
}

/* A header for a read of sector 0. */
static uint64_t hdr(struct vt *t, uint32_t type)
{
	uint64_t g = vfront_alloc(t->f, 16);

	memset(vfront_ptr(t->f, g), 0, 16);
	memcpy(vfront_ptr(t->f, g), &type, 4);
	return g;
}

static void desc(struct vt *t, uint16_t i, uint64_t addr, uint32_t len, uint16_t flags,
		 uint16_t next)
{
	D(i) = (struct virtq_desc){ addr, len, flags, next };
}

static void entry(struct virtq_desc *tbl, unsigned i, uint64_t addr, uint32_t len, uint16_t flags,
		  uint16_t next)
{
	tbl[i] = (struct virtq_desc){ addr, len, flags, next };
}

enum { BAD_LAST = 18 };

/* Builds bad chain @n at head 100 (or breaks the avail ring); publishes
 * and kicks. */
static void bad_chain(struct vt *t, int n)
{
	uint64_t h = hdr(t, VIRTIO_BLK_T_IN), buf = vfront_alloc(t->f, 4096);
	uint64_t st = vfront_alloc(t->f, 1), tg = vfront_alloc(t->f, 300 * 16);
	struct virtq_desc *tbl = vfront_ptr(t->f, tg);
	uint16_t head = 100;

	switch (n) {
	case 0:         /* a loop */
		desc(t, 100, h, 16, R, 101);
		desc(t, 101, buf, 512, R, 100);
		break;
	case 1:         /* next past the table */
		desc(t, 100, h, 16, R, QSIZE);
		break;
	case 2:         /* head past the table */
		head = 500;
		break;
	case 3:         /* the avail index far ahead */
		*avail_idx_ptr(t) = (uint16_t)(vfront_avail_idx(t->f, 0) + QSIZE + 1);
		vfront_kick(t->f, 0);
		return;
	case 4:         /* a buffer in the hole between the regions */
		desc(t, 100, VFRONT_HOLE_START + 0x100, 16, 0, 0);
		break;
	case 5:         /* past the end of guest memory */
		desc(t, 100, h, 16, R, 101);
		desc(t, 101, vfront_mem_bytes(t->f) - 8, 16, VIRTQ_DESC_F_WRITE, 0);
		break;
	case 6:         /* across the end of the first region */
		desc(t, 100, VFRONT_HOLE_START - 0x100, 0x200, 0, 0);
		break;
	case 7:         /* an address that wraps */
		desc(t, 100, UINT64_MAX - 0xff, 0x200, 0, 0);
		break;
	case 8:         /* readable after writable */
		desc(t, 100, h, 16, R, 101);
		desc(t, 101, st, 1, W, 102);
		desc(t, 102, buf, 512, 0, 0);
		break;
	case 9:         /* an indirect table inside an indirect table */
		entry(tbl, 0, tg + 32, 16, VIRTQ_DESC_F_INDIRECT, 0);
		desc(t, 100, tg, 32, VIRTQ_DESC_F_INDIRECT, 0);
		break;
	case 10:        /* a loop in an indirect table */
		entry(tbl, 0, h, 16, R, 1);
		entry(tbl, 1, st, 1, W, 0);
		desc(t, 100, tg, 32, VIRTQ_DESC_F_INDIRECT, 0);
		break;
	case 11:        /* an indirect table of a size that is not whole entries */
		entry(tbl, 0, h, 16, 0, 0);
		desc(t, 100, tg, 24, VIRTQ_DESC_F_INDIRECT, 0);
		break;
	case 12:        /* an empty indirect table */
		desc(t, 100, tg, 0, VIRTQ_DESC_F_INDIRECT, 0);
		break;
	case 13:        /* an indirect table outside guest memory */
		desc(t, 100, VFRONT_HOLE_START, 64, VIRTQ_DESC_F_INDIRECT, 0);
		break;
	case 14:        /* INDIRECT with NEXT */
		entry(tbl, 0, h, 16, 0, 0);
		desc(t, 100, tg, 16, VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_NEXT, 101);
		desc(t, 101, st, 1, VIRTQ_DESC_F_WRITE, 0);
		break;
	case 15:        /* next past an indirect table */
		entry(tbl, 0, h, 16, R, 5);
		desc(t, 100, tg, 32, VIRTQ_DESC_F_INDIRECT, 0);
		break;
	case 16:        /* more than 4 GiB in one chain (one buffer, 110 times) */
		for (unsigned i = 0; i < 110; i++)
			entry(tbl, i, 0x1000000, 40 << 20, R, (uint16_t)(i + 1));
		tbl[109].flags = 0;
		desc(t, 100, tg, 110 * 16, VIRTQ_DESC_F_INDIRECT, 0);
		break;
	case 17:        /* more buffers than any request may have */
		for (unsigned i = 0; i < 300; i++)
			entry(tbl, i, buf, 1, R, (uint16_t)(i + 1));
		tbl[299].flags = 0;
		desc(t, 100, tg, 300 * 16, VIRTQ_DESC_F_INDIRECT, 0);
		break;
	}
	vfront_avail_push(t->f, 0, head);
	vfront_kick(t->f, 0);
}

/* The device works (again). */
static void works(struct vt *t)
{
	static uint8_t w[4096], r[4096];
	uint8_t st;

	tu_fill(w, sizeof(w), 4, 0);
	assert_int_equal(vfront_blk(t->f, 0, VIRTIO_BLK_T_OUT, 8, w, sizeof(w), true, &st, NULL), 0);
	assert_int_equal(st, VIRTIO_BLK_S_OK);
	assert_int_equal(vfront_blk(t->f, 0, VIRTIO_BLK_T_IN, 8, r, sizeof(r), false, &st, NULL), 0);
	assert_int_equal(st, VIRTIO_BLK_S_OK);
	assert_memory_equal(r, w, sizeof(w));
}

static void test_vhost_ring_bad_chains(void **state)
{
	struct vt t;

	(void)state;
	vt_setup(&t, &(struct vt_opts){ 0 });
	for (int n = 0; n < BAD_LAST; n++) {
		uint16_t base;

		print_message("bad chain %d\n", n);
		works(&t);
		vfront_arena_reset(t.f);
		bad_chain(&t, n);
		/* The ring stops and says so on its error eventfd. */
		assert_true(vfront_wait_err(t.f, 0, 10000));
		/* A device reset (stop, fresh rings, start) brings it back. */
		assert_int_equal(vfront_stop(t.f, &base), 0);
		assert_int_equal(vfront_start(t.f, false), 0);
		works(&t);
	}
	vt_teardown(&t);
}

/* An indirect descriptor when INDIRECT_DESC was not negotiated. */
static void test_vhost_ring_indirect_not_negotiated(void **state)
{
	struct vt t;
	uint16_t base;

	(void)state;
	vt_setup(&t, &(struct vt_opts){ .fo = { .no_indirect = true } });
	works(&t);
	bad_chain(&t, 10);
	assert_true(vfront_wait_err(t.f, 0, 10000));
	assert_int_equal(vfront_stop(t.f, &base), 0);
	assert_int_equal(vfront_start(t.f, false), 0);
	works(&t);
	vt_teardown(&t);
}

/* Mistakes inside a well-formed chain fail that request only. */
static void test_vhost_ring_bad_requests(void **state)
{
	struct vt t;
	uint64_t h, buf, st, extra;
	uint16_t id;
	uint32_t len;

	(void)state;
	vt_setup(&t, &(struct vt_opts){ 0 });
	works(&t);

	/* A read whose data buffer is device-readable: refused, and the
	 * buffer is left alone. */
	h = hdr(&t, VIRTIO_BLK_T_IN);
	buf = vfront_alloc(t.f, 512);
	st = vfront_alloc(t.f, 1);
	memset(vfront_ptr(t.f, buf), 0x5a, 512);
	assert_true(vfront_add_chain(t.f, 0, (struct vfront_buf[]){ { h, 16, false },
				     { buf, 512, false }, { st, 1, true } }, 3, true) >= 0);
	assert_int_equal(vfront_wait_used(t.f, 0, &id, &len), 0);
	assert_int_equal(*(uint8_t *)vfront_ptr(t.f, st), VIRTIO_BLK_S_IOERR);
	for (unsigned i = 0; i < 512; i++)
		assert_int_equal(((uint8_t *)vfront_ptr(t.f, buf))[i], 0x5a);

	/* A write with device-writable data besides the status. */
	h = hdr(&t, VIRTIO_BLK_T_OUT);
	extra = vfront_alloc(t.f, 512);
	assert_true(vfront_add_chain(t.f, 0, (struct vfront_buf[]){ { h, 16, false },
				     { buf, 512, false }, { extra, 512, true }, { st, 1, true } }, 4,
				     false) >= 0);
	assert_int_equal(vfront_wait_used(t.f, 0, &id, &len), 0);
	assert_int_equal(*(uint8_t *)vfront_ptr(t.f, st), VIRTIO_BLK_S_IOERR);

	/* A header shorter than 16 bytes. */
	h = hdr(&t, VIRTIO_BLK_T_IN);
	assert_true(vfront_add_chain(t.f, 0, (struct vfront_buf[]){ { h, 8, false },
				     { st, 1, true } }, 2, true) >= 0);
	assert_int_equal(vfront_wait_used(t.f, 0, &id, &len), 0);
	assert_int_equal(*(uint8_t *)vfront_ptr(t.f, st), VIRTIO_BLK_S_IOERR);
	assert_int_equal(len, 1);

	/* No writable byte for the status: the buffers come back unused. */
	h = hdr(&t, VIRTIO_BLK_T_OUT);
	assert_true(vfront_add_chain(t.f, 0, (struct vfront_buf[]){ { h, 16, false },
				     { buf, 512, false } }, 2, false) >= 0);
	assert_int_equal(vfront_wait_used(t.f, 0, &id, &len), 0);
	assert_int_equal(len, 0);

	/* The ring never broke. */
	assert_false(vfront_err_signalled(t.f, 0));
	works(&t);
	vt_teardown(&t);
}

/* A front-end whose guest memory file cannot be sealed (QEMU's
 * memory-backend-file, or memory-backend-memfd with seal=off) and that
 * shrinks it after SET_MEM_TABLE: the back-end's next access to the lost
 * pages died of SIGBUS, and with it every device of the process. Now the
 * access reads zeroes, the table says it is damaged and the ring breaks.
 * (A SIGBUS elsewhere goes to the handler that was there before: here
 * cmocka's, which is why no child process tests that.) */
static void test_vhost_ring_unsealed_memory_shrunk_regression(void **state)
{
	const size_t bytes = 64 << 10;
	struct vhostvq vq = { 0 };
	struct vhostvq_chain c;
	struct vhostmem *m;
	uint8_t *p;
	int fd;

	(void)state;
	fd = memfd_create("test-vhost-ring", MFD_CLOEXEC);      /* no sealing */
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)bytes), 0);
	assert_int_equal(vhostmem_new(&m), 0);
	assert_int_equal(vhostmem_add_fd(m, 0, bytes, 0x7e0000000000ull, fd, 0), 0);
	p = vhostmem_gpa(m, 0, bytes);
	assert_non_null(p);
	assert_int_equal(vhostvq_setup(&vq, m, QSIZE, p, p + 4096, p + 8192, false, false, 0, NULL),
			 0);
	memset(p + 16384, 0xab, 4096);
	assert_int_equal(vhostvq_pop(&vq, &c), 0);
	assert_false(vhostmem_damaged(m));

	assert_int_equal(ftruncate(fd, 0), 0);          /* the front-end shrinks it */
	assert_int_equal(((volatile uint8_t *)p)[16384], 0);
	assert_true(vhostmem_damaged(m));
	((volatile uint8_t *)p)[bytes - 1] = 1;         /* writes land too */
	assert_int_equal(vhostvq_pop(&vq, &c), -EIO);
	assert_string_equal(vq.why, "guest memory shrank under the mapping");

	vhostvq_release(&vq);
	vhostmem_free(m);
	close(fd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_vhost_ring_bad_chains),
		cmocka_unit_test(test_vhost_ring_indirect_not_negotiated),
		cmocka_unit_test(test_vhost_ring_bad_requests),
		cmocka_unit_test(test_vhost_ring_unsealed_memory_shrunk_regression),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
