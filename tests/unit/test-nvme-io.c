/* SPDX-License-Identifier: MIT */
/*
 * test-nvme-io.c: the NVM commands of the NVMe command core through
 * nvmetest.h, over mem:, file: and memdiff: namespaces and a mock disk
 * that counts what reaches it: Read and Write with both data paths
 * (get/put through a bounce buffer, and the transport's map), FUA,
 * Read and Write through a pipe (nvme_pipe.h),
 * Flush, Write Zeroes with and without DEAC, Dataset Management,
 * Compare, and every error path (namespace, range, MDTS, read-only, data
 * transfer, FUSE, opcodes the core refuses). Expectations come from the
 * NVM Command Set Specification 1.0.
 */
#include "config.h"

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "common/endian.h"
#include "nvme_emul/nvme.h"
#include "nvme_emul/nvme_pipe.h"
#include "storage/disk.h"
#include "storage/layered.h"
#include "tests/unit/mockdisk.h"
#include "tests/unit/nvmetest.h"
#include "tests/unit/testutil.h"

#define DNR NVMEEMU_DNR
enum { FLUSH = 0x00, WRITE = 0x01, READ = 0x02, WUNC = 0x04, COMPARE = 0x05, WZ = 0x08, DSM = 0x09 };
#define FUA (1u << 30)
#define DEAC (1u << 25)

struct fix {
	struct nvmeemu_subsys *s;
	struct nvmeemu_ctrl *c;
	struct disk *d;
};

static void fix_open(struct fix *f, const char *spec)
{
	f->s = nt_subsys(NULL);
	f->d = nt_add_ns(f->s, 1, spec);
	f->c = nt_ctrl(f->s, 1, 0);
}

/* fix_open over the disk @d (the fixture takes the reference). */
static void fix_open_disk(struct fix *f, struct disk *d)
{
	char err[128];

	f->s = nt_subsys(NULL);
	assert_int_equal(nvmeemu_subsys_add_ns(f->s, 1, d, err, sizeof(err)), 0);
	f->c = nt_ctrl(f->s, 1, 0);
	f->d = d;
}

static void fix_close(struct fix *f)
{
	nvmeemu_ctrl_free(f->c);
	nvmeemu_subsys_free(f->s);
	disk_unref(f->d);
	nt_set_mode(NT_COPY);
}

static uint16_t io(struct fix *f, uint8_t opc, uint64_t slba, uint32_t nlb, uint32_t flags,
		   void *buf, size_t len)
{
	struct nt_sqe q = nt_rw(opc, 1, slba, nlb, flags);

	return nt_run(f->c, 1, &q, buf, len, NULL);
}

/* Writes, reads back and compares 64 KiB at a few places, through the
 * data path @mode. */
static void roundtrip(const char *spec, enum nt_mode mode)
{
	static uint8_t w[65536], r[65536];
	struct fix f;

	fix_open(&f, spec);
	nt_set_mode(mode);
	for (uint64_t lba = 0; lba < 1024; lba += 333) {
		tu_fill(w, sizeof(w), lba + 1, lba * 512);
		nt_assert_status(io(&f, WRITE, lba, 128, 0, w, sizeof(w)), 0);
		memset(r, 0, sizeof(r));
		nt_assert_status(io(&f, READ, lba, 128, 0, r, sizeof(r)), 0);
		assert_int_equal(tu_check(r, sizeof(r), lba + 1, lba * 512), -1);
		nt_assert_status(io(&f, COMPARE, lba, 128, 0, w, sizeof(w)), 0);
	}
	fix_close(&f);
}

static void test_nvme_io_rw_mem(void **state)
{
	(void)state;
	roundtrip("mem:1M", NT_COPY);
	roundtrip("mem:1M", NT_MAP);
}

static void test_nvme_io_rw_file(void **state)
{
	char spec[512];

	(void)state;
	snprintf(spec, sizeof(spec), "file:%s;create=1M", tu_path("nvme-io.img"));
	roundtrip(spec, NT_COPY);
	roundtrip(spec, NT_MAP);
}

/* Read and Write through a pipe (nvme_emul/nvme_pipe.h): on a file the
 * data goes between the disk and the pipe and never through the data
 * transfer (a FUA Write too: its data lands, not an empty request); on mem: (no pipes) a Read uses the transfer and a Write
 * takes its data out of the pipe; a Read that does not fit the pipe
 * (counted in whole pages) uses memory; a Write with fewer bytes in the
 * pipe than its blocks fails Data SGL Length Invalid; a Write with more
 * takes its own from the front. */
static void pipe_case(const char *spec, bool file)
{
	static uint8_t w[65536], r[65536];
	struct fix f;
	struct nt_pending p;
	int fds[2];
	int held = 0;

	fix_open(&f, spec);
	assert_int_equal(pipe(fds), 0);
	assert_true(fcntl(fds[1], F_SETPIPE_SZ, 65536) >= 65536);
	/* Write 64 KiB at LBA 8 from the pipe. */
	tu_fill(w, sizeof(w), 77, 0);
	assert_int_equal(write(fds[1], w, sizeof(w)), (ssize_t)sizeof(w));
	{
		struct nt_sqe q = nt_rw(WRITE, 1, 8, 128, FUA);

		nt_start_pipe(&p, f.c, 1, &q, NULL, 0, fds[0], sizeof(w), 0);
		nt_assert_status(nt_wait(&p, NULL), 0);
		assert_int_equal(nvmeemu_cmd_piped(&p.cmd), sizeof(w));
	}
	assert_int_equal(ioctl(fds[0], FIONREAD, &held), 0);
	assert_int_equal(held, 0);
	memset(r, 0, sizeof(r));
	nt_assert_status(io(&f, READ, 8, 128, 0, r, sizeof(r)), 0);
	assert_memory_equal(r, w, sizeof(r));
	/* Read 64 KiB from LBA 8: into the pipe on a file (the page-aligned
	 * 64 KiB fits a 64 KiB pipe), through the buffer on mem:. */
	{
		struct nt_sqe q = nt_rw(READ, 1, 8, 128, 0);

		memset(r, 0, sizeof(r));
		nt_start_pipe(&p, f.c, 1, &q, r, sizeof(r), fds[1], sizeof(r), 65536);
		nt_assert_status(nt_wait(&p, NULL), 0);
		if (file) {
			assert_int_equal(nvmeemu_cmd_piped(&p.cmd), sizeof(r));
			assert_int_equal(read(fds[0], r, sizeof(r)), (ssize_t)sizeof(r));
		} else {
			assert_int_equal(nvmeemu_cmd_piped(&p.cmd), 0);
		}
		assert_memory_equal(r, w, sizeof(r));
	}
	/* Not page-aligned (LBA 9): 64 KiB spans 17 pages, more than the
	 * pipe holds: memory. */
	{
		struct nt_sqe q = nt_rw(READ, 1, 9, 128, 0);

		nt_start_pipe(&p, f.c, 1, &q, r, sizeof(r), fds[1], sizeof(r), 65536);
		nt_assert_status(nt_wait(&p, NULL), 0);
		assert_int_equal(nvmeemu_cmd_piped(&p.cmd), 0);
		assert_memory_equal(r, w + 512, sizeof(r) - 512);
	}
	/* More blocks than the host's buffer takes: refused as in memory,
	 * nothing in the pipe. */
	{
		struct nt_sqe q = nt_rw(READ, 1, 8, 128, 0);

		nt_start_pipe(&p, f.c, 1, &q, r, 4096, fds[1], 4096, 65536);
		nt_assert_status(nt_wait(&p, NULL), NVMEEMU_SGL_LENGTH_INVALID | DNR);
		assert_int_equal(nvmeemu_cmd_piped(&p.cmd), 0);
		assert_int_equal(ioctl(fds[0], FIONREAD, &held), 0);
		assert_int_equal(held, 0);
	}
	/* Too few bytes for the blocks: refused, the pipe untouched. */
	assert_int_equal(write(fds[1], w, 4096), 4096);
	{
		struct nt_sqe q = nt_rw(WRITE, 1, 64, 16, 0);

		nt_start_pipe(&p, f.c, 1, &q, NULL, 0, fds[0], 4096, 0);
		nt_assert_status(nt_wait(&p, NULL), NVMEEMU_SGL_LENGTH_INVALID | DNR);
		assert_int_equal(nvmeemu_cmd_piped(&p.cmd), 0);
	}
	/* More than the blocks: the first 4 KiB of the pipe's bytes. */
	{
		struct nt_sqe q = nt_rw(WRITE, 1, 64, 4, 0);

		nt_start_pipe(&p, f.c, 1, &q, NULL, 0, fds[0], 4096, 0);
		nt_assert_status(nt_wait(&p, NULL), 0);
		nt_assert_status(io(&f, READ, 64, 4, 0, r, 2048), 0);
		assert_memory_equal(r, w, 2048);
	}
	close(fds[0]);
	close(fds[1]);
	fix_close(&f);
}

static void test_nvme_io_pipe(void **state)
{
	char spec[512];

	(void)state;
	snprintf(spec, sizeof(spec), "file:%s;create=1M", tu_path("nvme-pipe.img"));
	pipe_case(spec, true);
	pipe_case("mem:1M", false);
}

static void test_nvme_io_rw_memdiff(void **state)
{
	(void)state;
	roundtrip("memdiff:mem:1M", NT_MAP);
}

static void test_nvme_io_errors(void **state)
{
	struct fix f;
	uint8_t buf[8192] = { 0 };
	struct nt_sqe q;

	(void)state;
	fix_open(&f, "mem:1M");
	/* The range: past the end, and slba + nlb wrapping. */
	nt_assert_status(io(&f, READ, 2047, 2, 0, buf, 1024), NVMEEMU_LBA_RANGE | DNR);
	nt_assert_status(io(&f, WRITE, UINT64_MAX, 1, 0, buf, 512), NVMEEMU_LBA_RANGE | DNR);
	nt_assert_status(io(&f, WZ, 2040, 9, 0, NULL, 0), NVMEEMU_LBA_RANGE | DNR);
	nt_assert_status(io(&f, READ, 2047, 1, 0, buf, 512), 0);
	/* MDTS (256 KiB): 513 blocks of 512 bytes is one too many. */
	nt_assert_status(io(&f, READ, 0, 513, 0, buf, sizeof(buf)), NVMEEMU_INVALID_FIELD | DNR);
	/* Namespaces: absent, zero, broadcast. */
	q = nt_rw(READ, 2, 0, 1, 0);
	nt_assert_status(nt_run(f.c, 1, &q, buf, 512, NULL), NVMEEMU_INVALID_NS | DNR);
	q = nt_rw(READ, 0xffffffff, 0, 1, 0);
	nt_assert_status(nt_run(f.c, 1, &q, buf, 512, NULL), NVMEEMU_INVALID_NS | DNR);
	q = nt_rw(FLUSH, 0xffffffff, 0, 1, 0);
	nt_assert_status(nt_run(f.c, 1, &q, NULL, 0, NULL), NVMEEMU_INVALID_NS | DNR);
	/* Data: the host's buffer is short, absent, or faults. */
	nt_assert_status(io(&f, WRITE, 0, 2, 0, buf, 512), NVMEEMU_SGL_LENGTH_INVALID | DNR);
	nt_assert_status(io(&f, READ, 0, 1, 0, NULL, 0), NVMEEMU_SGL_LENGTH_INVALID | DNR);
	nt_set_mode(NT_FAULT);
	nt_assert_status(io(&f, READ, 0, 1, 0, buf, 512), NVMEEMU_DATA_XFER_ERROR);
	nt_assert_status(io(&f, WRITE, 0, 1, 0, buf, 512), NVMEEMU_DATA_XFER_ERROR);
	nt_set_mode(NT_COPY);
	/* Write Uncorrectable, Verify, a vendor opcode: not here. */
	nt_assert_status(io(&f, WUNC, 0, 1, 0, NULL, 0), NVMEEMU_INVALID_OPCODE | DNR);
	nt_assert_status(io(&f, 0x0C, 0, 1, 0, NULL, 0), NVMEEMU_INVALID_OPCODE | DNR);
	nt_assert_status(io(&f, 0x81, 0, 1, 0, NULL, 0), NVMEEMU_INVALID_OPCODE | DNR);
	/* Fused operations are not supported. */
	q = nt_rw(READ, 1, 0, 1, 0);
	q.b[1] = 1;
	nt_assert_status(nt_run(f.c, 1, &q, buf, 512, NULL), NVMEEMU_INVALID_FIELD | DNR);
	/* Admin opcodes of the transport never reach the core's handlers. */
	q = nt_sqe(0x01, 0, 0, 0, 0, 0, 0, 0);
	nt_assert_status(nt_run(f.c, 0, &q, NULL, 0, NULL), NVMEEMU_INVALID_OPCODE | DNR);
	q = nt_sqe(0x7F, 0, 0, 0, 0, 0, 0, 0);
	nt_assert_status(nt_run(f.c, 0, &q, NULL, 0, NULL), NVMEEMU_INVALID_OPCODE | DNR);
	fix_close(&f);
}

static void test_nvme_io_read_only(void **state)
{
	struct fix f;
	uint8_t buf[512] = { 0 }, range[16] = { 0 };
	struct nt_sqe q;

	(void)state;
	fix_open(&f, "mem:1M,ro");
	nt_assert_status(io(&f, WRITE, 0, 1, 0, buf, 512), NVMEEMU_WRITE_TO_RO | DNR);
	nt_assert_status(io(&f, WZ, 0, 1, 0, NULL, 0), NVMEEMU_WRITE_TO_RO | DNR);
	ds_put_le32(range + 4, 1);
	q = nt_sqe(DSM, 1, 0, 1u << 2, 0, 0, 0, 0);
	nt_assert_status(nt_run(f.c, 1, &q, range, sizeof(range), NULL), NVMEEMU_WRITE_TO_RO | DNR);
	nt_assert_status(io(&f, READ, 0, 1, 0, buf, 512), 0);
	nt_assert_status(io(&f, FLUSH, 0, 1, 0, NULL, 0), 0);
	fix_close(&f);
}

/* FUA reaches the disk as DISK_IO_FUA; Flush as a flush; Write Zeroes
 * deallocates only with DEAC. */
static void test_nvme_io_mock_flags(void **state)
{
	struct mockdisk m = { .unmap_zeroes = true };
	struct disk *d = mockdisk_new(&m, &(struct mockdisk_opts){
		.sectors = 256, .fua = true, .unmap = DISK_UNMAP_ZEROES,
		.caps = DISK_CAP_VOLATILE_CACHE });
	struct fix f;
	uint8_t buf[4096];
	unsigned writes;

	(void)state;
	fix_open_disk(&f, d);
	memset(buf, 0x5a, sizeof(buf));
	nt_assert_status(io(&f, WRITE, 0, 8, FUA, buf, sizeof(buf)), 0);
	assert_int_equal(m.fua_writes, 1);
	nt_assert_status(io(&f, WRITE, 8, 8, 0, buf, sizeof(buf)), 0);
	assert_int_equal(m.fua_writes, 1);
	nt_assert_status(io(&f, FLUSH, 0, 1, 0, NULL, 0), 0);
	assert_int_equal(m.flushes, 1);
	/* Write Zeroes without DEAC must allocate: written zeroes. */
	writes = m.writes;
	nt_assert_status(io(&f, WZ, 0, 8, 0, NULL, 0), 0);
	assert_int_equal(m.unmaps, 0);
	assert_true(m.writes > writes);
	assert_true(tu_is_zero(m.data, 4096));
	/* With DEAC, on a disk whose unmapped blocks read as zeroes: unmap. */
	nt_assert_status(io(&f, WZ, 8, 8, DEAC, NULL, 0), 0);
	assert_int_equal(m.unmaps, 1);
	assert_true(tu_is_zero(m.data + 4096, 4096));
	fix_close(&f);
	mockdisk_release(&m);
}

static void test_nvme_io_dsm(void **state)
{
	struct mockdisk m = { .unmap_zeroes = true };
	struct disk *d = mockdisk_new(&m, &(struct mockdisk_opts){
		.sectors = 256, .unmap = DISK_UNMAP_ZEROES });
	struct fix f;
	uint8_t ranges[3 * 16] = { 0 }, buf[512];
	struct nt_sqe q;

	(void)state;
	fix_open_disk(&f, d);
	memset(buf, 0x77, sizeof(buf));
	nt_assert_status(io(&f, WRITE, 10, 1, 0, buf, sizeof(buf)), 0);
	/* Three ranges, the middle one empty. */
	ds_put_le32(ranges + 4, 4);
	ds_put_le64(ranges + 8, 8);
	ds_put_le32(ranges + 16 + 4, 0);
	ds_put_le32(ranges + 32 + 4, 2);
	ds_put_le64(ranges + 32 + 8, 100);
	q = nt_sqe(DSM, 1, 2, 1u << 2, 0, 0, 0, 0);
	nt_assert_status(nt_run(f.c, 1, &q, ranges, sizeof(ranges), NULL), 0);
	assert_int_equal(m.unmaps, 2);
	assert_true(tu_is_zero(m.data + 10 * 512, 512));
	/* Without AD: a hint, nothing happens. */
	q = nt_sqe(DSM, 1, 2, 1u << 0, 0, 0, 0, 0);
	nt_assert_status(nt_run(f.c, 1, &q, ranges, sizeof(ranges), NULL), 0);
	assert_int_equal(m.unmaps, 2);
	/* A range past the end changes nothing, not even the good ones. */
	ds_put_le64(ranges + 32 + 8, 255);
	q = nt_sqe(DSM, 1, 2, 1u << 2, 0, 0, 0, 0);
	nt_assert_status(nt_run(f.c, 1, &q, ranges, sizeof(ranges), NULL), NVMEEMU_LBA_RANGE | DNR);
	assert_int_equal(m.unmaps, 2);
	/* The range list is short. */
	nt_assert_status(nt_run(f.c, 1, &q, ranges, 20, NULL), NVMEEMU_SGL_LENGTH_INVALID | DNR);
	fix_close(&f);
	mockdisk_release(&m);
}

static void test_nvme_io_compare(void **state)
{
	struct fix f;
	uint8_t w[2048], h[2048];

	(void)state;
	fix_open(&f, "mem:1M");
	tu_fill(w, sizeof(w), 9, 0);
	nt_assert_status(io(&f, WRITE, 4, 4, 0, w, sizeof(w)), 0);
	memcpy(h, w, sizeof(h));
	nt_assert_status(io(&f, COMPARE, 4, 4, 0, h, sizeof(h)), 0);
	h[1500] ^= 1;
	nt_assert_status(io(&f, COMPARE, 4, 4, 0, h, sizeof(h)), NVMEEMU_COMPARE_FAILURE | DNR);
	nt_assert_status(io(&f, COMPARE, 2046, 4, 0, h, sizeof(h)), NVMEEMU_LBA_RANGE | DNR);
	fix_close(&f);
}

/* A 4096-byte-sector namespace: LBADS 12, and blocks are 4 KiB. */
static void test_nvme_io_4k(void **state)
{
	struct fix f;
	uint8_t w[8192], r[8192], id[4096];
	struct nt_sqe q = nt_sqe(0x06, 1, 0, 0, 0, 0, 0, 0);

	char err[128];

	(void)state;
	assert_int_equal(ramdisk_new(1 << 20, 4096, false, &f.d, err, sizeof(err)), 0);
	fix_open_disk(&f, f.d);
	nt_assert_status(nt_run(f.c, 0, &q, id, sizeof(id), NULL), 0);
	assert_int_equal(id[128 + 2], 12);
	assert_int_equal(ds_get_le64(id), 256);
	tu_fill(w, sizeof(w), 3, 0);
	nt_assert_status(io(&f, WRITE, 10, 2, 0, w, sizeof(w)), 0);
	nt_assert_status(io(&f, READ, 10, 2, 0, r, sizeof(r)), 0);
	assert_memory_equal(w, r, sizeof(w));
	fix_close(&f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_nvme_io_rw_mem),
		cmocka_unit_test(test_nvme_io_rw_file),
		cmocka_unit_test(test_nvme_io_rw_memdiff),
		cmocka_unit_test(test_nvme_io_pipe),
		cmocka_unit_test(test_nvme_io_errors),
		cmocka_unit_test(test_nvme_io_read_only),
		cmocka_unit_test(test_nvme_io_mock_flags),
		cmocka_unit_test(test_nvme_io_dsm),
		cmocka_unit_test(test_nvme_io_compare),
		cmocka_unit_test(test_nvme_io_4k),
	};

	return cmocka_run_group_tests(tests, tu_reactor_setup, tu_reactor_teardown);
}
