/* SPDX-License-Identifier: MIT */
/*
 * pdu.c: NVMe/TCP PDU framing (pdu.h). Field offsets are those of the NVM
 * Express TCP Transport Specification 1.0, §3.6.
 */
#include "config.h"

#include <errno.h>
#include <string.h>

#include "common/crc32c.h"
#include "common/endian.h"
#include "nvmf/pdu.h"

static int pdu_fail(struct nvmf_pdu_err *err, uint16_t fes, uint32_t fei, const char *why)
{
	err->fes = fes;
	err->fei = fei;
	err->why = why;
	return -EPROTO;
}

uint32_t nvmf_digest(const void *p, size_t len)
{
	return crc32c(0, p, len);
}

int nvmf_pdu_check_ch(const uint8_t *ch, const struct nvmf_pdu_cfg *cfg,
		      struct nvmf_pdu_layout *out, struct nvmf_pdu_err *err)
{
	uint8_t type = ch[0], flags = ch[1], hlen = ch[2], pdo = ch[3];
	uint32_t plen = ds_get_le32(ch + 4), want_hlen, hd, dd;

	memset(out, 0, sizeof(*out));
	out->type = type;
	out->flags = flags;
	out->hlen = hlen;
	out->plen = plen;
	if (!cfg->ic_done) {
		if (type != NVMF_PDU_ICREQ)
			return pdu_fail(err, NVMF_FES_SEQUENCE, 0, "a PDU before ICReq");
		if (hlen != NVMF_IC_BYTES)
			return pdu_fail(err, NVMF_FES_INVALID_HEADER, 2, "ICReq HLEN is not 128");
		if (pdo != 0)
			return pdu_fail(err, NVMF_FES_INVALID_HEADER, 3, "ICReq with a PDO");
		if (plen != NVMF_IC_BYTES)
			return pdu_fail(err, NVMF_FES_INVALID_HEADER, 4, "ICReq PLEN is not 128");
		out->hdr_bytes = NVMF_IC_BYTES;
		return 0;
	}
	switch (type) {
	case NVMF_PDU_CAPSULE_CMD:
		want_hlen = NVMF_CMD_HLEN;
		break;
	case NVMF_PDU_H2C_DATA:
		want_hlen = NVMF_DATA_HLEN;
		break;
	case NVMF_PDU_H2C_TERM:
		/* No digests on a TermReq; the data echoes a header. */
		if (hlen != NVMF_TERM_HLEN)
			return pdu_fail(err, NVMF_FES_INVALID_HEADER, 2, "H2CTermReq HLEN is not 24");
		if (plen < NVMF_TERM_HLEN || plen > NVMF_TERM_HLEN + NVMF_TERM_MAX_DATA)
			return pdu_fail(err, NVMF_FES_INVALID_HEADER, 4, "H2CTermReq PLEN out of range");
		out->hdr_bytes = NVMF_TERM_HLEN;
		out->data_bytes = plen - NVMF_TERM_HLEN;
		return 0;
	case NVMF_PDU_ICREQ:
		return pdu_fail(err, NVMF_FES_SEQUENCE, 0, "a second ICReq");
	default:
		return pdu_fail(err, NVMF_FES_INVALID_HEADER, 0, "a PDU type the host may not send");
	}
	if (hlen != want_hlen)
		return pdu_fail(err, NVMF_FES_INVALID_HEADER, 2, "wrong HLEN for the PDU type");
	if (!!(flags & NVMF_FLAG_HDGST) != cfg->hdgst)
		return pdu_fail(err, NVMF_FES_INVALID_HEADER, 1, "HDGSTF does not match the negotiation");
	if ((flags & NVMF_FLAG_DDGST) && !cfg->ddgst)
		return pdu_fail(err, NVMF_FES_INVALID_HEADER, 1, "DDGSTF without a data digest");
	if (type == NVMF_PDU_CAPSULE_CMD && (flags & (NVMF_FLAG_LAST | NVMF_FLAG_SUCCESS)))
		return pdu_fail(err, NVMF_FES_INVALID_HEADER, 1, "data flags on a CapsuleCmd");
	if (flags & NVMF_FLAG_SUCCESS)
		return pdu_fail(err, NVMF_FES_INVALID_HEADER, 1, "SUCCESS on an H2CData PDU");
	hd = cfg->hdgst ? NVMF_DIGEST_BYTES : 0;
	if (pdo == 0) {
		if (type == NVMF_PDU_H2C_DATA)
			return pdu_fail(err, NVMF_FES_INVALID_HEADER, 3, "H2CData without data");
		if (flags & NVMF_FLAG_DDGST)
			return pdu_fail(err, NVMF_FES_INVALID_HEADER, 1, "DDGSTF without data");
		if (plen != hlen + hd)
			return pdu_fail(err, NVMF_FES_INVALID_HEADER, 4, "PLEN does not match the header");
		out->hdr_bytes = hlen + hd;
		return 0;
	}
	if (pdo < hlen + hd || (pdo & 3))
		return pdu_fail(err, NVMF_FES_INVALID_HEADER, 3, "PDO inside the header");
	if (cfg->ddgst && !(flags & NVMF_FLAG_DDGST))
		return pdu_fail(err, NVMF_FES_INVALID_HEADER, 1, "data without the negotiated digest");
	dd = (flags & NVMF_FLAG_DDGST) ? NVMF_DIGEST_BYTES : 0;
	if (plen <= (uint32_t)pdo + dd)
		return pdu_fail(err, NVMF_FES_INVALID_HEADER, 4, "PLEN leaves no data after PDO");
	out->hdr_bytes = pdo;
	out->ddgst_bytes = dd;
	out->data_bytes = plen - pdo - dd;
	if (type == NVMF_PDU_CAPSULE_CMD && out->data_bytes > cfg->max_icd)
		return pdu_fail(err, NVMF_FES_LIMIT, 0, "in-capsule data over the queue's limit");
	if (type == NVMF_PDU_H2C_DATA && out->data_bytes > cfg->max_h2c)
		return pdu_fail(err, NVMF_FES_LIMIT, 0, "H2CData over MAXH2CDATA");
	return 0;
}

int nvmf_pdu_check_hdr(const uint8_t *hdr, const struct nvmf_pdu_layout *l,
		       const struct nvmf_pdu_cfg *cfg, struct nvmf_pdu_err *err)
{
	if (l->type == NVMF_PDU_ICREQ) {
		if (ds_get_le16(hdr + 8) != 0)
			return pdu_fail(err, NVMF_FES_UNSUPPORTED, 8, "ICReq PFV is not 0");
		if (hdr[10] > 31)
			return pdu_fail(err, NVMF_FES_INVALID_HEADER, 10, "ICReq HPDA over 31");
		return 0;
	}
	if (l->type == NVMF_PDU_H2C_TERM)
		return 0;
	if (cfg->hdgst) {
		uint32_t got = ds_get_le32(hdr + l->hlen);

		if (got != nvmf_digest(hdr, l->hlen))
			return pdu_fail(err, NVMF_FES_HDGST, got, "header digest mismatch");
	}
	if (l->type == NVMF_PDU_H2C_DATA && ds_get_le32(hdr + 16) != l->data_bytes)
		return pdu_fail(err, NVMF_FES_INVALID_HEADER, 16, "H2CData DATAL does not match PLEN");
	return 0;
}

void nvmf_put_ch(uint8_t *p, uint8_t type, uint8_t flags, uint8_t hlen, uint8_t pdo, uint32_t plen)
{
	p[0] = type;
	p[1] = flags;
	p[2] = hlen;
	p[3] = pdo;
	ds_put_le32(p + 4, plen);
}

void nvmf_icreq_parse(const uint8_t *p, struct nvmf_icreq *out)
{
	out->pfv = ds_get_le16(p + 8);
	out->hpda = p[10];
	out->hdgst = p[11] & 1;
	out->ddgst = p[11] & 2;
	out->maxr2t = ds_get_le32(p + 12);
}

void nvmf_icresp_build(uint8_t *p, bool hdgst, bool ddgst, uint32_t maxh2c)
{
	memset(p, 0, NVMF_IC_BYTES);
	nvmf_put_ch(p, NVMF_PDU_ICRESP, 0, NVMF_IC_BYTES, 0, NVMF_IC_BYTES);
	ds_put_le16(p + 8, 0);                  /* PFV 1.0 */
	p[10] = 0;                              /* CPDA: no alignment */
	/* The Linux host insists on exactly the digests it asked for. */
	p[11] = (uint8_t)((hdgst ? 1 : 0) | (ddgst ? 2 : 0));
	ds_put_le32(p + 12, maxh2c);
}

int nvmf_sgl_parse(const uint8_t *sqe, struct nvmf_sgl *out)
{
	uint8_t id = sqe[39];

	out->addr = ds_get_le64(sqe + 24);
	out->len = ds_get_le32(sqe + 32);
	if (id == 0x5A) {                       /* Transport SGL Data Block */
		out->in_capsule = false;
		return 0;
	}
	if (id == 0x01) {                       /* Data Block, Offset: in-capsule */
		out->in_capsule = true;
		return 0;
	}
	return -EINVAL;
}

/* Copies a NUL-terminated NQN of the 256-byte field @f. */
static int nqn_copy(const uint8_t *f, char *out)
{
	size_t n = strnlen((const char *)f, 256);

	if (n == 0 || n == 256 || n > NVMF_NQN_MAX)
		return -EINVAL;
	memcpy(out, f, n);
	out[n] = '\0';
	return 0;
}

int nvmf_connect_parse(const uint8_t *sqe, const uint8_t *data, struct nvmf_connect *out,
		       uint16_t *bad_off, bool *in_data)
{
	memset(out, 0, sizeof(*out));
	out->recfmt = ds_get_le16(sqe + 40);
	out->qid = ds_get_le16(sqe + 42);
	out->sqsize = ds_get_le16(sqe + 44);
	out->cattr = sqe[46];
	out->kato_ms = ds_get_le32(sqe + 48);
	memcpy(out->hostid, data, 16);
	out->cntlid = ds_get_le16(data + 16);
	*in_data = false;
	if (out->recfmt != 0) {
		*bad_off = 40;
		return -EINVAL;
	}
	*in_data = true;
	if (nqn_copy(data + 256, out->subnqn) < 0) {
		*bad_off = 256;
		return -EINVAL;
	}
	if (nqn_copy(data + 512, out->hostnqn) < 0) {
		*bad_off = 512;
		return -EINVAL;
	}
	return 0;
}

uint32_t nvmf_term_build(uint8_t *p, const struct nvmf_pdu_err *err, const uint8_t *bad,
			 size_t badlen)
{
	uint32_t n = badlen > NVMF_TERM_MAX_DATA ? NVMF_TERM_MAX_DATA : (uint32_t)badlen;

	memset(p, 0, NVMF_TERM_HLEN);
	nvmf_put_ch(p, NVMF_PDU_C2H_TERM, 0, NVMF_TERM_HLEN, 0, NVMF_TERM_HLEN + n);
	ds_put_le16(p + 8, err->fes);
	ds_put_le32(p + 10, err->fei);
	if (n)
		memcpy(p + NVMF_TERM_HLEN, bad, n);
	return NVMF_TERM_HLEN + n;
}
