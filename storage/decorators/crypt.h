/* SPDX-License-Identifier: MIT */
/*
 * crypt.h: the XTS-AES-256 encryption decorator, `crypt:xts-aes-256:<keyfile>:<spec>`
 * (OpenVMM CryptDisk, docs/openvmm-compat.md §5.1, §5.4).
 *
 * Every logical sector of the inner disk is one XTS data unit; its tweak is
 * the LBA as a 128-bit little-endian number (dm-crypt aes-xts-plain64 on
 * 512-byte sectors). The key is 64 raw bytes: bytes 0-31 the data key,
 * 32-63 the tweak key; the two halves must differ.
 *
 * Forwarding: metadata (unmap behaviour ZEROES/UNSPECIFIED become
 * UNSPECIFIED), flush, unmap (raw), persistent reservations and resize go
 * to the inner disk; eject does not (UNSUPPORTED). Write-zeroes writes
 * encrypted zeroes; block status reports every sector as data (see crypt.c).
 */
#ifndef DISKSTACK_STORAGE_CRYPT_H
#define DISKSTACK_STORAGE_CRYPT_H

#include <stddef.h>
#include <stdint.h>

#include "storage/disk.h"

/* Bytes of an XTS-AES-256 key: data key then tweak key. */
#define CRYPT_KEY_BYTES 64

/*
 * Wraps @lower in a crypt disk keyed with @key (borrowed; copied into
 * locked memory, so the caller may wipe its copy at once). @key_name is
 * shown by `diskstack info` (e.g. the key file path; never key material),
 * may be NULL. On success the new disk owns @lower; on failure the caller
 * still does. Errors, with a message in @err of @errlen bytes:
 * -EINVAL identical key halves or an inner sector size XTS cannot use,
 * -ENOMEM, -EIO if OpenSSL refuses the key.
 */
int crypt_new(const uint8_t key[CRYPT_KEY_BYTES], const char *key_name, struct disk *lower,
	      struct disk **out, char *err, size_t errlen);

/*
 * Test hook: how many reads and writes (with at least one sector) @d, a
 * crypt disk, has sent down the fused path (the inner disk applies the
 * cipher while it moves the data; see crypt.c) since it was opened.
 * Either pointer may be NULL. Any thread; exact when no request is in
 * flight.
 */
void crypt_fused_counts(struct disk *d, uint64_t *reads, uint64_t *writes);

/*
 * Reads a raw 64-byte key from @path into @key (caller-owned; wipe it with
 * OPENSSL_cleanse when done). Errors, with a message in @err: -errno from
 * open/read, -EINVAL when the file does not hold exactly 64 bytes or its
 * halves are identical. Never puts key bytes in the message.
 */
int crypt_key_load(const char *path, uint8_t key[CRYPT_KEY_BYTES], char *err, size_t errlen);

#endif
