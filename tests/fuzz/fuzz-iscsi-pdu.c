/* SPDX-License-Identifier: MIT */
/*
 * fuzz-iscsi-pdu.c: libFuzzer target for the iSCSI target's parsers
 * (iscsi/pdu.c, iscsi/login.c): the input's first byte picks digests and
 * CHAP, the rest is a byte stream of PDUs as a connection would receive
 * it. Every PDU that frames goes through the login state machine until it
 * succeeds, then its CDB (with any AHS) and its key text go through the
 * full-feature parsers. Checks: framing never claims more than it was
 * given, answers fit the login-time limit and are well-formed key text.
 */
#include "config.h"

#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "iscsi/login.h"
#include "iscsi/pdu.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int fuzz_target;

static void *fuzz_find_target(void *ctx, const char *name)
{
	(void)ctx;
	return strcmp(name, "iqn.2026-12.org.diskstack:fuzz") == 0 ? &fuzz_target : NULL;
}

static void check_text(const uint8_t *p, size_t len)
{
	struct iscsi_kv kv;
	size_t off = 0;

	/* Our answers always parse. */
	while (off < len)
		assert(iscsi_kv_next((const char *)p, len, &off, &kv) >= 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct iscsi_chap chap = { .user = "alice", .secret = "secret-of-12",
						.target_user = "tgt", .target_secret = "tsecret-of-12" };
	struct iscsi_login_cfg cfg = { .tpgt = 1, .tsih = 1, .find_target = fuzz_find_target };
	struct iscsi_digests dg = { false, false };
	struct iscsi_params ffp;
	struct iscsi_login l;
	bool done = false;
	size_t off;

	if (size < 1)
		return 0;
	cfg.chap = (data[0] & 1) ? &chap : NULL;
	iscsi_login_init(&l, &cfg);
	iscsi_params_default(&ffp);
	for (off = 1; off < size;) {
		struct iscsi_pdu p;
		enum iscsi_frame_error err;
		size_t need;
		int n = iscsi_pdu_frame(data + off, size - off, &dg, ISCSI_OUR_MRDSL, &p, &need, &err);

		if (n <= 0)
			break;
		assert((size_t)n <= size - off && (size_t)n >= ISCSI_BHS_BYTES + p.dlen);
		off += (size_t)n;
		if (!done) {
			uint8_t rsp[ISCSI_BHS_BYTES];
			const uint8_t *rdata;
			size_t rdlen;
			enum iscsi_login_state st = iscsi_login_step(&l, p.bhs, p.data, p.dlen, rsp,
								     &rdata, &rdlen);

			assert(iscsi_bhs_opcode(rsp) == ISCSI_OP_LOGIN_RSP);
			assert(rdlen <= ISCSI_DEFAULT_MRDSL && iscsi_bhs_dlen(rsp) == rdlen);
			check_text(rdata, rdlen);
			if (st == ISCSI_LOGIN_FAILED)
				break;
			if (st == ISCSI_LOGIN_DONE) {
				done = true;
				assert(l.discovery || l.target == &fuzz_target);
				assert(l.params.first_burst <= l.params.max_burst);
				ffp = l.params;
				/* Digests apply from here (RFC 7143 §13.1). */
				dg.header = (data[0] & 2) && l.params.header_digest;
				dg.data = (data[0] & 4) && l.params.data_digest;
			}
			continue;
		}
		if (iscsi_bhs_opcode(p.bhs) == ISCSI_OP_SCSI_CMD) {
			uint8_t cdb[32];
			int len = iscsi_pdu_cdb(&p, cdb, sizeof(cdb));

			assert(len < 0 || (len >= 16 && len <= 32));
		} else if (iscsi_bhs_opcode(p.bhs) == ISCSI_OP_TEXT_REQ) {
			struct iscsi_text out = { 0 };
			struct iscsi_kv kv;
			size_t k = 0;

			while (iscsi_kv_next((const char *)p.data, p.dlen, &k, &kv) > 0)
				(void)iscsi_negotiate(&kv, ISCSI_NEG_FULL_FEATURE, &ffp, &out);
			check_text((const uint8_t *)out.buf, out.len);
			iscsi_text_free(&out);
		}
	}
	iscsi_login_release(&l);
	return 0;
}
