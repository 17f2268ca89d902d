/* SPDX-License-Identifier: MIT */
/*
 * hash.h: a stable 16-byte name for a string, for identities derived from
 * names (SCSI initiator ports and LU designators, NVMe serials, NGUIDs
 * and UUIDs): the first 16 bytes of SHA-256 (FIPS 180-4) over @a then @b.
 */
#ifndef DISKSTACK_COMMON_HASH_H
#define DISKSTACK_COMMON_HASH_H

#include <stddef.h>
#include <stdint.h>

/* Writes the first 16 bytes of SHA-256(@a || @b) into @out. Never fails:
 * if OpenSSL cannot allocate, a 128-bit FNV-1a of the same bytes stands
 * in, so the result stays stable and distinct. */
void ds_hash16(const void *a, size_t alen, const void *b, size_t blen, uint8_t out[16]);

#endif
