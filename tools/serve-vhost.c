/* SPDX-License-Identifier: MIT */
/*
 * serve-vhost.c: `diskstack serve --vhost-user-blk SOCKET` and
 * `--vhost-user-scsi SOCKET` (serve-vhost.h).
 */
#include "config.h"

#include <errno.h>
#include <string.h>

#include "scsi/scsi.h"
#include "tools/scsi-lun.h"
#include "tools/serve-vhost.h"
#include "tools/tool.h"
#include "vhost/blk.h"
#include "vhost/scsi.h"
#include "vhost/vhost.h"

int serve_vhost_opt(struct serve_vhost *sv, const char *cmd, int opt, const char *arg)
{
	uint64_t v;

	switch (opt) {
	case SERVE_VHOST_OPT_BLK:
		sv->socket = arg;
		return 0;
	case SERVE_VHOST_OPT_SCSI:
		sv->scsi_socket = arg;
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
	if (sv->queues && !sv->socket && !sv->scsi_socket)
		return tool_usage_error(cmd, "--vhost-queues needs --vhost-user-blk or "
					"--vhost-user-scsi SOCKET");
	if ((sv->socket || sv->scsi_socket) && !have_default)
		return tool_usage_error(cmd, "--vhost-user-blk and --vhost-user-scsi serve the "
					"positional SPEC: give one");
	if (sv->socket && sv->scsi_socket && strcmp(sv->socket, sv->scsi_socket) == 0)
		return tool_usage_error(cmd, "--vhost-user-blk and --vhost-user-scsi need two sockets");
	if (!sv->queues)
		sv->queues = 1;
	return 0;
}

/* Creates @so's server in *@srv, listens on @sock and starts it. */
static int serve_vhost_run(const char *cmd, const struct vhostsrv_opts *so, const char *sock,
			   struct vhostsrv **srv)
{
	char err[1024];
	int ret;

	if ((ret = vhostsrv_new(so, srv)) < 0)
		return tool_error(cmd, "cannot create the vhost-user server: %s", strerror(-ret));
	if ((ret = vhostsrv_listen_unix(*srv, sock, err, sizeof(err))) < 0) {
		bool busy = ret == -EADDRINUSE;

		ret = tool_error(cmd, "%s", err);
		return busy ? EXIT_USAGE : ret;
	}
	if ((ret = vhostsrv_start(*srv)) < 0)
		return tool_error(cmd, "cannot start the vhost-user threads: %s", strerror(-ret));
	return 0;
}

/* LUN 0 of a target of its own: the positional SPEC. */
static int serve_vhost_scsi_start(struct serve_vhost *sv, const char *cmd, struct disk *disk)
{
	struct vhostscsi_opts vo = { .request_queues = sv->queues, .initiator = sv->scsi_socket };
	struct vhostsrv_opts so = { .name = "vhost-user-scsi", .ops = &vhostscsi_ops };
	int ret;

	if ((ret = scsi_target_new("iqn.2026-12.org.diskstack:serve.vhost-user-scsi", &sv->target)) < 0)
		return tool_error(cmd, "cannot create the SCSI target: %s", strerror(-ret));
	if ((ret = tool_scsi_add_lu(cmd, sv->target, 0, disk, sv->spec_text ? sv->spec_text : "")) != 0)
		return ret;
	if ((ret = vhostscsi_new(sv->target, &vo, &sv->scsi)) < 0)
		return tool_error(cmd, "cannot create the vhost-user-scsi device: %s", strerror(-ret));
	so.dev = sv->scsi;
	so.queues = vhostscsi_queues(sv->scsi);
	return serve_vhost_run(cmd, &so, sv->scsi_socket, &sv->scsi_srv);
}

int serve_vhost_start(struct serve_vhost *sv, const char *cmd, struct disk *disk, bool read_only)
{
	struct vhostblk_opts bo = { .queues = sv->queues, .read_only = read_only };
	struct vhostsrv_opts so = { .name = "vhost-user-blk", .ops = &vhostblk_ops,
				    .queues = sv->queues };
	int ret;

	if (sv->scsi_socket && (ret = serve_vhost_scsi_start(sv, cmd, disk)) != 0)
		return ret;
	if (!sv->socket)
		return 0;
	if ((ret = vhostblk_new(disk, &bo, &sv->blk)) < 0)
		return tool_error(cmd, "cannot create the vhost-user-blk device: %s", strerror(-ret));
	so.dev = sv->blk;
	return serve_vhost_run(cmd, &so, sv->socket, &sv->srv);
}

void serve_vhost_free(struct serve_vhost *sv)
{
	vhostsrv_free(sv->srv);
	sv->srv = NULL;
	vhostblk_free(sv->blk);
	sv->blk = NULL;
	vhostsrv_free(sv->scsi_srv);
	sv->scsi_srv = NULL;
	vhostscsi_free(sv->scsi);
	sv->scsi = NULL;
	scsi_target_free(sv->target);
	sv->target = NULL;
}
