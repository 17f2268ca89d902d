/* SPDX-License-Identifier: MIT */
/*
 * nvme-pci-bench.c: 4 KiB random I/O at a queue depth through the NVMe
 * PCI function (nvme_emul/nvme_pci.h), with the in-process guest driver
 * of tests/unit/pciguest.h as the driver, on one thread (the "vCPU" and
 * the function's reactor share it, so CPU time is all the function's and
 * the disk's). For bench-nvme-pci.sh, which compares it with
 * `diskstack bench` on the same spec.
 *
 *   nvme-pci-bench SPEC randread|randwrite SECONDS QD [MIB]
 *
 * Prefills the first MIB (default 64) MiB sequentially, then runs; prints
 * one line: "ops N secs S cpu C iops I iops_per_core P".
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "common/endian.h"
#include "common/reactor.h"
#include "nvme_emul/nvme_pci.h"
#include "storage/disk.h"
#include "storage/spec.h"
#include "tests/unit/pciguest.h"

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double cpu_s(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static uint64_t xs(uint64_t *s)
{
	*s ^= *s >> 12, *s ^= *s << 25, *s ^= *s >> 27;
	return *s * 2685821657736338717ull;
}

/* Runs 4 KiB commands at @qd until @secs passed (or, with @seq, once
 * over [0, blocks)); returns the count. */
static uint64_t run(struct pg *g, uint8_t opc, unsigned qd, uint64_t blocks, double secs, bool seq,
		    const uint64_t *bufs)
{
	uint64_t rs = 0x9e3779b97f4a7c15ull, done = 0, next = 0, sub = 0;
	uint8_t sqe[64], cqe[16];
	double end = now_s() + secs;
	uint16_t cid_slot[65536];

	for (unsigned i = 0; i < qd && (!seq || next < blocks); i++) {
		uint64_t lba = seq ? next++ : xs(&rs) % blocks;
		uint16_t cid;

		pg_sqe(sqe, opc, 1, bufs[i], 0, (uint32_t)(lba * 8), (uint32_t)(lba * 8 >> 32), 7);
		cid = pg_push(g, 1, sqe);
		cid_slot[cid] = (uint16_t)i;
		sub++;
	}
	pg_ring(g, 1);
	while (done < sub) {
		bool any = false;
		unsigned reaped = 0;

		reactor_run_once(g->r, false);
		while (pg_reap(g, 1, cqe)) {
			unsigned slot = cid_slot[ds_get_le16(cqe + 12)];

			if (ds_get_le16(cqe + 14) >> 1) {
				fprintf(stderr, "nvme-pci-bench: status %#x\n", ds_get_le16(cqe + 14) >> 1);
				exit(1);
			}
			done++;
			reaped++;
			if (seq ? next < blocks : (done & 255) || now_s() < end) {
				uint64_t lba = seq ? next++ : xs(&rs) % blocks;
				uint16_t cid;

				pg_sqe(sqe, opc, 1, bufs[slot], 0, (uint32_t)(lba * 8),
				       (uint32_t)(lba * 8 >> 32), 7);
				cid = pg_push(g, 1, sqe);
				cid_slot[cid] = (uint16_t)slot;
				sub++;
				any = true;
			}
		}
		if (reaped)
			pg_cq_ring(g, 1);                 /* once per batch, as Linux does */
		if (any)
			pg_ring(g, 1);
	}
	return done;
}

int main(int argc, char **argv)
{
	struct nvmeemu_subsys_opts so = { 0 };
	struct nvmeemu_subsys *s;
	struct disk *d;
	struct reactor *r;
	struct pg g;
	char err[256];
	uint64_t bufs[256], blocks, ops;
	unsigned qd;
	double secs, t0, c0, t1, c1;
	bool wr;

	if (argc < 5) {
		fprintf(stderr, "usage: nvme-pci-bench SPEC randread|randwrite SECONDS QD [MIB]\n");
		return 2;
	}
	wr = !strcmp(argv[2], "randwrite");
	secs = atof(argv[3]);
	qd = (unsigned)atoi(argv[4]);
	blocks = (argc > 5 ? strtoull(argv[5], NULL, 0) : 64) * 256;
	if (!qd || qd > 128 || reactor_new(&r, 0) < 0)
		return 2;
	nvmeemu_pci_subsys_opts(&so, 0x1414);
	if (nvmeemu_subsys_new(&so, &s, err, sizeof(err)) < 0 ||
	    spec_open_str(argv[1], false, NULL, &d, err, sizeof(err)) < 0 ||
	    nvmeemu_subsys_add_ns(s, 1, d, err, sizeof(err)) < 0) {
		fprintf(stderr, "nvme-pci-bench: %s\n", err);
		return 1;
	}
	if (pg_new(&g, s, r, 64u << 20, 1) < 0 || pg_enable(&g, 32) < 0 ||
	    pg_create_queues(&g, 1, 2 * qd > 256 ? 256 : 2 * qd) < 0) {
		fprintf(stderr, "nvme-pci-bench: cannot bring the controller up\n");
		return 1;
	}
	for (unsigned i = 0; i < qd; i++) {
		bufs[i] = pg_alloc(&g, 1);
		memset(pg_ptr(&g, bufs[i]), (int)i + 1, 4096);
	}
	run(&g, 0x01, qd, blocks, 0, true, bufs);         /* prefill */
	t0 = now_s(), c0 = cpu_s();
	ops = run(&g, wr ? 0x01 : 0x02, qd, blocks, secs, false, bufs);
	t1 = now_s(), c1 = cpu_s();
	printf("ops %llu secs %.3f cpu %.3f iops %.0f iops_per_core %.0f\n", (unsigned long long)ops,
	       t1 - t0, c1 - c0, (double)ops / (t1 - t0), (double)ops / (c1 - c0));
	pg_disable(&g);
	pg_free(&g);
	nvmeemu_subsys_free(s);
	disk_unref(d);
	reactor_free(r);
	return 0;
}
