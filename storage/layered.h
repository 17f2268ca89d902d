/* SPDX-License-Identifier: MIT */
/*
 * layered.h: layered disks and the layer contract (OpenVMM LayerIo,
 * docs/openvmm-compat.md §3).
 *
 * A layered disk is an ordered list of layers, top (index 0) to bottom. Each
 * layer is a block store that tracks, per logical sector, whether the sector
 * is present. Reads fill runs of absent sectors top-down; sectors no layer
 * holds read as zero. Writes go to the top layer and down the write-through
 * chain. Layers: ram (ramlayer.c), sqlite, autocache, and any disk
 * (disk-as-layer, disklayer.c).
 *
 * Layer requests reuse struct disk_io with these differences:
 *  - READ: io->u.marker is a bitmap over [io->sector, io->sector+io->count);
 *    the layer fills the buffer positions of sectors it holds and marks them.
 *    Unmarked positions are left alone.
 *  - WRITE: DISK_IO_NO_OVERWRITE writes only sectors not yet present.
 *  - UNMAP: DISK_IO_NEXT_IS_ZERO says the layer below reads zero there.
 *    A layer whose layer_meta.unmap_behavior is DISK_UNMAP_ZEROES makes
 *    unmapped sectors read zero with or without it: without it, they
 *    must stay present (zeroes that hide the layers below, as the RAM and
 *    SQLite layers keep them), since the layer below may hold data.
 *  - READ/WRITE: io->xform is set only for layers with layer_meta.xform;
 *    the layered disk transforms in place what other layers read.
 *  - BLOCK_STATUS: the layer answers for the first run only, in
 *    io->u.bs.extents[0] (count, flags): 0 = present data;
 *    DISK_EXTENT_ZERO = present, reads zeroes; DISK_EXTENT_ZERO |
 *    DISK_EXTENT_HOLE = present, zeroes, unallocated (a hole in a disk used
 *    as a layer); DISK_EXTENT_HOLE alone = absent (the layer below
 *    answers).
 * Layer ops may complete at once (returning the status) or return
 * DISK_PENDING and call disk_io_complete() later; unlike disk ops, they are
 * called by the layered disk directly, so a layer may be given a request from
 * inside another completion. Every op must range-check against the layer's
 * own sector count (ILLEGAL_BLOCK); zero-length requests at
 * sector <= count succeed.
 */
#ifndef DISKSTACK_STORAGE_LAYERED_H
#define DISKSTACK_STORAGE_LAYERED_H

#include "storage/disk.h"

struct layer;

/* Metadata a layer reports after attaching (§3.2). */
struct layer_meta {
	bool has_disk_id;
	uint8_t disk_id[16];
	uint32_t sector_size;
	uint64_t sector_count;
	uint32_t physical_sector_size;
	enum disk_unmap_behavior unmap_behavior;
	uint32_t optimal_unmap_sectors;
	bool read_only;          /* logically read-only */
	bool can_read_cache;     /* supports write-no-overwrite */
	bool fua_respected;
	uint32_t caps;           /* DISK_CAP_COHERENT, VOLATILE_CACHE, PERSISTENT, RESIZE */
	/* Appended: READ and WRITE honour io->xform (struct disk_xform): the
	 * layer transforms what it moves between its storage and the
	 * buffers, and what it marks as zeroes on a read. Only the RAM layer
	 * sets it. */
	bool xform;
	/* Appended: WRITE with DISK_IO_ADOPT may keep request buffers as its
	 * blocks of this size (disk.h, "Adopted write buffers"); 0: never.
	 * Only the RAM layer sets it. */
	uint32_t adopt_bytes;
	/* Appended: the origin of the data (struct disk_info.origin), for the
	 * layer above; NULL: unknown. Borrowed from the layer; valid while it
	 * is attached. Only the disk layer sets it. */
	const char *origin;
};

#define LAYER_OPS_VERSION 1

/* Implemented by each layer. Members are only appended; unless noted,
 * Required, called on a reactor thread, returning a status or DISK_PENDING. */
struct layer_ops {
	uint32_t version;        /* LAYER_OPS_VERSION */
	const char *type;        /* "ram", "sqlite", "disk" */

	/* Attaches the layer above @lower (NULL for the bottom layer): lazily
	 * sized layers take their geometry from it. Fills *meta. Called once,
	 * bottom-up, before any I/O. Returns 0 or -errno (with a message in
	 * @err of @errlen bytes). */
	int (*attach)(struct layer *l, const struct layer_meta *lower, struct layer_meta *meta,
		      char *err, size_t errlen);
	/* Current sector count; any thread. */
	uint64_t (*sector_count)(struct layer *l);
	int (*read)(struct layer *l, struct disk_io *io);
	int (*write)(struct layer *l, struct disk_io *io);
	int (*flush)(struct layer *l, struct disk_io *io);
	int (*unmap)(struct layer *l, struct disk_io *io);
	int (*block_status)(struct layer *l, struct disk_io *io);
	/* Optional: resize watchers (layer 0 only is asked); any thread. */
	int (*watch_resize)(struct layer *l, struct disk_resize_watch *w);
	void (*unwatch_resize)(struct layer *l, struct disk_resize_watch *w);
	/* Optional: parameters for diskstack info. */
	void (*describe)(struct layer *l, struct disk_describer *dd);
	/* Optional: the disk behind a disk-as-layer (borrowed). */
	struct disk *(*inner_disk)(struct layer *l);
	/* Frees the layer; any thread; no request in flight. */
	void (*close)(struct layer *l);
};

/* Creates a layer object around @priv (owned by the layer, freed by
 * ops->close). Returns 0 or -ENOMEM. */
int layer_new(const struct layer_ops *ops, void *priv, struct layer **out);
/* Frees a layer not (yet) owned by a layered disk. NULL allowed. */
void layer_free(struct layer *l);
void *layer_priv(const struct layer *l);
const struct layer_ops *layer_get_ops(const struct layer *l);
/* Attaches @l above @lower (NULL for the bottom) through ops->attach and
 * records the resulting metadata in the layer. layered_disk_new calls it;
 * tests may call it to use a layer on its own. Returns 0 or -errno. */
int layer_attach(struct layer *l, const struct layer_meta *lower, char *err, size_t errlen);
/* The metadata recorded by the last successful layer_attach, or NULL. The
 * sector count in it is the one at attach time. */
const struct layer_meta *layer_get_meta(const struct layer *l);

/*
 * Statistics of a layer (docs/ctl.md, "stats"), off until enabled: the
 * requests the layered disk hands to it, counted as a disk's are
 * (disk_stats_enable, storage/disk.h: per reactor, the classes of
 * common/iostats.h, from the layer call to its answer): a READ when the
 * layer served part of it (bytes: what it served; the runs offered to a
 * layer that holds none of them are not counted), the WRITEs it takes
 * (also read-cache fills), FLUSH and UNMAP (trim). Block-status queries
 * and a commit's reads (layered_commit_start) are not counted. While a
 * layer was never counted, a request costs one load and a branch.
 * Enable needs an attached layer (-EINVAL); 0 or -ENOMEM. Any thread.
 */
struct iostats_op;
int layer_stats_enable(struct layer *l);
void layer_stats_disable(struct layer *l);
/* As disk_stats_read: 0, or -ENOENT when counting is off. */
int layer_stats_read(struct layer *l, bool reset, uint64_t *since_ns, struct iostats_op *out);

/* One entry of the list given to layered_disk_new. */
struct layered_entry {
	struct layer *layer;     /* owned by the disk on success */
	bool read_cache;         /* fill with what lower layers return */
	bool write_through;      /* writes also go to the next layer */
};

/*
 * Builds a layered disk from @n layers, top first (§3.4): attaches them
 * bottom-up, validates, folds the metadata. @read_only is the disk's
 * reported read-only flag. On success the layers belong to the disk; on
 * failure they still belong to the caller. Errors (with a message in @err):
 * -EINVAL for NoLayers, ReadCacheNotSupported, InvalidSectorSize,
 * MismatchedSectorSize, ReadOnly, UselessWriteThrough; or the attach error.
 */
int layered_disk_new(const struct layered_entry *layers, unsigned n, bool read_only,
		     struct disk **out, char *err, size_t errlen);

/* The number of layers of a layered disk, 0 if @d is not one. */
unsigned layered_disk_layer_count(struct disk *d);
/* Layer @i of a layered disk (borrowed), NULL if out of range. */
struct layer *layered_disk_layer(struct disk *d, unsigned i);

/* ---- commit (layered-commit.c, docs/layered.md "Commit") --------------- */

/* A commit of a layered disk's top layer into the disk below it. */
struct layered_commit;

enum layered_commit_state {
	LAYERED_COMMIT_RUNNING = 0,
	LAYERED_COMMIT_DONE,         /* everything copied, the target flushed */
	LAYERED_COMMIT_FAILED,       /* stopped at an error (progress.error) */
	LAYERED_COMMIT_CANCELLED,    /* stopped by layered_commit_cancel */
};

/* What a commit has done so far. */
struct layered_commit_progress {
	enum layered_commit_state state;
	uint64_t done_sectors;       /* sectors written to the target, every pass */
	uint64_t total_sectors;      /* the top layer's sectors found to copy: those
	                              * present at the start, plus those of chunks
	                              * written again during the commit; grows */
	unsigned passes;             /* passes over the dirty chunks started */
	int error;                   /* FAILED: -errno */
	char message[160];           /* FAILED: what failed, with the sector */
};

/* Short name of a state ("running", "done", "failed", "cancelled"). */
const char *layered_commit_state_str(enum layered_commit_state s);

/*
 * Starts copying what the top layer of layered disk @d holds (data and
 * zeroed runs; absent sectors are left alone) into @target, on a thread
 * of its own, while @d keeps serving I/O. @target must be a writable
 * handle on the same data as the layers below the top (the caller opens
 * it; the usual case reopens the spec of a memdiff:/sqldiff: overlay's
 * lower disk writable), with the same sector size and at least as many
 * sectors as the top layer. Writes to @d during the commit go to the top
 * layer as always; chunks written after their copy started are copied
 * again, and the job ends when a pass over the dirty chunks finds none,
 * with a flush of @target. The top layer keeps its contents (it still
 * answers reads; they now equal the target's).
 * @d is borrowed (the commit takes its own reference); @target is taken
 * over on success. Returns 0, or with a message in @err: -EINVAL (@d
 * cannot be committed: not an overlay, a read cache on top, geometry),
 * -EROFS (@target is read-only), -EFBIG (the top layer is larger than
 * @target), -EBUSY (a commit of @d is running), -ENOMEM, or the error of
 * creating the thread. Any thread.
 */
int layered_commit_start(struct disk *d, struct disk *target, struct layered_commit **out,
			 char *err, size_t errlen);
/* Fills @p with the commit's progress. Any thread. */
void layered_commit_poll(struct layered_commit *c, struct layered_commit_progress *p);
/* Asks a running commit to stop (it stops between two pieces of at most
 * 1 MiB of data or zeroes, leaving the target flushed with part of the top layer's data:
 * the layered disk reads the same as before). No-op once it has ended.
 * Any thread. */
void layered_commit_cancel(struct layered_commit *c);
/* Waits until the commit has ended, then fills @p (NULL allowed). */
void layered_commit_wait(struct layered_commit *c, struct layered_commit_progress *p);
/* Cancels, waits, and frees the commit (its references to @d and the
 * target). NULL allowed. */
void layered_commit_free(struct layered_commit *c);

/* ---- the RAM layer (ramlayer.c, §4.1) ---------------------------------- */

/* Creates a RAM layer. @size_bytes 0 = inherit from the lower layer;
 * @sector_size 0 = inherit (else 512). Errors: -EINVAL for a bad sector size
 * or a size not a multiple of it (message in @err). Size 0 without a lower
 * layer fails at attach (EmptyDisk). */
int ramlayer_new(uint64_t size_bytes, uint32_t sector_size, struct layer **out,
		 char *err, size_t errlen);
/* Resizes a RAM layer at runtime (§4.1): @new_count > 0; zero_after drops
 * to min(zero_after, new); sectors >= new are freed; watchers are woken.
 * Any thread. Returns 0, -EINVAL, or -ENOMEM (the size is unchanged). */
int ramlayer_resize(struct layer *l, uint64_t new_count);
/* Bytes of sector data the layer holds (zeroed runs hold none) and bytes
 * it has allocated. */
void ramlayer_memory(struct layer *l, uint64_t *data_bytes, uint64_t *alloc_bytes);

/* A one-layer layered disk over a new RAM layer (mem:<size>). */
int ramdisk_new(uint64_t size_bytes, uint32_t sector_size, bool read_only, struct disk **out,
		char *err, size_t errlen);

/* ---- disk-as-layer (disklayer.c, §3.11) -------------------------------- */

/* Wraps @d as a fully present layer; takes ownership of @d on success. */
int disklayer_new(struct disk *d, struct layer **out);

#endif
