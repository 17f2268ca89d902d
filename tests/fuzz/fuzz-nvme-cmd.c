/* SPDX-License-Identifier: MIT */
/*
 * fuzz-nvme-cmd.c: libFuzzer target for the NVMe command core
 * (nvme_emul/): every submission entry of the input goes through
 * nvmeemu_cmd_submit on a controller of a subsystem with a small mem:
 * namespace, as a transport would send it, with its data buffer in a
 * heap block of exactly the announced length, so ASan sees any byte the
 * core moves outside it.
 *
 * Input: 1 byte of set-up, then commands.
 *   cfg     bit 0: 4096-byte sectors; bit 1: a read-only namespace;
 *           bit 2: fabrics (128-bit host identifiers); bit 3: a second
 *           namespace (NSID 2); bit 4: the transport maps data in place
 *   command byte 0: bit 0 the controller (two hosts); bit 1 admin (qid 0)
 *           or I/O (qid 1); bit 2 no data buffer; bit 3: resize the
 *           namespace first; bit 4: reset the controller first;
 *           bit 5: the data transfer faults
 *           bytes 1-2: buffer length (little-endian, mod 16 KiB)
 *           then 64 bytes of SQE (what the input lacks is zero), then for
 *           the data buffer its first bytes (the rest 0x5a)
 * Checks, besides memory safety and leaks: done() runs exactly once and
 * never inside nvmeemu_cmd_submit (a held AER completes later or at the
 * reset that ends the input); the CQE echoes CID and SQID, its status
 * equals cmd->status, and the phase tag and SQHD are left clear.
 */
#include "config.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_PRELUDE_INITIALIZE
#include "tests/fuzz/fuzz-prelude.h"
#include "common/endian.h"
#include "nvme_emul/nvme.h"
#include "storage/layered.h"

#define MAX_CMDS 64
#define MAX_BUF (16u << 10)

struct slot {
	struct nvmeemu_cmd cmd;
	uint8_t *buf;
	size_t len;
	bool in_submit, done, map, fault;
	unsigned calls;
};

static int f_check(struct slot *s, uint64_t off, size_t len)
{
	if (s->fault)
		return -EFAULT;
	if (off > s->len || len > s->len - off)
		return -EMSGSIZE;
	return 0;
}

static int f_get(struct nvmeemu_cmd *cmd, uint64_t off, void *buf, size_t len)
{
	struct slot *s = cmd->opaque;
	int r = f_check(s, off, len);

	if (!r)
		memcpy(buf, s->buf + off, len);
	return r;
}

static int f_put(struct nvmeemu_cmd *cmd, uint64_t off, const void *buf, size_t len)
{
	struct slot *s = cmd->opaque;
	int r = f_check(s, off, len);

	if (!r)
		memcpy(s->buf + off, buf, len);
	return r;
}

static int f_map(struct nvmeemu_cmd *cmd, uint64_t off, size_t len, struct iovec *iov, int max)
{
	struct slot *s = cmd->opaque;
	int r = f_check(s, off, len), n = 0;

	if (r)
		return r;
	if (!s->map)
		return -EOPNOTSUPP;
	while (len) {
		size_t k = len < 4096 ? len : 4096;

		if (n == max)
			return -E2BIG;
		iov[n].iov_base = s->buf + off;
		iov[n++].iov_len = k;
		off += k;
		len -= k;
	}
	return n;
}

static const struct nvmeemu_data_ops f_ops = { .get = f_get, .put = f_put, .map = f_map };

static void f_done(struct nvmeemu_cmd *cmd)
{
	struct slot *s = cmd->opaque;

	if (s->in_submit)
		abort();
	s->calls++;
	s->done = true;
}

static void check(const struct slot *s)
{
	const struct nvmeemu_cmd *c = &s->cmd;

	if (s->calls != 1)
		abort();
	if (nvmeemu_cqe_cid(c->cqe) != ds_get_le16(c->sqe + 2) ||
	    ds_get_le16(c->cqe + 10) != c->qid || ds_get_le16(c->cqe + 8) != 0 ||
	    (c->cqe[14] & 1) || nvmeemu_cqe_status(c->cqe) != c->status)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct nvmeemu_subsys *s = NULL;
	struct nvmeemu_ctrl *c[2];
	struct slot *held[MAX_CMDS];
	unsigned nheld = 0;
	struct disk *d = NULL, *d2 = NULL;
	char err[256];
	size_t pos = 1;
	uint8_t cfg;

	if (size < 1)
		return 0;
	cfg = data[0];
	if (nvmeemu_subsys_new(&(struct nvmeemu_subsys_opts){ .fabrics = cfg & 4, .sgls = 5 }, &s,
			       err, sizeof(err)) < 0)
		abort();
	if (ramdisk_new(256 << 10, cfg & 1 ? 4096 : 512, cfg & 2, &d, err, sizeof(err)) < 0 ||
	    nvmeemu_subsys_add_ns(s, 1, d, err, sizeof(err)) < 0)
		abort();
	if (cfg & 8) {
		if (ramdisk_new(64 << 10, 512, false, &d2, err, sizeof(err)) < 0 ||
		    nvmeemu_subsys_add_ns(s, 2, d2, err, sizeof(err)) < 0)
			abort();
	}
	for (unsigned i = 0; i < 2; i++) {
		struct nvmeemu_ctrl_opts o = { .cntlid = (uint16_t)(i + 1), .max_io_queues = 4,
					       .vectors = cfg & 4 ? 0 : 4 };

		if (cfg & 4) {
			memset(o.host_id, 0xa0 + (int)i, 16);
			o.host_id_len = 16;
		}
		if (nvmeemu_ctrl_new(s, &o, &c[i]) < 0)
			abort();
	}

	for (unsigned k = 0; k < MAX_CMDS && pos + 3 <= size; k++) {
		uint8_t flags = data[pos];
		size_t len = (data[pos + 1] | (size_t)data[pos + 2] << 8) % MAX_BUF, n;
		struct slot *sl = calloc(1, sizeof(*sl));

		pos += 3;
		if (!sl)
			abort();
		if (flags & 4)
			len = 0;
		if (flags & 8)
			ramlayer_resize(layered_disk_layer(d, 0), (flags & 0x80) ? 1024 : 256);
		if (flags & 0x10)
			nvmeemu_ctrl_reset(c[flags & 1]);
		n = size - pos < NVMEEMU_SQE_BYTES ? size - pos : NVMEEMU_SQE_BYTES;
		memcpy(sl->cmd.sqe, data + pos, n);
		pos += n;
		sl->buf = malloc(len ? len : 1);
		if (!sl->buf)
			abort();
		memset(sl->buf, 0x5a, len);
		n = size - pos < len ? size - pos : len;
		n = n > 64 ? 64 : n;
		memcpy(sl->buf, data + pos, n);
		pos += n;
		sl->len = len;
		sl->map = cfg & 0x10;
		sl->fault = flags & 0x20;
		sl->cmd.ctrl = c[flags & 1];
		sl->cmd.qid = flags & 2 ? 0 : 1;
		sl->cmd.data = flags & 4 ? NULL : &f_ops;
		sl->cmd.done = f_done;
		sl->cmd.opaque = sl;
		sl->in_submit = true;
		nvmeemu_cmd_submit(&sl->cmd);
		sl->in_submit = false;
		/* Run until it completes, or it is an AER the core holds. */
		while (!sl->done && reactor_pending(main_reactor))
			reactor_run_once(main_reactor, true);
		reactor_run_once(main_reactor, false);
		if (sl->done) {
			check(sl);
			free(sl->buf);
			free(sl);
		} else {
			held[nheld++] = sl;
		}
	}
	nvmeemu_ctrl_free(c[0]);
	nvmeemu_ctrl_free(c[1]);
	/* Freeing the controllers ended the held AERs: their done() is
	 * posted (reactor_pending does not count posts; a lost completion
	 * hangs here, which libFuzzer reports as a timeout). */
	for (unsigned i = 0; i < nheld; i++) {
		while (!held[i]->done)
			reactor_run_once(main_reactor, true);
		reactor_run_once(main_reactor, false);
		check(held[i]);
		free(held[i]->buf);
		free(held[i]);
	}
	nvmeemu_subsys_free(s);
	disk_unref(d);
	disk_unref(d2);
	return 0;
}
