/* SPDX-License-Identifier: MIT */
/*
 * sqlitelayer.c: the SQLite layer (.dbhd, docs/openvmm-compat.md
 * §4.2), the auto-cache layer (§4.3) and the sql:, sqldiff: and autocache:
 * spec kinds.
 *
 * Notes on the design
 * -------------------
 * File format (byte-compatible with OpenVMM's disklayer_sqlite).
 * - Two tables created with the exact statement text of §4.2 (SQLite keeps
 *   it, comments included, in sqlite_master), one meta row written through
 *   json(?) (minified, fields in the order logically_read_only,
 *   sector_count, sector_size) and read back with json_extract(metadata,
 *   '$'). One sectors row per present logical sector; data NULL = present
 *   and all zero (every all-zero sector is written as NULL), no row = absent.
 *   WAL mode, set when formatting (and again whenever the file is opened
 *   for writing).
 * - sector is declared INTEGER with a one-column PRIMARY KEY, so it is the
 *   rowid: lookups and range scans walk the table b-tree itself.
 * - A file is untrusted input. Every connection is hardened before it reads
 *   anything (sql_conn_harden), and every open checks that the schema is
 *   exactly ours (sql_check_schema), so no trigger, view or odd column type
 *   can act on our statements. The I/O paths still check each row they get
 *   (an integer LBA inside the request, in order; NULL or a blob of one
 *   sector): a damaged file fails that request with a medium error.
 *
 * Connections and threads.
 * - All SQLite calls run on the shared worker pool (common/workpool.h).
 *   One writer connection (absent when the file is opened read-only) is used
 *   under writer_lock by one pool thread at a time. Reads and block status
 *   use a small pool of reader connections (SQLITE_OPEN_READONLY, opened on
 *   demand up to reader_max); in WAL mode readers never wait for the writer
 *   and see every transaction committed before their batch started. Each
 *   connection is opened with SQLITE_OPEN_NOMUTEX and used by one thread at
 *   a time; its prepared statements are prepared once and reused.
 *
 * Batching ("lanes").
 * - Requests are queued per submitting reactor (struct sql_rctx, found
 *   through a one-entry thread-local cache, else a list under rctx_lock).
 *   Each reactor has one write lane and SQL_READ_LANES read lanes; a lane
 *   is a work item that carries a whole batch of requests to the pool. A
 *   request that finds its lane busy waits in the reactor's pending list;
 *   when the lane comes back (its done() runs on the same reactor), the
 *   next batch - everything that piled up meanwhile - leaves at once, and
 *   then the finished requests are completed. So with many requests in
 *   flight the cost of the pool round trip and of a transaction commit is
 *   shared by a batch (group commit), and with one request in flight
 *   nothing waits.
 * - A write batch is one transaction (BEGIN IMMEDIATE ... COMMIT). A request
 *   completes only after the transaction holding it has committed. If
 *   anything in a batch fails, the transaction is rolled back and each
 *   request is redone in a transaction of its own, so every request is
 *   atomic and fails or succeeds alone. Lanes keep per-reactor order: a
 *   reactor's write batches commit in submission order.
 * - Per-request state (queue link, status) lives in io->hctx; lanes and
 *   contexts are allocated once per reactor, so steady-state I/O does not
 *   allocate.
 *
 * Durability.
 * - Writes commit with synchronous=NORMAL: in the WAL, not yet fsynced.
 *   FLUSH (sync_cache) is a real sync, unlike upstream's uncommitted
 *   transaction: the batch holding it commits under synchronous=FULL after
 *   also setting user_version = 0, so that the commit always writes a frame
 *   and the WAL is fsynced; that covers every frame before it, i.e. every
 *   write that completed before the flush was submitted. FUA is not
 *   respected (reported false, as upstream); the layered disk turns a FUA
 *   write into write + flush.
 *
 * Auto-cache binding (docs/layer-autocache.md): the meta row of a cache also
 * holds "origin", the lower disk's disk_info.origin. At attach,
 * sql_autocache_bind empties and rebinds a cache made for anything else, in
 * one write transaction. Every batch of an auto-cache re-reads the origin in
 * its own transaction (one small query) so that a layer whose file another
 * user of the key rebound neither reads that origin's rows nor stores its
 * fills there; it then acts as an empty cache (sl->lost).
 *
 * Checkpoints: a thread of the layer checkpoints the WAL passively once it
 * holds SQL_CKPT_PAGES (256 MiB), beside the writer; past SQL_CKPT_HARD_PAGES
 * (1 GiB) the writer checkpoints inline (sql_ckpt_thread). Reads of
 * checkpointed pages go through a 1 GiB memory map.
 * XXX: random 4 KiB writes are CPU-bound, most of it in the kernel copying
 * pages (a 4 KiB row is a leaf cell plus an overflow page, written to the
 * WAL and again by the checkpoint; docs/layer-sqlite.md, "Performance").
 *
 * Quirks of upstream fixed here.
 * - A zero-count unmap is a no-op (upstream underflows its inclusive bound).
 * - A normal write to a logically read-only layer is DISK_READ_ONLY, not an
 *   assertion failure.
 * - Flush really syncs (above).
 *
 * Expected workload: 4 KiB to 1 MiB requests from a few reactors. A 4 KiB
 * sector row takes a leaf cell plus one overflow page at the default 4 KiB
 * page size.
 */
#include "config.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <sqlite3.h>

#include "common/bitmap.h"
#include "common/compiler.h"
#include "common/log.h"
#include "common/reactor.h"
#include "common/workpool.h"
#include "storage/layers/sqlitelayer.h"

/* The schema, verbatim from §4.2 (each statement starts with a newline). */
static const char sql_schema_sectors[] =
	"\nCREATE TABLE sectors (\n"
	"    -- if data is NULL, that indicates an all-zero sector.\n"
	"    -- otherwise, data has len == SECTOR_SIZE, containing the sector data.\n"
	"    sector INTEGER NOT NULL,\n"
	"    data   BLOB,\n"
	"    PRIMARY KEY (sector)\n"
	")\n";
static const char sql_schema_meta[] =
	"\nCREATE TABLE meta (\n"
	"    metadata TEXT NOT NULL -- stored as JSON\n"
	")\n";

#define SQL_DEFAULT_READERS 4u
#define SQL_MAX_READERS 64u
#define SQL_READ_LANES 2
#define SQL_BUSY_TIMEOUT_MS 30000
/* Page cache of the writer and of each reader, KiB. */
#define SQL_WRITER_CACHE_KIB 65536
#define SQL_READER_CACHE_KIB 16384
/* Memory-mapped I/O for reading the database file (a limit, not an
 * allocation): reads of checkpointed pages copy nothing. */
#define SQL_MMAP_BYTES (1ll << 30)
/* WAL size (pages) at which the checkpointer thread is woken, and at which
 * the writer checkpoints by itself because the thread cannot keep up. */
#define SQL_CKPT_PAGES 65536
#define SQL_CKPT_HARD_PAGES 262144
/* Longest run one block-status query reports (rows walked). */
#define SQL_BS_MAX_ROWS 65536
/* Largest sector size accepted from a file's meta row. */
#define SQL_MAX_SECTOR_SIZE (1u << 20)

enum sql_stmt {
	ST_BEGIN = 0,        /* readers: BEGIN (deferred) */
	ST_COMMIT,
	ST_ROLLBACK,
	ST_READ,
	ST_BS,
	ST_ORIGIN,
	ST_READER_COUNT,     /* statements a reader connection has */
	ST_BEGIN_IMM = ST_READER_COUNT,
	ST_REPLACE,
	ST_IGNORE,
	ST_DELETE,
	ST_ZERO_RANGE,
	ST_USER_VERSION,
	ST_COUNT
};

static const char *const sql_stmt_text[ST_COUNT] = {
	[ST_BEGIN] = "BEGIN",
	[ST_COMMIT] = "COMMIT",
	[ST_ROLLBACK] = "ROLLBACK",
	[ST_READ] = "SELECT sector, data FROM sectors WHERE sector >= ?1 AND sector < ?2 "
		    "ORDER BY sector",
	/* typeof() and length() of a blob do not read its overflow pages. */
	[ST_BS] = "SELECT sector, typeof(data), length(data) FROM sectors "
		  "WHERE sector >= ?1 AND sector < ?2 ORDER BY sector",
	[ST_ORIGIN] = "SELECT json_extract(metadata, '$.origin') FROM meta",
	[ST_BEGIN_IMM] = "BEGIN IMMEDIATE",
	[ST_REPLACE] = "INSERT OR REPLACE INTO sectors (sector, data) VALUES (?1, ?2)",
	[ST_IGNORE] = "INSERT OR IGNORE INTO sectors (sector, data) VALUES (?1, ?2)",
	[ST_DELETE] = "DELETE FROM sectors WHERE sector >= ?1 AND sector < ?2",
	[ST_ZERO_RANGE] = "WITH RECURSIVE r(x) AS (VALUES (?1) UNION ALL "
			  "SELECT x + 1 FROM r WHERE x + 1 < ?2) "
			  "INSERT OR REPLACE INTO sectors (sector, data) SELECT x, NULL FROM r",
	[ST_USER_VERSION] = "PRAGMA user_version = 0",
};

/* One SQLite connection and its prepared statements. */
struct sql_conn {
	sqlite3 *db;
	sqlite3_stmt *st[ST_COUNT];
	uint8_t *bounce;             /* one sector: a sector split over iovec entries */
	struct sql_conn *next_free;  /* readers: free list */
};

struct sqlitelayer;

/* A batch of requests travelling to the pool and back. */
struct sql_lane {
	struct work_item w;
	struct sql_rctx *rc;
	struct disk_io *batch;       /* requests in this batch (linked through sql_req.next) */
	bool busy;
	bool write;
};

/* Per submitting reactor: pending requests and lanes. Touched only on
 * that reactor's thread, except the lanes' batches, which belong to the
 * pool while a lane is busy. */
struct sql_rctx {
	struct sql_rctx *next;       /* sqlitelayer.rctxs */
	/* The reactor's list of contexts (NULL: not registered, freed with
	 * the layer only); under sql_reg_lock. */
	struct sql_rreg *reg;
	struct sql_rctx *rnext;
	struct sqlitelayer *sl;
	struct reactor *r;
	struct disk_io *rhead, **rtail;  /* pending reads and block status */
	struct disk_io *whead, **wtail;  /* pending writes, unmaps, flushes */
	struct sql_lane rlane[SQL_READ_LANES];
	struct sql_lane wlane;
};

/* Per-request state, in io->hctx. */
struct sql_req {
	struct disk_io *next;
	int status;
	int os_errno;                /* with DISK_IO_ERROR */
	enum disk_medium_detail medium; /* with DISK_MEDIUM_ERROR */
};

_Static_assert(sizeof(struct sql_req) <= sizeof(((struct disk_io *)0)->hctx),
	       "sql_req must fit in disk_io.hctx");

enum sql_mode {
	SQL_MODE_OPEN,               /* an existing .dbhd, opened by sqlitelayer_new */
	SQL_MODE_FORMAT,             /* formatted at attach */
	SQL_MODE_AUTOCACHE,          /* found or created at attach */
};

struct sqlitelayer {
	enum sql_mode mode;
	char *path;                  /* the .dbhd (autocache: set at attach) */
	bool file_ro;                /* opened read-only: no writer connection */
	struct sqlitelayer_format fmt; /* SQL_MODE_FORMAT */
	char *cache_root;            /* SQL_MODE_AUTOCACHE */
	char *cache_key;             /* SQL_MODE_AUTOCACHE: given key, or NULL; then the derived one */
	/* SQL_MODE_AUTOCACHE: the origin the cache is bound to (a copy of the
	 * lower layer's; NULL = none), set at attach (SQL_MODE_FORMAT: the
	 * copy of fmt.origin). Each batch checks that
	 * the file is still bound to it; once it is not (another process
	 * rebound it to its own origin), lost is set and the layer acts as
	 * an empty cache that keeps nothing. */
	char *origin;
	atomic_bool lost;
	uint64_t id;                 /* unique per layer object, for the thread-local cache */

	/* Geometry from the meta row; fixed once opened. */
	bool opened;
	bool logically_ro;
	uint32_t sector_size;
	uint32_t shift;
	uint64_t sector_count;

	/* The writer connection, used under writer_lock. */
	pthread_mutex_t writer_lock;
	struct sql_conn *writer;

	/* conn_lock protects free_readers, nreaders and readers[]; conn_cond
	 * is signalled when a reader is returned. */
	pthread_mutex_t conn_lock;
	pthread_cond_t conn_cond;
	struct sql_conn *free_readers;
	unsigned nreaders, reader_max;
	struct sql_conn **readers;   /* every reader opened, for close */

	/* rctx_lock protects the list of per-reactor contexts. */
	pthread_mutex_t rctx_lock;
	struct sql_rctx *rctxs;

	/* The checkpointer thread (writable layers). ckpt_lock protects
	 * ckpt_want and ckpt_stop; ckpt_cond wakes the thread. */
	pthread_mutex_t ckpt_lock;
	pthread_cond_t ckpt_cond;
	bool ckpt_want, ckpt_stop, ckpt_running;
	pthread_t ckpt_thread;
};

static _Atomic uint64_t sql_next_id = 1;

/*
 * Per reactor, in its REACTOR_LOCAL_SQLITE slot: the contexts of every
 * layer on that reactor, so that they go away with the reactor and not
 * only with the layer. A process whose reactors come and go (nbdkit's
 * plugin makes one per worker thread, and nbdkit makes workers per
 * connection) would otherwise keep one context per (layer, reactor that
 * ever existed) until the layer closes, and walk them all under rctx_lock
 * on each new reactor's first request. sql_reg_lock protects every
 * sql_rreg list and each context's reg and rnext, whoever frees first
 * (the reactor on its thread, or the layer on any); it is taken before
 * a layer's rctx_lock, and only when a context is made or freed.
 */
struct sql_rreg {
	struct reactor *r;
	struct sql_rctx *head;       /* linked through sql_rctx.rnext */
};

static pthread_mutex_t sql_reg_lock = PTHREAD_MUTEX_INITIALIZER;

/* The last (layer, reactor) -> context lookup of this thread. */
static __thread struct {
	uint64_t id;
	struct reactor *r;
	struct sql_rctx *rc;
} sql_tls;

/* ---- small helpers --------------------------------------------------------- */

/* Not SQLite codes. SQL_BAD_ROW: a row that breaks the .dbhd layout
 * (docs/layer-sqlite.md, "Files from elsewhere"), logged where found; the
 * request fails with DISK_MEDIUM_ERROR. SQL_LOST: an auto-cache file is no
 * longer bound to this layer's origin (sqlitelayer.origin). */
#define SQL_BAD_ROW (-1)
#define SQL_LOST (-2)

static void PRINTF_FMT(3, 4) sql_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (!err || !errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

static inline struct sql_req *sql_req_of(struct disk_io *io)
{
	return (struct sql_req *)(void *)io->hctx;
}

/* errno for a SQLite result code. */
static int sql_errno(sqlite3 *db, int rc)
{
	int sys;

	switch (rc & 0xff) {
	case SQLITE_FULL:
		return ENOSPC;
	case SQLITE_NOTADB:
		return EINVAL;
	case SQLITE_NOMEM:
		return ENOMEM;
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		return EBUSY;
	case SQLITE_READONLY:
		return EROFS;
	case SQLITE_PERM:
	case SQLITE_AUTH:
		return EACCES;
	case SQLITE_CANTOPEN:
		sys = db ? sqlite3_system_errno(db) : 0;
		return sys > 0 ? sys : ENOENT;
	case SQLITE_IOERR:
		sys = db ? sqlite3_system_errno(db) : 0;
		return sys > 0 ? sys : EIO;
	default:
		return EIO;
	}
}

/* True when all @len bytes of @p are zero. */
static bool sql_is_zero(const uint8_t *p, size_t len)
{
	return p[0] == 0 && memcmp(p, p + 1, len - 1) == 0;
}

static bool sql_in_range(const struct sqlitelayer *sl, uint64_t sector, uint64_t count)
{
	uint64_t end;

	return !ADD_OVERFLOW(sector, count, &end) && end <= sl->sector_count;
}

/* A forward cursor over an iovec list. */
struct sql_cur {
	const struct iovec *iov;
	int iovcnt;
	int i;
	size_t base;                 /* byte offset of iov[i] in the list */
};

static void sql_cur_init(struct sql_cur *c, const struct iovec *iov, int iovcnt)
{
	c->iov = iov;
	c->iovcnt = iovcnt;
	c->i = 0;
	c->base = 0;
}

/* A pointer to @len contiguous bytes at byte @off (>= the last offset
 * asked), or NULL when they span several entries. */
static uint8_t *sql_cur_at(struct sql_cur *c, size_t off, size_t len)
{
	while (c->i < c->iovcnt && off >= c->base + c->iov[c->i].iov_len) {
		c->base += c->iov[c->i].iov_len;
		c->i++;
	}
	if (c->i == c->iovcnt || off + len > c->base + c->iov[c->i].iov_len)
		return NULL;
	return (uint8_t *)c->iov[c->i].iov_base + (off - c->base);
}

/*
 * Checks the meta row's "origin" through @st (a prepared ST_ORIGIN, in the
 * caller's transaction) against @origin (NULL = none). The stored value
 * (or "none") goes to @have when it is not NULL. Returns SQLITE_OK when
 * they are the same, SQL_LOST when not, or a SQLite error code.
 */
static int sql_origin_check(sqlite3_stmt *st, const char *origin, char *have, size_t havelen)
{
	int rc = sqlite3_step(st);

	if (rc == SQLITE_ROW) {
		int type = sqlite3_column_type(st, 0);
		const char *v = (const char *)sqlite3_column_text(st, 0);

		if (have)
			snprintf(have, havelen, "%s", type == SQLITE_NULL || !v ? "none" : v);
		if (type == SQLITE_NULL)
			rc = origin ? SQL_LOST : SQLITE_OK;
		else
			rc = type == SQLITE_TEXT && v && origin && strcmp(v, origin) == 0 ? SQLITE_OK
											   : SQL_LOST;
	} else if (rc == SQLITE_DONE) {
		rc = SQL_LOST;
	}
	sqlite3_reset(st);
	return rc;
}

/* ---- connections ------------------------------------------------------------ */

static void sql_conn_close(struct sql_conn *c)
{
	if (!c)
		return;
	for (unsigned i = 0; i < ST_COUNT; i++)
		sqlite3_finalize(c->st[i]);
	if (c->db && sqlite3_close(c->db) != SQLITE_OK)
		log_warn("sqlite: close: %s", sqlite3_errmsg(c->db));
	free(c->bounce);
	free(c);
}

/* Runs @sql (no result rows expected). Returns a SQLite code. */
static int sql_exec(sqlite3 *db, const char *sql)
{
	return sqlite3_exec(db, sql, NULL, NULL, NULL);
}

/* Runs a prepared statement to completion and resets it. */
static int sql_step_done(sqlite3_stmt *st)
{
	int rc = sqlite3_step(st);

	sqlite3_reset(st);
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/*
 * Checks that the schema of @db is exactly the one sql_format_db makes: the
 * two tables with our statement text, byte for byte (SQLite keeps it in
 * sqlite_schema, https://www.sqlite.org/schematab.html), and nothing else.
 * The text fixes every column's type, constraint and conflict clause; a
 * different one could hand back rows the I/O paths do not expect (a TEXT
 * sector compares as text and returns LBAs outside the request). Any other
 * object is refused: a trigger or a view runs SQL of the file's author when
 * we read or write (an AFTER INSERT trigger deleting rows drops acknowledged
 * writes), and indexes, virtual tables and other tables are no part of the
 * format. The exception: SQLite's own statistics tables, which ANALYZE or
 * PRAGMA optimize add to any file they are run on, with the text SQLite
 * creates them with (https://www.sqlite.org/fileformat2.html, "The
 * sqlite_stat1 table", "The sqlite_stat4 table"); only the query planner
 * reads them. Returns 0, or -EINVAL (not a .dbhd) / -errno with a message.
 */
static int sql_check_schema(sqlite3 *db, char *err, size_t errlen)
{
	static const struct {
		const char *name;
		const char *sql;          /* the create statement, with its newlines */
		bool optional;
	} want[] = {
		{ "sectors", sql_schema_sectors, false },
		{ "meta", sql_schema_meta, false },
		{ "sqlite_stat1", "\nCREATE TABLE sqlite_stat1(tbl,idx,stat)\n", true },
		{ "sqlite_stat4", "\nCREATE TABLE sqlite_stat4(tbl,idx,neq,nlt,ndlt,sample)\n", true },
	};
	bool seen[ARRAY_SIZE(want)] = { false };
	sqlite3_stmt *st = NULL;
	int rc, r = 0;

	rc = sqlite3_prepare_v2(db, "SELECT type, name, tbl_name, sql FROM sqlite_schema", -1, &st,
				NULL);
	if (rc != SQLITE_OK) {
		sql_err(err, errlen, "not a .dbhd file: %s", sqlite3_errmsg(db));
		return (rc & 0xff) == SQLITE_ERROR || (rc & 0xff) == SQLITE_NOTADB ||
				       (rc & 0xff) == SQLITE_CORRUPT ? -EINVAL : -sql_errno(db, rc);
	}
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *type = (const char *)sqlite3_column_text(st, 0);
		const char *name = (const char *)sqlite3_column_text(st, 1);
		const char *tbl = (const char *)sqlite3_column_text(st, 2);
		const char *sql = (const char *)sqlite3_column_text(st, 3);
		size_t i, len;

		for (i = 0; i < ARRAY_SIZE(want); i++)
			if (name && strcmp(name, want[i].name) == 0)
				break;
		if (i == ARRAY_SIZE(want)) {
			sql_err(err, errlen, "not a .dbhd file: unexpected %s '%s' in the schema "
				"(a .dbhd holds only the tables sectors and meta)", type ? type : "?",
				name ? name : "?");
			r = -EINVAL;
			goto out;
		}
		/* Stored without the statement's first and last newline. */
		len = strlen(want[i].sql) - 2;
		if (seen[i] || !type || strcmp(type, "table") != 0 || !tbl ||
		    strcmp(tbl, want[i].name) != 0 || !sql || strlen(sql) != len ||
		    memcmp(sql, want[i].sql + 1, len) != 0) {
			sql_err(err, errlen, "not a .dbhd file: %s '%s' is not the table the format "
				"creates", type ? type : "?", want[i].name);
			r = -EINVAL;
			goto out;
		}
		seen[i] = true;
	}
	if (rc != SQLITE_DONE) {
		sql_err(err, errlen, "not a .dbhd file: %s", sqlite3_errmsg(db));
		r = (rc & 0xff) == SQLITE_CORRUPT || (rc & 0xff) == SQLITE_NOTADB ? -EINVAL
										 : -sql_errno(db, rc);
		goto out;
	}
	for (size_t i = 0; i < ARRAY_SIZE(want); i++) {
		if (!seen[i] && !want[i].optional) {
			sql_err(err, errlen, "not a .dbhd file: no table %s", want[i].name);
			r = -EINVAL;
			goto out;
		}
	}
out:
	sqlite3_finalize(st);
	return r;
}

/*
 * Settings of every connection, before it reads anything: the file may come
 * from anyone, so its schema must not make us run code
 * (https://www.sqlite.org/security.html, "Defense against dark arts"):
 * defensive mode (no writable_schema, no raw page writes), an untrusted
 * schema (SQL functions with side effects, and virtual tables, cannot be
 * used from it), and triggers and views switched off, so that even a schema
 * changed by another process after our check cannot act on our statements.
 * Returns a SQLite code.
 */
static int sql_conn_harden(sqlite3 *db)
{
	static const int off[] = { SQLITE_DBCONFIG_TRUSTED_SCHEMA, SQLITE_DBCONFIG_ENABLE_TRIGGER,
				   SQLITE_DBCONFIG_ENABLE_VIEW, SQLITE_DBCONFIG_ENABLE_LOAD_EXTENSION };
	int rc = sqlite3_db_config(db, SQLITE_DBCONFIG_DEFENSIVE, 1, NULL);

	for (size_t i = 0; rc == SQLITE_OK && i < ARRAY_SIZE(off); i++)
		rc = sqlite3_db_config(db, off[i], 0, NULL);
	return rc;
}

/*
 * Opens a connection to @path. @flags: SQLITE_OPEN_READONLY or READWRITE
 * (| CREATE). @writer: prepare the write statements and set WAL. Unless
 * @bare (a connection used to format, to checkpoint, or to check the file
 * first), the schema is checked (sql_check_schema). Returns 0 or -errno
 * with a message.
 */
static int sql_conn_open(const char *path, int flags, bool writer, bool bare, uint32_t sector_size,
			 struct sql_conn **out, char *err, size_t errlen)
{
	struct sql_conn *c = calloc(1, sizeof(*c));
	char pragma[64];
	int rc, r;

	*out = NULL;
	if (!c)
		return -ENOMEM;
	rc = sqlite3_open_v2(path, &c->db, flags | SQLITE_OPEN_NOMUTEX, NULL);
	if (rc != SQLITE_OK) {
		r = -sql_errno(c->db, rc);
		sql_err(err, errlen, "cannot open: %s",
			c->db ? sqlite3_errmsg(c->db) : sqlite3_errstr(rc));
		goto fail;
	}
	sqlite3_extended_result_codes(c->db, 1);
	rc = sql_conn_harden(c->db);
	if (rc != SQLITE_OK) {
		r = -sql_errno(c->db, rc);
		sql_err(err, errlen, "cannot set up: %s", sqlite3_errmsg(c->db));
		goto fail;
	}
	sqlite3_busy_timeout(c->db, SQL_BUSY_TIMEOUT_MS);
	snprintf(pragma, sizeof(pragma), "PRAGMA cache_size = -%d",
		 writer ? SQL_WRITER_CACHE_KIB : SQL_READER_CACHE_KIB);
	rc = sql_exec(c->db, pragma);
	if (rc == SQLITE_OK) {
		snprintf(pragma, sizeof(pragma), "PRAGMA mmap_size = %lld", SQL_MMAP_BYTES);
		rc = sql_exec(c->db, pragma);
	}
	if (rc == SQLITE_OK && writer)
		rc = sql_exec(c->db, "PRAGMA synchronous = NORMAL");
	if (rc != SQLITE_OK) {
		r = -sql_errno(c->db, rc);
		sql_err(err, errlen, "%s: %s", (rc & 0xff) == SQLITE_NOTADB ? "not a .dbhd file" :
			"cannot set up", sqlite3_errmsg(c->db));
		goto fail;
	}
	if (bare) {
		*out = c;
		return 0;
	}
	r = sql_check_schema(c->db, err, errlen);
	if (r < 0)
		goto fail;
	if (writer) {
		sqlite3_stmt *st;

		/* Make sure of WAL (a formatted file already is). */
		rc = sqlite3_prepare_v2(c->db, "PRAGMA journal_mode = WAL", -1, &st, NULL);
		if (rc == SQLITE_OK) {
			rc = sqlite3_step(st);
			if (rc == SQLITE_ROW && sqlite3_stricmp((const char *)sqlite3_column_text(st, 0),
								"wal") != 0)
				rc = SQLITE_ERROR;
			else if (rc == SQLITE_ROW || rc == SQLITE_DONE)
				rc = SQLITE_OK;
			sqlite3_finalize(st);
		}
		if (rc != SQLITE_OK) {
			r = -sql_errno(c->db, rc);
			sql_err(err, errlen, "cannot switch to WAL mode: %s", sqlite3_errmsg(c->db));
			goto fail;
		}
	}
	for (unsigned i = 0; i < (writer ? ST_COUNT : ST_READER_COUNT); i++) {
		rc = sqlite3_prepare_v3(c->db, sql_stmt_text[i], -1, SQLITE_PREPARE_PERSISTENT,
					&c->st[i], NULL);
		if (rc != SQLITE_OK) {
			r = (rc & 0xff) == SQLITE_ERROR || (rc & 0xff) == SQLITE_NOTADB ? -EINVAL
									       : -sql_errno(c->db, rc);
			sql_err(err, errlen, "not a .dbhd file: %s", sqlite3_errmsg(c->db));
			goto fail;
		}
	}
	if (sector_size) {
		c->bounce = malloc(sector_size);
		if (!c->bounce) {
			r = -ENOMEM;
			goto fail;
		}
	}
	*out = c;
	return 0;

fail:
	sql_conn_close(c);
	return r;
}

/* Takes a reader connection, opening one if the pool is not full, else
 * waiting for one. Pool thread. Returns 0 or -errno. */
static int sql_reader_get(struct sqlitelayer *sl, struct sql_conn **out)
{
	struct sql_conn *c;
	char err[256];
	int r;

	pthread_mutex_lock(&sl->conn_lock);
	for (;;) {
		c = sl->free_readers;
		if (c) {
			sl->free_readers = c->next_free;
			pthread_mutex_unlock(&sl->conn_lock);
			*out = c;
			return 0;
		}
		if (sl->nreaders < sl->reader_max)
			break;
		pthread_cond_wait(&sl->conn_cond, &sl->conn_lock);
	}
	sl->nreaders++;      /* reserve a place; filled below */
	pthread_mutex_unlock(&sl->conn_lock);

	r = sql_conn_open(sl->path, SQLITE_OPEN_READONLY, false, false, sl->sector_size, &c,
			  err, sizeof(err));
	pthread_mutex_lock(&sl->conn_lock);
	if (r < 0) {
		sl->nreaders--;
		pthread_cond_signal(&sl->conn_cond);
		pthread_mutex_unlock(&sl->conn_lock);
		log_error("sqlite %s: reader connection: %s", sl->path, err);
		return r;
	}
	for (unsigned i = 0; i < sl->reader_max; i++) {
		if (!sl->readers[i]) {
			sl->readers[i] = c;
			break;
		}
	}
	pthread_mutex_unlock(&sl->conn_lock);
	*out = c;
	return 0;
}

static void sql_reader_put(struct sqlitelayer *sl, struct sql_conn *c)
{
	pthread_mutex_lock(&sl->conn_lock);
	c->next_free = sl->free_readers;
	sl->free_readers = c;
	pthread_cond_signal(&sl->conn_cond);
	pthread_mutex_unlock(&sl->conn_lock);
}

/* ---- metadata and formatting --------------------------------------------- */

/* Reads and validates the meta row through @c. Returns 0 or -errno. */
static int sql_read_meta(sqlite3 *db, bool *ro, uint64_t *count, uint32_t *ss, char *err,
			 size_t errlen)
{
	sqlite3_stmt *st = NULL, *st2 = NULL;
	char *json = NULL;
	const char *t_ro, *t_count, *t_ss;
	sqlite3_int64 v_count, v_ss;
	int rc, r = 0;

	rc = sqlite3_prepare_v2(db, "SELECT json_extract(metadata, '$') FROM meta", -1, &st, NULL);
	if (rc != SQLITE_OK) {
		sql_err(err, errlen, "not a .dbhd file: %s", sqlite3_errmsg(db));
		return (rc & 0xff) == SQLITE_ERROR || (rc & 0xff) == SQLITE_NOTADB ? -EINVAL
										  : -sql_errno(db, rc);
	}
	rc = sqlite3_step(st);
	if (rc == SQLITE_DONE) {
		sql_err(err, errlen, "not a .dbhd file: missing meta row");
		r = -EINVAL;
		goto out;
	}
	if (rc != SQLITE_ROW && (rc & 0xff) == SQLITE_ERROR) {
		sql_err(err, errlen, "bad meta row: %s", sqlite3_errmsg(db));
		r = -EINVAL;
		goto out;
	}
	if (rc != SQLITE_ROW) {
		sql_err(err, errlen, "cannot read the meta row: %s", sqlite3_errmsg(db));
		r = -sql_errno(db, rc);
		goto out;
	}
	if (sqlite3_column_type(st, 0) != SQLITE_TEXT) {
		sql_err(err, errlen, "bad meta row: not a JSON object");
		r = -EINVAL;
		goto out;
	}
	json = strdup((const char *)sqlite3_column_text(st, 0));
	if (!json) {
		r = -ENOMEM;
		goto out;
	}
	rc = sqlite3_prepare_v2(db,
				"SELECT json_type(?1, '$.logically_read_only'), "
				"json_type(?1, '$.sector_count'), json_extract(?1, '$.sector_count'), "
				"json_type(?1, '$.sector_size'), json_extract(?1, '$.sector_size')",
				-1, &st2, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_text(st2, 1, json, -1, SQLITE_STATIC);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(st2);
	if (rc != SQLITE_ROW) {
		sql_err(err, errlen, "bad meta row '%s': %s", json, sqlite3_errmsg(db));
		r = -EINVAL;
		goto out;
	}
	t_ro = (const char *)sqlite3_column_text(st2, 0);
	t_count = (const char *)sqlite3_column_text(st2, 1);
	v_count = sqlite3_column_int64(st2, 2);
	t_ss = (const char *)sqlite3_column_text(st2, 3);
	v_ss = sqlite3_column_int64(st2, 4);
	if (!t_ro || (strcmp(t_ro, "true") != 0 && strcmp(t_ro, "false") != 0) || !t_count ||
	    strcmp(t_count, "integer") != 0 || !t_ss || strcmp(t_ss, "integer") != 0) {
		sql_err(err, errlen, "bad meta row '%s': want logically_read_only (bool), "
			"sector_count and sector_size (integers)", json);
		r = -EINVAL;
		goto out;
	}
	if (v_ss < 512 || v_ss > SQL_MAX_SECTOR_SIZE || !IS_POW2((uint64_t)v_ss)) {
		sql_err(err, errlen, "bad meta row '%s': sector_size %lld is not a power of two "
			"between 512 and %u", json, (long long)v_ss, SQL_MAX_SECTOR_SIZE);
		r = -EINVAL;
		goto out;
	}
	if (v_count <= 0 || (uint64_t)v_count > ((uint64_t)INT64_MAX >> ilog2_u64((uint64_t)v_ss))) {
		sql_err(err, errlen, "bad meta row '%s': sector_count %lld out of range", json,
			(long long)v_count);
		r = -EINVAL;
		goto out;
	}
	*ro = strcmp(t_ro, "true") == 0;
	*count = (uint64_t)v_count;
	*ss = (uint32_t)v_ss;
out:
	sqlite3_finalize(st);
	sqlite3_finalize(st2);
	free(json);
	return r;
}

/* Inserts the meta row of @fmt (in the caller's transaction): minified
 * JSON, fields in the upstream order, then "origin" when there is one.
 * Returns a SQLite code. */
static int sql_insert_meta(sqlite3 *db, const struct sqlitelayer_format *fmt)
{
	sqlite3_stmt *st = NULL;
	char json[160];
	int rc;

	snprintf(json, sizeof(json),
		 "{\"logically_read_only\":%s,\"sector_count\":%" PRIu64 ",\"sector_size\":%u}",
		 fmt->logically_read_only ? "true" : "false", fmt->len_bytes / fmt->sector_size,
		 fmt->sector_size);
	rc = sqlite3_prepare_v2(db, fmt->origin ?
				"INSERT INTO meta (metadata) VALUES (json_set(json(?1), '$.origin', ?2))" :
				"INSERT INTO meta (metadata) VALUES (json(?1))", -1, &st, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_text(st, 1, json, -1, SQLITE_STATIC);
	if (rc == SQLITE_OK && fmt->origin)
		rc = sqlite3_bind_text(st, 2, fmt->origin, -1, SQLITE_STATIC);
	if (rc == SQLITE_OK)
		rc = sql_step_done(st);
	sqlite3_finalize(st);
	return rc;
}

/* Formats the database behind @db (§4.2 "Formatting"). */
static int sql_format_db(sqlite3 *db, const struct sqlitelayer_format *fmt, char *err,
			 size_t errlen)
{
	sqlite3_stmt *st = NULL;
	const char *step = "wipe";
	int rc;

	/* Wipe whatever is there. */
	rc = sqlite3_db_config(db, SQLITE_DBCONFIG_RESET_DATABASE, 1, NULL);
	if (rc == SQLITE_OK)
		rc = sql_exec(db, "VACUUM");
	sqlite3_db_config(db, SQLITE_DBCONFIG_RESET_DATABASE, 0, NULL);
	if (rc == SQLITE_OK) {
		step = "journal_mode";
		rc = sqlite3_prepare_v2(db, "PRAGMA journal_mode = WAL", -1, &st, NULL);
		if (rc == SQLITE_OK) {
			rc = sqlite3_step(st);
			if (rc == SQLITE_ROW &&
			    sqlite3_stricmp((const char *)sqlite3_column_text(st, 0), "wal") != 0)
				rc = SQLITE_ERROR;
			else if (rc == SQLITE_ROW || rc == SQLITE_DONE)
				rc = SQLITE_OK;
			sqlite3_finalize(st);
			st = NULL;
		}
	}
	if (rc == SQLITE_OK) {
		step = "create tables";
		rc = sql_exec(db, "BEGIN");
	}
	if (rc == SQLITE_OK)
		rc = sql_exec(db, sql_schema_sectors);
	if (rc == SQLITE_OK)
		rc = sql_exec(db, sql_schema_meta);
	if (rc == SQLITE_OK) {
		step = "meta";
		rc = sql_insert_meta(db, fmt);
	}
	if (rc == SQLITE_OK)
		rc = sql_exec(db, "COMMIT");
	if (rc != SQLITE_OK) {
		sql_err(err, errlen, "cannot format (%s): %s", step, sqlite3_errmsg(db));
		if (!sqlite3_get_autocommit(db))
			sql_exec(db, "ROLLBACK");
		return -sql_errno(db, rc);
	}
	return 0;
}

/* Checks format parameters (with the sector size resolved). */
static int sql_check_format(const struct sqlitelayer_format *fmt, char *err, size_t errlen)
{
	if (fmt->sector_size < 512 || fmt->sector_size > SQL_MAX_SECTOR_SIZE ||
	    !IS_POW2(fmt->sector_size)) {
		sql_err(err, errlen, "invalid sector size %u (a power of two from 512 to %u)",
			fmt->sector_size, SQL_MAX_SECTOR_SIZE);
		return -EINVAL;
	}
	if (fmt->len_bytes == 0) {
		sql_err(err, errlen, "empty disk: the size must not be zero");
		return -EINVAL;
	}
	if (fmt->len_bytes % fmt->sector_size) {
		sql_err(err, errlen, "size %" PRIu64 " is not a multiple of the sector size %u",
			fmt->len_bytes, fmt->sector_size);
		return -EINVAL;
	}
	if (fmt->len_bytes > (uint64_t)INT64_MAX) {
		sql_err(err, errlen, "size %" PRIu64 " is too large", fmt->len_bytes);
		return -EINVAL;
	}
	return 0;
}

int sqlitelayer_format_file(const char *path, const struct sqlitelayer_format *fmt, char *err,
			    size_t errlen)
{
	struct sqlitelayer_format f = *fmt;
	struct sql_conn *c;
	int r;

	if (f.sector_size == 0)
		f.sector_size = 512;
	r = sql_check_format(&f, err, errlen);
	if (r < 0)
		return r;
	r = sql_conn_open(path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, true, true, 0, &c, err,
			  errlen);
	if (r < 0)
		return r;
	r = sql_format_db(c->db, &f, err, errlen);
	sql_conn_close(c);
	return r;
}

static int sql_ckpt_start(struct sqlitelayer *sl);

/* Opens the connections of an existing .dbhd at sl->path and reads its
 * geometry. */
static int sql_open_file(struct sqlitelayer *sl, char *err, size_t errlen)
{
	struct sql_conn *c = NULL;
	uint32_t ss = 0;
	int r;

	/* Read the meta row first (with a bare connection), then open the
	 * writer with statements that need the sector size. */
	r = sql_conn_open(sl->path, sl->file_ro ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE,
			  false, true, 0, &c, err, errlen);
	if (r < 0)
		return r;
	r = sql_check_schema(c->db, err, errlen);
	if (r == 0)
		r = sql_read_meta(c->db, &sl->logically_ro, &sl->sector_count, &ss, err, errlen);
	if (r == 0 && !sl->file_ro) {
		/* Switch the bare connection into a writer. */
		sql_conn_close(c);
		c = NULL;
		r = sql_conn_open(sl->path, SQLITE_OPEN_READWRITE, true, false, ss, &c, err, errlen);
		if (r == 0) {
			sl->writer = c;
			c = NULL;
			r = sql_ckpt_start(sl);
			if (r < 0)
				sql_err(err, errlen, "cannot start the checkpointer: %s", strerror(-r));
		}
	} else if (r == 0) {
		/* Read-only: keep it as the first reader. */
		sql_conn_close(c);
		c = NULL;
		r = sql_conn_open(sl->path, SQLITE_OPEN_READONLY, false, false, ss, &c, err, errlen);
		if (r == 0) {
			sl->readers[0] = c;
			sl->nreaders = 1;
			sl->free_readers = c;
			c = NULL;
		}
	}
	sql_conn_close(c);
	if (r < 0)
		return r;
	sl->sector_size = ss;
	sl->shift = ilog2_u64(ss);
	sl->opened = true;
	return 0;
}

/* ---- checkpoints ------------------------------------------------------------------ */

/*
 * The writer does not checkpoint on commit (a checkpoint copies the WAL into
 * the database and fsyncs both: done inline, it stalls the commit that
 * triggered it for as long as it takes). Instead a commit that leaves more
 * than SQL_CKPT_PAGES in the WAL wakes this thread, which runs PASSIVE
 * checkpoints on a connection of its own, concurrently with the writer and
 * the readers; the next write transaction after a complete one restarts the
 * WAL from the beginning. It is a thread of the layer rather than pool
 * work because it belongs to the layer, not to a request: pool work must
 * finish on a live reactor, and no reactor is guaranteed to outlive it.
 */
static void *sql_ckpt_thread(void *opaque)
{
	struct sqlitelayer *sl = opaque;
	struct sql_conn *c = NULL;
	char err[256];

	pthread_mutex_lock(&sl->ckpt_lock);
	while (!sl->ckpt_stop) {
		if (!sl->ckpt_want) {
			pthread_cond_wait(&sl->ckpt_cond, &sl->ckpt_lock);
			continue;
		}
		sl->ckpt_want = false;
		pthread_mutex_unlock(&sl->ckpt_lock);
		if (!c && sql_conn_open(sl->path, SQLITE_OPEN_READWRITE, false, true, 0, &c, err,
					sizeof(err)) < 0) {
			log_warn("sqlite %s: checkpoint connection: %s", sl->path, err);
			c = NULL;
		}
		if (c) {
			int rc = sqlite3_wal_checkpoint_v2(c->db, NULL, SQLITE_CHECKPOINT_PASSIVE,
							   NULL, NULL);

			if (rc != SQLITE_OK && (rc & 0xff) != SQLITE_BUSY)
				log_warn("sqlite %s: checkpoint: %s", sl->path,
					 sqlite3_errmsg(c->db));
		}
		pthread_mutex_lock(&sl->ckpt_lock);
	}
	pthread_mutex_unlock(&sl->ckpt_lock);
	sql_conn_close(c);
	return NULL;
}

/* The writer's WAL hook: runs after each commit with the WAL size. */
static int sql_wal_hook(void *opaque, sqlite3 *db, const char *name, int pages)
{
	struct sqlitelayer *sl = opaque;

	if (pages >= SQL_CKPT_HARD_PAGES) {
		/* The thread is not keeping up: push back on the writer. */
		sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
	} else if (pages >= SQL_CKPT_PAGES) {
		pthread_mutex_lock(&sl->ckpt_lock);
		if (!sl->ckpt_want) {
			sl->ckpt_want = true;
			pthread_cond_signal(&sl->ckpt_cond);
		}
		pthread_mutex_unlock(&sl->ckpt_lock);
	}
	return SQLITE_OK;
}

/* Starts the checkpointer for the writer. Returns 0 or -errno. */
static int sql_ckpt_start(struct sqlitelayer *sl)
{
	int r = pthread_create(&sl->ckpt_thread, NULL, sql_ckpt_thread, sl);

	if (r != 0)
		return -r;
	sl->ckpt_running = true;
	sqlite3_wal_hook(sl->writer->db, sql_wal_hook, sl);
	return 0;
}

static void sql_ckpt_stop(struct sqlitelayer *sl)
{
	if (!sl->ckpt_running)
		return;
	pthread_mutex_lock(&sl->ckpt_lock);
	sl->ckpt_stop = true;
	pthread_cond_signal(&sl->ckpt_cond);
	pthread_mutex_unlock(&sl->ckpt_lock);
	pthread_join(sl->ckpt_thread, NULL);
	sl->ckpt_running = false;
}

/* ---- the pool side ------------------------------------------------------------ */

static void sql_log_fail(struct sqlitelayer *sl, sqlite3 *db, struct disk_io *io, int rc)
{
	log_error("sqlite %s: %s at sector %" PRIu64 " (+%" PRIu64 "): %s", sl->path,
		  disk_op_str(io->op), io->sector, io->count, db ? sqlite3_errmsg(db) :
		  sqlite3_errstr(rc));
}

/* Sets @io's result from a SQLite code (SQLITE_OK = success). */
static void sql_set_result(struct sqlitelayer *sl, struct sql_conn *c, struct disk_io *io, int rc)
{
	struct sql_req *q = sql_req_of(io);

	if (rc == SQLITE_OK) {
		q->status = DISK_OK;
		return;
	}
	sql_log_fail(sl, c ? c->db : NULL, io, rc);
	q->status = DISK_IO_ERROR;
	q->os_errno = sql_errno(c ? c->db : NULL, rc);
}

/* Notes, once, that another process rebound this auto-cache's file. */
static void sql_mark_lost(struct sqlitelayer *sl)
{
	if (!atomic_exchange(&sl->lost, true))
		log_warn("autocache %s: another user of the key rebound the cache to another "
			 "origin; no longer caching %s here", sl->path,
			 sl->origin ? sl->origin : "this disk");
}

/* Completes a batch of a lost auto-cache as an empty cache that keeps
 * nothing: reads mark nothing (the layer below answers), block status
 * reports the range absent, writes (fills) and flushes succeed unstored. */
static void sql_lost_batch(struct disk_io *batch)
{
	for (struct disk_io *io = batch; io; io = sql_req_of(io)->next) {
		if (io->op == DISK_OP_BLOCK_STATUS) {
			io->u.bs.extents[0].count = io->count;
			io->u.bs.extents[0].flags = DISK_EXTENT_HOLE;
			io->u.bs.extents[0].layer = -1;
			io->u.bs.nr = 1;
		}
		sql_req_of(io)->status = DISK_OK;
	}
}

/*
 * The LBA of the current row of a range query over [@s, @e), whose rows
 * must come in ascending order from @next on; SQL_BAD_ROW (logged) when
 * the row is not an integer inside that window. The schema check makes
 * sector the rowid, so only a corrupt file gets here; a bad LBA must never
 * reach the buffer offset or the marker bitmap.
 */
static int sql_row_lba(struct sqlitelayer *sl, sqlite3_stmt *st, uint64_t s, uint64_t next,
		       uint64_t e, uint64_t *lba)
{
	sqlite3_int64 v = sqlite3_column_int64(st, 0);

	if (sqlite3_column_type(st, 0) != SQLITE_INTEGER || v < 0 || (uint64_t)v < next ||
	    (uint64_t)v >= e) {
		const char *text = (const char *)sqlite3_column_text(st, 0);

		log_error("sqlite %s: db returned sector '%s' for [%" PRIu64 ", %" PRIu64 ") "
			  "(outside the range, or out of order)", sl->path, text ? text : "NULL",
			  s, e);
		return SQL_BAD_ROW;
	}
	*lba = (uint64_t)v;
	return SQLITE_OK;
}

/* READ on a reader connection. Returns a SQLite code, or SQL_BAD_ROW. */
static int sql_do_read(struct sqlitelayer *sl, struct sql_conn *c, struct disk_io *io)
{
	sqlite3_stmt *st = c->st[ST_READ];
	uint64_t s = io->sector, e = io->sector + io->count, next = s;
	uint32_t ss = sl->sector_size;
	struct sql_cur cur;
	int rc;

	sql_cur_init(&cur, io->iov, io->iovcnt);
	sqlite3_bind_int64(st, 1, (sqlite3_int64)s);
	sqlite3_bind_int64(st, 2, (sqlite3_int64)e);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		uint64_t lba;
		size_t off;
		int type = sqlite3_column_type(st, 1);
		uint8_t *dst;

		rc = sql_row_lba(sl, st, s, next, e, &lba);
		if (rc != SQLITE_OK)
			break;
		next = lba + 1;
		off = (size_t)((lba - s) << sl->shift);
		if (type == SQLITE_NULL) {
			dst = sql_cur_at(&cur, off, ss);
			if (dst)
				memset(dst, 0, ss);
			else
				iov_memset(io->iov, io->iovcnt, off, 0, ss);
		} else {
			const void *p = sqlite3_column_blob(st, 1);
			int n = sqlite3_column_bytes(st, 1);

			if (type != SQLITE_BLOB || n < 0 || (uint32_t)n != ss || !p) {
				log_error("sqlite %s: db contained sector with unexpected size "
					  "(sector %" PRIu64 ": %d bytes, type %d)", sl->path, lba,
					  n, type);
				rc = SQL_BAD_ROW;
				break;
			}
			dst = sql_cur_at(&cur, off, ss);
			if (dst)
				memcpy(dst, p, ss);
			else
				iov_from_buf(io->iov, io->iovcnt, off, p, ss);
		}
		if (io->u.marker)
			bitmap_set(io->u.marker, lba);
	}
	sqlite3_reset(st);
	return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* BLOCK_STATUS on a reader connection: the first run of [s, e). Returns a
 * SQLite code, or SQL_BAD_ROW. */
static int sql_do_block_status(struct sqlitelayer *sl, struct sql_conn *c, struct disk_io *io)
{
	sqlite3_stmt *st = c->st[ST_BS];
	uint64_t s = io->sector, e = io->sector + io->count;
	struct disk_extent *ext = &io->u.bs.extents[0];
	uint64_t n = 0, expect = s;
	bool zero = false;
	int rc;

	sqlite3_bind_int64(st, 1, (sqlite3_int64)s);
	sqlite3_bind_int64(st, 2, (sqlite3_int64)e);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *type = (const char *)sqlite3_column_text(st, 1);
		uint64_t lba;
		bool z;

		if (sql_row_lba(sl, st, s, expect, e, &lba) != SQLITE_OK) {
			rc = SQL_BAD_ROW;
			break;
		}
		z = type && strcmp(type, "null") == 0;
		if (!z && (!type || strcmp(type, "blob") != 0 ||
			   sqlite3_column_int64(st, 2) != (sqlite3_int64)sl->sector_size)) {
			log_error("sqlite %s: db contained sector with unexpected size "
				  "(sector %" PRIu64 ": %lld bytes, type %s)", sl->path, lba,
				  (long long)sqlite3_column_int64(st, 2), type ? type : "?");
			rc = SQL_BAD_ROW;
			break;
		}
		if (n == 0 && lba > s) {
			/* Absent up to the first row. */
			ext->count = lba - s;
			ext->flags = DISK_EXTENT_HOLE;
			break;
		}
		if (n == 0) {
			zero = z;
		} else if (lba != expect || z != zero || n >= SQL_BS_MAX_ROWS) {
			break;
		}
		n++;
		expect = lba + 1;
	}
	sqlite3_reset(st);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return rc;
	if (n > 0) {
		ext->count = n;
		ext->flags = zero ? DISK_EXTENT_ZERO : 0;
	} else if (rc == SQLITE_DONE) {
		ext->count = e - s;
		ext->flags = DISK_EXTENT_HOLE;
	}
	ext->layer = -1;
	io->u.bs.nr = 1;
	return SQLITE_OK;
}

/* WRITE (normal or no-overwrite) on the writer, inside a transaction. */
static int sql_do_write(struct sqlitelayer *sl, struct sql_conn *c, struct disk_io *io)
{
	sqlite3_stmt *st = c->st[(io->flags & DISK_IO_NO_OVERWRITE) ? ST_IGNORE : ST_REPLACE];
	uint32_t ss = sl->sector_size;
	struct sql_cur cur;
	int rc = SQLITE_OK;

	sql_cur_init(&cur, io->iov, io->iovcnt);
	for (uint64_t i = 0; i < io->count; i++) {
		size_t off = (size_t)(i << sl->shift);
		const uint8_t *p = sql_cur_at(&cur, off, ss);

		if (!p) {
			iov_to_buf(io->iov, io->iovcnt, off, c->bounce, ss);
			p = c->bounce;
		}
		sqlite3_bind_int64(st, 1, (sqlite3_int64)(io->sector + i));
		if (sql_is_zero(p, ss))
			rc = sqlite3_bind_null(st, 2);
		else
			rc = sqlite3_bind_blob(st, 2, p, (int)ss, SQLITE_STATIC);
		if (rc == SQLITE_OK)
			rc = sql_step_done(st);
		if (rc != SQLITE_OK)
			break;
	}
	sqlite3_clear_bindings(st);
	return rc;
}

/* UNMAP on the writer, inside a transaction (count > 0). */
static int sql_do_unmap(struct sqlitelayer *sl UNUSED, struct sql_conn *c, struct disk_io *io)
{
	/* next_is_zero: absent reads as the zeroes below; else store
	 * present-zero (NULL) rows over the range. */
	sqlite3_stmt *st = c->st[(io->flags & DISK_IO_NEXT_IS_ZERO) ? ST_DELETE : ST_ZERO_RANGE];

	sqlite3_bind_int64(st, 1, (sqlite3_int64)io->sector);
	sqlite3_bind_int64(st, 2, (sqlite3_int64)(io->sector + io->count));
	return sql_step_done(st);
}

static int sql_do_write_op(struct sqlitelayer *sl, struct sql_conn *c, struct disk_io *io)
{
	switch (io->op) {
	case DISK_OP_WRITE:
		return sql_do_write(sl, c, io);
	case DISK_OP_UNMAP:
		return sql_do_unmap(sl, c, io);
	case DISK_OP_FLUSH:
		return sql_step_done(c->st[ST_USER_VERSION]);
	default:
		return SQLITE_MISUSE;
	}
}

/* Runs @ops (one or more) in one transaction on the writer. @sync_full:
 * commit under synchronous=FULL. Returns the first failure's code, and
 * that request in *@bad (NULL when the transaction itself failed). */
static int sql_write_txn(struct sqlitelayer *sl, struct sql_conn *c, struct disk_io *ops,
			 bool one, bool sync_full, struct disk_io **bad)
{
	int rc, rc2;

	*bad = NULL;
	if (sync_full) {
		rc = sql_exec(c->db, "PRAGMA synchronous = FULL");
		if (rc != SQLITE_OK)
			return rc;
	}
	rc = sql_step_done(c->st[ST_BEGIN_IMM]);
	if (rc == SQLITE_OK && sl->mode == SQL_MODE_AUTOCACHE)
		rc = atomic_load(&sl->lost) ? SQL_LOST
					    : sql_origin_check(c->st[ST_ORIGIN], sl->origin, NULL, 0);
	for (struct disk_io *io = ops; rc == SQLITE_OK && io; io = one ? NULL : sql_req_of(io)->next) {
		rc = sql_do_write_op(sl, c, io);
		if (rc != SQLITE_OK)
			*bad = io;
	}
	if (rc == SQLITE_OK)
		rc = sql_step_done(c->st[ST_COMMIT]);
	if (rc != SQLITE_OK && !sqlite3_get_autocommit(c->db))
		sql_step_done(c->st[ST_ROLLBACK]);
	if (sync_full) {
		rc2 = sql_exec(c->db, "PRAGMA synchronous = NORMAL");
		if (rc2 != SQLITE_OK)
			log_warn("sqlite %s: cannot reset synchronous: %s", sl->path,
				 sqlite3_errmsg(c->db));
	}
	return rc;
}

static void sql_write_work(struct work_item *w)
{
	struct sql_lane *lane = container_of(w, struct sql_lane, w);
	struct sqlitelayer *sl = lane->rc->sl;
	struct sql_conn *c = sl->writer;
	bool has_flush = false;
	struct disk_io *bad;
	int rc;

	for (struct disk_io *io = lane->batch; io; io = sql_req_of(io)->next)
		has_flush = has_flush || io->op == DISK_OP_FLUSH;

	pthread_mutex_lock(&sl->writer_lock);
	rc = sql_write_txn(sl, c, lane->batch, false, has_flush, &bad);
	if (rc == SQL_LOST) {
		/* Cache fills for a file that caches another origin now:
		 * dropped, as any fill may be. */
		sql_mark_lost(sl);
		sql_lost_batch(lane->batch);
	} else if (rc == SQLITE_OK) {
		for (struct disk_io *io = lane->batch; io; io = sql_req_of(io)->next)
			sql_req_of(io)->status = DISK_OK;
	} else if (!sql_req_of(lane->batch)->next) {
		sql_set_result(sl, c, lane->batch, rc);
	} else {
		/* Something failed: redo each request alone, so that each one
		 * succeeds or fails by itself. */
		log_debug("sqlite %s: batch failed (%s); retrying one by one", sl->path,
			  sqlite3_errmsg(c->db));
		for (struct disk_io *io = lane->batch; io; io = sql_req_of(io)->next) {
			rc = sql_write_txn(sl, c, io, true, io->op == DISK_OP_FLUSH, &bad);
			if (rc == SQL_LOST) {
				sql_mark_lost(sl);
				rc = SQLITE_OK;
			}
			sql_set_result(sl, c, io, rc);
		}
	}
	pthread_mutex_unlock(&sl->writer_lock);
}

static void sql_read_work(struct work_item *w)
{
	struct sql_lane *lane = container_of(w, struct sql_lane, w);
	struct sqlitelayer *sl = lane->rc->sl;
	bool many = sql_req_of(lane->batch)->next != NULL;
	/* An auto-cache checks its binding in the snapshot it reads. */
	bool check = sl->mode == SQL_MODE_AUTOCACHE;
	bool lost = atomic_load(&sl->lost);
	struct sql_conn *c;
	int rc, r;

	if (lost) {
		sql_lost_batch(lane->batch);
		return;
	}

	r = sql_reader_get(sl, &c);
	if (r < 0) {
		for (struct disk_io *io = lane->batch; io; io = sql_req_of(io)->next) {
			sql_req_of(io)->status = DISK_IO_ERROR;
			sql_req_of(io)->os_errno = -r;
		}
		return;
	}
	/* One read transaction (one snapshot) for the batch. */
	rc = many || check ? sql_step_done(c->st[ST_BEGIN]) : SQLITE_OK;
	if (rc == SQLITE_OK && check) {
		rc = sql_origin_check(c->st[ST_ORIGIN], sl->origin, NULL, 0);
		if (rc == SQL_LOST) {
			sql_mark_lost(sl);
			rc = SQLITE_OK;
			lost = true;
		}
	}
	if (lost)
		sql_lost_batch(lane->batch);
	for (struct disk_io *io = lost ? NULL : lane->batch; io; io = sql_req_of(io)->next) {
		int rc1 = rc;

		if (rc1 == SQLITE_OK)
			rc1 = io->op == DISK_OP_READ ? sql_do_read(sl, c, io)
						     : sql_do_block_status(sl, c, io);
		if (rc1 == SQL_BAD_ROW || (rc1 & 0xff) == SQLITE_CORRUPT) {
			/* The file breaks the format, or SQLite found it
			 * damaged: this range of the medium cannot be read. */
			if (rc1 != SQL_BAD_ROW)
				sql_log_fail(sl, c->db, io, rc1);
			sql_req_of(io)->status = DISK_MEDIUM_ERROR;
			sql_req_of(io)->medium = DISK_MEDIUM_UNRECOVERED_READ;
		} else {
			sql_set_result(sl, c, io, rc1);
		}
	}
	if (!sqlite3_get_autocommit(c->db))
		sql_step_done(c->st[ST_COMMIT]);
	sql_reader_put(sl, c);
}

/* ---- the reactor side --------------------------------------------------------- */

static void sql_lane_done(struct work_item *w);

static void sql_lane_init(struct sql_lane *lane, struct sql_rctx *rc, bool write)
{
	lane->rc = rc;
	lane->write = write;
	lane->w.work = write ? sql_write_work : sql_read_work;
	lane->w.done = sql_lane_done;
}

/* Runs in reactor_free(), on the reactor's thread: frees the contexts
 * every layer made for it (no request of theirs is pending: the reactor
 * is going away). */
static void sql_rreg_free(void *value)
{
	struct sql_rreg *reg = value;

	pthread_mutex_lock(&sql_reg_lock);
	while (reg->head) {
		struct sql_rctx *rc = reg->head;
		struct sqlitelayer *sl = rc->sl;

		reg->head = rc->rnext;
		pthread_mutex_lock(&sl->rctx_lock);
		for (struct sql_rctx **pp = &sl->rctxs; *pp; pp = &(*pp)->next) {
			if (*pp == rc) {
				*pp = rc->next;
				break;
			}
		}
		pthread_mutex_unlock(&sl->rctx_lock);
		assert(!rc->wlane.busy && !rc->rhead && !rc->whead);
		free(rc);
	}
	pthread_mutex_unlock(&sql_reg_lock);
	if (sql_tls.r == reg->r)
		sql_tls.id = 0;
	free(reg);
}

/* Reactor @r's list of contexts (made on first use), or NULL without
 * memory (the contexts then live as long as their layers). @r is the
 * calling thread's. */
static struct sql_rreg *sql_rreg_get(struct reactor *r)
{
	struct sql_rreg *reg = reactor_local_get(r, REACTOR_LOCAL_SQLITE);

	if (!reg && (reg = calloc(1, sizeof(*reg)))) {
		reg->r = r;
		reactor_local_set(r, REACTOR_LOCAL_SQLITE, reg, sql_rreg_free);
	}
	return reg;
}

/* Unlinks @rc from its reactor's list; under sql_reg_lock. */
static void sql_rreg_forget(struct sql_rctx *rc)
{
	if (!rc->reg)
		return;
	for (struct sql_rctx **pp = &rc->reg->head; *pp; pp = &(*pp)->rnext) {
		if (*pp == rc) {
			*pp = rc->rnext;
			break;
		}
	}
	rc->reg = NULL;
}

/* The context of reactor @r, created on first use. */
static struct sql_rctx *sql_rctx_get(struct sqlitelayer *sl, struct reactor *r)
{
	struct sql_rctx *rc;

	struct sql_rreg *reg = NULL;

	if (likely(sql_tls.id == sl->id && sql_tls.r == r))
		return sql_tls.rc;
	/* The reactor's slot can only be read on its thread. */
	if (r == reactor_current())
		reg = sql_rreg_get(r);
	pthread_mutex_lock(&sql_reg_lock);
	pthread_mutex_lock(&sl->rctx_lock);
	for (rc = sl->rctxs; rc; rc = rc->next)
		if (rc->r == r)
			break;
	if (!rc) {
		rc = calloc(1, sizeof(*rc));
		if (rc) {
			rc->sl = sl;
			rc->r = r;
			rc->rtail = &rc->rhead;
			rc->wtail = &rc->whead;
			for (unsigned i = 0; i < SQL_READ_LANES; i++)
				sql_lane_init(&rc->rlane[i], rc, false);
			sql_lane_init(&rc->wlane, rc, true);
			rc->next = sl->rctxs;
			sl->rctxs = rc;
			if (reg) {
				rc->reg = reg;
				rc->rnext = reg->head;
				reg->head = rc;
			}
		}
	}
	pthread_mutex_unlock(&sl->rctx_lock);
	pthread_mutex_unlock(&sql_reg_lock);
	if (rc && r == reactor_current()) {
		sql_tls.id = sl->id;
		sql_tls.r = r;
		sql_tls.rc = rc;
	}
	return rc;
}

/* Sends everything pending of one kind to an idle lane, if there is one. */
static void sql_kick(struct sql_rctx *rc, bool write)
{
	struct sql_lane *lane = NULL;

	if (write) {
		if (!rc->whead || rc->wlane.busy)
			return;
		lane = &rc->wlane;
		lane->batch = rc->whead;
		rc->whead = NULL;
		rc->wtail = &rc->whead;
	} else {
		if (!rc->rhead)
			return;
		for (unsigned i = 0; i < SQL_READ_LANES && !lane; i++)
			if (!rc->rlane[i].busy)
				lane = &rc->rlane[i];
		if (!lane)
			return;
		lane->batch = rc->rhead;
		rc->rhead = NULL;
		rc->rtail = &rc->rhead;
	}
	lane->busy = true;
	workpool_submit(workpool_default(), &lane->w);
}

static void sql_lane_done(struct work_item *w)
{
	struct sql_lane *lane = container_of(w, struct sql_lane, w);
	struct disk_io *io = lane->batch;

	lane->batch = NULL;
	lane->busy = false;
	/* Send the next batch before completing this one. After the loop
	 * below, the layer may be gone (a completion may close it), so
	 * nothing of it is touched there. */
	sql_kick(lane->rc, lane->write);
	while (io) {
		struct sql_req *q = sql_req_of(io);
		struct disk_io *next = q->next;

		if (q->status == DISK_IO_ERROR) {
			disk_io_complete_errno(io, q->os_errno);
		} else {
			if (q->status == DISK_MEDIUM_ERROR)
				io->medium = q->medium;
			disk_io_complete(io, q->status);
		}
		io = next;
	}
}

/* Queues @io for the pool. Returns DISK_PENDING or an error status. */
static int sql_queue(struct sqlitelayer *sl, struct disk_io *io, bool write)
{
	struct sql_req *q = sql_req_of(io);
	struct sql_rctx *rc;

	if (!io->reactor)
		io->reactor = reactor_current();
	if (!workpool_default()) {
		io->os_errno = ENOMEM;
		return DISK_IO_ERROR;
	}
	rc = sql_rctx_get(sl, io->reactor);
	if (!rc) {
		io->os_errno = ENOMEM;
		return DISK_IO_ERROR;
	}
	q->next = NULL;
	q->status = DISK_OK;
	q->os_errno = 0;
	q->medium = DISK_MEDIUM_NONE;
	if (write) {
		*rc->wtail = io;
		rc->wtail = &q->next;
	} else {
		*rc->rtail = io;
		rc->rtail = &q->next;
	}
	sql_kick(rc, write);
	return DISK_PENDING;
}

/* ---- layer ops ------------------------------------------------------------------ */

static inline struct sqlitelayer *sql_of(struct layer *l)
{
	return layer_priv(l);
}

static uint64_t sqlitelayer_sector_count(struct layer *l)
{
	return sql_of(l)->sector_count;
}

static int sqlitelayer_read(struct layer *l, struct disk_io *io)
{
	struct sqlitelayer *sl = sql_of(l);

	if (!sql_in_range(sl, io->sector, io->count))
		return DISK_ILLEGAL_BLOCK;
	if (io->count == 0)
		return DISK_OK;
	return sql_queue(sl, io, false);
}

static int sqlitelayer_write(struct layer *l, struct disk_io *io)
{
	struct sqlitelayer *sl = sql_of(l);

	if (!sql_in_range(sl, io->sector, io->count))
		return DISK_ILLEGAL_BLOCK;
	if (!sl->writer ||
	    (sl->logically_ro && !(io->flags & DISK_IO_NO_OVERWRITE))) {
		log_debug("sqlite %s: write to a read-only layer at sector %" PRIu64, sl->path,
			  io->sector);
		return DISK_READ_ONLY;
	}
	if (io->count == 0)
		return DISK_OK;
	return sql_queue(sl, io, true);
}

static int sqlitelayer_unmap(struct layer *l, struct disk_io *io)
{
	struct sqlitelayer *sl = sql_of(l);

	if (!sql_in_range(sl, io->sector, io->count))
		return DISK_ILLEGAL_BLOCK;
	if (!sl->writer || sl->logically_ro)
		return DISK_READ_ONLY;
	if (io->count == 0)
		return DISK_OK;   /* upstream's inclusive bound underflows here */
	return sql_queue(sl, io, true);
}

static int sqlitelayer_flush(struct layer *l, struct disk_io *io)
{
	struct sqlitelayer *sl = sql_of(l);

	if (!sl->writer)
		return DISK_OK;   /* nothing was written through this handle */
	return sql_queue(sl, io, true);
}

static int sqlitelayer_block_status(struct layer *l, struct disk_io *io)
{
	struct sqlitelayer *sl = sql_of(l);

	if (!sql_in_range(sl, io->sector, io->count))
		return DISK_ILLEGAL_BLOCK;
	if (io->count == 0) {
		io->u.bs.nr = 0;
		return DISK_OK;
	}
	return sql_queue(sl, io, false);
}

static void sqlitelayer_fill_meta(struct sqlitelayer *sl, struct layer_meta *meta)
{
	memset(meta, 0, sizeof(*meta));
	meta->sector_size = sl->sector_size;
	meta->sector_count = sl->sector_count;
	meta->physical_sector_size = sl->sector_size;
	meta->unmap_behavior = DISK_UNMAP_ZEROES;
	meta->optimal_unmap_sectors = 1;
	/* A file opened read-only cannot take writes either. */
	meta->read_only = sl->logically_ro || sl->file_ro;
	meta->can_read_cache = !sl->file_ro;
	meta->fua_respected = false;
	meta->caps = DISK_CAP_PERSISTENT | DISK_CAP_VOLATILE_CACHE | DISK_CAP_COHERENT;
}

/* Format-on-attach (§4.2): geometry from the explicit values, else the
 * lower layer. */
static int sql_attach_format(struct sqlitelayer *sl, const struct layer_meta *lower, char *err,
			     size_t errlen)
{
	struct sqlitelayer_format f = sl->fmt;
	int r;

	if (f.len_bytes == 0) {
		if (!lower) {
			sql_err(err, errlen, "no base layer to infer sector_count from");
			return -EINVAL;
		}
		if (MUL_OVERFLOW(lower->sector_count, (uint64_t)lower->sector_size, &f.len_bytes)) {
			sql_err(err, errlen, "the lower layer is too large");
			return -EINVAL;
		}
	}
	if (f.sector_size == 0)
		f.sector_size = lower ? lower->sector_size : 512;
	r = sqlitelayer_format_file(sl->path, &f, err, errlen);
	if (r < 0)
		return r;
	return sql_open_file(sl, err, errlen);
}

static int sql_attach_autocache(struct sqlitelayer *sl, const struct layer_meta *lower, char *err,
				size_t errlen);

static int sqlitelayer_attach(struct layer *l, const struct layer_meta *lower,
			      struct layer_meta *meta, char *err, size_t errlen)
{
	struct sqlitelayer *sl = sql_of(l);
	int r = 0;

	if (!sl->opened) {
		if (sl->mode == SQL_MODE_FORMAT)
			r = sql_attach_format(sl, lower, err, errlen);
		else if (sl->mode == SQL_MODE_AUTOCACHE)
			r = sql_attach_autocache(sl, lower, err, errlen);
		if (r < 0)
			return r;
	}
	assert(sl->opened);
	sqlitelayer_fill_meta(sl, meta);
	return 0;
}

static void sqlitelayer_describe(struct layer *l, struct disk_describer *dd)
{
	struct sqlitelayer *sl = sql_of(l);

	if (sl->path)
		dd->param(dd, "path", sl->path);
	if (sl->mode == SQL_MODE_AUTOCACHE) {
		if (sl->cache_key)
			dd->param(dd, "key", sl->cache_key);
		if (sl->cache_root)
			dd->param(dd, "cache_dir", sl->cache_root);
		dd->param(dd, "origin", sl->origin ? sl->origin : "none");
	}
	dd->param(dd, "access", sl->file_ro ? "read-only" : "read-write");
	dd->param(dd, "logically_read_only", sl->logically_ro ? "true" : "false");
	dd->param(dd, "journal", "wal");
	disk_describe_paramf(dd, "reader_connections", "%u", sl->reader_max);
}

static void sqlitelayer_free(struct sqlitelayer *sl)
{
	if (!sl)
		return;
	sql_ckpt_stop(sl);
	/* Readers first: the writer, closing last, checkpoints the WAL and
	 * removes it. */
	if (sl->readers) {
		for (unsigned i = 0; i < sl->reader_max; i++)
			sql_conn_close(sl->readers[i]);
		free(sl->readers);
	}
	sql_conn_close(sl->writer);
	pthread_mutex_lock(&sql_reg_lock);
	while (sl->rctxs) {
		struct sql_rctx *rc = sl->rctxs;

		assert(!rc->wlane.busy && !rc->rhead && !rc->whead);
		sl->rctxs = rc->next;
		sql_rreg_forget(rc);
		free(rc);
	}
	pthread_mutex_unlock(&sql_reg_lock);
	if (sql_tls.id == sl->id)
		sql_tls.id = 0;
	pthread_mutex_destroy(&sl->writer_lock);
	pthread_mutex_destroy(&sl->conn_lock);
	pthread_cond_destroy(&sl->conn_cond);
	pthread_mutex_destroy(&sl->rctx_lock);
	pthread_mutex_destroy(&sl->ckpt_lock);
	pthread_cond_destroy(&sl->ckpt_cond);
	free(sl->path);
	free(sl->cache_root);
	free(sl->cache_key);
	free(sl->origin);
	free(sl);
}

static void sqlitelayer_close(struct layer *l)
{
	sqlitelayer_free(sql_of(l));
}

static const struct layer_ops sqlitelayer_ops = {
	.version = LAYER_OPS_VERSION,
	.type = "sqlite",
	.attach = sqlitelayer_attach,
	.sector_count = sqlitelayer_sector_count,
	.read = sqlitelayer_read,
	.write = sqlitelayer_write,
	.flush = sqlitelayer_flush,
	.unmap = sqlitelayer_unmap,
	.block_status = sqlitelayer_block_status,
	.describe = sqlitelayer_describe,
	.close = sqlitelayer_close,
};

/* A new, unopened layer object. */
static struct sqlitelayer *sql_alloc(enum sql_mode mode, bool read_only, unsigned readers)
{
	struct sqlitelayer *sl = calloc(1, sizeof(*sl));

	if (!sl)
		return NULL;
	sl->mode = mode;
	sl->file_ro = read_only;
	sl->id = atomic_fetch_add(&sql_next_id, 1);
	sl->reader_max = readers ? MIN(readers, SQL_MAX_READERS) : SQL_DEFAULT_READERS;
	pthread_mutex_init(&sl->writer_lock, NULL);
	pthread_mutex_init(&sl->conn_lock, NULL);
	pthread_cond_init(&sl->conn_cond, NULL);
	pthread_mutex_init(&sl->rctx_lock, NULL);
	pthread_mutex_init(&sl->ckpt_lock, NULL);
	pthread_cond_init(&sl->ckpt_cond, NULL);
	sl->readers = calloc(sl->reader_max, sizeof(*sl->readers));
	if (!sl->readers) {
		sqlitelayer_free(sl);
		return NULL;
	}
	return sl;
}

int sqlitelayer_new(const char *path, const struct sqlitelayer_opts *opts, struct layer **out,
		    char *err, size_t errlen)
{
	struct sqlitelayer *sl;
	int r;

	*out = NULL;
	if (err && errlen)
		err[0] = '\0';
	sl = sql_alloc(opts->format ? SQL_MODE_FORMAT : SQL_MODE_OPEN, opts->read_only,
		       opts->reader_conns);
	if (!sl || !(sl->path = strdup(path))) {
		sqlitelayer_free(sl);
		return -ENOMEM;
	}
	if (opts->format) {
		sl->fmt = *opts->format;
		/* Borrowed by the caller only until now: keep a copy. */
		if (sl->fmt.origin && !(sl->origin = strdup(sl->fmt.origin))) {
			sqlitelayer_free(sl);
			return -ENOMEM;
		}
		sl->fmt.origin = sl->origin;
		if (sl->fmt.sector_size &&
		    (sl->fmt.sector_size < 512 || !IS_POW2(sl->fmt.sector_size) ||
		     sl->fmt.sector_size > SQL_MAX_SECTOR_SIZE)) {
			sql_err(err, errlen, "invalid sector size %u", sl->fmt.sector_size);
			sqlitelayer_free(sl);
			return -EINVAL;
		}
		/* A read-only layer is formatted through a temporary writer
		 * and then opened read-only. */
	} else {
		r = sql_open_file(sl, err, errlen);
		if (r < 0) {
			sqlitelayer_free(sl);
			return r;
		}
	}
	r = layer_new(&sqlitelayer_ops, sl, out);
	if (r < 0) {
		sqlitelayer_free(sl);
		return r;
	}
	return 0;
}

unsigned sqlitelayer_reactor_contexts(struct layer *l)
{
	struct sqlitelayer *sl;
	unsigned n = 0;

	if (!l || layer_get_ops(l) != &sqlitelayer_ops)
		return 0;
	sl = sql_of(l);
	pthread_mutex_lock(&sl->rctx_lock);
	for (struct sql_rctx *rc = sl->rctxs; rc; rc = rc->next)
		n++;
	pthread_mutex_unlock(&sl->rctx_lock);
	return n;
}

const char *sqlitelayer_path(struct layer *l)
{
	if (!l || layer_get_ops(l) != &sqlitelayer_ops)
		return NULL;
	return sql_of(l)->path;
}

/* ---- auto-cache (§4.3) ---------------------------------------------------------- */

void autocache_key_from_id(const uint8_t id[16], char buf[33])
{
	static const char hex[] = "0123456789abcdef";

	for (unsigned i = 0; i < 16; i++) {
		buf[2 * i] = hex[id[i] >> 4];
		buf[2 * i + 1] = hex[id[i] & 15];
	}
	buf[32] = '\0';
}

/* mkdir -p @path (mode 0755). */
static int sql_mkdir_p(char *path)
{
	size_t len = strlen(path);

	for (size_t i = 1; i <= len; i++) {
		if (path[i] != '/' && path[i] != '\0')
			continue;
		char c = path[i];

		path[i] = '\0';
		if (mkdir(path, 0755) < 0 && errno != EEXIST) {
			int e = errno;

			path[i] = c;
			return -e;
		}
		path[i] = c;
	}
	return 0;
}

/* Removes the temporary directory @dir and the database files in it. */
static void sql_remove_tmpdir(const char *dir)
{
	static const char *const names[] = { "cache.dbhd", "cache.dbhd-wal", "cache.dbhd-shm",
					     "cache.dbhd-journal" };
	char p[PATH_MAX];

	for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
		if ((size_t)snprintf(p, sizeof(p), "%s/%s", dir, names[i]) < sizeof(p))
			unlink(p);
	}
	if (rmdir(dir) < 0)
		log_warn("autocache: cannot remove %s: %s", dir, strerror(errno));
}

/* A creator that died (SIGKILL, power loss) between mkdtemp and the link
 * leaves its .tmp-* directory behind. Formatting takes well under a
 * second, so one untouched for this long belongs to nobody. */
#define SQL_STALE_TMP_SECONDS 3600

/* Removes the stale temporary directories in @keydir (best effort). */
static void sql_sweep_stale_tmpdirs(const char *keydir)
{
	DIR *dir = opendir(keydir);
	struct dirent *e;
	time_t now = time(NULL);
	char p[PATH_MAX];
	struct stat st;

	if (!dir)
		return;
	while ((e = readdir(dir)) != NULL) {
		if (strncmp(e->d_name, ".tmp-", 5) != 0)
			continue;
		if ((size_t)snprintf(p, sizeof(p), "%s/%s", keydir, e->d_name) >= sizeof(p))
			continue;
		if (lstat(p, &st) < 0 || !S_ISDIR(st.st_mode))
			continue;
		if (st.st_mtime > now - SQL_STALE_TMP_SECONDS)
			continue;
		log_info("autocache: removing %s, left by a creator that did not finish", p);
		sql_remove_tmpdir(p);
	}
	closedir(dir);
}

/* Creates @final atomically: format in a temporary directory next to it,
 * then hard-link. Losing a race (EEXIST) is success. */
static int sql_autocache_create(const char *keydir, const char *final,
				const struct sqlitelayer_format *fmt, char *err, size_t errlen)
{
	char tmpdir[PATH_MAX], tmpfile[PATH_MAX];
	int r;

	if ((size_t)snprintf(tmpdir, sizeof(tmpdir), "%s/.tmp-XXXXXX", keydir) >= sizeof(tmpdir) ||
	    (size_t)snprintf(tmpfile, sizeof(tmpfile), "%s/.tmp-XXXXXX/cache.dbhd", keydir) >=
		    sizeof(tmpfile)) {
		sql_err(err, errlen, "cache path too long");
		return -ENAMETOOLONG;
	}
	if (!mkdtemp(tmpdir)) {
		r = -errno;
		sql_err(err, errlen, "cannot create a temporary directory in %s: %s", keydir,
			strerror(-r));
		return r;
	}
	if ((size_t)snprintf(tmpfile, sizeof(tmpfile), "%s/cache.dbhd", tmpdir) >= sizeof(tmpfile))
		return -ENAMETOOLONG;  /* cannot happen: checked above */
	r = sqlitelayer_format_file(tmpfile, fmt, err, errlen);
	if (r == 0 && link(tmpfile, final) < 0) {
		if (errno == EEXIST) {
			log_debug("autocache: %s was created by someone else first", final);
		} else {
			r = -errno;
			sql_err(err, errlen, "cannot link %s to %s: %s", tmpfile, final, strerror(-r));
		}
	}
	sql_remove_tmpdir(tmpdir);
	return r;
}

/*
 * Binds the existing cache at @path to @f (its origin and geometry), in one
 * write transaction: when the meta row describes anything else (another
 * origin, none, another size), the rows are deleted and @f's meta row
 * written instead. A stale read cache is worth nothing, and rebuilding it
 * is what a user of the key wants; refusing would leave them to find and
 * delete the file. A process still using the old binding sees the change at
 * its next batch (sql_origin_check) and stops using the file. @ro: only
 * check (a mismatch is -ESTALE). Returns 0 or -errno with a message.
 */
static int sql_autocache_bind(const char *path, const struct sqlitelayer_format *f, bool ro,
			      char *err, size_t errlen)
{
	char have[512];
	struct sql_conn *c;
	sqlite3_stmt *st = NULL;
	uint64_t count = 0;
	uint32_t ss = 0;
	bool lro = false;
	int rc = SQLITE_OK, r;

	r = sql_conn_open(path, ro ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE, false, true, 0,
			  &c, err, errlen);
	if (r < 0)
		return r;
	r = sql_check_schema(c->db, err, errlen);
	if (r == 0) {
		rc = sql_exec(c->db, ro ? "BEGIN" : "BEGIN IMMEDIATE");
		if (rc == SQLITE_OK)
			rc = sqlite3_prepare_v2(c->db, sql_stmt_text[ST_ORIGIN], -1, &st, NULL);
	}
	if (r == 0 && rc == SQLITE_OK)
		r = sql_read_meta(c->db, &lro, &count, &ss, err, errlen);
	if (r == 0 && rc == SQLITE_OK) {
		rc = sql_origin_check(st, f->origin, have, sizeof(have));
		if (rc == SQLITE_OK && (!lro || ss != f->sector_size ||
					count != f->len_bytes / f->sector_size))
			rc = SQL_LOST;
	}
	if (r == 0 && rc == SQL_LOST && ro) {
		sql_err(err, errlen, "the cache was made for another disk (origin %s, %" PRIu64
			" sectors of %u) and is opened read-only", have, count, ss);
		r = -ESTALE;
	} else if (r == 0 && rc == SQL_LOST) {
		log_info("autocache %s: made for %s (%" PRIu64 " sectors of %u); emptying it for %s "
			 "(%" PRIu64 " sectors of %u)", path, have, count, ss,
			 f->origin ? f->origin : "a disk of unknown origin",
			 f->len_bytes / f->sector_size, f->sector_size);
		rc = sql_exec(c->db, "DELETE FROM sectors");
		if (rc == SQLITE_OK)
			rc = sql_exec(c->db, "DELETE FROM meta");
		if (rc == SQLITE_OK)
			rc = sql_insert_meta(c->db, f);
	}
	if (r == 0 && rc == SQLITE_OK)
		rc = sql_exec(c->db, "COMMIT");
	if (r == 0 && rc != SQLITE_OK) {
		sql_err(err, errlen, "cannot bind the cache to the disk: %s", sqlite3_errmsg(c->db));
		r = -sql_errno(c->db, rc);
	}
	sqlite3_finalize(st);
	if (!sqlite3_get_autocommit(c->db))
		sql_exec(c->db, "ROLLBACK");
	sql_conn_close(c);
	return r;
}

static int sql_attach_autocache(struct sqlitelayer *sl, const struct layer_meta *lower, char *err,
				size_t errlen)
{
	char keybuf[33], path[PATH_MAX], keydir[PATH_MAX];
	const char *key = sl->cache_key;
	struct sqlitelayer_format f = {
		.logically_read_only = true,
		.sector_size = lower ? lower->sector_size : 0,
		.origin = lower ? lower->origin : NULL,
	};
	struct stat st;
	int r;

	if (!lower) {
		sql_err(err, errlen, "no layer to cache");
		return -EINVAL;
	}
	if (!key) {
		if (!lower->has_disk_id) {
			sql_err(err, errlen, "cannot cache without a disk ID to use as a key "
				"(give one: autocache:<key>:<spec>)");
			return -EINVAL;
		}
		/* An id alone names no particular bytes: copies of an image
		 * share it, and a server can claim any. */
		if (!lower->origin) {
			sql_err(err, errlen, "cannot cache by disk ID a disk that does not tell "
				"where its data comes from (give a key: autocache:<key>:<spec>)");
			return -EINVAL;
		}
		autocache_key_from_id(lower->disk_id, keybuf);
		sl->cache_key = strdup(keybuf);
		if (!sl->cache_key)
			return -ENOMEM;
		key = sl->cache_key;
	}
	if (!*key || strchr(key, '/') || strcmp(key, ".") == 0 || strcmp(key, "..") == 0) {
		sql_err(err, errlen, "invalid cache key '%s'", key);
		return -EINVAL;
	}
	if ((size_t)snprintf(keydir, sizeof(keydir), "%s/%s", sl->cache_root, key) >= sizeof(keydir) ||
	    (size_t)snprintf(path, sizeof(path), "%s/cache.dbhd", keydir) >= sizeof(path)) {
		sql_err(err, errlen, "cache path too long");
		return -ENAMETOOLONG;
	}
	sl->path = strdup(path);
	if (!sl->path || (lower->origin && !(sl->origin = strdup(lower->origin))))
		return -ENOMEM;
	if (!sl->file_ro)
		sql_sweep_stale_tmpdirs(keydir);
	if (MUL_OVERFLOW(lower->sector_count, (uint64_t)lower->sector_size, &f.len_bytes)) {
		sql_err(err, errlen, "the lower layer is too large");
		return -EINVAL;
	}

	if (stat(path, &st) < 0) {
		if (errno != ENOENT) {
			r = -errno;
			sql_err(err, errlen, "%s: %s", path, strerror(-r));
			return r;
		}
		if (sl->file_ro) {
			sql_err(err, errlen, "%s: no cache yet, and the cache is opened read-only", path);
			return -ENOENT;
		}
		r = sql_mkdir_p(keydir);
		if (r < 0) {
			sql_err(err, errlen, "cannot create %s: %s", keydir, strerror(-r));
			return r;
		}
		r = sql_autocache_create(keydir, path, &f, err, errlen);
		if (r < 0)
			return r;
	}
	/* Also when just created: whoever won a creation race may have
	 * created it for another origin. */
	r = sql_autocache_bind(path, &f, sl->file_ro, err, errlen);
	if (r == 0)
		r = sql_open_file(sl, err, errlen);
	if (r < 0) {
		char msg[512];

		snprintf(msg, sizeof(msg), "%s", err ? err : "");
		sql_err(err, errlen, "%s: %s", path, msg);
		return r;
	}
	/* Rebound by another process between the bind and the open: the
	 * geometry is fixed from here on, so give up (the origin is checked
	 * at every batch). */
	if (sl->sector_count != lower->sector_count || sl->sector_size != lower->sector_size) {
		sql_err(err, errlen, "%s: cache layer has different sector count (%" PRIu64
			" of %u bytes, the disk has %" PRIu64 " of %u): another process rebound "
			"it while it was being opened", path, sl->sector_count, sl->sector_size,
			lower->sector_count, lower->sector_size);
		return -EAGAIN;
	}
	return 0;
}

int autocache_layer_new(const char *cache_root, const char *key, bool read_only,
			struct layer **out, char *err, size_t errlen)
{
	struct sqlitelayer *sl;
	int r;

	*out = NULL;
	if (err && errlen)
		err[0] = '\0';
	sl = sql_alloc(SQL_MODE_AUTOCACHE, read_only, 0);
	if (!sl || !(sl->cache_root = strdup(cache_root)) ||
	    (key && !(sl->cache_key = strdup(key)))) {
		sqlitelayer_free(sl);
		return -ENOMEM;
	}
	r = layer_new(&sqlitelayer_ops, sl, out);
	if (r < 0) {
		sqlitelayer_free(sl);
		return r;
	}
	return 0;
}

/* ---- spec kinds (§6.2) -------------------------------------------------------------- */

/* Checks the create/exists rules of sql: and sqldiff:. */
static int sql_spec_check_exists(const struct spec *s, char *err, size_t errlen)
{
	struct stat st;
	bool exists = stat(s->path, &st) == 0;

	if (!exists && errno != ENOENT) {
		int r = -errno;

		sql_err(err, errlen, "%s", strerror(-r));
		return r;
	}
	if (s->create && exists) {
		sql_err(err, errlen, "file already exists; create would destroy it "
			"(remove ';create' to open it)");
		return -EEXIST;
	}
	if (!s->create && !exists) {
		sql_err(err, errlen, "No such file or directory (add ;create%s to make one)",
			s->inner ? "" : "=<size>");
		return -ENOENT;
	}
	return 0;
}

int sqlitelayer_spec_open_sql(const struct spec *s, bool read_only,
			      const struct spec_ctx *ctx UNUSED, struct layer **out,
			      bool *read_cache UNUSED, char *err, size_t errlen)
{
	struct sqlitelayer_opts o = { .read_only = read_only };
	int r;

	if (s->direct) {
		sql_err(err, errlen, "';direct' is not supported for sql:");
		return -EINVAL;
	}
	r = sql_spec_check_exists(s, err, errlen);
	if (r < 0)
		return r;
	if (s->create) {
		struct sqlitelayer_format f = { .len_bytes = s->size, .sector_size = 512 };

		r = sqlitelayer_format_file(s->path, &f, err, errlen);
		if (r < 0) {
			unlink(s->path);
			return r;
		}
	}
	return sqlitelayer_new(s->path, &o, out, err, errlen);
}

int sqlitelayer_spec_open_sqldiff(const struct spec *s, bool read_only,
				  const struct spec_ctx *ctx UNUSED, struct layer **out,
				  bool *read_cache UNUSED, char *err, size_t errlen)
{
	struct sqlitelayer_format f = { 0 };
	struct sqlitelayer_opts o = { .read_only = read_only, .format = s->create ? &f : NULL };
	int r;

	r = sql_spec_check_exists(s, err, errlen);
	if (r < 0)
		return r;
	return sqlitelayer_new(s->path, &o, out, err, errlen);
}

int sqlitelayer_spec_open_autocache(const struct spec *s, bool read_only,
				    const struct spec_ctx *ctx, struct layer **out,
				    bool *read_cache, char *err, size_t errlen)
{
	const char *root;
	int r;

	r = sqlitelayer_autocache_dir(ctx, &root, err, errlen);
	if (r < 0)
		return r;
	*read_cache = true;
	return autocache_layer_new(root, s->path, read_only, out, err, errlen);
}
