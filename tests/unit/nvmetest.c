/* SPDX-License-Identifier: MIT */
/*
 * nvmetest.c: helpers for the NVMe command core's unit tests (see
 * nvmetest.h).
 */
#include "config.h"

#include <errno.h>
#include <string.h>

#include "common/compiler.h"
#include "common/endian.h"
#include "common/reactor.h"
#include "nvme_emul/nvme_pipe.h"
#include "storage/disk.h"
#include "storage/spec.h"
#include "tests/unit/nvmetest.h"
#include "tests/unit/testutil.h"

static enum nt_mode mode;
static uint16_t next_cid = 1;

void nt_set_mode(enum nt_mode m)
{
	mode = m;
}

struct nt_sqe nt_sqe(uint8_t opc, uint32_t nsid, uint32_t cdw10, uint32_t cdw11, uint32_t cdw12,
		     uint32_t cdw13, uint32_t cdw14, uint32_t cdw15)
{
	struct nt_sqe s;

	memset(&s, 0, sizeof(s));
	s.b[0] = opc;
	ds_put_le16(s.b + 2, next_cid++);
	ds_put_le32(s.b + 4, nsid);
	ds_put_le32(s.b + 40, cdw10);
	ds_put_le32(s.b + 44, cdw11);
	ds_put_le32(s.b + 48, cdw12);
	ds_put_le32(s.b + 52, cdw13);
	ds_put_le32(s.b + 56, cdw14);
	ds_put_le32(s.b + 60, cdw15);
	return s;
}

struct nt_sqe nt_rw(uint8_t opc, uint32_t nsid, uint64_t slba, uint32_t nlb, uint32_t flags)
{
	return nt_sqe(opc, nsid, (uint32_t)slba, (uint32_t)(slba >> 32),
		      ((nlb - 1) & 0xffff) | flags, 0, 0, 0);
}

struct nvmeemu_subsys *nt_subsys(const struct nvmeemu_subsys_opts *o)
{
	struct nvmeemu_subsys *s = NULL;
	char err[256] = "";
	int r = nvmeemu_subsys_new(o, &s, err, sizeof(err));

	if (r < 0)
		fail_msg("nvmeemu_subsys_new: %s (%s)", err, strerror(-r));
	return s;
}

struct disk *nt_add_ns(struct nvmeemu_subsys *s, uint32_t nsid, const char *spec)
{
	struct disk *d = NULL;
	char err[256] = "";
	int r = spec_open_str(spec, false, NULL, &d, err, sizeof(err));

	if (r < 0)
		fail_msg("spec_open_str(%s): %s", spec, err);
	r = nvmeemu_subsys_add_ns(s, nsid, d, err, sizeof(err));
	if (r < 0)
		fail_msg("nvmeemu_subsys_add_ns(%u): %s (%s)", nsid, err, strerror(-r));
	return d;
}

struct nvmeemu_ctrl *nt_ctrl(struct nvmeemu_subsys *s, uint16_t cntlid, uint8_t host)
{
	struct nvmeemu_ctrl_opts o = { .cntlid = cntlid, .max_io_queues = 8, .vectors = 4 };
	struct nvmeemu_ctrl *c = NULL;
	int r;

	if (host) {
		memset(o.host_id, host, sizeof(o.host_id));
		o.host_id_len = 16;
	}
	r = nvmeemu_ctrl_new(s, &o, &c);
	if (r < 0)
		fail_msg("nvmeemu_ctrl_new: %s", strerror(-r));
	return c;
}

/* ---- the data transfer ------------------------------------------------------------------ */

static int nt_bounds(struct nt_pending *p, uint64_t off, size_t len)
{
	if (mode == NT_FAULT)
		return -EFAULT;
	if (off > p->len || len > p->len - off)
		return -EMSGSIZE;
	return 0;
}

static int nt_get(struct nvmeemu_cmd *cmd, uint64_t off, void *buf, size_t len)
{
	struct nt_pending *p = cmd->opaque;
	int r = nt_bounds(p, off, len);

	if (r == 0)
		memcpy(buf, p->buf + off, len);
	return r;
}

static int nt_put(struct nvmeemu_cmd *cmd, uint64_t off, const void *buf, size_t len)
{
	struct nt_pending *p = cmd->opaque;
	int r = nt_bounds(p, off, len);

	if (r == 0)
		memcpy(p->buf + off, buf, len);
	return r;
}

/* Pieces of at most 4 KiB, as a PRP list would give them. */
static int nt_map(struct nvmeemu_cmd *cmd, uint64_t off, size_t len, struct iovec *iov, int max)
{
	struct nt_pending *p = cmd->opaque;
	int r = nt_bounds(p, off, len), n = 0;

	if (r < 0)
		return r;
	if (mode != NT_MAP)
		return -EOPNOTSUPP;
	while (len) {
		size_t k = MIN(len, (size_t)4096);

		if (n == max)
			return -E2BIG;
		iov[n].iov_base = p->buf + off;
		iov[n].iov_len = k;
		n++;
		off += k;
		len -= k;
	}
	return n;
}

static const struct nvmeemu_data_ops nt_data_ops = {
	.get = nt_get,
	.put = nt_put,
	.map = nt_map,
};

static void nt_done(struct nvmeemu_cmd *cmd)
{
	struct nt_pending *p = cmd->opaque;

	if (p->in_submit)
		fail_msg("done() ran inside nvmeemu_cmd_submit");
	p->calls++;
	p->done = true;
}

static void nt_start_any(struct nt_pending *p, struct nvmeemu_ctrl *c, uint16_t qid,
			 const struct nt_sqe *sqe, void *buf, size_t len, int pipe_fd,
			 size_t plen, size_t room);

void nt_start(struct nt_pending *p, struct nvmeemu_ctrl *c, uint16_t qid,
	      const struct nt_sqe *sqe, void *buf, size_t len)
{
	nt_start_any(p, c, qid, sqe, buf, len, -1, 0, 0);
}

void nt_start_pipe(struct nt_pending *p, struct nvmeemu_ctrl *c, uint16_t qid,
		   const struct nt_sqe *sqe, void *buf, size_t len, int pipe_fd, size_t plen,
		   size_t room)
{
	nt_start_any(p, c, qid, sqe, buf, len, pipe_fd, plen, room);
}

static void nt_start_any(struct nt_pending *p, struct nvmeemu_ctrl *c, uint16_t qid,
			 const struct nt_sqe *sqe, void *buf, size_t len, int pipe_fd,
			 size_t plen, size_t room)
{
	tu_reactor();
	memset(p, 0, sizeof(*p));
	p->buf = buf;
	p->len = buf ? len : 0;
	p->in_submit = true;
	p->cmd.ctrl = c;
	p->cmd.qid = qid;
	memcpy(p->cmd.sqe, sqe->b, sizeof(sqe->b));
	p->cmd.data = buf ? &nt_data_ops : NULL;
	p->cmd.done = nt_done;
	p->cmd.opaque = p;
	/* Stale results must not survive. */
	memset(p->cmd.cqe, 0xee, sizeof(p->cmd.cqe));
	if (pipe_fd >= 0)
		nvmeemu_cmd_submit_pipe(&p->cmd, pipe_fd, plen, room);
	else
		nvmeemu_cmd_submit(&p->cmd);
	p->in_submit = false;
}

bool nt_poll(struct nt_pending *p)
{
	struct reactor *r = tu_reactor();

	for (int i = 0; i < 8 && !p->done; i++)
		reactor_run_once(r, false);
	return p->done;
}

uint16_t nt_wait(struct nt_pending *p, struct nt_result *res)
{
	struct reactor *r = tu_reactor();
	uint16_t st;

	assert_int_equal(reactor_run_until(r, &p->done), 0);
	/* One more pass: a second done() would show up here. */
	reactor_run_once(r, false);
	assert_int_equal(p->calls, 1);
	assert_int_equal(nvmeemu_cqe_cid(p->cmd.cqe), ds_get_le16(p->cmd.sqe + 2));
	assert_int_equal(ds_get_le16(p->cmd.cqe + 10), p->cmd.qid);
	assert_int_equal(ds_get_le16(p->cmd.cqe + 8), 0);       /* SQHD: the transport's */
	assert_int_equal(p->cmd.cqe[14] & 1, 0);                /* phase: the transport's */
	st = nvmeemu_cqe_status(p->cmd.cqe);
	assert_int_equal(st, p->cmd.status);
	if (res) {
		res->status = st;
		res->dw0 = nvmeemu_cqe_dw0(p->cmd.cqe);
		memcpy(res->cqe, p->cmd.cqe, sizeof(res->cqe));
	}
	return st;
}

uint16_t nt_run(struct nvmeemu_ctrl *c, uint16_t qid, const struct nt_sqe *sqe, void *buf,
		size_t len, struct nt_result *res)
{
	struct nt_pending p;

	nt_start(&p, c, qid, sqe, buf, len);
	return nt_wait(&p, res);
}

void nt_assert_status_at(uint16_t got, uint16_t want, const char *file, int line)
{
	if (got != want) {
		print_error("expected status %03x%s (%s), got %03x%s (%s)\n",
			    want & 0x7ff, want & NVMEEMU_DNR ? " DNR" : "", nvmeemu_status_str(want),
			    got & 0x7ff, got & NVMEEMU_DNR ? " DNR" : "", nvmeemu_status_str(got));
		_fail(file, line);
	}
}
