/* SPDX-License-Identifier: MIT */
/*
 * crc32c.h: CRC32C (Castagnoli, polynomial 0x1EDC6F41, reflected), the
 * checksum of iSCSI header and data digests (RFC 7143 §13.1, test
 * vectors in RFC 3720 appendix B.4) and of NVMe/TCP. Uses the SSE4.2
 * crc32 instruction when the CPU has it, else slicing-by-8 tables.
 */
#ifndef DISKSTACK_COMMON_CRC32C_H
#define DISKSTACK_COMMON_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Continues a CRC32C: start with @crc = 0 for a new checksum; the result
 * of one call may be passed as @crc of the next to checksum a buffer in
 * pieces. @buf is borrowed; any thread. */
uint32_t crc32c(uint32_t crc, const void *buf, size_t len);

/* The portable table implementation (for tests that compare both). */
uint32_t crc32c_sw(uint32_t crc, const void *buf, size_t len);

#endif
