/* SPDX-License-Identifier: MIT */
/*
 * fuzz-blob-reply.c: libFuzzer target for the checks the blob backend
 * makes on the headers of a reply to a range GET (blob_reply_header and
 * blob_reply_check, storage/blob.c), without libcurl: the status line,
 * Content-Range, and any other header, thousands of times faster than
 * fuzz-blob's whole HTTP exchange.
 *
 * Input: 4 bytes (the range asked: offset = 512 * u16, length = u16 + 1),
 * then header lines ended by '\n'. Each line goes to blob_reply_header in
 * its own heap block of exactly its length, as libcurl's contract allows
 * (the data is not NUL-terminated), so ASan sees any read past it. An
 * accepted reply must be a 206 whose Content-Range was seen and matched,
 * or another 2xx for a range at offset 0; a Content-Range taken as a match
 * must be valid by RFC 9110 §14.4 (checked here by a parser of its own).
 */
#include "config.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "storage/backends/blob.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* 1*DIGIT at *@p, without overflow. */
static bool digits(const char **p, const char *end, uint64_t *v)
{
	const char *s = *p;

	*v = 0;
	while (*p < end && **p >= '0' && **p <= '9') {
		if (__builtin_mul_overflow(*v, 10, v) || __builtin_add_overflow(*v, **p - '0', v))
			return false;
		(*p)++;
	}
	return *p > s;
}

/* True when the Content-Range line @l (@n bytes) is a valid range-resp
 * (RFC 9110 §14.4) for exactly [off, off + len). OWS around the value
 * and the line's CRLF are allowed. */
static bool range_line_matches(const char *l, size_t n, uint64_t off, uint64_t len)
{
	const char *p = l + 14, *end = l + n;     /* past "Content-Range:" */
	uint64_t first, last, total;

	while (end > p && (end[-1] == '\n' || end[-1] == '\r' || end[-1] == ' ' || end[-1] == '\t'))
		end--;
	while (p < end && (*p == ' ' || *p == '\t'))
		p++;
	if (end - p < 6 || strncasecmp(p, "bytes ", 6) != 0)
		return false;
	p += 6;
	if (!digits(&p, end, &first) || p == end || *p++ != '-' || !digits(&p, end, &last) ||
	    p == end || *p++ != '/')
		return false;
	if (end - p == 1 && *p == '*')
		total = UINT64_MAX;
	else if (!digits(&p, end, &total) || p != end || total <= last)
		return false;
	return first == off && last == off + len - 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *range_line = NULL;
	size_t range_n = 0;
	struct blob_reply r = { 0 };
	uint64_t off, len;
	size_t pos = 4;

	if (size < 4)
		return 0;
	off = (uint64_t)(data[0] | data[1] << 8) * 512;
	len = (uint64_t)(data[2] | data[3] << 8) + 1;
	while (pos < size) {
		const uint8_t *nl = memchr(data + pos, '\n', size - pos);
		size_t n = nl ? (size_t)(nl - (data + pos)) + 1 : size - pos;
		char *line = malloc(n);

		if (!line)
			abort();
		memcpy(line, data + pos, n);
		blob_reply_header(&r, off, len, line, n);
		/* The oracle's view: the last Content-Range of the last reply. */
		if (n >= 5 && memcmp(line, "HTTP/", 5) == 0)
			range_line = NULL;
		else if (n > 14 && strncasecmp(line, "content-range:", 14) == 0)
			range_line = data + pos, range_n = n;
		free(line);
		pos += n;
	}
	if (r.range_ok && !(range_line && range_line_matches((const char *)range_line, range_n,
							     off, len)))
		abort();
	switch (blob_reply_check(&r, off)) {
	case BLOB_FAIL_NONE:
		if (r.http_code == 206 ? !(r.range_seen && r.range_ok)
				       : r.http_code < 200 || r.http_code > 299 || off != 0)
			abort();
		break;
	case BLOB_FAIL_STATUS:
		if (r.http_code >= 200 && r.http_code <= 299)
			abort();
		break;
	case BLOB_FAIL_RANGE_IGNORED:
		if (r.http_code < 200 || r.http_code > 299 || r.http_code == 206 || off == 0)
			abort();
		break;
	case BLOB_FAIL_NO_RANGE:
	case BLOB_FAIL_BAD_RANGE:
		if (r.http_code != 206)
			abort();
		break;
	default:
		abort();
	}
	return 0;
}
