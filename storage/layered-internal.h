/* SPDX-License-Identifier: MIT */
/*
 * layered-internal.h: what the layered disk (layered.c) shares with the
 * commit of its top layer (layered-commit.c, docs/layered.md "Commit").
 * Not included from outside storage/.
 */
#ifndef DISKSTACK_STORAGE_LAYERED_INTERNAL_H
#define DISKSTACK_STORAGE_LAYERED_INTERNAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "storage/layered.h"

/*
 * The chunks of the top layer written since a commit last looked at them.
 * One per layered disk, made by the first commit and freed with the disk
 * (writers load the pointer without a reference, so it must outlive every
 * request). While @active, every WRITE or UNMAP that the top layer has
 * completed sets the bits of the chunks it touched; the commit takes a
 * word's bits with an exchange before copying those chunks, so a chunk
 * written after its copy started is copied again. Marks and takes are
 * sequentially consistent (one locked instruction either way on x86):
 * a mark made before a pass starts is seen by that pass, with the data
 * the write left in the layer.
 */
struct layered_dirty {
	uint64_t sectors;            /* tracked range [0, sectors): the lower layer's visible count */
	unsigned chunk_shift;        /* log2 of sectors per chunk */
	uint64_t nchunks;
	uint64_t nwords;
	atomic_bool active;          /* writers mark chunks */
	atomic_bool busy;            /* a commit owns the tracker */
	_Atomic uint64_t words[];    /* bit c: chunk c is dirty */
};

/*
 * Claims the tracker of layered disk @d for a commit of its top layer
 * into the layers below: checks that @d can be committed (two layers or
 * more, the write path is the top layer alone, the top is no read cache),
 * makes the tracker on first use, and marks it busy. Returns 0 with a
 * borrowed pointer (valid while @d is), or -EINVAL (with a message in @err)
 * or -EBUSY (another commit runs) or -ENOMEM.
 */
int layered_dirty_claim(struct disk *d, struct layered_dirty **out, char *err, size_t errlen);
/* Ends the claim: stops marking and frees the tracker for the next commit. */
void layered_dirty_release(struct layered_dirty *t);

#endif
