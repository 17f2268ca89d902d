/* SPDX-License-Identifier: MIT */
/*
 * tls.c: OpenSSL credentials and sessions for the NBD server (tls.h).
 *
 * Notes on the design
 * -------------------
 * - One SSL_CTX per server, shared by every reactor thread (OpenSSL makes
 *   SSL_new on a shared context thread-safe); it is read-only after
 *   nbdsrv_tls_new. The PSK table hangs off the context's app data and is
 *   likewise immutable.
 * - TLS 1.2 is the floor (the NBD spec requires 1.2 and discourages older
 *   versions); 1.3 is allowed. PSK works in both: the legacy server
 *   callback also answers TLS 1.3 external PSKs (SHA-256), which is what
 *   GnuTLS clients (libnbd) offer.
 * - Renegotiation is refused (SSL_OP_NO_RENEGOTIATION): with memory BIOs
 *   it would only add states to the transport code for no benefit.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/crypto.h>

#include "common/compiler.h"
#include "common/log.h"
#include "nbd/tls.h"

#define PSK_MAX_IDENTITY 256
#define PSK_MAX_KEY 256
#define PSK_MAX_ENTRIES 4096

struct psk_entry {
	char identity[PSK_MAX_IDENTITY];
	uint8_t key[PSK_MAX_KEY];
	size_t keylen;
};

struct nbdsrv_tls {
	SSL_CTX *ctx;
	bool psk;
	struct psk_entry *keys;   /* PSK mode: the table (immutable) */
	size_t nkeys;
};

const char *nbdsrv_tls_errstr(char *buf, size_t len)
{
	unsigned long e;
	size_t used = 0;

	if (len == 0)
		return buf;
	buf[0] = '\0';
	while ((e = ERR_get_error()) != 0) {
		char one[256];

		ERR_error_string_n(e, one, sizeof(one));
		if (used < len) {
			int n = snprintf(buf + used, len - used, "%s%s", used ? "; " : "", one);

			if (n > 0)
				used = MIN(len, used + (size_t)n);
		}
	}
	if (!buf[0])
		snprintf(buf, len, "unknown TLS error");
	return buf;
}

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = tolower(c);
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

int nbdsrv_tls_parse_psk_line(const char *line, char *identity, size_t idlen,
			      uint8_t *key, size_t keylen, size_t *keyout)
{
	const char *colon = strchr(line, ':');
	size_t ilen, hlen;
	const char *hex;

	if (!colon || colon == line)
		return -EINVAL;
	ilen = (size_t)(colon - line);
	if (ilen + 1 > idlen)
		return -EINVAL;
	hex = colon + 1;
	hlen = strlen(hex);
	if (hlen == 0 || hlen % 2 != 0 || hlen / 2 > keylen)
		return -EINVAL;
	for (size_t i = 0; i < hlen; i += 2) {
		int hi = hexval((unsigned char)hex[i]), lo = hexval((unsigned char)hex[i + 1]);

		if (hi < 0 || lo < 0)
			return -EINVAL;
		key[i / 2] = (uint8_t)(hi << 4 | lo);
	}
	memcpy(identity, line, ilen);
	identity[ilen] = '\0';
	*keyout = hlen / 2;
	return 0;
}

static int tls_load_psk(struct nbdsrv_tls *t, const char *path, char *err, size_t errlen)
{
	FILE *fp = fopen(path, "r");
	char line[PSK_MAX_IDENTITY + 2 * PSK_MAX_KEY + 8];
	unsigned lineno = 0;
	int ret = 0;

	if (!fp)
		return errbuf_fail(err, errlen, -errno, "cannot open PSK file '%s': %s", path,
				   strerror(errno));
	while (fgets(line, sizeof(line), fp)) {
		size_t n = strlen(line);
		struct psk_entry e;

		lineno++;
		if (n && line[n - 1] != '\n' && !feof(fp)) {
			ret = errbuf_fail(err, errlen, -EINVAL, "%s:%u: line too long", path, lineno);
			break;
		}
		while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
			line[--n] = '\0';
		if (n == 0 || line[0] == '#')
			continue;
		if (nbdsrv_tls_parse_psk_line(line, e.identity, sizeof(e.identity), e.key,
					      sizeof(e.key), &e.keylen) < 0) {
			ret = errbuf_fail(err, errlen, -EINVAL,
				          "%s:%u: expected 'identity:hexkey' (psktool format)", path,
				          lineno);
			break;
		}
		if (t->nkeys == PSK_MAX_ENTRIES) {
			ret = errbuf_fail(err, errlen, -E2BIG, "%s: more than %u keys", path,
				          PSK_MAX_ENTRIES);
			break;
		}
		struct psk_entry *k = realloc(t->keys, (t->nkeys + 1) * sizeof(*k));
		if (!k) {
			ret = errbuf_fail(err, errlen, -ENOMEM, "out of memory");
			break;
		}
		t->keys = k;
		t->keys[t->nkeys++] = e;
		OPENSSL_cleanse(&e, sizeof(e));
	}
	OPENSSL_cleanse(line, sizeof(line));
	fclose(fp);
	if (ret == 0 && t->nkeys == 0)
		ret = errbuf_fail(err, errlen, -EINVAL, "PSK file '%s' holds no keys", path);
	return ret;
}

static unsigned int tls_psk_cb(SSL *ssl, const char *identity, unsigned char *psk,
			       unsigned int max_psk_len)
{
	const struct nbdsrv_tls *t = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));

	if (!t || !identity)
		return 0;
	for (size_t i = 0; i < t->nkeys; i++) {
		if (strcmp(t->keys[i].identity, identity) == 0) {
			if (t->keys[i].keylen > max_psk_len)
				return 0;
			memcpy(psk, t->keys[i].key, t->keys[i].keylen);
			return (unsigned int)t->keys[i].keylen;
		}
	}
	{
		const char *who = SSL_get_app_data(ssl);

		log_warn("nbd %s: TLS: unknown PSK identity '%.64s'", who ? who : "?", identity);
	}
	return 0;
}

static int tls_load_x509(struct nbdsrv_tls *t, const struct nbdsrv_tls_opts *o, char *err,
			 size_t errlen)
{
	char path[4096], ebuf[512];

	snprintf(path, sizeof(path), "%s/server-cert.pem", o->certs_dir);
	if (SSL_CTX_use_certificate_chain_file(t->ctx, path) != 1)
		return errbuf_fail(err, errlen, -EINVAL, "cannot load certificate '%s': %s", path,
				   nbdsrv_tls_errstr(ebuf, sizeof(ebuf)));
	snprintf(path, sizeof(path), "%s/server-key.pem", o->certs_dir);
	if (SSL_CTX_use_PrivateKey_file(t->ctx, path, SSL_FILETYPE_PEM) != 1)
		return errbuf_fail(err, errlen, -EINVAL, "cannot load private key '%s': %s", path,
				   nbdsrv_tls_errstr(ebuf, sizeof(ebuf)));
	if (SSL_CTX_check_private_key(t->ctx) != 1)
		return errbuf_fail(err, errlen, -EINVAL, "%s/server-key.pem does not match "
				   "server-cert.pem", o->certs_dir);
	if (o->verify_peer) {
		snprintf(path, sizeof(path), "%s/ca-cert.pem", o->certs_dir);
		if (SSL_CTX_load_verify_locations(t->ctx, path, NULL) != 1)
			return errbuf_fail(err, errlen, -EINVAL, "cannot load CA '%s': %s", path,
					   nbdsrv_tls_errstr(ebuf, sizeof(ebuf)));
		SSL_CTX_set_verify(t->ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
	}
	return 0;
}

int nbdsrv_tls_new(const struct nbdsrv_tls_opts *o, struct nbdsrv_tls **out,
		   char *err, size_t errlen)
{
	struct nbdsrv_tls *t;
	int ret;

	if ((o->certs_dir == NULL) == (o->psk_file == NULL))
		return errbuf_fail(err, errlen, -EINVAL,
				   "TLS needs either a certificate directory or a PSK file");
	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->ctx = SSL_CTX_new(TLS_server_method());
	if (!t->ctx) {
		free(t);
		return errbuf_fail(err, errlen, -ENOMEM, "cannot create the TLS context");
	}
	SSL_CTX_set_min_proto_version(t->ctx, TLS1_2_VERSION);
	SSL_CTX_set_options(t->ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
	SSL_CTX_set_app_data(t->ctx, t);
	if (o->psk_file) {
		t->psk = true;
		ret = tls_load_psk(t, o->psk_file, err, errlen);
		if (ret == 0 && SSL_CTX_set_cipher_list(t->ctx,
				"ECDHE-PSK+AESGCM:DHE-PSK+AESGCM:ECDHE-PSK:DHE-PSK:PSK") != 1)
			ret = errbuf_fail(err, errlen, -EINVAL, "no PSK cipher suites available");
		SSL_CTX_set_psk_server_callback(t->ctx, tls_psk_cb);
	} else {
		ret = tls_load_x509(t, o, err, errlen);
	}
	if (ret < 0) {
		nbdsrv_tls_free(t);
		return ret;
	}
	*out = t;
	return 0;
}

void nbdsrv_tls_free(struct nbdsrv_tls *t)
{
	if (!t)
		return;
	SSL_CTX_free(t->ctx);
	if (t->keys) {
		OPENSSL_cleanse(t->keys, t->nkeys * sizeof(*t->keys));
		free(t->keys);
	}
	free(t);
}

SSL *nbdsrv_tls_session(struct nbdsrv_tls *t)
{
	SSL *ssl = SSL_new(t->ctx);
	BIO *rbio, *wbio;

	if (!ssl)
		return NULL;
	rbio = BIO_new(BIO_s_mem());
	wbio = BIO_new(BIO_s_mem());
	if (!rbio || !wbio) {
		BIO_free(rbio);
		BIO_free(wbio);
		SSL_free(ssl);
		return NULL;
	}
	/* An empty memory BIO reports "retry" rather than EOF. */
	BIO_set_mem_eof_return(rbio, -1);
	BIO_set_mem_eof_return(wbio, -1);
	SSL_set_bio(ssl, rbio, wbio);
	SSL_set_accept_state(ssl);
	return ssl;
}

const char *nbdsrv_tls_kind(const struct nbdsrv_tls *t)
{
	return t->psk ? "PSK" : "X.509";
}
