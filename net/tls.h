/* SPDX-License-Identifier: MIT */
/*
 * tls.h: TLS credentials for the socket engine (OpenSSL): X.509 certificates
 * in a directory laid out as nbdkit and qemu expect (server-cert.pem,
 * server-key.pem, and ca-cert.pem to verify client certificates), or a
 * pre-shared key file in GnuTLS psktool format ("identity:hexkey" lines).
 * Sessions run over memory BIOs; the connection code moves ciphertext
 * through io_uring (net/conn.c).
 */
#ifndef DISKSTACK_NET_TLS_H
#define DISKSTACK_NET_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

/* Credentials: exactly one of @certs_dir and @psk_file. */
struct netsrv_tls_opts {
	const char *certs_dir;   /* X.509 directory (borrowed) */
	const char *psk_file;    /* psktool file (borrowed) */
	bool verify_peer;        /* X.509: require a client certificate signed by ca-cert.pem */
};

struct netsrv_tls;

/* Loads the credentials and builds the shared context (TLS >= 1.2).
 * Returns 0, or -errno with a message in @err (@errlen bytes). */
int netsrv_tls_new(const struct netsrv_tls_opts *o, struct netsrv_tls **out,
		   char *err, size_t errlen);
/* Frees the context. NULL allowed. Sessions must be gone. */
void netsrv_tls_free(struct netsrv_tls *t);

/* A new server-side session over two fresh memory BIOs (owned by the
 * session: SSL_free releases them). Any thread. NULL on allocation
 * failure. The caller writes received ciphertext into SSL_get_rbio() and
 * sends what appears in SSL_get_wbio(); it may set the session's app data
 * to a NUL-terminated connection name (borrowed) for log lines. */
SSL *netsrv_tls_session(struct netsrv_tls *t);

/* "PSK" or "X.509", for logs. */
const char *netsrv_tls_kind(const struct netsrv_tls *t);

/*
 * Parses one line of a psktool file ("identity:hexkey", no newline) into
 * @identity (NUL-terminated, room @idlen) and @key (room @keylen; the key
 * length is returned through *@keyout). Returns 0, or -EINVAL for a
 * malformed line (empty identity, odd or non-hex key, too long).
 */
int netsrv_tls_parse_psk_line(const char *line, char *identity, size_t idlen,
			      uint8_t *key, size_t keylen, size_t *keyout);

/* The last OpenSSL error queue entries as text (for logs); clears the
 * thread's queue. Writes into @buf of @len bytes and returns it. */
const char *netsrv_tls_errstr(char *buf, size_t len);

/* PSK mode: copies the key of @identity into @key (room @keylen) and
 * returns its length; -ENOENT for an unknown identity, -ENOSPC when it
 * does not fit. The caller wipes @key. Any thread. */
int netsrv_tls_psk_key(const struct netsrv_tls *t, const char *identity, uint8_t *key,
		       size_t keylen);

/* ---- test hooks ---------------------------------------------------------- */

/* Calls @hook (NULL = none) with every block of key material this module
 * frees, after wiping it and before freeing it: @len bytes at @p. Not
 * thread-safe; for unit tests, which check the bytes are all zero. */
void netsrv_tls_set_free_hook(void (*hook)(const void *p, size_t len));

#endif
