/* SPDX-License-Identifier: MIT */
/*
 * blk.c: the virtio-blk device (blk.h).
 *
 * Notes on the design
 * -------------------
 * - A request is a 16-byte header (le32 type, le32 reserved, le64 sector)
 *   in the device-readable part, data, and one status byte: the last byte
 *   of the device-writable part (virtio 1.2 §5.2.6). Where the guest split them does
 *   not matter: the header is gathered with iov_to_buf, the data is a
 *   slice of the chain's iovecs (vhost_req.scratch), so the disk reads and
 *   writes guest memory directly.
 * - Everything in a request is checked here before the disk sees it: the
 *   direction of the data (a read's data must be device-writable, a
 *   write's device-readable: nothing is ever written into a buffer the
 *   driver marked read-only), sector alignment to the disk's block size,
 *   offsets that overflow, segment counts and flags of DISCARD and
 *   WRITE_ZEROES. Anything wrong answers VIRTIO_BLK_S_IOERR (or UNSUPP for
 *   a type or flag we do not know). A chain without a writable byte for
 *   the status cannot be answered: it completes with length 0 and a log.
 * - Sectors on the wire are 512 bytes whatever blk_size says (virtio 1.2 §5.2.6.1).
 * - writeback (CONFIG_WCE) starts as the disk's volatile-cache property;
 *   when the driver switches to write-through, writes are sent with FUA.
 * - Resize: a watch on the disk calls vhostsrv_config_changed; QEMU then
 *   re-reads the config space (capacity is read live) and interrupts the
 *   guest.
 */
#include "config.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/compiler.h"
#include "common/endian.h"
#include "common/log.h"
#include "storage/disk.h"
#include "vhost/blk.h"
#include "vhost/proto.h"
#include "vhost/vring.h"

#define BIT(n) (1ull << (n))

/* Limits we advertise for DISCARD and WRITE_ZEROES: 2 GiB (in 512-byte
 * sectors) per segment, 64 segments per request (Linux merges that many
 * discards of a filesystem trim into one request; it sends write-zeroes
 * one segment at a time). */
#define VHOSTBLK_MAX_RANGE_SECTORS (1u << 22)
#define VHOSTBLK_MAX_RANGE_SEGS 64

struct vhostblk {
	struct disk *disk;
	uint32_t shift;                 /* log2 of the disk's sector size */
	unsigned queues;
	bool read_only;
	bool volatile_cache;
	bool can_discard;
	uint32_t seg_max;
	atomic_bool writeback;
	char serial[VIRTIO_BLK_ID_BYTES];
	struct vhostsrv *srv;
	struct disk_resize_watch watch;
	bool watching;
};

struct vhostblk_req {
	struct disk_io io;
	struct vhostblk *b;
	struct vhost_req *req;
	uint32_t type;                  /* DISCARD, WRITE_ZEROES: the next segment... */
	unsigned seg, nsegs;            /* ...of nsegs (0 for other requests) */
	uint8_t *status;                /* the writable status byte in guest memory */
	uint32_t written;               /* data bytes written into the writable part */
};

uint8_t vhostblk_status(int disk_status)
{
	switch (disk_status) {
	case DISK_OK:
		return VIRTIO_BLK_S_OK;
	case DISK_UNSUPPORTED:
		return VIRTIO_BLK_S_UNSUPP;
	default:
		return VIRTIO_BLK_S_IOERR;
	}
}

static void vhostblk_finish(struct vhostblk_req *br, uint8_t status)
{
	*br->status = status;
	vhost_req_complete(br->req, (status == VIRTIO_BLK_S_OK ? br->written : 0) + 1);
}

static uint8_t vhostblk_range_seg(struct vhostblk *b, struct vhost_req *req, uint32_t type,
				  unsigned i, struct disk_io *io);

static void vhostblk_io_done(struct disk_io *io)
{
	struct vhostblk_req *br = container_of(io, struct vhostblk_req, io);

	if (io->status == DISK_OK && ++br->seg < br->nsegs) {
		/* The next DISCARD or WRITE_ZEROES segment, on the same
		 * request (one at a time keeps the order the driver gave). */
		uint8_t st;

		memset(io, 0, sizeof(*io));
		st = vhostblk_range_seg(br->b, br->req, br->type, br->seg, io);
		if (st != VIRTIO_BLK_S_OK) {
			vhostblk_finish(br, st);
			return;
		}
		io->done = vhostblk_io_done;
		disk_submit(br->b->disk, io);
		return;
	}
	if (io->status != DISK_OK)
		log_debug("vhost-user-blk: %s at sector %llu: %s", disk_op_str(io->op),
			  (unsigned long long)io->sector, disk_status_str(io->status));
	vhostblk_finish(br, vhostblk_status(io->status));
}

/* Converts a 512-byte-unit range to disk sectors; false when it is not
 * representable or not aligned to the disk's blocks. */
static bool vhostblk_range(const struct vhostblk *b, uint64_t sector512, uint64_t bytes,
			   uint64_t *sector, uint64_t *count)
{
	uint64_t mask = (1ull << b->shift) - 1, off;

	if (sector512 > (UINT64_MAX >> 9))
		return false;
	off = sector512 << 9;
	if ((off & mask) || (bytes & mask))
		return false;
	*sector = off >> b->shift;
	*count = bytes >> b->shift;
	return disk_range_representable(*sector, *count, b->shift);
}

/* DISCARD and WRITE_ZEROES: segment @i of {le64 sector, le32 num_sectors,
 * le32 flags} after the header (virtio 1.2 §5.2.6) into @io. Read from
 * guest memory at each use and checked each time. */
static uint8_t vhostblk_range_seg(struct vhostblk *b, struct vhost_req *req, uint32_t type,
				  unsigned i, struct disk_io *io)
{
	uint8_t seg[16];
	uint64_t sector, count;
	uint32_t num, flags;

	iov_to_buf(req->iov, (int)req->out_cnt, 16 + 16 * (size_t)i, seg, sizeof(seg));
	num = ds_get_le32(seg + 8);
	flags = ds_get_le32(seg + 12);
	if (type == VIRTIO_BLK_T_DISCARD ? flags != 0 : (flags & ~(uint32_t)VIRTIO_BLK_WZ_F_UNMAP))
		return VIRTIO_BLK_S_UNSUPP;
	/* Past the end is the disk's to refuse too; checking it here keeps a
	 * request whose last segment is past the end from doing the others. */
	if (num > VHOSTBLK_MAX_RANGE_SECTORS ||
	    !vhostblk_range(b, ds_get_le64(seg), (uint64_t)num << 9, &sector, &count) ||
	    count > disk_sector_count(b->disk) || sector > disk_sector_count(b->disk) - count)
		return VIRTIO_BLK_S_IOERR;
	io->sector = sector;
	io->count = count;
	if (type == VIRTIO_BLK_T_DISCARD) {
		io->op = DISK_OP_UNMAP;
	} else {
		io->op = DISK_OP_WRITE_ZEROES;
		io->flags = flags & VIRTIO_BLK_WZ_F_UNMAP ? 0 : DISK_IO_NO_UNMAP;
	}
	return VIRTIO_BLK_S_OK;
}

/* DISCARD and WRITE_ZEROES with up to VHOSTBLK_MAX_RANGE_SEGS segments.
 * All are checked before the first goes to the disk, so a bad one fails
 * the request with nothing done; they then run one after the other
 * (vhostblk_io_done), and the first that fails ends the request. */
static uint8_t vhostblk_prep_range(struct vhostblk *b, struct vhostblk_req *br,
				   struct vhost_req *req, uint32_t type)
{
	uint64_t bytes = req->out_bytes - 16;
	uint8_t bad = VIRTIO_BLK_S_OK;
	unsigned n;

	if (bytes == 0 || bytes % 16 || bytes / 16 > VHOSTBLK_MAX_RANGE_SEGS)
		return VIRTIO_BLK_S_IOERR;
	n = (unsigned)(bytes / 16);
	/* An unknown flag in any segment is UNSUPP (virtio 1.2 §5.2.6.2),
	 * even with an earlier segment out of range (IOERR). */
	for (unsigned i = 1; i < n; i++) {
		struct disk_io probe = { 0 };
		uint8_t st = vhostblk_range_seg(b, req, type, i, &probe);

		if (st == VIRTIO_BLK_S_UNSUPP)
			return st;
		if (st != VIRTIO_BLK_S_OK)
			bad = st;
	}
	if (bad != VIRTIO_BLK_S_OK) {
		struct disk_io probe = { 0 };
		uint8_t st = vhostblk_range_seg(b, req, type, 0, &probe);

		return st == VIRTIO_BLK_S_UNSUPP ? st : bad;
	}
	br->type = type;
	br->seg = 0;
	br->nsegs = n;
	return vhostblk_range_seg(b, req, type, 0, &br->io);
}

/* Builds the disk request for @req, or returns the status to answer now. */
static uint8_t vhostblk_prep(struct vhostblk *b, struct vhostblk_req *br, struct vhost_req *req)
{
	struct disk_io *io = &br->io;
	uint8_t hdr[16];
	uint32_t type;
	uint64_t sector512, data, count;
	int n;

	if (req->out_bytes < sizeof(hdr))
		return VIRTIO_BLK_S_IOERR;
	iov_to_buf(req->iov, (int)req->out_cnt, 0, hdr, sizeof(hdr));
	type = ds_get_le32(hdr);
	sector512 = ds_get_le64(hdr + 8);
	switch (type) {
	case VIRTIO_BLK_T_IN:
		/* Data goes only into device-writable buffers, before the
		 * status byte; a read with data in readable ones is refused. */
		data = req->in_bytes - 1;
		if (req->out_bytes != sizeof(hdr) || !vhostblk_range(b, sector512, data, &io->sector, &count))
			return VIRTIO_BLK_S_IOERR;
		n = iov_slice(req->iov + req->out_cnt, (int)req->in_cnt, 0, data, req->scratch,
			      VHOSTVQ_CHAIN_MAX);
		if (n < 0)
			return VIRTIO_BLK_S_IOERR;
		io->op = DISK_OP_READ;
		io->iov = req->scratch;
		io->iovcnt = n;
		br->written = (uint32_t)data;
		return data ? VIRTIO_BLK_S_OK : 0xff;
	case VIRTIO_BLK_T_OUT:
		data = req->out_bytes - sizeof(hdr);
		if (b->read_only || req->in_bytes != 1 ||
		    !vhostblk_range(b, sector512, data, &io->sector, &count))
			return VIRTIO_BLK_S_IOERR;
		n = iov_slice(req->iov, (int)req->out_cnt, sizeof(hdr), data, req->scratch,
			      VHOSTVQ_CHAIN_MAX);
		if (n < 0)
			return VIRTIO_BLK_S_IOERR;
		io->op = DISK_OP_WRITE;
		io->iov = req->scratch;
		io->iovcnt = n;
		if (b->volatile_cache && !atomic_load_explicit(&b->writeback, memory_order_relaxed))
			io->flags = DISK_IO_FUA;
		return data ? VIRTIO_BLK_S_OK : 0xff;
	case VIRTIO_BLK_T_FLUSH:
		io->op = DISK_OP_FLUSH;
		return VIRTIO_BLK_S_OK;
	case VIRTIO_BLK_T_GET_ID:
		if (req->out_bytes != sizeof(hdr))
			return VIRTIO_BLK_S_IOERR;
		br->written = (uint32_t)MIN(req->in_bytes - 1, (uint64_t)VIRTIO_BLK_ID_BYTES);
		iov_from_buf(req->iov + req->out_cnt, (int)req->in_cnt, 0, b->serial, br->written);
		return 0xff;
	case VIRTIO_BLK_T_DISCARD:
		if (!b->can_discard)
			return VIRTIO_BLK_S_UNSUPP;
		/* fall through */
	case VIRTIO_BLK_T_WRITE_ZEROES:
		if (b->read_only)
			return VIRTIO_BLK_S_IOERR;
		return vhostblk_prep_range(b, br, req, type);
	default:
		return VIRTIO_BLK_S_UNSUPP;
	}
}

static void vhostblk_handle(void *dev, struct vhost_req *req)
{
	struct vhostblk *b = dev;
	struct vhostblk_req *br = req->priv;
	const struct iovec *last;
	uint8_t st;

	br->b = b;
	br->req = req;
	if (req->in_cnt == 0) {
		/* Nowhere to put the status: the driver gets its buffers
		 * back and nothing else. */
		log_warn("vhost-user-blk: queue %u: a request without a writable status byte "
			 "(head %u)", req->qidx, req->head);
		vhost_req_complete(req, 0);
		return;
	}
	last = &req->iov[req->out_cnt + req->in_cnt - 1];
	br->status = (uint8_t *)last->iov_base + last->iov_len - 1;
	st = vhostblk_prep(b, br, req);
	if (st == 0xff) {
		/* Nothing for the disk to do (GET_ID, an empty read or write). */
		vhostblk_finish(br, VIRTIO_BLK_S_OK);
		return;
	}
	if (st != VIRTIO_BLK_S_OK) {
		br->written = 0;
		vhostblk_finish(br, st);
		return;
	}
	br->io.done = vhostblk_io_done;
	disk_submit(b->disk, &br->io);
}

static uint64_t vhostblk_features(void *dev)
{
	struct vhostblk *b = dev;
	uint64_t f = BIT(VIRTIO_BLK_F_SEG_MAX) | BIT(VIRTIO_BLK_F_BLK_SIZE) |
		     BIT(VIRTIO_BLK_F_TOPOLOGY) | BIT(VIRTIO_BLK_F_FLUSH) |
		     BIT(VIRTIO_BLK_F_CONFIG_WCE);

	if (!b->read_only)
		f |= BIT(VIRTIO_BLK_F_WRITE_ZEROES) | (b->can_discard ? BIT(VIRTIO_BLK_F_DISCARD) : 0);
	else
		f |= BIT(VIRTIO_BLK_F_RO);
	if (b->queues > 1)
		f |= BIT(VIRTIO_BLK_F_MQ);
	return f;
}

static int vhostblk_get_config(void *dev, uint32_t off, void *buf, uint32_t len)
{
	struct vhostblk *b = dev;
	const struct disk_info *info = disk_get_info(b->disk);
	uint8_t cfg[VIRTIO_BLK_CFG_BYTES];
	uint32_t align512 = info->optimal_unmap_sectors << (b->shift - 9);

	memset(cfg, 0, sizeof(cfg));
	ds_put_le64(cfg + VIRTIO_BLK_CFG_CAPACITY, disk_sector_count(b->disk) << (b->shift - 9));
	ds_put_le32(cfg + VIRTIO_BLK_CFG_SEG_MAX, b->seg_max);
	ds_put_le32(cfg + VIRTIO_BLK_CFG_BLK_SIZE, info->sector_size);
	cfg[VIRTIO_BLK_CFG_PHYS_BLOCK_EXP] =
		(uint8_t)(ilog2_u64(info->physical_sector_size) - b->shift);
	ds_put_le16(cfg + VIRTIO_BLK_CFG_MIN_IO_SIZE, 1);
	cfg[VIRTIO_BLK_CFG_WRITEBACK] = atomic_load(&b->writeback);
	ds_put_le16(cfg + VIRTIO_BLK_CFG_NUM_QUEUES, (uint16_t)b->queues);
	ds_put_le32(cfg + VIRTIO_BLK_CFG_MAX_DISCARD_SECTORS, VHOSTBLK_MAX_RANGE_SECTORS);
	ds_put_le32(cfg + VIRTIO_BLK_CFG_MAX_DISCARD_SEG, VHOSTBLK_MAX_RANGE_SEGS);
	ds_put_le32(cfg + VIRTIO_BLK_CFG_DISCARD_ALIGNMENT, align512 ? align512 : 1);
	ds_put_le32(cfg + VIRTIO_BLK_CFG_MAX_WZ_SECTORS, VHOSTBLK_MAX_RANGE_SECTORS);
	ds_put_le32(cfg + VIRTIO_BLK_CFG_MAX_WZ_SEG, VHOSTBLK_MAX_RANGE_SEGS);
	cfg[VIRTIO_BLK_CFG_WZ_MAY_UNMAP] = 1;
	/* Bytes past our layout (a longer config a newer front-end asks for)
	 * read as zero. */
	memset(buf, 0, len);
	if (off < sizeof(cfg))
		memcpy(buf, cfg + off, MIN((size_t)len, sizeof(cfg) - off));
	return 0;
}

static int vhostblk_set_config(void *dev, uint32_t off, const void *buf, uint32_t len)
{
	struct vhostblk *b = dev;

	/* Only writeback is writable (virtio 1.2 §5.2.4, CONFIG_WCE). */
	if (off != VIRTIO_BLK_CFG_WRITEBACK || len != 1)
		return -EINVAL;
	atomic_store(&b->writeback, *(const uint8_t *)buf != 0);
	log_info("vhost-user-blk: the driver switched the cache to %s",
		 *(const uint8_t *)buf ? "write back" : "write through");
	return 0;
}

static void vhostblk_resized(struct disk_resize_watch *w, uint64_t new_count)
{
	struct vhostblk *b = w->opaque;

	w->seen_count = new_count;
	/* Under the disk's watcher lock: only an eventfd write. */
	vhostsrv_config_changed(b->srv);
}

static int vhostblk_attach(void *dev, struct vhostsrv *srv)
{
	struct vhostblk *b = dev;
	int ret;

	b->srv = srv;
	b->watch = (struct disk_resize_watch){ .cb = vhostblk_resized,
					       .seen_count = disk_sector_count(b->disk),
					       .opaque = b };
	ret = disk_watch_resize(b->disk, &b->watch);
	if (ret == -EOPNOTSUPP)
		return 0;   /* a fixed size: nothing to tell */
	if (ret < 0)
		return ret;
	b->watching = true;
	return 0;
}

static void vhostblk_detach(void *dev)
{
	struct vhostblk *b = dev;

	if (b->watching)
		disk_unwatch_resize(b->disk, &b->watch);
	b->watching = false;
	b->srv = NULL;
}

const struct vhost_dev_ops vhostblk_ops = {
	.version = VHOST_DEV_OPS_VERSION,
	.name = "blk",
	.features = vhostblk_features,
	.protocol_features = BIT(VHU_PROTO_CONFIG),
	.get_config = vhostblk_get_config,
	.set_config = vhostblk_set_config,
	.req_priv_bytes = sizeof(struct vhostblk_req),
	.handle = vhostblk_handle,
	.attach = vhostblk_attach,
	.detach = vhostblk_detach,
};

int vhostblk_new(struct disk *d, const struct vhostblk_opts *o, struct vhostblk **out)
{
	const struct disk_info *info = disk_get_info(d);
	struct vhostblk *b;

	if (o->queues == 0 || o->queues > VHOSTSRV_MAX_QUEUES || o->seg_max > VHOSTVQ_CHAIN_MAX - 2)
		return -EINVAL;
	b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	b->disk = disk_ref(d);
	b->shift = info->sector_shift;
	b->queues = o->queues;
	b->read_only = o->read_only || info->read_only;
	b->volatile_cache = info->caps & DISK_CAP_VOLATILE_CACHE;
	b->can_discard = info->unmap_behavior != DISK_UNMAP_IGNORED;
	b->seg_max = o->seg_max ? o->seg_max : 126;
	atomic_init(&b->writeback, b->volatile_cache);
	/* The serial (GET_ID): the disk id in hex, as much as fits in the
	 * 20 bytes; none without an id. */
	if (info->has_disk_id) {
		char hex[33];

		for (unsigned i = 0; i < 16; i++)
			snprintf(hex + 2 * i, 3, "%02x", info->disk_id[i]);
		memcpy(b->serial, hex, sizeof(b->serial));
	}
	*out = b;
	return 0;
}

void vhostblk_free(struct vhostblk *b)
{
	if (!b)
		return;
	vhostblk_detach(b);
	disk_unref(b->disk);
	free(b);
}
