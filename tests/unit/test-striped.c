/* SPDX-License-Identifier: MIT */
/*
 * test-striped.c: the striped disk (storage/striped.c).
 *
 * - The contract suites on striped sets of RAM disks at 512 and 4096 bytes
 *   per sector, and through the spec parser.
 * - docs/openvmm-compat.md §7.3: integrity at the start, middle and end
 *   with aligned and unaligned (odd addresses, ragged iovec lists) buffers
 *   for 2 x 128 KiB / 4 KiB chunks, 4 x 1 MiB / 128 KiB and 32 x 1 MiB /
 *   64 KiB, checked through the striped disk and on every member at the
 *   LBA §4.8's mapping gives;
 *   the rejected configurations; one sector past the end; the unmap cases;
 *   no wrap-around near u64 max.
 * - Unmap merging (one range per member, exactly the requested sectors
 *   zeroed), metadata folds, flush/eject fan-out, no PR and no resize
 *   watch, concurrency of the pieces, error flattening after every piece
 *   has completed, and a seeded random-operation oracle.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/compiler.h"
#include "storage/spec.h"
#include "storage/decorators/striped.h"
#include "tests/unit/contract.h"
#include "tests/unit/mockdisk.h"
#include "tests/unit/testutil.h"

#define KiB 1024ull
#define MiB (1024ull * 1024)

/* ---- helpers -------------------------------------------------------------------- */

struct set {
	struct disk *d;            /* the striped disk */
	struct disk *m[64];        /* our own reference to each member */
	unsigned n;
	uint64_t spc;
	uint32_t ss;
};

static struct disk *ram(uint64_t bytes, uint32_t ss)
{
	struct disk *d;
	char err[256];

	if (ramdisk_new(bytes, ss, false, &d, err, sizeof(err)) < 0)
		fail_msg("ramdisk_new: %s", err);
	return d;
}

static void set_open(struct set *s, unsigned n, uint64_t member_bytes, uint64_t chunk, uint32_t ss)
{
	char err[256];

	assert_true(n <= ARRAY_SIZE(s->m));
	memset(s, 0, sizeof(*s));
	s->n = n;
	s->ss = ss;
	s->spc = chunk / ss;
	for (unsigned i = 0; i < n; i++)
		s->m[i] = ram(member_bytes, ss);
	for (unsigned i = 0; i < n; i++)
		disk_ref(s->m[i]);
	if (striped_new(s->m, n, chunk, 0, &s->d, err, sizeof(err)) < 0)
		fail_msg("striped_new: %s", err);
}

static void set_close(struct set *s)
{
	disk_unref(s->d);
	for (unsigned i = 0; i < s->n; i++)
		disk_unref(s->m[i]);
}

/* §4.8's mapping, written out again. */
static void map(const struct set *s, uint64_t lba, unsigned *member, uint64_t *mlba)
{
	uint64_t chunk = lba / s->spc;

	*member = (unsigned)(chunk % s->n);
	*mlba = chunk / s->n * s->spc + lba % s->spc;
}

/* Builds a ragged iovec list over @buf (@len bytes): odd entry sizes. */
static int ragged(uint8_t *buf, size_t len, struct iovec *iov, int max)
{
	static const size_t sizes[] = { 1, 511, 700, 3001, 64, 4096, 9, 12345 };

	return tu_split_iov_sizes(buf, len, sizes, ARRAY_SIZE(sizes), iov, max);
}

static int rw_iov(struct disk *d, enum disk_op op, uint64_t lba, struct iovec *iov, int n)
{
	struct disk_io io = { .op = op, .sector = lba, .iov = iov, .iovcnt = n };

	return disk_sync_io(d, &io);
}

/* Writes @count sectors at @lba (tag @tag) with an aligned or a ragged,
 * oddly addressed buffer, reads them back the other way, and checks every
 * sector on its member. */
static void roundtrip(struct set *s, uint64_t lba, uint64_t count, bool unaligned, uint64_t tag)
{
	size_t len = (size_t)(count * s->ss);
	uint8_t *raw = malloc(len + 1), *back = malloc(len + 1), *one = malloc(s->ss);
	uint8_t *w = unaligned ? raw + 1 : raw, *r = unaligned ? back : back + 1;
	struct iovec iov[4096];
	int n;

	assert_non_null(raw);
	assert_non_null(back);
	assert_non_null(one);
	tu_fill(w, len, tag, lba * s->ss);
	if (unaligned) {
		n = ragged(w, len, iov, ARRAY_SIZE(iov));
	} else {
		iov[0].iov_base = w;
		iov[0].iov_len = len;
		n = 1;
	}
	assert_int_equal(rw_iov(s->d, DISK_OP_WRITE, lba, iov, n), DISK_OK);
	/* Read back with the other kind of buffer. */
	memset(r, 0, len);
	if (!unaligned) {
		n = ragged(r, len, iov, ARRAY_SIZE(iov));
	} else {
		iov[0].iov_base = r;
		iov[0].iov_len = len;
		n = 1;
	}
	assert_int_equal(rw_iov(s->d, DISK_OP_READ, lba, iov, n), DISK_OK);
	if (tu_check(r, len, tag, lba * s->ss) != -1)
		fail_msg("read back mismatch at lba %" PRIu64 " count %" PRIu64, lba, count);
	/* Every sector sits where §4.8 says. */
	for (uint64_t i = 0; i < count; i++) {
		unsigned m;
		uint64_t mlba;

		map(s, lba + i, &m, &mlba);
		assert_int_equal(disk_sync_read(s->m[m], mlba, one, s->ss), DISK_OK);
		if (tu_check(one, s->ss, tag, (lba + i) * s->ss) != -1)
			fail_msg("logical %" PRIu64 " not at member %u lba %" PRIu64, lba + i, m, mlba);
	}
	free(raw);
	free(back);
	free(one);
}

/* ---- contract ------------------------------------------------------------------------ */

static void test_striped_contract(void **state)
{
	struct set s;
	struct disk *d;
	char err[256];

	(void)state;
	set_open(&s, 2, 1 * MiB, 64 * KiB, 512);
	assert_int_equal(disk_sector_count(s.d), 4096);
	contract_disk(s.d);
	set_close(&s);
	set_open(&s, 2, 1 * MiB, 128 * KiB, 4096);
	assert_int_equal(disk_sector_count(s.d), 512);
	contract_disk(s.d);
	set_close(&s);
	set_open(&s, 3, 1 * MiB, 4 * KiB, 4096);
	contract_disk(s.d);
	set_close(&s);

	assert_int_equal(spec_open_str("striped:64K:mem:1M+mem:1M", false, NULL, &d, err,
				       sizeof(err)), 0);
	assert_string_equal(disk_get_info(d)->type, "striped");
	assert_int_equal(disk_sector_count(d), 4096);
	contract_disk(d);
	disk_unref(d);
	assert_int_equal(spec_open_str("striped:4K:prwrap:mem:1M+mem:1M,ro", false, NULL, &d, err,
				       sizeof(err)), 0);
	assert_true(disk_get_info(d)->read_only);
	contract_disk(d);
	disk_unref(d);
}

/* ---- §7.3 ------------------------------------------------------------------------------ */

static void integrity(unsigned n, uint64_t member_bytes, uint64_t chunk)
{
	struct set s;
	uint64_t count, spc;

	set_open(&s, n, member_bytes, chunk, 512);
	count = disk_sector_count(s.d);
	spc = s.spc;
	assert_int_equal(count, n * (member_bytes / 512));
	for (int unaligned = 0; unaligned < 2; unaligned++) {
		/* Start: several chunks from LBA 0, and a piece inside one chunk. */
		roundtrip(&s, 0, 3 * spc + 5, unaligned, 1);
		roundtrip(&s, 1, 2, unaligned, 2);
		/* Middle, straddling chunk and stripe boundaries. */
		roundtrip(&s, count / 2 - spc - 3, 2 * spc + 7, unaligned, 3);
		/* End: up to the last sector. */
		roundtrip(&s, count - 2 * spc - 1, 2 * spc + 1, unaligned, 4);
		roundtrip(&s, count - 1, 1, unaligned, 5);
	}
	set_close(&s);
}

static void test_striped_integrity_2x128k_4k(void **state)
{
	(void)state;
	integrity(2, 128 * KiB, 4 * KiB);
}

static void test_striped_integrity_4x1m_128k(void **state)
{
	(void)state;
	integrity(4, 1 * MiB, 128 * KiB);
}

static void test_striped_integrity_32x1m_64k(void **state)
{
	(void)state;
	integrity(32, 1 * MiB, 64 * KiB);
}

static void expect_rejected(struct disk **m, unsigned n, uint64_t chunk, uint64_t logical,
			    const char *msg)
{
	struct disk *d = NULL;
	char err[256] = "";

	assert_int_equal(striped_new(m, n, chunk, logical, &d, err, sizeof(err)), -EINVAL);
	assert_null(d);
	if (!strstr(err, msg))
		fail_msg("message '%s' lacks '%s'", err, msg);
}

static void test_striped_rejected_configurations(void **state)
{
	struct disk *m[3];
	struct disk *d;
	char err[256];

	(void)state;
	/* Devices of different sizes. */
	m[0] = ram(1 * MiB, 512);
	m[1] = ram(1 * MiB + 64 * KiB, 512);
	expect_rejected(m, 2, 64 * KiB, 0, "not compatible");
	disk_unref(m[1]);
	/* Chunk 4097: not a multiple of the sector size. */
	m[1] = ram(1 * MiB, 512);
	expect_rejected(m, 2, 4097, 0, "chunk size 4097");
	/* A 4 KiB-sector member needs a chunk multiple of 4096. */
	m[2] = ram(1 * MiB, 4096);
	expect_rejected(m + 2, 1, 6 * KiB, 0, "multiple of the sector size (4096)");
	/* Different sector sizes. */
	expect_rejected(m + 1, 2, 64 * KiB, 0, "sector size");
	disk_unref(m[2]);
	/* Logical count larger than the total, or not a stripe multiple. */
	expect_rejected(m, 2, 64 * KiB, 4096 + 256, "larger than");
	expect_rejected(m, 2, 64 * KiB, 4096 - 128, "multiple of 256");
	/* Read-only must match. */
	m[2] = ram(1 * MiB, 512);
	{
		struct disk *ro;

		assert_int_equal(ramdisk_new(1 * MiB, 512, true, &ro, err, sizeof(err)), 0);
		m[2] = (disk_unref(m[2]), ro);
	}
	expect_rejected(m + 1, 2, 64 * KiB, 0, "read-only");
	disk_unref(m[2]);
	/* Members smaller than one chunk, no members. */
	expect_rejected(m, 2, 2 * MiB, 0, "smaller than one chunk");
	expect_rejected(m, 0, 64 * KiB, 0, "at least one member");
	/* The failures did not take the members: they still work. */
	assert_int_equal(striped_new(m, 2, 0, 2048, &d, err, sizeof(err)), 0);
	assert_int_equal(disk_sector_count(d), 2048);      /* a given logical count */
	disk_unref(d);

	/* Through the spec: the message names the member. */
	assert_true(spec_open_str("striped:64K:mem:1M+mem:1088K", false, NULL, &d, err,
				  sizeof(err)) < 0);
	assert_non_null(strstr(err, "member 1 is not compatible with member 0"));
	assert_non_null(strstr(err, "striped:64K:mem:1M+mem:1088K"));
}

static void test_striped_default_chunk(void **state)
{
	struct disk *m[2] = { ram(1 * MiB, 512), ram(1 * MiB, 512) };
	struct disk *d;
	char err[256];

	(void)state;
	assert_int_equal(striped_new(m, 2, 0, 0, &d, err, sizeof(err)), 0);
	/* 128 KiB chunks of 256 sectors: 1 MiB holds exactly 8. */
	assert_int_equal(disk_sector_count(d), 4096);
	{
		struct set s = { .d = d, .n = 2, .spc = 256, .ss = 512, .m = { m[0], m[1] } };

		disk_ref(m[0]);
		disk_ref(m[1]);
		roundtrip(&s, 250, 10, false, 9);
		set_close(&s);
	}
}

static void test_striped_past_the_end(void **state)
{
	struct set s;
	uint8_t buf[1024];
	uint64_t count;

	(void)state;
	set_open(&s, 4, 1 * MiB, 128 * KiB, 512);
	count = disk_sector_count(s.d);
	assert_int_equal(disk_sync_read(s.d, count, buf, 512), DISK_ILLEGAL_BLOCK);
	assert_int_equal(disk_sync_write(s.d, count, buf, 512, 0), DISK_ILLEGAL_BLOCK);
	assert_int_equal(disk_sync_unmap(s.d, count, 1, 0), DISK_ILLEGAL_BLOCK);
	assert_int_equal(disk_sync_read(s.d, count - 1, buf, 1024), DISK_ILLEGAL_BLOCK);
	assert_int_equal(disk_sync_read(s.d, count - 1, buf, 512), DISK_OK);
	/* No wrap-around near the top of the LBA space. */
	assert_int_equal(disk_sync_read(s.d, UINT64_MAX - 1, buf, 512), DISK_ILLEGAL_BLOCK);
	assert_int_equal(disk_sync_read(s.d, UINT64_MAX - 1, buf, 1024), DISK_ILLEGAL_BLOCK);
	assert_int_equal(disk_sync_write(s.d, UINT64_MAX - 1, buf, 512, 0), DISK_ILLEGAL_BLOCK);
	assert_int_equal(disk_sync_unmap(s.d, UINT64_MAX - 1, 1, 0), DISK_ILLEGAL_BLOCK);
	/* An LBA that wraps when shifted, and one that maps beyond a member. */
	assert_int_equal(disk_sync_read(s.d, 1ull << 55, buf, 512), DISK_ILLEGAL_BLOCK);
	assert_int_equal(disk_sync_read(s.d, count + s.spc * 4, buf, 512), DISK_ILLEGAL_BLOCK);
	/* Zero-length reads: fine inside, refused past the end. */
	assert_int_equal(disk_sync_read(s.d, 7, buf, 0), DISK_OK);
	assert_int_equal(disk_sync_read(s.d, count, buf, 0), DISK_OK);
	assert_int_equal(disk_sync_read(s.d, count + 1, buf, 0), DISK_ILLEGAL_BLOCK);
	set_close(&s);
}

/* Mock members whose unmap zeroes, so unmapped sectors are visible. */
struct mockset {
	struct mockdisk mk[8];
	struct disk *d;
	unsigned n;
	uint64_t spc;
};

static void mockset_open(struct mockset *ms, unsigned n, uint64_t sectors, uint64_t chunk,
			 const struct mockdisk_opts *base)
{
	struct disk *m[8];
	char err[256];

	memset(ms, 0, sizeof(*ms));
	ms->n = n;
	ms->spc = chunk / 512;
	for (unsigned i = 0; i < n; i++) {
		struct mockdisk_opts o = base ? base[i] : (struct mockdisk_opts){ 0 };

		o.sectors = sectors;
		if (!base)
			o.unmap = DISK_UNMAP_ZEROES;
		m[i] = mockdisk_new(&ms->mk[i], &o);
	}
	if (striped_new(m, n, chunk, 0, &ms->d, err, sizeof(err)) < 0)
		fail_msg("striped_new: %s", err);
}

static void mockset_close(struct mockset *ms)
{
	disk_unref(ms->d);
	for (unsigned i = 0; i < ms->n; i++)
		mockdisk_release(&ms->mk[i]);
}

/* Fills the whole disk, unmaps [lba, lba + count), checks that exactly
 * those sectors read as zero and that each member got at most one unmap. */
static void unmap_case(struct mockset *ms, uint64_t lba, uint64_t count)
{
	uint64_t total = disk_sector_count(ms->d);
	size_t len = (size_t)(total * 512);
	uint8_t *buf = malloc(len);
	unsigned before[8];

	assert_non_null(buf);
	tu_fill(buf, len, 3, 0);
	assert_int_equal(disk_sync_write(ms->d, 0, buf, len, 0), DISK_OK);
	for (unsigned i = 0; i < ms->n; i++)
		before[i] = ms->mk[i].unmaps;
	assert_int_equal(disk_sync_unmap(ms->d, lba, count, 0), DISK_OK);
	for (unsigned i = 0; i < ms->n; i++)
		assert_true(ms->mk[i].unmaps - before[i] <= 1);
	memset(buf, 0xff, len);
	assert_int_equal(disk_sync_read(ms->d, 0, buf, len), DISK_OK);
	for (uint64_t s = 0; s < total; s++) {
		bool in = s >= lba && s < lba + count;
		const uint8_t *p = buf + s * 512;

		if (in ? !tu_is_zero(p, 512) : tu_check(p, 512, 3, s * 512) != -1)
			fail_msg("unmap (%" PRIu64 ", %" PRIu64 "): sector %" PRIu64 " %s",
				 lba, count, s, in ? "not zeroed" : "damaged");
	}
	free(buf);
}

static void test_striped_unmap_cases(void **state)
{
	struct mockset ms;
	uint64_t count;

	(void)state;
	mockset_open(&ms, 4, 1024, 32 * KiB, NULL);
	count = disk_sector_count(ms.d);
	assert_int_equal(count, 4096);
	unmap_case(&ms, 0, 1);
	unmap_case(&ms, 0, count);
	unmap_case(&ms, 8, count - 8);
	unmap_case(&ms, count / 2 - 100, 200);          /* straddles the middle */
	unmap_case(&ms, count - 300, 300);              /* straddles the end */
	unmap_case(&ms, 60, 5);                         /* inside one chunk */
	unmap_case(&ms, 63, 2 * 64 + 2);                /* ragged over stripes */
	unmap_case(&ms, 100, 1000);
	assert_int_equal(disk_sync_unmap(ms.d, 10, 0, 0), DISK_OK);
	assert_int_equal(disk_sync_unmap(ms.d, count, 0, 0), DISK_OK);
	assert_int_equal(disk_sync_unmap(ms.d, count, 100, 0), DISK_ILLEGAL_BLOCK);
	assert_int_equal(disk_sync_unmap(ms.d, count - 1, 2, 0), DISK_ILLEGAL_BLOCK);
	mockset_close(&ms);

	/* Brute force over small geometry: every (lba, count). */
	mockset_open(&ms, 3, 16, 2 * 512, NULL);
	count = disk_sector_count(ms.d);
	assert_int_equal(count, 48);
	for (uint64_t l = 0; l < count; l++)
		for (uint64_t c = 1; l + c <= count; c++)
			unmap_case(&ms, l, c);
	mockset_close(&ms);
}

static void test_striped_metadata(void **state)
{
	struct mockdisk_opts o[3] = {
		{ .unmap = DISK_UNMAP_ZEROES, .fua = true, .has_disk_id = true, .disk_id = { 1 } },
		{ .unmap = DISK_UNMAP_ZEROES, .fua = true },
		{ .unmap = DISK_UNMAP_ZEROES, .fua = false },
	};
	struct mockset ms;
	const struct disk_info *i;
	struct disk_resize_watch w = { 0 };

	(void)state;
	mockset_open(&ms, 3, 256, 4 * KiB, o);
	i = disk_get_info(ms.d);
	assert_string_equal(i->type, "striped");
	assert_false(i->has_disk_id);
	assert_false(i->fua_respected);
	assert_int_equal(i->unmap_behavior, DISK_UNMAP_ZEROES);
	assert_true(i->caps & DISK_CAP_COHERENT);
	assert_false(i->caps & (DISK_CAP_RESIZE | DISK_CAP_PR));
	assert_int_equal(disk_watch_resize(ms.d, &w), -EOPNOTSUPP);
	{
		struct disk_io io = { .op = DISK_OP_PR_CAPS };

		assert_int_equal(disk_sync_io(ms.d, &io), DISK_UNSUPPORTED);
	}
	/* Flush reaches every member once. */
	assert_int_equal(disk_sync_flush(ms.d), DISK_OK);
	for (unsigned m = 0; m < 3; m++)
		assert_int_equal(ms.mk[m].flushes, 1);
	/* FUA is passed to the pieces when respected everywhere. */
	mockset_close(&ms);

	o[2].fua = true;
	o[1].unmap = DISK_UNMAP_IGNORED;
	mockset_open(&ms, 3, 256, 4 * KiB, o);
	i = disk_get_info(ms.d);
	assert_true(i->fua_respected);
	assert_int_equal(i->unmap_behavior, DISK_UNMAP_UNSPECIFIED);
	{
		uint8_t buf[8192] = { 0 };

		assert_int_equal(disk_sync_write(ms.d, 4, buf, sizeof(buf), DISK_IO_FUA), DISK_OK);
		assert_int_equal(ms.mk[0].fua_writes + ms.mk[1].fua_writes, 2);
	}
	mockset_close(&ms);

	for (unsigned m = 0; m < 3; m++)
		o[m].unmap = DISK_UNMAP_IGNORED;
	mockset_open(&ms, 3, 256, 4 * KiB, o);
	assert_int_equal(disk_get_info(ms.d)->unmap_behavior, DISK_UNMAP_IGNORED);
	mockset_close(&ms);
}

/* Physical sector size (max), optimal unmap (max), coherence (AND). */
static uint64_t geo_count(struct disk *d) { return 128; }
static int geo_rw(struct disk *d, struct disk_io *io) { return DISK_OK; }
static unsigned geo_ejects;
static int geo_eject(struct disk *d, struct disk_io *io) { geo_ejects++; return DISK_OK; }
static const struct disk_ops geo_ops = {
	.version = DISK_OPS_VERSION, .sector_count = geo_count, .read = geo_rw, .write = geo_rw,
	.eject = geo_eject,
};

static void test_striped_metadata_folds(void **state)
{
	struct disk_info a = { .type = "geo", .sector_size = 512, .physical_sector_size = 512,
			       .optimal_unmap_sectors = 8, .caps = DISK_CAP_COHERENT | DISK_CAP_EJECT };
	struct disk_info b = a;
	struct disk *m[2], *d;
	char err[256];

	(void)state;
	b.physical_sector_size = 4096;
	b.optimal_unmap_sectors = 64;
	b.caps = DISK_CAP_EJECT | DISK_CAP_VOLATILE_CACHE;
	assert_int_equal(disk_new(&geo_ops, &a, NULL, NULL, &m[0]), 0);
	assert_int_equal(disk_new(&geo_ops, &b, NULL, NULL, &m[1]), 0);
	assert_int_equal(striped_new(m, 2, 4 * KiB, 0, &d, err, sizeof(err)), 0);
	assert_int_equal(disk_get_info(d)->physical_sector_size, 4096);
	assert_int_equal(disk_get_info(d)->optimal_unmap_sectors, 64);
	assert_false(disk_get_info(d)->caps & DISK_CAP_COHERENT);
	assert_true(disk_get_info(d)->caps & DISK_CAP_VOLATILE_CACHE);
	assert_true(disk_get_info(d)->caps & DISK_CAP_EJECT);
	/* Eject goes to every member. */
	{
		struct disk_io io = { .op = DISK_OP_EJECT };

		assert_int_equal(disk_sync_io(d, &io), DISK_OK);
		assert_int_equal(geo_ejects, 2);
	}
	disk_unref(d);

	/* Members without eject: the member error is flattened. */
	{
		struct mockset ms;
		struct disk_io io = { .op = DISK_OP_EJECT };

		mockset_open(&ms, 2, 64, 4 * KiB, NULL);
		assert_int_equal(disk_sync_io(ms.d, &io), DISK_IO_ERROR);
		mockset_close(&ms);
	}
}

/* ---- concurrency and error flattening ------------------------------------------------------- */

/* Members that hold requests until released, and fail on demand. */
struct gate {
	struct disk_io *held[16];
	unsigned n;
	int fail_status;
};
static struct gate gates[2];

static uint64_t gate_count(struct disk *d) { return 64; }
static int gate_rw(struct disk *d, struct disk_io *io)
{
	struct gate *g = disk_priv(d);

	assert_true(g->n < ARRAY_SIZE(g->held));
	g->held[g->n++] = io;
	return DISK_PENDING;
}
static const struct disk_ops gate_ops = {
	.version = DISK_OPS_VERSION, .sector_count = gate_count, .read = gate_rw, .write = gate_rw,
	.flush = gate_rw, .unmap = gate_rw,
};

static void gate_release(struct gate *g)
{
	unsigned n = g->n;

	g->n = 0;
	for (unsigned i = 0; i < n; i++)
		disk_io_complete(g->held[i], g->fail_status);
}

struct parent {
	struct disk_io io;
	bool done;
};

static void parent_done(struct disk_io *io)
{
	container_of(io, struct parent, io)->done = true;
}

static void spin(void)
{
	for (int i = 0; i < 8; i++)
		reactor_run_once(tu_reactor(), false);
}

static void test_striped_pieces_concurrent_and_errors_flattened(void **state)
{
	struct disk_info info = { .type = "gate", .sector_size = 512, .physical_sector_size = 512 };
	const int failures[] = { DISK_ILLEGAL_BLOCK, DISK_RESERVATION_CONFLICT, DISK_MEDIUM_ERROR,
				 DISK_IO_ERROR };
	struct disk *m[2], *d;
	uint8_t buf[8 * 512];
	struct iovec iov = { buf, sizeof(buf) };
	char err[256];

	(void)state;
	memset(gates, 0, sizeof(gates));
	assert_int_equal(disk_new(&gate_ops, &info, &gates[0], NULL, &m[0]), 0);
	assert_int_equal(disk_new(&gate_ops, &info, &gates[1], NULL, &m[1]), 0);
	assert_int_equal(striped_new(m, 2, 1024, 0, &d, err, sizeof(err)), 0);

	for (unsigned f = 0; f <= ARRAY_SIZE(failures); f++) {
		struct parent p = { .io = { .op = DISK_OP_READ, .sector = 1, .iov = &iov,
					    .iovcnt = 1, .done = parent_done } };

		/* Sectors 1..8 over 2-sector chunks: 5 pieces, 3 on member 0
		 * and 2 on member 1, all in flight at once. */
		iov.iov_len = 8 * 512;
		disk_submit(d, &p.io);
		spin();
		assert_int_equal(gates[0].n, 3);
		assert_int_equal(gates[1].n, 2);
		assert_false(p.done);
		gates[0].fail_status = f < ARRAY_SIZE(failures) ? failures[f] : DISK_OK;
		gates[1].fail_status = DISK_OK;
		gate_release(&gates[0]);
		spin();
		/* A failed piece does not finish the request early. */
		assert_false(p.done);
		gate_release(&gates[1]);
		spin();
		assert_true(p.done);
		if (f < ARRAY_SIZE(failures)) {
			assert_int_equal(p.io.status, DISK_IO_ERROR);
			assert_true(p.io.os_errno > 0);
		} else {
			assert_int_equal(p.io.status, DISK_OK);
		}
	}

	/* Unmap: one request per member; flush: one per member. */
	{
		struct parent p = { .io = { .op = DISK_OP_UNMAP, .sector = 0, .count = 64,
					    .done = parent_done } };

		disk_submit(d, &p.io);
		spin();
		assert_int_equal(gates[0].n, 1);
		assert_int_equal(gates[1].n, 1);
		assert_int_equal(gates[0].held[0]->sector, 0);
		assert_int_equal(gates[0].held[0]->count, 32);
		gates[0].fail_status = DISK_OK;
		gates[1].fail_status = DISK_ILLEGAL_BLOCK;
		gate_release(&gates[1]);
		spin();
		assert_false(p.done);
		gate_release(&gates[0]);
		spin();
		assert_true(p.done);
		assert_int_equal(p.io.status, DISK_IO_ERROR);
	}
	disk_unref(d);
}

/* ---- random oracle ------------------------------------------------------------------------- */

static void test_striped_random_oracle(void **state)
{
	uint64_t seed = tu_seed("test_striped_random_oracle");
	struct mockset ms;
	uint64_t count;
	uint8_t *model, *buf;

	(void)state;
	mockset_open(&ms, 5, 200, 3 * 512, NULL);     /* 3-sector chunks: not a power of two */
	count = disk_sector_count(ms.d);
	assert_int_equal(count, 5 * 198);
	model = calloc(count, 512);
	buf = malloc(count * 512);
	assert_non_null(model);
	assert_non_null(buf);
	for (int i = 0; i < 3000; i++) {
		uint64_t r = tu_rand(&seed);
		uint64_t lba = r % (count + 4);
		uint64_t n = (r >> 20) % 40;
		bool fits = lba + n <= count;
		int want = fits ? DISK_OK : DISK_ILLEGAL_BLOCK;
		int st;

		switch ((r >> 40) % 3) {
		case 0:
			st = disk_sync_read(ms.d, lba, buf, (size_t)n * 512);
			if (st == DISK_OK && memcmp(buf, model + lba * 512, (size_t)n * 512) != 0)
				fail_msg("seed %" PRIu64 " op %d: read (%" PRIu64 ", %" PRIu64 ") differs",
					 seed, i, lba, n);
			break;
		case 1:
			tu_fill(buf, (size_t)n * 512, (uint64_t)i, lba * 512);
			st = disk_sync_write(ms.d, lba, buf, (size_t)n * 512, 0);
			if (fits)
				memcpy(model + lba * 512, buf, (size_t)n * 512);
			break;
		default:
			st = disk_sync_unmap(ms.d, lba, n, 0);
			if (fits)
				memset(model + lba * 512, 0, (size_t)n * 512);
			break;
		}
		if (n == 0 && lba <= count)
			want = DISK_OK;
		if (st != want)
			fail_msg("seed %" PRIu64 " op %d: (%" PRIu64 ", %" PRIu64 ") got %s want %s",
				 seed, i, lba, n, disk_status_str(st), disk_status_str(want));
	}
	free(model);
	free(buf);
	mockset_close(&ms);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_striped_contract),
		cmocka_unit_test(test_striped_integrity_2x128k_4k),
		cmocka_unit_test(test_striped_integrity_4x1m_128k),
		cmocka_unit_test(test_striped_integrity_32x1m_64k),
		cmocka_unit_test(test_striped_rejected_configurations),
		cmocka_unit_test(test_striped_default_chunk),
		cmocka_unit_test(test_striped_past_the_end),
		cmocka_unit_test(test_striped_unmap_cases),
		cmocka_unit_test(test_striped_metadata),
		cmocka_unit_test(test_striped_metadata_folds),
		cmocka_unit_test(test_striped_pieces_concurrent_and_errors_flattened),
		cmocka_unit_test(test_striped_random_oracle),
	};

	tu_reactor();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
