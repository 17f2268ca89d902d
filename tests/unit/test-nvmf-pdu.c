/* SPDX-License-Identifier: MIT */
/*
 * test-nvmf-pdu.c: unit tests of the NVMe/TCP target's PDU framing
 * (nvmf/pdu.c): common header checks before and after ICReq, every PDU
 * type the host may send with and without digests, PDO and PLEN limits,
 * header digests, ICReq/ICResp fields, SGL descriptors, Connect data and
 * TermReq building. The byte layouts are the ones the Linux host sends
 * (docs/nvme.md, "The NVMe/TCP target").
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "common/endian.h"
#include "nvmf/pdu.h"

static const struct nvmf_pdu_cfg cfg_plain = {
	.ic_done = true, .max_icd = 8192, .max_h2c = 131072,
};
static const struct nvmf_pdu_cfg cfg_dgst = {
	.ic_done = true, .hdgst = true, .ddgst = true, .max_icd = 8192, .max_h2c = 131072,
};

static void ch(uint8_t *p, uint8_t type, uint8_t flags, uint8_t hlen, uint8_t pdo, uint32_t plen)
{
	nvmf_put_ch(p, type, flags, hlen, pdo, plen);
}

/* Expects a framing error with @fes and @fei. */
static void expect_err(const uint8_t *p, const struct nvmf_pdu_cfg *cfg, uint16_t fes,
		       uint32_t fei)
{
	struct nvmf_pdu_layout l;
	struct nvmf_pdu_err e;

	assert_int_equal(nvmf_pdu_check_ch(p, cfg, &l, &e), -EPROTO);
	assert_int_equal(e.fes, fes);
	assert_int_equal(e.fei, fei);
	assert_non_null(e.why);
}

/* The common header of @p passes @cfg with @hdr header and @data data
 * bytes; the layout is left in @l for the next checks. */
static void expect_layout(const uint8_t *p, const struct nvmf_pdu_cfg *cfg,
			  struct nvmf_pdu_layout *l, uint32_t hdr, uint32_t data)
{
	struct nvmf_pdu_err e;

	assert_int_equal(nvmf_pdu_check_ch(p, cfg, l, &e), 0);
	assert_int_equal(l->hdr_bytes, hdr);
	assert_int_equal(l->data_bytes, data);
}

static void test_nvmf_pdu_icreq(void **state)
{
	struct nvmf_pdu_cfg cfg = { .max_icd = 8192, .max_h2c = 131072 };
	struct nvmf_pdu_layout l;
	struct nvmf_pdu_err e;
	struct nvmf_icreq ic;
	uint8_t p[128], r[128];

	(void)state;
	/* The Linux host's ICReq with -g -G (DGST 3). */
	memset(p, 0, sizeof(p));
	ch(p, NVMF_PDU_ICREQ, 0, 128, 0, 128);
	p[11] = 3;
	expect_layout(p, &cfg, &l, 128, 0);
	assert_int_equal(nvmf_pdu_check_hdr(p, &l, &cfg, &e), 0);
	nvmf_icreq_parse(p, &ic);
	assert_true(ic.hdgst && ic.ddgst);
	assert_int_equal(ic.pfv, 0);
	/* PFV 1 and HPDA 32 are refused with the field's offset. */
	p[8] = 1;
	assert_int_equal(nvmf_pdu_check_hdr(p, &l, &cfg, &e), -EPROTO);
	assert_int_equal(e.fes, NVMF_FES_UNSUPPORTED);
	assert_int_equal(e.fei, 8);
	p[8] = 0;
	p[10] = 32;
	assert_int_equal(nvmf_pdu_check_hdr(p, &l, &cfg, &e), -EPROTO);
	assert_int_equal(e.fei, 10);
	/* Anything else first is a sequence error; a bad HLEN/PLEN/PDO a header error. */
	ch(p, NVMF_PDU_CAPSULE_CMD, 0, 72, 0, 72);
	expect_err(p, &cfg, NVMF_FES_SEQUENCE, 0);
	ch(p, NVMF_PDU_ICREQ, 0, 127, 0, 128);
	expect_err(p, &cfg, NVMF_FES_INVALID_HEADER, 2);
	ch(p, NVMF_PDU_ICREQ, 0, 128, 0, 129);
	expect_err(p, &cfg, NVMF_FES_INVALID_HEADER, 4);
	ch(p, NVMF_PDU_ICREQ, 0, 128, 8, 128);
	expect_err(p, &cfg, NVMF_FES_INVALID_HEADER, 3);
	/* After the exchange, another ICReq is a sequence error. */
	ch(p, NVMF_PDU_ICREQ, 0, 128, 0, 128);
	expect_err(p, &cfg_plain, NVMF_FES_SEQUENCE, 0);
	/* ICResp mirrors the digests, CPDA 0, MAXH2CDATA. */
	nvmf_icresp_build(r, true, false, 131072);
	assert_int_equal(r[0], NVMF_PDU_ICRESP);
	assert_int_equal(r[2], 128);
	assert_int_equal(ds_get_le32(r + 4), 128);
	assert_int_equal(r[10], 0);
	assert_int_equal(r[11], 1);
	assert_int_equal(ds_get_le32(r + 12), 131072);
}

static void test_nvmf_pdu_capsule(void **state)
{
	struct nvmf_pdu_layout l;
	struct nvmf_pdu_err e;
	uint8_t p[NVMF_HDR_MAX];

	(void)state;
	/* No data, no digests: 72 bytes. */
	ch(p, NVMF_PDU_CAPSULE_CMD, 0, 72, 0, 72);
	expect_layout(p, &cfg_plain, &l, 72, 0);
	/* In-capsule data at PDO 72 (a 4 KiB write). */
	ch(p, NVMF_PDU_CAPSULE_CMD, 0, 72, 72, 72 + 4096);
	expect_layout(p, &cfg_plain, &l, 72, 4096);
	assert_int_equal(l.ddgst_bytes, 0);
	/* With both digests: PDO 76, DDGST at the end. */
	ch(p, NVMF_PDU_CAPSULE_CMD, NVMF_FLAG_HDGST | NVMF_FLAG_DDGST, 72, 76, 76 + 1024 + 4);
	expect_layout(p, &cfg_dgst, &l, 76, 1024);
	assert_int_equal(l.ddgst_bytes, 4);
	/* No data with digests: 76 bytes, HDGSTF only. */
	ch(p, NVMF_PDU_CAPSULE_CMD, NVMF_FLAG_HDGST, 72, 0, 76);
	assert_int_equal(nvmf_pdu_check_ch(p, &cfg_dgst, &l, &e), 0);
	assert_int_equal(l.hdr_bytes, 76);
	/* Flags that disagree with the negotiation. */
	ch(p, NVMF_PDU_CAPSULE_CMD, 0, 72, 0, 76);
	expect_err(p, &cfg_dgst, NVMF_FES_INVALID_HEADER, 1);
	ch(p, NVMF_PDU_CAPSULE_CMD, NVMF_FLAG_HDGST, 72, 0, 76);
	expect_err(p, &cfg_plain, NVMF_FES_INVALID_HEADER, 1);
	ch(p, NVMF_PDU_CAPSULE_CMD, NVMF_FLAG_DDGST, 72, 72, 72 + 8);
	expect_err(p, &cfg_plain, NVMF_FES_INVALID_HEADER, 1);
	ch(p, NVMF_PDU_CAPSULE_CMD, NVMF_FLAG_HDGST, 72, 76, 76 + 512);
	expect_err(p, &cfg_dgst, NVMF_FES_INVALID_HEADER, 1);
	ch(p, NVMF_PDU_CAPSULE_CMD, NVMF_FLAG_LAST, 72, 0, 72);
	expect_err(p, &cfg_plain, NVMF_FES_INVALID_HEADER, 1);
	/* HLEN, PDO, PLEN. */
	ch(p, NVMF_PDU_CAPSULE_CMD, 0, 24, 0, 24);
	expect_err(p, &cfg_plain, NVMF_FES_INVALID_HEADER, 2);
	ch(p, NVMF_PDU_CAPSULE_CMD, 0, 72, 0, 73);
	expect_err(p, &cfg_plain, NVMF_FES_INVALID_HEADER, 4);
	ch(p, NVMF_PDU_CAPSULE_CMD, 0, 72, 0, UINT32_MAX);
	expect_err(p, &cfg_plain, NVMF_FES_INVALID_HEADER, 4);
	ch(p, NVMF_PDU_CAPSULE_CMD, 0, 72, 64, 64 + 512);
	expect_err(p, &cfg_plain, NVMF_FES_INVALID_HEADER, 3);
	ch(p, NVMF_PDU_CAPSULE_CMD, 0, 72, 74, 74 + 512);
	expect_err(p, &cfg_plain, NVMF_FES_INVALID_HEADER, 3);
	ch(p, NVMF_PDU_CAPSULE_CMD, 0, 72, 72, 72);
	expect_err(p, &cfg_plain, NVMF_FES_INVALID_HEADER, 4);
	/* More in-capsule data than the queue takes. */
	ch(p, NVMF_PDU_CAPSULE_CMD, 0, 72, 72, 72 + 8192 + 4);
	expect_err(p, &cfg_plain, NVMF_FES_LIMIT, 0);
	/* Padding up to an aligned PDO is allowed. */
	ch(p, NVMF_PDU_CAPSULE_CMD, 0, 72, 128, 128 + 512);
	expect_layout(p, &cfg_plain, &l, 128, 512);
}

static void test_nvmf_pdu_h2c(void **state)
{
	struct nvmf_pdu_layout l;
	struct nvmf_pdu_err e;
	uint8_t p[NVMF_HDR_MAX];

	(void)state;
	memset(p, 0, sizeof(p));
	ch(p, NVMF_PDU_H2C_DATA, NVMF_FLAG_LAST, 24, 24, 24 + 65536);
	ds_put_le32(p + 16, 65536);
	expect_layout(p, &cfg_plain, &l, 24, 65536);
	assert_int_equal(nvmf_pdu_check_hdr(p, &l, &cfg_plain, &e), 0);
	/* DATAL must match what PLEN carries. */
	ds_put_le32(p + 16, 4096);
	assert_int_equal(nvmf_pdu_check_hdr(p, &l, &cfg_plain, &e), -EPROTO);
	assert_int_equal(e.fei, 16);
	/* Over MAXH2CDATA; without data; SUCCESS from the host. */
	ch(p, NVMF_PDU_H2C_DATA, 0, 24, 24, 24 + 131072 + 4);
	expect_err(p, &cfg_plain, NVMF_FES_LIMIT, 0);
	ch(p, NVMF_PDU_H2C_DATA, 0, 24, 0, 24);
	expect_err(p, &cfg_plain, NVMF_FES_INVALID_HEADER, 3);
	ch(p, NVMF_PDU_H2C_DATA, NVMF_FLAG_SUCCESS, 24, 24, 24 + 512);
	expect_err(p, &cfg_plain, NVMF_FES_INVALID_HEADER, 1);
	/* With digests: PDO 28 (observed). */
	ch(p, NVMF_PDU_H2C_DATA, NVMF_FLAG_HDGST | NVMF_FLAG_DDGST, 24, 28, 28 + 4096 + 4);
	expect_layout(p, &cfg_dgst, &l, 28, 4096);
	assert_int_equal(l.ddgst_bytes, 4);
}

static void test_nvmf_pdu_types(void **state)
{
	struct nvmf_pdu_layout l;
	struct nvmf_pdu_err e;
	uint8_t p[NVMF_HDR_MAX];

	(void)state;
	/* Controller-to-host types and unknown ones from a host. */
	for (unsigned t = 0; t < 256; t++) {
		if (t == NVMF_PDU_CAPSULE_CMD || t == NVMF_PDU_H2C_DATA || t == NVMF_PDU_H2C_TERM)
			continue;
		ch(p, (uint8_t)t, 0, 24, 0, 24);
		expect_err(p, &cfg_plain, t == NVMF_PDU_ICREQ ? NVMF_FES_SEQUENCE
					  : NVMF_FES_INVALID_HEADER, 0);
	}
	/* H2CTermReq: no digests even when negotiated, data up to 128 bytes. */
	ch(p, NVMF_PDU_H2C_TERM, 0, 24, 0, 24 + 72);
	expect_layout(p, &cfg_dgst, &l, 24, 72);
	assert_int_equal(nvmf_pdu_check_hdr(p, &l, &cfg_dgst, &e), 0);
	ch(p, NVMF_PDU_H2C_TERM, 0, 24, 0, 24 + 129);
	expect_err(p, &cfg_plain, NVMF_FES_INVALID_HEADER, 4);
	ch(p, NVMF_PDU_H2C_TERM, 0, 72, 0, 72);
	expect_err(p, &cfg_plain, NVMF_FES_INVALID_HEADER, 2);
}

static void test_nvmf_pdu_hdgst(void **state)
{
	struct nvmf_pdu_layout l;
	struct nvmf_pdu_err e;
	uint8_t p[NVMF_HDR_MAX];
	uint32_t d;

	(void)state;
	memset(p, 0, sizeof(p));
	ch(p, NVMF_PDU_CAPSULE_CMD, NVMF_FLAG_HDGST, 72, 0, 76);
	p[8] = 0x06;                            /* Identify */
	d = nvmf_digest(p, 72);
	ds_put_le32(p + 72, d);
	assert_int_equal(nvmf_pdu_check_ch(p, &cfg_dgst, &l, &e), 0);
	assert_int_equal(nvmf_pdu_check_hdr(p, &l, &cfg_dgst, &e), 0);
	/* One bit off: FEI carries the digest received. */
	p[20] ^= 1;
	assert_int_equal(nvmf_pdu_check_hdr(p, &l, &cfg_dgst, &e), -EPROTO);
	assert_int_equal(e.fes, NVMF_FES_HDGST);
	assert_int_equal(e.fei, d);
	/* CRC32C check value (RFC 3720 B.4: 32 bytes of zeroes). */
	memset(p, 0, 32);
	assert_int_equal(nvmf_digest(p, 32), 0x8a9136aa);
}

static void test_nvmf_pdu_sgl(void **state)
{
	uint8_t q[64];
	struct nvmf_sgl s;

	(void)state;
	memset(q, 0, sizeof(q));
	ds_put_le32(q + 32, 4096);
	q[39] = 0x5A;
	assert_int_equal(nvmf_sgl_parse(q, &s), 0);
	assert_false(s.in_capsule);
	assert_int_equal(s.len, 4096);
	q[39] = 0x01;
	assert_int_equal(nvmf_sgl_parse(q, &s), 0);
	assert_true(s.in_capsule);
	q[39] = 0x00;
	assert_int_equal(nvmf_sgl_parse(q, &s), -EINVAL);
	q[39] = 0x20;
	assert_int_equal(nvmf_sgl_parse(q, &s), -EINVAL);
}

static void test_nvmf_pdu_connect(void **state)
{
	static const char sub[] = "nqn.2026-12.org.diskstack:x";
	static const char host[] = "nqn.2014-08.org.nvmexpress:uuid:6957";
	uint8_t q[64], d[NVMF_CONNECT_DATA_BYTES];
	struct nvmf_connect c;
	uint16_t off;
	bool in_data;

	(void)state;
	memset(q, 0, sizeof(q));
	memset(d, 0, sizeof(d));
	/* The Linux host's admin Connect: qid 0, sqsize 31, kato 5000. */
	ds_put_le16(q + 42, 0);
	ds_put_le16(q + 44, 31);
	ds_put_le32(q + 48, 5000);
	for (unsigned i = 0; i < 16; i++)
		d[i] = (uint8_t)(0xa0 + i);
	ds_put_le16(d + 16, 0xffff);
	memcpy(d + 256, sub, sizeof(sub));
	memcpy(d + 512, host, sizeof(host));
	assert_int_equal(nvmf_connect_parse(q, d, &c, &off, &in_data), 0);
	assert_int_equal(c.sqsize, 31);
	assert_int_equal(c.kato_ms, 5000);
	assert_int_equal(c.cntlid, 0xffff);
	assert_int_equal(c.hostid[15], 0xaf);
	assert_string_equal(c.subnqn, sub);
	assert_string_equal(c.hostnqn, host);
	/* An NQN without its NUL, an empty one, a bad record format. */
	memset(d + 512, 'a', 256);
	assert_int_equal(nvmf_connect_parse(q, d, &c, &off, &in_data), -EINVAL);
	assert_int_equal(off, 512);
	assert_true(in_data);
	memset(d + 256, 0, 256);
	assert_int_equal(nvmf_connect_parse(q, d, &c, &off, &in_data), -EINVAL);
	assert_int_equal(off, 256);
	ds_put_le16(q + 40, 1);
	assert_int_equal(nvmf_connect_parse(q, d, &c, &off, &in_data), -EINVAL);
	assert_int_equal(off, 40);
	assert_false(in_data);
}

static void test_nvmf_pdu_term(void **state)
{
	struct nvmf_pdu_err e = { NVMF_FES_INVALID_HEADER, 2, "x" };
	uint8_t bad[200], p[NVMF_TERM_HLEN + NVMF_TERM_MAX_DATA];
	uint32_t n;

	(void)state;
	memset(bad, 0x5c, sizeof(bad));
	n = nvmf_term_build(p, &e, bad, 72);
	assert_int_equal(n, 24 + 72);
	assert_int_equal(p[0], NVMF_PDU_C2H_TERM);
	assert_int_equal(p[2], 24);
	assert_int_equal(ds_get_le32(p + 4), 96);
	assert_int_equal(ds_get_le16(p + 8), 1);
	assert_int_equal(ds_get_le32(p + 10), 2);
	assert_memory_equal(p + 24, bad, 72);
	/* The echo is cut to 128 bytes (PLEN at most 152). */
	n = nvmf_term_build(p, &e, bad, sizeof(bad));
	assert_int_equal(n, 152);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_nvmf_pdu_icreq),
		cmocka_unit_test(test_nvmf_pdu_capsule),
		cmocka_unit_test(test_nvmf_pdu_h2c),
		cmocka_unit_test(test_nvmf_pdu_types),
		cmocka_unit_test(test_nvmf_pdu_hdgst),
		cmocka_unit_test(test_nvmf_pdu_sgl),
		cmocka_unit_test(test_nvmf_pdu_connect),
		cmocka_unit_test(test_nvmf_pdu_term),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
