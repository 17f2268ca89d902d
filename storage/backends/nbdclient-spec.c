/* SPDX-License-Identifier: MIT */
/*
 * nbdclient-spec.c: the `nbd:<uri>` spec kind (kind.h, docs/backend-nbd.md)
 * with the URI forms of the NBD URI specification (nbd://, nbds://,
 * nbd+unix://, nbds+unix://). Declared even in a build without libnbd
 * (configure --without-libnbd) so that such specs still parse and are
 * refused with the reason.
 */
#include "config.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "common/compiler.h"
#include "storage/backends/nbdclient.h"
#include "storage/backends/url.h"
#include "storage/kind.h"

static int nbdclient_spec_err(struct spec_arg_error *e, size_t off, size_t len, const char *hint,
			      const char *what)
{
	e->off = off;
	e->len = len;
	e->hint = hint;
	e->what = what;
	return -EINVAL;
}

/* The scheme is one the NBD URI specification names; a TCP URI has a host,
 * a Unix one a ?socket= parameter. */
static int nbdclient_spec_check_uri(const char *u, size_t len, struct spec_arg_error *e)
{
	static const char *const schemes[] = { "nbd", "nbds", "nbd+unix", "nbds+unix" };
	const char *sep = memmem(u, len, "://", 3);
	size_t slen = sep ? (size_t)(sep - u) : 0;
	bool found = false, is_unix;

	for (size_t i = 0; sep && i < ARRAY_SIZE(schemes); i++)
		if (strlen(schemes[i]) == slen && memcmp(u, schemes[i], slen) == 0)
			found = true;
	if (!found)
		return nbdclient_spec_err(e, 0, sep ? slen : len,
					  "valid schemes: nbd://, nbds://, nbd+unix://, nbds+unix://",
					  "unsupported NBD URI scheme");
	is_unix = slen > 5 && memcmp(u + slen - 5, "+unix", 5) == 0;
	if (is_unix) {
		const char *q = memchr(u, '?', len);
		bool has_socket = false;

		/* The socket is a query parameter: ?socket=<path>. */
		for (const char *a = q; a && a < u + len; a = memchr(a + 1, '&', (size_t)(u + len - a - 1))) {
			if ((size_t)(u + len - a - 1) > 7 && memcmp(a + 1, "socket=", 7) == 0)
				has_socket = true;
		}
		if (!has_socket)
			return nbdclient_spec_err(e, 0, len, "write nbd+unix:///<export>?socket=<path>",
						  "missing socket= in NBD URI");
	} else {
		const char *h = sep + 3;
		size_t hlen = strcspn(h, "/?#");

		if ((size_t)(h - u) + hlen > len)
			hlen = len - (size_t)(h - u);
		if (hlen == 0)
			return nbdclient_spec_err(e, 0, len, "write nbd://<host>[:<port>]/<export>",
						  "missing host in NBD URI");
	}
	return 0;
}

const struct spec_kind nbdclient_kind_nbd = {
	.name = "nbd",
	.usage = "nbd:<uri>",
	.summary = "remote NBD export (nbd://, nbds://, nbd+unix://, nbds+unix:// URIs)",
#ifdef HAVE_LIBNBD
	.open_disk = nbdclient_spec_open,
#else
	.unavailable = "built without libnbd",
#endif
	.args = { { .type = SPEC_ARG_URI, .name = "NBD URI", .field = SPEC_FIELD(path),
		    .missing_hint = "write nbd:nbd://<host>[:<port>]/<export>",
		    .check = nbdclient_spec_check_uri } },
	.nargs = 1,
	.redact = url_redact_text,
};
