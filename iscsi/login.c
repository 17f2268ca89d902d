/* SPDX-License-Identifier: MIT */
/*
 * login.c: the login phase (login.h): key negotiation by table, the
 * stage machine and CHAP.
 *
 * Notes on the design
 * -------------------
 * - One table row per operational key of RFC 7143 §13 says how its
 *   result is computed (§6.2.1: numbers by minimum or maximum, booleans by
 *   OR or AND, lists by the first of the offer we support), its range,
 *   what we offer, and whether it is irrelevant to a Discovery session.
 *   The same table answers Text Requests in the full-feature phase, where
 *   only MaxRecvDataSegmentLength may change (RFC 7143 §13.12) and the rest is
 *   rejected.
 * - A request is read in two passes: first the names (InitiatorName,
 *   TargetName, SessionType), which decide how the other keys are
 *   answered, then everything else in order.
 * - Requests with C=1 accumulate (ISCSI_LOGIN_TEXT_MAX at most) and are
 *   answered with empty responses; a response longer than the initiator
 *   can take during login (ISCSI_DEFAULT_MRDSL, RFC 7143 §13.12) goes out in pieces
 *   with C=1, each asked for by an empty request (RFC 7143 §6.3).
 * - CHAP (§12.1.3, RFC 1994): AuthMethod, then CHAP_A (only 5, MD5), then
 *   CHAP_N/CHAP_R, with CHAP_I/CHAP_C when the initiator wants the target
 *   to prove itself too. Challenges are 16 random bytes; a challenge that
 *   equals ours is refused (reflection). When CHAP is configured, a
 *   login that skips the security stage fails with 2/01.
 * - A failed login answers with its status class and closes; the reason
 *   goes to the log through l->why.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "iscsi/login.h"

void iscsi_params_default(struct iscsi_params *p)
{
	*p = (struct iscsi_params){
		.header_digest = false,
		.data_digest = false,
		.initial_r2t = true,
		.immediate_data = true,
		.data_pdu_in_order = true,
		.data_sequence_in_order = true,
		.max_recv_dsl = ISCSI_DEFAULT_MRDSL,
		.max_burst = 262144,
		.first_burst = 65536,
		.max_outstanding_r2t = 1,
		.default_time2wait = 2,
		.default_time2retain = 20,
		.error_recovery_level = 0,
		.max_connections = 1,
	};
}

/* ---- the negotiation table -------------------------------------------------- */

enum key_kind {
	KEY_BOOL_OR,            /* result: offer OR ours */
	KEY_BOOL_AND,           /* result: offer AND ours */
	KEY_MIN,                /* result: min(offer, ours) */
	KEY_MAX,                /* result: max(offer, ours) */
	KEY_DIGEST,             /* list: the first of None/CRC32C offered */
	KEY_TASK_REPORTING,     /* list: RFC3720 only (§13.23) */
	KEY_MRDSL,              /* declarative number (§13.12) */
	KEY_REJECT,             /* obsolete markers (§13.25, RFC 7143 appendix?): Reject */
	KEY_DECLARATIVE,        /* noted, never answered */
	KEY_CALLER,             /* names, SessionType, security, SendTargets */
};

struct key_def {
	const char *name;
	enum key_kind kind;
	uint32_t lo, hi;        /* numbers: valid range */
	uint32_t ours;          /* numbers and booleans: what we offer */
	size_t off;             /* field in struct iscsi_params (SIZE_MAX: none) */
	bool discovery_irrelevant;
};

#define P(f) offsetof(struct iscsi_params, f)
#define NONE SIZE_MAX

static const struct key_def key_table[] = {
	{ "HeaderDigest", KEY_DIGEST, 0, 0, 0, P(header_digest), false },
	{ "DataDigest", KEY_DIGEST, 0, 0, 0, P(data_digest), false },
	{ "MaxConnections", KEY_MIN, 1, 65535, 1, P(max_connections), false },
	/* No: unsolicited data saves a round trip per write (docs/iscsi.md). */
	{ "InitialR2T", KEY_BOOL_OR, 0, 0, 0, P(initial_r2t), true },
	{ "ImmediateData", KEY_BOOL_AND, 0, 0, 1, P(immediate_data), true },
	{ "MaxRecvDataSegmentLength", KEY_MRDSL, 512, ISCSI_DSL_MAX, 0, P(max_recv_dsl), false },
	{ "MaxBurstLength", KEY_MIN, 512, ISCSI_DSL_MAX, ISCSI_OUR_MAX_BURST, P(max_burst), true },
	{ "FirstBurstLength", KEY_MIN, 512, ISCSI_DSL_MAX, ISCSI_OUR_FIRST_BURST, P(first_burst),
	  true },
	{ "DefaultTime2Wait", KEY_MAX, 0, 3600, 2, P(default_time2wait), false },
	{ "DefaultTime2Retain", KEY_MIN, 0, 3600, 0, P(default_time2retain), false },
	{ "MaxOutstandingR2T", KEY_MIN, 1, 65535, ISCSI_OUR_MAX_R2T, P(max_outstanding_r2t), true },
	/* Yes OR anything is Yes: data arrives in order, as we require. */
	{ "DataPDUInOrder", KEY_BOOL_OR, 0, 0, 1, P(data_pdu_in_order), true },
	{ "DataSequenceInOrder", KEY_BOOL_OR, 0, 0, 1, P(data_sequence_in_order), true },
	{ "ErrorRecoveryLevel", KEY_MIN, 0, 2, 0, P(error_recovery_level), false },
	/* RFC 7144 §2.1: RFC 7143 is level 1. */
	{ "iSCSIProtocolLevel", KEY_MIN, 0, 31, 1, NONE, true },
	{ "TaskReporting", KEY_TASK_REPORTING, 0, 0, 0, NONE, true },
	{ "IFMarker", KEY_REJECT, 0, 0, 0, NONE, false },
	{ "OFMarker", KEY_REJECT, 0, 0, 0, NONE, false },
	{ "IFMarkInt", KEY_REJECT, 0, 0, 0, NONE, false },
	{ "OFMarkInt", KEY_REJECT, 0, 0, 0, NONE, false },
	{ "InitiatorAlias", KEY_DECLARATIVE, 0, 0, 0, NONE, false },
	{ "TargetAlias", KEY_DECLARATIVE, 0, 0, 0, NONE, false },
	{ "TargetAddress", KEY_DECLARATIVE, 0, 0, 0, NONE, false },
	{ "TargetPortalGroupTag", KEY_DECLARATIVE, 0, 0, 0, NONE, false },
	{ "InitiatorName", KEY_CALLER, 0, 0, 0, NONE, false },
	{ "TargetName", KEY_CALLER, 0, 0, 0, NONE, false },
	{ "SessionType", KEY_CALLER, 0, 0, 0, NONE, false },
	{ "AuthMethod", KEY_CALLER, 0, 0, 0, NONE, false },
	{ "CHAP_A", KEY_CALLER, 0, 0, 0, NONE, false },
	{ "CHAP_I", KEY_CALLER, 0, 0, 0, NONE, false },
	{ "CHAP_C", KEY_CALLER, 0, 0, 0, NONE, false },
	{ "CHAP_N", KEY_CALLER, 0, 0, 0, NONE, false },
	{ "CHAP_R", KEY_CALLER, 0, 0, 0, NONE, false },
	{ "SendTargets", KEY_CALLER, 0, 0, 0, NONE, false },
};

static const struct key_def *key_find(const struct iscsi_kv *kv)
{
	for (size_t i = 0; i < ARRAY_SIZE(key_table); i++)
		if (iscsi_kv_is(kv, key_table[i].name))
			return &key_table[i];
	return NULL;
}

static void key_answer(struct iscsi_text *out, const struct iscsi_kv *kv, const char *val)
{
	iscsi_text_append(out, kv->key, kv->key_len);
	iscsi_text_append(out, "=", 1);
	iscsi_text_append(out, val, strlen(val) + 1);
}

static bool val_is(const struct iscsi_kv *kv, const char *v, size_t len, const char *word)
{
	(void)kv;
	return strlen(word) == len && memcmp(v, word, len) == 0;
}

/* Whether list value @kv contains @word. */
static bool list_has(const struct iscsi_kv *kv, const char *word)
{
	const char *v = kv->val, *end = kv->val + kv->val_len;

	while (v <= end) {
		const char *comma = memchr(v, ',', (size_t)(end - v));
		const char *e = comma ? comma : end;

		if (val_is(kv, v, (size_t)(e - v), word))
			return true;
		v = e + 1;
	}
	return false;
}

static void field_set(struct iscsi_params *p, const struct key_def *k, uint32_t v)
{
	if (k->off == NONE)
		return;
	if (k->kind == KEY_BOOL_OR || k->kind == KEY_BOOL_AND || k->kind == KEY_DIGEST)
		*(bool *)(void *)((char *)p + k->off) = v != 0;
	else
		*(uint32_t *)(void *)((char *)p + k->off) = v;
}

enum iscsi_neg_result iscsi_negotiate(const struct iscsi_kv *kv, enum iscsi_neg_phase phase,
				      struct iscsi_params *p, struct iscsi_text *out)
{
	const struct key_def *k = key_find(kv);
	uint64_t n;

	if (!k) {
		/* Unknown keys, vendor X- keys included (RFC 7143 §6.2). */
		key_answer(out, kv, "NotUnderstood");
		return ISCSI_NEG_ANSWERED;
	}
	if (k->kind == KEY_CALLER)
		return ISCSI_NEG_NOT_MINE;
	if (k->kind == KEY_DECLARATIVE)
		return ISCSI_NEG_ANSWERED;
	if (k->kind == KEY_REJECT) {
		/* §13.25 (markers are gone from RFC 7143): Reject, never
		 * NotUnderstood. */
		key_answer(out, kv, "Reject");
		return ISCSI_NEG_ANSWERED;
	}
	if (k->kind == KEY_MRDSL) {
		if (iscsi_parse_number(kv->val, kv->val_len, &n) < 0 || n < k->lo || n > k->hi)
			return ISCSI_NEG_FATAL;
		field_set(p, k, (uint32_t)n);
		return ISCSI_NEG_ANSWERED;
	}
	if (phase == ISCSI_NEG_FULL_FEATURE) {
		/* Only MaxRecvDataSegmentLength may change after login. */
		key_answer(out, kv, "Reject");
		return ISCSI_NEG_ANSWERED;
	}
	if (phase == ISCSI_NEG_LOGIN_DISCOVERY && k->discovery_irrelevant) {
		key_answer(out, kv, "Irrelevant");
		return ISCSI_NEG_ANSWERED;
	}
	switch (k->kind) {
	case KEY_BOOL_OR:
	case KEY_BOOL_AND: {
		bool offer, res;

		if (val_is(kv, kv->val, kv->val_len, "Yes"))
			offer = true;
		else if (val_is(kv, kv->val, kv->val_len, "No"))
			offer = false;
		else {
			key_answer(out, kv, "Reject");
			return ISCSI_NEG_ANSWERED;
		}
		res = k->kind == KEY_BOOL_OR ? (offer || k->ours) : (offer && k->ours);
		field_set(p, k, res);
		key_answer(out, kv, res ? "Yes" : "No");
		return ISCSI_NEG_ANSWERED;
	}
	case KEY_MIN:
	case KEY_MAX: {
		char buf[16];
		uint32_t res;

		if (iscsi_parse_number(kv->val, kv->val_len, &n) < 0 || n < k->lo || n > k->hi) {
			key_answer(out, kv, "Reject");
			return ISCSI_NEG_ANSWERED;
		}
		res = k->kind == KEY_MIN ? MIN((uint32_t)n, k->ours) : MAX((uint32_t)n, k->ours);
		field_set(p, k, res);
		snprintf(buf, sizeof(buf), "%u", res);
		key_answer(out, kv, buf);
		return ISCSI_NEG_ANSWERED;
	}
	case KEY_DIGEST: {
		/* The first value of the offer we support (RFC 7143 §6.2.1, lists). */
		const char *v = kv->val, *end = kv->val + kv->val_len;

		while (v <= end) {
			const char *comma = memchr(v, ',', (size_t)(end - v));
			const char *e = comma ? comma : end;

			if (val_is(kv, v, (size_t)(e - v), "None")) {
				field_set(p, k, 0);
				key_answer(out, kv, "None");
				return ISCSI_NEG_ANSWERED;
			}
			if (val_is(kv, v, (size_t)(e - v), "CRC32C")) {
				field_set(p, k, 1);
				key_answer(out, kv, "CRC32C");
				return ISCSI_NEG_ANSWERED;
			}
			v = e + 1;
		}
		key_answer(out, kv, "Reject");
		return ISCSI_NEG_ANSWERED;
	}
	case KEY_TASK_REPORTING:
		key_answer(out, kv, list_has(kv, "RFC3720") ? "RFC3720" : "Reject");
		return ISCSI_NEG_ANSWERED;
	default:
		break;
	}
	return ISCSI_NEG_ANSWERED;
}

/* ---- CHAP ------------------------------------------------------------------- */

int iscsi_chap_response(uint8_t id, const char *secret, const uint8_t *challenge,
			size_t challenge_len, uint8_t out[16])
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned int len = 0;
	int ok;

	if (!ctx)
		return -EIO;
	ok = EVP_DigestInit_ex(ctx, EVP_md5(), NULL) == 1 &&
	     EVP_DigestUpdate(ctx, &id, 1) == 1 &&
	     EVP_DigestUpdate(ctx, secret, strlen(secret)) == 1 &&
	     EVP_DigestUpdate(ctx, challenge, challenge_len) == 1 &&
	     EVP_DigestFinal_ex(ctx, out, &len) == 1 && len == 16;
	EVP_MD_CTX_free(ctx);
	return ok ? 0 : -EIO;
}

static void hex_value(char *dst, const uint8_t *b, size_t n)
{
	static const char hex[] = "0123456789abcdef";

	*dst++ = '0';
	*dst++ = 'x';
	for (size_t i = 0; i < n; i++) {
		*dst++ = hex[b[i] >> 4];
		*dst++ = hex[b[i] & 15];
	}
	*dst = '\0';
}

/* ---- the stage machine ------------------------------------------------------ */

void iscsi_login_init(struct iscsi_login *l, const struct iscsi_login_cfg *cfg)
{
	memset(l, 0, sizeof(*l));
	l->cfg = *cfg;
	l->stage = -1;
	l->statsn = cfg->statsn;
	iscsi_params_default(&l->params);
}

void iscsi_login_release(struct iscsi_login *l)
{
	iscsi_text_free(&l->in);
	iscsi_text_free(&l->out);
}

static bool chap_required(const struct iscsi_login *l)
{
	return l->cfg.chap && l->cfg.chap->user;
}

/* The CHAP keys of one request. */
struct chap_in {
	const struct iscsi_kv *a, *n, *r, *i, *c;
	struct iscsi_kv kv[5];
};

/* Handles AuthMethod and CHAP_* of the security stage: 0, or a failure
 * status. */
static uint16_t login_security(struct iscsi_login *l, const struct iscsi_kv *auth,
			       struct chap_in *ch)
{
	const struct iscsi_chap *cc = l->cfg.chap;

	if (auth) {
		if (l->chap_state != 0 || l->auth_done) {
			l->why = "AuthMethod offered twice";
			return ISCSI_LOGIN_INITIATOR_ERROR;
		}
		if (chap_required(l) && list_has(auth, "CHAP")) {
			key_answer(&l->out, auth, "CHAP");
			l->chap_state = 1;
		} else if (!chap_required(l) && list_has(auth, "None")) {
			key_answer(&l->out, auth, "None");
			l->auth_done = true;
		} else {
			key_answer(&l->out, auth, "Reject");
			l->why = chap_required(l) ? "the initiator does not offer CHAP"
						  : "the initiator wants authentication we lack";
			return ISCSI_LOGIN_AUTH_FAILED;
		}
	}
	if (ch->a) {
		char hex[2 + 2 * ISCSI_CHAP_CHALLENGE_BYTES + 1];

		if (l->chap_state != 1) {
			l->why = "CHAP_A out of order";
			return ISCSI_LOGIN_AUTH_FAILED;
		}
		if (!list_has(ch->a, "5")) {
			key_answer(&l->out, ch->a, "Reject");
			l->why = "no CHAP algorithm we support (MD5, 5)";
			return ISCSI_LOGIN_AUTH_FAILED;
		}
		if (getrandom(l->chap_challenge, sizeof(l->chap_challenge), 0) !=
			    (ssize_t)sizeof(l->chap_challenge) ||
		    getrandom(&l->chap_id, 1, 0) != 1) {
			l->why = "no random bytes for a CHAP challenge";
			return ISCSI_LOGIN_TARGET_ERROR;
		}
		hex_value(hex, l->chap_challenge, sizeof(l->chap_challenge));
		iscsi_text_add(&l->out, "CHAP_A", "5");
		iscsi_text_add(&l->out, "CHAP_I", "%u", l->chap_id);
		iscsi_text_add(&l->out, "CHAP_C", "%s", hex);
		l->chap_state = 2;
	} else if (ch->n || ch->r) {
		uint8_t got[ISCSI_CHAP_MAX_BYTES], want[16];
		int glen;

		if (l->chap_state != 2 || !ch->n || !ch->r) {
			l->why = "CHAP_N/CHAP_R out of order or alone";
			return ISCSI_LOGIN_AUTH_FAILED;
		}
		glen = iscsi_parse_binary(ch->r->val, ch->r->val_len, got, sizeof(got));
		if (strlen(cc->user) != ch->n->val_len ||
		    memcmp(cc->user, ch->n->val, ch->n->val_len) != 0) {
			l->why = "unknown CHAP user";
			return ISCSI_LOGIN_AUTH_FAILED;
		}
		if (glen != 16 ||
		    iscsi_chap_response(l->chap_id, cc->secret ? cc->secret : "", l->chap_challenge,
					sizeof(l->chap_challenge), want) < 0 ||
		    CRYPTO_memcmp(got, want, 16) != 0) {
			l->why = "wrong CHAP response";
			return ISCSI_LOGIN_AUTH_FAILED;
		}
		if (ch->i || ch->c) {
			/* Mutual CHAP: the initiator challenges us. */
			uint8_t chal[ISCSI_CHAP_MAX_BYTES], resp[16];
			char hex[2 + 32 + 1];
			uint64_t id;
			int clen;

			if (!ch->i || !ch->c || !cc->target_user || !cc->target_secret) {
				l->why = "mutual CHAP asked for but not configured";
				return ISCSI_LOGIN_AUTH_FAILED;
			}
			clen = iscsi_parse_binary(ch->c->val, ch->c->val_len, chal, sizeof(chal));
			if (iscsi_parse_number(ch->i->val, ch->i->val_len, &id) < 0 || id > 255 ||
			    clen <= 0) {
				l->why = "malformed CHAP_I or CHAP_C";
				return ISCSI_LOGIN_AUTH_FAILED;
			}
			if ((size_t)clen == sizeof(l->chap_challenge) &&
			    memcmp(chal, l->chap_challenge, (size_t)clen) == 0) {
				l->why = "the initiator reflected our CHAP challenge";
				return ISCSI_LOGIN_AUTH_FAILED;
			}
			if (iscsi_chap_response((uint8_t)id, cc->target_secret, chal, (size_t)clen,
						resp) < 0) {
				l->why = "MD5 unavailable";
				return ISCSI_LOGIN_TARGET_ERROR;
			}
			hex_value(hex, resp, 16);
			iscsi_text_add(&l->out, "CHAP_N", "%s", cc->target_user);
			iscsi_text_add(&l->out, "CHAP_R", "%s", hex);
		}
		l->chap_state = 3;
		l->auth_done = true;
	} else if (ch->i || ch->c) {
		l->why = "CHAP_I/CHAP_C without CHAP_N/CHAP_R";
		return ISCSI_LOGIN_AUTH_FAILED;
	}
	return 0;
}

static void login_rsp_header(struct iscsi_login *l, const uint8_t *req, uint8_t *rsp,
			     uint8_t flags, uint16_t status, uint32_t dlen, bool final)
{
	iscsi_bhs_init(rsp, ISCSI_OP_LOGIN_RSP, flags);
	rsp[2] = 0;             /* Version-max */
	rsp[3] = 0;             /* Version-active */
	iscsi_bhs_set_dlen(rsp, dlen);
	memcpy(rsp + 8, req + 8, 6);    /* ISID */
	ds_put_be16(rsp + 14, final ? l->cfg.tsih : ds_get_be16(req + 14));
	ds_put_be32(rsp + 16, iscsi_bhs_itt(req));
	ds_put_be32(rsp + 24, l->statsn++);
	ds_put_be32(rsp + 28, l->cmdsn);
	ds_put_be32(rsp + 32, l->cmdsn);        /* window of one during login */
	rsp[36] = (uint8_t)(status >> 8);
	rsp[37] = (uint8_t)status;
}

static enum iscsi_login_state login_fail(struct iscsi_login *l, const uint8_t *req,
					 uint8_t *rsp, uint16_t status, const char *why,
					 const uint8_t **rdata, size_t *rdlen)
{
	if (why && !l->why)
		l->why = why;
	l->status = status;
	login_rsp_header(l, req, rsp, req[1] & 0x0c, status, 0, false);
	*rdata = NULL;
	*rdlen = 0;
	return ISCSI_LOGIN_FAILED;
}

/* Copies a name value into @dst (ISCSI_NAME_MAX + 1): false if too long,
 * empty or holding a NUL. */
static bool name_copy(char *dst, const struct iscsi_kv *kv)
{
	if (kv->val_len == 0 || kv->val_len > ISCSI_NAME_MAX || memchr(kv->val, '\0', kv->val_len))
		return false;
	memcpy(dst, kv->val, kv->val_len);
	dst[kv->val_len] = '\0';
	return true;
}

/* Sends the next piece of l->out (at most ISCSI_DEFAULT_MRDSL bytes). */
static enum iscsi_login_state login_send_out(struct iscsi_login *l, const uint8_t *req,
					     uint8_t *rsp, uint8_t flags, enum iscsi_login_state st,
					     const uint8_t **rdata, size_t *rdlen)
{
	size_t left = l->out.len - l->out_off;
	size_t n = MIN(left, (size_t)ISCSI_DEFAULT_MRDSL);
	bool more = n < left;

	if (more) {
		/* Not the last piece: no transit yet (RFC 7143 §11.13.1: C=1 needs T=0). */
		l->pending_flags = flags;
		l->pending_state = (int)st;
		flags = (uint8_t)((flags & ~ISCSI_LOGIN_T & 0x0c) | ISCSI_FLAG_C);
		st = ISCSI_LOGIN_CONTINUE;
	}
	login_rsp_header(l, req, rsp, flags, ISCSI_LOGIN_OK, (uint32_t)n,
			 st == ISCSI_LOGIN_DONE);
	*rdata = n ? (const uint8_t *)l->out.buf + l->out_off : NULL;
	*rdlen = n;
	l->out_off += n;
	l->status = ISCSI_LOGIN_OK;
	return st;
}

enum iscsi_login_state iscsi_login_step(struct iscsi_login *l, const uint8_t *bhs,
					const uint8_t *data, size_t dlen, uint8_t *rsp,
					const uint8_t **rdata, size_t *rdlen)
{
	uint8_t flags = bhs[1];
	bool transit = flags & ISCSI_LOGIN_T, cont = flags & ISCSI_FLAG_C;
	int csg = (flags >> 2) & 3, nsg = flags & 3;
	const struct iscsi_kv *auth = NULL, *itype = NULL;
	struct iscsi_kv kv, authkv;
	struct chap_in ch;
	enum iscsi_neg_phase phase;
	enum iscsi_login_state st;
	uint16_t status;
	size_t off;
	int rc;

	*rdata = NULL;
	*rdlen = 0;
	if (iscsi_bhs_opcode(bhs) != ISCSI_OP_LOGIN_REQ)
		return login_fail(l, bhs, rsp, ISCSI_LOGIN_INVALID_REQUEST,
				  "a PDU other than Login Request during login", rdata, rdlen);
	if (!l->first_done) {
		l->first_done = true;
		memcpy(l->isid, bhs + 8, 6);
		l->tsih_req = ds_get_be16(bhs + 14);
		l->itt = iscsi_bhs_itt(bhs);
		l->cid = ds_get_be16(bhs + 20);
		l->cmdsn = iscsi_bhs_cmdsn(bhs);
		l->stage = csg;
		/* Version-min (byte 3) above the only version there is (0). */
		if (bhs[3] > 0)
			return login_fail(l, bhs, rsp, ISCSI_LOGIN_UNSUPPORTED_VERSION,
					  "unsupported version", rdata, rdlen);
		if (l->tsih_req != 0)
			/* Adding a connection to a session: MaxConnections is
			 * 1, so there is none to add to (docs/iscsi.md). */
			return login_fail(l, bhs, rsp, ISCSI_LOGIN_NO_SESSION,
					  "connection for an existing session (TSIH != 0)", rdata,
					  rdlen);
	} else if (memcmp(l->isid, bhs + 8, 6) != 0 || l->itt != iscsi_bhs_itt(bhs) ||
		   l->cid != ds_get_be16(bhs + 20)) {
		return login_fail(l, bhs, rsp, ISCSI_LOGIN_INITIATOR_ERROR,
				  "ISID, ITT or CID changed during login", rdata, rdlen);
	}
	if (l->out_off < l->out.len) {
		/* The initiator asks for the rest of a split response. */
		if (dlen != 0 || cont)
			return login_fail(l, bhs, rsp, ISCSI_LOGIN_INITIATOR_ERROR,
					  "keys sent while a response was being continued", rdata,
					  rdlen);
		return login_send_out(l, bhs, rsp, l->pending_flags,
				      (enum iscsi_login_state)l->pending_state, rdata, rdlen);
	}
	if (csg != l->stage || csg == 2 || csg == 3)
		return login_fail(l, bhs, rsp, ISCSI_LOGIN_INITIATOR_ERROR,
				  "current stage does not match", rdata, rdlen);
	if (transit && (cont || nsg <= csg || nsg == 2))
		return login_fail(l, bhs, rsp, ISCSI_LOGIN_INITIATOR_ERROR,
				  "bad transit (T with C, or a bad next stage)", rdata, rdlen);
	if (l->in.len + dlen > ISCSI_LOGIN_TEXT_MAX)
		return login_fail(l, bhs, rsp, ISCSI_LOGIN_OUT_OF_RESOURCES,
				  "login text too long", rdata, rdlen);
	iscsi_text_append(&l->in, data, dlen);
	if (l->in.oom)
		return login_fail(l, bhs, rsp, ISCSI_LOGIN_OUT_OF_RESOURCES, "out of memory",
				  rdata, rdlen);
	iscsi_text_reset(&l->out);
	l->out_off = 0;
	if (cont) {
		/* More text follows: acknowledge with an empty response. */
		login_rsp_header(l, bhs, rsp, (uint8_t)(csg << 2), ISCSI_LOGIN_OK, 0, false);
		return ISCSI_LOGIN_CONTINUE;
	}

	/* Pass 1: names and session type. */
	off = 0;
	while ((rc = iscsi_kv_next(l->in.buf, l->in.len, &off, &kv)) > 0) {
		if (iscsi_kv_is(&kv, "InitiatorName")) {
			if (!name_copy(l->initiator_name, &kv))
				return login_fail(l, bhs, rsp, ISCSI_LOGIN_INITIATOR_ERROR,
						  "bad InitiatorName", rdata, rdlen);
		} else if (iscsi_kv_is(&kv, "TargetName")) {
			if (!name_copy(l->target_name, &kv))
				return login_fail(l, bhs, rsp, ISCSI_LOGIN_NOT_FOUND,
						  "bad TargetName", rdata, rdlen);
		} else if (iscsi_kv_is(&kv, "SessionType")) {
			itype = &kv;
			if (val_is(&kv, kv.val, kv.val_len, "Discovery"))
				l->discovery = true;
			else if (val_is(&kv, kv.val, kv.val_len, "Normal"))
				l->discovery = false;
			else
				return login_fail(l, bhs, rsp, ISCSI_LOGIN_SESSION_TYPE,
						  "unknown SessionType", rdata, rdlen);
		}
	}
	if (rc < 0)
		return login_fail(l, bhs, rsp, ISCSI_LOGIN_INITIATOR_ERROR, "malformed key text",
				  rdata, rdlen);
	(void)itype;
	if (!l->initiator_name[0])
		return login_fail(l, bhs, rsp, ISCSI_LOGIN_MISSING_PARAMETER, "no InitiatorName",
				  rdata, rdlen);
	if (!l->discovery && !l->target) {
		if (!l->target_name[0])
			return login_fail(l, bhs, rsp, ISCSI_LOGIN_MISSING_PARAMETER,
					  "no TargetName", rdata, rdlen);
		l->target = l->cfg.find_target ? l->cfg.find_target(l->cfg.ctx, l->target_name)
					       : NULL;
		if (!l->target)
			return login_fail(l, bhs, rsp, ISCSI_LOGIN_NOT_FOUND, "no such target",
					  rdata, rdlen);
	}
	phase = l->discovery ? ISCSI_NEG_LOGIN_DISCOVERY : ISCSI_NEG_LOGIN_NORMAL;

	/* Pass 2: negotiation. */
	memset(&ch, 0, sizeof(ch));
	off = 0;
	while (iscsi_kv_next(l->in.buf, l->in.len, &off, &kv) > 0) {
		enum iscsi_neg_result r = iscsi_negotiate(&kv, phase, &l->params, &l->out);

		if (r == ISCSI_NEG_FATAL)
			return login_fail(l, bhs, rsp, ISCSI_LOGIN_INITIATOR_ERROR,
					  "bad MaxRecvDataSegmentLength", rdata, rdlen);
		if (r != ISCSI_NEG_NOT_MINE)
			continue;
		if (iscsi_kv_is(&kv, "AuthMethod") || iscsi_kv_is(&kv, "CHAP_A") ||
		    iscsi_kv_is(&kv, "CHAP_N") || iscsi_kv_is(&kv, "CHAP_R") ||
		    iscsi_kv_is(&kv, "CHAP_I") || iscsi_kv_is(&kv, "CHAP_C")) {
			if (csg != ISCSI_STAGE_SECURITY) {
				/* Security keys in the operational stage (RFC 7143 §6.3). */
				return login_fail(l, bhs, rsp, ISCSI_LOGIN_INITIATOR_ERROR,
						  "security keys outside the security stage",
						  rdata, rdlen);
			}
			if (iscsi_kv_is(&kv, "AuthMethod")) {
				authkv = kv;
				auth = &authkv;
			} else {
				const struct iscsi_kv **slot;
				int i;

				switch (kv.key[5]) {
				case 'A': i = 0; slot = &ch.a; break;
				case 'N': i = 1; slot = &ch.n; break;
				case 'R': i = 2; slot = &ch.r; break;
				case 'I': i = 3; slot = &ch.i; break;
				default: i = 4; slot = &ch.c; break;
				}
				ch.kv[i] = kv;
				*slot = &ch.kv[i];
			}
		} else if (iscsi_kv_is(&kv, "SendTargets")) {
			key_answer(&l->out, &kv, "Irrelevant");
		}
	}
	if (csg == ISCSI_STAGE_SECURITY) {
		status = login_security(l, auth, &ch);
		if (status)
			return login_fail(l, bhs, rsp, status, NULL, rdata, rdlen);
		if (transit && !l->auth_done) {
			if (l->chap_state == 0 && chap_required(l))
				return login_fail(l, bhs, rsp, ISCSI_LOGIN_AUTH_FAILED,
						  "the initiator skips authentication", rdata, rdlen);
			if (l->chap_state == 0)
				l->auth_done = true;   /* no AuthMethod offered, none needed */
			else
				transit = false;       /* CHAP still running */
		}
	} else if (!l->auth_done && chap_required(l)) {
		return login_fail(l, bhs, rsp, ISCSI_LOGIN_AUTH_FAILED,
				  "the initiator skips authentication", rdata, rdlen);
	} else {
		l->auth_done = true;
	}
	if (!l->discovery && !l->tpgt_sent) {
		iscsi_text_add(&l->out, "TargetPortalGroupTag", "%u", l->cfg.tpgt);
		l->tpgt_sent = true;
	}
	if (!l->mrdsl_sent && (csg == ISCSI_STAGE_OPERATIONAL ||
			       (transit && nsg == ISCSI_STAGE_FULL_FEATURE))) {
		iscsi_text_add(&l->out, "MaxRecvDataSegmentLength", "%u", ISCSI_OUR_MRDSL);
		l->mrdsl_sent = true;
	}
	if (l->out.oom)
		return login_fail(l, bhs, rsp, ISCSI_LOGIN_OUT_OF_RESOURCES, "out of memory",
				  rdata, rdlen);
	iscsi_text_reset(&l->in);
	st = ISCSI_LOGIN_CONTINUE;
	flags = (uint8_t)(csg << 2);
	if (transit) {
		flags |= (uint8_t)(ISCSI_LOGIN_T | nsg);
		l->stage = nsg;
		if (nsg == ISCSI_STAGE_FULL_FEATURE) {
			st = ISCSI_LOGIN_DONE;
			/* RFC 7143 §13.14: FirstBurstLength never exceeds MaxBurstLength. */
			if (l->params.first_burst > l->params.max_burst)
				l->params.first_burst = l->params.max_burst;
		}
	}
	return login_send_out(l, bhs, rsp, flags, st, rdata, rdlen);
}
