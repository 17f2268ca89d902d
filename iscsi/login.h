/* SPDX-License-Identifier: MIT */
/*
 * login.h: the iSCSI login phase of one connection (RFC 7143 §6, §11.12,
 * §11.13): the stage machine (security, operational, full feature), CHAP
 * one-way and mutual (RFC 7143 §12.1.3), the negotiation of every operational key
 * (RFC 7143 §13), multi-PDU text (the C bit), and the status of a failed login.
 * No sockets: it turns one Login Request into one Login Response, so the
 * same code runs under the server, the unit tests and the fuzz target.
 * The negotiation table (iscsi_negotiate) also answers the keys of Text
 * Requests in the full-feature phase.
 */
#ifndef DISKSTACK_ISCSI_LOGIN_H
#define DISKSTACK_ISCSI_LOGIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "iscsi/pdu.h"

/* What we declare and accept (docs/iscsi.md). */
#define ISCSI_OUR_MRDSL 262144u          /* our MaxRecvDataSegmentLength */
#define ISCSI_OUR_MAX_BURST 16776192u    /* 2^24 - 1024: a whole number of KiB */
#define ISCSI_OUR_FIRST_BURST 262144u
#define ISCSI_OUR_MAX_R2T 16u
#define ISCSI_LOGIN_TEXT_MAX (64u << 10) /* key text of one login or Text exchange */
#define ISCSI_CHAP_CHALLENGE_BYTES 16u
#define ISCSI_CHAP_MAX_BYTES 1024u       /* longest CHAP_C/CHAP_R we decode */

/* Operational parameters of a session and connection (RFC 7143 §13); defaults
 * from the RFC until negotiated. */
struct iscsi_params {
	bool header_digest;             /* HeaderDigest=CRC32C */
	bool data_digest;               /* DataDigest=CRC32C */
	bool initial_r2t;
	bool immediate_data;
	bool data_pdu_in_order;
	bool data_sequence_in_order;
	uint32_t max_recv_dsl;          /* the initiator's: limit of PDUs we send */
	uint32_t max_burst;
	uint32_t first_burst;
	uint32_t max_outstanding_r2t;
	uint32_t default_time2wait;
	uint32_t default_time2retain;
	uint32_t error_recovery_level;
	uint32_t max_connections;
};

/* Fills @p with the RFC defaults. */
void iscsi_params_default(struct iscsi_params *p);

/* Where a key is being negotiated. */
enum iscsi_neg_phase {
	ISCSI_NEG_LOGIN_NORMAL,         /* login of a Normal session */
	ISCSI_NEG_LOGIN_DISCOVERY,      /* login of a Discovery session */
	ISCSI_NEG_FULL_FEATURE,         /* Text Request after login */
};

/* Result of iscsi_negotiate. */
enum iscsi_neg_result {
	ISCSI_NEG_ANSWERED = 0,         /* answered (or declarative: nothing to say) */
	ISCSI_NEG_NOT_MINE,             /* a key the caller handles (names, AuthMethod, CHAP_*,
	                                 * SendTargets, SessionType) */
	ISCSI_NEG_FATAL,                /* a value that ends the login (bad declarative value) */
};

/* Negotiates one offered key @kv in @phase against @p (updated with the
 * result), appending the answer to @out (RFC 7143 §6.2: min/max/OR/AND,
 * declarative keys, Reject, Irrelevant, NotUnderstood). */
enum iscsi_neg_result iscsi_negotiate(const struct iscsi_kv *kv, enum iscsi_neg_phase phase,
				      struct iscsi_params *p, struct iscsi_text *out);

/* ---- the login state machine ---------------------------------------------- */

/* CHAP credentials (borrowed strings; NULL user = no CHAP: AuthMethod=None). */
struct iscsi_chap {
	const char *user, *secret;                /* the initiator proves itself with these */
	const char *target_user, *target_secret;  /* mutual: we prove ourselves (NULL = refuse) */
};

/* What the login needs from the server (borrowed for the login's life). */
struct iscsi_login_cfg {
	const struct iscsi_chap *chap;
	uint16_t tpgt;                  /* TargetPortalGroupTag */
	uint16_t tsih;                  /* the TSIH the session gets if the login succeeds */
	uint32_t statsn;                /* the connection's first StatSN */
	/* Looks up target @name (NUL-terminated): its handle, or NULL. */
	void *(*find_target)(void *ctx, const char *name);
	void *ctx;
};

enum iscsi_login_state {
	ISCSI_LOGIN_CONTINUE = 0,       /* send the response, wait for the next request */
	ISCSI_LOGIN_DONE,               /* send the response, then full-feature phase */
	ISCSI_LOGIN_FAILED,             /* send the response (a failure status), then close */
};

#define ISCSI_NAME_MAX 223u             /* iSCSI names are at most 223 bytes (RFC 7143 §4.2.7.1) */

/* One connection's login (opaque outside login.c except these results). */
struct iscsi_login {
	struct iscsi_login_cfg cfg;
	/* Results (valid once a step returned ISCSI_LOGIN_DONE). */
	struct iscsi_params params;
	bool discovery;                 /* SessionType=Discovery */
	char initiator_name[ISCSI_NAME_MAX + 1];
	char target_name[ISCSI_NAME_MAX + 1];
	void *target;                   /* find_target's answer (Normal sessions) */
	uint8_t isid[6];
	uint16_t cid;
	uint32_t cmdsn;                 /* the session's first CmdSN (ExpCmdSN) */
	uint32_t statsn;                /* next StatSN of the connection */
	uint16_t status;                /* enum iscsi_login_status of the last response */
	const char *why;                /* reason of a failure, for logs (static) */

	/* Private. */
	int stage;                      /* current stage, -1 before the first request */
	bool first_done;
	uint32_t itt;
	uint16_t tsih_req;
	bool auth_done;                 /* security stage passed (or not required) */
	int chap_state;                 /* 0 none, 1 method chosen, 2 challenge sent */
	uint8_t chap_id;
	uint8_t chap_challenge[ISCSI_CHAP_CHALLENGE_BYTES];
	bool tpgt_sent, mrdsl_sent;
	struct iscsi_text in;           /* requests with C=1 accumulate here */
	struct iscsi_text out;          /* the response text */
	size_t out_off;                 /* bytes of @out already sent (C bit responses) */
	uint8_t pending_flags;          /* T/CSG/NSG of the response being split */
	int pending_state;
};

/* Starts a login with @cfg (copied; its pointers borrowed). */
void iscsi_login_init(struct iscsi_login *l, const struct iscsi_login_cfg *cfg);
/* Releases the login's buffers. */
void iscsi_login_release(struct iscsi_login *l);

/*
 * Handles one Login Request: @bhs (48 bytes) and @data (@dlen bytes, both
 * borrowed). Fills @rsp (48 bytes, the Login Response header) and points
 * *@rdata at its data segment (owned by @l, valid until the next call)
 * of *@rdlen bytes (at most ISCSI_DEFAULT_MRDSL: longer answers are split
 * with the C bit). Returns the state.
 */
enum iscsi_login_state iscsi_login_step(struct iscsi_login *l, const uint8_t *bhs,
					const uint8_t *data, size_t dlen, uint8_t *rsp,
					const uint8_t **rdata, size_t *rdlen);

/* CHAP response (§12.1.3, RFC 1994): MD5(@id || @secret || @challenge)
 * into @out (16 bytes). Returns 0 or -EIO. */
int iscsi_chap_response(uint8_t id, const char *secret, const uint8_t *challenge,
			size_t challenge_len, uint8_t out[16]);

#endif
