/* SPDX-License-Identifier: MIT */
/*
 * cmd-info.c: `diskstack info SPEC [--ro] [--json]` — opens a spec read-only
 * and prints its geometry, every disk_info property and the layer tree.
 *
 * Notes on the design
 * -------------------
 * disk_describe() streams parameters, children and layers through a
 * struct disk_describer in whatever order a disk chooses. Both output
 * formats need them grouped (JSON cannot interleave an object's keys with a
 * nested array), so the describer first builds a small tree (struct dnode),
 * which is then printed as text or JSON. Children are described recursively
 * from inside the callbacks; the builder saves and restores its "current
 * node" around each recursion. A disk-as-layer announces its inner disk in
 * layer_begin; if the layer's own describe op did not already report it as a
 * child, the builder describes it when the layer ends. Key material never
 * reaches the describer, so it cannot be printed.
 *
 * info never modifies anything: the spec is opened with read_only = true and
 * specs that create or format something are refused.
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/compiler.h"
#include "common/reactor.h"
#include "storage/disk.h"
#include "storage/layered.h"
#include "storage/spec.h"
#include "storage/backends/url.h"
#include "tools/tool.h"

#define INFO_MAX_DEPTH 32

static void info_usage(FILE *fp)
{
	fprintf(fp,
		"Usage: diskstack info SPEC [--ro] [--json]\n"
		"\n"
		"Opens SPEC read-only and prints its geometry, its properties (type, disk\n"
		"id, FUA, read-only, unmap behaviour, capabilities) and its layer tree.\n"
		"Nothing is modified; specs with create= are refused.\n"
		"\n"
		"Options:\n"
		"  --ro        accepted for symmetry; info always opens read-only\n"
		"  --json      print one JSON object instead of text\n"
		"  -h, --help  show this help\n"
		"\n"
		"Run 'diskstack help specs' for the spec syntax; see docs/diskstack-info.md.\n");
}

/* ---- the description tree ---------------------------------------------- */

struct dparam {
	char *key, *value;
	struct dparam *next;
};

enum dnode_kind { DNODE_DISK, DNODE_LAYER };

struct dnode {
	enum dnode_kind kind;
	struct dnode *next;
	/* DNODE_DISK: the role under its parent ("lower", "disk"...; NULL for
	 * the root). DNODE_LAYER: the layer type. */
	char *name;
	struct disk *disk;          /* borrowed: the disk, or a layer's inner disk */
	/* DNODE_LAYER */
	unsigned index;
	bool read_cache, write_through;
	uint64_t sector_count;
	bool disk_described;        /* inner disk already reported as a child */

	struct dparam *params, **params_tail;
	struct dnode *layers, **layers_tail;
	struct dnode *children, **children_tail;
};

struct dbuild {
	struct disk_describer dd;
	struct dnode *cur;          /* disk node receiving params/layers */
	struct dnode *cur_layer;    /* open layer of @cur, or NULL */
	unsigned depth;
	bool oom;
};

static struct dnode *dnode_new(enum dnode_kind kind, const char *name, struct disk *disk)
{
	struct dnode *n = calloc(1, sizeof(*n));

	if (!n)
		return NULL;
	n->kind = kind;
	n->disk = disk;
	if (name && !(n->name = strdup(name))) {
		free(n);
		return NULL;
	}
	n->params_tail = &n->params;
	n->layers_tail = &n->layers;
	n->children_tail = &n->children;
	return n;
}

static void dnode_free(struct dnode *n)
{
	while (n) {
		struct dnode *next = n->next;
		for (struct dparam *p = n->params, *pn; p; p = pn) {
			pn = p->next;
			free(p->key);
			free(p->value);
			free(p);
		}
		dnode_free(n->layers);
		dnode_free(n->children);
		free(n->name);
		free(n);
		n = next;
	}
}

static struct dbuild *dbuild_of(struct disk_describer *dd)
{
	return container_of(dd, struct dbuild, dd);
}

static void dbuild_describe(struct dbuild *b, struct dnode *n);

static void dbuild_param(struct disk_describer *dd, const char *key, const char *value)
{
	struct dbuild *b = dbuild_of(dd);
	struct dnode *target = b->cur_layer ? b->cur_layer : b->cur;
	struct dparam *p = calloc(1, sizeof(*p));

	if (!p || !(p->key = strdup(key ? key : "")) || !(p->value = strdup(value ? value : ""))) {
		if (p)
			free(p->key);
		free(p);
		b->oom = true;
		return;
	}
	*target->params_tail = p;
	target->params_tail = &p->next;
}

static void dbuild_child(struct disk_describer *dd, const char *role, struct disk *child)
{
	struct dbuild *b = dbuild_of(dd);
	struct dnode *parent = b->cur_layer ? b->cur_layer : b->cur;
	struct dnode *n;

	if (!child)
		return;
	if (parent->kind == DNODE_LAYER && parent->disk == child)
		parent->disk_described = true;
	n = dnode_new(DNODE_DISK, role ? role : "child", child);
	if (!n) {
		b->oom = true;
		return;
	}
	*parent->children_tail = n;
	parent->children_tail = &n->next;
	dbuild_describe(b, n);
}

static void dbuild_layer_end(struct disk_describer *dd)
{
	struct dbuild *b = dbuild_of(dd);
	struct dnode *l = b->cur_layer;

	if (!l)
		return;
	if (l->disk && !l->disk_described) {
		struct dnode *n = dnode_new(DNODE_DISK, "disk", l->disk);
		if (!n) {
			b->oom = true;
		} else {
			l->disk_described = true;
			*l->children_tail = n;
			l->children_tail = &n->next;
			dbuild_describe(b, n);
		}
	}
	b->cur_layer = NULL;
}

static void dbuild_layer_begin(struct disk_describer *dd, unsigned index, const char *type,
			       bool read_cache, bool write_through, uint64_t sector_count,
			       struct disk *disk)
{
	struct dbuild *b = dbuild_of(dd);
	struct dnode *n;

	if (b->cur_layer)
		dbuild_layer_end(dd);
	n = dnode_new(DNODE_LAYER, type ? type : "?", disk);
	if (!n) {
		b->oom = true;
		return;
	}
	n->index = index;
	n->read_cache = read_cache;
	n->write_through = write_through;
	n->sector_count = sector_count;
	*b->cur->layers_tail = n;
	b->cur->layers_tail = &n->next;
	b->cur_layer = n;
}

/* Describes n->disk into @n, recursing through the callbacks. */
static void dbuild_describe(struct dbuild *b, struct dnode *n)
{
	struct dnode *save_cur = b->cur, *save_layer = b->cur_layer;

	if (b->depth >= INFO_MAX_DEPTH)
		return;
	b->depth++;
	b->cur = n;
	b->cur_layer = NULL;
	disk_describe(n->disk, &b->dd);
	if (b->cur_layer)
		dbuild_layer_end(&b->dd);
	b->cur = save_cur;
	b->cur_layer = save_layer;
	b->depth--;
}

static unsigned dnode_count(const struct dnode *n)
{
	unsigned c = 0;

	for (; n; n = n->next)
		c++;
	return c;
}

/* ---- text output -------------------------------------------------------- */

static void text_disk_id(const struct disk_info *info, char *buf, size_t len)
{
	if (!info->has_disk_id) {
		snprintf(buf, len, "none");
		return;
	}
	for (size_t i = 0; i < 16 && 2 * i + 2 < len; i++)
		snprintf(buf + 2 * i, len - 2 * i, "%02x", info->disk_id[i]);
}

static void text_node_body(FILE *fp, const struct dnode *n, unsigned indent);

static void text_params(FILE *fp, const struct dparam *p, unsigned indent)
{
	for (; p; p = p->next)
		fprintf(fp, "%*s%s: %s\n", indent, "", p->key, p->value);
}

/* A child disk: a compact summary line, then its own tree. */
static void text_child(FILE *fp, const struct dnode *n, unsigned indent)
{
	const struct disk_info *info = disk_get_info(n->disk);
	uint64_t count = disk_sector_count(n->disk);
	char caps[256];

	tool_caps_str(info->caps, ",", caps, sizeof(caps));
	fprintf(fp, "%*s%s: %s, %" PRIu64 " sectors of %u bytes%s, caps %s\n", indent, "",
		n->name, info->type, count, info->sector_size,
		info->read_only ? ", read-only" : "", caps);
	text_node_body(fp, n, indent + 2);
}

static void text_layers(FILE *fp, const struct dnode *l, unsigned indent)
{
	for (; l; l = l->next) {
		fprintf(fp, "%*s[%u] %s: %" PRIu64 " sectors, read_cache=%s, write_through=%s\n",
			indent, "", l->index, l->name, l->sector_count,
			l->read_cache ? "yes" : "no", l->write_through ? "yes" : "no");
		text_params(fp, l->params, indent + 4);
		for (const struct dnode *c = l->children; c; c = c->next)
			text_child(fp, c, indent + 4);
	}
}

static void text_node_body(FILE *fp, const struct dnode *n, unsigned indent)
{
	text_params(fp, n->params, indent);
	if (n->layers) {
		fprintf(fp, "%*slayers (%u, top first):\n", indent, "", dnode_count(n->layers));
		text_layers(fp, n->layers, indent + 2);
	}
	for (const struct dnode *c = n->children; c; c = c->next)
		text_child(fp, c, indent);
}

static void info_print_text(FILE *fp, const char *spec_text, struct disk *d, const struct dnode *root)
{
	const struct disk_info *info = disk_get_info(d);
	uint64_t count = disk_sector_count(d);
	uint64_t bytes = count << info->sector_shift;
	char human[32], id[40], caps[256];

	tool_human_size(bytes, human, sizeof(human));
	text_disk_id(info, id, sizeof(id));
	tool_caps_str(info->caps, ", ", caps, sizeof(caps));

	fprintf(fp, "spec:                 %s\n", spec_text);
	fprintf(fp, "type:                 %s\n", info->type);
	fprintf(fp, "size:                 %" PRIu64 " bytes (%s)\n", bytes, human);
	fprintf(fp, "sector size:          %u\n", info->sector_size);
	fprintf(fp, "physical sector size: %u\n", info->physical_sector_size);
	fprintf(fp, "sector count:         %" PRIu64 "\n", count);
	fprintf(fp, "disk id:              %s\n", id);
	fprintf(fp, "fua:                  %s\n", info->fua_respected ? "yes" : "no");
	fprintf(fp, "read-only:            %s\n", info->read_only ? "yes" : "no");
	fprintf(fp, "unmap:                %s\n", tool_unmap_str(info->unmap_behavior));
	fprintf(fp, "optimal unmap:        %u sectors\n", info->optimal_unmap_sectors);
	fprintf(fp, "caps:                 %s\n", caps);
	fprintf(fp, "layer count:          %u\n", layered_disk_layer_count(d));
	text_node_body(fp, root, 0);
}

/* ---- JSON output (jansson) ----------------------------------------------- */

static json_t *json_disk(const char *spec_text, const struct dnode *n);

static json_t *json_params(const struct dparam *p)
{
	json_t *o = json_object();

	for (; o && p; p = p->next)
		json_object_set_new(o, p->key, tool_json_str(p->value));
	return o;
}

static json_t *json_children(const struct dnode *c)
{
	json_t *a = json_array();

	for (; a && c; c = c->next)
		json_array_append_new(a, json_disk(NULL, c));
	return a;
}

static json_t *json_layers(const struct dnode *l)
{
	json_t *a = json_array();

	for (; a && l; l = l->next)
		json_array_append_new(a, json_pack("{s:I, s:o, s:b, s:b, s:I, s:o, s:o}",
			"index", (json_int_t)l->index, "type", tool_json_str(l->name),
			"read_cache", l->read_cache, "write_through", l->write_through,
			"sector_count", (json_int_t)l->sector_count, "params", json_params(l->params),
			"children", json_children(l->children)));
	return a;
}

static void json_cap(const char *name, void *opaque)
{
	json_array_append_new(opaque, json_string(name));
}

/* One disk object: the root (with "spec") or a child (with "role"). */
static json_t *json_disk(const char *spec_text, const struct dnode *n)
{
	const struct disk_info *info = disk_get_info(n->disk);
	uint64_t count = disk_sector_count(n->disk);
	uint64_t bytes = count << info->sector_shift;
	char human[32], id[33];
	json_t *o = json_object(), *caps = json_array();

	if (!o || !caps) {
		json_decref(o);
		json_decref(caps);
		return NULL;
	}
	tool_human_size(bytes, human, sizeof(human));
	if (spec_text)
		json_object_set_new(o, "spec", tool_json_str(spec_text));
	if (n->name)
		json_object_set_new(o, "role", tool_json_str(n->name));
	for (int i = 0; i < 16; i++)
		snprintf(id + 2 * i, 3, "%02x", info->disk_id[i]);
	tool_caps_foreach(info->caps, json_cap, caps);
	json_object_update_new(o, json_pack("{s:o, s:i, s:i, s:I, s:I, s:s, s:o, s:b, s:b, s:s, s:i, "
					    "s:o, s:o, s:i, s:o, s:o}",
		"type", tool_json_str(info->type), "sector_size", (int)info->sector_size,
		"physical_sector_size", (int)info->physical_sector_size,
		"sector_count", (json_int_t)count, "size_bytes", (json_int_t)bytes, "size", human,
		"disk_id", info->has_disk_id ? json_string(id) : json_null(),
		"fua", info->fua_respected, "read_only", info->read_only,
		"unmap", tool_unmap_str(info->unmap_behavior),
		"optimal_unmap_sectors", (int)info->optimal_unmap_sectors, "caps", caps,
		"params", json_params(n->params), "layer_count", (int)dnode_count(n->layers),
		"layers", json_layers(n->layers), "children", json_children(n->children)));
	return o;
}

/* Builds the description tree of @d (NULL on out of memory). */
static struct dnode *info_tree(struct disk *d)
{
	struct dbuild b = {
		.dd = {
			.param = dbuild_param,
			.child = dbuild_child,
			.layer_begin = dbuild_layer_begin,
			.layer_end = dbuild_layer_end,
		},
	};
	struct dnode *root = dnode_new(DNODE_DISK, NULL, d);

	if (!root)
		return NULL;
	b.dd.opaque = &b;
	dbuild_describe(&b, root);
	if (b.oom) {
		dnode_free(root);
		return NULL;
	}
	return root;
}

json_t *tool_disk_json(struct disk *d, const char *spec_text)
{
	struct dnode *root = info_tree(d);
	json_t *o;

	if (!root)
		return NULL;
	o = json_disk(spec_text, root);
	dnode_free(root);
	return o;
}

/* ---- the command -------------------------------------------------------- */

int cmd_info(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "ro",   no_argument, NULL, 'r' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *cmd = "info";
	bool json = false;
	int opt, ret;

	opterr = 0;
	optind = 1;
	while ((opt = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
		switch (opt) {
		case 'r':
			break;
		case 'j':
			json = true;
			break;
		case 'h':
			info_usage(stdout);
			return 0;
		default:
			return tool_bad_option(cmd, opt, argv);
		}
	}
	if (optind >= argc)
		return tool_usage_error(cmd, "missing SPEC");
	if (argc - optind > 1)
		return tool_usage_error(cmd, "too many arguments ('%s')", argv[optind + 1]);

	const char *text = argv[optind];
	struct spec *spec = NULL;
	if ((ret = tool_parse_spec(cmd, "SPEC", text, &spec)) != 0)
		return ret;
	if (tool_spec_creates(spec)) {
		spec_free(spec);
		return tool_usage_error(cmd, "'%s' asks to create a disk; info never creates or "
					"modifies anything (drop create=)", text);
	}

	struct reactor *r = NULL;
	int rc = reactor_new(&r, 0);
	if (rc < 0) {
		spec_free(spec);
		return tool_error(cmd, "cannot create a reactor: %s", strerror(-rc));
	}

	struct disk *d = NULL;
	ret = tool_open_spec(cmd, "SPEC", spec, true, &d);
	if (ret != 0)
		goto out;

	struct dnode *root = info_tree(d);
	if (!root) {
		ret = tool_error(cmd, "out of memory");
		goto out;
	}
	{
		/* The spec may hold credentials in URLs: never show them. */
		char *shown = url_redact_text_dup(text);

		if (!shown) {
			ret = tool_error(cmd, "out of memory");
			dnode_free(root);
			goto out;
		}
		ret = 0;
		if (json) {
			json_t *o = json_disk(shown, root);

			if (!o || tool_json_print(stdout, o, true) < 0)
				ret = tool_error(cmd, "out of memory");
			json_decref(o);
		} else {
			info_print_text(stdout, shown, d, root);
		}
		free(shown);
		if (fflush(stdout) != 0 || ferror(stdout))
			ret = tool_error(cmd, "error writing output: %s", strerror(errno));
	}
	dnode_free(root);

out:
	disk_unref(d);
	reactor_free(r);
	spec_free(spec);
	return ret;
}
