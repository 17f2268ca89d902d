/* SPDX-License-Identifier: MIT */
/*
 * vhd1.h: fixed VHD (VHD1) files (docs/openvmm-compat.md §4.6):
 * a raw data region followed by a 512-byte big-endian footer. The disk is
 * the data region, read and written through the file backend; the footer is
 * never exposed.
 */
#ifndef DISKSTACK_STORAGE_VHD1_H
#define DISKSTACK_STORAGE_VHD1_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "storage/disk.h"
#include "storage/backends/vhdfooter.h"

#define VHD1_FOOTER_BYTES VHDFOOTER_BYTES

/*
 * Checks @raw, the last 512 bytes of a file of @file_len bytes, in the
 * order of §4.6: file size (>= 512, a multiple of 512), cookie, checksum,
 * version, fixed disk type, then current_size (a multiple of 512 that fits
 * before the footer, and not zero). Fills @out. Returns 0, or -EINVAL
 * (-ENOTSUP for a dynamic or differencing VHD) with a message in @err.
 */
int vhd1_parse_footer(const uint8_t raw[VHD1_FOOTER_BYTES], uint64_t file_len,
		      struct vhdfooter *out, char *err, size_t errlen);

/*
 * Builds a fixed-disk footer for @data_bytes (a multiple of 512) with the
 * given @unique_id (NULL = a fresh random version-4 GUID, in Windows byte
 * order). The CHS geometry is computed as the VHD specification says, and
 * the creator is "win " so that readers that would otherwise size the disk
 * from its geometry (qemu) use current_size, as Hyper-V and OpenVMM do.
 * Returns 0 or -EINVAL / -errno (getrandom).
 */
int vhd1_make_footer(uint64_t data_bytes, const uint8_t *unique_id,
		     uint8_t raw[VHD1_FOOTER_BYTES]);

/* Appends a fresh footer at byte @data_bytes of @fd (truncating or
 * extending the file to @data_bytes + 512). Returns 0 or -errno. */
int vhd1_write_footer(int fd, uint64_t data_bytes);

struct vhd1_opts {
	bool read_only;
	bool create;                    /* create/truncate the file first */
	uint64_t create_size;           /* with @create: data bytes, a non-zero multiple of 512 */
};

/*
 * Opens @path as a fixed VHD disk (type "vhd1"): 512-byte sectors, physical
 * 512, the disk id is the footer's unique id, FUA not respected, unmap
 * IGNORED. Reads and writes past current_size are ILLEGAL_BLOCK. With
 * @opts->create the file is created (or truncated) with @create_size bytes
 * of zeroes and a new footer first, whatever @read_only says. Returns 0 or
 * -errno with a message in @err (no path prefix).
 */
int vhd1_open(const char *path, const struct vhd1_opts *opts, struct disk **out, char *err,
	      size_t errlen);

#endif
