/* SPDX-License-Identifier: MIT */
/*
 * vhdfooter.h: the 512-byte footer of a fixed VHD (VHD1) —
 * docs/openvmm-compat.md §4.6. Shared by every reader of fixed VHDs
 * (the vhd1 blob format, VHD files) and by the code that creates them.
 * Self-contained: no I/O, no allocation.
 *
 * Layout (all integers big-endian): cookie "conectix" @0, features @8,
 * file_format_version @12, data_offset @16, time_stamp @24, creator
 * application @28, creator version @32, creator host OS @36, original size
 * @40, current size @48, disk geometry @56, disk type @60, checksum @64,
 * unique id @68 (16 bytes, Windows GUID byte order), saved state @84,
 * reserved to 512.
 */
#ifndef DISKSTACK_STORAGE_VHDFOOTER_H
#define DISKSTACK_STORAGE_VHDFOOTER_H

#include <stdint.h>

#define VHDFOOTER_BYTES 512u
#define VHDFOOTER_VERSION 0x00010000u
#define VHDFOOTER_TYPE_FIXED 2u

/* Why a footer (or the file holding it) was refused: §4.6's open checks, in
 * the order they are made. */
enum vhdfooter_error {
	VHDFOOTER_OK = 0,
	VHDFOOTER_BAD_FILE_SIZE,   /* 1. length < 512 or not a multiple of 512 */
	VHDFOOTER_BAD_COOKIE,      /* 2. not "conectix" */
	VHDFOOTER_BAD_CHECKSUM,    /* 3. */
	VHDFOOTER_BAD_VERSION,     /* 4. file_format_version != 0x00010000 */
	VHDFOOTER_NOT_FIXED,       /* 5. disk_type != 2 (dynamic, differencing) */
	VHDFOOTER_BAD_DISK_SIZE,   /* 6. current_size > room, or not a multiple of 512 */
};

/* The fields a reader uses. */
struct vhdfooter {
	uint64_t current_size;     /* bytes of disk data, from offset 0 */
	uint64_t original_size;
	uint32_t disk_type;
	uint32_t version;
	uint32_t checksum;         /* as stored */
	uint32_t computed_checksum; /* of the footer as read (for messages) */
	uint32_t geometry;         /* cylinders << 16 | heads << 8 | sectors */
	uint8_t unique_id[16];     /* raw bytes: the disk id */
	char creator[5];           /* creator application, printable, NUL-terminated */
};

/* Text for an error ("invalid VHD footer checksum", ...). Never NULL. */
const char *vhdfooter_strerror(enum vhdfooter_error e);

/*
 * A full message for @e into @err: the failed check with the values that
 * failed it, taken from @f (as vhdfooter_parse filled it) and @file_bytes.
 * Returns -ENOTSUP for a dynamic or differencing VHD, else -EINVAL.
 */
int vhdfooter_explain(enum vhdfooter_error e, const struct vhdfooter *f, uint64_t file_bytes,
		      char *err, size_t errlen);

/* The checksum of @footer (VHDFOOTER_BYTES bytes): the one's complement of
 * the sum of all bytes, the checksum field counted as zero. */
uint32_t vhdfooter_checksum(const uint8_t *footer);

/* Check 1 for a file of @file_bytes: VHDFOOTER_OK or BAD_FILE_SIZE. */
enum vhdfooter_error vhdfooter_check_file_size(uint64_t file_bytes);

/*
 * Checks 2-6 on @footer (VHDFOOTER_BYTES bytes, borrowed): cookie,
 * checksum, version, fixed type, then current_size <= @data_room (the bytes
 * before the footer: file length - 512) and a multiple of 512. Returns
 * VHDFOOTER_OK or the first failed check. *@out (may be NULL) is filled
 * with every decoded field either way, so a caller can explain a refusal.
 */
enum vhdfooter_error vhdfooter_parse(const uint8_t *footer, uint64_t data_room,
				     struct vhdfooter *out);

/*
 * Builds in @out (VHDFOOTER_BYTES bytes) the footer of a fixed VHD holding
 * @size bytes of data (a multiple of 512), with the values OpenVMM's
 * make_fixed writes (features 2, version 1.0, data offset all ones,
 * creator version 0x000A0000, no geometry) and @unique_id.
 */
void vhdfooter_build(uint64_t size, const uint8_t unique_id[16], uint8_t *out);

/*
 * As vhdfooter_build, but as Hyper-V writes it: creator "win ", host OS
 * "Wi2k" and the CHS geometry of the VHD specification
 * (vhdfooter_geometry). qemu sizes an image by its geometry unless the
 * creator is one it trusts for current_size ("win " is), so images we
 * create are read at their true size by qemu too; OpenVMM reads neither.
 */
void vhdfooter_build_hyperv(uint64_t size, const uint8_t unique_id[16], uint8_t *out);

/* The CHS geometry the VHD specification gives a disk of @size bytes. */
uint32_t vhdfooter_geometry(uint64_t size);

/* Fills @id with a random version-4 GUID in Windows byte order. Returns 0
 * or -errno (getrandom). */
int vhdfooter_random_id(uint8_t id[16]);

#endif
