/* SPDX-License-Identifier: MIT */
/*
 * vhosttest.c: the vhost unit tests' fixture (vhosttest.h).
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "storage/disk.h"
#include "storage/layered.h"
#include "tests/unit/testutil.h"
#include "tests/unit/vhosttest.h"
#include "vhost/blk.h"
#include "vhost/vhost.h"

void vt_setup(struct vt *t, const struct vt_opts *o)
{
	struct vhostblk_opts bo = { .queues = o->queues ? o->queues : 1, .read_only = o->read_only };
	struct vfront_opts fo = o->fo;
	char err[256] = "";
	int sv[2], ret;

	memset(t, 0, sizeof(*t));
	(void)tu_reactor();
	if (o->ops) {
		/* The test's device. */
	} else if (o->disk) {
		t->disk = disk_ref(o->disk);
	} else {
		ret = ramdisk_new(o->size ? o->size : 16 << 20, o->sector_size ? o->sector_size : 512,
				  false, &t->disk, err, sizeof(err));
		if (ret < 0)
			fail_msg("ramdisk_new: %s", err);
	}
	if (!o->ops)
		assert_int_equal(vhostblk_new(t->disk, &bo, &t->blk), 0);
	{
		struct vhostsrv_opts so = { .name = "vhost-test", .ops = o->ops ? o->ops : &vhostblk_ops,
					    .dev = o->ops ? o->dev : t->blk, .queues = bo.queues };

		assert_int_equal(vhostsrv_new(&so, &t->srv), 0);
	}
	if (!fo.queues)
		fo.queues = bo.queues;
	if (o->path) {
		t->path = o->path;
		ret = vhostsrv_listen_unix(t->srv, o->path, err, sizeof(err));
		if (ret < 0)
			fail_msg("listen: %s", err);
		assert_int_equal(vhostsrv_start(t->srv), 0);
		sv[0] = vfront_connect_unix(o->path);
		assert_true(sv[0] >= 0);
	} else {
		assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
		assert_int_equal(vhostsrv_serve_fd(t->srv, sv[1]), 0);
		assert_int_equal(vhostsrv_start(t->srv), 0);
	}
	assert_int_equal(vfront_new(&fo, sv[0], &t->f), 0);
	assert_int_equal(vfront_realize(t->f), 0);
	if (!o->no_start)
		assert_int_equal(vfront_start(t->f, false), 0);
}

void vt_teardown(struct vt *t)
{
	vfront_free(t->f);
	vhostsrv_free(t->srv);
	vhostblk_free(t->blk);
	disk_unref(t->disk);
	memset(t, 0, sizeof(*t));
}
