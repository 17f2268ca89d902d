/* SPDX-License-Identifier: MIT */
/*
 * blob-spec.c: the `blob:flat|vhd1:<url>` spec kind (kind.h,
 * docs/backend-blob.md), declared even in a build without libcurl
 * (configure --without-curl) so that such specs still parse and are
 * refused with the reason.
 */
#include "config.h"

#include <errno.h>
#include <strings.h>

#include "storage/backends/blob.h"
#include "storage/backends/url.h"
#include "storage/kind.h"

/* An http:// or https:// URL with something after the scheme. */
static int blob_spec_check_url(const char *u, size_t len, struct spec_arg_error *e)
{
	if (len > 7 && strncasecmp(u, "http://", 7) == 0)
		return 0;
	if (len > 8 && strncasecmp(u, "https://", 8) == 0)
		return 0;
	return spec_arg_fail(e, 0, len, "invalid blob URL", "blobs are http:// or https:// URLs");
}

static const char *const blob_spec_formats[] = { "flat", "vhd1", NULL };

const struct spec_kind blob_kind_blob = {
	.name = "blob",
	.usage = "blob:flat|vhd1:<url>",
	.summary = "read-only HTTP(S) blob, raw (flat) or fixed VHD (vhd1)",
#ifdef HAVE_CURL
	.open_disk = blob_spec_open,
#else
	.unavailable = "built without libcurl",
#endif
	.args = {
		{ .type = SPEC_ARG_WORD, .name = "blob type", .field = SPEC_FIELD(arg),
		  .words = blob_spec_formats, .hint = "valid types: flat, vhd1",
		  .missing_next = "missing URL after blob type",
		  .missing_next_hint = "write blob:flat|vhd1:<url>" },
		{ .type = SPEC_ARG_URI, .name = "URL", .field = SPEC_FIELD(path),
		  .missing_hint = "write blob:flat|vhd1:<url>", .check = blob_spec_check_url },
	},
	.nargs = 2,
	.redact = url_redact_text,
};
