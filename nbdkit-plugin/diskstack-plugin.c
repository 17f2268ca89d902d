/* SPDX-License-Identifier: MIT */
/*
 * diskstack-plugin.c: nbdkit-diskstack-plugin.so, any diskstack spec
 * (every backend, layer and decorator) served by nbdkit, under nbdkit's
 * filters (docs/nbdkit-plugin.md):
 *
 *     nbdkit diskstack 'memdiff:file:/img/golden.raw'
 *     nbdkit --filter=cow diskstack spec='file:/img.raw,ro'
 *
 * Notes on the design
 * -------------------
 * - API version 2, thread model PARALLEL: a disk is one reference-counted
 *   handle shared by every thread (storage/disk.h), so nbdkit may call any
 *   callback on any thread at once. There is no per-connection state:
 *   open returns NBDKIT_HANDLE_NOT_NEEDED and every connection sees the
 *   one disk.
 * - Bridging nbdkit's synchronous callbacks to the asynchronous disk: each
 *   calling thread runs a reactor of its own (dsnbdkit_reactor), created on
 *   its first request and freed by a pthread key destructor when the
 *   thread exits (nbdkit's workers live as long as their connection;
 *   filters such as readahead call in from threads of their own). A
 *   callback fills a struct disk_io on its stack, submits it and runs its
 *   reactor until the request completes: no hand-off between threads, no
 *   wake-up, no allocation per request. Each ring holds one request at a
 *   time; the parallelism is nbdkit's (-t workers per connection).
 * - Start-up: the spec is parsed in config_complete (syntax errors are
 *   shown to the user, nothing is opened), its file names are made
 *   absolute there too (nbdkit chdirs to / when it forks), and it is
 *   opened in after_fork. Opening may start threads (the SQLite
 *   checkpointer, the blob engine, the worker pool), and threads do not
 *   survive the fork nbdkit makes between get_ready and after_fork.
 * - Shutdown: cleanup flushes and drops the disk once every connection
 *   has closed; unload frees the parsed spec. The plugin is linked with
 *   -z nodelete, so the key destructor and the worker pool's atexit
 *   handler stay callable after nbdkit's dlclose.
 * - Messages from the stack go to nbdkit's logger (errors and warnings to
 *   nbdkit_error, which reaches syslog in the background; the rest to
 *   nbdkit_debug, shown with -v).
 * - Requests must be whole sectors (EINVAL otherwise, as `diskstack serve`
 *   answers): the minimum block size says so to clients, and
 *   --filter=blocksize serves clients that cannot align.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NBDKIT_API_VERSION 2
#define THREAD_MODEL NBDKIT_THREAD_MODEL_PARALLEL
#include <nbdkit-plugin.h>

#include "common/compiler.h"
#include "common/log.h"
#include "common/reactor.h"
#include "storage/disk.h"
#include "storage/spec.h"

/* Submission slots per thread: one request at a time, but a request may
 * fan out (striped members, layers), and a full ring only costs a pass. */
#define DSNBDKIT_RING_ENTRIES 64
/* Largest request advertised: nbdkit refuses more than 64 MiB itself;
 * 32 MiB matches what `diskstack serve` accepts. */
#define DSNBDKIT_MAX_REQUEST_BYTES (32u << 20)
/* Extents asked for per block status request. */
#define DSNBDKIT_MAX_EXTENTS 64

/* Set by config (the strings are nbdkit's, valid while the plugin is
 * loaded), then only read. */
static const char *dsnbdkit_spec_text;
static char *dsnbdkit_cache_dir;      /* owned; absolute */
/* Parsed in config_complete, freed at unload. */
static struct spec *dsnbdkit_spec;
/* Opened in after_fork, dropped in cleanup; read by every callback. */
static struct disk *dsnbdkit_disk;
/* Each thread's reactor; the destructor frees it when the thread exits. */
static pthread_key_t dsnbdkit_rkey;
static bool dsnbdkit_rkey_made;

/* ---- logging ------------------------------------------------------------- */

static void dsnbdkit_log_sink(enum log_level level, const char *msg)
{
	if (level <= LOG_LEVEL_WARN)
		nbdkit_error("%s", msg);
	else
		nbdkit_debug("%s", msg);
}

/* ---- reactors --------------------------------------------------------------- */

/* Runs on the exiting thread, which owns the reactor. */
static void dsnbdkit_reactor_free(void *r)
{
	reactor_free(r);
}

/* The calling thread's reactor, created on first use; NULL (with an nbdkit
 * error) when io_uring refuses one. */
static struct reactor *dsnbdkit_reactor(void)
{
	struct reactor *r = reactor_current();
	int e;

	if (likely(r))
		return r;
	e = reactor_new(&r, DSNBDKIT_RING_ENTRIES);
	if (e < 0) {
		nbdkit_error("diskstack: cannot create an io_uring reactor for this thread: %s",
			     strerror(-e));
		return NULL;
	}
	e = pthread_setspecific(dsnbdkit_rkey, r);
	if (e != 0) {
		reactor_free(r);
		nbdkit_error("diskstack: pthread_setspecific: %s", strerror(e));
		return NULL;
	}
	return r;
}

/* ---- status -> errno ---------------------------------------------------------- */

/*
 * What nbdkit should send for a failed request; nbdkit turns the errno into
 * the NBD error (EPERM, ENOSPC, EINVAL, ENOTSUP only for a fast zero, EIO
 * for the rest), so these match what `diskstack serve` sends (the NBD
 * protocol document, "Error values"): past the end is EINVAL for reads and
 * ENOSPC for writes; a read-only refusal and a reservation conflict are
 * EPERM; an I/O error keeps the backend's errno.
 */
static int dsnbdkit_errno_of(const struct disk_io *io)
{
	bool write = io->op == DISK_OP_WRITE || io->op == DISK_OP_WRITE_ZEROES;

	switch (io->status) {
	case DISK_ILLEGAL_BLOCK:
		return write ? ENOSPC : EINVAL;
	case DISK_INVALID_INPUT:
		return EINVAL;
	case DISK_IO_ERROR:
		return io->os_errno > 0 ? io->os_errno : EIO;
	case DISK_READ_ONLY:
	case DISK_RESERVATION_CONFLICT:
		return EPERM;
	case DISK_UNSUPPORTED:
		return EOPNOTSUPP;
	default:
		return EIO;
	}
}

/* ---- running one request ---------------------------------------------------------- */

static void dsnbdkit_done(struct disk_io *io)
{
	*(bool *)io->opaque = true;
}

/* The request's bytes [@off, @off + @bytes) as sectors in *@sector and
 * *@count; -1 (after nbdkit_error, with EINVAL set) when they are not
 * whole sectors. */
static int dsnbdkit_sectors(const char *what, uint64_t off, uint64_t bytes, uint64_t *sector,
			    uint64_t *count)
{
	uint32_t shift = disk_get_info(dsnbdkit_disk)->sector_shift;
	uint64_t mask = ((uint64_t)1 << shift) - 1;

	if ((off | bytes) & mask) {
		nbdkit_error("diskstack: %s of %" PRIu64 " bytes at offset %" PRIu64
			     " is not in whole %u-byte sectors (use --filter=blocksize)",
			     what, bytes, off, 1u << shift);
		nbdkit_set_error(EINVAL);
		return -1;
	}
	*sector = off >> shift;
	*count = bytes >> shift;
	return 0;
}

/* Submits @io on this thread's reactor and runs it until @io completes.
 * Returns 0, or -1 after nbdkit_error and nbdkit_set_error. */
static int dsnbdkit_run(struct disk_io *io, uint64_t off, uint64_t bytes)
{
	struct reactor *r = dsnbdkit_reactor();
	bool done = false;
	int e;

	if (!r) {
		nbdkit_set_error(EIO);
		return -1;
	}
	io->done = dsnbdkit_done;
	io->opaque = &done;
	disk_submit(dsnbdkit_disk, io);
	e = reactor_run_until(r, &done);
	if (unlikely(!done)) {
		/* The reactor failed with the request still in the ring: the
		 * request's stack frame must outlive it, so there is no safe
		 * way back. Never seen; would be a bug in the reactor. */
		nbdkit_error("diskstack: reactor failed with a %s in flight: %s",
			     disk_op_str(io->op), strerror(-e));
		abort();
	}
	if (likely(io->status == DISK_OK))
		return 0;
	e = dsnbdkit_errno_of(io);
	/* A refused fast zero is the protocol working, not an error. */
	if (!(io->op == DISK_OP_WRITE_ZEROES && io->status == DISK_UNSUPPORTED))
		nbdkit_error("diskstack: %s of %" PRIu64 " bytes at offset %" PRIu64 ": %s%s%s",
			     disk_op_str(io->op), bytes, off, disk_status_str(io->status),
			     io->status == DISK_IO_ERROR ? ": " : "",
			     io->status == DISK_IO_ERROR ? strerror(e) : "");
	nbdkit_set_error(e);
	return -1;
}

/* ---- configuration and start-up ------------------------------------------------------ */

static int dsnbdkit_config(const char *key, const char *value)
{
	if (strcmp(key, "spec") == 0) {
		if (dsnbdkit_spec_text) {
			nbdkit_error("diskstack: only one spec may be given (got '%s' and '%s')",
				     dsnbdkit_spec_text, value);
			return -1;
		}
		dsnbdkit_spec_text = value;
		return 0;
	}
	if (strcmp(key, "cache-dir") == 0) {
		free(dsnbdkit_cache_dir);
		/* Made absolute now: nbdkit chdirs to / before after_fork. */
		dsnbdkit_cache_dir = nbdkit_absolute_path(value);
		return dsnbdkit_cache_dir ? 0 : -1;
	}
	nbdkit_error("diskstack: unknown parameter '%s' (expected spec= or cache-dir=)", key);
	return -1;
}

/* spec_map_files callback: a relative file name made absolute. */
static int dsnbdkit_absolute(char **path, void *arg)
{
	char *abs;

	if ((*path)[0] == '/')
		return 0;
	abs = nbdkit_absolute_path(*path);
	if (!abs)
		return -ENOMEM;
	free(*path);
	*path = abs;
	return 0;
}

static int dsnbdkit_config_complete(void)
{
	char err[512];
	int e;

	if (!dsnbdkit_spec_text) {
		nbdkit_error("diskstack: no spec given (nbdkit diskstack SPEC, e.g. mem:1G; "
			     "see nbdkit diskstack --help)");
		return -1;
	}
	e = spec_parse(dsnbdkit_spec_text, &dsnbdkit_spec, err, sizeof(err));
	if (e < 0) {
		nbdkit_error("diskstack: %s", err);
		return -1;
	}
	if (spec_map_files(dsnbdkit_spec, dsnbdkit_absolute, NULL) < 0)
		return -1;                    /* nbdkit_absolute_path said why */
	return 0;
}

static int dsnbdkit_after_fork(void)
{
	struct spec_ctx ctx = { .cache_dir = dsnbdkit_cache_dir };
	char err[512];
	int e;

	e = pthread_key_create(&dsnbdkit_rkey, dsnbdkit_reactor_free);
	if (e != 0) {
		nbdkit_error("diskstack: pthread_key_create: %s", strerror(e));
		return -1;
	}
	dsnbdkit_rkey_made = true;
	e = spec_open(dsnbdkit_spec, false, &ctx, &dsnbdkit_disk, err, sizeof(err));
	if (e < 0) {
		/* @err starts with the failing node's text. */
		nbdkit_error("diskstack: cannot open the spec: %s", err);
		return -1;
	}
	nbdkit_debug("diskstack: opened %s (%s, %" PRIu64 " sectors of %u bytes)",
		     dsnbdkit_spec_text, disk_get_info(dsnbdkit_disk)->type,
		     disk_sector_count(dsnbdkit_disk), disk_sector_size(dsnbdkit_disk));
	return 0;
}

static void dsnbdkit_load(void)
{
	log_set_sink(dsnbdkit_log_sink);
}

static void dsnbdkit_cleanup(void)
{
	struct reactor *own = NULL;
	int e = 0;

	if (!dsnbdkit_disk)
		return;
	/* nbdkit's main thread has no reactor of its own (unless it served
	 * a connection itself, as with -s). */
	if (!reactor_current())
		e = reactor_new(&own, DSNBDKIT_RING_ENTRIES);
	if (e == 0) {
		int st = disk_sync_flush(dsnbdkit_disk);

		if (st != DISK_OK)
			nbdkit_error("diskstack: flush at shutdown: %s", disk_status_str(st));
	} else {
		nbdkit_error("diskstack: no reactor to flush with at shutdown: %s", strerror(-e));
	}
	disk_unref(dsnbdkit_disk);
	dsnbdkit_disk = NULL;
	reactor_free(own);
}

static void dsnbdkit_unload(void)
{
	spec_free(dsnbdkit_spec);
	dsnbdkit_spec = NULL;
	free(dsnbdkit_cache_dir);
	dsnbdkit_cache_dir = NULL;
	if (dsnbdkit_rkey_made) {
		/* The calling thread's reactor, if a callback ran here. */
		struct reactor *r = pthread_getspecific(dsnbdkit_rkey);

		pthread_setspecific(dsnbdkit_rkey, NULL);
		reactor_free(r);
		pthread_key_delete(dsnbdkit_rkey);
		dsnbdkit_rkey_made = false;
	}
	log_set_sink(NULL);
}

static void dsnbdkit_dump_plugin(void)
{
	const char *sep = "";

	printf("diskstack_version=%s\n", PACKAGE_VERSION);
	printf("diskstack_kinds=");
	for (const struct spec_kind *const *k = spec_kinds; *k; k++) {
		if (spec_kind_available(*k)) {
			printf("%s%s", sep, (*k)->name);
			sep = ",";
		}
	}
	printf("\n");
}

/* ---- per connection ------------------------------------------------------------ */

static void *dsnbdkit_open(int readonly)
{
	return NBDKIT_HANDLE_NOT_NEEDED;
}

static int64_t dsnbdkit_get_size(void *handle)
{
	return (int64_t)(disk_sector_count(dsnbdkit_disk) << disk_get_info(dsnbdkit_disk)->sector_shift);
}

static int dsnbdkit_block_size(void *handle, uint32_t *minimum, uint32_t *preferred,
			       uint32_t *maximum)
{
	const struct disk_info *info = disk_get_info(dsnbdkit_disk);

	*minimum = info->sector_size;
	/* Below the physical sector (or 4 KiB) a write costs a
	 * read-modify-write somewhere down the stack. */
	*preferred = MAX(info->physical_sector_size, MAX(info->sector_size, 4096u));
	*maximum = MAX(DSNBDKIT_MAX_REQUEST_BYTES, *preferred);
	return 0;
}

static int dsnbdkit_can_write(void *handle)
{
	return !disk_get_info(dsnbdkit_disk)->read_only;
}

static int dsnbdkit_can_flush(void *handle)
{
	/* Always answered: a disk without a cache succeeds at once. */
	return 1;
}

static int dsnbdkit_can_fua(void *handle)
{
	/* Where the disk does not make a FUA write durable by itself, let
	 * nbdkit follow it with a flush, as the dispatcher would. */
	return disk_get_info(dsnbdkit_disk)->fua_respected ? NBDKIT_FUA_NATIVE : NBDKIT_FUA_EMULATE;
}

static int dsnbdkit_can_trim(void *handle)
{
	const struct disk_info *info = disk_get_info(dsnbdkit_disk);

	return !info->read_only && info->unmap_behavior != DISK_UNMAP_IGNORED;
}

static int dsnbdkit_can_zero(void *handle)
{
	/* Native, or emulated by the dispatcher with unmap or writes. */
	return !disk_get_info(dsnbdkit_disk)->read_only;
}

/*
 * The flag is honoured by every disk: where write-zeroes would write data
 * (no DISK_CAP_FAST_ZERO) the dispatcher fails a FAST_ZERO request with
 * UNSUPPORTED before it writes anything, which is the flag's contract
 * (the NBD protocol document, NBD_CMD_FLAG_FAST_ZERO), and nbdkit turns
 * that into ENOTSUP. Advertising it only with the cap, as `diskstack
 * serve` does, would also be truthful, but nbdkit 1.32 aborts (an
 * assertion in backend_zero) when a client sends the flag unadvertised.
 */
static int dsnbdkit_can_fast_zero(void *handle)
{
	return !disk_get_info(dsnbdkit_disk)->read_only;
}

static int dsnbdkit_can_extents(void *handle)
{
	return (disk_get_info(dsnbdkit_disk)->caps & DISK_CAP_BLOCK_STATUS) != 0;
}

static int dsnbdkit_can_cache(void *handle)
{
	/* The stack answers CACHE itself: read caches (autocache:) fill,
	 * other disks read ahead through the dispatcher. */
	return NBDKIT_CACHE_NATIVE;
}

static int dsnbdkit_can_multi_conn(void *handle)
{
	return (disk_get_info(dsnbdkit_disk)->caps & DISK_CAP_COHERENT) != 0;
}

/* ---- data ------------------------------------------------------------------------ */

static int dsnbdkit_pread(void *handle, void *buf, uint32_t count, uint64_t offset,
			  uint32_t flags)
{
	struct iovec iov = { .iov_base = buf, .iov_len = count };
	struct disk_io io = { .op = DISK_OP_READ, .iov = &iov, .iovcnt = 1 };
	uint64_t n;

	if (dsnbdkit_sectors("read", offset, count, &io.sector, &n) < 0)
		return -1;
	return dsnbdkit_run(&io, offset, count);
}

static int dsnbdkit_pwrite(void *handle, const void *buf, uint32_t count, uint64_t offset,
			   uint32_t flags)
{
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = count };
	struct disk_io io = { .op = DISK_OP_WRITE, .iov = &iov, .iovcnt = 1 };
	uint64_t n;

	if (flags & NBDKIT_FLAG_FUA)
		io.flags |= DISK_IO_FUA;
	if (dsnbdkit_sectors("write", offset, count, &io.sector, &n) < 0)
		return -1;
	return dsnbdkit_run(&io, offset, count);
}

static int dsnbdkit_flush(void *handle, uint32_t flags)
{
	struct disk_io io = { .op = DISK_OP_FLUSH };

	return dsnbdkit_run(&io, 0, 0);
}

static int dsnbdkit_trim(void *handle, uint32_t count, uint64_t offset, uint32_t flags)
{
	struct disk_io io = { .op = DISK_OP_UNMAP };

	if (dsnbdkit_sectors("trim", offset, count, &io.sector, &io.count) < 0)
		return -1;
	if (dsnbdkit_run(&io, offset, count) < 0)
		return -1;
	/* UNMAP carries no FUA: the flush makes it durable (as
	 * `diskstack serve` does). */
	if (flags & NBDKIT_FLAG_FUA)
		return dsnbdkit_flush(handle, 0);
	return 0;
}

static int dsnbdkit_zero(void *handle, uint32_t count, uint64_t offset, uint32_t flags)
{
	struct disk_io io = { .op = DISK_OP_WRITE_ZEROES };

	if (flags & NBDKIT_FLAG_FUA)
		io.flags |= DISK_IO_FUA;
	if (!(flags & NBDKIT_FLAG_MAY_TRIM))
		io.flags |= DISK_IO_NO_UNMAP;
	if (flags & NBDKIT_FLAG_FAST_ZERO)
		io.flags |= DISK_IO_FAST_ZERO;
	if (dsnbdkit_sectors("zero", offset, count, &io.sector, &io.count) < 0)
		return -1;
	return dsnbdkit_run(&io, offset, count);
}

/* [offset, offset + count) rounded out to whole sectors: block status and
 * cache are hints, so unaligned ranges are answered, not refused. nbdkit
 * has checked the range against the size, which is whole sectors. */
static void dsnbdkit_round_out(uint64_t offset, uint32_t count, uint64_t *sector,
			       uint64_t *nsectors)
{
	uint32_t shift = disk_get_info(dsnbdkit_disk)->sector_shift;
	uint64_t end = offset + count;

	*sector = offset >> shift;
	*nsectors = ((end + ((uint64_t)1 << shift) - 1) >> shift) - *sector;
}

static int dsnbdkit_extents(void *handle, uint32_t count, uint64_t offset, uint32_t flags,
			    struct nbdkit_extents *extents)
{
	struct disk_extent ext[DSNBDKIT_MAX_EXTENTS];
	struct disk_io io = { .op = DISK_OP_BLOCK_STATUS };
	uint32_t shift = disk_get_info(dsnbdkit_disk)->sector_shift;
	uint64_t pos;

	dsnbdkit_round_out(offset, count, &io.sector, &io.count);
	io.u.bs.extents = ext;
	io.u.bs.max = (flags & NBDKIT_FLAG_REQ_ONE) ? 1 : DSNBDKIT_MAX_EXTENTS;
	if (dsnbdkit_run(&io, offset, count) < 0)
		return -1;
	pos = io.sector << shift;
	for (uint32_t i = 0; i < io.u.bs.nr; i++) {
		uint32_t type = 0;
		uint64_t len = ext[i].count << shift;

		if (ext[i].flags & DISK_EXTENT_HOLE)
			type |= NBDKIT_EXTENT_HOLE;
		if (ext[i].flags & DISK_EXTENT_ZERO)
			type |= NBDKIT_EXTENT_ZERO;
		if (nbdkit_add_extent(extents, pos, len, type) < 0)
			return -1;
		pos += len;
	}
	return 0;
}

static int dsnbdkit_cache(void *handle, uint32_t count, uint64_t offset, uint32_t flags)
{
	struct disk_io io = { .op = DISK_OP_CACHE };

	dsnbdkit_round_out(offset, count, &io.sector, &io.count);
	return dsnbdkit_run(&io, offset, count);
}

static struct nbdkit_plugin dsnbdkit_plugin = {
	.name = "diskstack",
	.longname = "diskstack: any diskstack disk stack",
	.version = PACKAGE_VERSION,
	.description = "Serves a diskstack spec (backends, layers and decorators) through nbdkit.",
	.load = dsnbdkit_load,
	.unload = dsnbdkit_unload,
	.config = dsnbdkit_config,
	.config_complete = dsnbdkit_config_complete,
	.config_help =
		"[spec=]SPEC         (required) the disk: mem:1G, memdiff:file:/img.raw,\n"
		"                    'file:x.img;create=8G', sql:x.dbhd, crypt:..., ... (a trailing\n"
		"                    ,ro opens it read-only); `diskstack --help` lists every kind\n"
		"cache-dir=DIR       root of autocache: layers (default $DISKSTACK_AUTOCACHE_DIR)",
	.magic_config_key = "spec",
	.after_fork = dsnbdkit_after_fork,
	.cleanup = dsnbdkit_cleanup,
	.dump_plugin = dsnbdkit_dump_plugin,
	.open = dsnbdkit_open,
	.get_size = dsnbdkit_get_size,
	.block_size = dsnbdkit_block_size,
	.can_write = dsnbdkit_can_write,
	.can_flush = dsnbdkit_can_flush,
	.can_fua = dsnbdkit_can_fua,
	.can_trim = dsnbdkit_can_trim,
	.can_zero = dsnbdkit_can_zero,
	.can_fast_zero = dsnbdkit_can_fast_zero,
	.can_extents = dsnbdkit_can_extents,
	.can_cache = dsnbdkit_can_cache,
	.can_multi_conn = dsnbdkit_can_multi_conn,
	.pread = dsnbdkit_pread,
	.pwrite = dsnbdkit_pwrite,
	.flush = dsnbdkit_flush,
	.trim = dsnbdkit_trim,
	.zero = dsnbdkit_zero,
	.extents = dsnbdkit_extents,
	.cache = dsnbdkit_cache,
	/* Errors are set with nbdkit_set_error. */
	.errno_is_preserved = 0,
};

/* Defined by the macro below, the one symbol nbdkit looks up; declared
 * first for -Wmissing-prototypes. */
NBDKIT_DLL_PUBLIC struct nbdkit_plugin *plugin_init(void);
NBDKIT_REGISTER_PLUGIN(dsnbdkit_plugin)
