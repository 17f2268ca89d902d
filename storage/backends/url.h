/* SPDX-License-Identifier: MIT */
/*
 * url.h: URLs made safe to show. Blob URLs often carry credentials (a
 * user:password@ part, or a SAS token in the query string) and NBD URIs can
 * name TLS key files; neither may reach `diskstack info`, logs or error
 * messages. These helpers strip them.
 */
#ifndef DISKSTACK_STORAGE_URL_H
#define DISKSTACK_STORAGE_URL_H

#include <stddef.h>

/* Marker written where something was removed from a query string. */
#define URL_REDACTED "<redacted>"

/*
 * Writes to @out (room @outlen, always NUL-terminated, truncated if too
 * small) the first @len bytes of @url without its userinfo
 * ("user:pass@"), its fragment, and every query parameter except
 * "socket=" (the Unix socket of an nbd+unix:// URI, harmless and needed to
 * tell exports apart). Removed parameters become one URL_REDACTED.
 * Text without "://" is copied unchanged. Returns the length written.
 */
size_t url_redact(const char *url, size_t len, char *out, size_t outlen);

/* url_redact() of all of @url into a new string (owned by the caller;
 * NULL when out of memory). */
char *url_redact_dup(const char *url);

/*
 * Same for a free text that may hold URLs (a disk spec, a message): every
 * "<scheme>://..." in @text is redacted up to the next ',' or the end of
 * the text (the spec grammar ends a URL only there, so the rest of a spec
 * after a URL is dropped rather than risk showing a secret). Returns the
 * length written.
 */
size_t url_redact_text(const char *text, char *out, size_t outlen);

/* url_redact_text() into a new string (owned by the caller; NULL when out
 * of memory). */
char *url_redact_text_dup(const char *text);

#endif
