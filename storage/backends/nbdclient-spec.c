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
		return spec_arg_fail(e, 0, sep ? slen : len, "unsupported NBD URI scheme",
				     "valid schemes: nbd://, nbds://, nbd+unix://, nbds+unix://");
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
			return spec_arg_fail(e, 0, len, "missing socket= in NBD URI",
					     "write nbd+unix:///<export>?socket=<path>");
	} else {
		const char *h = sep + 3;
		size_t hlen = strcspn(h, "/?#");

		if ((size_t)(h - u) + hlen > len)
			hlen = len - (size_t)(h - u);
		if (hlen == 0)
			return spec_arg_fail(e, 0, len, "missing host in NBD URI",
					     "write nbd://<host>[:<port>]/<export>");
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
