/* SPDX-License-Identifier: MIT */
/*
 * nvmetest.h: helpers for unit tests of the NVMe command core
 * (nvme_emul/): a subsystem over disks opened from specs, controllers,
 * submission entries built field by field, and a command run on the
 * calling thread's reactor with a data buffer behind the core's data
 * transfer callbacks, its completion entry checked and returned. Every
 * helper fails the running cmocka test on a set-up error.
 */
#ifndef DISKSTACK_TESTS_NVMETEST_H
#define DISKSTACK_TESTS_NVMETEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nvme_emul/nvme.h"

/* A submission entry under construction. */
struct nt_sqe {
	uint8_t b[NVMEEMU_SQE_BYTES];
};

/* An SQE with opcode @opc, NSID @nsid, CDW10..CDW15 and a fresh CID. */
struct nt_sqe nt_sqe(uint8_t opc, uint32_t nsid, uint32_t cdw10, uint32_t cdw11, uint32_t cdw12,
		     uint32_t cdw13, uint32_t cdw14, uint32_t cdw15);
/* Read (02h) / Write (01h) / Compare (05h) / Write Zeroes (08h) of @nlb
 * blocks at @slba, with CDW12 flag bits @flags (FUA bit 30, DEAC 25). */
struct nt_sqe nt_rw(uint8_t opc, uint32_t nsid, uint64_t slba, uint32_t nlb, uint32_t flags);

/* How the data transfer of the next commands behaves. */
enum nt_mode {
	NT_COPY = 0,            /* get/put only */
	NT_MAP,                 /* map offered (one iovec per 4 KiB of the buffer) */
	NT_FAULT,               /* every get/put/map fails with -EFAULT */
};
void nt_set_mode(enum nt_mode mode);

/* What a command ended with. */
struct nt_result {
	uint16_t status;        /* the status field, DNR included */
	uint32_t dw0;
	uint8_t cqe[NVMEEMU_CQE_BYTES];
};

/* A subsystem with @o (NULL: defaults); free with nvmeemu_subsys_free
 * after its controllers. */
struct nvmeemu_subsys *nt_subsys(const struct nvmeemu_subsys_opts *o);
/* Opens @spec (the storage grammar) and adds it as namespace @nsid.
 * Returns the disk: a reference the caller drops with disk_unref. */
struct disk *nt_add_ns(struct nvmeemu_subsys *s, uint32_t nsid, const char *spec);
/* A controller with ID @cntlid; @host 0: no host identifier, else a
 * 16-byte host identifier of bytes @host. Up to 8 I/O queues. */
struct nvmeemu_ctrl *nt_ctrl(struct nvmeemu_subsys *s, uint16_t cntlid, uint8_t host);

/* A command started and not yet waited for (an AER). */
struct nt_pending {
	struct nvmeemu_cmd cmd;
	uint8_t *buf;
	size_t len;
	bool in_submit, done;
	unsigned calls;
};
/* Starts @sqe on queue @qid of @c with @buf/@len as its data buffer. */
void nt_start(struct nt_pending *p, struct nvmeemu_ctrl *c, uint16_t qid,
	      const struct nt_sqe *sqe, void *buf, size_t len);
/* nt_start with a pipe offered for the data (nvme_emul/nvme_pipe.h:
 * @pipe_fd, @plen, @room as nvmeemu_cmd_submit_pipe takes them). */
void nt_start_pipe(struct nt_pending *p, struct nvmeemu_ctrl *c, uint16_t qid,
		   const struct nt_sqe *sqe, void *buf, size_t len, int pipe_fd, size_t plen,
		   size_t room);
/* Runs the reactor until @p completes; checks the CQE (CID, SQID, done
 * once and never inside submit) and fills @res (may be NULL). Returns the
 * status field. */
uint16_t nt_wait(struct nt_pending *p, struct nt_result *res);
/* Runs pending reactor work without blocking; true when @p completed. */
bool nt_poll(struct nt_pending *p);

/* nt_start + nt_wait. */
uint16_t nt_run(struct nvmeemu_ctrl *c, uint16_t qid, const struct nt_sqe *sqe, void *buf,
		size_t len, struct nt_result *res);

/* Asserts a status field (DNR included). */
#define nt_assert_status(got, want) nt_assert_status_at((got), (want), __FILE__, __LINE__)
void nt_assert_status_at(uint16_t got, uint16_t want, const char *file, int line);

#endif
