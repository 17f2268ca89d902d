/* SPDX-License-Identifier: MIT */
/*
 * filedisk-spec.c: the `file:` spec kind (kind.h, docs/backend-file.md):
 * `file:<path>[;direct][;create=<size>]`, also written as a bare path. The
 * file's extension chooses the backend (docs/openvmm-compat.md §6.4): .vhd
 * and .vmgs go to the fixed-VHD backend (vhd1.h), .vhdx is refused, .iso is
 * read-only, the rest is a raw file or block device (filedisk.h).
 */
#include "config.h"

#include <errno.h>
#include <string.h>
#include <strings.h>

#include "common/compiler.h"
#include "common/log.h"
#include "storage/backends/filedisk.h"
#include "storage/backends/vhd1.h"
#include "storage/kind.h"

/* The extension of @path's last component, or "". */
static const char *filedisk_spec_path_ext(const char *path)
{
	const char *base = strrchr(path, '/');
	const char *dot;

	base = base ? base + 1 : path;
	dot = strrchr(base, '.');
	return dot && dot != base ? dot + 1 : "";
}

/* Drops a leading "<path>: " from a backend's message: the resolver puts
 * the node's text (which holds the path) in front. */
static void filedisk_spec_strip_path(char *err, size_t errlen, const char *path)
{
	size_t n = strlen(path);

	if (err && errlen && strncmp(err, path, n) == 0 && strncmp(err + n, ": ", 2) == 0)
		memmove(err, err + n + 2, strlen(err + n + 2) + 1);
}

static int filedisk_spec_open(const struct spec *s, bool read_only,
			      const struct spec_ctx *ctx UNUSED,
			      struct disk **out, char *err, size_t errlen)
{
	struct filedisk_opts o = {
		.read_only = read_only,
		.direct = s->direct,
		.create = s->create,
		.create_size = s->size,
	};
	const char *ext = filedisk_spec_path_ext(s->path);
	int r;

	/* §6.4: the extension chooses the backend. */
	if (strcasecmp(ext, "vhd") == 0 || strcasecmp(ext, "vmgs") == 0) {
		struct vhd1_opts vo = {
			.read_only = read_only,
			.create = s->create,
			.create_size = s->size,
		};

		if (s->direct) {
			(void)errbuf_printf(err, errlen, "';direct' is not supported for VHD files");
			return -EINVAL;
		}
		/* §6.4: create= opens writable whatever the flag says. */
		r = vhd1_open(s->path, &vo, out, err, errlen);
		filedisk_spec_strip_path(err, errlen, s->path);
		return r;
	}
	if (strcasecmp(ext, "vhdx") == 0) {
		(void)errbuf_printf(err, errlen, "VHDX files are not supported");
		return -ENOTSUP;
	}
	if (strcasecmp(ext, "iso") == 0) {
		if (s->create) {
			(void)errbuf_printf(err, errlen, "cannot create an .iso file");
			return -EINVAL;
		}
		if (!read_only) {
			(void)errbuf_printf(err, errlen, "iso file cannot be opened as read/write; add ,ro");
			return -EROFS;
		}
	}
	if (o.create && o.read_only) {
		/* §6.4: creating opens the file writable whatever the flag;
		 * create it, then open the result read-only. */
		struct disk *d;

		o.read_only = false;
		r = filedisk_open(s->path, &o, &d, err, errlen);
		if (r < 0) {
			filedisk_spec_strip_path(err, errlen, s->path);
			return r;
		}
		disk_unref(d);
		o.read_only = true;
		o.create = false;
		o.create_size = 0;
	}
	r = filedisk_open(s->path, &o, out, err, errlen);
	filedisk_spec_strip_path(err, errlen, s->path);
	return r;
}

static const struct spec_option filedisk_spec_options[] = {
	{ .name = "direct", .type = SPEC_OPTION_FLAG, .set = SPEC_FIELD(direct) },
	{ .name = "create", .type = SPEC_OPTION_SIZE, .set = SPEC_FIELD(create),
	  .value = SPEC_FIELD(size), .value_name = "create size" },
	{ .name = NULL },
};

const struct spec_kind filedisk_kind_file = {
	.name = "file",
	.usage = "file:<path>[;direct][;create=<size>]",
	.summary = "raw file or block device; create= creates or truncates it",
	.open_disk = filedisk_spec_open,
	.args = { { .type = SPEC_ARG_PATH, .name = "path", .field = SPEC_FIELD(path),
		    .options = filedisk_spec_options } },
	.nargs = 1,
	.bare_path = true,
	.writes = SPEC_WRITES_PATH,
};
