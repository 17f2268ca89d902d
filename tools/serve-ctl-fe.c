/* SPDX-License-Identifier: MIT */
/*
 * serve-ctl-fe.c: the control-socket methods for serve's frontends other
 * than NBD (docs/ctl.md, "Frontends"): ublk and vhost-user-blk devices
 * made on a running serve from an export's disk, LUNs of the iSCSI
 * targets, namespaces of the NVMe/TCP subsystem, and the listing of all
 * of them (and of the vhost-user devices given on the command line) in
 * export-list.
 *
 * Notes on the design
 * -------------------
 * - Everything runs on the control thread, one call at a time, so the
 *   lists here need no lock. The ublk control channel (ublk/ubsrv.h) is
 *   not thread-safe: it is opened by the first ublk-add and used only
 *   from this thread, and from the main thread at the end, once the
 *   control thread has stopped (serve_ctl_fe_stop).
 * - A ublk device serves the disk of an NBD export (a reference of its
 *   own), so disk-resize on the export reaches it: UPDATE_SIZE where the
 *   kernel has it (Linux 6.16), else the result says why it did not.
 *   Removing the export leaves the device running on its reference.
 * - LUNs and namespaces are added and removed through the cores' own
 *   hot-plug calls, which queue REPORTED LUNS DATA HAS CHANGED (SCSI)
 *   and the Namespace Attribute Changed event (NVMe); removal waits for
 *   the commands running on the LU to finish (SCSI) or lets them finish
 *   on the namespace's own reference (NVMe), then flushes the disk.
 * - A vhost-user-blk device made by vhost-blk-add has its own socket and
 *   threads (vhost/vhost.h) over an export's disk; vhost-blk-del and the
 *   end of serve stop it after the requests in flight complete.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/compiler.h"
#include "common/log.h"
#include "nbd/server.h"
#include "nvme_emul/nvme.h"
#include "scsi/scsi.h"
#include "storage/disk.h"
#include "tools/scsi-lun.h"
#include "tools/serve-ctl-internal.h"
#include "tools/serve-ctl.h"
#include "tools/serve-iscsi.h"
#include "tools/serve-nvmf.h"
#include "tools/serve-vhost.h"
#include "tools/tool.h"
#include "ublk/ubsrv.h"
#include "vhost/blk.h"
#include "vhost/vhost.h"

struct fe_ublk {
	struct ubsrv_dev *dev;
	struct disk *disk;              /* a reference: the export's disk */
	char *export;
	struct fe_ublk *next;
};

/* A vhost-user-blk device made by vhost-blk-add (its own socket and
 * threads: vhost/vhost.h). */
struct fe_vhost {
	char *socket, *export, *spec;   /* export or spec: what the disk is */
	struct disk *disk;              /* a reference: the export's disk, or the
	                                 * one opened from spec (flushed at the end) */
	struct vhostblk *blk;
	struct vhostsrv *srv;
	bool read_only;                 /* VIRTIO_BLK_F_RO offered */
	struct fe_vhost *next;
};

struct serve_ctl_fe {
	struct ubsrv_ctrl *ublk_ctrl;   /* NULL until the first ublk-add */
	struct fe_ublk *ublk;
	struct fe_vhost *vhost;
	struct serve_vscsi *vscsi;      /* vhost-user-scsi devices made by vhost-scsi-add */
};

int serve_ctl_fe_new(struct serve_ctl_fe **out)
{
	*out = calloc(1, sizeof(**out));
	return *out ? 0 : -ENOMEM;
}

/* Stops @u's device (its final flush included) and frees @u. */
static int ublk_stop_one(struct fe_ublk *u)
{
	uint32_t id = ubsrv_dev_id(u->dev);
	int ret = ubsrv_dev_stop(u->dev);

	if (ret < 0)
		log_error("ctl: tearing down /dev/ublkb%" PRIu32 ": %s", id, strerror(-ret));
	disk_unref(u->disk);
	free(u->export);
	free(u);
	return ret;
}

/* Stops @v's server (requests in flight complete, the front-end is
 * disconnected, the socket file goes) and frees @v. A disk opened from a
 * spec is flushed before its release: -EIO when that failed (logged). */
static int vhost_stop_one(struct fe_vhost *v)
{
	int ret = 0;

	vhostsrv_free(v->srv);
	vhostblk_free(v->blk);
	if (v->spec && v->disk && disk_sync_flush(v->disk) != DISK_OK) {
		log_error("ctl: vhost-user-blk %s: the final flush of %s failed", v->socket, v->spec);
		ret = -EIO;
	}
	disk_unref(v->disk);
	free(v->socket);
	free(v->export);
	free(v->spec);
	free(v);
	return ret;
}

static void vscsi_stop_all(struct serve_ctl_fe *fe);

void serve_ctl_fe_stop(struct serve_ctl_fe *fe)
{
	if (!fe)
		return;
	vscsi_stop_all(fe);
	while (fe->vhost) {
		struct fe_vhost *v = fe->vhost;

		fe->vhost = v->next;
		(void)vhost_stop_one(v);        /* a failed flush is logged */
	}
	while (fe->ublk) {
		struct fe_ublk *u = fe->ublk;

		fe->ublk = u->next;
		ublk_stop_one(u);
	}
}

void serve_ctl_fe_free(struct serve_ctl_fe *fe)
{
	if (!fe)
		return;
	serve_ctl_fe_stop(fe);
	ubsrv_ctrl_close(fe->ublk_ctrl);
	free(fe);
}

/* The members every export-list entry has about its disk. */
static void disk_fields(json_t *o, struct disk *d)
{
	const struct disk_info *info = disk_get_info(d);

	json_object_set_new(o, "type", json_string(info->type));
	json_object_set_new(o, "read_only", json_boolean(info->read_only));
	json_object_set_new(o, "size", json_integer((json_int_t)(disk_sector_count(d)
								 << info->sector_shift)));
	json_object_set_new(o, "sector_size", json_integer((json_int_t)info->sector_size));
}

/* ---- ublk ------------------------------------------------------------------ */

static json_t *ublk_json(struct serve_ctl_fe *fe, struct fe_ublk *u)
{
	const struct ubsrv_ctrl_dev_info *info = ubsrv_dev_info(u->dev);
	struct ubsrv_ctrl_dev_info now;
	uint32_t id = ubsrv_dev_id(u->dev);
	char dev[32], flags[256];
	json_t *o;

	snprintf(dev, sizeof(dev), "/dev/ublkb%" PRIu32, id);
	ubsrv_flags_str(info->flags, flags, sizeof(flags));
	o = json_pack("{s:s, s:s, s:I, s:o, s:i, s:i, s:s, s:b, s:s}", "frontend", "ublk",
		      "name", dev, "id", (json_int_t)id, "export", tool_json_str(u->export),
		      "queues", (int)info->nr_hw_queues, "depth", (int)info->queue_depth,
		      "flags", flags, "update_size", (int)((info->flags & UBSRV_F_UPDATE_SIZE) != 0),
		      "state", ubsrv_ctrl_get_dev_info(fe->ublk_ctrl, id, &now) == 0
			       ? ubsrv_state_str(now.state) : "gone");
	if (o) {
		disk_fields(o, u->disk);
		json_object_set_new(o, "read_only", json_boolean(ubsrv_dev_read_only(u->dev)));
	}
	return o;
}

json_t *serve_ctl_ublk_add(struct ctl_call *c, json_t *params)
{
	struct serve_ctl_fe *fe = serve_ctl_fe_of(c);
	json_int_t id = -1, queues = UBSRV_DEFAULT_QUEUES, depth = UBSRV_DEFAULT_DEPTH;
	struct ubsrv_opts o = { .max_io_bytes = UBSRV_DEFAULT_MAX_IO, .copy = UBSRV_COPY_AUTO };
	const char *export;
	bool export_ro = false;
	char err[512] = "";
	struct fe_ublk *u;
	struct disk *d;
	json_error_t je;
	int ro = 0, ret;

	if (json_unpack_ex(params, &je, JSON_STRICT, "{s:s, s?:I, s?:I, s?:I, s?:b}", "export",
			   &export, "id", &id, "queues", &queues, "depth", &depth, "read_only",
			   &ro) < 0)
		return ctl_fail_params(c, &je);
	if (id < -1 || id > INT32_MAX)
		return ctl_fail_paramf(c, "id must be -1 (any) or a device number");
	if (queues < 1 || queues > UBSRV_MAX_NR_QUEUES)
		return ctl_fail_paramf(c, "queues must be 1..%u", UBSRV_MAX_NR_QUEUES);
	if (depth < 1 || depth > UBSRV_MAX_QUEUE_DEPTH)
		return ctl_fail_paramf(c, "depth must be 1..%u", UBSRV_MAX_QUEUE_DEPTH);
	if (serve_ctl_refuse_when_stopping(c))
		return NULL;
	if (!(d = serve_ctl_export_disk(c, export, &export_ro)))
		return NULL;
	if (!fe->ublk_ctrl && (ret = ubsrv_ctrl_open(&fe->ublk_ctrl, err, sizeof(err))) < 0) {
		fe->ublk_ctrl = NULL;
		disk_unref(d);
		return ctl_fail_errno(c, ret, "%s", err[0] ? err : "cannot open the ublk control device");
	}
	o.dev_id = id;
	o.queues = (unsigned)queues;
	o.depth = (unsigned)depth;
	o.read_only = ro || export_ro;
	u = calloc(1, sizeof(*u));
	if (!u || !(u->export = strdup(export))) {
		free(u);
		disk_unref(d);
		return ctl_fail(c, CTL_ERR_INTERNAL, NULL);
	}
	ret = ubsrv_dev_add(fe->ublk_ctrl, d, &o, &u->dev, err, sizeof(err));
	if (ret < 0) {
		char t[32];

		free(u->export);
		free(u);
		disk_unref(d);
		snprintf(t, sizeof(t), "%lld", (long long)id);
		if (ret == -EEXIST)
			return ctl_fail(c, CTL_ERR_EXISTS, json_pack("{s:s, s:b}", "target", t,
								     "exists", 1));
		return ctl_fail_errno(c, ret, "%s", err[0] ? err : "cannot add the ublk device");
	}
	u->disk = d;
	u->next = fe->ublk;
	fe->ublk = u;
	log_info("ctl: /dev/ublkb%" PRIu32 " added for export '%s' by uid %ld pid %ld",
		 ubsrv_dev_id(u->dev), export, (long)c->uid, (long)c->pid);
	return ublk_json(fe, u);
}

json_t *serve_ctl_ublk_del(struct ctl_call *c, json_t *params)
{
	struct serve_ctl_fe *fe = serve_ctl_fe_of(c);
	json_int_t id;
	json_error_t je;

	if (json_unpack_ex(params, &je, JSON_STRICT, "{s:I}", "id", &id) < 0)
		return ctl_fail_params(c, &je);
	for (struct fe_ublk **pp = &fe->ublk; *pp; pp = &(*pp)->next) {
		struct fe_ublk *u = *pp;
		int ret;

		if ((json_int_t)ubsrv_dev_id(u->dev) != id)
			continue;
		*pp = u->next;
		ret = ublk_stop_one(u);
		log_info("ctl: /dev/ublkb%lld deleted by uid %ld pid %ld", (long long)id,
			 (long)c->uid, (long)c->pid);
		if (ret < 0)
			return ctl_fail_errno(c, ret, "device deleted, but its teardown failed");
		return json_object();
	}
	{
		char t[32];

		snprintf(t, sizeof(t), "%lld", (long long)id);
		return serve_ctl_not_found(c, t);
	}
}

json_t *serve_ctl_ublk_list(struct ctl_call *c, json_t *params)
{
	struct serve_ctl_fe *fe = serve_ctl_fe_of(c);
	json_error_t je;
	json_t *out;

	if (json_unpack_ex(params, &je, JSON_STRICT, "{}") < 0)
		return ctl_fail_params(c, &je);
	out = json_array();
	for (struct fe_ublk *u = fe->ublk; out && u; u = u->next)
		json_array_append_new(out, ublk_json(fe, u));
	return out;
}

void serve_ctl_fe_resized(struct ctl_call *c, struct disk *d, json_t *res)
{
	struct serve_ctl_fe *fe = serve_ctl_fe_of(c);
	json_t *arr = NULL;

	for (struct fe_ublk *u = fe->ublk; u; u = u->next) {
		int ret;

		if (u->disk != d)
			continue;
		if (!arr && !(arr = json_array()))
			return;
		ret = ubsrv_dev_update_size(u->dev);
		if (ret == 0)
			json_array_append_new(arr, json_pack("{s:I, s:b}", "id",
				(json_int_t)ubsrv_dev_id(u->dev), "updated", 1));
		else
			json_array_append_new(arr, json_pack("{s:I, s:b, s:s}", "id",
				(json_int_t)ubsrv_dev_id(u->dev), "updated", 0, "reason",
				ret == -EOPNOTSUPP ? "the kernel's ublk driver has no UPDATE_SIZE "
						     "(Linux 6.16): the device keeps its size until "
						     "it is added again" : strerror(-ret)));
		if (ret < 0 && ret != -EOPNOTSUPP)
			log_warn("ctl: UPDATE_SIZE of /dev/ublkb%" PRIu32 ": %s", ubsrv_dev_id(u->dev),
				 strerror(-ret));
	}
	if (arr)
		json_object_set_new(res, "ublk", arr);
}

/* ---- vhost-user-blk ---------------------------------------------------------- */

static json_t *vhost_json(struct fe_vhost *v)
{
	json_t *o = json_pack("{s:s, s:o, s:o}", "frontend", "vhost-user-blk", "name",
			      tool_json_str(v->socket), v->export ? "export" : "spec",
			      tool_json_str(v->export ? v->export : v->spec));

	if (o) {
		disk_fields(o, v->disk);
		json_object_set_new(o, "read_only", json_boolean(v->read_only));
	}
	return o;
}

/* vhost-blk-add and export-add frontend=vhost-user-blk: a device on @socket
 * over NBD export @export or a disk opened from @spec (exactly one). */
static json_t *vhost_blk_add(struct ctl_call *c, const char *socket, const char *export,
			     const char *spec, json_int_t queues, int ro)
{
	struct serve_ctl_fe *fe = serve_ctl_fe_of(c);
	struct vhostblk_opts bo = { 0 };
	struct vhostsrv_opts so = { .name = "vhost-user-blk", .ops = &vhostblk_ops };
	bool export_ro = false;
	char err[512] = "";
	struct fe_vhost *v;
	int ret;

	if (!export == !spec)
		return ctl_fail_paramf(c, "give one of export (an NBD export's name) and spec");
	if (queues < 1 || queues > VHOSTSRV_MAX_QUEUES)
		return ctl_fail_paramf(c, "queues must be 1..%u", VHOSTSRV_MAX_QUEUES);
	if (spec && serve_ctl_refuse_writable(c, ro))
		return NULL;
	if (serve_ctl_refuse_when_stopping(c))
		return NULL;
	for (v = fe->vhost; v; v = v->next)
		if (strcmp(v->socket, socket) == 0)
			return ctl_fail(c, CTL_ERR_EXISTS, json_pack("{s:o, s:b}", "target",
								     tool_json_str(socket), "exists", 1));
	v = calloc(1, sizeof(*v));
	if (!v || !(v->socket = strdup(socket)) || (export && !(v->export = strdup(export))) ||
	    (spec && !(v->spec = strdup(spec)))) {
		if (v)
			(void)vhost_stop_one(v);
		return ctl_fail(c, CTL_ERR_INTERNAL, NULL);
	}
	if (export && !(v->disk = serve_ctl_export_disk(c, export, &export_ro))) {
		(void)vhost_stop_one(v);
		return NULL;
	}
	if (spec && serve_ctl_open_spec(c, spec, ro, &v->disk) < 0) {
		v->disk = NULL;
		(void)vhost_stop_one(v);
		return NULL;
	}
	bo.queues = so.queues = (unsigned)queues;
	bo.read_only = v->read_only = ro || export_ro;
	if ((ret = vhostblk_new(v->disk, &bo, &v->blk)) < 0) {
		(void)vhost_stop_one(v);
		return ctl_fail_errno(c, ret, "cannot create the vhost-user-blk device");
	}
	so.dev = v->blk;
	if ((ret = vhostsrv_new(&so, &v->srv)) < 0 ||
	    (ret = vhostsrv_listen_unix(v->srv, v->socket, err, sizeof(err))) < 0 ||
	    (ret = vhostsrv_start(v->srv)) < 0) {
		(void)vhost_stop_one(v);
		if (ret == -EADDRINUSE)
			return ctl_fail(c, CTL_ERR_EXISTS, json_pack("{s:o, s:b}", "target",
								     tool_json_str(socket), "exists", 1));
		return ctl_fail_errno(c, ret, "%s", err[0] ? err : "cannot start the vhost-user server");
	}
	v->next = fe->vhost;
	fe->vhost = v;
	log_info("ctl: vhost-user-blk %s added for %s '%s' by uid %ld pid %ld", socket,
		 export ? "export" : "spec", export ? export : spec, (long)c->uid, (long)c->pid);
	return vhost_json(v);
}

json_t *serve_ctl_vhost_blk_add(struct ctl_call *c, json_t *params)
{
	const char *export = NULL, *spec = NULL, *socket;
	json_int_t queues = 1;
	json_error_t je;
	int ro = 0;

	if (json_unpack_ex(params, &je, JSON_STRICT, "{s?:s, s?:s, s:s, s?:I, s?:b}", "export",
			   &export, "spec", &spec, "socket", &socket, "queues", &queues, "read_only",
			   &ro) < 0)
		return ctl_fail_params(c, &je);
	if (spec && !json_object_get(params, "read_only"))
		ro = serve_ctl_opts_of(c)->read_only;
	return vhost_blk_add(c, socket, export, spec, queues, ro);
}

/* export-add frontend=vhost-user-blk name=SOCKET (spec=SPEC | export=NAME). */
static json_t *vhost_blk_export_add(struct ctl_call *c, json_t *params)
{
	const char *fe, *export = NULL, *spec = NULL, *socket;
	json_int_t queues = 1;
	json_error_t je;
	int ro = 0;

	if (json_unpack_ex(params, &je, JSON_STRICT, "{s:s, s:s, s?:s, s?:s, s?:I, s?:b}",
			   "frontend", &fe, "name", &socket, "export", &export, "spec", &spec,
			   "queues", &queues, "read_only", &ro) < 0)
		return ctl_fail_params(c, &je);
	if (spec && !json_object_get(params, "read_only"))
		ro = serve_ctl_opts_of(c)->read_only;
	return vhost_blk_add(c, socket, export, spec, queues, ro);
}

/* Stops the device on @socket (vhost-blk-del, export-remove): NULL after
 * failing @c, else a new empty object. */
static json_t *vhost_blk_del(struct ctl_call *c, const char *socket)
{
	struct serve_ctl_fe *fe = serve_ctl_fe_of(c);

	for (struct fe_vhost **pp = &fe->vhost; *pp; pp = &(*pp)->next) {
		struct fe_vhost *v = *pp;
		int ret;

		if (strcmp(v->socket, socket) != 0)
			continue;
		*pp = v->next;
		ret = vhost_stop_one(v);
		log_info("ctl: vhost-user-blk %s deleted by uid %ld pid %ld", socket, (long)c->uid,
			 (long)c->pid);
		if (ret < 0)
			return ctl_fail_errno(c, ret, "device removed, but its final flush failed");
		return json_object();
	}
	return serve_ctl_not_found(c, socket);
}

static bool export_remove_params(struct ctl_call *c, json_t *params, const char **name,
				 const char **mode, json_int_t *timeout);

/* vhost-blk-del and vhost-scsi-del: @del of {socket}. */
static json_t *socket_del_call(struct ctl_call *c, json_t *params,
			       json_t *(*del)(struct ctl_call *c, const char *socket))
{
	const char *socket;
	json_error_t je;

	if (json_unpack_ex(params, &je, JSON_STRICT, "{s:s}", "socket", &socket) < 0)
		return ctl_fail_params(c, &je);
	return del(c, socket);
}

/* export-remove frontend=vhost-user-blk|-scsi name=SOCKET: @del, answering
 * {flushed: true}. mode and timeout_ms are accepted and checked, and change
 * nothing: the requests in flight always complete. */
static json_t *socket_export_remove(struct ctl_call *c, json_t *params,
				    json_t *(*del)(struct ctl_call *c, const char *socket))
{
	const char *socket, *mode;
	json_int_t timeout;
	json_t *res;

	if (!export_remove_params(c, params, &socket, &mode, &timeout) || !(res = del(c, socket)))
		return NULL;
	json_object_set_new(res, "flushed", json_true());
	return res;
}

static json_t *vhost_blk_export_remove(struct ctl_call *c, json_t *params)
{
	return socket_export_remove(c, params, vhost_blk_del);
}

json_t *serve_ctl_vhost_blk_del(struct ctl_call *c, json_t *params)
{
	return socket_del_call(c, params, vhost_blk_del);
}

/* ---- iSCSI LUNs ------------------------------------------------------------ */

/* serve's iSCSI half, or NULL after failing @c with -32004. */
static struct serve_iscsi *iscsi_of(struct ctl_call *c, const char *target)
{
	struct serve_iscsi *si = serve_ctl_opts_of(c)->iscsi;

	if (si && si->srv)
		return si;
	serve_ctl_not_supported(c, target ? target : "", "serve runs no iSCSI target (--iscsi)");
	return NULL;
}

static bool unit_removal_refuse(struct ctl_call *c, const void *owner, const char *name,
				const char *unit, unsigned id);

/* Opens @text (read-only if @ro) and adds it as LUN @lun of @t, its disk
 * kept in @sd: the reply is {@key: @name, lun, the disk's fields}. @name
 * (the IQN, the socket) names the target in errors and the log. */
static json_t *scsi_lun_add(struct ctl_call *c, struct scsi_target *t, struct serve_disks *sd,
			    const char *key, const char *name, json_int_t lun, const char *text,
			    bool ro)
{
	char err[256] = "";
	struct disk *d;
	json_t *res;
	int ret;

	if (scsi_target_lu(t, (unsigned)lun))
		return ctl_fail(c, CTL_ERR_EXISTS, json_pack("{s:s, s:I, s:b}", "target", name, "lun",
							     (json_int_t)lun, "exists", 1));
	if (unit_removal_refuse(c, t, name, "lun", (unsigned)lun) ||
	    serve_ctl_open_spec(c, text, ro, &d) < 0)
		return NULL;
	ret = tool_scsi_make_lu(t, (unsigned)lun, d, text, err, sizeof(err));
	if (ret == 0 && (ret = serve_disks_add(sd, d, t, (unsigned)lun, text)) < 0)
		(void)scsi_target_remove_lu(t, (unsigned)lun);
	if (ret < 0) {
		disk_unref(d);
		if (ret == -EEXIST)
			return ctl_fail(c, CTL_ERR_EXISTS, json_pack("{s:s, s:I, s:b}", "target", name,
								     "lun", (json_int_t)lun, "exists", 1));
		if (ret == -EINVAL)
			return ctl_fail(c, CTL_ERR_BAD_SPEC, json_pack("{s:o}", "message",
								       tool_json_str(err)));
		return ctl_fail_errno(c, ret, "cannot add the LUN%s%s", err[0] ? ": " : "", err);
	}
	res = json_pack("{s:s, s:I}", key, name, "lun", (json_int_t)lun);
	if (res)
		disk_fields(res, d);
	disk_unref(d);
	log_info("ctl: LUN %lld of %s added by uid %ld pid %ld", (long long)lun, name, (long)c->uid,
		 (long)c->pid);
	return res;
}

/* The parameters of iscsi-lun-add and vhost-scsi-lun-add ({@key, lun,
 * spec, read_only}; @key optional for iSCSI) and their checks before the
 * target is looked up: the number, a writable LUN under `serve -r`, a
 * server stopping. False after failing @c. */
static bool lun_add_params(struct ctl_call *c, json_t *params, const char *key, bool optional,
			   const char **name, json_int_t *lunp, const char **text, int *rop)
{
	json_int_t lun;
	json_error_t je;
	int ro = serve_ctl_opts_of(c)->read_only;

	if (json_unpack_ex(params, &je, JSON_STRICT,
			   optional ? "{s?:s, s:I, s:s, s?:b}" : "{s:s, s:I, s:s, s?:b}", key, name,
			   "lun", &lun, "spec", text, "read_only", &ro) < 0) {
		ctl_fail_params(c, &je);
		return false;
	}
	*lunp = lun;
	*rop = ro;
	if (lun < 0 || lun >= SCSI_MAX_LUNS) {
		ctl_fail_paramf(c, "lun must be 0..%u", SCSI_MAX_LUNS - 1);
		return false;
	}
	return !serve_ctl_refuse_writable(c, ro) && !serve_ctl_refuse_when_stopping(c);
}

json_t *serve_ctl_iscsi_lun_add(struct ctl_call *c, json_t *params)
{
	const char *target = NULL, *text;
	json_int_t lun;
	struct serve_iscsi *si;
	struct scsi_target *t;
	int ro;

	if (!lun_add_params(c, params, "target", true, &target, &lun, &text, &ro) ||
	    !(si = iscsi_of(c, target)))
		return NULL;
	if (!(t = serve_iscsi_target(si, target)))
		return serve_ctl_not_found(c, target ? target : "(the default target)");
	return scsi_lun_add(c, t, &si->disks, "target", scsi_target_name(t), lun, text, ro);
}

/* A LUN or namespace being removed: the blocking part (the core's
 * removal waits for the commands running on it, then the disk is
 * flushed) runs on a thread of its own (serve_ctl_bg), so that a hung
 * disk does not hold the control socket (docs/ctl.md). */
struct unit_removal {
	struct scsi_target *t;          /* a LUN of @t, else a namespace of @ss */
	struct nvmeemu_subsys *ss;
	unsigned id;
	struct serve_unit u;            /* taken out of serve's list (disk NULL: none) */
	const char *proto;
};

/* Removals still draining, so that the same unit number is not added
 * again before the old one's removal has finished: the core ends a
 * removal by clearing the slot's per-session state, which would be the
 * new unit's. */
static pthread_mutex_t removals_lock = PTHREAD_MUTEX_INITIALIZER;
static struct unit_removal *removals[64];

#define UNIT_ANY UINT_MAX

/* Whether unit @id of @owner, or with UNIT_ANY any unit of it, is still
 * being removed (its removal uses @owner until it unlists itself). */
static bool unit_removal_pending(const void *owner, unsigned id)
{
	bool found = false;

	pthread_mutex_lock(&removals_lock);
	for (unsigned i = 0; i < ARRAY_SIZE(removals) && !found; i++)
		found = removals[i] && (id == UNIT_ANY || removals[i]->id == id) &&
			(removals[i]->t ? (const void *)removals[i]->t : (const void *)removals[i]->ss) == owner;
	pthread_mutex_unlock(&removals_lock);
	return found;
}

/* Lists @rm as pending; false when the list is full (the caller then
 * removes in the foreground). */
static bool unit_removal_list(struct unit_removal *rm)
{
	bool ok = false;

	pthread_mutex_lock(&removals_lock);
	for (unsigned i = 0; i < ARRAY_SIZE(removals) && !ok; i++)
		if (!removals[i]) {
			removals[i] = rm;
			ok = true;
		}
	pthread_mutex_unlock(&removals_lock);
	return ok;
}

static void unit_removal_unlist(struct unit_removal *rm)
{
	pthread_mutex_lock(&removals_lock);
	for (unsigned i = 0; i < ARRAY_SIZE(removals); i++)
		if (removals[i] == rm)
			removals[i] = NULL;
	pthread_mutex_unlock(&removals_lock);
}

/* Fails @c with -32002 when unit @id of @owner is still being removed. */
static bool unit_removal_refuse(struct ctl_call *c, const void *owner, const char *name,
				const char *unit, unsigned id)
{
	if (!unit_removal_pending(owner, id))
		return false;
	ctl_fail(c, CTL_ERR_EXISTS, json_pack("{s:s, s:I, s:b}", "target", name, unit,
					      (json_int_t)id, "being_removed", 1));
	return true;
}

static int unit_removal_run(void *arg)
{
	struct unit_removal *rm = arg;
	int ret = rm->t ? scsi_target_remove_lu(rm->t, rm->id)
			: nvmeemu_subsys_remove_ns(rm->ss, rm->id);

	unit_removal_unlist(rm);        /* the slot is free for a new unit */
	if (ret < 0 && ret != -ENOENT)
		return ret;
	return rm->u.disk ? serve_unit_flush(&rm->u, rm->proto) : 0;
}

static void unit_removal_free(void *arg)
{
	struct unit_removal *rm = arg;

	unit_removal_unlist(rm);
	disk_unref(rm->u.disk);
	free(rm->u.spec);
	free(rm);
}

static bool unit_visible(const struct unit_removal *rm)
{
	return rm->t ? scsi_target_lu(rm->t, rm->id) != NULL
		     : nvmeemu_subsys_has_ns(rm->ss, rm->id);
}

/* Removes @rm's unit (its serve_unit in @sd, of @owner): returns {} once
 * it is gone and flushed, or, when that takes over @timeout_ms,
 * {"job": ...} once it is hidden (the job ends after the drain and the
 * flush). @rm is taken over. */
static json_t *unit_remove(struct ctl_call *c, struct unit_removal *rm, struct serve_disks *sd,
			   const void *owner, const char *type, const char *name,
			   json_int_t timeout)
{
	struct serve_ctl_bg *bg;
	int ret = 0;

	if (serve_disks_take(sd, owner, rm->id, &rm->u) < 0)
		rm->u = (struct serve_unit){ 0 };
	bg = unit_removal_list(rm) ? serve_ctl_bg_start(type, name, unit_removal_run, rm,
							 unit_removal_free) : NULL;
	if (!bg) {
		/* No thread: do it here, as before. */
		ret = unit_removal_run(rm);
		unit_removal_free(rm);
	} else {
		/* The core hides the unit first thing: answer no earlier. */
		while (unit_visible(rm) && !serve_ctl_bg_wait(bg, 0, &ret))
			usleep(200);
		if (!serve_ctl_bg_wait(bg, (unsigned)timeout, &ret)) {
			json_t *job = serve_ctl_bg_to_job(c, bg);

			log_info("ctl: %s %s hidden by uid %ld pid %ld; still draining (job %lld)",
				 type, name, (long)c->uid, (long)c->pid,
				 (long long)json_integer_value(json_object_get(job, "id")));
			return job ? json_pack("{s:o}", "job", job) : NULL;
		}
		serve_ctl_bg_free(bg);
	}
	log_info("ctl: %s %s by uid %ld pid %ld", type, name, (long)c->uid, (long)c->pid);
	if (ret < 0)
		return ctl_fail_errno(c, ret, "removed, but its final flush failed");
	return json_object();
}

/* The timeout_ms of a LUN or namespace removal, checked. */
static bool unit_timeout_ok(struct ctl_call *c, json_int_t timeout)
{
	if (timeout >= 0 && timeout <= 3600000)
		return true;
	ctl_fail_paramf(c, "timeout_ms must be 0..3600000");
	return false;
}

/* Removes LUN @lun of @t (named @name: the IQN, the socket), its disk
 * in @sd, as a job of @type for the log prefix @proto (unit_remove). */
static json_t *scsi_lun_remove(struct ctl_call *c, struct scsi_target *t, struct serve_disks *sd,
			       const char *name, json_int_t lun, json_int_t timeout,
			       const char *type, const char *proto)
{
	struct unit_removal *rm;
	char unit[1100];

	snprintf(unit, sizeof(unit), "%s lun %lld", name, (long long)lun);
	if (lun < 0 || lun >= SCSI_MAX_LUNS || !scsi_target_lu(t, (unsigned)lun))
		return serve_ctl_not_found(c, unit);
	if (!(rm = calloc(1, sizeof(*rm))))
		return ctl_fail(c, CTL_ERR_INTERNAL, NULL);
	rm->t = t;
	rm->id = (unsigned)lun;
	rm->proto = proto;
	snprintf(unit, sizeof(unit), "%s/%lld", name, (long long)lun);
	return unit_remove(c, rm, sd, t, type, unit, timeout);
}

json_t *serve_ctl_iscsi_lun_remove(struct ctl_call *c, json_t *params)
{
	const char *target = NULL;
	json_int_t lun, timeout = SERVE_CTL_REMOVE_TIMEOUT_MS;
	struct serve_iscsi *si;
	struct scsi_target *t;
	json_error_t je;

	if (json_unpack_ex(params, &je, JSON_STRICT, "{s?:s, s:I, s?:I}", "target", &target, "lun",
			   &lun, "timeout_ms", &timeout) < 0)
		return ctl_fail_params(c, &je);
	if (!unit_timeout_ok(c, timeout) || !(si = iscsi_of(c, target)))
		return NULL;
	if (!(t = serve_iscsi_target(si, target)))
		return serve_ctl_not_found(c, target ? target : "(the default target)");
	return scsi_lun_remove(c, t, &si->disks, scsi_target_name(t), lun, timeout,
			       "iscsi-lun-remove", "iscsi");
}

static json_t *nvmf_subsys_add(struct ctl_call *c, json_t *params);
static json_t *nvmf_subsys_remove(struct ctl_call *c, json_t *params);
static json_t *vscsi_export_add(struct ctl_call *c, json_t *params);
static json_t *vscsi_export_remove(struct ctl_call *c, json_t *params);

/* ---- whole targets and subsystems (export-add/-remove frontend=...) ---------- */

/* The units of a new target or subsystem: @obj ({"N": SPEC, ...}) parsed,
 * each spec opened. */
struct new_units {
	unsigned n;
	unsigned id[SERVE_ISCSI_MAX_LUNS];
	struct disk *disk[SERVE_ISCSI_MAX_LUNS];
	const char *spec[SERVE_ISCSI_MAX_LUNS];
};

static void new_units_free(struct new_units *u)
{
	for (unsigned i = 0; i < u->n; i++)
		disk_unref(u->disk[i]);
	free(u);
}

/* Parses @obj (NULL: none) into a new struct new_units, ids @lo..@hi, or
 * fails @c and returns NULL. */
/* The reply of a whole-target add, {frontend, name, @list: [{@unit, the
 * disk's fields}]}, logged; frees @u. */
static json_t *added_reply(struct ctl_call *c, const char *frontend, const char *what,
			   const char *name, const char *list, const char *unit, struct new_units *u)
{
	json_t *res = json_pack("{s:s, s:s, s:[]}", "frontend", frontend, "name", name, list);

	for (unsigned i = 0; res && i < u->n; i++) {
		json_t *o = json_pack("{s:i}", unit, (int)u->id[i]);

		if (o)
			disk_fields(o, u->disk[i]);
		json_array_append_new(json_object_get(res, list), o);
	}
	new_units_free(u);
	log_info("ctl: %s %s added by uid %ld pid %ld", what, name, (long)c->uid, (long)c->pid);
	return res;
}

static struct new_units *new_units_open(struct ctl_call *c, json_t *obj, const char *what,
					unsigned lo, unsigned hi, bool ro)
{
	struct new_units *u = calloc(1, sizeof(*u));
	const char *key;
	json_t *val;

	if (!u) {
		ctl_fail(c, CTL_ERR_INTERNAL, NULL);
		return NULL;
	}
	if (obj && !json_is_object(obj)) {
		free(u);
		ctl_fail_paramf(c, "%s must be an object {\"N\": SPEC, ...}", what);
		return NULL;
	}
	json_object_foreach(obj, key, val) {
		uint64_t id;

		if (tool_parse_uint(key, lo, hi, &id) < 0 || !json_is_string(val) ||
		    u->n == SERVE_ISCSI_MAX_LUNS) {
			new_units_free(u);
			ctl_fail_paramf(c, "%s: each key must be a number %u..%u and each value a "
					"spec string (got '%s')", what, lo, hi, key);
			return NULL;
		}
		u->id[u->n] = (unsigned)id;
		u->spec[u->n] = json_string_value(val);
		if (serve_ctl_open_spec(c, u->spec[u->n], ro, &u->disk[u->n]) < 0) {
			new_units_free(u);
			return NULL;
		}
		u->n++;
	}
	return u;
}

/* -32002 for target or subsystem @name, which exists. */
static json_t *target_exists(struct ctl_call *c, const char *name)
{
	return ctl_fail(c, CTL_ERR_EXISTS, json_pack("{s:s, s:b}", "target", name, "exists", 1));
}

/* What export-add frontend=iscsi|nvme-tcp share first: its parameters
 * {frontend, name, @units, read_only} into *@name, *@obj (NULL when
 * absent) and *@ro, then the refusals of a call during shutdown and of
 * writable units on a read-only server. false after failing @c. */
static bool target_add_params(struct ctl_call *c, json_t *params, const char *units,
			      const char **name, json_t **obj, int *ro)
{
	const char *fe;
	json_error_t je;

	*obj = NULL;
	*ro = serve_ctl_opts_of(c)->read_only;
	if (json_unpack_ex(params, &je, JSON_STRICT, "{s:s, s:s, s?:o, s?:b}", "frontend", &fe,
			   "name", name, units, obj, "read_only", ro) < 0) {
		ctl_fail_params(c, &je);
		return false;
	}
	return !serve_ctl_refuse_when_stopping(c) && !serve_ctl_refuse_writable(c, *ro);
}

/* export-add frontend=iscsi name=IQN luns={"N": SPEC} read_only */
static json_t *iscsi_target_add(struct ctl_call *c, json_t *params)
{
	const char *name, *kept;
	json_t *luns;
	struct serve_iscsi *si;
	struct scsi_target *t;
	struct new_units *u;
	char err[256] = "";
	int ro, ret;

	if (!target_add_params(c, params, "luns", &name, &luns, &ro) || !(si = iscsi_of(c, name)))
		return NULL;
	if (!serve_iscsi_valid_name(name))
		return ctl_fail_paramf(c, "name must be an iSCSI name (iqn.YYYY-MM.domain:name, "
				       "lower case)");
	if (serve_iscsi_target(si, name))
		return target_exists(c, name);
	if (!(u = new_units_open(c, luns, "luns", 0, SCSI_MAX_LUNS - 1, ro)))
		return NULL;
	if (!(kept = serve_iscsi_keep_name(si, name)) || scsi_target_new(kept, &t) < 0) {
		new_units_free(u);
		return ctl_fail(c, CTL_ERR_INTERNAL, NULL);
	}
	for (unsigned i = 0; i < u->n; i++) {
		unsigned lun = u->id[i];

		ret = tool_scsi_make_lu(t, lun, u->disk[i], u->spec[i], err, sizeof(err));
		if (ret < 0) {
			scsi_target_free(t);
			new_units_free(u);
			if (ret == -EINVAL)
				return ctl_fail(c, CTL_ERR_BAD_SPEC, json_pack("{s:o}", "message",
									       tool_json_str(err)));
			return ctl_fail_errno(c, ret, "LUN %u: %s", lun, err[0] ? err : "cannot add it");
		}
	}
	ret = serve_iscsi_target_add(si, t, u->n, u->id, u->disk, u->spec);
	if (ret < 0) {
		new_units_free(u);
		if (ret == -EEXIST)
			return target_exists(c, name);
		return ctl_fail_errno(c, ret, "cannot add the target");
	}
	return added_reply(c, "iscsi", "iSCSI target", name, "luns", "lun", u);
}

/* The mode and timeout_ms of export-remove, checked. */
static bool remove_opts(struct ctl_call *c, const char *mode, json_int_t timeout)
{
	if (strcmp(mode, "drain") != 0 && strcmp(mode, "force") != 0) {
		ctl_fail_paramf(c, "mode must be drain or force");
		return false;
	}
	if (timeout < 0 || timeout > 3600000) {
		ctl_fail_paramf(c, "timeout_ms must be 0..3600000");
		return false;
	}
	return true;
}

/* The parameters of export-remove for the other frontends ({frontend,
 * name, mode, timeout_ms}), checked. False after failing @c. */
static bool export_remove_params(struct ctl_call *c, json_t *params, const char **name,
				 const char **mode, json_int_t *timeout)
{
	const char *fe;
	json_error_t je;

	*mode = "drain";
	*timeout = SERVE_CTL_REMOVE_TIMEOUT_MS;
	if (json_unpack_ex(params, &je, JSON_STRICT, "{s:s, s:s, s?:s, s?:I}", "frontend", &fe,
			   "name", name, "mode", mode, "timeout_ms", timeout) < 0) {
		ctl_fail_params(c, &je);
		return false;
	}
	return remove_opts(c, *mode, *timeout);
}

/* The reply of a whole-target removal that returned @ret. */
static json_t *removed_reply(struct ctl_call *c, const char *what, const char *name, int ret,
			     unsigned n)
{
	if (ret == -ENOENT)
		return serve_ctl_not_found(c, name);
	if (ret == -ETIMEDOUT)
		return ctl_fail(c, CTL_ERR_BUSY, json_pack("{s:s, s:i}", "target", name,
							   "connections", (int)n));
	log_info("ctl: %s %s removed by uid %ld pid %ld (%u connections)", what, name,
		 (long)c->uid, (long)c->pid, n);
	if (ret == -EIO)
		return ctl_fail_errno(c, ret, "%s removed, but a final flush failed", what);
	if (ret < 0)
		return ctl_fail_errno(c, ret, "cannot remove the %s", what);
	return json_pack("{s:i, s:b}", "connections_closed", (int)n, "flushed", 1);
}

/* export-remove frontend=iscsi name=IQN mode timeout_ms */
static json_t *iscsi_target_remove(struct ctl_call *c, json_t *params)
{
	const char *name, *mode;
	json_int_t timeout;
	struct serve_iscsi *si;
	unsigned n = 0;
	int ret;

	if (!export_remove_params(c, params, &name, &mode, &timeout) || !(si = iscsi_of(c, name)))
		return NULL;
	ret = serve_iscsi_target_remove(si, name, strcmp(mode, "force") == 0, (unsigned)timeout,
					&n);
	return removed_reply(c, "iSCSI target", name, ret, n);
}

/* What export-add and export-remove do for each frontend but NBD. */
static const struct {
	const char *frontend;
	json_t *(*add)(struct ctl_call *c, json_t *params);
	json_t *(*remove)(struct ctl_call *c, json_t *params);
} fe_exports[] = {
	{ "iscsi", iscsi_target_add, iscsi_target_remove },
	{ "nvme-tcp", nvmf_subsys_add, nvmf_subsys_remove },
	{ "vhost-user-blk", vhost_blk_export_add, vhost_blk_export_remove },
	{ "vhost-user-scsi", vscsi_export_add, vscsi_export_remove },
};

static json_t *fe_export_call(struct ctl_call *c, json_t *params, const char *frontend, bool add)
{
	for (size_t i = 0; i < ARRAY_SIZE(fe_exports); i++)
		if (strcmp(frontend, fe_exports[i].frontend) == 0)
			return add ? fe_exports[i].add(c, params) : fe_exports[i].remove(c, params);
	return ctl_fail_paramf(c, "frontend must be nbd, iscsi, nvme-tcp, vhost-user-blk or "
			       "vhost-user-scsi");
}

json_t *serve_ctl_fe_export_add(struct ctl_call *c, json_t *params, const char *frontend)
{
	return fe_export_call(c, params, frontend, true);
}

json_t *serve_ctl_fe_export_remove(struct ctl_call *c, json_t *params, const char *frontend)
{
	return fe_export_call(c, params, frontend, false);
}

/* ---- NVMe/TCP namespaces ----------------------------------------------------- */

/* The subsystem that nvme-ns-add/-remove act on: @nqn (any that serve
 * runs, of the command line or added at run time), else the command
 * line's; NULL after failing @c (-32004 without NVMe/TCP, -32001 for an
 * unknown @nqn). *@snp: serve's NVMe/TCP half. */
static struct nvmeemu_subsys *nvmf_ns_subsys(struct ctl_call *c, const char *nqn,
					     struct serve_nvmf **snp)
{
	struct serve_nvmf *sn = *snp = serve_ctl_opts_of(c)->nvmf;
	struct nvmeemu_subsys *ss;

	if (!sn || !sn->srv || (!nqn && !sn->subsys)) {
		serve_ctl_not_supported(c, nqn ? nqn : "",
					"serve runs no NVMe/TCP subsystem (--nvme-tcp)");
		return NULL;
	}
	if (!nqn)
		return sn->subsys;
	if (!(ss = serve_nvmf_subsys(sn, nqn)))
		serve_ctl_not_found(c, nqn);
	return ss;
}

json_t *serve_ctl_nvme_ns_add(struct ctl_call *c, json_t *params)
{
	json_int_t nsid;
	const char *text, *nqn = NULL;
	struct nvmeemu_subsys *ss;
	struct serve_nvmf *sn;
	char err[256] = "";
	struct disk *d;
	json_error_t je;
	json_t *res;
	int ro = serve_ctl_opts_of(c)->read_only, ret;

	if (json_unpack_ex(params, &je, JSON_STRICT, "{s?:s, s:I, s:s, s?:b}", "nqn", &nqn, "nsid",
			   &nsid, "spec", &text, "read_only", &ro) < 0)
		return ctl_fail_params(c, &je);
	if (nsid < 1 || nsid > NVMEEMU_MAX_NSID)
		return ctl_fail_paramf(c, "nsid must be 1..%u", NVMEEMU_MAX_NSID);
	if (serve_ctl_refuse_writable(c, ro))
		return NULL;
	if (serve_ctl_refuse_when_stopping(c) || !(ss = nvmf_ns_subsys(c, nqn, &sn)))
		return NULL;
	if (unit_removal_refuse(c, ss, nvmeemu_subsys_nqn(ss), "nsid", (unsigned)nsid) ||
	    serve_ctl_open_spec(c, text, ro, &d) < 0)
		return NULL;
	ret = serve_nvmf_ns_add(sn, ss, (uint32_t)nsid, d, text, err, sizeof(err));
	if (ret < 0) {
		disk_unref(d);
		if (ret == -EEXIST)
			return ctl_fail(c, CTL_ERR_EXISTS, json_pack("{s:s, s:I, s:b}", "target",
				nvmeemu_subsys_nqn(ss), "nsid", (json_int_t)nsid, "exists", 1));
		if (ret == -EINVAL)
			return ctl_fail(c, CTL_ERR_BAD_SPEC, json_pack("{s:o}", "message",
								       tool_json_str(err)));
		return ctl_fail_errno(c, ret, "cannot add the namespace%s%s", err[0] ? ": " : "", err);
	}
	res = json_pack("{s:s, s:I}", "nqn", nvmeemu_subsys_nqn(ss), "nsid", (json_int_t)nsid);
	if (res)
		disk_fields(res, d);
	disk_unref(d);
	log_info("ctl: namespace %lld of %s added by uid %ld pid %ld", (long long)nsid,
		 nvmeemu_subsys_nqn(ss), (long)c->uid, (long)c->pid);
	return res;
}

json_t *serve_ctl_nvme_ns_remove(struct ctl_call *c, json_t *params)
{
	json_int_t nsid, timeout = SERVE_CTL_REMOVE_TIMEOUT_MS;
	const char *nqn = NULL;
	struct nvmeemu_subsys *ss;
	struct unit_removal *rm;
	struct serve_nvmf *sn;
	char name[300];
	json_error_t je;

	if (json_unpack_ex(params, &je, JSON_STRICT, "{s?:s, s:I, s?:I}", "nqn", &nqn, "nsid",
			   &nsid, "timeout_ms", &timeout) < 0)
		return ctl_fail_params(c, &je);
	if (!unit_timeout_ok(c, timeout) || !(ss = nvmf_ns_subsys(c, nqn, &sn)))
		return NULL;
	snprintf(name, sizeof(name), "%s/%lld", nvmeemu_subsys_nqn(ss), (long long)nsid);
	if (nsid < 1 || nsid > NVMEEMU_MAX_NSID || !nvmeemu_subsys_has_ns(ss, (uint32_t)nsid))
		return serve_ctl_not_found(c, name);
	if (!(rm = calloc(1, sizeof(*rm))))
		return ctl_fail(c, CTL_ERR_INTERNAL, NULL);
	rm->ss = ss;
	rm->id = (unsigned)nsid;
	rm->proto = "nvme-tcp";
	return unit_remove(c, rm, &sn->disks, ss == sn->subsys ? NULL : ss, "nvme-ns-remove", name,
			   timeout);
}

static json_t *nvmf_subsys_add(struct ctl_call *c, json_t *params)
{
	struct serve_nvmf *sn = serve_ctl_opts_of(c)->nvmf;
	const char *name;
	json_t *nss;
	struct new_units *u;
	char err[256] = "";
	int ro, ret;

	if (!target_add_params(c, params, "namespaces", &name, &nss, &ro))
		return NULL;
	if (!sn || !sn->srv)
		return serve_ctl_not_supported(c, name, "serve runs no NVMe/TCP target (--nvme-tcp)");
	if (serve_nvmf_subsys(sn, name))
		return target_exists(c, name);
	if (!(u = new_units_open(c, nss, "namespaces", 1, NVMEEMU_MAX_NSID, ro)))
		return NULL;
	ret = serve_nvmf_subsys_add(sn, name, u->n, u->id, u->disk, u->spec, err, sizeof(err));
	if (ret < 0) {
		new_units_free(u);
		if (ret == -EEXIST)
			return target_exists(c, name);
		if (ret == -EINVAL)
			return ctl_fail_paramf(c, "%s", err[0] ? err : "bad NQN or namespace");
		return ctl_fail_errno(c, ret, "cannot add the subsystem%s%s", err[0] ? ": " : "", err);
	}
	return added_reply(c, "nvme-tcp", "NVMe/TCP subsystem", name, "namespaces", "nsid", u);
}

/* export-remove frontend=nvme-tcp name=NQN timeout_ms (mode: the queues
 * are always closed; commands in the core finish first) */
static json_t *nvmf_subsys_remove(struct ctl_call *c, json_t *params)
{
	struct serve_nvmf *sn = serve_ctl_opts_of(c)->nvmf;
	const char *name, *mode;
	json_int_t timeout;
	unsigned n = 0;
	int ret;

	if (!export_remove_params(c, params, &name, &mode, &timeout))
		return NULL;
	if (!sn || !sn->srv)
		return serve_ctl_not_supported(c, name, "serve runs no NVMe/TCP target (--nvme-tcp)");
	ret = serve_nvmf_subsys_remove(sn, name, (unsigned)timeout, &n);
	return removed_reply(c, "NVMe/TCP subsystem", name, ret, n);
}

/* The disk of the positional SPEC that the vhost-user devices of the
 * command line serve (a new reference, or NULL): NBD export "", else
 * LUN 0 of the default iSCSI target, else namespace 1, which cmd-serve
 * opens from the same SPEC. */
static struct disk *vhost_positional_disk(const struct serve_ctl_opts *so)
{
	struct disk *d = NULL;

	if (so->nbd && nbdsrv_export_disk(so->nbd, "", &d, NULL) == 0)
		return d;
	for (unsigned i = 0; so->iscsi && so->iscsi->srv && i < so->iscsi->disks.n; i++) {
		const struct serve_unit *u = &so->iscsi->disks.v[i];

		if (u->owner == so->iscsi->built[0] && u->id == 0)
			return disk_ref(u->disk);
	}
	for (unsigned i = 0; so->nvmf && so->nvmf->subsys && i < so->nvmf->disks.n; i++)
		if (so->nvmf->disks.v[i].id == 1 && !so->nvmf->disks.v[i].owner)
			return disk_ref(so->nvmf->disks.v[i].disk);
	return NULL;
}

/* ---- listing ------------------------------------------------------------------- */

static void vscsi_list(struct ctl_call *c, const char *only, json_t *out);
static void vscsi_foreach(const struct serve_ctl_opts *so, struct serve_ctl_fe *fe,
			  void (*fn)(const struct serve_ctl_fe_unit *u, void *opaque), void *opaque);

static void add_entry(json_t *out, const char *only, json_t *o, struct disk *d)
{
	const char *name = json_string_value(json_object_get(o, "name"));

	if (!o)
		return;
	if (only && (!name || strcmp(only, name) != 0)) {
		json_decref(o);
		return;
	}
	if (d)
		disk_fields(o, d);
	json_array_append_new(out, o);
}

void serve_ctl_fe_list(struct ctl_call *c, const char *only, json_t *out)
{
	const struct serve_ctl_opts *so = serve_ctl_opts_of(c);
	struct serve_ctl_fe *fe = serve_ctl_fe_of(c);
	struct serve_iscsi *si = so->iscsi;
	struct serve_nvmf *sn = so->nvmf;
	struct serve_vhost *sv = so->vhost;

	for (unsigned i = 0; si && si->srv && i < si->disks.n; i++) {
		const struct serve_unit *u = &si->disks.v[i];

		add_entry(out, only, json_pack("{s:s, s:s, s:I, s:o}", "frontend", "iscsi", "name",
					       scsi_target_name(u->owner), "lun", (json_int_t)u->id,
					       "spec", u->spec ? tool_json_str(u->spec) : json_null()),
			  u->disk);
	}
	for (unsigned i = 0; sn && sn->srv && i < sn->disks.n; i++) {
		const struct serve_unit *u = &sn->disks.v[i];

		add_entry(out, only, json_pack("{s:s, s:s, s:I, s:o}", "frontend", "nvme-tcp", "name",
					       serve_nvmf_unit_nqn(sn, u), "nsid",
					       (json_int_t)u->id, "spec",
					       u->spec ? tool_json_str(u->spec) : json_null()),
			  u->disk);
	}
	for (struct fe_ublk *u = fe->ublk; u; u = u->next)
		add_entry(out, only, ublk_json(fe, u), NULL);
	for (struct fe_vhost *v = fe->vhost; v; v = v->next)
		add_entry(out, only, vhost_json(v), NULL);
	if (sv && sv->socket) {
		/* The positional SPEC, served as export "" too. */
		struct disk *d = vhost_positional_disk(so);

		if (sv->socket)
			add_entry(out, only, json_pack("{s:s, s:s, s:o}", "frontend", "vhost-user-blk",
						       "name", sv->socket, "spec",
						       sv->spec_text ? tool_json_str(sv->spec_text)
								     : json_null()), d);
		disk_unref(d);
	}
	vscsi_list(c, only, out);
}

void serve_ctl_fe_foreach(const struct serve_ctl_opts *so, struct serve_ctl_fe *fe,
			  void (*fn)(const struct serve_ctl_fe_unit *u, void *opaque),
			  void *opaque)
{
	struct serve_iscsi *si = so->iscsi;
	struct serve_nvmf *sn = so->nvmf;
	struct serve_vhost *sv = so->vhost;
	char name[512];

	for (unsigned i = 0; si && si->srv && i < si->disks.n; i++) {
		const struct serve_unit *u = &si->disks.v[i];

		snprintf(name, sizeof(name), "%s/%u", scsi_target_name(u->owner), u->id);
		fn(&(struct serve_ctl_fe_unit){ .frontend = "iscsi", .name = name, .spec = u->spec,
						.disk = u->disk }, opaque);
	}
	for (unsigned i = 0; sn && sn->srv && i < sn->disks.n; i++) {
		const struct serve_unit *u = &sn->disks.v[i];

		snprintf(name, sizeof(name), "%s/%u", serve_nvmf_unit_nqn(sn, u), u->id);
		fn(&(struct serve_ctl_fe_unit){ .frontend = "nvme-tcp", .name = name, .spec = u->spec,
						.disk = u->disk }, opaque);
	}
	for (struct fe_ublk *u = fe ? fe->ublk : NULL; u; u = u->next) {
		snprintf(name, sizeof(name), "/dev/ublkb%" PRIu32, ubsrv_dev_id(u->dev));
		fn(&(struct serve_ctl_fe_unit){ .frontend = "ublk", .name = name, .export = u->export,
						.disk = u->disk }, opaque);
	}
	for (struct fe_vhost *v = fe ? fe->vhost : NULL; v; v = v->next)
		fn(&(struct serve_ctl_fe_unit){ .frontend = "vhost-user-blk", .name = v->socket,
						.export = v->export, .spec = v->spec,
						.disk = v->disk }, opaque);
	if (sv && sv->socket) {
		struct disk *d = vhost_positional_disk(so);

		if (d && sv->socket)
			fn(&(struct serve_ctl_fe_unit){ .frontend = "vhost-user-blk", .name = sv->socket,
							.spec = sv->spec_text, .disk = d }, opaque);
		disk_unref(d);
	}
	vscsi_foreach(so, fe, fn, opaque);
}

struct find_ctx {
	const char *name;
	struct disk *disk;
	const char *spec;
};

static void find_one(const struct serve_ctl_fe_unit *u, void *opaque)
{
	struct find_ctx *f = opaque;

	if (!f->disk && strcmp(u->name, f->name) == 0) {
		f->disk = disk_ref(u->disk);
		f->spec = u->spec;
	}
}

struct disk *serve_ctl_fe_find(struct ctl_call *c, const char *name, const char **spec)
{
	struct find_ctx f = { .name = name };

	serve_ctl_fe_foreach(serve_ctl_opts_of(c), serve_ctl_fe_of(c), find_one, &f);
	if (spec)
		*spec = f.spec;
	return f.disk;
}

json_t *serve_ctl_fe_frontends(const struct serve_ctl_opts *o, struct serve_ctl_fe *fe)
{
	json_t *a = json_array();

	if (!a)
		return NULL;
	if (o->nbd)
		json_array_append_new(a, json_string("nbd"));
	if (o->iscsi && o->iscsi->srv)
		json_array_append_new(a, json_string("iscsi"));
	if (o->nvmf && o->nvmf->srv)
		json_array_append_new(a, json_string("nvme-tcp"));
	if ((o->vhost && o->vhost->socket) || (fe && fe->vhost))
		json_array_append_new(a, json_string("vhost-user-blk"));
	if ((o->vhost && o->vhost->scsi) || (fe && fe->vscsi))
		json_array_append_new(a, json_string("vhost-user-scsi"));
	if (fe && fe->ublk)
		json_array_append_new(a, json_string("ublk"));
	return a;
}

/* ---- vhost-user-scsi devices ------------------------------------------------ */

/* The vhost-user-scsi device on @socket: the command line's or one made
 * by vhost-scsi-add (*@link then points at it in the list; NULL for the
 * command line's). NULL when there is none. */
static struct serve_vscsi *vscsi_find(struct ctl_call *c, const char *socket,
				      struct serve_vscsi ***link)
{
	struct serve_vhost *sv = serve_ctl_opts_of(c)->vhost;

	if (link)
		*link = NULL;
	if (sv && sv->scsi && strcmp(sv->scsi->socket, socket) == 0)
		return sv->scsi;
	for (struct serve_vscsi **pp = &serve_ctl_fe_of(c)->vscsi; *pp; pp = &(*pp)->next)
		if (strcmp((*pp)->socket, socket) == 0) {
			if (link)
				*link = pp;
			return *pp;
		}
	return NULL;
}

/* The socket is served already: -32002. Returns NULL. */
static json_t *vscsi_exists(struct ctl_call *c, const char *socket)
{
	return ctl_fail(c, CTL_ERR_EXISTS, json_pack("{s:o, s:b}", "target", tool_json_str(socket),
						     "exists", 1));
}

/* A new device on @socket with the LUNs of @luns ({"N": SPEC}, NULL:
 * none), @queues request queues: vhost-scsi-add and export-add. */
static json_t *vscsi_add(struct ctl_call *c, const char *socket, json_t *luns, json_int_t queues,
			 bool ro)
{
	struct serve_ctl_fe *fe = serve_ctl_fe_of(c);
	struct serve_vscsi *v;
	struct new_units *u;
	json_t *res;
	char err[512] = "";
	int ret;

	if (queues < 1 || queues > VHOSTSRV_MAX_QUEUES - 2)
		return ctl_fail_paramf(c, "queues must be 1..%u", VHOSTSRV_MAX_QUEUES - 2);
	if (!socket[0])
		return ctl_fail_paramf(c, "socket must be a path");
	if (serve_ctl_refuse_writable(c, ro) || serve_ctl_refuse_when_stopping(c))
		return NULL;
	/* A socket of this server: the listener would refuse it too, but
	 * only once the specs are open. */
	if (vscsi_find(c, socket, NULL))
		return vscsi_exists(c, socket);
	if (!(u = new_units_open(c, luns, "luns", 0, SCSI_MAX_LUNS - 1, ro)))
		return NULL;
	if (serve_vscsi_new(socket, NULL, &v) < 0) {
		new_units_free(u);
		return ctl_fail(c, CTL_ERR_INTERNAL, NULL);
	}
	for (unsigned i = 0; i < u->n; i++) {
		ret = tool_scsi_make_lu(v->target, u->id[i], u->disk[i], u->spec[i], err, sizeof(err));
		if (ret == 0)
			ret = serve_disks_add(&v->disks, u->disk[i], v->target, u->id[i], u->spec[i]);
		if (ret < 0) {
			unsigned lun = u->id[i];

			(void)serve_vscsi_free(v);
			new_units_free(u);
			if (ret == -EINVAL)
				return ctl_fail(c, CTL_ERR_BAD_SPEC, json_pack("{s:o}", "message",
									       tool_json_str(err)));
			return ctl_fail_errno(c, ret, "LUN %u: %s", lun, err[0] ? err : "cannot add it");
		}
	}
	if ((ret = serve_vscsi_start(v, (unsigned)queues, err, sizeof(err))) < 0) {
		(void)serve_vscsi_free(v);
		new_units_free(u);
		if (ret == -EADDRINUSE)
			return vscsi_exists(c, socket);
		return ctl_fail_errno(c, ret, "%s", err[0] ? err : "cannot start the vhost-user server");
	}
	v->next = fe->vscsi;
	fe->vscsi = v;
	res = added_reply(c, "vhost-user-scsi", "vhost-user-scsi device", socket, "luns", "lun", u);
	if (res)
		json_object_set_new(res, "target", json_string(scsi_target_name(v->target)));
	return res;
}

json_t *serve_ctl_vhost_scsi_add(struct ctl_call *c, json_t *params)
{
	const char *socket;
	json_t *luns = NULL;
	json_int_t queues = 1;
	json_error_t je;
	int ro = serve_ctl_opts_of(c)->read_only;

	if (json_unpack_ex(params, &je, JSON_STRICT, "{s:s, s?:o, s?:I, s?:b}", "socket", &socket,
			   "luns", &luns, "queues", &queues, "read_only", &ro) < 0)
		return ctl_fail_params(c, &je);
	return vscsi_add(c, socket, luns, queues, ro);
}

/* export-add frontend=vhost-user-scsi name=SOCKET luns queues read_only */
static json_t *vscsi_export_add(struct ctl_call *c, json_t *params)
{
	const char *fe, *socket;
	json_t *luns = NULL;
	json_int_t queues = 1;
	json_error_t je;
	int ro = serve_ctl_opts_of(c)->read_only;

	if (json_unpack_ex(params, &je, JSON_STRICT, "{s:s, s:s, s?:o, s?:I, s?:b}", "frontend",
			   &fe, "name", &socket, "luns", &luns, "queues", &queues, "read_only",
			   &ro) < 0)
		return ctl_fail_params(c, &je);
	return vscsi_add(c, socket, luns, queues, ro);
}

/* Stops and frees the device on @socket (vhost-scsi-del, export-remove):
 * NULL after failing @c, else a new empty object. */
static json_t *vscsi_del(struct ctl_call *c, const char *socket)
{
	struct serve_vhost *sv = serve_ctl_opts_of(c)->vhost;
	struct serve_vscsi **link, *v = vscsi_find(c, socket, &link);
	int ret;

	if (!v)
		return serve_ctl_not_found(c, socket);
	/* A LUN removal still draining uses the target: wait for its job. */
	if (unit_removal_pending(v->target, UNIT_ANY))
		return ctl_fail(c, CTL_ERR_BUSY, json_pack("{s:o, s:b}", "target",
							   tool_json_str(socket), "being_removed", 1));
	if (link)
		*link = v->next;
	else
		sv->scsi = NULL;
	ret = serve_vscsi_free(v);
	log_info("ctl: vhost-user-scsi %s deleted by uid %ld pid %ld", socket, (long)c->uid,
		 (long)c->pid);
	if (ret < 0)
		return ctl_fail_errno(c, ret, "device removed, but a final flush failed");
	return json_object();
}

json_t *serve_ctl_vhost_scsi_del(struct ctl_call *c, json_t *params)
{
	return socket_del_call(c, params, vscsi_del);
}

static json_t *vscsi_export_remove(struct ctl_call *c, json_t *params)
{
	return socket_export_remove(c, params, vscsi_del);
}

json_t *serve_ctl_vhost_scsi_lun_add(struct ctl_call *c, json_t *params)
{
	const char *socket, *text;
	json_int_t lun;
	struct serve_vscsi *v;
	int ro;

	if (!lun_add_params(c, params, "socket", false, &socket, &lun, &text, &ro))
		return NULL;
	if (!(v = vscsi_find(c, socket, NULL)))
		return serve_ctl_not_found(c, socket);
	return scsi_lun_add(c, v->target, &v->disks, "socket", v->socket, lun, text, ro);
}

json_t *serve_ctl_vhost_scsi_lun_remove(struct ctl_call *c, json_t *params)
{
	const char *socket;
	json_int_t lun, timeout = SERVE_CTL_REMOVE_TIMEOUT_MS;
	struct serve_vscsi *v;
	json_error_t je;

	if (json_unpack_ex(params, &je, JSON_STRICT, "{s:s, s:I, s?:I}", "socket", &socket, "lun",
			   &lun, "timeout_ms", &timeout) < 0)
		return ctl_fail_params(c, &je);
	if (!unit_timeout_ok(c, timeout))
		return NULL;
	if (!(v = vscsi_find(c, socket, NULL)))
		return serve_ctl_not_found(c, socket);
	return scsi_lun_remove(c, v->target, &v->disks, v->socket, lun, timeout,
			       "vhost-scsi-lun-remove", "vhost-user-scsi");
}

/* At the end of serve (the main thread, the control thread stopped): a
 * LUN removal job still draining holds its target, so wait for it first
 * (serve waits for such jobs anyway: docs/ctl.md). */
static void vscsi_stop_all(struct serve_ctl_fe *fe)
{
	while (fe->vscsi) {
		struct serve_vscsi *v = fe->vscsi;

		fe->vscsi = v->next;
		while (unit_removal_pending(v->target, UNIT_ANY))
			usleep(1000);
		(void)serve_vscsi_free(v);      /* a failed flush is logged */
	}
}

/* The command line's device, then the ones made at run time. */
static struct serve_vscsi *vscsi_first(const struct serve_ctl_opts *so, struct serve_ctl_fe *fe)
{
	if (so->vhost && so->vhost->scsi)
		return so->vhost->scsi;
	return fe ? fe->vscsi : NULL;
}

static struct serve_vscsi *vscsi_next(const struct serve_ctl_opts *so, struct serve_ctl_fe *fe,
				      struct serve_vscsi *v)
{
	if (so->vhost && v == so->vhost->scsi)
		return fe ? fe->vscsi : NULL;
	return v->next;
}

static void vscsi_list(struct ctl_call *c, const char *only, json_t *out)
{
	const struct serve_ctl_opts *so = serve_ctl_opts_of(c);
	struct serve_ctl_fe *fe = serve_ctl_fe_of(c);

	for (struct serve_vscsi *v = vscsi_first(so, fe); v; v = vscsi_next(so, fe, v)) {
		/* A device without LUNs is listed once, with lun null. */
		if (!v->disks.n)
			add_entry(out, only, json_pack("{s:s, s:o, s:s, s:n}", "frontend",
						       "vhost-user-scsi", "name", tool_json_str(v->socket),
						       "target", scsi_target_name(v->target), "lun"), NULL);
		for (unsigned i = 0; i < v->disks.n; i++) {
			const struct serve_unit *u = &v->disks.v[i];

			add_entry(out, only, json_pack("{s:s, s:o, s:s, s:I, s:o}", "frontend",
						       "vhost-user-scsi", "name",
						       tool_json_str(v->socket), "target",
						       scsi_target_name(v->target), "lun", (json_int_t)u->id,
						       "spec", u->spec ? tool_json_str(u->spec)
								       : json_null()), u->disk);
		}
	}
}

static void vscsi_foreach(const struct serve_ctl_opts *so, struct serve_ctl_fe *fe,
			  void (*fn)(const struct serve_ctl_fe_unit *u, void *opaque), void *opaque)
{
	char name[1100];

	for (struct serve_vscsi *v = vscsi_first(so, fe); v; v = vscsi_next(so, fe, v))
		for (unsigned i = 0; i < v->disks.n; i++) {
			const struct serve_unit *u = &v->disks.v[i];

			snprintf(name, sizeof(name), "%s/%u", v->socket, u->id);
			fn(&(struct serve_ctl_fe_unit){ .frontend = "vhost-user-scsi", .name = name,
							.spec = u->spec, .disk = u->disk }, opaque);
		}
}
