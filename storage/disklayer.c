/* SPDX-License-Identifier: MIT */
/*
 * disklayer.c: any disk used as a layer of a layered disk
 * (docs/openvmm-compat.md §3.11). The disk is fully present: every
 * read marks all its sectors. Writes, flush and unmap go to the disk
 * (unmap ignores next_is_zero); there is no write-no-overwrite, so it cannot
 * be a read cache. Requests re-enter through disk_submit, so the disk keeps
 * the dispatcher's guarantees; the layer request waits for a child request
 * taken from the reactor's cache.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/bitmap.h"
#include "common/compiler.h"
#include "storage/layered.h"

struct disklayer {
	struct disk *disk;       /* owned */
};

static struct disk *dl_disk(struct layer *l)
{
	return ((struct disklayer *)layer_priv(l))->disk;
}

static int disklayer_attach(struct layer *l, const struct layer_meta *lower,
			    struct layer_meta *meta, char *err, size_t errlen)
{
	struct disk *d = dl_disk(l);
	const struct disk_info *info = disk_get_info(d);

	memset(meta, 0, sizeof(*meta));
	meta->has_disk_id = info->has_disk_id;
	memcpy(meta->disk_id, info->disk_id, sizeof(meta->disk_id));
	meta->sector_size = info->sector_size;
	meta->sector_count = disk_sector_count(d);
	meta->physical_sector_size = info->physical_sector_size;
	meta->unmap_behavior = info->unmap_behavior;
	meta->optimal_unmap_sectors = info->optimal_unmap_sectors;
	meta->read_only = info->read_only;
	meta->can_read_cache = false;
	meta->fua_respected = info->fua_respected;
	meta->caps = info->caps & (DISK_CAP_COHERENT | DISK_CAP_VOLATILE_CACHE |
				   DISK_CAP_PERSISTENT | DISK_CAP_RESIZE);
	meta->origin = info->origin;
	return 0;
}

static uint64_t disklayer_sector_count(struct layer *l)
{
	return disk_sector_count(dl_disk(l));
}

/* The child finished: copy its result to the layer request; a successful
 * read marks every sector present. */
static void disklayer_child_done(struct disk_io *child)
{
	struct disk_io *lio = child->opaque;
	struct reactor *r = child->reactor;
	int st = child->status;

	if (st == DISK_OK && lio->op == DISK_OP_READ)
		bitmap_set_range(lio->u.marker, lio->sector, lio->count);
	if (st == DISK_OK && lio->op == DISK_OP_BLOCK_STATUS) {
		/* Fully present: a hole in the disk is present zeroes here. */
		lio->u.bs.extents[0] = child->u.bs.extents[0];
		lio->u.bs.extents[0].layer = -1;
		lio->u.bs.nr = 1;
		if (lio->u.bs.extents[0].flags & DISK_EXTENT_HOLE)
			lio->u.bs.extents[0].flags |= DISK_EXTENT_ZERO;
	}
	lio->os_errno = child->os_errno;
	lio->medium = child->medium;
	disk_io_put(r, child);
	disk_io_complete(lio, st);
}

static int disklayer_forward(struct layer *l, struct disk_io *lio)
{
	struct disk_io *child = disk_io_get(lio->reactor ? lio->reactor : reactor_current());

	if (!child)
		return DISK_IO_ERROR;
	disk_io_copy_request(child, lio);
	child->flags &= DISK_IO_FUA | DISK_IO_BLOCK_LEVEL_ONLY;
	child->done = disklayer_child_done;
	child->opaque = lio;
	if (lio->op == DISK_OP_BLOCK_STATUS) {
		child->u.bs.extents = lio->u.bs.extents;
		child->u.bs.max = 1;
	}
	disk_submit(dl_disk(l), child);
	return DISK_PENDING;
}

static int disklayer_write(struct layer *l, struct disk_io *lio)
{
	/* Never a read cache, so write-no-overwrite never reaches here. */
	if (lio->flags & DISK_IO_NO_OVERWRITE)
		return DISK_INVALID_INPUT;
	return disklayer_forward(l, lio);
}

static struct disk *disklayer_inner(struct layer *l)
{
	return dl_disk(l);
}

static void disklayer_close(struct layer *l)
{
	struct disklayer *dl = layer_priv(l);

	disk_unref(dl->disk);
	free(dl);
}

static const struct layer_ops disklayer_ops = {
	.version = LAYER_OPS_VERSION,
	.type = "disk",
	.attach = disklayer_attach,
	.sector_count = disklayer_sector_count,
	.read = disklayer_forward,
	.write = disklayer_write,
	.flush = disklayer_forward,
	.unmap = disklayer_forward,
	.block_status = disklayer_forward,
	.inner_disk = disklayer_inner,
	.close = disklayer_close,
};

int disklayer_new(struct disk *d, struct layer **out)
{
	struct disklayer *dl = calloc(1, sizeof(*dl));
	int r;

	if (!dl)
		return -ENOMEM;
	dl->disk = d;
	r = layer_new(&disklayer_ops, dl, out);
	if (r < 0) {
		free(dl);
		return r;
	}
	return 0;
}
