/* SPDX-License-Identifier: MIT */
/*
 * sqlitelayer-spec.c: the spec kinds of the SQLite layer (kind.h,
 * docs/layer-sqlite.md, docs/layer-autocache.md): `sql:<path>`, a SQLite
 * disk (.dbhd); `sqldiff:<path>[;create]:<spec>`, a SQLite diff layer; and
 * `autocache:[<key>]:<spec>`, a SQLite read cache. They are declared even
 * in a build without SQLite (configure --without-sqlite), so that such
 * specs still parse and are refused with the reason.
 */
#include "config.h"

#include <stdlib.h>

#include "common/compiler.h"
#include "common/log.h"
#include "storage/kind.h"
#include "storage/layers/sqlitelayer.h"

#ifdef HAVE_SQLITE
#define SQLITELAYER_OPEN(fn) .open_layer = (fn)
#else
#define SQLITELAYER_OPEN(fn) .unavailable = "built without SQLite"
#endif

int sqlitelayer_autocache_dir(const struct spec_ctx *ctx, const char **out, char *err,
			      size_t errlen)
{
	const char *dir = ctx ? ctx->cache_dir : NULL;

	if (!dir || !*dir)
		dir = getenv("DISKSTACK_AUTOCACHE_DIR");
	if (!dir || !*dir) {
		(void)errbuf_printf(err, errlen,
			  "autocache needs a cache directory: set DISKSTACK_AUTOCACHE_DIR "
			  "(or give one on the command line)");
		return -EINVAL;
	}
	*out = dir;
	return 0;
}

/* Autocache needs its root directory before anything is opened. */
static int sqlitelayer_spec_precheck_autocache(const struct spec *s UNUSED,
					       const struct spec_ctx *ctx, char *err,
					       size_t errlen)
{
	const char *dir;

	return sqlitelayer_autocache_dir(ctx, &dir, err, errlen);
}

static const struct spec_option sqlitelayer_spec_sql_options[] = {
	{ .name = "create", .type = SPEC_OPTION_SIZE, .set = SPEC_FIELD(create),
	  .value = SPEC_FIELD(size), .value_name = "create size" },
	{ .name = NULL },
};

static const struct spec_option sqlitelayer_spec_sqldiff_options[] = {
	{ .name = "create", .type = SPEC_OPTION_FLAG, .set = SPEC_FIELD(create) },
	{ .name = NULL },
};

const struct spec_kind sqlitelayer_kind_sql = {
	.name = "sql",
	.usage = "sql:<path>[;create=<size>]",
	.summary = "SQLite disk (.dbhd); create= formats a new one",
	SQLITELAYER_OPEN(sqlitelayer_spec_open_sql),
	.args = { { .type = SPEC_ARG_PATH, .name = "path", .field = SPEC_FIELD(path),
		    .options = sqlitelayer_spec_sql_options } },
	.nargs = 1,
	.writes = SPEC_WRITES_PATH,
};

const struct spec_kind sqlitelayer_kind_sqldiff = {
	.name = "sqldiff",
	.usage = "sqldiff:<path>[;create]:<spec>",
	.summary = "SQLite diff layer (.dbhd) over <spec> (opened read-only)",
	SQLITELAYER_OPEN(sqlitelayer_spec_open_sqldiff),
	.inner_forced_ro = true,
	.args = { { .type = SPEC_ARG_PATH, .name = "sqldiff path", .field = SPEC_FIELD(path),
		    .options = sqlitelayer_spec_sqldiff_options,
		    .missing_next = "missing ':<spec>' after the sqldiff path",
		    .missing_next_hint = "write sqldiff:<path>[;create]:<spec>" } },
	.nargs = 1,
	.tail = SPEC_TAIL_INNER,
	.writes = SPEC_WRITES_PATH,     /* the top layer keeps them, not <spec> */
};

const struct spec_kind sqlitelayer_kind_autocache = {
	.name = "autocache",
	.usage = "autocache:[<key>]:<spec>",
	.summary = "SQLite read cache over <spec> in $DISKSTACK_AUTOCACHE_DIR; no key = the disk id",
	SQLITELAYER_OPEN(sqlitelayer_spec_open_autocache),
	.read_cache = true,
	.args = { { .type = SPEC_ARG_NAME, .name = "autocache key", .field = SPEC_FIELD(path),
		    .hint = "a key cannot contain '/' or be '.' or '..'",
		    .missing_next = "missing ':<spec>' after the autocache key",
		    .missing_next_hint = "write autocache:[<key>]:<spec> (autocache::<spec> for no key)" } },
	.nargs = 1,
	.tail = SPEC_TAIL_INNER,
	.precheck = sqlitelayer_spec_precheck_autocache,
};
