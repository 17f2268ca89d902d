/* SPDX-License-Identifier: MIT */
/*
 * serve-ctl.c: the methods of serve's control socket (serve-ctl.h,
 * docs/ctl.md). Each runs on the control thread (ctl/server.h) and reaches
 * the running server only through nbd/server.h's thread-safe calls and the
 * disks' own thread-safe entry points (delay_set, ramlayer_resize, the
 * synchronous flush on the control thread's reactor), so no method stalls
 * or races the I/O workers.
 *
 * Targets name an export, or a disk of another frontend (serve-ctl-fe.c;
 * then serve may run no NBD server at all, and the NBD-only methods answer
 * -32004); the node a method acts on inside the disk's
 * stack is found by walking it (the describe tree of storage/disk.h:
 * decorated disks, members, disks used as layers), top first.
 *
 * Jobs (layer-commit): the method starts the work on a thread of its own
 * (layered_commit_start) and returns; job-* poll or cancel it. The job
 * list belongs to the control thread; serve_ctl_stop ends the jobs once
 * that thread has stopped. A removal of serve-ctl-fe.c that outlives its
 * call's timeout (a LUN or namespace draining on a hung disk) becomes a
 * job too (struct serve_ctl_bg: a function on a thread of its own).
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/compiler.h"
#include "common/iostats.h"
#include "common/log.h"
#include "common/reactor.h"
#include "ctl/rpc.h"
#include "ctl/server.h"
#include "nbd/server.h"
#include "net/netsrv.h"
#include "storage/backends/filedisk.h"
#include "storage/backends/url.h"
#include "storage/decorators/delay.h"
#include "storage/decorators/error.h"
#include "storage/disk.h"
#include "storage/layered.h"
#include "storage/spec.h"
#include "tools/serve-ctl-internal.h"
#include "tools/serve-ctl.h"
#include "tools/tool.h"

#define CTL_DEFAULT_REMOVE_TIMEOUT_MS SERVE_CTL_REMOVE_TIMEOUT_MS
#define CTL_MAX_WALK_DEPTH 64u

/* The spec text of each export, for export-list (control thread only,
 * after start). @raw is the text as given, for layer-commit, which opens
 * the overlay's lower spec again; @spec is redacted for display. */
struct ctl_spec {
	char *name, *spec, *raw;
	struct ctl_spec *next;
};

/* A long operation started by a method (layer-commit), listed by job-list
 * until it is dropped (control thread only; serve_ctl_stop ends them). */
struct ctl_job {
	uint64_t id;
	char *target;                /* the export */
	uint32_t sector_size;
	uint64_t started_ns;
	struct layered_commit *commit;  /* NULL: @bg */
	struct serve_ctl_bg *bg;
	struct ctl_job *next;        /* newer first */
};

/* A function run on a thread of its own (serve-ctl-internal.h). */
struct serve_ctl_bg {
	pthread_t thread;
	int (*fn)(void *arg);
	void *arg;
	void (*free_arg)(void *arg);
	char *type, *target;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool done;                   /* under @lock */
	int ret;                     /* fn's result, once done */
};

struct serve_ctl {
	struct serve_ctl_opts o;
	struct ctl_server *srv;
	struct ctl_rpc rpc;
	uint64_t started_ns;
	atomic_bool shutting_down;
	struct ctl_spec *specs;
	struct serve_ctl_fe *fe;     /* serve-ctl-fe.c */
	struct ctl_job *jobs;
	uint64_t next_job_id;
	bool stats_all;              /* stats-enable without a target: new disks too */
};

/* ---- helpers ----------------------------------------------------------- */

static struct serve_ctl *ctx_of(struct ctl_call *c)
{
	return c->ctx;
}

static json_t *not_found(struct ctl_call *c, const char *target)
{
	return ctl_fail(c, CTL_ERR_NOT_FOUND, json_pack("{s:o}", "target", tool_json_str(target)));
}

static json_t *not_supported(struct ctl_call *c, const char *target, const char *reason)
{
	return ctl_fail(c, CTL_ERR_NOT_SUPPORTED,
			json_pack("{s:o, s:s}", "target", tool_json_str(target), "reason", reason));
}

/* -32004 for the NBD-only methods of a server without NBD. */
static json_t *no_nbd(struct ctl_call *c, const char *target)
{
	return not_supported(c, target ? target : "",
			     "no NBD server: serve runs without -U, -p, -i or --export");
}

/* The disk of NBD export @name (a new reference), or NULL after failing
 * @c (-32004 without an NBD server, -32001 for an unknown export). */
static struct disk *export_disk(struct ctl_call *c, const char *name, bool *read_only)
{
	struct disk *d = NULL;

	if (!ctx_of(c)->o.nbd) {
		no_nbd(c, name);
		return NULL;
	}
	if (nbdsrv_export_disk(ctx_of(c)->o.nbd, name, &d, read_only) < 0) {
		not_found(c, name);
		return NULL;
	}
	return d;
}

static const char *spec_of(struct serve_ctl *s, const char *name);

/* The disk target @target names (docs/ctl.md, "Methods"): an NBD export,
 * else a disk of another frontend ("IQN/LUN", "NQN/NSID", a vhost-user
 * socket, "/dev/ublkbN"). A new reference, or NULL after failing @c. */
static struct disk *target_disk_spec(struct ctl_call *c, const char *target, bool *read_only,
				     const char **spec)
{
	struct serve_ctl *s = ctx_of(c);
	struct disk *d = NULL;

	if (read_only)
		*read_only = false;
	if (s->o.nbd && nbdsrv_export_disk(s->o.nbd, target, &d, read_only) == 0) {
		if (spec)
			*spec = spec_of(s, target);
		return d;
	}
	d = serve_ctl_fe_find(c, target, spec);
	if (!d)
		not_found(c, target);
	else if (read_only)
		*read_only = disk_get_info(d)->read_only;
	return d;
}

static struct disk *target_disk(struct ctl_call *c, const char *target, bool *read_only)
{
	return target_disk_spec(c, target, read_only, NULL);
}

static bool refuse_when_stopping(struct ctl_call *c)
{
	if (!atomic_load(&ctx_of(c)->shutting_down))
		return false;
	ctl_fail(c, CTL_ERR_SHUTTING_DOWN, NULL);
	return true;
}

/* A walk over a stack through its describe tree: the first node (top
 * first, depth first) for which @match is true. */
struct walk {
	struct disk_describer dd;
	bool (*match)(struct disk *d, void *arg);
	/* Optional: called with each layer of a layered disk of more than
	 * one layer that is not a disk (RAM, SQLite: a disk-as-layer is
	 * walked as its disk), in the walk's order, after the layered disk;
	 * a layered disk of one layer (mem:) is its layer. */
	void (*layer)(struct layer *l, void *arg);
	void *arg;
	struct disk *found;          /* borrowed from the stack */
	struct disk *cur;            /* the disk being described */
	unsigned depth;
};

static void walk_disk(struct walk *w, struct disk *d);

static void walk_param(struct disk_describer *dd UNUSED, const char *k UNUSED,
		       const char *v UNUSED)
{
}

static void walk_child(struct disk_describer *dd, const char *role UNUSED, struct disk *child)
{
	walk_disk(dd->opaque, child);
}

static void walk_layer_begin(struct disk_describer *dd, unsigned index,
			     const char *type UNUSED, bool rc UNUSED, bool wt UNUSED,
			     uint64_t count UNUSED, struct disk *disk)
{
	struct walk *w = dd->opaque;

	if (disk)
		walk_disk(w, disk);
	else if (w->layer && !w->found && layered_disk_layer_count(w->cur) > 1)
		w->layer(layered_disk_layer(w->cur, index), w->arg);
}

static void walk_layer_end(struct disk_describer *dd UNUSED)
{
}

static void walk_disk(struct walk *w, struct disk *d)
{
	struct disk *outer = w->cur;

	if (!d || w->found || w->depth >= CTL_MAX_WALK_DEPTH)
		return;
	if (w->match(d, w->arg)) {
		w->found = d;
		return;
	}
	w->depth++;
	w->cur = d;
	disk_describe(d, &w->dd);
	w->cur = outer;
	w->depth--;
}

/* The first node of @top's stack that @match accepts (borrowed), or NULL;
 * @layer (NULL: none) sees the layers that are not disks on the way. */
static struct disk *stack_walk(struct disk *top, bool (*match)(struct disk *d, void *arg),
			       void (*layer)(struct layer *l, void *arg), void *arg)
{
	struct walk w = {
		.dd = { .param = walk_param, .child = walk_child,
			.layer_begin = walk_layer_begin, .layer_end = walk_layer_end },
		.match = match, .layer = layer, .arg = arg,
	};

	w.dd.opaque = &w;
	walk_disk(&w, top);
	return w.found;
}

static struct disk *stack_find(struct disk *top, bool (*match)(struct disk *d, void *arg),
			       void *arg)
{
	return stack_walk(top, match, NULL, arg);
}

static bool is_delay(struct disk *d, void *arg UNUSED)
{
	return delay_get(d, NULL, NULL) == 0;
}

static bool is_ram_layered(struct disk *d, void *arg UNUSED)
{
	struct layer *l = layered_disk_layer_count(d) ? layered_disk_layer(d, 0) : NULL;

	return l && strcmp(layer_get_ops(l)->type, "ram") == 0;
}

static bool is_file(struct disk *d, void *arg UNUSED)
{
	return filedisk_is_file(d);
}

static const char *spec_of(struct serve_ctl *s, const char *name)
{
	for (struct ctl_spec *p = s->specs; p; p = p->next)
		if (strcmp(p->name, name) == 0)
			return p->spec;
	return NULL;
}

static void spec_forget(struct serve_ctl *s, const char *name)
{
	for (struct ctl_spec **pp = &s->specs; *pp; pp = &(*pp)->next) {
		if (strcmp((*pp)->name, name) == 0) {
			struct ctl_spec *p = *pp;

			*pp = p->next;
			free(p->name);
			free(p->spec);
			free(p->raw);
			free(p);
			return;
		}
	}
}

void serve_ctl_note_export(struct serve_ctl *s, const char *name, const char *spec)
{
	struct ctl_spec *p = calloc(1, sizeof(*p));
	struct disk *d = NULL;

	if (s->stats_all && s->o.nbd && nbdsrv_export_disk(s->o.nbd, name, &d, NULL) == 0) {
		serve_ctl_stats_enable(d);
		disk_unref(d);
	}
	if (!p)
		return;
	spec_forget(s, name);
	p->name = strdup(name);
	p->spec = url_redact_text_dup(spec);
	p->raw = strdup(spec);
	if (!p->name || !p->spec || !p->raw) {
		free(p->name);
		free(p->spec);
		free(p->raw);
		free(p);
		return;
	}
	p->next = s->specs;
	s->specs = p;
}

/* ---- server-info, log-set-level, shutdown ------------------------------- */

static json_t *m_server_info(struct ctl_call *c, json_t *params)
{
	struct serve_ctl *s = ctx_of(c);
	json_error_t je;

	if (json_unpack_ex(params, &je, JSON_STRICT, "{}") < 0)
		return ctl_fail_params(c, &je);
	return json_pack("{s:s, s:I, s:I, s:I, s:i, s:o, s:b, s:I, s:o, s:b}",
			 "version", PACKAGE_VERSION, "pid", (json_int_t)getpid(),
			 "started_ns", (json_int_t)s->started_ns,
			 "uptime_ns", (json_int_t)(reactor_now_ns() - s->started_ns),
			 "threads", (int)s->o.threads, "control", tool_json_str(s->o.path),
			 "read_only", s->o.read_only,
			 "connections_served", (json_int_t)netsrv_connections_served(s->o.net),
			 "frontends", serve_ctl_fe_frontends(&s->o, s->fe),
			 "shutting_down", (int)atomic_load(&s->shutting_down));
}

static json_t *m_log_set_level(struct ctl_call *c, json_t *params)
{
	static const char *const names[] = { "error", "warn", "info", "debug" };
	const char *level;
	json_error_t je;

	if (json_unpack_ex(params, &je, JSON_STRICT, "{s:s}", "level", &level) < 0)
		return ctl_fail_params(c, &je);
	for (unsigned i = 0; i < ARRAY_SIZE(names); i++) {
		if (strcmp(level, names[i]) == 0) {
			log_set_level((enum log_level)i);
			return json_pack("{s:s}", "level", names[i]);
		}
	}
	return ctl_fail_paramf(c, "level must be error, warn, info or debug");
}

static json_t *m_shutdown(struct ctl_call *c, json_t *params)
{
	struct serve_ctl *s = ctx_of(c);
	const char *mode = "drain";
	json_error_t je;

	if (json_unpack_ex(params, &je, JSON_STRICT, "{s?:s}", "mode", &mode) < 0)
		return ctl_fail_params(c, &je);
	if (strcmp(mode, "drain") != 0 && strcmp(mode, "now") != 0)
		return ctl_fail_paramf(c, "mode must be drain or now");
	log_info("ctl: shutdown (%s) asked by uid %ld pid %ld", mode, (long)c->uid, (long)c->pid);
	atomic_store(&s->shutting_down, true);
	/* Exactly what SIGTERM does (serve's signal thread drains, stops the
	 * --run command, flushes); "now" also drops the connections at once,
	 * as a second signal would (two pending SIGTERMs merge into one). */
	kill(getpid(), SIGTERM);
	if (strcmp(mode, "now") == 0) {
		netsrv_stop(s->o.net);
		netsrv_stop(s->o.net);
	}
	return json_object();
}

/* ---- exports ------------------------------------------------------------- */

struct list_ctx {
	struct serve_ctl *s;
	const char *only;
	json_t *out;
};

static void caps_add(const char *name, void *opaque)
{
	json_array_append_new(opaque, json_string(name));
}

static void list_one(const struct nbdsrv_export_view *v, void *opaque)
{
	struct list_ctx *lc = opaque;
	const struct disk_info *info = disk_get_info(v->disk);
	const char *spec = spec_of(lc->s, v->name);
	json_t *caps;

	if (lc->only && strcmp(lc->only, v->name) != 0)
		return;
	caps = json_array();
	if (caps)
		tool_caps_foreach(info->caps, caps_add, caps);
	json_array_append_new(lc->out, json_pack(
		"{s:s, s:o, s:o, s:o, s:s, s:b, s:I, s:i, s:o, s:i, s:b}", "frontend", "nbd",
		"name", tool_json_str(v->name),
		"description", v->description ? tool_json_str(v->description) : json_null(),
		"spec", spec ? tool_json_str(spec) : json_null(), "type", info->type,
		"read_only", v->read_only,
		"size", (json_int_t)(disk_sector_count(v->disk) << info->sector_shift),
		"sector_size", (int)info->sector_size, "caps", caps ? caps : json_array(),
		"connections", (int)v->connections, "removing", v->removing));
}

static json_t *m_export_list(struct ctl_call *c, json_t *params)
{
	struct list_ctx lc = { .s = ctx_of(c) };
	json_error_t je;

	if (json_unpack_ex(params, &je, JSON_STRICT, "{s?:s}", "name", &lc.only) < 0)
		return ctl_fail_params(c, &je);
	lc.out = json_array();
	if (!lc.out)
		return NULL;
	if (lc.s->o.nbd)
		nbdsrv_foreach_export(lc.s->o.nbd, list_one, &lc);
	serve_ctl_fe_list(c, lc.only, lc.out);
	if (lc.only && json_array_size(lc.out) == 0) {
		json_decref(lc.out);
		return not_found(c, lc.only);
	}
	return lc.out;
}

/* The frontend export-add and export-remove act on (*@fe: "nbd" when
 * params has none), or false after failing @c. */
static bool frontend_of(struct ctl_call *c, json_t *params, const char **fe)
{
	json_t *v = json_object_get(params, "frontend");

	if (!v)
		return true;
	if (!json_is_string(v)) {
		ctl_fail_paramf(c, "frontend must be a string: nbd, iscsi, nvme-tcp, "
				"vhost-user-blk or vhost-user-scsi");
		return false;
	}
	*fe = json_string_value(v);
	return true;
}

static json_t *m_export_add(struct ctl_call *c, json_t *params)
{
	struct serve_ctl *s = ctx_of(c);
	const char *name, *text, *desc = NULL, *fe = "nbd";
	int ro = s->o.read_only;
	struct disk *d = NULL;
	json_error_t je;
	json_t *res;
	int ret;

	if (!frontend_of(c, params, &fe))
		return NULL;
	if (strcmp(fe, "nbd") != 0)
		return serve_ctl_fe_export_add(c, params, fe);
	if (json_unpack_ex(params, &je, JSON_STRICT, "{s:s, s:s, s?:s, s?:b, s?:s}", "name", &name,
			   "spec", &text, "description", &desc, "read_only", &ro, "frontend",
			   &fe) < 0)
		return ctl_fail_params(c, &je);
	if (!s->o.nbd)
		return no_nbd(c, name);
	if (refuse_when_stopping(c))
		return NULL;
	if (serve_ctl_refuse_writable(c, ro))
		return NULL;
	if (serve_ctl_open_spec(c, text, ro, &d) < 0)
		return NULL;
	res = json_pack("{s:o, s:I, s:i}", "name", tool_json_str(name),
			"size", (json_int_t)(disk_sector_count(d) << disk_get_info(d)->sector_shift),
			"sector_size", (int)disk_sector_size(d));
	ret = nbdsrv_add_export(s->o.nbd, name, desc, d, ro);
	if (ret < 0) {
		disk_unref(d);
		json_decref(res);
		if (ret == -EEXIST)
			return ctl_fail(c, CTL_ERR_EXISTS, json_pack("{s:o, s:b}", "target",
								     tool_json_str(name), "exists", 1));
		if (ret == -EINVAL)
			return ctl_fail_paramf(c, "bad export name or description");
		return ctl_fail_errno(c, ret, "cannot add the export");
	}
	serve_ctl_note_export(s, name, text);
	log_info("ctl: export '%s' added by uid %ld pid %ld", name, (long)c->uid, (long)c->pid);
	return res;
}

static json_t *m_export_remove(struct ctl_call *c, json_t *params)
{
	struct serve_ctl *s = ctx_of(c);
	const char *name, *mode = "drain", *fe = "nbd";
	json_int_t timeout = CTL_DEFAULT_REMOVE_TIMEOUT_MS;
	unsigned n = 0;
	json_error_t je;
	int ret;

	if (!frontend_of(c, params, &fe))
		return NULL;
	if (strcmp(fe, "nbd") != 0)
		return serve_ctl_fe_export_remove(c, params, fe);
	if (json_unpack_ex(params, &je, JSON_STRICT, "{s:s, s?:s, s?:I, s?:s}", "name", &name,
			   "mode", &mode, "timeout_ms", &timeout, "frontend", &fe) < 0)
		return ctl_fail_params(c, &je);
	if (strcmp(mode, "drain") != 0 && strcmp(mode, "force") != 0)
		return ctl_fail_paramf(c, "mode must be drain or force");
	if (!s->o.nbd)
		return no_nbd(c, name);
	if (timeout < 0 || timeout > 3600000)
		return ctl_fail_paramf(c, "timeout_ms must be 0..3600000");
	ret = nbdsrv_remove_export(s->o.nbd, name, strcmp(mode, "force") == 0, (unsigned)timeout,
				   &n);
	if (ret == -ENOENT)
		return not_found(c, name);
	if (ret == -ETIMEDOUT)
		return ctl_fail(c, CTL_ERR_BUSY, json_pack("{s:o, s:i}", "target", tool_json_str(name),
							   "connections", (int)n));
	spec_forget(s, name);
	log_info("ctl: export '%s' removed by uid %ld pid %ld (%u connections)", name,
		 (long)c->uid, (long)c->pid, n);
	if (ret < 0)
		return ctl_fail_errno(c, ret, "export removed, but its final flush failed");
	return json_pack("{s:i, s:b}", "connections_closed", (int)n, "flushed", 1);
}

/* ---- disks ------------------------------------------------------------------ */

static json_t *m_disk_info(struct ctl_call *c, json_t *params)
{
	const char *target, *spec = NULL;
	struct disk *d;
	json_error_t je;
	json_t *o;

	if (json_unpack_ex(params, &je, JSON_STRICT, "{s:s}", "target", &target) < 0)
		return ctl_fail_params(c, &je);
	if (!(d = target_disk_spec(c, target, NULL, &spec)))
		return NULL;
	o = tool_disk_json(d, spec);
	disk_unref(d);
	return o;
}

static json_t *m_disk_resize(struct ctl_call *c, json_t *params)
{
	const char *target;
	json_int_t size;
	struct disk *d, *node;
	json_error_t je;
	json_t *res;
	uint32_t ss;
	int ret;

	if (json_unpack_ex(params, &je, JSON_STRICT, "{s:s, s:I}", "target", &target, "size",
			   &size) < 0)
		return ctl_fail_params(c, &je);
	if (refuse_when_stopping(c))
		return NULL;
	if (!(d = target_disk(c, target, NULL)))
		return NULL;
	ss = disk_sector_size(d);
	if (size <= 0 || (uint64_t)size % ss != 0) {
		disk_unref(d);
		return ctl_fail_paramf(c, "size must be a positive multiple of the sector size (%u)",
				       ss);
	}
	node = stack_find(d, is_ram_layered, NULL);
	if (!node && (node = stack_find(d, is_file, NULL))) {
		ret = filedisk_grow(node, (uint64_t)size);
		if (ret == -EINVAL || ret == -EROFS) {
			disk_unref(d);
			return not_supported(c, target, ret == -EROFS ? "the file is open read-only"
					     : "files only grow (and not a VHD's data region)");
		}
	} else if (!node) {
		disk_unref(d);
		return not_supported(c, target, "no RAM layer (mem:) on top of a layered disk "
				     "and no file in this stack");
	} else {
		ret = ramlayer_resize(layered_disk_layer(node, 0), (uint64_t)size / ss);
	}
	if (ret < 0) {
		disk_unref(d);
		return ret == -EINVAL ? ctl_fail_paramf(c, "the RAM layer refused the size")
				      : ctl_fail_errno(c, ret, "resize failed");
	}
	log_info("ctl: export '%s' resized to %lld bytes by uid %ld pid %ld", target,
		 (long long)size, (long)c->uid, (long)c->pid);
	size = (json_int_t)(disk_sector_count(d) * ss);
	res = json_pack("{s:I}", "size", size);
	if (res)
		serve_ctl_fe_resized(c, d, res);
	disk_unref(d);
	return res;
}

static json_t *delay_result(struct disk *node)
{
	uint64_t r = 0, w = 0;

	delay_get(node, &r, &w);
	return json_pack("{s:I, s:I}", "read_us", (json_int_t)r, "write_us", (json_int_t)w);
}

static json_t *m_delay_set(struct ctl_call *c, json_t *params)
{
	const char *target;
	json_int_t rus = -1, wus = -1;
	uint64_t cur_r, cur_w;
	struct disk *d, *node;
	json_error_t je;
	json_t *res;

	if (json_unpack_ex(params, &je, JSON_STRICT, "{s:s, s?:I, s?:I}", "target", &target,
			   "read_us", &rus, "write_us", &wus) < 0)
		return ctl_fail_params(c, &je);
	if ((json_object_get(params, "read_us") && (rus < 0 || (uint64_t)rus > DELAY_MAX_US)) ||
	    (json_object_get(params, "write_us") && (wus < 0 || (uint64_t)wus > DELAY_MAX_US)))
		return ctl_fail_paramf(c, "delays are 0..%llu microseconds",
				       (unsigned long long)DELAY_MAX_US);
	if (!(d = target_disk(c, target, NULL)))
		return NULL;
	node = stack_find(d, is_delay, NULL);
	if (!node) {
		disk_unref(d);
		return not_supported(c, target, "no delay: node in this stack");
	}
	delay_get(node, &cur_r, &cur_w);
	delay_set(node, rus >= 0 ? (uint64_t)rus : cur_r, wus >= 0 ? (uint64_t)wus : cur_w);
	res = delay_result(node);
	disk_unref(d);
	return res;
}

static json_t *m_delay_get(struct ctl_call *c, json_t *params)
{
	const char *target;
	struct disk *d, *node;
	json_error_t je;
	json_t *res;

	if (json_unpack_ex(params, &je, JSON_STRICT, "{s:s}", "target", &target) < 0)
		return ctl_fail_params(c, &je);
	if (!(d = target_disk(c, target, NULL)))
		return NULL;
	node = stack_find(d, is_delay, NULL);
	res = node ? delay_result(node) : not_supported(c, target, "no delay: node in this stack");
	disk_unref(d);
	return res;
}

static json_t *m_flush(struct ctl_call *c, json_t *params)
{
	const char *target;
	struct disk *d;
	json_error_t je;
	int st;

	if (json_unpack_ex(params, &je, JSON_STRICT, "{s:s}", "target", &target) < 0)
		return ctl_fail_params(c, &je);
	if (!(d = target_disk(c, target, NULL)))
		return NULL;
	if (!reactor_current()) {
		disk_unref(d);
		return ctl_fail_errno(c, -ENOSYS, "no reactor on the control thread");
	}
	st = disk_sync_flush(d);
	disk_unref(d);
	if (st != DISK_OK)
		return ctl_fail_errno(c, -EIO, "flush failed: %s", disk_status_str(st));
	return json_object();
}

/* ---- fault injection (error:, docs/decorator-error.md) -------------------- */

static bool is_error(struct disk *d, void *arg UNUSED)
{
	return error_disk_is(d);
}

/* The rules in force on @node and each rule's counters. */
static json_t *fault_result(struct ctl_call *c, struct disk *node)
{
	char rules[4096];
	json_t *stats = json_array();
	uint64_t matched, injected;
	int n = error_disk_get(node, rules, sizeof(rules));

	if (n < 0) {
		json_decref(stats);
		return ctl_fail_errno(c, n, "cannot read the rules");
	}
	for (unsigned i = 0; stats && error_disk_stats(node, i, &matched, &injected) == 0; i++)
		json_array_append_new(stats, json_pack("{s:I, s:I}", "matched", (json_int_t)matched,
						       "injected", (json_int_t)injected));
	return json_pack("{s:s, s:o}", "rules", rules, "stats", stats ? stats : json_array());
}

/* The error: node of export @target's stack (*@top: the export's disk,
 * a reference the caller drops), or NULL after failing @c. */
static struct disk *fault_node(struct ctl_call *c, const char *target, struct disk **top)
{
	struct disk *node;

	if (!(*top = target_disk(c, target, NULL)))
		return NULL;
	node = stack_find(*top, is_error, NULL);
	if (!node) {
		disk_unref(*top);
		*top = NULL;
		not_supported(c, target, "no error: node in this stack");
	}
	return node;
}

static json_t *m_fault_set(struct ctl_call *c, json_t *params)
{
	const char *target, *rules;
	struct disk *top, *node;
	char err[512] = "";
	json_error_t je;
	json_t *res;
	int ret;

	if (json_unpack_ex(params, &je, JSON_STRICT, "{s:s, s:s}", "target", &target, "rules",
			   &rules) < 0)
		return ctl_fail_params(c, &je);
	if (!(node = fault_node(c, target, &top)))
		return NULL;
	ret = error_disk_set(node, rules, err, sizeof(err));
	if (ret == -EINVAL)
		res = ctl_fail_paramf(c, "%s", err[0] ? err : "bad rules");
	else if (ret < 0)
		res = ctl_fail_errno(c, ret, "cannot set the rules");
	else
		res = fault_result(c, node);
	if (ret == 0)
		log_info("ctl: export '%s' faults set to '%s' by uid %ld pid %ld", target, rules,
			 (long)c->uid, (long)c->pid);
	disk_unref(top);
	return res;
}

static json_t *m_fault_clear(struct ctl_call *c, json_t *params)
{
	struct disk *top, *node;
	const char *target;
	json_error_t je;
	json_t *res;
	int ret;

	if (json_unpack_ex(params, &je, JSON_STRICT, "{s:s}", "target", &target) < 0)
		return ctl_fail_params(c, &je);
	if (!(node = fault_node(c, target, &top)))
		return NULL;
	ret = error_disk_clear(node);
	res = ret < 0 ? ctl_fail_errno(c, ret, "cannot clear the rules") : fault_result(c, node);
	if (ret == 0)
		log_info("ctl: export '%s' faults cleared by uid %ld pid %ld", target, (long)c->uid,
			 (long)c->pid);
	disk_unref(top);
	return res;
}

static json_t *m_fault_get(struct ctl_call *c, json_t *params)
{
	struct disk *top, *node;
	const char *target;
	json_error_t je;
	json_t *res;

	if (json_unpack_ex(params, &je, JSON_STRICT, "{s:s}", "target", &target) < 0)
		return ctl_fail_params(c, &je);
	if (!(node = fault_node(c, target, &top)))
		return NULL;
	res = fault_result(c, node);
	disk_unref(top);
	return res;
}

/* ---- statistics ---------------------------------------------------------- */

/* The stack's disks are counted by the dispatcher (disk_stats_enable), and
 * the layers of its layered disks by the layered disk (layer_stats_enable),
 * once stats-enable asked for it: counting costs two clock reads per
 * request (docs/ctl.md, "stats"), so it is opt-in, and stats-enable
 * enable=false turns it off again. */
static bool stats_enable_one(struct disk *d, void *arg UNUSED)
{
	if (disk_stats_enable(d) < 0)
		log_warn("ctl: no memory for the statistics of a %s disk", disk_get_info(d)->type);
	return false;    /* visit every node */
}

static void stats_enable_layer(struct layer *l, void *arg UNUSED)
{
	if (layer_stats_enable(l) < 0)
		log_warn("ctl: no statistics for a %s layer", layer_get_ops(l)->type);
}

void serve_ctl_stats_enable(struct disk *top)
{
	(void)stack_walk(top, stats_enable_one, stats_enable_layer, NULL);
}

static bool stats_disable_one(struct disk *d, void *arg UNUSED)
{
	disk_stats_disable(d);
	return false;
}

static void stats_disable_layer(struct layer *l, void *arg UNUSED)
{
	layer_stats_disable(l);
}

/* Turns the statistics off for every disk and layer of @top's stack. */
static void stats_disable(struct disk *top)
{
	(void)stack_walk(top, stats_disable_one, stats_disable_layer, NULL);
}

struct stats_ctx {
	struct serve_ctl *s;
	const char *only;
	bool reset;
	json_t *out;
	/* Disks and layers already read in this call (a ublk or vhost device
	 * serves its export's disk handle): read, and reset, once. */
	const void *seen[64];
	json_t *seen_json[64];
	unsigned nseen;
};

static json_t *op_json(const struct iostats_op *o)
{
	return json_pack("{s:I, s:I, s:I, s:{s:I, s:I, s:I, s:I, s:I}}",
			 "ops", (json_int_t)o->ops, "bytes", (json_int_t)o->bytes,
			 "errors", (json_int_t)o->errors, "lat_ns",
			 "mean", (json_int_t)o->lat_mean_ns, "p50", (json_int_t)o->lat_p50_ns,
			 "p90", (json_int_t)o->lat_p90_ns, "p99", (json_int_t)o->lat_p99_ns,
			 "max", (json_int_t)o->lat_max_ns);
}

/* Sets since_ns and the classes of @ops in @o. */
static void classes_set(json_t *o, uint64_t since_ns, const struct iostats_op *ops)
{
	json_object_set_new(o, "since_ns", json_integer((json_int_t)since_ns));
	for (unsigned k = 0; k < IOSTATS_COUNT; k++)
		json_object_set_new(o, iostats_class_name(k), op_json(&ops[k]));
}

/* {type, since_ns, read, ...} of the counters of disk @d (the
 * dispatcher's), else of layer @l (the layered disk's), a new object, or
 * NULL when it is not counted. */
static json_t *disk_stats_json(struct stats_ctx *sc, struct disk *d, struct layer *l)
{
	const void *key = d ? (const void *)d : (const void *)l;
	struct iostats_op ops[IOSTATS_COUNT];
	uint64_t since;
	json_t *o;

	for (unsigned i = 0; i < sc->nseen; i++)
		if (sc->seen[i] == key)
			return json_deep_copy(sc->seen_json[i]);
	if ((d ? disk_stats_read(d, sc->reset, &since, ops)
	       : layer_stats_read(l, sc->reset, &since, ops)) < 0)
		return NULL;
	o = json_pack("{s:s}", "type", d ? disk_get_info(d)->type : layer_get_ops(l)->type);
	if (!o)
		return NULL;
	classes_set(o, since, ops);
	if (sc->nseen < ARRAY_SIZE(sc->seen)) {
		sc->seen[sc->nseen] = key;
		sc->seen_json[sc->nseen++] = json_incref(o);
	}
	return o;
}

struct layers_ctx {
	struct stats_ctx *sc;
	json_t *layers;
};

static void layers_add(struct layers_ctx *lc, struct disk *d, struct layer *l)
{
	json_t *o = disk_stats_json(lc->sc, d, l);

	if (o)
		json_array_append_new(lc->layers, o);
}

static bool layer_one(struct disk *d, void *arg)
{
	layers_add(arg, d, NULL);
	return false;
}

static void layer_of_disk(struct layer *l, void *arg)
{
	layers_add(arg, NULL, l);
}

/* [{type, since_ns, read, ...}] of every counted disk and layer of @top's
 * stack, top first (docs/ctl.md, "stats"). */
static json_t *layers_json(struct stats_ctx *sc, struct disk *top)
{
	struct layers_ctx lc = { .sc = sc, .layers = json_array() };

	if (lc.layers)
		(void)stack_walk(top, layer_one, layer_of_disk, &lc);
	return lc.layers ? lc.layers : json_array();
}

static void stats_one(const struct nbdsrv_export_view *v, void *opaque)
{
	struct stats_ctx *sc = opaque;

	if (sc->only && strcmp(sc->only, v->name) != 0)
		return;
	json_array_append_new(sc->out, json_pack("{s:s, s:o, s:i}", "frontend", "nbd",
						 "name", tool_json_str(v->name),
						 "connections", (int)v->connections));
}

/* An entry of another frontend's disk: the top disk's counters (what the
 * frontend asked of it), then its layers. */
static void stats_fe_one(const struct serve_ctl_fe_unit *u, void *opaque)
{
	struct stats_ctx *sc = opaque;
	json_t *o, *top;

	if (sc->only && strcmp(sc->only, u->name) != 0)
		return;
	o = json_pack("{s:s, s:o}", "frontend", u->frontend, "name", tool_json_str(u->name));
	if (!o)
		return;
	if (u->export)
		json_object_set_new(o, "export", tool_json_str(u->export));
	top = disk_stats_json(sc, u->disk, NULL);
	if (top) {
		json_object_update(o, top);
		json_object_del(o, "type");
		json_decref(top);
	}
	json_object_set_new(o, "layers", layers_json(sc, u->disk));
	json_array_append_new(sc->out, o);
}

struct enable_ctx {
	json_t *out;
	bool off;
};

static void enable_disk(struct enable_ctx *ec, struct disk *d, const char *name)
{
	if (ec->off)
		stats_disable(d);
	else
		serve_ctl_stats_enable(d);
	json_array_append_new(ec->out, tool_json_str(name));
}

static void enable_export(const struct nbdsrv_export_view *v, void *opaque)
{
	enable_disk(opaque, v->disk, v->name);
}

static void enable_unit(const struct serve_ctl_fe_unit *u, void *opaque)
{
	enable_disk(opaque, u->disk, u->name);
}

static json_t *m_stats_enable(struct ctl_call *c, json_t *params)
{
	struct serve_ctl *s = ctx_of(c);
	struct enable_ctx ec = { 0 };
	const char *target = NULL;
	int on = 1;
	json_error_t je;
	struct disk *d;

	if (json_unpack_ex(params, &je, JSON_STRICT, "{s?:s, s?:b}", "target", &target,
			   "enable", &on) < 0)
		return ctl_fail_params(c, &je);
	ec.off = !on;
	if (target) {
		if (!(d = target_disk(c, target, NULL)))
			return NULL;
		if (ec.off)
			stats_disable(d);
		else
			serve_ctl_stats_enable(d);
		disk_unref(d);
		return json_pack("{s:[o]}", on ? "enabled" : "disabled", tool_json_str(target));
	}
	if (!(ec.out = json_array()))
		return NULL;
	s->stats_all = on;
	if (s->o.nbd)
		nbdsrv_foreach_export(s->o.nbd, enable_export, &ec);
	serve_ctl_fe_foreach(&s->o, s->fe, enable_unit, &ec);
	log_info("ctl: disk statistics %s by uid %ld pid %ld", on ? "enabled" : "disabled",
		 (long)c->uid, (long)c->pid);
	return json_pack("{s:o}", on ? "enabled" : "disabled", ec.out);
}

static json_t *m_stats(struct ctl_call *c, json_t *params)
{
	struct stats_ctx sc = { .s = ctx_of(c) };
	int reset = 0;
	json_error_t je;
	size_t i, nnbd;
	json_t *e;

	if (json_unpack_ex(params, &je, JSON_STRICT, "{s?:s, s?:b}", "target", &sc.only,
			   "reset", &reset) < 0)
		return ctl_fail_params(c, &je);
	sc.reset = reset;
	sc.out = json_array();
	if (!sc.out)
		return NULL;
	/* The list first (under the server's lock), then each export's
	 * counters: an export removed in between is left out. */
	if (sc.s->o.nbd)
		nbdsrv_foreach_export(sc.s->o.nbd, stats_one, &sc);
	nnbd = json_array_size(sc.out);
	for (i = 0; i < nnbd; i++) {
		const char *name;
		struct nbdsrv_stats st;
		struct disk *d = NULL;

		e = json_array_get(sc.out, i);
		name = json_string_value(json_object_get(e, "name"));
		if (!name || nbdsrv_export_stats(sc.s->o.nbd, name, reset, &st) < 0)
			continue;
		classes_set(e, st.since_ns, st.op);
		if (nbdsrv_export_disk(sc.s->o.nbd, name, &d, NULL) == 0) {
			json_object_set_new(e, "layers", layers_json(&sc, d));
			disk_unref(d);
		}
	}
	serve_ctl_fe_foreach(&sc.s->o, sc.s->fe, stats_fe_one, &sc);
	for (unsigned k = 0; k < sc.nseen; k++)
		json_decref(sc.seen_json[k]);
	if (sc.only && json_array_size(sc.out) == 0) {
		json_decref(sc.out);
		return not_found(c, sc.only);
	}
	return json_pack("{s:I, s:o}", "now_ns", (json_int_t)reactor_now_ns(), "exports", sc.out);
}

/* ---- connections ----------------------------------------------------------- */

struct conn_ctx {
	const char *only;
	json_t *out;
};

static void conn_one(const struct nbdsrv_conn_view *v, void *opaque)
{
	struct conn_ctx *cc = opaque;

	if (cc->only && (!v->export_name || strcmp(cc->only, v->export_name) != 0))
		return;
	json_array_append_new(cc->out, json_pack("{s:I, s:o, s:o, s:I}", "id", (json_int_t)v->id,
		"name", tool_json_str(v->name),
		"export", v->export_name ? tool_json_str(v->export_name) : json_null(),
		"since_ns", (json_int_t)v->since_ns));
}

static json_t *m_connection_list(struct ctl_call *c, json_t *params)
{
	struct conn_ctx cc = { 0 };
	json_error_t je;

	if (json_unpack_ex(params, &je, JSON_STRICT, "{s?:s}", "export", &cc.only) < 0)
		return ctl_fail_params(c, &je);
	if (!ctx_of(c)->o.nbd)
		return no_nbd(c, cc.only);
	cc.out = json_array();
	if (cc.out)
		nbdsrv_foreach_conn(ctx_of(c)->o.nbd, conn_one, &cc);
	return cc.out;
}

static json_t *m_connection_close(struct ctl_call *c, json_t *params)
{
	const char *mode = "drain";
	json_int_t id;
	json_error_t je;
	int ret;

	if (json_unpack_ex(params, &je, JSON_STRICT, "{s:I, s?:s}", "id", &id, "mode", &mode) < 0)
		return ctl_fail_params(c, &je);
	if (strcmp(mode, "drain") != 0 && strcmp(mode, "force") != 0)
		return ctl_fail_paramf(c, "mode must be drain or force");
	if (!ctx_of(c)->o.nbd)
		return no_nbd(c, NULL);
	ret = id > 0 ? nbdsrv_close_conn(ctx_of(c)->o.nbd, (uint64_t)id, strcmp(mode, "force") == 0)
		     : -ENOENT;
	if (ret == -ENOENT) {
		char t[32];

		snprintf(t, sizeof(t), "%lld", (long long)id);
		return not_found(c, t);
	}
	if (ret < 0)
		return ctl_fail_errno(c, ret, "cannot close the connection");
	log_info("ctl: connection %lld closed (%s) by uid %ld pid %ld", (long long)id, mode,
		 (long)c->uid, (long)c->pid);
	return json_object();
}

/* ---- for serve-ctl-fe.c (serve-ctl-internal.h) ------------------------------- */

const struct serve_ctl_opts *serve_ctl_opts_of(struct ctl_call *c)
{
	return &ctx_of(c)->o;
}

struct serve_ctl_fe *serve_ctl_fe_of(struct ctl_call *c)
{
	return ctx_of(c)->fe;
}

json_t *serve_ctl_not_found(struct ctl_call *c, const char *target)
{
	return not_found(c, target);
}

json_t *serve_ctl_not_supported(struct ctl_call *c, const char *target, const char *reason)
{
	return not_supported(c, target, reason);
}

struct disk *serve_ctl_export_disk(struct ctl_call *c, const char *name, bool *read_only)
{
	return export_disk(c, name, read_only);
}

bool serve_ctl_refuse_when_stopping(struct ctl_call *c)
{
	return refuse_when_stopping(c);
}

bool serve_ctl_refuse_writable(struct ctl_call *c, bool read_only)
{
	if (!serve_ctl_opts_of(c)->read_only || read_only)
		return false;
	ctl_fail_paramf(c, "the server runs read-only (serve -r): read_only=false is not allowed");
	return true;
}

int serve_ctl_open_spec(struct ctl_call *c, const char *text, bool read_only, struct disk **out)
{
	struct spec *spec = NULL;
	char err[512] = "";
	int ret = spec_parse(text, &spec, err, sizeof(err));

	*out = NULL;
	if (ret < 0) {
		ctl_fail(c, CTL_ERR_BAD_SPEC, json_pack("{s:o}", "message", tool_json_str(err)));
		return ret;
	}
	ret = spec_open(spec, read_only, tool_spec_ctx(), out, err, sizeof(err));
	spec_free(spec);
	if (ret == 0 && ctx_of(c)->stats_all)
		serve_ctl_stats_enable(*out);
	if (ret == -EINVAL)
		ctl_fail(c, CTL_ERR_BAD_SPEC, json_pack("{s:o}", "message", tool_json_str(err)));
	else if (ret < 0)
		ctl_fail_errno(c, ret, "cannot open the spec%s%s", err[0] ? ": " : "", err);
	return ret;
}

/* ---- background operations ------------------------------------------------------ */

static void *bg_main(void *opaque)
{
	struct serve_ctl_bg *bg = opaque;
	struct reactor *r = NULL;
	int ret = reactor_new(&r, 0);

	/* The function may flush a disk synchronously: it needs a reactor. */
	if (ret == 0) {
		ret = bg->fn(bg->arg);
		reactor_free(r);
	}
	pthread_mutex_lock(&bg->lock);
	bg->ret = ret;
	bg->done = true;
	pthread_cond_broadcast(&bg->cond);
	pthread_mutex_unlock(&bg->lock);
	return NULL;
}

struct serve_ctl_bg *serve_ctl_bg_start(const char *type, const char *target,
					int (*fn)(void *arg), void *arg,
					void (*free_arg)(void *arg))
{
	struct serve_ctl_bg *bg = calloc(1, sizeof(*bg));

	if (!bg || !(bg->type = strdup(type)) || !(bg->target = strdup(target))) {
		if (bg)
			free(bg->type);
		free(bg);
		return NULL;
	}
	bg->fn = fn;
	bg->arg = arg;
	bg->free_arg = free_arg;
	pthread_mutex_init(&bg->lock, NULL);
	pthread_cond_init(&bg->cond, NULL);
	if (pthread_create(&bg->thread, NULL, bg_main, bg) != 0) {
		pthread_cond_destroy(&bg->cond);
		pthread_mutex_destroy(&bg->lock);
		free(bg->target);
		free(bg->type);
		free(bg);
		return NULL;
	}
	return bg;
}

/* Whether @bg ended; its result in *@ret (may be NULL). */
static bool bg_done(struct serve_ctl_bg *bg, int *ret)
{
	bool done;

	pthread_mutex_lock(&bg->lock);
	done = bg->done;
	if (done && ret)
		*ret = bg->ret;
	pthread_mutex_unlock(&bg->lock);
	return done;
}

bool serve_ctl_bg_wait(struct serve_ctl_bg *bg, unsigned timeout_ms, int *ret)
{
	struct timespec ts;
	bool done;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += timeout_ms / 1000;
	ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&bg->lock);
	while (!bg->done && pthread_cond_timedwait(&bg->cond, &bg->lock, &ts) == 0)
		;
	done = bg->done;
	if (done)
		*ret = bg->ret;
	pthread_mutex_unlock(&bg->lock);
	return done;
}

void serve_ctl_bg_free(struct serve_ctl_bg *bg)
{
	if (!bg)
		return;
	pthread_join(bg->thread, NULL);   /* a hung disk holds this until it answers */
	if (bg->free_arg)
		bg->free_arg(bg->arg);
	pthread_cond_destroy(&bg->cond);
	pthread_mutex_destroy(&bg->lock);
	free(bg->target);
	free(bg->type);
	free(bg);
}

/* ---- layer-commit and jobs (docs/ctl.md, docs/layered.md "Commit") ---------- */

/* Finished jobs kept for job-list/job-get; older ones are dropped. */
#define CTL_MAX_FINISHED_JOBS 32u

static const char *raw_spec_of(struct serve_ctl *s, const char *name)
{
	for (struct ctl_spec *p = s->specs; p; p = p->next)
		if (strcmp(p->name, name) == 0)
			return p->raw;
	return NULL;
}

static bool is_overlay_kind(const struct spec *node, const void *arg UNUSED)
{
	return node->inner && (strcmp(node->kind->name, "memdiff") == 0 ||
			       strcmp(node->kind->name, "sqldiff") == 0);
}

static bool is_overlay_disk(struct disk *d, void *arg UNUSED)
{
	struct layer *l = layered_disk_layer_count(d) >= 2 ? layered_disk_layer(d, 0) : NULL;
	const char *type = l ? layer_get_ops(l)->type : "";

	return strcmp(type, "ram") == 0 || strcmp(type, "sqlite") == 0;
}

/* A background operation's job-get object: no progress to report. */
static json_t *bg_job_json(const struct ctl_job *j)
{
	int ret = 0;
	bool done = bg_done(j->bg, &ret);
	json_t *o = json_pack("{s:I, s:s, s:o, s:s, s:I}", "id", (json_int_t)j->id, "type",
			      j->bg->type, "target", tool_json_str(j->bg->target), "state",
			      !done ? "running" : ret < 0 ? "failed" : "done", "started_ns",
			      (json_int_t)j->started_ns);

	if (o && done && ret < 0)
		json_object_set_new(o, "error", json_pack("{s:i, s:s}", "errno", -ret, "message",
							  ret == -EIO ? "the final flush failed"
								      : strerror(-ret)));
	return o;
}

static json_t *job_json(const struct ctl_job *j)
{
	struct layered_commit_progress p;
	json_t *o;

	if (j->bg)
		return bg_job_json(j);
	layered_commit_poll(j->commit, &p);
	o = json_pack("{s:I, s:s, s:o, s:s, s:I, s:I, s:i, s:i, s:I}", "id", (json_int_t)j->id,
		      "type", "layer-commit", "target", tool_json_str(j->target),
		      "state", layered_commit_state_str(p.state),
		      "sectors_done", (json_int_t)p.done_sectors,
		      "sectors_total", (json_int_t)p.total_sectors,
		      "sector_size", (int)j->sector_size, "passes", (int)p.passes,
		      "started_ns", (json_int_t)j->started_ns);
	if (o && p.state == LAYERED_COMMIT_FAILED)
		json_object_set_new(o, "error", json_pack("{s:i, s:s}", "errno", -p.error,
							  "message", p.message));
	return o;
}

static void job_free(struct ctl_job *j)
{
	serve_ctl_bg_free(j->bg);
	layered_commit_free(j->commit);
	free(j->target);
	free(j);
}

/* Drops the oldest finished jobs beyond CTL_MAX_FINISHED_JOBS. */
static void jobs_trim(struct serve_ctl *s)
{
	unsigned finished = 0;

	for (struct ctl_job **pp = &s->jobs; *pp;) {
		struct ctl_job *j = *pp;
		struct layered_commit_progress p;
		bool running;

		if (j->bg) {
			running = !bg_done(j->bg, NULL);
		} else {
			layered_commit_poll(j->commit, &p);
			running = p.state == LAYERED_COMMIT_RUNNING;
		}
		if (!running && ++finished > CTL_MAX_FINISHED_JOBS) {
			*pp = j->next;
			job_free(j);
			continue;
		}
		pp = &j->next;
	}
}

static struct ctl_job *job_find(struct serve_ctl *s, json_int_t id)
{
	for (struct ctl_job *j = s->jobs; j; j = j->next)
		if ((json_int_t)j->id == id)
			return j;
	return NULL;
}

static json_t *job_not_found(struct ctl_call *c, json_int_t id)
{
	char t[32];

	snprintf(t, sizeof(t), "%lld", (long long)id);
	return not_found(c, t);
}

/* The job id of a commit of export @target still running, else 0. */
static uint64_t job_running_on(struct serve_ctl *s, const char *target)
{
	for (struct ctl_job *j = s->jobs; j; j = j->next) {
		struct layered_commit_progress p;

		if (!j->commit)
			continue;
		layered_commit_poll(j->commit, &p);
		if (p.state == LAYERED_COMMIT_RUNNING && strcmp(j->target, target) == 0)
			return j->id;
	}
	return 0;
}

/* Opens the lower spec of the export's overlay writable, for the job.
 * Returns the disk, or NULL after failing @c. */
static struct disk *open_lower_writable(struct ctl_call *c, const char *target)
{
	const char *raw = raw_spec_of(ctx_of(c), target);
	const struct spec *node;
	struct spec *root = NULL;
	struct disk *d = NULL;
	char err[512] = "", reason[768];
	int ret;

	if (!raw || spec_parse(raw, &root, err, sizeof(err)) < 0) {
		not_supported(c, target, "the export's spec is not known");
		return NULL;
	}
	node = spec_find_node(root, is_overlay_kind, NULL);
	if (!node) {
		spec_free(root);
		not_supported(c, target, "no memdiff: or sqldiff: overlay in this stack");
		return NULL;
	}
	ret = spec_open(node->inner, false, tool_spec_ctx(), &d, err, sizeof(err));
	spec_free(root);
	if (ret < 0) {
		snprintf(reason, sizeof(reason), "the disk below cannot be opened writable: %s",
			 err[0] ? err : strerror(-ret));
		not_supported(c, target, reason);
		return NULL;
	}
	if (disk_get_info(d)->read_only || !(disk_get_info(d)->caps & DISK_CAP_PERSISTENT)) {
		not_supported(c, target, disk_get_info(d)->read_only
			      ? "the disk below is read-only"
			      : "the disk below keeps nothing (a RAM disk or layer)");
		disk_unref(d);
		return NULL;
	}
	return d;
}

static json_t *m_layer_commit(struct ctl_call *c, json_t *params)
{
	struct serve_ctl *s = ctx_of(c);
	struct disk *d, *node, *lower;
	struct layered_commit *lc;
	struct ctl_job *j;
	const char *target;
	char err[512] = "";
	json_error_t je;
	bool ro = false;
	uint64_t busy;
	int ret;

	if (json_unpack_ex(params, &je, JSON_STRICT, "{s:s}", "target", &target) < 0)
		return ctl_fail_params(c, &je);
	if (refuse_when_stopping(c))
		return NULL;
	if (!(d = target_disk(c, target, &ro)))
		return NULL;
	node = stack_find(d, is_overlay_disk, NULL);
	if (ro || !node) {
		disk_unref(d);
		return not_supported(c, target, ro ? "the export is read-only"
					       : "no RAM or SQLite overlay on a layered disk in this "
						 "stack");
	}
	if ((busy = job_running_on(s, target)) > 0) {
		disk_unref(d);
		return ctl_fail(c, CTL_ERR_BUSY, json_pack("{s:o, s:I}", "target",
							   tool_json_str(target), "job",
							   (json_int_t)busy));
	}
	if (!(lower = open_lower_writable(c, target))) {
		disk_unref(d);
		return NULL;
	}
	j = calloc(1, sizeof(*j));
	if (!j || !(j->target = strdup(target))) {
		free(j);
		disk_unref(lower);
		disk_unref(d);
		return NULL;
	}
	ret = layered_commit_start(node, lower, &lc, err, sizeof(err));
	if (ret < 0) {
		free(j->target);
		free(j);
		disk_unref(lower);
		disk_unref(d);
		if (ret == -EBUSY)    /* the same overlay under another export's name */
			return ctl_fail(c, CTL_ERR_BUSY, json_pack("{s:o}", "target",
								   tool_json_str(target)));
		return ret == -ENOMEM ? NULL : not_supported(c, target, err[0] ? err : strerror(-ret));
	}
	j->id = ++s->next_job_id;
	j->commit = lc;
	j->sector_size = disk_sector_size(node);
	j->started_ns = reactor_now_ns();
	j->next = s->jobs;
	s->jobs = j;
	disk_unref(d);
	jobs_trim(s);
	log_info("ctl: export '%s' layer-commit started (job %llu) by uid %ld pid %ld", target,
		 (unsigned long long)j->id, (long)c->uid, (long)c->pid);
	return job_json(j);
}

json_t *serve_ctl_bg_to_job(struct ctl_call *c, struct serve_ctl_bg *bg)
{
	struct serve_ctl *s = ctx_of(c);
	struct ctl_job *j = calloc(1, sizeof(*j));

	if (!j || !(j->target = strdup(bg->target))) {
		/* Cannot list it: wait for it here rather than lose it. */
		free(j);
		serve_ctl_bg_free(bg);
		return NULL;
	}
	j->id = ++s->next_job_id;
	j->bg = bg;
	j->started_ns = reactor_now_ns();
	j->next = s->jobs;
	s->jobs = j;
	jobs_trim(s);
	return job_json(j);
}

static json_t *m_job_list(struct ctl_call *c, json_t *params)
{
	json_error_t je;
	json_t *out;

	if (json_unpack_ex(params, &je, JSON_STRICT, "{}") < 0)
		return ctl_fail_params(c, &je);
	out = json_array();
	/* Oldest first: the list is kept newest first. */
	for (struct ctl_job *j = ctx_of(c)->jobs; out && j; j = j->next)
		json_array_insert_new(out, 0, job_json(j));
	return out;
}

/* The job the params {"id": N} name; NULL with the call failed (ctl_fail)
 * when the params are wrong or there is no such job. */
static struct ctl_job *job_from_params(struct ctl_call *c, json_t *params)
{
	json_int_t id;
	json_error_t je;
	struct ctl_job *j;

	if (json_unpack_ex(params, &je, JSON_STRICT, "{s:I}", "id", &id) < 0) {
		(void)ctl_fail_params(c, &je);
		return NULL;
	}
	j = job_find(ctx_of(c), id);
	if (!j)
		(void)job_not_found(c, id);
	return j;
}

static json_t *m_job_get(struct ctl_call *c, json_t *params)
{
	struct ctl_job *j = job_from_params(c, params);

	return j ? job_json(j) : NULL;
}

static json_t *m_job_cancel(struct ctl_call *c, json_t *params)
{
	struct ctl_job *j = job_from_params(c, params);

	if (!j)
		return NULL;
	if (j->bg)
		return not_supported(c, j->bg->target, "a removal cannot be cancelled: it waits for "
				     "the commands in flight, then flushes");
	layered_commit_cancel(j->commit);
	log_info("ctl: job %llu cancelled by uid %ld pid %ld", (unsigned long long)j->id,
		 (long)c->uid, (long)c->pid);
	return job_json(j);
}

/* Cancels and ends every job (the control thread is stopped). */
static void jobs_end(struct serve_ctl *s)
{
	while (s->jobs) {
		struct ctl_job *j = s->jobs;

		s->jobs = j->next;
		job_free(j);
	}
}

/* ---- the table --------------------------------------------------------------- */

/* In the order of docs/ctl.md (rpc-get-methods is built in). */
static const struct ctl_method serve_ctl_methods[] = {
	{ "server-info", m_server_info, false },
	{ "export-list", m_export_list, false },
	{ "export-add", m_export_add, true },
	{ "export-remove", m_export_remove, true },
	{ "disk-info", m_disk_info, false },
	{ "disk-resize", m_disk_resize, true },
	{ "delay-set", m_delay_set, true },
	{ "delay-get", m_delay_get, false },
	{ "stats", m_stats, false },
	{ "stats-enable", m_stats_enable, true },
	{ "flush", m_flush, true },
	{ "connection-list", m_connection_list, false },
	{ "connection-close", m_connection_close, true },
	{ "log-set-level", m_log_set_level, true },
	{ "shutdown", m_shutdown, true },
	{ "fault-set", m_fault_set, true },
	{ "fault-clear", m_fault_clear, true },
	{ "fault-get", m_fault_get, false },
	/* The other frontends (serve-ctl-fe.c). */
	{ "ublk-add", serve_ctl_ublk_add, true },
	{ "ublk-del", serve_ctl_ublk_del, true },
	{ "ublk-list", serve_ctl_ublk_list, false },
	{ "iscsi-lun-add", serve_ctl_iscsi_lun_add, true },
	{ "iscsi-lun-remove", serve_ctl_iscsi_lun_remove, true },
	{ "nvme-ns-add", serve_ctl_nvme_ns_add, true },
	{ "nvme-ns-remove", serve_ctl_nvme_ns_remove, true },
	{ "vhost-blk-add", serve_ctl_vhost_blk_add, true },
	{ "vhost-blk-del", serve_ctl_vhost_blk_del, true },
	{ "layer-commit", m_layer_commit, true },
	{ "job-list", m_job_list, false },
	{ "job-get", m_job_get, false },
	{ "job-cancel", m_job_cancel, true },
	{ "vhost-scsi-add", serve_ctl_vhost_scsi_add, true },
	{ "vhost-scsi-del", serve_ctl_vhost_scsi_del, true },
	{ "vhost-scsi-lun-add", serve_ctl_vhost_scsi_lun_add, true },
	{ "vhost-scsi-lun-remove", serve_ctl_vhost_scsi_lun_remove, true },
};

int serve_ctl_new(const struct serve_ctl_opts *o, struct serve_ctl **out)
{
	struct serve_ctl *s = calloc(1, sizeof(*s));
	char err[512] = "";
	int ret;

	if (!s)
		return tool_error("serve", "out of memory");
	s->o = *o;
	s->started_ns = reactor_now_ns();
	atomic_init(&s->shutting_down, false);
	s->rpc = (struct ctl_rpc){ .methods = serve_ctl_methods,
				   .nmethods = ARRAY_SIZE(serve_ctl_methods), .ctx = s };
	if (serve_ctl_fe_new(&s->fe) < 0) {
		free(s);
		return tool_error("serve", "out of memory");
	}
	ret = ctl_server_new(o->path, &s->rpc, &s->srv, err, sizeof(err));
	if (ret < 0) {
		serve_ctl_fe_free(s->fe);
		free(s);
		tool_error("serve", "--control: %s", err);
		return ret == -EADDRINUSE ? EXIT_USAGE : EXIT_RUNTIME;
	}
	*out = s;
	return 0;
}

int serve_ctl_start(struct serve_ctl *s)
{
	int ret = ctl_server_start(s->srv);

	if (ret < 0)
		return tool_error("serve", "cannot start the control thread: %s", strerror(-ret));
	log_info("serve: control socket %s", s->o.path);
	return 0;
}

void serve_ctl_stop(struct serve_ctl *s)
{
	if (!s)
		return;
	ctl_server_stop(s->srv);
	serve_ctl_fe_stop(s->fe);   /* ublk, vhost devices go before the final flush */
	/* A commit still running is cancelled (the overlay stays
	 * authoritative) before the exports' final flush. */
	jobs_end(s);
}

void serve_ctl_free(struct serve_ctl *s)
{
	if (!s)
		return;
	ctl_server_free(s->srv);
	serve_ctl_fe_free(s->fe);
	jobs_end(s);
	while (s->specs)
		spec_forget(s, s->specs->name);
	free(s);
}
