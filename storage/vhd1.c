/* SPDX-License-Identifier: MIT */
/*
 * vhd1.c: fixed VHD files (reference/openvmm-disk-stack.md §4.6).
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
 *   from its (zero) geometry, so we compute the geometry of the VHD
 *   specification and write creator "win " (Hyper-V), which tells qemu to
 *   trust current_size. OpenVMM reads neither field.
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
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/compiler.h"
#include "common/log.h"
#include "storage/filedisk.h"
#include "storage/vhd1.h"

/* Footer field offsets (§4.6). */
enum {
	F_COOKIE = 0,
	F_FEATURES = 8,
	F_VERSION = 12,
	F_DATA_OFFSET = 16,
	F_TIME_STAMP = 24,
	F_CREATOR_APP = 28,
	F_CREATOR_VERSION = 32,
	F_CREATOR_HOST_OS = 36,
	F_ORIGINAL_SIZE = 40,
	F_CURRENT_SIZE = 48,
	F_GEOMETRY = 56,
	F_DISK_TYPE = 60,
	F_CHECKSUM = 64,
	F_UNIQUE_ID = 68,
	F_SAVED_STATE = 84,
};

static const char vhd1_cookie[8] = { 'c', 'o', 'n', 'e', 'c', 't', 'i', 'x' };

struct vhd1 {
	char *path;
	struct vhd1_footer footer;
};

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint64_t be64(const uint8_t *p)
{
	return (uint64_t)be32(p) << 32 | be32(p + 4);
}

static void put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static void put_be64(uint8_t *p, uint64_t v)
{
	put_be32(p, (uint32_t)(v >> 32));
	put_be32(p + 4, (uint32_t)v);
}

uint32_t vhd1_checksum(const uint8_t raw[VHD1_FOOTER_BYTES])
{
	uint32_t sum = 0;

	for (unsigned i = 0; i < VHD1_FOOTER_BYTES; i++) {
		if (i >= F_CHECKSUM && i < F_CHECKSUM + 4)
			continue;
		sum += raw[i];
	}
	return ~sum;
}

int vhd1_parse_footer(const uint8_t raw[VHD1_FOOTER_BYTES], uint64_t file_len,
		      struct vhd1_footer *out, char *err, size_t errlen)
{
	uint32_t stored, computed, version, type;
	uint64_t size;

	/* 1. File size. */
	if (file_len < VHD1_FOOTER_BYTES || file_len % 512) {
		(void)errbuf_printf(err, errlen, "invalid VHD file size %" PRIu64
			 " (must be at least 512 and a multiple of 512)", file_len);
		return -EINVAL;
	}
	/* 2. Cookie. */
	if (memcmp(raw + F_COOKIE, vhd1_cookie, sizeof(vhd1_cookie)) != 0) {
		(void)errbuf_printf(err, errlen, "invalid VHD footer cookie (the last 512 bytes do not start "
			 "with \"conectix\"; not a fixed VHD)");
		return -EINVAL;
	}
	/* 3. Checksum. */
	stored = be32(raw + F_CHECKSUM);
	computed = vhd1_checksum(raw);
	if (stored != computed) {
		(void)errbuf_printf(err, errlen, "invalid VHD footer checksum (stored 0x%08x, computed 0x%08x)",
			 stored, computed);
		return -EINVAL;
	}
	/* 4. Version. */
	version = be32(raw + F_VERSION);
	if (version != VHD1_VERSION) {
		(void)errbuf_printf(err, errlen, "unsupported VHD version 0x%08x (want 0x%08x)", version,
			 VHD1_VERSION);
		return -EINVAL;
	}
	/* 5. Fixed. */
	type = be32(raw + F_DISK_TYPE);
	if (type != VHD1_TYPE_FIXED) {
		(void)errbuf_printf(err, errlen, "non-fixed VHD not supported on Linux (disk type %u: %s)", type,
			 type == 3 ? "dynamic" : type == 4 ? "differencing" : "unknown");
		return -ENOTSUP;
	}
	/* 6. Current size. */
	size = be64(raw + F_CURRENT_SIZE);
	if (size > file_len - VHD1_FOOTER_BYTES || size % 512 || size == 0) {
		(void)errbuf_printf(err, errlen, "invalid VHD disk size %" PRIu64 " (the file holds %" PRIu64
			 " data bytes; the size must be a non-zero multiple of 512 that fits)", size,
			 file_len - VHD1_FOOTER_BYTES);
		return -EINVAL;
	}
	memset(out, 0, sizeof(*out));
	out->current_size = size;
	out->original_size = be64(raw + F_ORIGINAL_SIZE);
	out->disk_type = type;
	out->geometry = be32(raw + F_GEOMETRY);
	memcpy(out->unique_id, raw + F_UNIQUE_ID, 16);
	for (unsigned i = 0; i < 4; i++) {
		uint8_t c = raw[F_CREATOR_APP + i];

		out->creator[i] = c >= 0x20 && c < 0x7f ? (char)c : '.';
	}
	return 0;
}

/* CHS geometry as the VHD specification computes it. */
static uint32_t vhd1_geometry(uint64_t data_bytes)
{
	uint64_t total = data_bytes / 512, cth;
	uint32_t spt, heads;

	if (total > 65535ull * 16 * 255)
		total = 65535ull * 16 * 255;
	if (total >= 65535ull * 16 * 63) {
		spt = 255;
		heads = 16;
		cth = total / spt;
	} else {
		spt = 17;
		cth = total / spt;
		heads = (uint32_t)((cth + 1023) / 1024);
		if (heads < 4)
			heads = 4;
		if (cth >= heads * 1024ull || heads > 16) {
			spt = 31;
			heads = 16;
			cth = total / spt;
		}
		if (cth >= heads * 1024ull) {
			spt = 63;
			heads = 16;
			cth = total / spt;
		}
	}
	return (uint32_t)(cth / heads) << 16 | heads << 8 | spt;
}

int vhd1_make_footer(uint64_t data_bytes, const uint8_t *unique_id,
		     uint8_t raw[VHD1_FOOTER_BYTES])
{
	uint8_t id[16];

	if (data_bytes == 0 || data_bytes % 512 || data_bytes > (uint64_t)INT64_MAX - 512)
		return -EINVAL;
	if (unique_id) {
		memcpy(id, unique_id, 16);
	} else {
		if (getrandom(id, sizeof(id), 0) != (ssize_t)sizeof(id))
			return -errno;
		/* Version 4 in Data3's high nibble (byte 7: little-endian
		 * Data3), RFC 4122 variant in Data4[0]. */
		id[7] = (uint8_t)((id[7] & 0x0f) | 0x40);
		id[8] = (uint8_t)((id[8] & 0x3f) | 0x80);
	}
	memset(raw, 0, VHD1_FOOTER_BYTES);
	memcpy(raw + F_COOKIE, vhd1_cookie, sizeof(vhd1_cookie));
	put_be32(raw + F_FEATURES, 0x00000002);
	put_be32(raw + F_VERSION, VHD1_VERSION);
	put_be64(raw + F_DATA_OFFSET, UINT64_MAX);
	put_be32(raw + F_TIME_STAMP, 0);
	memcpy(raw + F_CREATOR_APP, "win ", 4);
	put_be32(raw + F_CREATOR_VERSION, 0x000A0000);
	memcpy(raw + F_CREATOR_HOST_OS, "Wi2k", 4);
	put_be64(raw + F_ORIGINAL_SIZE, data_bytes);
	put_be64(raw + F_CURRENT_SIZE, data_bytes);
	put_be32(raw + F_GEOMETRY, vhd1_geometry(data_bytes));
	put_be32(raw + F_DISK_TYPE, VHD1_TYPE_FIXED);
	memcpy(raw + F_UNIQUE_ID, id, 16);
	put_be32(raw + F_CHECKSUM, vhd1_checksum(raw));
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
static int vhd1_read_footer(const char *path, bool read_only, struct vhd1_footer *f, char *err,
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
