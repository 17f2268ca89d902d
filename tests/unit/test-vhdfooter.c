/* SPDX-License-Identifier: MIT */
/*
 * test-vhdfooter.c: fixed-VHD footers (storage/vhdfooter.c,
 * docs/openvmm-compat.md §4.6): the layout written, the checksum,
 * and every open check in its order.
 */
#include "config.h"

#include <errno.h>
#include <string.h>

#include "common/compiler.h"
#include "common/endian.h"
#include "storage/backends/vhdfooter.h"
#include "tests/unit/testutil.h"

static const uint8_t id[16] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16 };

static void reseal(uint8_t *f)
{
	uint32_t c = vhdfooter_checksum(f);

	f[64] = (uint8_t)(c >> 24);
	f[65] = (uint8_t)(c >> 16);
	f[66] = (uint8_t)(c >> 8);
	f[67] = (uint8_t)c;
}

static void test_vhdfooter_build_layout(void **state UNUSED)
{
	uint8_t f[VHDFOOTER_BYTES];
	struct vhdfooter v;
	uint32_t sum = 0;

	vhdfooter_build(4u << 20, id, f);
	assert_memory_equal(f, "conectix", 8);
	assert_int_equal(ds_get_be32(f + 8), 2);
	assert_int_equal(ds_get_be32(f + 12), 0x00010000);
	assert_int_equal(ds_get_be32(f + 16), 0xffffffffu);
	assert_int_equal(ds_get_be32(f + 20), 0xffffffffu);
	assert_int_equal(ds_get_be32(f + 24), 0);
	assert_int_equal(ds_get_be32(f + 32), 0x000A0000);
	assert_int_equal(ds_get_be32(f + 40), 0);
	assert_int_equal(ds_get_be32(f + 44), 4u << 20);
	assert_int_equal(ds_get_be32(f + 52), 4u << 20);
	assert_int_equal(ds_get_be32(f + 56), 0);
	assert_int_equal(ds_get_be32(f + 60), 2);
	assert_memory_equal(f + 68, id, 16);
	for (unsigned i = 84; i < VHDFOOTER_BYTES; i++)
		assert_int_equal(f[i], 0);
	/* The checksum: NOT of the byte sum without its own field. */
	for (unsigned i = 0; i < VHDFOOTER_BYTES; i++)
		if (i < 64 || i >= 68)
			sum += f[i];
	assert_int_equal(ds_get_be32(f + 64), ~sum);

	assert_int_equal(vhdfooter_parse(f, 4u << 20, &v), VHDFOOTER_OK);
	assert_int_equal(v.current_size, 4u << 20);
	assert_int_equal(v.original_size, 4u << 20);
	assert_memory_equal(v.unique_id, id, 16);
}

static void test_vhdfooter_checks_in_order(void **state UNUSED)
{
	uint8_t f[VHDFOOTER_BYTES], g[VHDFOOTER_BYTES];

	assert_int_equal(vhdfooter_check_file_size(0), VHDFOOTER_BAD_FILE_SIZE);
	assert_int_equal(vhdfooter_check_file_size(511), VHDFOOTER_BAD_FILE_SIZE);
	assert_int_equal(vhdfooter_check_file_size(1000), VHDFOOTER_BAD_FILE_SIZE);
	assert_int_equal(vhdfooter_check_file_size(512), VHDFOOTER_OK);

	vhdfooter_build(1024, id, f);
	/* 2. cookie, before the checksum (which it also breaks). */
	memcpy(g, f, sizeof(g));
	g[0] = 'C';
	assert_int_equal(vhdfooter_parse(g, 1024, NULL), VHDFOOTER_BAD_COOKIE);
	/* 3. checksum. */
	memcpy(g, f, sizeof(g));
	g[100] = 1;
	assert_int_equal(vhdfooter_parse(g, 1024, NULL), VHDFOOTER_BAD_CHECKSUM);
	/* 4. version, before the type. */
	memcpy(g, f, sizeof(g));
	g[13] = 2;
	g[63] = 3;
	reseal(g);
	assert_int_equal(vhdfooter_parse(g, 1024, NULL), VHDFOOTER_BAD_VERSION);
	/* 5. a dynamic disk, with a size that is also wrong. */
	memcpy(g, f, sizeof(g));
	g[63] = 3;
	g[55] = 1;
	reseal(g);
	assert_int_equal(vhdfooter_parse(g, 1024, NULL), VHDFOOTER_NOT_FIXED);
	/* 6. current size: larger than the room, or not a multiple of 512. */
	assert_int_equal(vhdfooter_parse(f, 512, NULL), VHDFOOTER_BAD_DISK_SIZE);
	assert_int_equal(vhdfooter_parse(f, 1024, NULL), VHDFOOTER_OK);
	assert_int_equal(vhdfooter_parse(f, 1 << 20, NULL), VHDFOOTER_OK);
	memcpy(g, f, sizeof(g));
	g[55] = 1;
	reseal(g);
	assert_int_equal(vhdfooter_parse(g, 1 << 20, NULL), VHDFOOTER_BAD_DISK_SIZE);
	/* Not checked: features, data offset, geometry. */
	memcpy(g, f, sizeof(g));
	g[11] = 0;
	g[16] = 0;
	g[57] = 9;
	reseal(g);
	assert_int_equal(vhdfooter_parse(g, 1024, NULL), VHDFOOTER_OK);

	for (int e = VHDFOOTER_OK; e <= VHDFOOTER_BAD_DISK_SIZE; e++)
		assert_non_null(vhdfooter_strerror((enum vhdfooter_error)e));
}

/* The Hyper-V flavour: same checks pass; creator, host and geometry set;
 * a refused footer still has its fields decoded for the message. */
static void test_vhdfooter_hyperv_and_explain(void **state UNUSED)
{
	uint8_t f[VHDFOOTER_BYTES];
	struct vhdfooter v;
	char err[256];

	vhdfooter_build_hyperv(64u << 20, id, f);
	assert_int_equal(vhdfooter_parse(f, 64u << 20, &v), VHDFOOTER_OK);
	assert_string_equal(v.creator, "win ");
	assert_memory_equal(f + 36, "Wi2k", 4);
	/* 131072 sectors: 17 sectors per track, 8 heads, 963 cylinders. */
	assert_int_equal(vhdfooter_geometry(64u << 20), 963u << 16 | 8u << 8 | 17u);
	assert_int_equal(v.geometry, vhdfooter_geometry(64u << 20));
	/* The maximum: 65535 cylinders, 16 heads, 255 sectors. */
	assert_int_equal(vhdfooter_geometry(UINT64_C(1) << 40), 65535u << 16 | 16u << 8 | 255u);

	/* A dynamic disk: refused with its type in the message. */
	f[63] = 3;
	reseal(f);
	assert_int_equal(vhdfooter_parse(f, 64u << 20, &v), VHDFOOTER_NOT_FIXED);
	assert_int_equal(v.disk_type, 3);
	assert_int_equal(vhdfooter_explain(VHDFOOTER_NOT_FIXED, &v, (64u << 20) + 512, err,
					   sizeof(err)), -ENOTSUP);
	assert_non_null(strstr(err, "dynamic"));
	/* Too big for its file: both sizes in the message. */
	f[63] = 2;
	reseal(f);
	assert_int_equal(vhdfooter_parse(f, 1u << 20, &v), VHDFOOTER_BAD_DISK_SIZE);
	assert_int_equal(vhdfooter_explain(VHDFOOTER_BAD_DISK_SIZE, &v, (1u << 20) + 512, err,
					   sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "67108864"));
	assert_non_null(strstr(err, "1048576"));
}

static void test_vhdfooter_random_id(void **state UNUSED)
{
	uint8_t a[16], b[16];

	assert_int_equal(vhdfooter_random_id(a), 0);
	assert_int_equal(vhdfooter_random_id(b), 0);
	assert_memory_not_equal(a, b, 16);
	assert_int_equal(a[7] >> 4, 4);            /* version 4 (Data3, little-endian) */
	assert_int_equal(a[8] & 0xc0, 0x80);       /* RFC 4122 variant */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_vhdfooter_build_layout),
		cmocka_unit_test(test_vhdfooter_checks_in_order),
		cmocka_unit_test(test_vhdfooter_hyperv_and_explain),
		cmocka_unit_test(test_vhdfooter_random_id),
	};

	return cmocka_run_group_tests_name("vhdfooter", tests, NULL, NULL);
}
