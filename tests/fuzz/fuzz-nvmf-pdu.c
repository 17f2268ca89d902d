/* SPDX-License-Identifier: MIT */
/*
 * fuzz-nvmf-pdu.c: libFuzzer target for the NVMe/TCP target's PDU framing
 * (nvmf/pdu.c). The input's first byte sets what the connection will
 * negotiate (bit 0 header digest, bit 1 data digest: they apply once an
 * ICReq frames); the rest is a byte stream of PDUs as a connection
 * receives it. Each PDU goes through the common header check, the header
 * region check, and by type the ICReq, SGL and Connect parsers; every
 * framing error builds the TermReq the target would send. Checks: the
 * layout never claims more than PLEN or the header buffer, a TermReq
 * stays within 152 bytes, parsed NQNs are terminated and short enough.
 */
#include "config.h"

#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/endian.h"
#include "nvmf/pdu.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_term(const struct nvmf_pdu_err *e, const uint8_t *bad, size_t len)
{
	uint8_t t[NVMF_TERM_HLEN + NVMF_TERM_MAX_DATA];
	uint32_t n = nvmf_term_build(t, e, bad, len);

	assert(n >= NVMF_TERM_HLEN && n <= sizeof(t) && ds_get_le32(t + 4) == n);
	assert(e->why != NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct nvmf_pdu_cfg cfg = { .max_icd = 8192, .max_h2c = 131072 };
	bool want_hd, want_dd;
	size_t off = 1;

	if (size < 1)
		return 0;
	want_hd = data[0] & 1;
	want_dd = data[0] & 2;
	while (size - off >= NVMF_CH_BYTES) {
		const uint8_t *p = data + off;
		struct nvmf_pdu_layout l;
		struct nvmf_pdu_err e;

		if (nvmf_pdu_check_ch(p, &cfg, &l, &e) < 0) {
			fuzz_term(&e, p, NVMF_CH_BYTES);
			break;
		}
		assert(l.hdr_bytes >= NVMF_CH_BYTES && l.hdr_bytes <= NVMF_HDR_MAX);
		assert(l.hdr_bytes >= l.hlen || l.type == NVMF_PDU_H2C_TERM);
		assert((uint64_t)l.hdr_bytes + l.data_bytes + l.ddgst_bytes == l.plen);
		if (l.plen > size - off)
			break;
		if (nvmf_pdu_check_hdr(p, &l, &cfg, &e) < 0) {
			fuzz_term(&e, p, l.hlen);
			break;
		}
		switch (l.type) {
		case NVMF_PDU_ICREQ: {
			struct nvmf_icreq ic;
			uint8_t r[NVMF_IC_BYTES];

			nvmf_icreq_parse(p, &ic);
			assert(ic.pfv == 0 && ic.hpda <= 31);
			nvmf_icresp_build(r, ic.hdgst, ic.ddgst, cfg.max_h2c);
			assert(r[11] == ((ic.hdgst ? 1 : 0) | (ic.ddgst ? 2 : 0)));
			cfg.ic_done = true;
			cfg.hdgst = want_hd;
			cfg.ddgst = want_dd;
			break;
		}
		case NVMF_PDU_CAPSULE_CMD: {
			const uint8_t *sqe = p + NVMF_CH_BYTES;
			struct nvmf_sgl sgl;
			struct nvmf_connect cn;
			uint16_t bad;
			bool in_data;

			if (nvmf_sgl_parse(sqe, &sgl) == 0 && sgl.in_capsule)
				(void)(sgl.len == l.data_bytes);
			assert(l.data_bytes <= cfg.max_icd);
			if (sqe[0] == 0x7F && sqe[4] == 0x01 &&
			    l.data_bytes >= NVMF_CONNECT_DATA_BYTES &&
			    nvmf_connect_parse(sqe, p + l.hdr_bytes, &cn, &bad, &in_data) == 0) {
				assert(strlen(cn.subnqn) > 0 && strlen(cn.subnqn) <= NVMF_NQN_MAX);
				assert(strlen(cn.hostnqn) > 0 && strlen(cn.hostnqn) <= NVMF_NQN_MAX);
			}
			if (l.ddgst_bytes)
				(void)nvmf_digest(p + l.hdr_bytes, l.data_bytes);
			break;
		}
		case NVMF_PDU_H2C_DATA:
			assert(l.data_bytes > 0 && l.data_bytes <= cfg.max_h2c);
			assert(ds_get_le32(p + 16) == l.data_bytes);
			break;
		case NVMF_PDU_H2C_TERM:
			assert(l.data_bytes <= NVMF_TERM_MAX_DATA);
			break;
		default:
			assert(0 && "a PDU type the parser should have refused");
		}
		off += l.plen;
	}
	return 0;
}
