/* SPDX-License-Identifier: MIT */
/*
 * registry.c: the table of disk kinds (kind.h). Each kind declares its
 * `const struct spec_kind` in its own file; adding one is that file plus
 * one line below. The order is the order of --help and of the "valid
 * kinds" list in parse errors.
 */
#include "config.h"

#include "storage/spec.h"

#define SPEC_KINDS(X) \
	X(ramlayer_kind_mem) \
	X(ramlayer_kind_memdiff) \
	X(filedisk_kind_file) \
	X(sqlitelayer_kind_sql) \
	X(sqlitelayer_kind_sqldiff) \
	X(sqlitelayer_kind_autocache) \
	X(blob_kind_blob) \
	X(crypt_kind_crypt) \
	X(prwrap_kind_prwrap) \
	X(delay_kind_delay) \
	X(error_kind_error) \
	X(striped_kind_striped) \
	X(nbdclient_kind_nbd)

#define SPEC_KIND_DECLARE(k) extern const struct spec_kind k;
#define SPEC_KIND_ENTRY(k) &k,

SPEC_KINDS(SPEC_KIND_DECLARE)

const struct spec_kind *const spec_kinds[] = {
	SPEC_KINDS(SPEC_KIND_ENTRY)
	NULL,
};
