/* SPDX-License-Identifier: MIT */
/*
 * diskemu-embed.c: a minimal VMM embedding libdiskemu's NVMe PCI function
 * through the installed API only (docs/nvme.md, "Embedding"); built by
 * test-diskemu-install.sh with `cc diskemu-embed.c $(pkg-config --cflags
 * --libs diskemu)` against a `make install DESTDIR=...` tree.
 *
 *   diskemu-embed SPEC
 *
 * Plays the guest's NVMe driver from the main thread (the "vCPU"): sizes
 * and enables the function, sets MSI-X up, enables the controller
 * (NVMe Base spec 2.0 §3.5.1), runs Identify Controller and Namespace,
 * creates one I/O queue pair, writes 4 KiB at LBA 0 and reads it back.
 * Guest memory is a calloc'd 1 MiB; a lock stands for what a VMM's
 * memory model gives (the function writes queue entries from its reactor
 * thread while the driver polls them).
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <diskemu/diskemu.h>

#define MEM_BYTES (1u << 20)
#define QSIZE 16u
/* Guest physical addresses: one 4 KiB page each. */
#define ASQ 0x1000u
#define ACQ 0x2000u
#define IOSQ 0x3000u
#define IOCQ 0x4000u
#define IDBUF 0x5000u
#define WBUF 0x6000u
#define RBUF 0x7000u

struct guest {
	uint8_t *mem;
	pthread_mutex_t lock;
	atomic_uint msis;
	struct nvmeemu_pci *p;
	uint16_t sq_tail[2], cq_head[2], phase[2], cid;
};

static int guest_mem_read(void *opaque, uint64_t gpa, void *buf, size_t len)
{
	struct guest *g = opaque;

	if (gpa > MEM_BYTES || len > MEM_BYTES - gpa)
		return -EFAULT;                 /* not guest RAM: an error, never a fault */
	pthread_mutex_lock(&g->lock);
	memcpy(buf, g->mem + gpa, len);
	pthread_mutex_unlock(&g->lock);
	return 0;
}

static int guest_mem_write(void *opaque, uint64_t gpa, const void *buf, size_t len)
{
	struct guest *g = opaque;

	if (gpa > MEM_BYTES || len > MEM_BYTES - gpa)
		return -EFAULT;
	pthread_mutex_lock(&g->lock);
	memcpy(g->mem + gpa, buf, len);
	pthread_mutex_unlock(&g->lock);
	return 0;
}

static void guest_msi(void *opaque, uint64_t addr, uint32_t data)
{
	struct guest *g = opaque;

	(void)addr, (void)data;
	atomic_fetch_add(&g->msis, 1);
}

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le(const uint8_t *p, int n)
{
	uint64_t v = 0;

	for (int i = n - 1; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static uint32_t reg_read(struct guest *g, unsigned off)
{
	uint64_t v = 0;

	nvmeemu_pci_mmio_read(g->p, 0, off, 4, &v);
	return (uint32_t)v;
}

static void reg_write(struct guest *g, unsigned off, uint32_t v)
{
	nvmeemu_pci_mmio_write(g->p, 0, off, 4, v);
}

static void pause_us(long us)
{
	nanosleep(&(struct timespec){ .tv_nsec = us * 1000 }, NULL);
}

static int wait_rdy(struct guest *g, uint32_t want)
{
	for (int i = 0; i < 100000; i++) {
		if ((reg_read(g, 0x1c) & 1) == want)
			return 0;
		pause_us(100);
	}
	return -ETIMEDOUT;
}

/* Runs one command on queue @q (0: admin) and returns its status field
 * (0: success), or -ETIMEDOUT. */
static int run_cmd(struct guest *g, unsigned q, uint8_t opc, uint32_t nsid, uint64_t prp1,
		   uint32_t cdw10, uint32_t cdw11, uint32_t cdw12)
{
	uint64_t sq = q ? IOSQ : ASQ, cq = q ? IOCQ : ACQ;
	uint8_t sqe[64] = { opc }, cqe[16];
	uint16_t cid = g->cid++;

	sqe[2] = (uint8_t)cid, sqe[3] = (uint8_t)(cid >> 8);
	put32(sqe + 4, nsid);
	put32(sqe + 24, (uint32_t)prp1), put32(sqe + 28, (uint32_t)(prp1 >> 32));
	put32(sqe + 40, cdw10), put32(sqe + 44, cdw11), put32(sqe + 48, cdw12);
	guest_mem_write(g, sq + g->sq_tail[q] * 64u, sqe, sizeof(sqe));
	g->sq_tail[q] = (uint16_t)((g->sq_tail[q] + 1) % QSIZE);
	reg_write(g, 0x1000 + 8 * q, g->sq_tail[q]);    /* the SQ tail doorbell */
	for (int i = 0; i < 100000; i++) {
		guest_mem_read(g, cq + g->cq_head[q] * 16u, cqe, sizeof(cqe));
		if ((cqe[14] & 1) == g->phase[q]) {
			if (++g->cq_head[q] == QSIZE)
				g->cq_head[q] = 0, g->phase[q] ^= 1;
			reg_write(g, 0x1004 + 8 * q, g->cq_head[q]);
			if (get_le(cqe + 12, 2) != cid)
				return -EPROTO;
			return (int)(get_le(cqe + 14, 2) >> 1);
		}
		pause_us(100);
	}
	return -ETIMEDOUT;
}

static int fail(const char *what, int st)
{
	fprintf(stderr, "diskemu-embed: %s: %d\n", what, st);
	return 1;
}

int main(int argc, char **argv)
{
	struct guest g = { .phase = { 1, 1 } };
	struct nvmeemu_subsys_opts so = { 0 };   /* nvmeemu_pci_subsys_opts sets only its own fields */
	struct nvmeemu_subsys *s;
	struct diskemu_thread *t;
	struct reactor *r;
	struct disk *d;
	char err[256];
	uint8_t id[4096], wbuf[4096], rbuf[4096];
	uint32_t lba_bytes;
	int st;

	if (argc != 2) {
		fprintf(stderr, "usage: diskemu-embed SPEC\n");
		return 2;
	}
	printf("libdiskemu %s\n", diskemu_version());
	g.mem = calloc(1, MEM_BYTES);
	pthread_mutex_init(&g.lock, NULL);
	if (!g.mem)
		return fail("calloc", -ENOMEM);

	/* The subsystem, its namespace 1 on the disk, one queue thread. */
	nvmeemu_pci_subsys_opts(&so, 0x1414);
	if (nvmeemu_subsys_new(&so, &s, err, sizeof(err)) < 0 ||
	    diskemu_disk_open(argv[1], false, &d, err, sizeof(err)) < 0 ||
	    nvmeemu_subsys_add_ns(s, 1, d, err, sizeof(err)) < 0) {
		fprintf(stderr, "diskemu-embed: %s\n", err);
		return 1;
	}
	if ((st = diskemu_thread_start(&t)) < 0)
		return fail("diskemu_thread_start", st);
	r = diskemu_thread_reactor(t);
	struct nvmeemu_pci_host host = { .mem_read = guest_mem_read, .mem_write = guest_mem_write,
					 .msi = guest_msi, .opaque = &g };
	struct nvmeemu_pci_opts po = { .max_io_queues = 1, .reactors = &r, .nr_reactors = 1 };
	if (nvmeemu_pci_new(s, &host, &po, &g.p, err, sizeof(err)) < 0) {
		fprintf(stderr, "diskemu-embed: %s\n", err);
		return 1;
	}

	/* Config space: BAR0 and BAR4 placed, memory space and bus master
	 * on, two MSI-X vectors, MSI-X enabled. */
	nvmeemu_pci_cfg_write(g.p, 0x10, 4, 0xf0000000u);
	nvmeemu_pci_cfg_write(g.p, 0x20, 4, 0xf0004000u);
	nvmeemu_pci_cfg_write(g.p, 0x04, 2, 0x6);
	for (unsigned v = 0; v < 2; v++) {
		nvmeemu_pci_mmio_write(g.p, 4, v * 16, 4, 0xfee00000u);
		nvmeemu_pci_mmio_write(g.p, 4, v * 16 + 8, 4, v);
		nvmeemu_pci_mmio_write(g.p, 4, v * 16 + 12, 4, 0);
	}
	nvmeemu_pci_cfg_write(g.p, 0x42, 2, 0x8000);

	/* Controller enable: admin queues, then CC (IOSQES 6, IOCQES 4, EN). */
	reg_write(&g, 0x14, 0);
	if ((st = wait_rdy(&g, 0)) < 0)
		return fail("CSTS.RDY 0", st);
	reg_write(&g, 0x24, (QSIZE - 1) << 16 | (QSIZE - 1));
	reg_write(&g, 0x28, ASQ), reg_write(&g, 0x2c, 0);
	reg_write(&g, 0x30, ACQ), reg_write(&g, 0x34, 0);
	reg_write(&g, 0x14, 0x00460001);
	if ((st = wait_rdy(&g, 1)) < 0)
		return fail("CSTS.RDY 1", st);

	/* Identify Controller (CNS 1) and Namespace 1 (CNS 0). */
	if ((st = run_cmd(&g, 0, 0x06, 0, IDBUF, 1, 0, 0)) != 0)
		return fail("Identify Controller", st);
	guest_mem_read(&g, IDBUF, id, sizeof(id));
	printf("model '%.40s' serial '%.20s'\n", (char *)id + 24, (char *)id + 4);
	if ((st = run_cmd(&g, 0, 0x06, 1, IDBUF, 0, 0, 0)) != 0)
		return fail("Identify Namespace", st);
	guest_mem_read(&g, IDBUF, id, sizeof(id));
	lba_bytes = 1u << id[128 + 4 * (id[26] & 0xf) + 2];
	printf("namespace 1: %llu blocks of %u bytes\n", (unsigned long long)get_le(id, 8), lba_bytes);
	if (get_le(id, 8) * lba_bytes != diskemu_disk_bytes(d) || lba_bytes > sizeof(wbuf))
		return fail("namespace size", -EINVAL);

	/* One I/O queue pair: Number of Queues, then CQ 1 (vector 1) and SQ 1. */
	if ((st = run_cmd(&g, 0, 0x09, 0, 0, 0x07, 0, 0)) != 0 ||
	    (st = run_cmd(&g, 0, 0x05, 0, IOCQ, (QSIZE - 1) << 16 | 1, 1u << 16 | 3, 0)) != 0 ||
	    (st = run_cmd(&g, 0, 0x01, 0, IOSQ, (QSIZE - 1) << 16 | 1, 1u << 16 | 1, 0)) != 0)
		return fail("I/O queue creation", st);

	/* Write 4 KiB at LBA 0, read them back (NLB is 0-based). */
	for (size_t i = 0; i < sizeof(wbuf); i++)
		wbuf[i] = (uint8_t)(i * 7 + 1);
	guest_mem_write(&g, WBUF, wbuf, sizeof(wbuf));
	if ((st = run_cmd(&g, 1, 0x01, 1, WBUF, 0, 0, sizeof(wbuf) / lba_bytes - 1)) != 0)
		return fail("Write", st);
	if ((st = run_cmd(&g, 1, 0x02, 1, RBUF, 0, 0, sizeof(rbuf) / lba_bytes - 1)) != 0)
		return fail("Read", st);
	guest_mem_read(&g, RBUF, rbuf, sizeof(rbuf));
	if (memcmp(wbuf, rbuf, sizeof(wbuf)))
		return fail("read back differs", -EIO);
	printf("write + read of 4096 bytes: ok; MSI-X messages: %u\n", atomic_load(&g.msis));
	if (!atomic_load(&g.msis))
		return fail("no MSI-X message", -EIO);

	/* Shutdown: disable, then free in the order diskemu.h gives. */
	reg_write(&g, 0x14, reg_read(&g, 0x14) & ~1u);
	if ((st = wait_rdy(&g, 0)) < 0)
		return fail("disable", st);
	nvmeemu_pci_free(g.p);
	nvmeemu_subsys_free(s);
	diskemu_thread_stop(t);
	diskemu_disk_unref(d);
	pthread_mutex_destroy(&g.lock);
	free(g.mem);
	printf("ok\n");
	return 0;
}
