/* SPDX-License-Identifier: MIT */
/*
 * test-oracle.c: seeded random-operation oracles for layered disks.
 *
 * 1. Stacks of 1-4 layers (RAM layers of random, possibly different sizes,
 *    and disk-as-layer over a RAM disk), with random read-cache and
 *    write-through flags, are driven with thousands of random reads,
 *    writes, unmaps, write-zeroes, flushes and block-status calls and
 *    compared with a flat model of what the disk must read back. The model
 *    knows the per-sector semantics only (top-most layer holding a sector
 *    within every visible count wins, else zero); sectors unmapped on a
 *    disk whose unmap behaviour is UNSPECIFIED become "unknown" until
 *    written again. Out-of-range requests must fail with ILLEGAL_BLOCK and
 *    nothing else (the fuzz oracle of docs/openvmm-compat.md §7.1). On
 *    disks whose unmap reads back zero, sectors unmapped or zeroed (without
 *    NO_UNMAP) since their last write must be reported ZERO by block
 *    status, and write-zeroes with FAST_ZERO must succeed exactly there. A
 *    "big" variant uses RAM layers of several leaves of the RAM layer's
 *    tree and long unmaps and write-zeroes, so zeroed runs cover whole
 *    leaves (zero subtrees).
 * 2. A concurrent variant: several threads, each with its own reactor,
 *    write and verify disjoint ranges of one shared stack while all of them
 *    read an untouched shared region (through a read cache, so cache fills
 *    race with each other).
 *
 * The seed is printed; set DISKSTACK_SEED to replay.
 */
#include "config.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/compiler.h"
#include "tests/unit/testutil.h"

#define MAX_LAYERS 4

struct model {
	uint32_t ss;
	uint64_t sectors;
	uint8_t *data;        /* what the disk must read back */
	uint8_t *known;       /* 0 = unknown content (unmapped, UNSPECIFIED) */
	uint8_t *zeroed;      /* 1 = unmapped or zeroed since written (ZEROES) */
};

struct oracle {
	uint64_t rng;
	struct disk *disk;
	struct model m;
	enum disk_unmap_behavior ub;
	unsigned nlayers;
	uint64_t wp_min;      /* smallest count over the write path */
	bool big;             /* layers of 8K-24K sectors, long unmaps */
	bool cache;           /* a layer is a read cache */
	char desc[256];
};

static uint64_t rnd(struct oracle *o, uint64_t n)
{
	return n ? tu_rand(&o->rng) % n : 0;
}

static struct layer *make_layer(struct oracle *o, bool bottom, uint32_t ss, uint64_t *count,
				const char **kind)
{
	char err[256];
	struct layer *l;

	if (bottom && rnd(o, 3) == 0) {
		/* A whole disk as the bottom layer. */
		struct disk *d;

		assert_int_equal(ramdisk_new(*count * ss, ss, false, &d, err, sizeof(err)), 0);
		assert_int_equal(disklayer_new(d, &l), 0);
		*kind = "disk";
		return l;
	}
	if (!bottom && rnd(o, 2) == 0) {
		/* Lazily sized: inherits the layer below. */
		assert_int_equal(ramlayer_new(0, 0, &l, err, sizeof(err)), 0);
		*kind = "ram(lazy)";
		return l;
	}
	if (!bottom)
		*count = o->big ? 8192 + rnd(o, 16384) : 16 + rnd(o, 240);
	assert_int_equal(ramlayer_new(*count * ss, ss, &l, err, sizeof(err)), 0);
	*kind = "ram";
	return l;
}

/* Prefills a random subset of each layer directly and computes the model
 * from the per-sector semantics. */
static void prefill(struct oracle *o, struct layered_entry *e, unsigned n, uint32_t ss)
{
	uint64_t top = disk_sector_count(o->disk);
	uint64_t vis[MAX_LAYERS];
	uint8_t *buf = malloc(ss);

	/* Visible counts: the minimum of the counts of layers 0..i. */
	for (unsigned i = 0; i < n; i++) {
		uint64_t c = layer_get_ops(e[i].layer)->sector_count(e[i].layer);

		vis[i] = i == 0 ? c : MIN(vis[i - 1], c);
	}
	o->m.ss = ss;
	o->m.sectors = top;
	o->m.data = calloc(top, ss);
	o->m.known = malloc(top);
	memset(o->m.known, 1, top);
	o->m.zeroed = calloc(top, 1);

	for (unsigned i = 0; i < n; i++) {
		uint64_t c = layer_get_ops(e[i].layer)->sector_count(e[i].layer);
		unsigned runs = (unsigned)rnd(o, 6);

		for (unsigned k = 0; k < runs; k++) {
			uint64_t s = rnd(o, c), len = 1 + rnd(o, MIN(c - s, 32));
			void *run = malloc(len * ss);

			tu_fill(run, len * ss, 100 + i, s * ss);
			assert_int_equal(tu_layer_write(e[i].layer, s, run, len * ss, 0), DISK_OK);
			free(run);
		}
	}
	/* Per-sector semantics. */
	for (uint64_t s = 0; s < top; s++) {
		memset(o->m.data + s * ss, 0, ss);
		for (unsigned i = 0; i < n; i++) {
			uint64_t marked = 0;

			if (i > 0 && s >= vis[i])
				break;
			if (s >= layer_get_ops(e[i].layer)->sector_count(e[i].layer))
				break;
			assert_int_equal(tu_layer_read(e[i].layer, s, buf, ss, &marked), DISK_OK);
			if (marked) {
				memcpy(o->m.data + s * ss, buf, ss);
				break;
			}
		}
	}
	free(buf);
}

static void build(struct oracle *o)
{
	struct layered_entry e[MAX_LAYERS];
	unsigned n = 1 + (unsigned)rnd(o, MAX_LAYERS);
	/* Big stacks keep 512-byte sectors: 4096 of them fill a leaf. */
	uint32_t ss = !o->big && rnd(o, 3) == 0 ? 4096 : 512;
	uint64_t count = o->big ? 8192 + rnd(o, 16384) : 32 + rnd(o, 480);
	unsigned wt = (unsigned)rnd(o, n);   /* layers 0..wt-1 write through */
	const char *kind;
	char err[256];
	int len = 0;

	for (unsigned k = n; k-- > 0;) {
		e[k].layer = make_layer(o, k == n - 1, ss, &count, &kind);
		e[k].write_through = k < wt;
		/* disk layers cannot cache */
		e[k].read_cache = strcmp(kind, "disk") != 0 && rnd(o, 3) == 0;
		o->cache = o->cache || e[k].read_cache;
		len += snprintf(o->desc + len, sizeof(o->desc) - (size_t)len, "%s[%u]%s%s%s ",
				k == n - 1 ? "" : "", k, kind, e[k].read_cache ? "+rc" : "",
				e[k].write_through ? "+wt" : "");
	}
	snprintf(o->desc + len, sizeof(o->desc) - (size_t)len, "ss=%u", ss);
	if (layered_disk_new(e, n, false, &o->disk, err, sizeof(err)) != 0) {
		fprintf(stderr, "oracle: %s: %s\n", o->desc, err);
		fail();
	}
	o->nlayers = n;
	o->ub = disk_get_info(o->disk)->unmap_behavior;
	/* Writes are not clamped: every write-path layer range-checks. */
	o->wp_min = UINT64_MAX;
	for (unsigned k = 0; k < n; k++) {
		o->wp_min = MIN(o->wp_min, layer_get_ops(e[k].layer)->sector_count(e[k].layer));
		if (!e[k].write_through)
			break;
	}
	prefill(o, e, n, ss);
}

static void check_read(struct oracle *o, uint64_t s, uint64_t n, const uint8_t *buf)
{
	uint32_t ss = o->m.ss;

	for (uint64_t i = 0; i < n; i++) {
		if (!o->m.known[s + i])
			continue;
		if (memcmp(buf + i * ss, o->m.data + (s + i) * ss, ss) != 0) {
			fprintf(stderr, "oracle: %s: sector %" PRIu64 " differs from the model\n",
				o->desc, s + i);
			fail();
		}
	}
}

static bool in_range(struct oracle *o, uint64_t s, uint64_t n)
{
	return s + n >= s && s + n <= o->m.sectors;
}

/* Expected status of a write-path op; a failure past a lower write-path
 * layer's end may leave upper layers written, so those sectors become
 * unknown. Returns true when the op succeeds. */
static bool wp_expect(struct oracle *o, uint64_t s, uint64_t n, int *want)
{
	if (!in_range(o, s, n)) {
		*want = DISK_ILLEGAL_BLOCK;
		return false;
	}
	if (s + n > o->wp_min) {
		*want = DISK_ILLEGAL_BLOCK;
		memset(o->m.known + s, 0, n);
		memset(o->m.zeroed + s, 0, n);
		return false;
	}
	*want = DISK_OK;
	return true;
}

static void one_op(struct oracle *o, uint64_t step)
{
	int want;
	uint32_t ss = o->m.ss;
	uint64_t count = o->m.sectors;
	/* Mostly in range; sometimes past the end. */
	uint64_t s = rnd(o, 10) == 0 ? count - rnd(o, 4) + rnd(o, 8) : rnd(o, count);
	uint64_t n = 1 + rnd(o, 8);
	/* Long unmaps and write-zeroes in big stacks: whole leaves. */
	uint64_t zn = o->big && rnd(o, 2) ? rnd(o, 3 * 4096) : rnd(o, 40);
	bool ok = in_range(o, s, n);
	unsigned op = (unsigned)rnd(o, 100);
	uint8_t *buf = malloc(n * ss);
	int st;

	if (op < 40) {
		st = disk_sync_read(o->disk, s, buf, n * ss);
		assert_int_equal(st, ok ? DISK_OK : DISK_ILLEGAL_BLOCK);
		if (ok)
			check_read(o, s, n, buf);
		/* A read fills read caches with the zeroes of sectors no
		 * layer holds: allocated now, though still zero. */
		if (ok && o->cache)
			memset(o->m.zeroed + s, 0, n);
	} else if (op < 75) {
		tu_fill(buf, n * ss, 1000 + step, s * ss);
		st = disk_sync_write(o->disk, s, buf, n * ss, rnd(o, 4) == 0 ? DISK_IO_FUA : 0);
		ok = wp_expect(o, s, n, &want);
		assert_int_equal(st, want);
		if (ok) {
			memcpy(o->m.data + s * ss, buf, n * ss);
			memset(o->m.known + s, 1, n);
			memset(o->m.zeroed + s, 0, n);
		}
	} else if (op < 85) {
		n = zn;
		ok = in_range(o, s, n);
		st = disk_sync_unmap(o->disk, s, n, 0);
		if (o->ub == DISK_UNMAP_IGNORED)
			want = ok ? DISK_OK : DISK_ILLEGAL_BLOCK;
		else
			ok = wp_expect(o, s, n, &want);
		assert_int_equal(st, want);
		if (ok && o->ub == DISK_UNMAP_ZEROES) {
			memset(o->m.data + s * ss, 0, n * ss);
			memset(o->m.known + s, 1, n);
			memset(o->m.zeroed + s, 1, n);
		} else if (ok && o->ub == DISK_UNMAP_UNSPECIFIED) {
			memset(o->m.known + s, 0, n);
			memset(o->m.zeroed + s, 0, n);
		}
	} else if (op < 92) {
		uint32_t flags = (rnd(o, 2) ? DISK_IO_NO_UNMAP : 0) |
				 (rnd(o, 2) ? DISK_IO_FAST_ZERO : 0);
		/* Fast exactly when it can become an unmap that reads zero. */
		bool fast = !(flags & DISK_IO_NO_UNMAP) && o->ub == DISK_UNMAP_ZEROES;

		n = MAX(zn, 1);
		st = disk_sync_write_zeroes(o->disk, s, n, flags);
		if ((flags & DISK_IO_FAST_ZERO) && !fast) {
			/* Refused (when in range); nothing changes. */
			assert_int_equal(st, in_range(o, s, n) ? DISK_UNSUPPORTED
							       : DISK_ILLEGAL_BLOCK);
			goto out;
		}
		ok = wp_expect(o, s, n, &want);
		assert_int_equal(st, want);
		if (ok) {
			memset(o->m.data + s * ss, 0, n * ss);
			memset(o->m.known + s, 1, n);
			memset(o->m.zeroed + s, fast, n);
		}
	} else if (op < 95) {
		assert_int_equal(disk_sync_flush(o->disk), DISK_OK);
	} else {
		struct disk_extent ext[8];
		uint32_t nr;
		uint64_t pos;

		n = 1 + (o->big ? rnd(o, 8192) : rnd(o, 64));
		ok = in_range(o, s, n);
		st = disk_sync_block_status(o->disk, s, n, ext, 8, &nr);
		assert_int_equal(st, ok ? DISK_OK : DISK_ILLEGAL_BLOCK);
		if (!ok)
			goto out;
		assert_true(nr >= 1 && nr <= 8);
		pos = s;
		for (uint32_t i = 0; i < nr; i++) {
			assert_true(ext[i].count > 0);
			assert_true(ext[i].layer >= -1 && ext[i].layer < (int32_t)o->nlayers);
			for (uint64_t k = pos; k < pos + ext[i].count; k++) {
				if ((ext[i].flags & DISK_EXTENT_ZERO) && o->m.known[k])
					assert_true(tu_is_zero(o->m.data + k * ss, ss));
				if (o->m.zeroed[k] && !(ext[i].flags & DISK_EXTENT_ZERO)) {
					fprintf(stderr, "oracle: %s: sector %" PRIu64 " was zeroed, "
						"block status says flags %u (layer %d)\n", o->desc, k,
						ext[i].flags, ext[i].layer);
					fail();
				}
			}
			pos += ext[i].count;
		}
		assert_true(pos <= s + n);
	}
out:
	free(buf);
}

static void run_seed(uint64_t seed, unsigned ops, bool big)
{
	struct oracle o = { .rng = seed ? seed : 1, .big = big };
	uint8_t *all;

	build(&o);
	for (unsigned i = 0; i < ops; i++)
		one_op(&o, i);
	/* A final full read. */
	all = malloc(o.m.sectors * o.m.ss);
	assert_int_equal(disk_sync_read(o.disk, 0, all, o.m.sectors * o.m.ss), DISK_OK);
	check_read(&o, 0, o.m.sectors, all);
	free(all);
	disk_unref(o.disk);
	free(o.m.data);
	free(o.m.known);
	free(o.m.zeroed);
}

static void test_oracle_random_stacks(void **state)
{
	uint64_t base = tu_seed("oracle_random_stacks");

	for (unsigned i = 0; i < 200; i++) {
		uint64_t seed = base + i * 0x9e3779b97f4a7c15ull;

		run_seed(seed, 3000, false);
	}
}

/* Zeroed runs in big RAM layers (mem:/memdiff: cannot zero fast). */
static void test_oracle_big_stacks(void **state)
{
	uint64_t base = tu_seed("oracle_big_stacks");

	for (unsigned i = 0; i < 16; i++) {
		uint64_t seed = base + i * 0x9e3779b97f4a7c15ull;

		run_seed(seed, 1500, true);
	}
}

/* The §7.1 layered-disk fuzz oracle on a 1 MiB RAM disk: read, write (1-8
 * sectors) and unmap (any count) succeed exactly when in range. */
static void test_oracle_range_fuzz(void **state)
{
	uint64_t rng = tu_seed("oracle_range_fuzz");
	char err[256];
	struct disk *d;
	uint8_t buf[8 * 512];

	assert_int_equal(ramdisk_new(1 << 20, 512, false, &d, err, sizeof(err)), 0);
	for (unsigned i = 0; i < 20000; i++) {
		uint64_t r = tu_rand(&rng);
		uint64_t s = (r & 3) == 0 ? tu_rand(&rng) : tu_rand(&rng) % 2100;
		uint64_t n = 1 + tu_rand(&rng) % 8, end;
		bool ok;
		int st;

		switch ((r >> 2) % 3) {
		case 0:
			ok = !ADD_OVERFLOW(s, n, &end) && end <= 2048;
			st = disk_sync_read(d, s, buf, n * 512);
			break;
		case 1:
			ok = !ADD_OVERFLOW(s, n, &end) && end <= 2048;
			st = disk_sync_write(d, s, buf, n * 512, 0);
			break;
		default:
			n = (r >> 8) & 1 ? tu_rand(&rng) : tu_rand(&rng) % 64;
			ok = !ADD_OVERFLOW(s, n, &end) && end <= 2048;
			st = disk_sync_unmap(d, s, n, 0);
			break;
		}
		assert_int_equal(st, ok ? DISK_OK : DISK_ILLEGAL_BLOCK);
	}
	disk_unref(d);
}

/* ---- concurrent variant ----------------------------------------------- */

#define CT_THREADS 4
#define CT_OWN 256          /* sectors each thread owns */
#define CT_SHARED 512       /* shared read-only region after the owned ones */
#define CT_OPS 6000

struct ct_arg {
	struct disk *disk;
	unsigned index;
	uint64_t seed;
	int failed;
};

static void *ct_thread(void *p)
{
	struct ct_arg *a = p;
	uint64_t rng = a->seed;
	uint64_t base = (uint64_t)a->index * CT_OWN;
	uint8_t *model = calloc(CT_OWN, 512);
	uint8_t *initial = malloc(CT_OWN * 512);
	uint8_t buf[16 * 512];

	tu_reactor();
	/* The owned range starts as the bottom layer's pattern. */
	tu_fill(initial, CT_OWN * 512, 7, base * 512);
	memcpy(model, initial, CT_OWN * 512);
	for (unsigned i = 0; i < CT_OPS && !a->failed; i++) {
		uint64_t r = tu_rand(&rng);
		uint64_t n = 1 + (r >> 8) % 16;
		uint64_t off = (r >> 16) % (CT_OWN - n + 1);

		switch (r % 4) {
		case 0:
			tu_fill(buf, n * 512, 200 + a->index * 1000 + i, (base + off) * 512);
			if (disk_sync_write(a->disk, base + off, buf, n * 512, 0) != DISK_OK)
				a->failed = 1;
			memcpy(model + off * 512, buf, n * 512);
			break;
		case 1:
			if (disk_sync_read(a->disk, base + off, buf, n * 512) != DISK_OK ||
			    memcmp(buf, model + off * 512, n * 512) != 0)
				a->failed = 2;
			break;
		default: {
			uint64_t so = CT_THREADS * CT_OWN + (r >> 16) % (CT_SHARED - n + 1);

			if (disk_sync_read(a->disk, so, buf, n * 512) != DISK_OK ||
			    tu_check(buf, n * 512, 7, so * 512) != -1)
				a->failed = 3;
			break;
		}
		}
	}
	free(model);
	free(initial);
	tu_reactor_done();
	return NULL;
}

static void run_concurrent(bool read_cache)
{
	const uint64_t total = CT_THREADS * CT_OWN + CT_SHARED;
	uint64_t seed = tu_seed(read_cache ? "oracle_concurrent_cache" : "oracle_concurrent");
	char err[256];
	struct layer *top, *bottom;
	struct layered_entry e[2];
	struct disk *d;
	pthread_t th[CT_THREADS];
	struct ct_arg args[CT_THREADS];
	void *fill = malloc(total * 512);

	assert_int_equal(ramlayer_new(0, 0, &top, err, sizeof(err)), 0);
	assert_int_equal(ramlayer_new(total * 512, 512, &bottom, err, sizeof(err)), 0);
	e[0] = (struct layered_entry){ top, read_cache, false };
	e[1] = (struct layered_entry){ bottom, false, false };
	assert_int_equal(layered_disk_new(e, 2, false, &d, err, sizeof(err)), 0);
	tu_fill(fill, total * 512, 7, 0);
	assert_int_equal(tu_layer_write(bottom, 0, fill, total * 512, 0), DISK_OK);
	free(fill);
	for (unsigned t = 0; t < CT_THREADS; t++) {
		args[t] = (struct ct_arg){ .disk = d, .index = t, .seed = seed + t };
		assert_int_equal(pthread_create(&th[t], NULL, ct_thread, &args[t]), 0);
	}
	for (unsigned t = 0; t < CT_THREADS; t++) {
		pthread_join(th[t], NULL);
		if (args[t].failed)
			fprintf(stderr, "oracle: thread %u failed (kind %d), seed %" PRIu64 "\n", t,
				args[t].failed, seed);
		assert_int_equal(args[t].failed, 0);
	}
	disk_unref(d);
}

static void test_oracle_concurrent(void **state)
{
	run_concurrent(false);
}

static void test_oracle_concurrent_read_cache(void **state)
{
	run_concurrent(true);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_oracle_random_stacks),
		cmocka_unit_test(test_oracle_big_stacks),
		cmocka_unit_test(test_oracle_range_fuzz),
		cmocka_unit_test(test_oracle_concurrent),
		cmocka_unit_test(test_oracle_concurrent_read_cache),
	};

	return cmocka_run_group_tests_name("oracle", tests, tu_reactor_setup, tu_reactor_teardown);
}
