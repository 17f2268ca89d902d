/* SPDX-License-Identifier: MIT */
/*
 * serve-vhost.c: `diskstack serve --vhost-user-blk SOCKET` and
 * `--vhost-user-scsi SOCKET` (serve-vhost.h).
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
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

void serve_vhost_scsi_target_name(const char *sock, char *out, size_t len)
{
	enum { HASH_CHARS = 10 };       /* ".h" and 8 hex digits */
	uint32_t h = 2166136261u;       /* FNV-1a over the whole path */
	bool lossy = false;
	size_t o = (size_t)snprintf(out, len, "iqn.2026-12.org.diskstack:vhost.");

	if (o + HASH_CHARS + 1 > len) {
		out[0] = '\0';
		return;
	}
	for (const char *p = sock; *p; p++) {
		unsigned char ch = (unsigned char)*p;

		h = (h ^ ch) * 16777619u;
		if (o + HASH_CHARS + 1 >= len) {
			lossy = true;   /* too long: cut, and told apart by the hash */
			continue;
		}
		if (ch == '/') {
			out[o++] = '-';
		} else if (islower(ch) || isdigit(ch) || ch == '.') {
			out[o++] = (char)ch;
		} else {
			/* '-' (which '/' also becomes), upper case and the
			 * rest map onto what another path could map onto. */
			out[o++] = isalnum(ch) || ch == '-' ? (char)tolower(ch) : '-';
			lossy = true;
		}
	}
	if (lossy)
		o += (size_t)snprintf(out + o, len - o, ".h%08" PRIx32, h);
	out[o] = '\0';
}

int serve_vscsi_new(const char *sock, const char *name, struct serve_vscsi **out)
{
	struct serve_vscsi *v = calloc(1, sizeof(*v));

	*out = NULL;
	if (!v || !(v->socket = strdup(sock))) {
		free(v);
		return -ENOMEM;
	}
	if (name)
		snprintf(v->name, sizeof(v->name), "%s", name);
	else
		serve_vhost_scsi_target_name(sock, v->name, sizeof(v->name));
	if (scsi_target_new(v->name, &v->target) < 0) {
		free(v->socket);
		free(v);
		return -ENOMEM;
	}
	*out = v;
	return 0;
}

int serve_vscsi_start(struct serve_vscsi *v, unsigned queues, char *err, size_t errlen)
{
	struct vhostscsi_opts vo = { .request_queues = queues, .initiator = v->socket };
	struct vhostsrv_opts so = { .name = "vhost-user-scsi", .ops = &vhostscsi_ops };
	int ret;

	if ((ret = vhostscsi_new(v->target, &vo, &v->dev)) < 0) {
		snprintf(err, errlen, "cannot create the vhost-user-scsi device: %s", strerror(-ret));
		return ret;
	}
	so.dev = v->dev;
	so.queues = vhostscsi_queues(v->dev);
	if ((ret = vhostsrv_new(&so, &v->srv)) < 0) {
		snprintf(err, errlen, "cannot create the vhost-user server: %s", strerror(-ret));
		return ret;
	}
	if ((ret = vhostsrv_listen_unix(v->srv, v->socket, err, errlen)) < 0)
		return ret;
	if ((ret = vhostsrv_start(v->srv)) < 0)
		snprintf(err, errlen, "cannot start the vhost-user threads: %s", strerror(-ret));
	return ret;
}

int serve_vscsi_free(struct serve_vscsi *v)
{
	int ret;

	if (!v)
		return 0;
	/* The server first: no request runs on the LUs after it. */
	vhostsrv_free(v->srv);
	vhostscsi_free(v->dev);
	ret = serve_disks_flush(&v->disks, "vhost-user-scsi") ? -EIO : 0;
	scsi_target_free(v->target);
	serve_disks_free(&v->disks);
	free(v->socket);
	free(v);
	return ret;
}

/* LUN 0 of a target of its own: the positional SPEC. */
static int serve_vhost_scsi_start(struct serve_vhost *sv, const char *cmd, struct disk *disk)
{
	char err[1024];
	int ret;

	if (serve_vscsi_new(sv->scsi_socket, "iqn.2026-12.org.diskstack:serve.vhost-user-scsi",
			    &sv->scsi) < 0)
		return tool_error(cmd, "out of memory");
	if ((ret = tool_scsi_add_lu(cmd, sv->scsi->target, 0, disk,
				    sv->spec_text ? sv->spec_text : "")) != 0 ||
	    (ret = serve_disks_keep(&sv->scsi->disks, cmd, disk, sv->scsi->target, 0,
				    sv->spec_text)) != 0)
		return ret;
	if ((ret = serve_vscsi_start(sv->scsi, sv->queues, err, sizeof(err))) < 0) {
		bool busy = ret == -EADDRINUSE;

		ret = tool_error(cmd, "%s", err);
		return busy ? EXIT_USAGE : ret;
	}
	return 0;
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
	(void)serve_vscsi_free(sv->scsi);      /* a failed flush is logged */
	sv->scsi = NULL;
}
