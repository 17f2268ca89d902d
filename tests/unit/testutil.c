/* SPDX-License-Identifier: MIT */
/*
 * testutil.c: helpers shared by the unit tests (see testutil.h).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <linux/loop.h>

#include "common/bitmap.h"
#include "common/compiler.h"
#include "testproc.h"
#include "testutil.h"

/* ---- reactors ----------------------------------------------------------- */

static pthread_once_t tu_atexit_once = PTHREAD_ONCE_INIT;

/* Frees the exiting thread's reactor (normally the main thread's), so that
 * valgrind sees no leak. */
static void tu_reactor_atexit(void)
{
	tu_reactor_done();
}

static void tu_register_atexit(void)
{
	atexit(tu_reactor_atexit);
}

struct reactor *tu_reactor(void)
{
	struct reactor *r = reactor_current();
	int ret;

	if (r)
		return r;
	ret = reactor_new(&r, 0);
	if (ret < 0)
		fail_msg("reactor_new: %s", strerror(-ret));
	pthread_once(&tu_atexit_once, tu_register_atexit);
	return r;
}

void tu_reactor_done(void)
{
	struct reactor *r = reactor_current();

	if (!r)
		return;
	reactor_free(r);
}

int tu_reactor_setup(void **state UNUSED)
{
	tu_reactor();
	return 0;
}

int tu_reactor_teardown(void **state UNUSED)
{
	tu_reactor_done();
	return 0;
}

/* ---- data patterns ------------------------------------------------------ */

static inline uint8_t tu_pattern_byte(uint64_t tag, uint64_t pos)
{
	uint64_t word = tag << 48 | pos / 8;

	return (uint8_t)(word >> (8 * (pos % 8)));  /* little-endian word layout */
}

void tu_fill(void *buf, size_t len, uint64_t tag, uint64_t off)
{
	uint8_t *p = buf;
	size_t i = 0;

	for (; i < len && (off + i) % 8 != 0; i++)
		p[i] = tu_pattern_byte(tag, off + i);
	for (; i + 8 <= len; i += 8) {
		uint64_t word = tag << 48 | (off + i) / 8;
		uint8_t b[8];

		for (unsigned k = 0; k < 8; k++)
			b[k] = (uint8_t)(word >> (8 * k));
		memcpy(p + i, b, 8);
	}
	for (; i < len; i++)
		p[i] = tu_pattern_byte(tag, off + i);
}

long tu_check(const void *buf, size_t len, uint64_t tag, uint64_t off)
{
	const uint8_t *p = buf;

	for (size_t i = 0; i < len; i++)
		if (p[i] != tu_pattern_byte(tag, off + i))
			return (long)i;
	return -1;
}

int tu_is_zero(const void *buf, size_t len)
{
	const uint8_t *p = buf;

	for (size_t i = 0; i < len; i++)
		if (p[i])
			return 0;
	return 1;
}

/* ---- descriptors ------------------------------------------------------- */

void tu_read_full(int fd, void *p, size_t n)
{
	while (n) {
		ssize_t r = read(fd, p, n);

		assert_true(r > 0);
		p = (char *)p + r;
		n -= (size_t)r;
	}
}

void tu_write_full(int fd, const void *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);

		assert_true(w > 0);
		p = (const char *)p + w;
		n -= (size_t)w;
	}
}

/* ---- descriptions ------------------------------------------------------ */

static void tu_describe_param(struct disk_describer *dd, const char *key, const char *value)
{
	struct tu_described *c = dd->opaque;
	size_t n = strlen(c->text);

	snprintf(c->text + n, sizeof(c->text) - n, "%s=%s\n", key, value);
}

void tu_describe(struct disk *d, struct tu_described *out)
{
	struct disk_describer dd = { .param = tu_describe_param, .opaque = out };

	out->text[0] = '\0';
	disk_describe(d, &dd);
}

/* ---- iovec shapes ------------------------------------------------------ */

int tu_split_iov(void *buf, size_t len, tu_iov_size_fn *size, void *arg, struct iovec *iov,
		 int max)
{
	size_t off = 0;
	int n = 0;

	while (off < len) {
		size_t want = size(arg, n);
		size_t take = MIN(len - off, want);

		assert_true(n < max);
		iov[n].iov_base = (uint8_t *)buf + off;
		iov[n].iov_len = take;
		off += take;
		n++;
	}
	return n;
}

struct tu_sizes {
	const size_t *sizes;
	unsigned nsizes;
};

static size_t tu_sizes_next(void *arg, int i)
{
	const struct tu_sizes *t = arg;

	return t->sizes[(unsigned)i % t->nsizes];
}

int tu_split_iov_sizes(void *buf, size_t len, const size_t *sizes, unsigned nsizes,
		       struct iovec *iov, int max)
{
	struct tu_sizes t = { sizes, nsizes };

	return tu_split_iov(buf, len, tu_sizes_next, &t, iov, max);
}

/* ---- temporary files ---------------------------------------------------- */

static pthread_once_t tu_tmpdir_once = PTHREAD_ONCE_INIT;
static char tu_tmpdir_path[PATH_MAX];
static pid_t tu_tmpdir_pid;

static int tu_rm_entry(const char *path, const struct stat *st UNUSED, int type,
		       struct FTW *ftw UNUSED)
{
	if (type == FTW_DP)
		rmdir(path);
	else
		unlink(path);
	return 0;
}

static void tu_tmpdir_cleanup(void)
{
	if (tu_tmpdir_path[0] && getpid() == tu_tmpdir_pid)
		nftw(tu_tmpdir_path, tu_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void tu_tmpdir_init(void)
{
	const char *base = getenv("TMPDIR");

	/* /var/tmp is usually a real filesystem, where O_DIRECT works. */
	if (!base || !*base)
		base = access("/var/tmp", W_OK) == 0 ? "/var/tmp" : "/tmp";
	snprintf(tu_tmpdir_path, sizeof(tu_tmpdir_path), "%s/diskstack-test.XXXXXX", base);
	if (!mkdtemp(tu_tmpdir_path)) {
		fprintf(stderr, "mkdtemp %s: %s\n", tu_tmpdir_path, strerror(errno));
		tu_tmpdir_path[0] = '\0';
		return;
	}
	tu_tmpdir_pid = getpid();
	atexit(tu_tmpdir_cleanup);
}

const char *tu_tmpdir(void)
{
	pthread_once(&tu_tmpdir_once, tu_tmpdir_init);
	if (!tu_tmpdir_path[0])
		fail_msg("cannot create a temporary directory");
	return tu_tmpdir_path;
}

const char *tu_path(const char *name)
{
	static char bufs[8][PATH_MAX];
	static atomic_uint next;
	char *b = bufs[atomic_fetch_add(&next, 1) % 8];

	int n = snprintf(b, PATH_MAX, "%s/%s", tu_tmpdir(), name);

	if (n < 0 || n >= PATH_MAX)
		fail_msg("tu_path: name too long: %s", name);
	return b;
}

/* ---- synchronous layer I/O ---------------------------------------------- */

/* Sector sizes learnt by tu_layer_attach / tu_layer_set_sector_size.
 * tu_layer_lock protects tu_layer_sizes. */
#define TU_LAYER_SIZES 64
static struct {
	const struct layer *l;
	uint32_t sector_size;
} tu_layer_sizes[TU_LAYER_SIZES];
static unsigned tu_layer_sizes_next;
static pthread_mutex_t tu_layer_lock = PTHREAD_MUTEX_INITIALIZER;

void tu_layer_set_sector_size(struct layer *l, uint32_t sector_size)
{
	unsigned i;

	pthread_mutex_lock(&tu_layer_lock);
	for (i = 0; i < TU_LAYER_SIZES; i++)
		if (tu_layer_sizes[i].l == l)
			break;
	if (i == TU_LAYER_SIZES)
		i = tu_layer_sizes_next++ % TU_LAYER_SIZES;
	tu_layer_sizes[i].l = l;
	tu_layer_sizes[i].sector_size = sector_size;
	pthread_mutex_unlock(&tu_layer_lock);
}

static uint32_t tu_layer_sector_size(const struct layer *l)
{
	uint32_t ss = 512;

	if (layer_get_meta(l))
		return layer_get_meta(l)->sector_size;
	pthread_mutex_lock(&tu_layer_lock);
	for (unsigned i = 0; i < TU_LAYER_SIZES; i++) {
		if (tu_layer_sizes[i].l == l) {
			ss = tu_layer_sizes[i].sector_size;
			break;
		}
	}
	pthread_mutex_unlock(&tu_layer_lock);
	return ss;
}

int tu_layer_attach(struct layer *l, const struct layer_meta *lower, struct layer_meta *meta)
{
	char err[256] = "";
	int ret;

	ret = layer_attach(l, lower, err, sizeof(err));
	if (ret < 0) {
		print_message("# attach %s: %s (%s)\n", layer_get_ops(l)->type, strerror(-ret), err);
		return ret;
	}
	assert_non_null(layer_get_meta(l));
	*meta = *layer_get_meta(l);
	tu_layer_set_sector_size(l, meta->sector_size);
	return 0;
}

static void tu_layer_done(struct disk_io *io)
{
	*(bool *)io->opaque = true;
}

int tu_layer_io(struct layer *l, struct disk_io *io)
{
	const struct layer_ops *ops = layer_get_ops(l);
	struct reactor *r = tu_reactor();
	bool done = false;
	int st;

	io->done = tu_layer_done;
	io->opaque = &done;
	io->reactor = r;
	io->status = DISK_OK;
	io->os_errno = 0;
	io->medium = DISK_MEDIUM_NONE;
	switch (io->op) {
	case DISK_OP_READ:
		st = ops->read(l, io);
		break;
	case DISK_OP_WRITE:
		st = ops->write(l, io);
		break;
	case DISK_OP_FLUSH:
		st = ops->flush(l, io);
		break;
	case DISK_OP_UNMAP:
		st = ops->unmap(l, io);
		break;
	case DISK_OP_BLOCK_STATUS:
		st = ops->block_status(l, io);
		break;
	default:
		fail_msg("tu_layer_io: op %d is not a layer op", (int)io->op);
		return DISK_UNSUPPORTED;
	}
	if (st == DISK_PENDING) {
		int ret = reactor_run_until(r, &done);

		assert_int_equal(ret, 0);
		return io->status;
	}
	/* An op that finished at once must not also complete the request. */
	assert_false(done);
	assert_true(st >= 0 && st < DISK_STATUS_COUNT);
	io->status = st;
	return st;
}

int tu_layer_read(struct layer *l, uint64_t sector, void *buf, size_t len, uint64_t *nmarked)
{
	uint32_t ss = tu_layer_sector_size(l);
	uint64_t count = len / ss;
	struct iovec iov = { .iov_base = buf, .iov_len = len };
	struct disk_io io;
	struct bitmap marker;
	uint64_t *words;
	int st;

	assert_int_equal(len % ss, 0);
	words = calloc(MAX(BITMAP_WORDS(count), (uint64_t)1), sizeof(*words));
	assert_non_null(words);
	bitmap_init(&marker, sector, count, words);
	memset(&io, 0, sizeof(io));
	io.op = DISK_OP_READ;
	io.sector = sector;
	io.count = count;
	io.iov = &iov;
	io.iovcnt = 1;
	io.u.marker = &marker;
	st = tu_layer_io(l, &io);
	if (nmarked)
		*nmarked = marker.nset;
	free(words);
	return st;
}

int tu_layer_write(struct layer *l, uint64_t sector, const void *buf, size_t len, uint32_t flags)
{
	uint32_t ss = tu_layer_sector_size(l);
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
	struct disk_io io;

	assert_int_equal(len % ss, 0);
	memset(&io, 0, sizeof(io));
	io.op = DISK_OP_WRITE;
	io.flags = flags;
	io.sector = sector;
	io.count = len / ss;
	io.iov = &iov;
	io.iovcnt = 1;
	return tu_layer_io(l, &io);
}

int tu_layer_unmap(struct layer *l, uint64_t sector, uint64_t count, bool next_is_zero)
{
	struct disk_io io;

	memset(&io, 0, sizeof(io));
	io.op = DISK_OP_UNMAP;
	io.flags = next_is_zero ? DISK_IO_NEXT_IS_ZERO : 0;
	io.sector = sector;
	io.count = count;
	return tu_layer_io(l, &io);
}

/* ---- randomness --------------------------------------------------------- */

uint64_t tu_seed(const char *test)
{
	const char *env = getenv("DISKSTACK_SEED");
	uint64_t seed;

	if (env && *env) {
		seed = strtoull(env, NULL, 0);
	} else {
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		seed = ((uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec) ^
		       ((uint64_t)getpid() << 32);
	}
	if (seed == 0)
		seed = 1;
	fprintf(stderr, "# %s: seed %" PRIu64 " (rerun with DISKSTACK_SEED=%" PRIu64 ")\n",
		test ? test : "test", seed, seed);
	return seed;
}

uint64_t tu_rand(uint64_t *state)
{
	uint64_t x = *state ? *state : UINT64_C(0x9e3779b97f4a7c15);

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*state = x;
	return x * UINT64_C(0x2545f4914f6cdd1d);
}

/* ---- loop devices ------------------------------------------------------- */

void tu_loop_attach(struct tu_loop *l, const char *backing, unsigned sector_size)
{
	char cmd[PATH_MAX + 128], ss[32] = "";
	struct loop_info64 li;

	memset(l, 0, sizeof(*l));
	l->hold = -1;
	if (geteuid() != 0) {
		fprintf(stderr, "# skip: loop device tests need root\n");
		skip();
	}
	if (sector_size)
		snprintf(ss, sizeof(ss), " --sector-size %u", sector_size);
	snprintf(cmd, sizeof(cmd), "losetup --find --show%s '%s' 2>/dev/null", ss, backing);
	if (tp_run_line(cmd, l->dev, sizeof(l->dev)) != 0 || strncmp(l->dev, "/dev/loop", 9) != 0) {
		l->dev[0] = '\0';
		fprintf(stderr, "# skip: losetup failed (no loop device support?)\n");
		skip();
	}
	/* Detach automatically when the last opener goes, even if this
	 * process is killed before tu_loop_detach(). */
	l->hold = open(l->dev, O_RDONLY | O_CLOEXEC);
	if (l->hold >= 0 && ioctl(l->hold, LOOP_GET_STATUS64, &li) == 0) {
		li.lo_flags |= LO_FLAGS_AUTOCLEAR;
		l->autoclear = ioctl(l->hold, LOOP_SET_STATUS64, &li) == 0;
	}
}

void tu_loop_detach(struct tu_loop *l)
{
	char cmd[128];

	if (l->hold >= 0) {
		/* AUTOCLEAR detaches it at this close; without it, detach through
		 * our own descriptor. Never by name once it may be free: another
		 * test running in parallel may already have attached the same
		 * /dev/loopN (regression: a shared device's size read as 0). */
		if (!l->autoclear)
			(void)ioctl(l->hold, LOOP_CLR_FD, 0);
		close(l->hold);
		l->hold = -1;
	} else if (l->dev[0]) {
		/* Never opened: still ours, detach it by name. */
		snprintf(cmd, sizeof(cmd), "losetup -d '%s' >/dev/null 2>&1", l->dev);
		(void)tp_run_line(cmd, NULL, 0);
	}
	l->dev[0] = '\0';
}
