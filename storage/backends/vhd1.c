/* SPDX-License-Identifier: MIT */
/*
 * vhd1.c: fixed VHD files (docs/openvmm-compat.md §4.6).
 *
 * Notes on the design
 * -------------------
 * - A fixed VHD is a raw image followed by a 512-byte footer. The disk is a
 *   thin decorator over the io_uring file backend opened with
 *   limit_bytes = current_size: every read, write, flush and write-zeroes
 *   passes through unchanged, and the file backend's own range check stops
 *   anything at or past current_size with ILLEGAL_BLOCK before any I/O, so
 *   the footer can neither be read nor overwritten through the disk.
 * - The decorator only changes metadata: type "vhd1", physical sector 512,
 *   disk id = the footer's unique id (raw bytes), unmap IGNORED (the
 *   dispatcher answers unmap itself, after its range check).
 * - The footer is read once at open from the file's last 512 bytes and
 *   checked in the order of §4.6. Fields that upstream does not check
 *   (features, data offset, timestamp, geometry) are not checked here
 *   either.
 * - Creating: the file is truncated to the data size (a sparse run of
 *   zeroes) and a footer with a random version-4 GUID is written after it.
 *   Upstream writes creator 0 and geometry 0; qemu sizes such an image
 *   from its (zero) geometry, so we write the footer Hyper-V writes
 *   (vhdfooter_build_hyperv: CHS geometry, creator "win "), which tells
 *   qemu to trust current_size. OpenVMM reads neither field.
 * - The footer itself (layout, checks, messages) is vhdfooter.c's, shared
 *   with the vhd1 blob format.
 * - Nothing here is stateful after open; no locks.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/compiler.h"
#include "common/log.h"
#include "storage/backends/filedisk.h"
#include "storage/backends/vhd1.h"

struct vhd1 {
	char *path;
	struct vhdfooter footer;
};

int vhd1_parse_footer(const uint8_t raw[VHD1_FOOTER_BYTES], uint64_t file_len,
		      struct vhdfooter *out, char *err, size_t errlen)
{
	enum vhdfooter_error e = vhdfooter_check_file_size(file_len);
	struct vhdfooter f;

	memset(&f, 0, sizeof(f));
	if (e == VHDFOOTER_OK)
		e = vhdfooter_parse(raw, file_len - VHDFOOTER_BYTES, &f);
	if (e != VHDFOOTER_OK)
		return vhdfooter_explain(e, &f, file_len, err, errlen);
	/* Beyond §4.6: a disk needs at least one sector. */
	if (f.current_size == 0)
		return errbuf_printf(err, errlen, "invalid VHD disk size 0 (the disk holds no data)");
	if (out)
		*out = f;
	return 0;
}

int vhd1_make_footer(uint64_t data_bytes, const uint8_t *unique_id,
		     uint8_t raw[VHD1_FOOTER_BYTES])
{
	uint8_t id[16];
	int r;

	if (data_bytes == 0 || data_bytes % 512 || data_bytes > (uint64_t)INT64_MAX - 512)
		return -EINVAL;
	if (unique_id) {
		memcpy(id, unique_id, 16);
	} else {
		r = vhdfooter_random_id(id);
		if (r < 0)
			return r;
	}
	vhdfooter_build_hyperv(data_bytes, id, raw);
	return 0;
}

int vhd1_write_footer(int fd, uint64_t data_bytes)
{
	uint8_t raw[VHD1_FOOTER_BYTES];
	ssize_t n;
	int r;

	r = vhd1_make_footer(data_bytes, NULL, raw);
	if (r < 0)
		return r;
	if (ftruncate(fd, (off_t)(data_bytes + VHD1_FOOTER_BYTES)) < 0)
		return -errno;
	n = pwrite(fd, raw, sizeof(raw), (off_t)data_bytes);
	if (n < 0)
		return -errno;
	if (n != (ssize_t)sizeof(raw))
		return -EIO;
	if (fsync(fd) < 0)
		return -errno;
	return 0;
}

/* ---- the disk ------------------------------------------------------------ */

static void vhd1_describe(struct disk *d, struct disk_describer *dd)
{
	struct vhd1 *v = disk_priv(d);
	const uint8_t *u = v->footer.unique_id;

	dd->param(dd, "path", v->path);
	dd->param(dd, "format", "fixed");
	disk_describe_paramf(dd, "current_size", "%" PRIu64, v->footer.current_size);
	/* The GUID in its usual text form (the first three fields are
	 * little-endian on disk). */
	disk_describe_paramf(dd, "unique_id",
			     "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
			     u[3], u[2], u[1], u[0], u[5], u[4], u[7], u[6], u[8], u[9], u[10], u[11],
			     u[12], u[13], u[14], u[15]);
	dd->param(dd, "creator", v->footer.creator);
}

static void vhd1_close(struct disk *d)
{
	struct vhd1 *v = disk_priv(d);

	free(v->path);
	free(v);
}

/* Everything else passes through to the file disk below. */
static const struct disk_ops vhd1_ops = {
	.version = DISK_OPS_VERSION,
	.describe = vhd1_describe,
	.close = vhd1_close,
};

/* Creates or truncates @path with @size bytes of zeroes and a footer. */
static int vhd1_create(const char *path, uint64_t size, char *err, size_t errlen)
{
	CLEANUP_CLOSE int fd = -1;
	int r;

	if (size == 0 || size % 512 || size > (uint64_t)INT64_MAX - 512) {
		(void)errbuf_printf(err, errlen, "create size %" PRIu64 " must be a non-zero multiple of 512",
			 size);
		return -EINVAL;
	}
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
	if (fd < 0) {
		r = -errno;
		(void)errbuf_printf(err, errlen, "%s", strerror(-r));
		return r;
	}
	r = vhd1_write_footer(fd, size);
	if (r < 0)
		(void)errbuf_printf(err, errlen, "cannot write the VHD footer: %s", strerror(-r));
	return r;
}

/* Reads the footer of @path. */
static int vhd1_read_footer(const char *path, bool read_only, struct vhdfooter *f, char *err,
			    size_t errlen)
{
	uint8_t raw[VHD1_FOOTER_BYTES];
	CLEANUP_CLOSE int fd = -1;
	struct stat st;
	ssize_t n;
	int r;

	fd = open(path, (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0) {
		r = -errno;
		(void)errbuf_printf(err, errlen, "%s", strerror(-r));
		return r;
	}
	if (!S_ISREG(st.st_mode)) {
		(void)errbuf_printf(err, errlen, "a VHD must be a regular file");
		return -EINVAL;
	}
	memset(raw, 0, sizeof(raw));
	if (st.st_size >= VHD1_FOOTER_BYTES) {
		n = pread(fd, raw, sizeof(raw), st.st_size - VHD1_FOOTER_BYTES);
		if (n < 0) {
			r = -errno;
			(void)errbuf_printf(err, errlen, "cannot read the footer: %s", strerror(-r));
			return r;
		}
		if (n != (ssize_t)sizeof(raw)) {
			(void)errbuf_printf(err, errlen, "cannot read the footer: short read");
			return -EIO;
		}
	}
	return vhd1_parse_footer(raw, (uint64_t)st.st_size, f, err, errlen);
}

int vhd1_open(const char *path, const struct vhd1_opts *opts, struct disk **out, char *err,
	      size_t errlen)
{
	struct filedisk_opts fo = { .read_only = opts->read_only };
	struct disk_info info;
	struct disk *lower = NULL;
	struct vhd1 *v;
	int r;

	*out = NULL;
	if (err && errlen)
		err[0] = '\0';
	if (opts->create) {
		r = vhd1_create(path, opts->create_size, err, errlen);
		if (r < 0)
			return r;
	}
	v = calloc(1, sizeof(*v));
	if (!v || !(v->path = strdup(path))) {
		free(v);
		return -ENOMEM;
	}
	r = vhd1_read_footer(path, opts->read_only, &v->footer, err, errlen);
	if (r < 0)
		goto fail;
	fo.limit_bytes = v->footer.current_size;
	r = filedisk_open(path, &fo, &lower, err, errlen);
	if (r < 0)
		goto fail;
	/* The file may have changed between the two opens. */
	if (disk_sector_count(lower) != v->footer.current_size / 512 ||
	    disk_sector_size(lower) != 512) {
		(void)errbuf_printf(err, errlen, "the file changed while it was being opened");
		r = -EAGAIN;
		goto fail;
	}
	disk_info_inherit(&info, lower);
	info.type = "vhd1";
	info.physical_sector_size = 512;
	info.has_disk_id = true;
	memcpy(info.disk_id, v->footer.unique_id, 16);
	info.fua_respected = false;
	info.unmap_behavior = DISK_UNMAP_IGNORED;
	info.optimal_unmap_sectors = 1;
	r = disk_new(&vhd1_ops, &info, v, lower, out);
	if (r < 0) {
		(void)errbuf_printf(err, errlen, "%s", strerror(-r));
		goto fail;
	}
	return 0;

fail:
	disk_unref(lower);
	free(v->path);
	free(v);
	return r;
}
