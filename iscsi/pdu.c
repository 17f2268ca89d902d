/* SPDX-License-Identifier: MIT */
/*
 * pdu.c: iSCSI framing, digests and key=value text (pdu.h). Every input
 * here comes from the network: lengths are checked before use and nothing
 * is read past what the caller says it received.
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/crc32c.h"
#include "iscsi/pdu.h"

#define ISCSI_KEY_MAX 63u
#define ISCSI_VALUE_MAX 8192u

void iscsi_bhs_init(uint8_t *bhs, uint8_t opcode, uint8_t flags)
{
	memset(bhs, 0, ISCSI_BHS_BYTES);
	bhs[0] = opcode;
	bhs[1] = flags;
}

void iscsi_bhs_set_dlen(uint8_t *bhs, uint32_t len)
{
	bhs[5] = (uint8_t)(len >> 16);
	bhs[6] = (uint8_t)(len >> 8);
	bhs[7] = (uint8_t)len;
}

int iscsi_pdu_frame(const uint8_t *buf, size_t len, const struct iscsi_digests *dg,
		    uint32_t max_dlen, struct iscsi_pdu *out, size_t *need,
		    enum iscsi_frame_error *err)
{
	uint32_t ahs, dlen, hdr, total;

	*err = ISCSI_FRAME_OK;
	*need = ISCSI_BHS_BYTES;
	if (len < ISCSI_BHS_BYTES)
		return 0;
	ahs = iscsi_bhs_ahs_bytes(buf);
	dlen = iscsi_bhs_dlen(buf);
	/* Only a SCSI Command carries AHS (RFC 7143 §11.2.2: extended CDB and
	 * bidirectional read length); anything else is malformed. */
	if (ahs && iscsi_bhs_opcode(buf) != ISCSI_OP_SCSI_CMD) {
		*err = ISCSI_FRAME_BAD_AHS;
		return -EPROTO;
	}
	if (dlen > max_dlen) {
		*err = ISCSI_FRAME_TOO_LONG;
		return -EPROTO;
	}
	hdr = ISCSI_BHS_BYTES + ahs + (dg->header ? ISCSI_DIGEST_BYTES : 0);
	total = hdr + dlen + iscsi_pad(dlen) + (dlen && dg->data ? ISCSI_DIGEST_BYTES : 0);
	*need = total;
	if (len < hdr)
		return 0;
	if (dg->header) {
		uint32_t want = crc32c(0, buf, ISCSI_BHS_BYTES + ahs);

		/* The digest is sent in little-endian order: the CRC register
		 * as RFC 3720 appendix B.4 shows its bytes. */
		if (ds_get_le32(buf + ISCSI_BHS_BYTES + ahs) != want) {
			*err = ISCSI_FRAME_HEADER_DIGEST;
			return -EPROTO;
		}
	}
	if (len < total)
		return 0;
	out->bhs = buf;
	out->ahs = ahs ? buf + ISCSI_BHS_BYTES : NULL;
	out->ahs_len = ahs;
	out->data = buf + hdr;
	out->dlen = dlen;
	out->data_digest_bad = false;
	if (dlen && dg->data) {
		uint32_t padded = dlen + iscsi_pad(dlen);

		if (ds_get_le32(buf + hdr + padded) != crc32c(0, buf + hdr, padded))
			out->data_digest_bad = true;
	}
	return (int)total;
}

int iscsi_pdu_cdb(const struct iscsi_pdu *p, uint8_t *cdb, size_t cap)
{
	size_t n = 16;
	uint32_t off = 0;

	if (cap < 16)
		return -EINVAL;
	memcpy(cdb, p->bhs + 32, 16);
	while (off + 4 <= p->ahs_len) {
		const uint8_t *a = p->ahs + off;
		uint32_t alen = ds_get_be16(a);          /* bytes after the 3-byte header */
		uint32_t span = ROUND_UP(3 + alen, 4u);

		if (alen == 0 || span > p->ahs_len - off)
			return -EINVAL;
		if (a[2] == 1) {
			/* Extended CDB: one reserved byte, then CDB bytes 16...
			 * (AHSLength = CDB length - 15). */
			size_t extra = alen - 1;

			if (n != 16 || n + extra > cap)
				return -EINVAL;
			memcpy(cdb + 16, a + 4, extra);
			n += extra;
		} else if (a[2] != 2) {
			return -EINVAL;  /* 2: bidirectional read length, checked by the caller */
		}
		off += span;
	}
	if (off != p->ahs_len)
		return -EINVAL;
	return (int)n;
}

/* ---- text ------------------------------------------------------------------- */

int iscsi_kv_next(const char *text, size_t len, size_t *off, struct iscsi_kv *kv)
{
	const char *s, *end, *eq;
	size_t o = *off;

	/* Skip stray NULs (padding-like runs are tolerated, as initiators
	 * send none). */
	while (o < len && text[o] == '\0')
		o++;
	if (o >= len) {
		*off = len;
		return 0;
	}
	s = text + o;
	end = memchr(s, '\0', len - o);
	if (!end)
		end = text + len;
	eq = memchr(s, '=', (size_t)(end - s));
	if (!eq || eq == s || (size_t)(eq - s) > ISCSI_KEY_MAX ||
	    (size_t)(end - eq - 1) > ISCSI_VALUE_MAX)
		return -EINVAL;
	kv->key = s;
	kv->key_len = (size_t)(eq - s);
	kv->val = eq + 1;
	kv->val_len = (size_t)(end - eq - 1);
	*off = (size_t)(end - text) + (end < text + len ? 1 : 0);
	return 1;
}

bool iscsi_kv_is(const struct iscsi_kv *kv, const char *name)
{
	size_t n = strlen(name);

	return kv->key_len == n && memcmp(kv->key, name, n) == 0;
}

void iscsi_text_append(struct iscsi_text *t, const void *p, size_t len)
{
	if (t->oom || len == 0)
		return;
	if (t->len + len > t->cap) {
		size_t cap = t->cap ? t->cap : 256;
		char *nb;

		while (cap < t->len + len)
			cap *= 2;
		nb = realloc(t->buf, cap);
		if (!nb) {
			t->oom = true;
			return;
		}
		t->buf = nb;
		t->cap = cap;
	}
	memcpy(t->buf + t->len, p, len);
	t->len += len;
}

void iscsi_text_add(struct iscsi_text *t, const char *key, const char *fmt, ...)
{
	char val[ISCSI_VALUE_MAX + 1];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(val, sizeof(val), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(val)) {
		t->oom = true;
		return;
	}
	iscsi_text_append(t, key, strlen(key));
	iscsi_text_append(t, "=", 1);
	iscsi_text_append(t, val, (size_t)n + 1);
}

void iscsi_text_reset(struct iscsi_text *t)
{
	t->len = 0;
	t->oom = false;
}

void iscsi_text_free(struct iscsi_text *t)
{
	free(t->buf);
	memset(t, 0, sizeof(*t));
}

int iscsi_parse_number(const char *v, size_t len, uint64_t *out)
{
	uint64_t x = 0;
	size_t i = 0;
	unsigned base = 10;

	if (len >= 2 && v[0] == '0' && (v[1] == 'x' || v[1] == 'X')) {
		base = 16;
		i = 2;
	}
	if (i == len || len - i > 20)
		return -EINVAL;
	for (; i < len; i++) {
		unsigned d;
		char c = v[i];

		if (c >= '0' && c <= '9')
			d = (unsigned)(c - '0');
		else if (base == 16 && c >= 'a' && c <= 'f')
			d = (unsigned)(c - 'a' + 10);
		else if (base == 16 && c >= 'A' && c <= 'F')
			d = (unsigned)(c - 'A' + 10);
		else
			return -EINVAL;
		if (MUL_OVERFLOW(x, (uint64_t)base, &x) || ADD_OVERFLOW(x, (uint64_t)d, &x))
			return -EINVAL;
	}
	*out = x;
	return 0;
}

static int b64_value(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

int iscsi_parse_binary(const char *v, size_t len, uint8_t *out, size_t cap)
{
	size_t n = 0;

	if (len < 3 || v[0] != '0')
		return -EINVAL;
	if (v[1] == 'x' || v[1] == 'X') {
		size_t digits = len - 2;
		size_t i = 2;

		/* An odd count of digits has an implied leading zero. */
		if ((digits + 1) / 2 > cap)
			return -EINVAL;
		if (digits & 1) {
			uint64_t d;

			if (iscsi_parse_number((const char[]){ '0', 'x', v[i] }, 3, &d) < 0)
				return -EINVAL;
			out[n++] = (uint8_t)d;
			i++;
		}
		for (; i < len; i += 2) {
			uint64_t d;

			if (iscsi_parse_number((const char[]){ '0', 'x', v[i], v[i + 1] }, 4, &d) < 0)
				return -EINVAL;
			out[n++] = (uint8_t)d;
		}
		return (int)n;
	}
	if (v[1] == 'b' || v[1] == 'B') {
		uint32_t acc = 0;
		unsigned bits = 0;

		for (size_t i = 2; i < len; i++) {
			int d;

			if (v[i] == '=')
				break;
			d = b64_value(v[i]);
			if (d < 0)
				return -EINVAL;
			acc = (acc << 6) | (uint32_t)d;
			bits += 6;
			if (bits >= 8) {
				bits -= 8;
				if (n == cap)
					return -EINVAL;
				out[n++] = (uint8_t)(acc >> bits);
			}
		}
		return n ? (int)n : -EINVAL;
	}
	return -EINVAL;
}

const char *iscsi_opcode_name(uint8_t opcode)
{
	switch (opcode & 0x3f) {
	case ISCSI_OP_NOP_OUT: return "NOP-Out";
	case ISCSI_OP_SCSI_CMD: return "SCSI Command";
	case ISCSI_OP_TMF_REQ: return "Task Management Request";
	case ISCSI_OP_LOGIN_REQ: return "Login Request";
	case ISCSI_OP_TEXT_REQ: return "Text Request";
	case ISCSI_OP_DATA_OUT: return "Data-Out";
	case ISCSI_OP_LOGOUT_REQ: return "Logout Request";
	case ISCSI_OP_SNACK: return "SNACK";
	case ISCSI_OP_NOP_IN: return "NOP-In";
	case ISCSI_OP_SCSI_RSP: return "SCSI Response";
	case ISCSI_OP_TMF_RSP: return "Task Management Response";
	case ISCSI_OP_LOGIN_RSP: return "Login Response";
	case ISCSI_OP_TEXT_RSP: return "Text Response";
	case ISCSI_OP_DATA_IN: return "Data-In";
	case ISCSI_OP_LOGOUT_RSP: return "Logout Response";
	case ISCSI_OP_R2T: return "R2T";
	case ISCSI_OP_ASYNC: return "Asynchronous Message";
	case ISCSI_OP_REJECT: return "Reject";
	}
	return "unknown opcode";
}
