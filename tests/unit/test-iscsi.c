/* SPDX-License-Identifier: MIT */
/*
 * test-iscsi.c: unit tests of the iSCSI target's pure parts: CRC32C (the
 * test vectors of RFC 3720 appendix B.4, hardware against tables), PDU
 * framing and digests, key=value text, the negotiation table of RFC 7143
 * §13, and the login state machine with CHAP (one-way, mutual, failures).
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "common/crc32c.h"
#include "iscsi/login.h"
#include "iscsi/pdu.h"

/* ---- CRC32C ---------------------------------------------------------------- */

static void test_iscsi_crc32c_vectors(void **state)
{
	uint8_t buf[32];
	/* RFC 3720 B.4: an iSCSI SCSI Read (10) Command PDU. */
	static const uint8_t read10[48] = {
		0x01, 0xc0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
		0x00, 0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00,
		0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x18, 0x28, 0x00, 0x00, 0x00,
		0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	};

	(void)state;
	memset(buf, 0, sizeof(buf));
	assert_int_equal(crc32c(0, buf, 32), 0x8a9136aa);
	assert_int_equal(crc32c_sw(0, buf, 32), 0x8a9136aa);
	memset(buf, 0xff, sizeof(buf));
	assert_int_equal(crc32c(0, buf, 32), 0x62a8ab43);
	for (int i = 0; i < 32; i++)
		buf[i] = (uint8_t)i;
	assert_int_equal(crc32c(0, buf, 32), 0x46dd794e);
	for (int i = 0; i < 32; i++)
		buf[i] = (uint8_t)(31 - i);
	assert_int_equal(crc32c(0, buf, 32), 0x113fdb5c);
	assert_int_equal(crc32c(0, read10, 48), 0xd9963a56);
	assert_int_equal(crc32c(0, "123456789", 9), 0xe3069283);
}

/* Any split, alignment and length: the fast path equals the tables. */
static void test_iscsi_crc32c_pieces(void **state)
{
	uint8_t buf[4099];
	unsigned seed = 12345;

	(void)state;
	for (size_t i = 0; i < sizeof(buf); i++) {
		seed = seed * 1103515245u + 12345u;
		buf[i] = (uint8_t)(seed >> 16);
	}
	for (size_t off = 0; off < 9; off++) {
		for (size_t len = 0; len < 200; len += 7) {
			uint32_t whole = crc32c_sw(0, buf + off, len);

			assert_int_equal(crc32c(0, buf + off, len), whole);
			for (size_t cut = 0; cut <= len; cut += 13)
				assert_int_equal(crc32c(crc32c(0, buf + off, cut), buf + off + cut,
							len - cut), whole);
		}
	}
	assert_int_equal(crc32c(0, buf, sizeof(buf)), crc32c_sw(0, buf, sizeof(buf)));
}

/* ---- framing ----------------------------------------------------------------- */

static void put_le32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

static void test_iscsi_pdu_frame(void **state)
{
	uint8_t pdu[48 + 4 + 8 + 4];
	struct iscsi_digests none = { false, false }, both = { true, true };
	struct iscsi_pdu p;
	enum iscsi_frame_error err;
	size_t need;

	(void)state;
	memset(pdu, 0, sizeof(pdu));
	pdu[0] = ISCSI_OP_NOP_OUT | ISCSI_OPCODE_I;
	iscsi_bhs_set_dlen(pdu, 5);
	/* Without digests: 48 + 5 + 3 padding. */
	assert_int_equal(iscsi_pdu_frame(pdu, 20, &none, 8192, &p, &need, &err), 0);
	assert_int_equal(need, ISCSI_BHS_BYTES);
	assert_int_equal(iscsi_pdu_frame(pdu, 50, &none, 8192, &p, &need, &err), 0);
	assert_int_equal(need, 56);
	assert_int_equal(iscsi_pdu_frame(pdu, 56, &none, 8192, &p, &need, &err), 56);
	assert_int_equal(p.dlen, 5);
	assert_ptr_equal(p.data, pdu + 48);
	/* With digests: 48 + 4 + 8 + 4. */
	memcpy(pdu + 52, "hello\0\0\0", 8);
	put_le32(pdu + 48, crc32c(0, pdu, 48));
	put_le32(pdu + 60, crc32c(0, pdu + 52, 8));
	assert_int_equal(iscsi_pdu_frame(pdu, sizeof(pdu), &both, 8192, &p, &need, &err), 64);
	assert_false(p.data_digest_bad);
	assert_memory_equal(p.data, "hello", 5);
	pdu[60] ^= 1;
	assert_int_equal(iscsi_pdu_frame(pdu, sizeof(pdu), &both, 8192, &p, &need, &err), 64);
	assert_true(p.data_digest_bad);
	pdu[48] ^= 1;
	assert_int_equal(iscsi_pdu_frame(pdu, sizeof(pdu), &both, 8192, &p, &need, &err), -EPROTO);
	assert_int_equal(err, ISCSI_FRAME_HEADER_DIGEST);
	/* Longer than we declared; an AHS where none belongs. */
	iscsi_bhs_set_dlen(pdu, 8193);
	assert_int_equal(iscsi_pdu_frame(pdu, 48, &none, 8192, &p, &need, &err), -EPROTO);
	assert_int_equal(err, ISCSI_FRAME_TOO_LONG);
	iscsi_bhs_set_dlen(pdu, 0);
	pdu[4] = 1;
	assert_int_equal(iscsi_pdu_frame(pdu, 52, &none, 8192, &p, &need, &err), -EPROTO);
	assert_int_equal(err, ISCSI_FRAME_BAD_AHS);
}

static void test_iscsi_pdu_extended_cdb(void **state)
{
	uint8_t pdu[48 + 20];
	struct iscsi_digests none = { false, false };
	uint8_t cdb[32];
	struct iscsi_pdu p;
	enum iscsi_frame_error err;
	size_t need;

	(void)state;
	memset(pdu, 0, sizeof(pdu));
	pdu[0] = ISCSI_OP_SCSI_CMD;
	pdu[4] = 5;             /* 20 bytes of AHS */
	for (int i = 0; i < 16; i++)
		pdu[32 + i] = (uint8_t)i;
	/* A 32-byte CDB: AHSLength 17 (CDB length - 15), type 1, reserved,
	 * then bytes 16..31. */
	ds_put_be16(pdu + 48, 17);
	pdu[50] = 1;
	for (int i = 0; i < 16; i++)
		pdu[52 + i] = (uint8_t)(16 + i);
	assert_int_equal(iscsi_pdu_frame(pdu, sizeof(pdu), &none, 8192, &p, &need, &err), 68);
	assert_int_equal(iscsi_pdu_cdb(&p, cdb, sizeof(cdb)), 32);
	for (int i = 0; i < 32; i++)
		assert_int_equal(cdb[i], i);
	/* Does not fit, or is malformed. */
	assert_int_equal(iscsi_pdu_cdb(&p, cdb, 20), -EINVAL);
	ds_put_be16(pdu + 48, 40);
	assert_int_equal(iscsi_pdu_cdb(&p, cdb, sizeof(cdb)), -EINVAL);
}

/* ---- text and negotiation -------------------------------------------------------- */

static void test_iscsi_kv_parse(void **state)
{
	static const char text[] = "A=1\0Bee=two words\0\0C=\0NoEquals\0";
	struct iscsi_kv kv;
	size_t off = 0;
	uint8_t bin[8];
	uint64_t n;

	(void)state;
	assert_int_equal(iscsi_kv_next(text, sizeof(text) - 1, &off, &kv), 1);
	assert_true(iscsi_kv_is(&kv, "A"));
	assert_int_equal(kv.val_len, 1);
	assert_int_equal(iscsi_kv_next(text, sizeof(text) - 1, &off, &kv), 1);
	assert_true(iscsi_kv_is(&kv, "Bee"));
	assert_memory_equal(kv.val, "two words", 9);
	assert_int_equal(iscsi_kv_next(text, sizeof(text) - 1, &off, &kv), 1);
	assert_int_equal(kv.val_len, 0);
	assert_int_equal(iscsi_kv_next(text, sizeof(text) - 1, &off, &kv), -EINVAL);
	/* Numbers and binary values (RFC 7143 §6.1). */
	assert_int_equal(iscsi_parse_number("262144", 6, &n), 0);
	assert_int_equal(n, 262144);
	assert_int_equal(iscsi_parse_number("0x10", 4, &n), 0);
	assert_int_equal(n, 16);
	assert_int_equal(iscsi_parse_number("12a", 3, &n), -EINVAL);
	assert_int_equal(iscsi_parse_number("99999999999999999999999", 23, &n), -EINVAL);
	assert_int_equal(iscsi_parse_binary("0x0a0B", 6, bin, sizeof(bin)), 2);
	assert_int_equal(bin[0], 0x0a);
	assert_int_equal(bin[1], 0x0b);
	assert_int_equal(iscsi_parse_binary("0xabc", 5, bin, sizeof(bin)), 2);
	assert_int_equal(bin[0], 0x0a);
	assert_int_equal(bin[1], 0xbc);
	assert_int_equal(iscsi_parse_binary("0bAQID", 6, bin, sizeof(bin)), 3);
	assert_int_equal(bin[2], 3);
	assert_int_equal(iscsi_parse_binary("0x", 2, bin, sizeof(bin)), -EINVAL);
}

/* One negotiation: the answer to "key=offer" in @phase. */
static const char *negotiate(const char *pair, enum iscsi_neg_phase phase, struct iscsi_params *p,
			     enum iscsi_neg_result *res)
{
	static char answer[256];
	struct iscsi_text out = { 0 };
	struct iscsi_kv kv;
	size_t off = 0;

	assert_int_equal(iscsi_kv_next(pair, strlen(pair), &off, &kv), 1);
	*res = iscsi_negotiate(&kv, phase, p, &out);
	snprintf(answer, sizeof(answer), "%.*s", (int)out.len, out.len ? out.buf : "");
	iscsi_text_free(&out);
	return answer;
}

static void test_iscsi_negotiate_table(void **state)
{
	static const struct {
		const char *offer, *answer;
	} cases[] = {
		{ "HeaderDigest=None,CRC32C", "HeaderDigest=None" },
		{ "HeaderDigest=CRC32C,None", "HeaderDigest=CRC32C" },
		{ "DataDigest=MD5", "DataDigest=Reject" },
		{ "InitialR2T=No", "InitialR2T=No" },          /* OR with our No */
		{ "InitialR2T=Yes", "InitialR2T=Yes" },
		{ "ImmediateData=Yes", "ImmediateData=Yes" },  /* AND with our Yes */
		{ "ImmediateData=No", "ImmediateData=No" },
		{ "ImmediateData=Maybe", "ImmediateData=Reject" },
		{ "MaxBurstLength=262144", "MaxBurstLength=262144" },
		{ "MaxBurstLength=16776192", "MaxBurstLength=16776192" },
		{ "MaxBurstLength=100", "MaxBurstLength=Reject" },     /* under 512 */
		{ "FirstBurstLength=16776192", "FirstBurstLength=262144" },
		{ "MaxOutstandingR2T=1", "MaxOutstandingR2T=1" },
		{ "MaxOutstandingR2T=64", "MaxOutstandingR2T=16" },
		{ "DataPDUInOrder=No", "DataPDUInOrder=Yes" },
		{ "DataSequenceInOrder=No", "DataSequenceInOrder=Yes" },
		{ "ErrorRecoveryLevel=2", "ErrorRecoveryLevel=0" },
		{ "DefaultTime2Wait=0", "DefaultTime2Wait=2" },        /* maximum */
		{ "DefaultTime2Retain=20", "DefaultTime2Retain=0" },   /* minimum */
		{ "MaxConnections=8", "MaxConnections=1" },
		{ "IFMarker=No", "IFMarker=Reject" },
		{ "OFMarker=No", "OFMarker=Reject" },
		{ "IFMarkInt=2048~8192", "IFMarkInt=Reject" },
		{ "OFMarkInt=2048", "OFMarkInt=Reject" },
		{ "X-com.example.Foo=1", "X-com.example.Foo=NotUnderstood" },
		{ "Nonsense=1", "Nonsense=NotUnderstood" },
		{ "TaskReporting=ResponseFence,RFC3720", "TaskReporting=RFC3720" },
		{ "iSCSIProtocolLevel=2", "iSCSIProtocolLevel=1" },
		{ "MaxRecvDataSegmentLength=65536", "" },              /* declarative */
		{ "InitiatorAlias=host", "" },
	};
	struct iscsi_params p;
	enum iscsi_neg_result res;

	(void)state;
	iscsi_params_default(&p);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *a = negotiate(cases[i].offer, ISCSI_NEG_LOGIN_NORMAL, &p, &res);

		if (strcmp(a, cases[i].answer) != 0)
			fail_msg("%s: answered '%s', expected '%s'", cases[i].offer, a, cases[i].answer);
		assert_int_equal(res, ISCSI_NEG_ANSWERED);
	}
	/* The results landed in the parameters. */
	assert_int_equal(p.max_recv_dsl, 65536);
	assert_int_equal(p.max_outstanding_r2t, 16);
	assert_true(p.data_pdu_in_order);
	assert_int_equal(p.max_connections, 1);
	assert_true(p.header_digest);
	/* Phases: irrelevant to discovery; only MRDSL after login. */
	assert_string_equal(negotiate("InitialR2T=No", ISCSI_NEG_LOGIN_DISCOVERY, &p, &res),
			    "InitialR2T=Irrelevant");
	assert_string_equal(negotiate("MaxBurstLength=512", ISCSI_NEG_FULL_FEATURE, &p, &res),
			    "MaxBurstLength=Reject");
	assert_string_equal(negotiate("MaxRecvDataSegmentLength=8192", ISCSI_NEG_FULL_FEATURE, &p,
				      &res), "");
	assert_int_equal(p.max_recv_dsl, 8192);
	negotiate("MaxRecvDataSegmentLength=100", ISCSI_NEG_LOGIN_NORMAL, &p, &res);
	assert_int_equal(res, ISCSI_NEG_FATAL);
	negotiate("TargetName=iqn.x", ISCSI_NEG_LOGIN_NORMAL, &p, &res);
	assert_int_equal(res, ISCSI_NEG_NOT_MINE);
}

/* ---- login ------------------------------------------------------------------------- */

static void *find_target(void *ctx, const char *name)
{
	return strcmp(name, "iqn.2026-12.org.diskstack:t") == 0 ? ctx : NULL;
}

static int target_handle;

struct login_rig {
	struct iscsi_login l;
	uint8_t rsp[48];
	char text[8192];
	size_t text_len;
};

static void rig_init(struct login_rig *g, const struct iscsi_chap *chap)
{
	struct iscsi_login_cfg cfg = {
		.chap = chap, .tpgt = 1, .tsih = 0x42, .statsn = 7,
		.find_target = find_target, .ctx = &target_handle,
	};

	iscsi_login_init(&g->l, &cfg);
}

/* Sends a Login Request (keys separated by '|'). */
static enum iscsi_login_state rig_step(struct login_rig *g, int csg, int nsg, bool transit,
				       const char *keys)
{
	uint8_t bhs[48] = { 0 };
	char data[4096];
	size_t dlen = strlen(keys);
	const uint8_t *rdata;
	size_t rdlen;
	enum iscsi_login_state st;

	bhs[0] = ISCSI_OP_LOGIN_REQ | ISCSI_OPCODE_I;
	bhs[1] = (uint8_t)((transit ? ISCSI_LOGIN_T : 0) | (csg << 2) | nsg);
	memcpy(bhs + 8, "\x80\x01\x02\x03\x04\x05", 6);
	ds_put_be32(bhs + 16, 0x1234);
	ds_put_be32(bhs + 24, 100);
	memcpy(data, keys, dlen);
	for (size_t i = 0; i < dlen; i++)
		if (data[i] == '|')
			data[i] = '\0';
	data[dlen] = '\0';
	st = iscsi_login_step(&g->l, bhs, (const uint8_t *)data, dlen ? dlen + 1 : 0, g->rsp,
			      &rdata, &rdlen);
	assert_true(rdlen < sizeof(g->text));
	memcpy(g->text, rdata ? (const char *)rdata : "", rdlen);
	g->text_len = rdlen;
	return st;
}

/* The answer's value of @key ("" if absent). */
static const char *rig_get(struct login_rig *g, const char *key)
{
	static char v[1024];
	struct iscsi_kv kv;
	size_t off = 0;

	while (iscsi_kv_next(g->text, g->text_len, &off, &kv) > 0) {
		if (iscsi_kv_is(&kv, key)) {
			snprintf(v, sizeof(v), "%.*s", (int)kv.val_len, kv.val);
			return v;
		}
	}
	return "";
}

#define NAMES "InitiatorName=iqn.1994-05.com.example:i|TargetName=iqn.2026-12.org.diskstack:t"

static void test_iscsi_login_plain(void **state)
{
	struct login_rig g;

	(void)state;
	rig_init(&g, NULL);
	assert_int_equal(rig_step(&g, 1, 3, true, NAMES "|HeaderDigest=None,CRC32C|"
				  "InitialR2T=No|MaxRecvDataSegmentLength=131072|IFMarker=No"),
			 ISCSI_LOGIN_DONE);
	assert_int_equal(g.rsp[0], ISCSI_OP_LOGIN_RSP);
	assert_int_equal(g.rsp[1], ISCSI_LOGIN_T | (1 << 2) | 3);
	assert_int_equal(ds_get_be16(g.rsp + 14), 0x42);        /* TSIH in the final answer */
	assert_int_equal(ds_get_be32(g.rsp + 16), 0x1234);
	assert_int_equal(ds_get_be32(g.rsp + 24), 7);           /* StatSN */
	assert_int_equal(ds_get_be32(g.rsp + 28), 100);         /* ExpCmdSN */
	assert_int_equal(g.rsp[36], 0);
	assert_string_equal(rig_get(&g, "HeaderDigest"), "None");
	assert_string_equal(rig_get(&g, "TargetPortalGroupTag"), "1");
	assert_string_equal(rig_get(&g, "MaxRecvDataSegmentLength"), "262144");
	assert_string_equal(rig_get(&g, "IFMarker"), "Reject");
	assert_int_equal(g.l.params.max_recv_dsl, 131072);
	assert_false(g.l.params.initial_r2t);
	assert_ptr_equal(g.l.target, &target_handle);
	assert_int_equal(g.l.statsn, 8);
	iscsi_login_release(&g.l);
}

static void test_iscsi_login_failures(void **state)
{
	struct login_rig g;

	(void)state;
	rig_init(&g, NULL);
	assert_int_equal(rig_step(&g, 1, 3, true, "TargetName=iqn.2026-12.org.diskstack:t"),
			 ISCSI_LOGIN_FAILED);
	assert_int_equal(g.rsp[36], 2);
	assert_int_equal(g.rsp[37], 7);         /* missing parameter */
	iscsi_login_release(&g.l);

	rig_init(&g, NULL);
	assert_int_equal(rig_step(&g, 1, 3, true, "InitiatorName=iqn.x:i|TargetName=iqn.nope:t"),
			 ISCSI_LOGIN_FAILED);
	assert_int_equal(g.rsp[37], 3);         /* not found */
	iscsi_login_release(&g.l);

	rig_init(&g, NULL);
	assert_int_equal(rig_step(&g, 1, 3, true, "InitiatorName=iqn.x:i|SessionType=Weird"),
			 ISCSI_LOGIN_FAILED);
	assert_int_equal(g.rsp[37], 9);
	iscsi_login_release(&g.l);

	/* Out of order: the next request claims another stage. */
	rig_init(&g, NULL);
	assert_int_equal(rig_step(&g, 0, 1, false, NAMES "|AuthMethod=None"), ISCSI_LOGIN_CONTINUE);
	assert_int_equal(rig_step(&g, 1, 3, true, ""), ISCSI_LOGIN_FAILED);
	assert_int_equal(g.rsp[36], 2);
	iscsi_login_release(&g.l);

	/* Discovery needs no target; keys irrelevant to it say so. */
	rig_init(&g, NULL);
	assert_int_equal(rig_step(&g, 1, 3, true, "InitiatorName=iqn.x:i|SessionType=Discovery|"
				  "InitialR2T=No"), ISCSI_LOGIN_DONE);
	assert_true(g.l.discovery);
	assert_string_equal(rig_get(&g, "InitialR2T"), "Irrelevant");
	assert_string_equal(rig_get(&g, "TargetPortalGroupTag"), "");
	iscsi_login_release(&g.l);
}

static void test_iscsi_login_multi_pdu(void **state)
{
	struct login_rig g;

	(void)state;
	rig_init(&g, NULL);
	/* C=1: the keys arrive in two pieces; the first gets an empty answer. */
	{
		uint8_t bhs[48] = { 0 };
		static const char part[] = "InitiatorName=iqn.x:i";
		const uint8_t *rdata;
		size_t rdlen;

		bhs[0] = ISCSI_OP_LOGIN_REQ | ISCSI_OPCODE_I;
		bhs[1] = ISCSI_FLAG_C | (1 << 2);
		memcpy(bhs + 8, "\x80\x01\x02\x03\x04\x05", 6);
		ds_put_be32(bhs + 16, 0x1234);
		assert_int_equal(iscsi_login_step(&g.l, bhs, (const uint8_t *)part, sizeof(part),
						  g.rsp, &rdata, &rdlen), ISCSI_LOGIN_CONTINUE);
		assert_int_equal(rdlen, 0);
	}
	assert_int_equal(rig_step(&g, 1, 3, true, "TargetName=iqn.2026-12.org.diskstack:t"),
			 ISCSI_LOGIN_DONE);
	assert_string_equal(g.l.initiator_name, "iqn.x:i");
	iscsi_login_release(&g.l);
}

static void hex(char *out, const uint8_t *b, size_t n)
{
	out += sprintf(out, "0x");
	for (size_t i = 0; i < n; i++)
		out += sprintf(out, "%02x", b[i]);
}

/* Runs CHAP up to the response; @secret is what the initiator uses. */
static enum iscsi_login_state chap_login(struct login_rig *g, const struct iscsi_chap *chap,
					 const char *user, const char *secret, bool mutual)
{
	uint8_t chal[64], resp[16];
	char keys[1024], rhex[40];
	uint64_t id;
	int clen;

	rig_init(g, chap);
	assert_int_equal(rig_step(g, 0, 1, true, NAMES "|AuthMethod=CHAP,None"),
			 ISCSI_LOGIN_CONTINUE);
	assert_string_equal(rig_get(g, "AuthMethod"), "CHAP");
	assert_int_equal(g->rsp[1] & ISCSI_LOGIN_T, 0);
	assert_int_equal(rig_step(g, 0, 1, true, "CHAP_A=7,5"), ISCSI_LOGIN_CONTINUE);
	assert_string_equal(rig_get(g, "CHAP_A"), "5");
	assert_int_equal(iscsi_parse_number(rig_get(g, "CHAP_I"), strlen(rig_get(g, "CHAP_I")),
					    &id), 0);
	clen = iscsi_parse_binary(rig_get(g, "CHAP_C"), strlen(rig_get(g, "CHAP_C")), chal,
				  sizeof(chal));
	assert_int_equal(clen, 16);
	assert_int_equal(iscsi_chap_response((uint8_t)id, secret, chal, (size_t)clen, resp), 0);
	hex(rhex, resp, 16);
	snprintf(keys, sizeof(keys), "CHAP_N=%s|CHAP_R=%s%s", user, rhex,
		 mutual ? "|CHAP_I=9|CHAP_C=0x00112233445566778899aabbccddeeff" : "");
	return rig_step(g, 0, 1, true, keys);
}

static void test_iscsi_login_chap(void **state)
{
	const struct iscsi_chap one = { .user = "alice", .secret = "secret-of-12" };
	const struct iscsi_chap both = { .user = "alice", .secret = "secret-of-12",
					 .target_user = "tgt", .target_secret = "target-secret" };
	struct login_rig g;
	uint8_t chal[16], want[16], got[16];
	char whex[40];

	(void)state;
	/* One-way: then the operational stage. */
	assert_int_equal(chap_login(&g, &one, "alice", "secret-of-12", false), ISCSI_LOGIN_CONTINUE);
	assert_int_equal(g.rsp[1], ISCSI_LOGIN_T | 1);
	assert_int_equal(rig_step(&g, 1, 3, true, "MaxBurstLength=65536"), ISCSI_LOGIN_DONE);
	iscsi_login_release(&g.l);
	/* Wrong secret, wrong user. */
	assert_int_equal(chap_login(&g, &one, "alice", "wrong-secret", false), ISCSI_LOGIN_FAILED);
	assert_int_equal(g.rsp[36], 2);
	assert_int_equal(g.rsp[37], 1);
	iscsi_login_release(&g.l);
	assert_int_equal(chap_login(&g, &one, "bob", "secret-of-12", false), ISCSI_LOGIN_FAILED);
	iscsi_login_release(&g.l);
	/* Mutual asked for but not configured; then configured. */
	assert_int_equal(chap_login(&g, &one, "alice", "secret-of-12", true), ISCSI_LOGIN_FAILED);
	iscsi_login_release(&g.l);
	assert_int_equal(chap_login(&g, &both, "alice", "secret-of-12", true), ISCSI_LOGIN_CONTINUE);
	assert_string_equal(rig_get(&g, "CHAP_N"), "tgt");
	for (int i = 0; i < 16; i++)
		chal[i] = (uint8_t)(i * 0x11);
	assert_int_equal(iscsi_chap_response(9, "target-secret", chal, 16, want), 0);
	hex(whex, want, 16);
	assert_int_equal(iscsi_parse_binary(rig_get(&g, "CHAP_R"), strlen(rig_get(&g, "CHAP_R")),
					    got, sizeof(got)), 16);
	assert_memory_equal(got, want, 16);
	iscsi_login_release(&g.l);
	/* CHAP required: skipping the security stage fails with 2/01. */
	rig_init(&g, &one);
	assert_int_equal(rig_step(&g, 1, 3, true, NAMES), ISCSI_LOGIN_FAILED);
	assert_int_equal(g.rsp[37], 1);
	iscsi_login_release(&g.l);
	rig_init(&g, &one);
	assert_int_equal(rig_step(&g, 0, 1, true, NAMES "|AuthMethod=None"), ISCSI_LOGIN_FAILED);
	assert_string_equal(rig_get(&g, "AuthMethod"), "");
	assert_int_equal(g.rsp[37], 1);
	iscsi_login_release(&g.l);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_iscsi_crc32c_vectors),
		cmocka_unit_test(test_iscsi_crc32c_pieces),
		cmocka_unit_test(test_iscsi_pdu_frame),
		cmocka_unit_test(test_iscsi_pdu_extended_cdb),
		cmocka_unit_test(test_iscsi_kv_parse),
		cmocka_unit_test(test_iscsi_negotiate_table),
		cmocka_unit_test(test_iscsi_login_plain),
		cmocka_unit_test(test_iscsi_login_failures),
		cmocka_unit_test(test_iscsi_login_multi_pdu),
		cmocka_unit_test(test_iscsi_login_chap),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
