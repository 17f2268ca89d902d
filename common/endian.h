/* SPDX-License-Identifier: MIT */
/*
 * endian.h: loads and stores of big- and little-endian integers at any
 * (unaligned) address, for wire formats and on-disk structures (NBD, VHD
 * footers, SCSI and NVMe data, ATA identify words). One copy for the whole
 * tree; every function is a plain byte-wise access the compiler folds into
 * a load and a byte swap.
 */
#ifndef DISKSTACK_COMMON_ENDIAN_H
#define DISKSTACK_COMMON_ENDIAN_H

#include <stdint.h>

/* Big-endian (network order) loads from @p (borrowed, any alignment). */
static inline uint16_t ds_get_be16(const void *p)
{
	const uint8_t *b = p;

	return (uint16_t)((b[0] << 8) | b[1]);
}

static inline uint32_t ds_get_be32(const void *p)
{
	const uint8_t *b = p;

	return ((uint32_t)b[0] << 24) | ((uint32_t)b[1] << 16) | ((uint32_t)b[2] << 8) | b[3];
}

static inline uint64_t ds_get_be64(const void *p)
{
	const uint8_t *b = p;

	return ((uint64_t)ds_get_be32(b) << 32) | ds_get_be32(b + 4);
}

/* Big-endian stores of @v at @p (any alignment). */
static inline void ds_put_be16(void *p, uint16_t v)
{
	uint8_t *b = p;

	b[0] = (uint8_t)(v >> 8);
	b[1] = (uint8_t)v;
}

static inline void ds_put_be32(void *p, uint32_t v)
{
	uint8_t *b = p;

	ds_put_be16(b, (uint16_t)(v >> 16));
	ds_put_be16(b + 2, (uint16_t)v);
}

static inline void ds_put_be64(void *p, uint64_t v)
{
	uint8_t *b = p;

	ds_put_be32(b, (uint32_t)(v >> 32));
	ds_put_be32(b + 4, (uint32_t)v);
}

/* Little-endian loads from @p (any alignment). */
static inline uint16_t ds_get_le16(const void *p)
{
	const uint8_t *b = p;

	return (uint16_t)(b[0] | (b[1] << 8));
}

static inline uint32_t ds_get_le32(const void *p)
{
	const uint8_t *b = p;

	return ds_get_le16(b) | ((uint32_t)ds_get_le16(b + 2) << 16);
}

static inline uint64_t ds_get_le64(const void *p)
{
	const uint8_t *b = p;

	return ds_get_le32(b) | ((uint64_t)ds_get_le32(b + 4) << 32);
}

/* Little-endian stores of @v at @p (any alignment). */
static inline void ds_put_le16(void *p, uint16_t v)
{
	uint8_t *b = p;

	b[0] = (uint8_t)v;
	b[1] = (uint8_t)(v >> 8);
}

static inline void ds_put_le32(void *p, uint32_t v)
{
	uint8_t *b = p;

	ds_put_le16(b, (uint16_t)v);
	ds_put_le16(b + 2, (uint16_t)(v >> 16));
}

static inline void ds_put_le64(void *p, uint64_t v)
{
	uint8_t *b = p;

	ds_put_le32(b, (uint32_t)v);
	ds_put_le32(b + 4, (uint32_t)(v >> 32));
}

#endif
