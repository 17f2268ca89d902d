/* SPDX-License-Identifier: MIT */
/*
 * tls.c: OpenSSL credentials and sessions for the socket engine (tls.h).
 *
 * Notes on the design
 * -------------------
 * - One SSL_CTX per server, shared by every reactor thread (OpenSSL makes
 *   SSL_new on a shared context thread-safe); it is read-only after
 *   netsrv_tls_new. The PSK table hangs off the context's app data and is
 *   likewise immutable.
 * - TLS 1.2 is the floor (the NBD spec requires 1.2 and discourages older
 *   versions); 1.3 is allowed (NVMe/TCP asks for it). PSK works in
 *   both: the legacy server callback also answers TLS 1.3 external PSKs
 *   (SHA-256), which is what GnuTLS clients (libnbd) offer.
 * - Renegotiation is refused (SSL_OP_NO_RENEGOTIATION): with memory BIOs
 *   it would only add states to the transport code for no benefit.
 * - Key material (PSK entries, the X.509 private key file) is wiped
 *   wherever this file lets go of it, and never moved with realloc,
 *   which may copy a block and free the old one unwiped: the PSK table
 *   grows into a new block and the old one is wiped (tls_secret_free).
 *   Files holding keys are read through buffers of our own, not stdio's
 *   or OpenSSL's file BIO's (those free theirs unwiped): the PSK file
 *   through a stdio buffer we provide, the private key with read(2) into
 *   memory OpenSSL then parses. What OpenSSL copies internally (the
 *   parsed key, the PSK handed to a session) is OpenSSL's to wipe.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>

#include "common/compiler.h"
#include "common/log.h"
#include "net/tls.h"

#define PSK_MAX_IDENTITY 256
#define PSK_MAX_KEY 256
#define PSK_MAX_ENTRIES 4096
#define PSK_FIRST_ENTRIES 16
/* Largest private key file read (a PEM RSA-16384 key is about 13 KiB). */
#define TLS_KEY_FILE_MAX (256u << 10)

struct psk_entry {
	char identity[PSK_MAX_IDENTITY];
	uint8_t key[PSK_MAX_KEY];
	size_t keylen;
};

struct netsrv_tls {
	SSL_CTX *ctx;
	bool psk;
	struct psk_entry *keys;   /* PSK mode: the table (immutable once loaded) */
	size_t nkeys, cap;        /* entries used, entries allocated */
};

static void (*tls_free_hook)(const void *p, size_t len);

void netsrv_tls_set_free_hook(void (*hook)(const void *p, size_t len))
{
	tls_free_hook = hook;
}

/* Wipes and frees @len bytes of key material at @p (NULL allowed). */
static void tls_secret_free(void *p, size_t len)
{
	if (!p)
		return;
	OPENSSL_cleanse(p, len);
	if (tls_free_hook)
		tls_free_hook(p, len);
	free(p);
}

/* Makes room for one more PSK entry: a new table, the entries copied, the
 * old table wiped and freed (see the design notes). Returns 0 or
 * -ENOMEM. */
static int psk_table_grow(struct netsrv_tls *t)
{
	size_t cap = t->cap ? MIN(t->cap * 2, (size_t)PSK_MAX_ENTRIES) : PSK_FIRST_ENTRIES;
	struct psk_entry *k;

	if (t->nkeys < t->cap)
		return 0;
	k = calloc(cap, sizeof(*k));
	if (!k)
		return -ENOMEM;
	if (t->nkeys)
		memcpy(k, t->keys, t->nkeys * sizeof(*k));
	tls_secret_free(t->keys, t->cap * sizeof(*t->keys));
	t->keys = k;
	t->cap = cap;
	return 0;
}

const char *netsrv_tls_errstr(char *buf, size_t len)
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

int netsrv_tls_parse_psk_line(const char *line, char *identity, size_t idlen,
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

static int tls_load_psk(struct netsrv_tls *t, const char *path, char *err, size_t errlen)
{
	FILE *fp = fopen(path, "re");
	char line[PSK_MAX_IDENTITY + 2 * PSK_MAX_KEY + 8];
	char iobuf[4096];            /* stdio's buffer: ours, so it can be wiped */
	struct psk_entry e;
	unsigned lineno = 0;
	int ret = 0;

	if (!fp)
		return errbuf_fail(err, errlen, -errno, "cannot open PSK file '%s': %s", path,
				   strerror(errno));
	setvbuf(fp, iobuf, _IOFBF, sizeof(iobuf));
	while (fgets(line, sizeof(line), fp)) {
		size_t n = strlen(line);

		lineno++;
		if (n && line[n - 1] != '\n' && !feof(fp)) {
			ret = errbuf_fail(err, errlen, -EINVAL, "%s:%u: line too long", path, lineno);
			break;
		}
		while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
			line[--n] = '\0';
		if (n == 0 || line[0] == '#')
			continue;
		if (netsrv_tls_parse_psk_line(line, e.identity, sizeof(e.identity), e.key,
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
		if (psk_table_grow(t) < 0) {
			ret = errbuf_fail(err, errlen, -ENOMEM, "out of memory");
			break;
		}
		t->keys[t->nkeys++] = e;
	}
	/* On every path: a parse that failed half-way left key bytes too. */
	OPENSSL_cleanse(&e, sizeof(e));
	OPENSSL_cleanse(line, sizeof(line));
	fclose(fp);
	OPENSSL_cleanse(iobuf, sizeof(iobuf));
	if (ret == 0 && t->nkeys == 0)
		ret = errbuf_fail(err, errlen, -EINVAL, "PSK file '%s' holds no keys", path);
	return ret;
}

int netsrv_tls_psk_key(const struct netsrv_tls *t, const char *identity, uint8_t *key,
		       size_t keylen)
{
	for (size_t i = 0; i < t->nkeys; i++) {
		if (strcmp(t->keys[i].identity, identity) == 0) {
			if (t->keys[i].keylen > keylen)
				return -ENOSPC;
			memcpy(key, t->keys[i].key, t->keys[i].keylen);
			return (int)t->keys[i].keylen;
		}
	}
	return -ENOENT;
}

static unsigned int tls_psk_cb(SSL *ssl, const char *identity, unsigned char *psk,
			       unsigned int max_psk_len)
{
	const struct netsrv_tls *t = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
	const char *who = SSL_get_app_data(ssl);
	int n;

	if (!t || !identity)
		return 0;
	n = netsrv_tls_psk_key(t, identity, psk, max_psk_len);
	if (n == -ENOENT)
		log_warn("%s: TLS: unknown PSK identity '%.64s'", who ? who : "?", identity);
	return n > 0 ? (unsigned int)n : 0;
}

/* Reads up to @cap bytes of @fd into @buf; *@got is the count. Returns 0
 * or -errno. */
static int tls_read_fd(int fd, uint8_t *buf, size_t cap, size_t *got)
{
	*got = 0;
	while (*got < cap) {
		ssize_t n = read(fd, buf + *got, cap - *got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			break;
		*got += (size_t)n;
	}
	return 0;
}

/* Loads the private key in PEM file @path into the context, reading the
 * file into a buffer that is wiped afterwards (see the design notes). */
static int tls_load_private_key(struct netsrv_tls *t, const char *path, char *err,
				size_t errlen)
{
	uint8_t *buf;
	size_t got = 0;
	EVP_PKEY *pkey = NULL;
	BIO *bio;
	char ebuf[512];
	int fd, ret;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return errbuf_fail(err, errlen, -errno, "cannot open private key '%s': %s", path,
				   strerror(errno));
	buf = malloc(TLS_KEY_FILE_MAX);
	ret = buf ? tls_read_fd(fd, buf, TLS_KEY_FILE_MAX, &got) : -ENOMEM;
	close(fd);
	if (ret == 0 && got == TLS_KEY_FILE_MAX)
		ret = -EFBIG;
	if (ret < 0) {
		tls_secret_free(buf, TLS_KEY_FILE_MAX);
		return errbuf_fail(err, errlen, ret, "cannot read private key '%s': %s", path,
				   ret == -EFBIG ? "larger than 256 KiB" : strerror(-ret));
	}
	/* A read-only memory BIO reads @buf in place: no copy. */
	bio = BIO_new_mem_buf(buf, (int)got);
	if (bio) {
		pkey = PEM_read_bio_PrivateKey(bio, NULL, SSL_CTX_get_default_passwd_cb(t->ctx),
					       SSL_CTX_get_default_passwd_cb_userdata(t->ctx));
		BIO_free(bio);
	}
	if (!pkey || SSL_CTX_use_PrivateKey(t->ctx, pkey) != 1)
		ret = errbuf_fail(err, errlen, -EINVAL, "cannot load private key '%s': %s", path,
				  netsrv_tls_errstr(ebuf, sizeof(ebuf)));
	EVP_PKEY_free(pkey);     /* the context holds its own reference */
	tls_secret_free(buf, TLS_KEY_FILE_MAX);
	return ret;
}

static int tls_load_x509(struct netsrv_tls *t, const struct netsrv_tls_opts *o, char *err,
			 size_t errlen)
{
	char path[4096], ebuf[512];
	int ret;

	snprintf(path, sizeof(path), "%s/server-cert.pem", o->certs_dir);
	if (SSL_CTX_use_certificate_chain_file(t->ctx, path) != 1)
		return errbuf_fail(err, errlen, -EINVAL, "cannot load certificate '%s': %s", path,
				   netsrv_tls_errstr(ebuf, sizeof(ebuf)));
	snprintf(path, sizeof(path), "%s/server-key.pem", o->certs_dir);
	ret = tls_load_private_key(t, path, err, errlen);
	if (ret < 0)
		return ret;
	if (SSL_CTX_check_private_key(t->ctx) != 1)
		return errbuf_fail(err, errlen, -EINVAL, "%s/server-key.pem does not match "
				   "server-cert.pem", o->certs_dir);
	if (o->verify_peer) {
		snprintf(path, sizeof(path), "%s/ca-cert.pem", o->certs_dir);
		if (SSL_CTX_load_verify_locations(t->ctx, path, NULL) != 1)
			return errbuf_fail(err, errlen, -EINVAL, "cannot load CA '%s': %s", path,
					   netsrv_tls_errstr(ebuf, sizeof(ebuf)));
		SSL_CTX_set_verify(t->ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
	}
	return 0;
}

int netsrv_tls_new(const struct netsrv_tls_opts *o, struct netsrv_tls **out,
		   char *err, size_t errlen)
{
	struct netsrv_tls *t;
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
		netsrv_tls_free(t);
		return ret;
	}
	*out = t;
	return 0;
}

void netsrv_tls_free(struct netsrv_tls *t)
{
	if (!t)
		return;
	SSL_CTX_free(t->ctx);
	tls_secret_free(t->keys, t->cap * sizeof(*t->keys));
	free(t);
}

SSL *netsrv_tls_session(struct netsrv_tls *t)
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

const char *netsrv_tls_kind(const struct netsrv_tls *t)
{
	return t->psk ? "PSK" : "X.509";
}
