/* SPDX-License-Identifier: MIT */
/*
 * vhdfooter.c: parse, check and build fixed-VHD footers (see vhdfooter.h,
 * reference/openvmm-disk-stack.md §4.6).
 */
#include "config.h"

#include <errno.h>
#include <string.h>
#include <sys/random.h>

#include "storage/vhdfooter.h"

#define VHD_COOKIE "conectix"
#define OFF_FEATURES 8
#define OFF_VERSION 12
#define OFF_DATA_OFFSET 16
#define OFF_CREATOR_VERSION 32
#define OFF_ORIGINAL_SIZE 40
#define OFF_CURRENT_SIZE 48
#define OFF_DISK_TYPE 60
#define OFF_CHECKSUM 64
#define OFF_UNIQUE_ID 68

static uint32_t get_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint64_t get_be64(const uint8_t *p)
{
	return (uint64_t)get_be32(p) << 32 | get_be32(p + 4);
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

	if (memcmp(footer, VHD_COOKIE, 8) != 0)
		return VHDFOOTER_BAD_COOKIE;
	f.checksum = get_be32(footer + OFF_CHECKSUM);
	if (f.checksum != vhdfooter_checksum(footer))
		return VHDFOOTER_BAD_CHECKSUM;
	f.version = get_be32(footer + OFF_VERSION);
	if (f.version != VHDFOOTER_VERSION)
		return VHDFOOTER_BAD_VERSION;
	f.disk_type = get_be32(footer + OFF_DISK_TYPE);
	if (f.disk_type != VHDFOOTER_TYPE_FIXED)
		return VHDFOOTER_NOT_FIXED;
	f.current_size = get_be64(footer + OFF_CURRENT_SIZE);
	if (f.current_size > data_room || f.current_size % 512 != 0)
		return VHDFOOTER_BAD_DISK_SIZE;
	f.original_size = get_be64(footer + OFF_ORIGINAL_SIZE);
	memcpy(f.unique_id, footer + OFF_UNIQUE_ID, 16);
	if (out)
		*out = f;
	return VHDFOOTER_OK;
}

void vhdfooter_build(uint64_t size, const uint8_t unique_id[16], uint8_t *out)
{
	memset(out, 0, VHDFOOTER_BYTES);
	memcpy(out, VHD_COOKIE, 8);
	put_be32(out + OFF_FEATURES, 2);
	put_be32(out + OFF_VERSION, VHDFOOTER_VERSION);
	put_be64(out + OFF_DATA_OFFSET, UINT64_MAX);
	put_be32(out + OFF_CREATOR_VERSION, 0x000A0000u);
	put_be64(out + OFF_ORIGINAL_SIZE, size);
	put_be64(out + OFF_CURRENT_SIZE, size);
	put_be32(out + OFF_DISK_TYPE, VHDFOOTER_TYPE_FIXED);
	memcpy(out + OFF_UNIQUE_ID, unique_id, 16);
	put_be32(out + OFF_CHECKSUM, vhdfooter_checksum(out));
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
