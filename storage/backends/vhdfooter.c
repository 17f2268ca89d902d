/* SPDX-License-Identifier: MIT */
/*
 * vhdfooter.c: parse, check and build fixed-VHD footers (see vhdfooter.h,
 * docs/openvmm-compat.md §4.6).
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <string.h>
#include <sys/random.h>

#include "common/endian.h"
#include "common/log.h"

#include "storage/backends/vhdfooter.h"

#define VHD_COOKIE "conectix"
#define OFF_FEATURES 8
#define OFF_VERSION 12
#define OFF_DATA_OFFSET 16
#define OFF_CREATOR_APP 28
#define OFF_CREATOR_VERSION 32
#define OFF_CREATOR_HOST_OS 36
#define OFF_ORIGINAL_SIZE 40
#define OFF_CURRENT_SIZE 48
#define OFF_GEOMETRY 56
#define OFF_DISK_TYPE 60
#define OFF_CHECKSUM 64
#define OFF_UNIQUE_ID 68

const char *vhdfooter_strerror(enum vhdfooter_error e)
{
	switch (e) {
	case VHDFOOTER_OK:
		return "valid";
	case VHDFOOTER_BAD_FILE_SIZE:
		return "invalid VHD file size (must be at least 512 bytes and a multiple of 512)";
	case VHDFOOTER_BAD_COOKIE:
		return "invalid VHD footer cookie (not 'conectix')";
	case VHDFOOTER_BAD_CHECKSUM:
		return "invalid VHD footer checksum";
	case VHDFOOTER_BAD_VERSION:
		return "unsupported VHD version (not 1.0)";
	case VHDFOOTER_NOT_FIXED:
		return "not a fixed VHD (dynamic and differencing VHDs are not supported)";
	case VHDFOOTER_BAD_DISK_SIZE:
		return "invalid VHD disk size (larger than the data before the footer, "
		       "or not a multiple of 512)";
	}
	return "unknown VHD footer error";
}

uint32_t vhdfooter_checksum(const uint8_t *footer)
{
	uint32_t sum = 0;

	for (unsigned i = 0; i < VHDFOOTER_BYTES; i++)
		if (i < OFF_CHECKSUM || i >= OFF_CHECKSUM + 4)
			sum += footer[i];
	return ~sum;
}

enum vhdfooter_error vhdfooter_check_file_size(uint64_t file_bytes)
{
	if (file_bytes < VHDFOOTER_BYTES || file_bytes % 512 != 0)
		return VHDFOOTER_BAD_FILE_SIZE;
	return VHDFOOTER_OK;
}

enum vhdfooter_error vhdfooter_parse(const uint8_t *footer, uint64_t data_room,
				     struct vhdfooter *out)
{
	struct vhdfooter f;

	memset(&f, 0, sizeof(f));
	f.checksum = ds_get_be32(footer + OFF_CHECKSUM);
	f.computed_checksum = vhdfooter_checksum(footer);
	f.version = ds_get_be32(footer + OFF_VERSION);
	f.disk_type = ds_get_be32(footer + OFF_DISK_TYPE);
	f.current_size = ds_get_be64(footer + OFF_CURRENT_SIZE);
	f.original_size = ds_get_be64(footer + OFF_ORIGINAL_SIZE);
	f.geometry = ds_get_be32(footer + OFF_GEOMETRY);
	memcpy(f.unique_id, footer + OFF_UNIQUE_ID, 16);
	for (unsigned i = 0; i < 4; i++) {
		uint8_t c = footer[OFF_CREATOR_APP + i];

		f.creator[i] = c >= 0x20 && c < 0x7f ? (char)c : '.';
	}
	if (out)
		*out = f;

	if (memcmp(footer, VHD_COOKIE, 8) != 0)
		return VHDFOOTER_BAD_COOKIE;
	if (f.checksum != f.computed_checksum)
		return VHDFOOTER_BAD_CHECKSUM;
	if (f.version != VHDFOOTER_VERSION)
		return VHDFOOTER_BAD_VERSION;
	if (f.disk_type != VHDFOOTER_TYPE_FIXED)
		return VHDFOOTER_NOT_FIXED;
	if (f.current_size > data_room || f.current_size % 512 != 0)
		return VHDFOOTER_BAD_DISK_SIZE;
	return VHDFOOTER_OK;
}

int vhdfooter_explain(enum vhdfooter_error e, const struct vhdfooter *f, uint64_t file_bytes,
		      char *err, size_t errlen)
{
	uint64_t room = file_bytes >= VHDFOOTER_BYTES ? file_bytes - VHDFOOTER_BYTES : 0;

	switch (e) {
	case VHDFOOTER_BAD_FILE_SIZE:
		return errbuf_printf(err, errlen, "invalid VHD file size %" PRIu64
				     " (must be at least 512 and a multiple of 512)", file_bytes);
	case VHDFOOTER_BAD_COOKIE:
		return errbuf_printf(err, errlen, "invalid VHD footer cookie (the last 512 bytes do "
				     "not start with \"conectix\"; not a fixed VHD)");
	case VHDFOOTER_BAD_CHECKSUM:
		return errbuf_printf(err, errlen, "invalid VHD footer checksum (stored 0x%08x, "
				     "computed 0x%08x)", f->checksum, f->computed_checksum);
	case VHDFOOTER_BAD_VERSION:
		return errbuf_printf(err, errlen, "unsupported VHD version 0x%08x (want 0x%08x)",
				     f->version, VHDFOOTER_VERSION);
	case VHDFOOTER_NOT_FIXED:
		(void)errbuf_printf(err, errlen, "non-fixed VHD not supported on Linux (disk type %u: %s)",
				    f->disk_type, f->disk_type == 3 ? "dynamic" :
				    f->disk_type == 4 ? "differencing" : "unknown");
		return -ENOTSUP;
	case VHDFOOTER_BAD_DISK_SIZE:
		return errbuf_printf(err, errlen, "invalid VHD disk size %" PRIu64 " (the file holds %"
				     PRIu64 " data bytes; the size must be a multiple of 512 that fits)",
				     f->current_size, room);
	case VHDFOOTER_OK:
		break;
	}
	return errbuf_printf(err, errlen, "%s", vhdfooter_strerror(e));
}

void vhdfooter_build(uint64_t size, const uint8_t unique_id[16], uint8_t *out)
{
	memset(out, 0, VHDFOOTER_BYTES);
	memcpy(out, VHD_COOKIE, 8);
	ds_put_be32(out + OFF_FEATURES, 2);
	ds_put_be32(out + OFF_VERSION, VHDFOOTER_VERSION);
	ds_put_be64(out + OFF_DATA_OFFSET, UINT64_MAX);
	ds_put_be32(out + OFF_CREATOR_VERSION, 0x000A0000u);
	ds_put_be64(out + OFF_ORIGINAL_SIZE, size);
	ds_put_be64(out + OFF_CURRENT_SIZE, size);
	ds_put_be32(out + OFF_DISK_TYPE, VHDFOOTER_TYPE_FIXED);
	memcpy(out + OFF_UNIQUE_ID, unique_id, 16);
	ds_put_be32(out + OFF_CHECKSUM, vhdfooter_checksum(out));
}

uint32_t vhdfooter_geometry(uint64_t size)
{
	uint64_t total = size / 512, cth;
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

void vhdfooter_build_hyperv(uint64_t size, const uint8_t unique_id[16], uint8_t *out)
{
	vhdfooter_build(size, unique_id, out);
	memcpy(out + OFF_CREATOR_APP, "win ", 4);
	memcpy(out + OFF_CREATOR_HOST_OS, "Wi2k", 4);
	ds_put_be32(out + OFF_GEOMETRY, vhdfooter_geometry(size));
	ds_put_be32(out + OFF_CHECKSUM, vhdfooter_checksum(out));
}

int vhdfooter_random_id(uint8_t id[16])
{
	size_t got = 0;

	while (got < 16) {
		ssize_t n = getrandom(id + got, 16 - got, 0);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		got += (size_t)n;
	}
	/* Version 4 in the high nibble of Data3 (little-endian: byte 7),
	 * RFC 4122 variant in Data4[0] (byte 8). */
	id[7] = (uint8_t)((id[7] & 0x0f) | 0x40);
	id[8] = (uint8_t)((id[8] & 0x3f) | 0x80);
	return 0;
}
