/* SPDX-License-Identifier: MIT */
/*
 * pdu.h: iSCSI PDU framing (RFC 7143 §11): the 48-byte Basic Header
 * Segment of every opcode, Additional Header Segments (the extended CDB),
 * padding, CRC32C header and data digests, and the key=value text of
 * Login and Text PDUs (RFC 7143 §6.1). Pure functions over byte buffers, shared by
 * the login state machine, the full-feature phase and the fuzz target.
 */
#ifndef DISKSTACK_ISCSI_PDU_H
#define DISKSTACK_ISCSI_PDU_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/compiler.h"
#include "common/endian.h"

#define ISCSI_BHS_BYTES 48u
#define ISCSI_DIGEST_BYTES 4u
#define ISCSI_AHS_MAX_BYTES (255u * 4u)     /* TotalAHSLength is one byte of words */
#define ISCSI_DSL_MAX ((1u << 24) - 1)      /* DataSegmentLength is 24 bits */
#define ISCSI_RESERVED_TAG 0xffffffffu      /* ITT/TTT "none" (RFC 7143 §11.2.1.8) */
#define ISCSI_DEFAULT_PORT 3260u
/* The RFC default of MaxRecvDataSegmentLength (RFC 7143 §13.12): what either side
 * may send before the other declared a value, and during login. */
#define ISCSI_DEFAULT_MRDSL 8192u

/* Opcodes (RFC 7143 §11.2.1.2). */
enum iscsi_opcode {
	ISCSI_OP_NOP_OUT = 0x00,
	ISCSI_OP_SCSI_CMD = 0x01,
	ISCSI_OP_TMF_REQ = 0x02,
	ISCSI_OP_LOGIN_REQ = 0x03,
	ISCSI_OP_TEXT_REQ = 0x04,
	ISCSI_OP_DATA_OUT = 0x05,
	ISCSI_OP_LOGOUT_REQ = 0x06,
	ISCSI_OP_SNACK = 0x10,
	ISCSI_OP_NOP_IN = 0x20,
	ISCSI_OP_SCSI_RSP = 0x21,
	ISCSI_OP_TMF_RSP = 0x22,
	ISCSI_OP_LOGIN_RSP = 0x23,
	ISCSI_OP_TEXT_RSP = 0x24,
	ISCSI_OP_DATA_IN = 0x25,
	ISCSI_OP_LOGOUT_RSP = 0x26,
	ISCSI_OP_R2T = 0x31,
	ISCSI_OP_ASYNC = 0x32,
	ISCSI_OP_REJECT = 0x3f,
};

/* Byte 1 flags. */
#define ISCSI_FLAG_F 0x80u              /* final */
#define ISCSI_FLAG_C 0x40u              /* Text/Login: continue */
#define ISCSI_CMD_R 0x40u               /* SCSI Command: read */
#define ISCSI_CMD_W 0x20u               /* SCSI Command: write */
#define ISCSI_CMD_ATTR_MASK 0x07u
#define ISCSI_LOGIN_T 0x80u             /* Login: transit */
#define ISCSI_RSP_o 0x10u               /* SCSI Response: bidi overflow */
#define ISCSI_RSP_u 0x08u
#define ISCSI_RSP_O 0x04u               /* residual overflow (also Data-In) */
#define ISCSI_RSP_U 0x02u               /* residual underflow (also Data-In) */
#define ISCSI_DATAIN_S 0x01u            /* Data-In carries status */
#define ISCSI_OPCODE_I 0x40u            /* byte 0: immediate delivery */

/* Login stages (RFC 7143 §11.12.3). */
enum iscsi_stage {
	ISCSI_STAGE_SECURITY = 0,
	ISCSI_STAGE_OPERATIONAL = 1,
	ISCSI_STAGE_FULL_FEATURE = 3,
};

/* Reject reasons (RFC 7143 §11.17.1). */
enum iscsi_reject_reason {
	ISCSI_REJECT_DATA_DIGEST = 0x02,
	ISCSI_REJECT_SNACK = 0x03,
	ISCSI_REJECT_PROTOCOL = 0x04,
	ISCSI_REJECT_NOT_SUPPORTED = 0x05,
	ISCSI_REJECT_IMMEDIATE = 0x06,
	ISCSI_REJECT_TASK_IN_PROGRESS = 0x07,
	ISCSI_REJECT_DATA_ACK = 0x08,
	ISCSI_REJECT_INVALID_FIELD = 0x09,
	ISCSI_REJECT_LONG_OP = 0x0a,
	ISCSI_REJECT_WAITING_LOGOUT = 0x0c,
};

/* TMF functions and responses (RFC 7143 §11.5.1, §11.6.1). */
enum iscsi_tmf {
	ISCSI_TMF_ABORT_TASK = 1,
	ISCSI_TMF_ABORT_TASK_SET = 2,
	ISCSI_TMF_CLEAR_ACA = 3,
	ISCSI_TMF_CLEAR_TASK_SET = 4,
	ISCSI_TMF_LU_RESET = 5,
	ISCSI_TMF_TARGET_WARM_RESET = 6,
	ISCSI_TMF_TARGET_COLD_RESET = 7,
	ISCSI_TMF_TASK_REASSIGN = 8,
};
enum iscsi_tmf_response {
	ISCSI_TMF_RSP_COMPLETE = 0,
	ISCSI_TMF_RSP_NO_TASK = 1,
	ISCSI_TMF_RSP_NO_LUN = 2,
	ISCSI_TMF_RSP_NOT_SUPPORTED = 5,
	ISCSI_TMF_RSP_REJECTED = 255,
};

/* Login Status-Class and -Detail (RFC 7143 §11.13.5), as class << 8 | detail. */
enum iscsi_login_status {
	ISCSI_LOGIN_OK = 0x0000,
	ISCSI_LOGIN_INITIATOR_ERROR = 0x0200,
	ISCSI_LOGIN_AUTH_FAILED = 0x0201,
	ISCSI_LOGIN_FORBIDDEN = 0x0202,
	ISCSI_LOGIN_NOT_FOUND = 0x0203,
	ISCSI_LOGIN_TARGET_REMOVED = 0x0204,
	ISCSI_LOGIN_UNSUPPORTED_VERSION = 0x0205,
	ISCSI_LOGIN_TOO_MANY_CONNECTIONS = 0x0206,
	ISCSI_LOGIN_MISSING_PARAMETER = 0x0207,
	ISCSI_LOGIN_CANT_INCLUDE = 0x0208,
	ISCSI_LOGIN_SESSION_TYPE = 0x0209,
	ISCSI_LOGIN_NO_SESSION = 0x020a,
	ISCSI_LOGIN_INVALID_REQUEST = 0x020b,
	ISCSI_LOGIN_TARGET_ERROR = 0x0300,
	ISCSI_LOGIN_SERVICE_UNAVAILABLE = 0x0301,
	ISCSI_LOGIN_OUT_OF_RESOURCES = 0x0302,
};

/* ---- BHS fields (all big endian; offsets from RFC 7143 §11) ----------------------- */

static inline uint8_t iscsi_bhs_opcode(const uint8_t *bhs) { return bhs[0] & 0x3f; }
static inline bool iscsi_bhs_immediate(const uint8_t *bhs) { return bhs[0] & ISCSI_OPCODE_I; }
static inline uint8_t iscsi_bhs_flags(const uint8_t *bhs) { return bhs[1]; }
static inline uint32_t iscsi_bhs_ahs_bytes(const uint8_t *bhs) { return bhs[4] * 4u; }
static inline uint32_t iscsi_bhs_dlen(const uint8_t *bhs)
{
	return ((uint32_t)bhs[5] << 16) | ((uint32_t)bhs[6] << 8) | bhs[7];
}
static inline uint64_t iscsi_bhs_lun(const uint8_t *bhs) { return ds_get_be64(bhs + 8); }
static inline uint32_t iscsi_bhs_itt(const uint8_t *bhs) { return ds_get_be32(bhs + 16); }
/* Bytes 20-23: EDTL (SCSI Command), TTT (Data-Out, NOP-Out, Text), RTT (TMF). */
static inline uint32_t iscsi_bhs_w20(const uint8_t *bhs) { return ds_get_be32(bhs + 20); }
/* Bytes 24-27: CmdSN in every initiator PDU but Data-Out. */
static inline uint32_t iscsi_bhs_cmdsn(const uint8_t *bhs) { return ds_get_be32(bhs + 24); }
static inline uint32_t iscsi_bhs_expstatsn(const uint8_t *bhs) { return ds_get_be32(bhs + 28); }

/* Starts a target PDU: zeroes @bhs and sets the opcode and flags. */
void iscsi_bhs_init(uint8_t *bhs, uint8_t opcode, uint8_t flags);
/* Sets DataSegmentLength (@len <= ISCSI_DSL_MAX). */
void iscsi_bhs_set_dlen(uint8_t *bhs, uint32_t len);

/* Bytes of padding after a data segment of @len bytes. */
static inline uint32_t iscsi_pad(uint32_t len) { return (4 - (len & 3)) & 3; }

/* ---- framing ---------------------------------------------------------------- */

/* A received PDU, pointing into the receive buffer (borrowed). */
struct iscsi_pdu {
	const uint8_t *bhs;             /* ISCSI_BHS_BYTES */
	const uint8_t *ahs;             /* TotalAHSLength bytes, NULL if none */
	uint32_t ahs_len;
	const uint8_t *data;            /* DataSegmentLength bytes (no padding) */
	uint32_t dlen;
	bool data_digest_bad;           /* data digest did not match: data unusable */
};

/* Digest settings of a connection (both off during login, RFC 7143 §13.1). */
struct iscsi_digests {
	bool header;
	bool data;
};

/* Why a header cannot be framed (iscsi_pdu_frame). */
enum iscsi_frame_error {
	ISCSI_FRAME_OK = 0,
	ISCSI_FRAME_TOO_LONG,           /* DataSegmentLength over @max_dlen: protocol error */
	ISCSI_FRAME_BAD_AHS,            /* AHS on a PDU that carries none */
	ISCSI_FRAME_HEADER_DIGEST,      /* header digest mismatch: the framing is unknown */
};

/*
 * Frames the PDU at the start of @buf (@len bytes received so far, borrowed)
 * with digests @dg and a limit of @max_dlen data bytes. Returns the PDU's
 * total size in bytes (header, AHS, digests, data and padding) once @len
 * holds it all (filling @out), 0 when more bytes are needed (*@need then
 * says how many in all, when known from the BHS), or -EPROTO with @err
 * set when the PDU cannot be framed (close the connection, after a
 * Reject of the header when @err is ISCSI_FRAME_TOO_LONG or _BAD_AHS).
 */
int iscsi_pdu_frame(const uint8_t *buf, size_t len, const struct iscsi_digests *dg,
		    uint32_t max_dlen, struct iscsi_pdu *out, size_t *need,
		    enum iscsi_frame_error *err);

/* The CDB of a SCSI Command PDU: bytes 32-47 plus an Extended CDB AHS
 * (RFC 7143 §11.2.2.3). Writes up to @cap bytes into @cdb and returns the length, or
 * -EINVAL when the AHS is malformed or the CDB does not fit. */
int iscsi_pdu_cdb(const struct iscsi_pdu *p, uint8_t *cdb, size_t cap);

/* ---- key=value text (RFC 7143 §6.1) ------------------------------------------------------ */

/* One key=value pair, pointing into the text (borrowed, not NUL-terminated
 * unless the text was). */
struct iscsi_kv {
	const char *key;
	size_t key_len;
	const char *val;
	size_t val_len;
};

/* The next pair of @text (@len bytes) from *@off: 1 with @kv filled (and
 * *@off advanced), 0 at the end, -EINVAL for a malformed pair (no '=',
 * empty or over-long key, an unterminated last pair is accepted). Keys are
 * at most 63 bytes and values 8192 (RFC 7143 §6.1, §6.3). */
int iscsi_kv_next(const char *text, size_t len, size_t *off, struct iscsi_kv *kv);
/* Whether @kv's key is @name. */
bool iscsi_kv_is(const struct iscsi_kv *kv, const char *name);

/* A growing key=value output (each pair NUL-terminated). */
struct iscsi_text {
	char *buf;                      /* owned (malloc) */
	size_t len, cap;
	bool oom;                       /* an append failed: the text is incomplete */
};
/* Appends "key=value\0"; sets t->oom on failure. */
void iscsi_text_add(struct iscsi_text *t, const char *key, const char *fmt, ...) PRINTF_FMT(3, 4);
/* Appends raw bytes (already formatted pairs). */
void iscsi_text_append(struct iscsi_text *t, const void *p, size_t len);
void iscsi_text_reset(struct iscsi_text *t);
void iscsi_text_free(struct iscsi_text *t);

/* Parses a numeric value (decimal, 0x hex; RFC 7143 §6.1 "numerical"): 0 or -EINVAL. */
int iscsi_parse_number(const char *v, size_t len, uint64_t *out);
/* Decodes a binary value ("0x" hex or "0b" base64, RFC 7143 §6.1 "binary-value")
 * into up to @cap bytes; returns the length or -EINVAL. */
int iscsi_parse_binary(const char *v, size_t len, uint8_t *out, size_t cap);

/* Names for logs. */
const char *iscsi_opcode_name(uint8_t opcode);

#endif
