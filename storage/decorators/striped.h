/* SPDX-License-Identifier: MIT */
/*
 * striped.h: the striped disk (`striped:<chunk>:<spec>+<spec>+...`) —
 * RAID-0 over N member disks in fixed-size chunks
 * (docs/openvmm-compat.md §4.8, §5.4).
 *
 * Logical LBA s lives in chunk c = s / spc (spc = chunk bytes / sector
 * size), on member c mod N, at member LBA (c / N) * spc + s mod spc.
 * Reads and writes are split per chunk and the pieces run concurrently;
 * unmap sends one merged range per member; flush and eject go to every
 * member. Any member error completes the request with DISK_IO_ERROR, after
 * every piece has finished. The size is fixed; no PR, no resize watch.
 */
#ifndef DISKSTACK_STORAGE_STRIPED_H
#define DISKSTACK_STORAGE_STRIPED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "storage/disk.h"

/* Chunk size used when none is given (striped_new with 0). */
#define STRIPED_DEFAULT_CHUNK_BYTES (128u * 1024)

/*
 * Builds a striped disk over @members[0..@n) (the array is borrowed; the
 * disks' references pass to the new disk on success only).
 * @chunk_bytes: 0 = STRIPED_DEFAULT_CHUNK_BYTES; otherwise a non-zero
 * multiple of member 0's sector size. @logical_sectors: 0 = all of it
 * (total = N * floor(member count / spc) * spc); otherwise at most the
 * total and a multiple of N * spc. Every member must match member 0 in
 * sector size, sector count and read-only flag.
 * Returns 0 with the disk in *out, or -EINVAL (bad configuration; a
 * message in @err of @errlen bytes, which may be NULL) or -ENOMEM.
 */
int striped_new(struct disk *const *members, unsigned n, uint64_t chunk_bytes,
		uint64_t logical_sectors, struct disk **out, char *err, size_t errlen);

#endif
