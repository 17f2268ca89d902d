/* SPDX-License-Identifier: MIT */
/*
 * serve-vhost.c: `diskstack serve --vhost-user-blk SOCKET` (serve-vhost.h).
 */
#include "config.h"

#include <errno.h>
#include <string.h>

#include "tools/serve-vhost.h"
#include "tools/tool.h"
#include "vhost/blk.h"
#include "vhost/vhost.h"

int serve_vhost_opt(struct serve_vhost *sv, const char *cmd, int opt, const char *arg)
{
	uint64_t v;

	switch (opt) {
	case SERVE_VHOST_OPT_BLK:
		sv->socket = arg;
		return 0;
	case SERVE_VHOST_OPT_QUEUES:
		if (tool_parse_uint(arg, 1, VHOSTSRV_MAX_QUEUES, &v) < 0)
			return tool_usage_error(cmd, "bad --vhost-queues '%s' (1-%u)", arg,
						VHOSTSRV_MAX_QUEUES);
		sv->queues = (unsigned)v;
		return 0;
	}
	return tool_usage_error(cmd, "unknown vhost option");
}

int serve_vhost_check(struct serve_vhost *sv, const char *cmd, bool have_default)
{
	if (sv->queues && !sv->socket)
		return tool_usage_error(cmd, "--vhost-queues needs --vhost-user-blk SOCKET");
	if (sv->socket && !have_default)
		return tool_usage_error(cmd, "--vhost-user-blk serves the positional SPEC: give one");
	if (!sv->queues)
		sv->queues = 1;
	return 0;
}

int serve_vhost_start(struct serve_vhost *sv, const char *cmd, struct disk *disk, bool read_only)
{
	struct vhostblk_opts bo = { .queues = sv->queues, .read_only = read_only };
	struct vhostsrv_opts so = { .name = "vhost-user-blk", .ops = &vhostblk_ops,
				    .queues = sv->queues };
	char err[1024];
	int ret;

	if (!sv->socket)
		return 0;
	if ((ret = vhostblk_new(disk, &bo, &sv->blk)) < 0)
		return tool_error(cmd, "cannot create the vhost-user-blk device: %s", strerror(-ret));
	so.dev = sv->blk;
	if ((ret = vhostsrv_new(&so, &sv->srv)) < 0)
		return tool_error(cmd, "cannot create the vhost-user server: %s", strerror(-ret));
	if ((ret = vhostsrv_listen_unix(sv->srv, sv->socket, err, sizeof(err))) < 0) {
		bool busy = ret == -EADDRINUSE;

		ret = tool_error(cmd, "%s", err);
		return busy ? EXIT_USAGE : ret;
	}
	if ((ret = vhostsrv_start(sv->srv)) < 0)
		return tool_error(cmd, "cannot start the vhost-user threads: %s", strerror(-ret));
	return 0;
}

void serve_vhost_free(struct serve_vhost *sv)
{
	vhostsrv_free(sv->srv);
	sv->srv = NULL;
	vhostblk_free(sv->blk);
	sv->blk = NULL;
}
