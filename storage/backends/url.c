/* SPDX-License-Identifier: MIT */
/*
 * url.c: redaction of credentials in URLs (see url.h).
 */
#include "config.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "storage/backends/url.h"

/* An output cursor that never overflows and always leaves a NUL. */
struct url_out {
	char *buf;
	size_t room;   /* bytes available, including the NUL */
	size_t len;    /* bytes written so far (excluding the NUL) */
};

static void url_put(struct url_out *o, const char *s, size_t n)
{
	if (o->room == 0)
		return;
	if (n > o->room - 1 - o->len)
		n = o->room - 1 - o->len;
	memcpy(o->buf + o->len, s, n);
	o->len += n;
	o->buf[o->len] = '\0';
}

static const char *url_find(const char *s, size_t len, const char *needle)
{
	size_t n = strlen(needle);

	for (size_t i = 0; i + n <= len; i++)
		if (memcmp(s + i, needle, n) == 0)
			return s + i;
	return NULL;
}

/* Writes the redacted form of @url[0..len) to @o. */
static void url_redact_into(struct url_out *o, const char *url, size_t len)
{
	const char *end = url + len;
	const char *sep = url_find(url, len, "://");
	const char *auth, *auth_end, *at, *q, *frag, *path_end;
	bool kept = false, dropped = false;

	if (!sep) {
		url_put(o, url, len);
		return;
	}
	auth = sep + 3;
	auth_end = auth;
	while (auth_end < end && *auth_end != '/' && *auth_end != '?' && *auth_end != '#')
		auth_end++;
	/* The userinfo ends at the last '@' of the authority. */
	at = NULL;
	for (const char *p = auth; p < auth_end; p++)
		if (*p == '@')
			at = p;
	url_put(o, url, (size_t)(auth - url));
	url_put(o, at ? at + 1 : auth, (size_t)(auth_end - (at ? at + 1 : auth)));

	frag = memchr(auth_end, '#', (size_t)(end - auth_end));
	if (frag)
		end = frag;
	q = memchr(auth_end, '?', (size_t)(end - auth_end));
	path_end = q ? q : end;
	url_put(o, auth_end, (size_t)(path_end - auth_end));
	if (!q)
		return;

	/* Query: keep socket=..., drop the rest. */
	for (const char *p = q + 1; p < end;) {
		const char *amp = memchr(p, '&', (size_t)(end - p));
		const char *pe = amp ? amp : end;

		if (pe - p >= 7 && memcmp(p, "socket=", 7) == 0) {
			url_put(o, kept ? "&" : "?", 1);
			url_put(o, p, (size_t)(pe - p));
			kept = true;
		} else if (pe > p) {
			dropped = true;
		}
		p = amp ? amp + 1 : end;
	}
	if (dropped) {
		url_put(o, kept ? "&" : "?", 1);
		url_put(o, URL_REDACTED, strlen(URL_REDACTED));
	}
}

size_t url_redact(const char *url, size_t len, char *out, size_t outlen)
{
	struct url_out o = { .buf = out, .room = outlen };

	if (outlen)
		out[0] = '\0';
	url_redact_into(&o, url, len);
	return o.len;
}

/* True for characters of a URI scheme (RFC 3986: ALPHA *( ALPHA / DIGIT /
 * "+" / "-" / "." )). */
static bool url_scheme_char(char c)
{
	return isalnum((unsigned char)c) || c == '+' || c == '-' || c == '.';
}

size_t url_redact_text(const char *text, char *out, size_t outlen)
{
	struct url_out o = { .buf = out, .room = outlen };
	size_t n = strlen(text);
	size_t done = 0;

	if (outlen)
		out[0] = '\0';
	while (done < n) {
		const char *sep = url_find(text + done, n - done, "://");
		size_t start, stop;

		if (!sep) {
			url_put(&o, text + done, n - done);
			break;
		}
		start = (size_t)(sep - text);
		while (start > done && url_scheme_char(text[start - 1]))
			start--;
		url_put(&o, text + done, start - done);
		stop = (size_t)(sep - text) + 3;
		while (stop < n && text[stop] != ',')
			stop++;
		url_redact_into(&o, text + start, stop - start);
		done = stop;
	}
	return o.len;
}

char *url_redact_dup(const char *url)
{
	/* One URL_REDACTED and its "?" or "&" at the most. */
	size_t n = strlen(url) + sizeof(URL_REDACTED) + 2;
	char *s = malloc(n);

	if (s)
		url_redact(url, strlen(url), s, n);
	return s;
}

char *url_redact_text_dup(const char *text)
{
	size_t urls = 0, room;
	char *out;

	/* Each URL grows by at most one "?" URL_REDACTED. */
	for (const char *p = strstr(text, "://"); p; p = strstr(p + 3, "://"))
		urls++;
	room = strlen(text) + urls * (sizeof(URL_REDACTED) + 1) + 1;
	out = malloc(room);
	if (out)
		url_redact_text(text, out, room);
	return out;
}
