/* SPDX-License-Identifier: MIT */
/*
 * pdu.h: NVMe/TCP PDU framing for the target (docs/nvme.md, "The NVMe/TCP
 * target"): the common header and PDU-specific header checks, digests,
 * and the headers the controller sends. Layouts follow the NVM Express
 * TCP Transport Specification 1.0 (§3.6); everything here is a pure
 * function of its arguments, so the unit tests and the fuzz target drive
 * it without a socket.
 */
#ifndef DISKSTACK_NVMF_PDU_H
#define DISKSTACK_NVMF_PDU_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* PDU types (TCP transport spec §3.6.1). */
enum nvmf_pdu_type {
	NVMF_PDU_ICREQ = 0x00,
	NVMF_PDU_ICRESP = 0x01,
	NVMF_PDU_H2C_TERM = 0x02,
	NVMF_PDU_C2H_TERM = 0x03,
	NVMF_PDU_CAPSULE_CMD = 0x04,
	NVMF_PDU_CAPSULE_RESP = 0x05,
	NVMF_PDU_H2C_DATA = 0x06,
	NVMF_PDU_C2H_DATA = 0x07,
	NVMF_PDU_R2T = 0x09,
};

/* Common header FLAGS. */
#define NVMF_FLAG_HDGST   0x01u
#define NVMF_FLAG_DDGST   0x02u
#define NVMF_FLAG_LAST    0x04u      /* H2CData, C2HData: last PDU of the transfer */
#define NVMF_FLAG_SUCCESS 0x08u      /* C2HData: the command succeeded, no response */

#define NVMF_CH_BYTES 8u
#define NVMF_IC_BYTES 128u           /* ICReq / ICResp, whole PDU */
#define NVMF_CMD_HLEN 72u            /* CapsuleCmd: CH + SQE */
#define NVMF_RESP_HLEN 24u           /* CapsuleResp: CH + CQE */
#define NVMF_DATA_HLEN 24u           /* H2CData, C2HData, R2T */
#define NVMF_TERM_HLEN 24u           /* H2C/C2HTermReq */
#define NVMF_TERM_MAX_DATA 128u      /* a TermReq echoes at most this much header */
#define NVMF_DIGEST_BYTES 4u
/* The largest header region (CH + PSH + HDGST + pad up to PDO) a PDU can
 * announce: PDO is one byte. */
#define NVMF_HDR_MAX 256u

/* Fatal Error Status of a TermReq (TCP transport spec §3.6.2.2). */
enum nvmf_fes {
	NVMF_FES_INVALID_HEADER = 0x01,  /* FEI: byte offset of the bad field */
	NVMF_FES_SEQUENCE = 0x02,        /* a PDU that may not come now */
	NVMF_FES_HDGST = 0x03,           /* FEI: the digest received */
	NVMF_FES_RANGE = 0x04,           /* data outside the command's buffer */
	NVMF_FES_LIMIT = 0x05,           /* more data than allowed */
	NVMF_FES_UNSUPPORTED = 0x06,     /* FEI: byte offset of the field */
};

/* What a connection has negotiated, for framing. */
struct nvmf_pdu_cfg {
	bool ic_done;                    /* ICReq/ICResp exchanged */
	bool hdgst, ddgst;               /* digests negotiated */
	uint32_t max_icd;                /* in-capsule data this queue accepts */
	uint32_t max_h2c;                /* MAXH2CDATA we announced */
};

/* Where the parts of a PDU sit, from its common header. */
struct nvmf_pdu_layout {
	uint8_t type, flags;
	uint32_t hlen;                   /* CH + PSH */
	uint32_t hdr_bytes;              /* CH + PSH + HDGST + pad: bytes before the data */
	uint32_t data_bytes;             /* data (0: none) */
	uint32_t ddgst_bytes;            /* 0 or 4 */
	uint32_t plen;
};

/* A framing error: what a TermReq carries. */
struct nvmf_pdu_err {
	uint16_t fes;
	uint32_t fei;
	const char *why;                 /* static text for the log */
};

/*
 * Checks the 8-byte common header @ch of a host-to-controller PDU against
 * @cfg and fills @out. Returns 0, or -EPROTO with @err filled (a TermReq
 * is due, or a clean close for an H2CTermReq, whose layout is still
 * filled in).
 */
int nvmf_pdu_check_ch(const uint8_t *ch, const struct nvmf_pdu_cfg *cfg,
		      struct nvmf_pdu_layout *out, struct nvmf_pdu_err *err);

/*
 * Checks the header region @hdr (l->hdr_bytes bytes, CH first): the
 * header digest, and the PDU-specific fields that do not depend on
 * connection state (ICReq PFV, H2CData length against its PLEN). Returns
 * 0 or -EPROTO with @err.
 */
int nvmf_pdu_check_hdr(const uint8_t *hdr, const struct nvmf_pdu_layout *l,
		       const struct nvmf_pdu_cfg *cfg, struct nvmf_pdu_err *err);

/* The digest of @len bytes (CRC32C, TCP transport spec §3.6.2.1). */
uint32_t nvmf_digest(const void *p, size_t len);

/* Writes a common header: type, flags, hlen, pdo, plen. */
void nvmf_put_ch(uint8_t *p, uint8_t type, uint8_t flags, uint8_t hlen, uint8_t pdo, uint32_t plen);

/* Fields of an ICReq (whole 128-byte PDU @p). */
struct nvmf_icreq {
	uint16_t pfv;
	uint8_t hpda;                    /* host PDU data alignment, dwords - 1 */
	bool hdgst, ddgst;               /* what the host asks for */
	uint32_t maxr2t;
};
void nvmf_icreq_parse(const uint8_t *p, struct nvmf_icreq *out);
/* Builds the 128-byte ICResp into @p. */
void nvmf_icresp_build(uint8_t *p, bool hdgst, bool ddgst, uint32_t maxh2c);

/* The SGL descriptor of an SQE's DPTR as the TCP host fills it (TCP
 * transport spec §3.3: a Transport SGL Data Block 5Ah, or a Data Block
 * with the Offset subtype 01h for in-capsule data). */
struct nvmf_sgl {
	bool in_capsule;
	uint64_t addr;
	uint32_t len;
};
/* Returns 0, or -EINVAL for a descriptor the transport does not know
 * (SGL Descriptor Type Invalid). */
int nvmf_sgl_parse(const uint8_t *sqe, struct nvmf_sgl *out);

/* Connect (Fabrics FCTYPE 01h) command and data fields. */
#define NVMF_CONNECT_DATA_BYTES 1024u
#define NVMF_NQN_MAX 223u            /* the longest NQN (NVMe base spec §4.5) */
struct nvmf_connect {
	uint16_t recfmt, qid, sqsize;    /* sqsize is 0-based */
	uint8_t cattr;
	uint32_t kato_ms;
	uint8_t hostid[16];
	uint16_t cntlid;
	char subnqn[NVMF_NQN_MAX + 1];
	char hostnqn[NVMF_NQN_MAX + 1];
};
/*
 * Parses the Connect SQE @sqe and its 1024 data bytes @data. Returns 0,
 * or -EINVAL with *@bad_off (the byte offset of the bad field) and
 * *@in_data (whether it is in the data): an NQN that is not
 * NUL-terminated within 256 bytes, is empty or longer than NVMF_NQN_MAX.
 */
int nvmf_connect_parse(const uint8_t *sqe, const uint8_t *data, struct nvmf_connect *out,
		       uint16_t *bad_off, bool *in_data);

/* Writes a TermReq header (C2H) for @err echoing @bad (@badlen bytes of
 * the offending header, cut to NVMF_TERM_MAX_DATA) into @p (room for
 * NVMF_TERM_HLEN + NVMF_TERM_MAX_DATA). Returns the PDU length. */
uint32_t nvmf_term_build(uint8_t *p, const struct nvmf_pdu_err *err, const uint8_t *bad,
			 size_t badlen);

#endif
