/* SPDX-License-Identifier: MIT */
/*
 * io.c: the NVM command set (NVMe NVM Command Set spec §3): Read, Write,
 * Flush, Write Zeroes, Dataset Management and Compare, each a row of
 * nvmeemu_io_ops[] turned into requests on the namespace's disk; the
 * reservation rows point at resv.c.
 *
 * Notes on the design
 * -------------------
 * - The core checked the opcode, FUSE, the namespace (a reference is in
 *   the command's state) and, for OP_WRITES rows, read-only. Handlers
 *   check the command's own fields, then the range against the live
 *   size (a clean LBA Out of Range before any data moves; the disk checks
 *   again, atomically with the I/O, after a resize).
 * - Data. With the transport's map, Read and Write hand its iovecs to the
 *   disk; otherwise one bounce buffer from the reactor's cache (no
 *   allocation in steady state) and get/put. Write's data is complete
 *   before the disk sees the request; Read's reaches the host only after
 *   the disk succeeded.
 * - FUA: the command's bit, or every write while the host has turned the
 *   volatile write cache off (Set Features 06h WCE = 0).
 * - Write Uncorrectable (04h), Verify (0Ch), Copy (19h) and the zoned
 *   commands are not in the table: Invalid Command Opcode, and ONCS says
 *   they are absent.
 */
#include "config.h"

#include <errno.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "common/compiler.h"
#include "nvme_emul/internal.h"

/* CDW12 of Read, Write, Compare, Write Zeroes. */
#define CDW12_FUA  (1u << 30)
#define CDW12_DEAC (1u << 25)
/* CDW11 of Dataset Management. */
#define DSM_AD (1u << 2)
/* The most iovec entries a mapped transfer may use: one per 4 KiB page
 * of MDTS plus an unaligned head. */
#define MAP_MAX_IOV(bytes) ((int)((bytes) / 4096 + 2))

static uint64_t cmd_slba(const struct nvmeemu_cmd *cmd)
{
	return ds_get_le64(cmd->sqe + 40);
}

static uint32_t cmd_nlb(const struct nvmeemu_cmd *cmd)
{
	return (cmd_dw(cmd, 12) & 0xffff) + 1;
}

/* LBA Out of Range unless [slba, slba + nlb) lies within the namespace. */
static uint16_t range_check(struct nvmeemu_ns *ns, uint64_t slba, uint64_t nlb)
{
	uint64_t end;

	if (__builtin_add_overflow(slba, nlb, &end) || end > disk_sector_count(ns->disk))
		return NVMEEMU_LBA_RANGE | NVMEEMU_DNR;
	return 0;
}

static size_t mdts_bytes(const struct nvmeemu_cmd *cmd)
{
	return (size_t)4096 << cmd->ctrl->s->o.mdts;
}

/* Points io->iov at the command's data for @bytes: the transport's own
 * memory when it maps, else a bounce buffer (st->mapped false). 0 or a
 * status. */
static uint16_t data_setup(struct nvmeemu_cmd *cmd, struct disk_io *io, size_t bytes,
			   struct iovec *one)
{
	struct cmd_state *st = cmd_state(cmd);

	if (cmd->data && cmd->data->map) {
		int max = MAP_MAX_IOV(bytes);
		struct iovec *iov;
		int n;

		/* Up to 4 KiB the array fits the request's scratch, which the
		 * disk never touches: no buffer from the cache per command. */
		if ((size_t)max * sizeof(*iov) <= sizeof(io->sctx))
			iov = (struct iovec *)(void *)io->sctx;
		else
			iov = nvmeemu_cmd_buf(cmd, (size_t)max * sizeof(*iov), false);
		if (!iov)
			return NVMEEMU_INTERNAL_ERROR;
		n = cmd->data->map(cmd, 0, bytes, iov, max);
		if (n > 0 && iov_length(iov, n) == bytes) {
			io->iov = iov;
			io->iovcnt = n;
			st->mapped = true;
			return 0;
		}
		if (st->buf) {
			reactor_buf_put(st->r, st->buf, st->buf_len);
			st->buf = NULL;
		}
		if (n < 0 && n != -E2BIG && n != -EOPNOTSUPP)
			return nvmeemu_data_errno(n);
		if (n >= 0)
			return nvmeemu_data_errno(-EMSGSIZE);
	}
	one->iov_base = nvmeemu_cmd_buf(cmd, bytes, false);
	if (!one->iov_base)
		return NVMEEMU_INTERNAL_ERROR;
	one->iov_len = bytes;
	io->iov = one;
	io->iovcnt = 1;
	return 0;
}

/* ---- Read and Write -------------------------------------------------------------- */

/* Whether a Read of @bytes at @slba fits its pipe: one pipe buffer per
 * page (nvme_pipe.h). */
static bool pipe_fits(struct nvmeemu_cmd *cmd, uint64_t slba, size_t bytes)
{
	struct cmd_state *st = cmd_state(cmd);
	static size_t page;
	uint64_t head, start = slba << st->ns->lbads;

	if (!page)
		page = (size_t)sysconf(_SC_PAGESIZE);
	head = start & (page - 1);
	/* Whole pages: a pipe's size counts its buffers at one page each. */
	return (head + bytes + page - 1) / page * page <= st->pipe_room;
}

/* A command offered a pipe (nvme_pipe.h): a Read's or Write's disk
 * request takes it when the disk does (st->piped_io). A Write's pipe
 * holds st->pipe_len bytes, at least the command's (as the data in
 * memory must be). 0 or a status. */
static uint16_t pipe_setup(struct nvmeemu_cmd *cmd, struct disk_io *io, size_t bytes, bool write)
{
	struct cmd_state *st = cmd_state(cmd);

	if (write && bytes > st->pipe_len)
		return nvmeemu_data_errno(-EMSGSIZE);
	if (!(disk_get_info(st->ns->io_disk)->caps & DISK_CAP_PIPE))
		return 0;
	io->flags = DISK_IO_PIPE;
	io->pipe_fd = st->pipe_fd;
	io->count = bytes >> st->ns->lbads;
	st->piped_io = true;
	return 0;
}

/* A Write offered a pipe whose disk does not take pipes: its data from the
 * pipe into @buf. 0 or a status. */
static uint16_t pipe_drain(struct nvmeemu_cmd *cmd, void *buf, size_t bytes)
{
	struct cmd_state *st = cmd_state(cmd);
	size_t done = 0;
	int held;

	/* Never wait for bytes the transport did not put there. */
	if (ioctl(st->pipe_fd, FIONREAD, &held) < 0 || held < 0 || (size_t)held < bytes)
		return NVMEEMU_INTERNAL_ERROR;
	while (done < bytes) {
		ssize_t n = read(st->pipe_fd, (char *)buf + done, bytes - done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return NVMEEMU_INTERNAL_ERROR;
		done += (size_t)n;
	}
	st->piped = (uint32_t)bytes;
	return 0;
}

static void rw_done(struct disk_io *io)
{
	struct nvmeemu_cmd *cmd = io->opaque;
	struct cmd_state *st = cmd_state(cmd);
	struct nvmeemu_ctrl *c = cmd->ctrl;
	size_t bytes = (size_t)st->a;
	uint16_t status;

	if (io->status != DISK_OK) {
		st->piped = 0;          /* the pipe may hold any part (nvme_pipe.h) */
		nvmeemu_finish_disk(cmd, io);
		return;
	}
	if (st->piped_io) {
		st->piped = (uint32_t)bytes;
	} else if (st->opc == 0x02) {
		if (!st->mapped) {
			status = nvmeemu_put(cmd, 0, st->buf, bytes);
			if (status) {
				nvmeemu_finish(cmd, status, 0);
				return;
			}
		}
	}
	nvmeemu_count_io(c, st->opc != 0x02, bytes);
	nvmeemu_finish(cmd, NVMEEMU_SUCCESS, 0);
}

static void nvm_rw(struct nvmeemu_cmd *cmd)
{
	struct cmd_state *st = cmd_state(cmd);
	struct nvmeemu_ns *ns = st->ns;
	uint64_t slba = cmd_slba(cmd);
	uint32_t nlb = cmd_nlb(cmd), cdw12 = cmd_dw(cmd, 12);
	size_t bytes = (size_t)nlb << ns->lbads;
	bool write = st->opc == 0x01;
	struct iovec bounce;
	struct disk_io *io;
	uint16_t status;

	if (bytes > mdts_bytes(cmd)) {
		nvmeemu_finish(cmd, NVMEEMU_INVALID_FIELD | NVMEEMU_DNR, 0);
		return;
	}
	status = range_check(ns, slba, nlb);
	if (status) {
		nvmeemu_finish(cmd, status, 0);
		return;
	}
	io = nvmeemu_cmd_io(cmd, rw_done);
	if (!io) {
		nvmeemu_finish(cmd, NVMEEMU_INTERNAL_ERROR, 0);
		return;
	}
	if (st->pipe_fd >= 0 && (write || (bytes <= st->pipe_len && pipe_fits(cmd, slba, bytes)))) {
		status = pipe_setup(cmd, io, bytes, write);
		if (status) {
			nvmeemu_finish(cmd, status, 0);
			return;
		}
		if (st->piped_io)
			goto submit;
	}
	status = data_setup(cmd, io, bytes, &bounce);
	if (status) {
		nvmeemu_finish(cmd, status, 0);
		return;
	}
	if (!st->mapped) {
		/* The bounce iovec must outlive this function: keep it in the
		 * request's scratch, which the disk never touches. */
		struct iovec *keep = (struct iovec *)(void *)io->sctx;

		_Static_assert(sizeof(io->sctx) >= sizeof(struct iovec), "sctx holds an iovec");
		*keep = bounce;
		io->iov = keep;
		if (write && st->pipe_fd >= 0) {
			status = pipe_drain(cmd, bounce.iov_base, bytes);
			if (status) {
				nvmeemu_finish(cmd, status, 0);
				return;
			}
		} else if (write) {
			status = nvmeemu_get(cmd, 0, bounce.iov_base, bytes);
			if (status) {
				nvmeemu_finish(cmd, status, 0);
				return;
			}
		}
	}
submit:
	st->a = bytes;
	io->op = write ? DISK_OP_WRITE : DISK_OP_READ;
	io->sector = slba;
	if (write && ((cdw12 & CDW12_FUA) ||
		      !atomic_load_explicit(&cmd->ctrl->wce, memory_order_relaxed)))
		io->flags |= DISK_IO_FUA;
	disk_submit(ns->io_disk, io);
}

/* ---- Flush --------------------------------------------------------------------------- */

static void simple_done(struct disk_io *io)
{
	nvmeemu_finish_disk(io->opaque, io);
}

static void nvm_flush(struct nvmeemu_cmd *cmd)
{
	struct disk_io *io = nvmeemu_cmd_io(cmd, simple_done);

	if (!io) {
		nvmeemu_finish(cmd, NVMEEMU_INTERNAL_ERROR, 0);
		return;
	}
	io->op = DISK_OP_FLUSH;
	disk_submit(cmd_state(cmd)->ns->io_disk, io);
}

/* ---- Write Zeroes ------------------------------------------------------------------------ */

static void wz_done(struct disk_io *io)
{
	struct nvmeemu_cmd *cmd = io->opaque;

	if (io->status == DISK_OK)
		nvmeemu_count_io(cmd->ctrl, true, 0);
	nvmeemu_finish_disk(cmd, io);
}

/* NVMe NVM Command Set spec §3.3.7: DEAC lets the controller deallocate
 * (DISK_OP_WRITE_ZEROES may then unmap where unmapped blocks read as
 * zeroes); without it the blocks must stay allocated (NO_UNMAP). Not
 * limited by MDTS: no data moves. */
static void nvm_write_zeroes(struct nvmeemu_cmd *cmd)
{
	struct cmd_state *st = cmd_state(cmd);
	uint64_t slba = cmd_slba(cmd);
	uint32_t nlb = cmd_nlb(cmd), cdw12 = cmd_dw(cmd, 12);
	struct disk_io *io;
	uint16_t status = range_check(st->ns, slba, nlb);

	if (status) {
		nvmeemu_finish(cmd, status, 0);
		return;
	}
	io = nvmeemu_cmd_io(cmd, wz_done);
	if (!io) {
		nvmeemu_finish(cmd, NVMEEMU_INTERNAL_ERROR, 0);
		return;
	}
	io->op = DISK_OP_WRITE_ZEROES;
	io->sector = slba;
	io->count = nlb;
	if (!(cdw12 & CDW12_DEAC))
		io->flags |= DISK_IO_NO_UNMAP;
	if ((cdw12 & CDW12_FUA) || !atomic_load_explicit(&cmd->ctrl->wce, memory_order_relaxed))
		io->flags |= DISK_IO_FUA;
	disk_submit(st->ns->io_disk, io);
}

/* ---- Dataset Management ----------------------------------------------------------------- */

#define DSM_RANGE_BYTES 16

/* Submits the unmap of the next range with blocks, from index st->a;
 * finishes the command after the last. */
static void dsm_next(struct nvmeemu_cmd *cmd);

static void dsm_done(struct disk_io *io)
{
	struct nvmeemu_cmd *cmd = io->opaque;

	if (io->status != DISK_OK) {
		nvmeemu_finish_disk(cmd, io);
		return;
	}
	cmd_state(cmd)->a++;
	dsm_next(cmd);
}

static void dsm_next(struct nvmeemu_cmd *cmd)
{
	struct cmd_state *st = cmd_state(cmd);
	const uint8_t *ranges = st->buf;
	struct disk_io *io;

	for (; st->a < st->b; st->a++) {
		const uint8_t *r = ranges + st->a * DSM_RANGE_BYTES;
		uint32_t nlb = ds_get_le32(r + 4);

		if (!nlb)
			continue;
		io = nvmeemu_cmd_io(cmd, dsm_done);
		if (!io) {
			nvmeemu_finish(cmd, NVMEEMU_INTERNAL_ERROR, 0);
			return;
		}
		io->op = DISK_OP_UNMAP;
		io->sector = ds_get_le64(r + 8);
		io->count = nlb;
		disk_submit(st->ns->io_disk, io);
		return;
	}
	nvmeemu_finish(cmd, NVMEEMU_SUCCESS, 0);
}

/* NVMe NVM Command Set spec §3.3.3: NR + 1 ranges of {attributes, NLB, SLBA};
 * with AD, each is deallocated (DISK_OP_UNMAP). Every range is checked
 * before any is deallocated, so a bad one changes nothing. IDR and IDW
 * are hints and ignored. Deallocation is advisory: a disk that ignores
 * unmap still succeeds. */
static void nvm_dsm(struct nvmeemu_cmd *cmd)
{
	struct cmd_state *st = cmd_state(cmd);
	uint32_t nr = (cmd_dw(cmd, 10) & 0xff) + 1;
	size_t len = (size_t)nr * DSM_RANGE_BYTES;
	uint8_t *ranges;
	uint16_t status;

	if (!(cmd_dw(cmd, 11) & DSM_AD)) {
		nvmeemu_finish(cmd, NVMEEMU_SUCCESS, 0);
		return;
	}
	if (st->ns->read_only) {
		nvmeemu_finish(cmd, NVMEEMU_WRITE_TO_RO | NVMEEMU_DNR, 0);
		return;
	}
	ranges = nvmeemu_cmd_buf(cmd, len, false);
	if (!ranges) {
		nvmeemu_finish(cmd, NVMEEMU_INTERNAL_ERROR, 0);
		return;
	}
	status = nvmeemu_get(cmd, 0, ranges, len);
	for (uint32_t i = 0; i < nr && !status; i++)
		status = range_check(st->ns, ds_get_le64(ranges + i * DSM_RANGE_BYTES + 8),
				     ds_get_le32(ranges + i * DSM_RANGE_BYTES + 4));
	if (status) {
		nvmeemu_finish(cmd, status, 0);
		return;
	}
	st->a = 0;
	st->b = nr;
	dsm_next(cmd);
}

/* ---- Compare --------------------------------------------------------------------------- */

static void compare_done(struct disk_io *io)
{
	struct nvmeemu_cmd *cmd = io->opaque;
	struct cmd_state *st = cmd_state(cmd);
	size_t bytes = (size_t)st->a;
	uint8_t *disk_data = st->buf, *host = disk_data + bytes;
	uint16_t status;

	if (io->status != DISK_OK) {
		nvmeemu_finish_disk(cmd, io);
		return;
	}
	nvmeemu_count_io(cmd->ctrl, false, bytes);
	status = nvmeemu_get(cmd, 0, host, bytes);
	if (!status && memcmp(disk_data, host, bytes))
		status = NVMEEMU_COMPARE_FAILURE | NVMEEMU_DNR;
	nvmeemu_finish(cmd, status, 0);
}

/* NVMe NVM Command Set spec §3.3.1: reads the blocks and compares them with
 * the host's data; Compare Failure on any difference. */
static void nvm_compare(struct nvmeemu_cmd *cmd)
{
	struct cmd_state *st = cmd_state(cmd);
	uint64_t slba = cmd_slba(cmd);
	uint32_t nlb = cmd_nlb(cmd);
	size_t bytes = (size_t)nlb << st->ns->lbads;
	struct iovec *keep;
	struct disk_io *io;
	uint16_t status;

	if (bytes > mdts_bytes(cmd)) {
		nvmeemu_finish(cmd, NVMEEMU_INVALID_FIELD | NVMEEMU_DNR, 0);
		return;
	}
	status = range_check(st->ns, slba, nlb);
	if (status) {
		nvmeemu_finish(cmd, status, 0);
		return;
	}
	io = nvmeemu_cmd_io(cmd, compare_done);
	if (!io || !nvmeemu_cmd_buf(cmd, 2 * bytes, false)) {
		nvmeemu_finish(cmd, NVMEEMU_INTERNAL_ERROR, 0);
		return;
	}
	keep = (struct iovec *)(void *)io->sctx;
	keep->iov_base = st->buf;
	keep->iov_len = bytes;
	st->a = bytes;
	io->op = DISK_OP_READ;
	io->sector = slba;
	io->iov = keep;
	io->iovcnt = 1;
	disk_submit(st->ns->io_disk, io);
}

/* ---- the table ---------------------------------------------------------------------------- */

const struct nvmeemu_op nvmeemu_io_ops[] = {
	{ 0x00, OP_NS, 0, nvm_flush, "Flush" },
	{ 0x01, OP_NS | OP_WRITES, FX_LBCC, nvm_rw, "Write" },
	{ 0x02, OP_NS, 0, nvm_rw, "Read" },
	{ 0x05, OP_NS, 0, nvm_compare, "Compare" },
	{ 0x08, OP_NS | OP_WRITES, FX_LBCC, nvm_write_zeroes, "Write Zeroes" },
	{ 0x09, OP_NS, FX_LBCC, nvm_dsm, "Dataset Management" },
	{ 0x0D, OP_NS, 0, nvmeemu_resv_register, "Reservation Register" },
	{ 0x0E, OP_NS, 0, nvmeemu_resv_report, "Reservation Report" },
	{ 0x11, OP_NS, 0, nvmeemu_resv_acquire, "Reservation Acquire" },
	{ 0x15, OP_NS, 0, nvmeemu_resv_release, "Reservation Release" },
	{ 0, 0, 0, NULL, NULL },
};
