/* SPDX-License-Identifier: MIT */
/*
 * test-blockdev.c: the block-device half of the file backend
 * (storage/blockdev.c, docs/openvmm-compat.md §4.5): uevent
 * parsing, the errno and PR status tables, NVMe and SCSI reservation
 * passthrough and CD-ROM eject against an emulated device (the system-call
 * hooks of blockdev.h: this machine has no NVMe, SCSI or CD-ROM device),
 * resize through injected uevents, and — as root, skipped otherwise — a
 * loop device grown and shrunk with `losetup -c` while a resize watcher
 * listens, requests racing a shrink, and the file backend's wiring of the
 * new ops.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>
#include <linux/cdrom.h>
#include <linux/fs.h>
#include <linux/netlink.h>
#include <linux/nvme_ioctl.h>
#include <linux/pr.h>
#include <scsi/sg.h>

#include "common/compiler.h"
#include "storage/backends/blockdev.h"
#include "storage/backends/filedisk.h"
#include "tests/unit/contract.h"
#include "tests/unit/testproc.h"
#include "tests/unit/testutil.h"

#define MIB ((uint64_t)1 << 20)

/* Block major 0 has no devices, so no real uevent ever names the fake. */
#define FAKE_MAJOR 0u
#define FAKE_MINOR 4242u

/* ---- an emulated device behind the blockdev_sys hooks ------------------------ */

#define MAX_CALLS 64
#define MAX_ATTRS 8
#define MAX_REGS 200
/* What a device that reports every reservation type and PTPL offers. */
#define ALL_PR_CAPS (DISK_PR_CAP_WE | DISK_PR_CAP_EA | DISK_PR_CAP_WE_RO | DISK_PR_CAP_EA_RO | \
		     DISK_PR_CAP_WE_AR | DISK_PR_CAP_EA_AR | DISK_PR_CAP_PTPL)

struct fake_call {
	unsigned long request;
	uintptr_t arg_value;                    /* the arg pointer, as a value */
	union {
		struct pr_registration reg;
		struct pr_reservation rsv;
		struct pr_preempt pre;
		struct pr_clear clr;
		struct nvme_passthru_cmd nvme;
		uint8_t cdb[16];
	} u;
};

struct fake_reg {
	uint16_t cntlid;
	bool holds;
	uint64_t key;
	uint8_t host_id[16];
};

static struct fake {
	bool passthrough;               /* unknown ioctls/paths go to the real system */
	const char *attr_name[MAX_ATTRS];  /* path suffix → contents */
	const char *attr_value[MAX_ATTRS];
	int nattrs;

	_Atomic uint64_t size_bytes;    /* BLKGETSIZE64 */
	_Atomic int size_err;           /* BLKGETSIZE64 fails with this (-errno) */
	_Atomic bool size_frozen;       /* passthrough: answer frozen_bytes instead */
	_Atomic uint64_t frozen_bytes;
	_Atomic unsigned size_reads;

	/* NVMe */
	int identify_ret;               /* result of the admin Identify ioctls */
	uint8_t rescap;
	uint16_t oncs;
	int report_ret;
	uint32_t gen;
	uint8_t rtype;
	uint8_t ptpls;
	int nregs;
	struct fake_reg regs[MAX_REGS];

	/* SCSI */
	int sg_ret;                     /* SG_IO ioctl result */
	uint8_t sg_status;              /* SCSI status */
	uint8_t caps[8];                /* REPORT CAPABILITIES data */
	int nkeys;
	uint64_t keys[MAX_REGS];
	uint32_t keys_gen, res_gen;     /* generations in READ KEYS / READ RESERVATION */
	int res_gen_bumps;              /* READ RESERVATION answers res_gen+1 this many times */
	uint64_t res_key;
	uint8_t res_type;               /* SCSI type code; 0 = no reservation */

	/* PR ioctls, eject */
	int pr_ret;
	int lockdoor_ret;
	int eject_ret;

	pthread_mutex_t lock;           /* protects calls, ncalls */
	struct fake_call calls[MAX_CALLS];
	int ncalls;
} fk;

static const struct blockdev_sys *real_sys;

static void fake_reset(bool passthrough)
{
	memset(&fk, 0, sizeof(fk));
	pthread_mutex_init(&fk.lock, NULL);
	fk.passthrough = passthrough;
	atomic_store(&fk.size_bytes, 8 * MIB);
}

static void fake_attr(const char *suffix, const char *value)
{
	assert_true(fk.nattrs < MAX_ATTRS);
	fk.attr_name[fk.nattrs] = suffix;
	fk.attr_value[fk.nattrs++] = value;
}

static const char *fake_find_attr(const char *path)
{
	size_t n = strlen(path);

	for (int i = 0; i < fk.nattrs; i++) {
		size_t m = strlen(fk.attr_name[i]);

		if (n >= m && strcmp(path + n - m, fk.attr_name[i]) == 0 &&
		    (n == m || path[n - m - 1] == '/'))
			return fk.attr_value[i];
	}
	return NULL;
}

static int fake_read_file(const char *path, char *buf, size_t len)
{
	const char *v = fake_find_attr(path);

	if (!v)
		return fk.passthrough ? real_sys->read_file(path, buf, len) : -ENOENT;
	snprintf(buf, len, "%s", v);
	return (int)strlen(buf);
}

static bool fake_exists(const char *path)
{
	if (fake_find_attr(path))
		return true;
	return fk.passthrough && real_sys->exists(path);
}

static void fake_record(unsigned long request, void *arg, const void *copy, size_t len)
{
	struct fake_call *c;

	pthread_mutex_lock(&fk.lock);
	assert_true(fk.ncalls < MAX_CALLS);
	c = &fk.calls[fk.ncalls++];
	memset(c, 0, sizeof(*c));
	c->request = request;
	c->arg_value = (uintptr_t)arg;
	if (copy)
		memcpy(&c->u, copy, MIN(len, sizeof(c->u)));
	pthread_mutex_unlock(&fk.lock);
}

static void put_le16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static void put_le32(uint8_t *p, uint32_t v) { put_le16(p, (uint16_t)v); put_le16(p + 2, (uint16_t)(v >> 16)); }
static void put_le64(uint8_t *p, uint64_t v) { put_le32(p, (uint32_t)v); put_le32(p + 4, (uint32_t)(v >> 32)); }
static void put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v;
}
static void put_be64(uint8_t *p, uint64_t v) { put_be32(p, (uint32_t)(v >> 32)); put_be32(p + 4, (uint32_t)v); }

static int fake_nvme_admin(struct nvme_passthru_cmd *c)
{
	uint8_t *buf = (uint8_t *)(uintptr_t)c->addr;

	if (fk.identify_ret)
		return fk.identify_ret;
	assert_int_equal(c->opcode, 0x06);
	assert_int_equal(c->data_len, 4096);
	memset(buf, 0xa5, c->data_len);  /* garbage around the fields we set */
	if (c->cdw10 == 0) {
		buf[31] = fk.rescap;
	} else {
		assert_int_equal(c->cdw10, 1);
		put_le16(buf + 520, fk.oncs);
	}
	return 0;
}

static int fake_nvme_report(struct nvme_passthru_cmd *c)
{
	uint8_t *buf = (uint8_t *)(uintptr_t)c->addr;
	uint32_t len = c->data_len;

	assert_int_equal(c->opcode, 0x0e);
	assert_int_equal(c->cdw10, len / 4 - 1);
	assert_int_equal(c->cdw11, 1);
	if (fk.report_ret)
		return fk.report_ret;
	memset(buf, 0, len);
	assert_true(len >= 64);
	put_le32(buf, fk.gen);
	buf[4] = fk.rtype;
	put_le16(buf + 5, (uint16_t)fk.nregs);
	buf[9] = fk.ptpls;
	for (int i = 0; i < fk.nregs && 64 + 64 * (uint32_t)(i + 1) <= len; i++) {
		uint8_t *e = buf + 64 + 64 * i;

		put_le16(e, fk.regs[i].cntlid);
		e[2] = fk.regs[i].holds;
		put_le64(e + 8, fk.regs[i].key);
		memcpy(e + 16, fk.regs[i].host_id, 16);
	}
	return 0;
}

static int fake_sg_io(struct sg_io_hdr *h)
{
	uint8_t *cdb = h->cmdp, *buf = h->dxferp, data[8 + 8 * MAX_REGS];
	uint32_t alloc, n = 0;

	assert_int_equal(h->interface_id, 'S');
	assert_int_equal(h->dxfer_direction, SG_DXFER_FROM_DEV);
	assert_int_equal(h->cmd_len, 10);
	assert_int_equal(cdb[0], 0x5e);
	alloc = (uint32_t)cdb[7] << 8 | cdb[8];
	assert_int_equal(alloc, h->dxfer_len);
	if (fk.sg_ret)
		return fk.sg_ret;
	h->status = fk.sg_status;
	h->host_status = h->driver_status = 0;
	h->info = 0;
	if (fk.sg_status)
		return 0;
	memset(data, 0, sizeof(data));
	switch (cdb[1] & 0x1f) {
	case 0x00: /* READ KEYS */
		put_be32(data, fk.keys_gen);
		put_be32(data + 4, 8 * (uint32_t)fk.nkeys);
		for (int i = 0; i < fk.nkeys; i++)
			put_be64(data + 8 + 8 * i, fk.keys[i]);
		n = 8 + 8 * (uint32_t)fk.nkeys;
		break;
	case 0x01: /* READ RESERVATION */
		put_be32(data, fk.res_gen_bumps > 0 ? fk.res_gen + 1 : fk.res_gen);
		if (fk.res_gen_bumps > 0)
			fk.res_gen_bumps--;
		if (fk.res_type) {
			put_be32(data + 4, 16);
			put_be64(data + 8, fk.res_key);
			data[21] = fk.res_type;
			n = 24;
		} else {
			n = 8;
		}
		break;
	case 0x02: /* REPORT CAPABILITIES */
		memcpy(data, fk.caps, 8);
		n = 8;
		break;
	default:
		fail_msg("unexpected PR IN service action %#x", cdb[1]);
	}
	memcpy(buf, data, MIN(n, alloc));
	h->resid = (int)(alloc - MIN(n, alloc));
	return 0;
}

static int fake_ioctl(int fd, unsigned long request, void *arg)
{
	switch (request) {
	case BLKGETSIZE64:
		atomic_fetch_add(&fk.size_reads, 1);
		if (fk.passthrough) {
			if (atomic_load(&fk.size_frozen)) {
				*(uint64_t *)arg = atomic_load(&fk.frozen_bytes);
				return 0;
			}
			return real_sys->ioctl(fd, request, arg);
		}
		if (atomic_load(&fk.size_err))
			return atomic_load(&fk.size_err);
		*(uint64_t *)arg = atomic_load(&fk.size_bytes);
		return 0;
	case NVME_IOCTL_ADMIN_CMD:
		fake_record(request, arg, arg, sizeof(struct nvme_passthru_cmd));
		return fake_nvme_admin(arg);
	case NVME_IOCTL_IO_CMD:
		fake_record(request, arg, arg, sizeof(struct nvme_passthru_cmd));
		return fake_nvme_report(arg);
	case SG_IO:
		fake_record(request, arg, ((struct sg_io_hdr *)arg)->cmdp, 10);
		return fake_sg_io(arg);
	case IOC_PR_REGISTER:
	case IOC_PR_RESERVE:
	case IOC_PR_RELEASE:
	case IOC_PR_PREEMPT:
	case IOC_PR_PREEMPT_ABORT:
	case IOC_PR_CLEAR:
		fake_record(request, arg, arg, _IOC_SIZE(request));
		return fk.pr_ret;
	case CDROM_LOCKDOOR:
		fake_record(request, arg, NULL, 0);
		return fk.lockdoor_ret;
	case CDROMEJECT:
		fake_record(request, arg, NULL, 0);
		return fk.eject_ret;
	default:
		if (fk.passthrough)
			return real_sys->ioctl(fd, request, arg);
		fail_msg("unexpected ioctl %#lx", request);
	}
	return -ENOTTY;
}

static const struct blockdev_sys fake_sys = {
	.ioctl = fake_ioctl,
	.read_file = fake_read_file,
	.exists = fake_exists,
};

/* Calls recorded with @request, in order; returns how many (copies the
 * first @max into @out). */
static int fake_calls(unsigned long request, struct fake_call *out, int max)
{
	int n = 0;

	pthread_mutex_lock(&fk.lock);
	for (int i = 0; i < fk.ncalls; i++) {
		if (fk.calls[i].request != request)
			continue;
		if (n < max)
			out[n] = fk.calls[i];
		n++;
	}
	pthread_mutex_unlock(&fk.lock);
	return n;
}

static void fake_clear_calls(void)
{
	pthread_mutex_lock(&fk.lock);
	fk.ncalls = 0;
	pthread_mutex_unlock(&fk.lock);
}

/* ---- a disk around a struct blockdev on the emulated device --------------- */

static uint64_t harness_sector_count(struct disk *d)
{
	return blockdev_sector_count(disk_priv(d));
}

static int harness_rw(struct disk *d, struct disk_io *io)
{
	(void)d;
	(void)io;
	return DISK_UNSUPPORTED;  /* no data: the emulated device has none */
}

static int harness_pr(struct disk *d, struct disk_io *io) { return blockdev_pr(disk_priv(d), io); }
static int harness_eject(struct disk *d, struct disk_io *io) { return blockdev_eject(disk_priv(d), io); }
static int harness_watch(struct disk *d, struct disk_resize_watch *w)
{
	return blockdev_watch_resize(disk_priv(d), w);
}
static void harness_unwatch(struct disk *d, struct disk_resize_watch *w)
{
	blockdev_unwatch_resize(disk_priv(d), w);
}
static void harness_close(struct disk *d) { blockdev_close(disk_priv(d)); }

static const struct disk_ops harness_ops = {
	.version = DISK_OPS_VERSION,
	.sector_count = harness_sector_count,
	.read = harness_rw,
	.write = harness_rw,
	.pr = harness_pr,
	.eject = harness_eject,
	.watch_resize = harness_watch,
	.unwatch_resize = harness_unwatch,
	.close = harness_close,
};

/* Opens the emulated device (set up in fk) as a disk with 512-byte sectors. */
static struct disk *fake_open(void)
{
	struct disk_info info = {
		.type = "block_device",
		.sector_size = 512,
		.physical_sector_size = 512,
		.unmap_behavior = DISK_UNMAP_IGNORED,
	};
	struct blockdev *bd;
	struct disk *d;

	blockdev_set_sys(&fake_sys);
	assert_int_equal(blockdev_open(-1, makedev(FAKE_MAJOR, FAKE_MINOR), "fake", 9,
				       atomic_load(&fk.size_bytes) >> 9, &bd), 0);
	info.caps = blockdev_caps(bd);
	assert_int_equal(disk_new(&harness_ops, &info, bd, NULL, &d), 0);
	return d;
}

static int pr_io(struct disk *d, enum disk_op op, const struct disk_pr_args *args,
		 struct disk_io *out)
{
	struct disk_io io = { .op = op };
	int st;

	if (args)
		io.u.pr = *args;
	st = disk_sync_io(d, &io);
	if (out)
		*out = io;
	return st;
}

static int teardown(void **state)
{
	(void)state;
	blockdev_set_sys(NULL);
	tu_reactor_done();
	return 0;
}

static int test_setup(void **state)
{
	(void)state;
	fake_reset(false);
	return 0;
}

static int test_teardown(void **state)
{
	(void)state;
	blockdev_set_sys(NULL);
	return 0;
}

/* ---- uevent parsing ---------------------------------------------------------------- */

struct uev_case {
	const char *what;
	const char *msg;                /* strings separated by '|' (NUL on the wire) */
	enum blockdev_uevent want;
	unsigned maj, min;
};

static void test_blockdev_uevent_parse(void **state)
{
	/* The first case is what this machine's kernel sent for `losetup -c`. */
	static const struct uev_case cases[] = {
		{ "losetup -c", "change@/devices/virtual/block/loop0|ACTION=change|"
		  "DEVPATH=/devices/virtual/block/loop0|SUBSYSTEM=block|RESIZE=1|MAJOR=7|"
		  "MINOR=0|DEVNAME=loop0|DEVTYPE=disk|DISKSEQ=245|SEQNUM=1230|",
		  BLOCKDEV_UEVENT_DEVICE, 7, 0 },
		{ "attach (no RESIZE)", "change@/devices/virtual/block/loop0|ACTION=change|"
		  "DEVPATH=/devices/virtual/block/loop0|SUBSYSTEM=block|MAJOR=7|MINOR=0|"
		  "DEVNAME=loop0|SEQNUM=1229|", BLOCKDEV_UEVENT_NONE, 0, 0 },
		{ "media change", "change@/devices/virtual/block/loop3|ACTION=change|"
		  "SUBSYSTEM=block|DISK_MEDIA_CHANGE=1|MAJOR=7|MINOR=3|",
		  BLOCKDEV_UEVENT_DEVICE, 7, 3 },
		{ "nvme, large minor", "change@/x|ACTION=change|SUBSYSTEM=block|MAJOR=259|"
		  "MINOR=1048575|RESIZE=1|", BLOCKDEV_UEVENT_DEVICE, 259, 1048575 },
		{ "RESIZE=0", "change@/x|ACTION=change|SUBSYSTEM=block|RESIZE=0|MAJOR=7|MINOR=0|",
		  BLOCKDEV_UEVENT_NONE, 0, 0 },
		{ "add, not change", "add@/x|ACTION=add|SUBSYSTEM=block|RESIZE=1|MAJOR=7|MINOR=0|",
		  BLOCKDEV_UEVENT_NONE, 0, 0 },
		{ "not block", "change@/x|ACTION=change|SUBSYSTEM=net|RESIZE=1|MAJOR=7|MINOR=0|",
		  BLOCKDEV_UEVENT_NONE, 0, 0 },
		{ "no MINOR", "change@/x|ACTION=change|SUBSYSTEM=block|RESIZE=1|MAJOR=7|",
		  BLOCKDEV_UEVENT_NONE, 0, 0 },
		{ "bad MAJOR", "change@/x|ACTION=change|SUBSYSTEM=block|RESIZE=1|MAJOR=7x|MINOR=0|",
		  BLOCKDEV_UEVENT_NONE, 0, 0 },
		{ "negative MINOR", "change@/x|ACTION=change|SUBSYSTEM=block|RESIZE=1|MAJOR=7|"
		  "MINOR=-1|", BLOCKDEV_UEVENT_NONE, 0, 0 },
		{ "huge MAJOR", "change@/x|ACTION=change|SUBSYSTEM=block|RESIZE=1|"
		  "MAJOR=99999999999999999999|MINOR=0|", BLOCKDEV_UEVENT_NONE, 0, 0 },
		{ "unterminated last", "change@/x|ACTION=change|SUBSYSTEM=block|RESIZE=1|MAJOR=7|"
		  "MINOR=0", BLOCKDEV_UEVENT_NONE, 0, 0 },
		{ "RESCAN", "change@/devices/x|ACTION=change|SUBSYSTEM=scsi|RESCAN=true|",
		  BLOCKDEV_UEVENT_RESCAN, 0, 0 },
		{ "RESCAN=false", "change@/x|ACTION=change|SUBSYSTEM=block|RESCAN=false|",
		  BLOCKDEV_UEVENT_NONE, 0, 0 },
		{ "prefix of a key", "change@/x|ACTION=change|SUBSYSTEM=block|RESIZED=1|MAJOR=7|"
		  "MINOR=0|", BLOCKDEV_UEVENT_NONE, 0, 0 },
		{ "libudev", "libudev|\xfe\xed\xca\xfe|ACTION=change|", BLOCKDEV_UEVENT_NONE, 0, 0 },
		{ "empty", "", BLOCKDEV_UEVENT_NONE, 0, 0 },
	};
	char buf[512];

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		size_t len = strlen(cases[i].msg);
		dev_t dev = makedev(1, 1);
		enum blockdev_uevent got;

		assert_true(len < sizeof(buf));
		memcpy(buf, cases[i].msg, len);
		for (size_t j = 0; j < len; j++)
			if (buf[j] == '|')
				buf[j] = '\0';
		got = blockdev_uevent_parse(buf, len, &dev);
		if (got != cases[i].want)
			fail_msg("%s: got %d, want %d", cases[i].what, got, cases[i].want);
		if (got == BLOCKDEV_UEVENT_DEVICE &&
		    (major(dev) != cases[i].maj || minor(dev) != cases[i].min))
			fail_msg("%s: device %u:%u", cases[i].what, major(dev), minor(dev));
	}
}

/* ---- status tables ---------------------------------------------------------------- */

static void test_blockdev_status_tables(void **state)
{
	static const struct {
		enum blockdev_pr_kind kind;
		int ret;
		int status;
		int err;
	} pr[] = {
		{ BLOCKDEV_PR_NVME, 0, DISK_OK, 0 },
		{ BLOCKDEV_PR_NVME, -EBADE, DISK_RESERVATION_CONFLICT, 0 },
		{ BLOCKDEV_PR_NVME, -EPERM, DISK_IO_ERROR, EPERM },
		{ BLOCKDEV_PR_NVME, -EOPNOTSUPP, DISK_IO_ERROR, EOPNOTSUPP },
		{ BLOCKDEV_PR_NVME, 0x18, DISK_RESERVATION_CONFLICT, 0 },   /* PR_STS_* (>= 6.5) */
		{ BLOCKDEV_PR_NVME, 0x83, DISK_RESERVATION_CONFLICT, 0 },   /* raw NVMe status */
		{ BLOCKDEV_PR_NVME, 0x4083, DISK_RESERVATION_CONFLICT, 0 }, /* ... with DNR */
		{ BLOCKDEV_PR_NVME, 0x02, DISK_IO_ERROR, EIO },             /* PR_STS_IOERR */
		{ BLOCKDEV_PR_NVME, 0x10000, DISK_IO_ERROR, EIO },          /* PR_STS_PATH_FAILED */
		{ BLOCKDEV_PR_NVME, 0x183, DISK_IO_ERROR, EIO },            /* SCT 1, not a conflict */
		{ BLOCKDEV_PR_SCSI, 0x18, DISK_RESERVATION_CONFLICT, 0 },
		{ BLOCKDEV_PR_SCSI, 0x02, DISK_IO_ERROR, EIO },             /* CHECK CONDITION */
		{ BLOCKDEV_PR_SCSI, 0x83, DISK_IO_ERROR, EIO },
		{ BLOCKDEV_PR_SCSI, 0xe0000, DISK_IO_ERROR, EIO },
		{ BLOCKDEV_PR_SCSI, -EBADE, DISK_RESERVATION_CONFLICT, 0 },
	};
	int err;

	(void)state;
	assert_int_equal(blockdev_errno_status(EBADE), DISK_RESERVATION_CONFLICT);
	assert_int_equal(blockdev_errno_status(ENOSPC), DISK_ILLEGAL_BLOCK);
	assert_int_equal(blockdev_errno_status(EIO), DISK_IO_ERROR);
	assert_int_equal(blockdev_errno_status(EINVAL), DISK_IO_ERROR);
	for (size_t i = 0; i < ARRAY_SIZE(pr); i++) {
		int st = blockdev_pr_ioctl_status(pr[i].kind, pr[i].ret, &err);

		if (st != pr[i].status || err != pr[i].err)
			fail_msg("kind %d ret %#x: status %d errno %d, want %d errno %d",
				 pr[i].kind, pr[i].ret, st, err, pr[i].status, pr[i].err);
	}
}

/* ---- NVMe reservations on the emulated device -------------------------------- */

static void nvme_device(uint8_t rescap, uint16_t oncs)
{
	fake_attr("nsid", "3\n");
	fk.rescap = rescap;
	fk.oncs = oncs;
}

static void test_blockdev_nvme_caps(void **state)
{
	struct fake_call c[4];
	struct disk_io io;
	struct disk *d;

	(void)state;
	nvme_device(0x7f, 1u << 5);
	d = fake_open();
	assert_true(disk_get_info(d)->caps & DISK_CAP_PR);
	assert_false(disk_get_info(d)->caps & DISK_CAP_EJECT);
	/* Identify Namespace (CNS 0) for nsid 3, then Identify Controller. */
	assert_int_equal(fake_calls(NVME_IOCTL_ADMIN_CMD, c, 4), 2);
	assert_int_equal(c[0].u.nvme.nsid, 3);
	assert_int_equal(c[0].u.nvme.cdw10, 0);
	assert_int_equal(c[1].u.nvme.nsid, 0);
	assert_int_equal(c[1].u.nvme.cdw10, 1);
	assert_int_equal(pr_io(d, DISK_OP_PR_CAPS, NULL, &io), DISK_OK);
	assert_int_equal(io.u.pr.caps, ALL_PR_CAPS);
	disk_unref(d);

	/* RESCAP bits map one to one: WE (bit 1), WE-RO (bit 3), no PTPL. */
	fake_reset(false);
	nvme_device(0x0a, 0xffff);
	d = fake_open();
	assert_int_equal(pr_io(d, DISK_OP_PR_CAPS, NULL, &io), DISK_OK);
	assert_int_equal(io.u.pr.caps, DISK_PR_CAP_WE | DISK_PR_CAP_WE_RO);
	disk_unref(d);
	fake_reset(false);
	nvme_device(0x81, 1u << 5);  /* PTPL + IEKEY only: PTPL, no types */
	d = fake_open();
	assert_int_equal(pr_io(d, DISK_OP_PR_CAPS, NULL, &io), DISK_OK);
	assert_int_equal(io.u.pr.caps, DISK_PR_CAP_PTPL);
	disk_unref(d);
}

/* Every way an NVMe namespace ends up without reservations. */
static void test_blockdev_nvme_no_pr(void **state)
{
	static const struct {
		uint8_t rescap;
		uint16_t oncs;
		int identify_ret;
	} cases[] = {
		{ 0x7f, 0x1f & ~(1u << 5), 0 },  /* controller without reservations */
		{ 0x00, 1u << 5, 0 },            /* namespace without RESCAP */
		{ 0x7f, 1u << 5, -EPERM },       /* no admin passthrough (not root) */
		{ 0x7f, 1u << 5, 0x4002 },       /* Identify failed on the device */
	};
	struct disk_pr_args args = { .type = DISK_PR_WRITE_EXCLUSIVE, .key = 1 };
	struct disk *d;

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		fake_reset(false);
		nvme_device(cases[i].rescap, cases[i].oncs);
		fk.identify_ret = cases[i].identify_ret;
		d = fake_open();
		assert_false(disk_get_info(d)->caps & DISK_CAP_PR);
		assert_int_equal(pr_io(d, DISK_OP_PR_CAPS, NULL, NULL), DISK_UNSUPPORTED);
		assert_int_equal(pr_io(d, DISK_OP_PR_RESERVE, &args, NULL), DISK_UNSUPPORTED);
		assert_int_equal(fake_calls(IOC_PR_RESERVE, NULL, 0), 0);
		disk_unref(d);
	}
	/* A plain device (no nsid, not SCSI) is not probed at all. */
	fake_reset(false);
	d = fake_open();
	assert_false(disk_get_info(d)->caps & (DISK_CAP_PR | DISK_CAP_EJECT));
	assert_int_equal(fk.ncalls, 0);
	disk_unref(d);
	/* A partition of a namespace: the kernel refuses PR ioctls there. */
	fake_reset(false);
	nvme_device(0x7f, 1u << 5);
	fake_attr("partition", "1\n");
	d = fake_open();
	assert_false(disk_get_info(d)->caps & DISK_CAP_PR);
	assert_int_equal(fake_calls(NVME_IOCTL_ADMIN_CMD, NULL, 0), 0);
	disk_unref(d);
}

static void test_blockdev_pr_out_encoding(void **state)
{
	struct disk_pr_args a;
	struct fake_call c[2];
	struct disk_io io;
	struct disk *d;

	(void)state;
	nvme_device(0x7f, 1u << 5);
	d = fake_open();

	/* REGISTER without a current key: ignore-existing-key. */
	a = (struct disk_pr_args){ .has_current_key = false, .new_key = 0x1122334455667788ull,
				   .ptpl = -1 };
	assert_int_equal(pr_io(d, DISK_OP_PR_REGISTER, &a, NULL), DISK_OK);
	assert_int_equal(fake_calls(IOC_PR_REGISTER, c, 2), 1);
	assert_int_equal(c[0].u.reg.old_key, 0);
	assert_int_equal(c[0].u.reg.new_key, 0x1122334455667788ull);
	assert_int_equal(c[0].u.reg.flags, PR_FL_IGNORE_KEY);
	/* With the current key; ptpl = 0 is only logged. */
	fake_clear_calls();
	a = (struct disk_pr_args){ .has_current_key = true, .key = 5, .new_key = 6, .ptpl = 0 };
	assert_int_equal(pr_io(d, DISK_OP_PR_REGISTER, &a, NULL), DISK_OK);
	assert_int_equal(fake_calls(IOC_PR_REGISTER, c, 2), 1);
	assert_int_equal(c[0].u.reg.old_key, 5);
	assert_int_equal(c[0].u.reg.new_key, 6);
	assert_int_equal(c[0].u.reg.flags, 0);

	/* RESERVE and RELEASE: key and the PR_* type, which is ours. */
	for (int t = DISK_PR_WRITE_EXCLUSIVE; t <= DISK_PR_EXCLUSIVE_ACCESS_ALL_REG; t++) {
		fake_clear_calls();
		a = (struct disk_pr_args){ .key = 0xabcull + (uint64_t)t,
					   .type = (enum disk_pr_type)t };
		assert_int_equal(pr_io(d, DISK_OP_PR_RESERVE, &a, NULL), DISK_OK);
		assert_int_equal(pr_io(d, DISK_OP_PR_RELEASE, &a, NULL), DISK_OK);
		assert_int_equal(fake_calls(IOC_PR_RESERVE, c, 1), 1);
		assert_int_equal(c[0].u.rsv.key, 0xabcull + (uint64_t)t);
		assert_int_equal(c[0].u.rsv.type, t);
		assert_int_equal(c[0].u.rsv.flags, 0);
		assert_int_equal(fake_calls(IOC_PR_RELEASE, c, 1), 1);
		assert_int_equal(c[0].u.rsv.type, t);
	}
	/* No type is not a type. */
	a = (struct disk_pr_args){ .key = 1, .type = DISK_PR_NONE };
	assert_int_equal(pr_io(d, DISK_OP_PR_RESERVE, &a, NULL), DISK_INVALID_INPUT);
	assert_int_equal(pr_io(d, DISK_OP_PR_PREEMPT, &a, NULL), DISK_INVALID_INPUT);

	/* PREEMPT and PREEMPT AND ABORT. */
	fake_clear_calls();
	a = (struct disk_pr_args){ .key = 10, .new_key = 20, .type = DISK_PR_EXCLUSIVE_ACCESS };
	assert_int_equal(pr_io(d, DISK_OP_PR_PREEMPT, &a, NULL), DISK_OK);
	a.abort = true;
	assert_int_equal(pr_io(d, DISK_OP_PR_PREEMPT, &a, NULL), DISK_OK);
	assert_int_equal(fake_calls(IOC_PR_PREEMPT, c, 1), 1);
	assert_int_equal(c[0].u.pre.old_key, 10);
	assert_int_equal(c[0].u.pre.new_key, 20);
	assert_int_equal(c[0].u.pre.type, PR_EXCLUSIVE_ACCESS);
	assert_int_equal(fake_calls(IOC_PR_PREEMPT_ABORT, c, 1), 1);
	assert_int_equal(c[0].u.pre.old_key, 10);

	/* CLEAR. */
	a = (struct disk_pr_args){ .key = 77 };
	assert_int_equal(pr_io(d, DISK_OP_PR_CLEAR, &a, NULL), DISK_OK);
	assert_int_equal(fake_calls(IOC_PR_CLEAR, c, 1), 1);
	assert_int_equal(c[0].u.clr.key, 77);

	/* Results: a device status or an errno. */
	a = (struct disk_pr_args){ .key = 1, .type = DISK_PR_WRITE_EXCLUSIVE };
	fk.pr_ret = 0x18;
	assert_int_equal(pr_io(d, DISK_OP_PR_RESERVE, &a, NULL), DISK_RESERVATION_CONFLICT);
	fk.pr_ret = 0x83;
	assert_int_equal(pr_io(d, DISK_OP_PR_RESERVE, &a, NULL), DISK_RESERVATION_CONFLICT);
	fk.pr_ret = -EBADE;
	assert_int_equal(pr_io(d, DISK_OP_PR_CLEAR, &a, NULL), DISK_RESERVATION_CONFLICT);
	fk.pr_ret = 0x02;
	assert_int_equal(pr_io(d, DISK_OP_PR_RESERVE, &a, &io), DISK_IO_ERROR);
	assert_int_equal(io.os_errno, EIO);
	fk.pr_ret = -EPERM;
	assert_int_equal(pr_io(d, DISK_OP_PR_REGISTER, &a, &io), DISK_IO_ERROR);
	assert_int_equal(io.os_errno, EPERM);
	disk_unref(d);
}

static void fake_regs(int n)
{
	fk.nregs = n;
	for (int i = 0; i < n; i++) {
		fk.regs[i].cntlid = (uint16_t)(0x100 + i);
		fk.regs[i].holds = i == 1;
		fk.regs[i].key = 0xfeed000000000000ull + (uint64_t)i;
		for (int j = 0; j < 16; j++)
			fk.regs[i].host_id[j] = (uint8_t)(i * 16 + j);
	}
}

static void test_blockdev_nvme_report(void **state)
{
	struct disk_pr_controller ctl[MAX_REGS];
	struct disk_pr_report rep;
	struct disk_pr_args a;
	struct fake_call c[4];
	struct disk *d;

	(void)state;
	nvme_device(0x7f, 1u << 5);
	d = fake_open();
	fk.gen = 0xdeadbeef;
	fk.rtype = DISK_PR_WRITE_EXCLUSIVE_REG_ONLY;
	fk.ptpls = 1;
	fake_regs(3);

	memset(&rep, 0, sizeof(rep));
	memset(ctl, 0xee, sizeof(ctl));
	rep.controllers = ctl;
	rep.max_controllers = 8;
	a = (struct disk_pr_args){ .report = &rep };
	assert_int_equal(pr_io(d, DISK_OP_PR_REPORT, &a, NULL), DISK_OK);
	assert_int_equal(fake_calls(NVME_IOCTL_IO_CMD, c, 4), 1);
	assert_int_equal(c[0].u.nvme.nsid, 3);
	assert_int_equal(c[0].u.nvme.data_len, 4096);
	assert_int_equal(rep.generation, 0xdeadbeef);
	assert_int_equal(rep.type, DISK_PR_WRITE_EXCLUSIVE_REG_ONLY);
	assert_true(rep.ptpl);
	assert_int_equal(rep.nr_controllers, 3);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(ctl[i].controller_id, 0x100 + i);
		assert_int_equal(ctl[i].key, 0xfeed000000000000ull + (uint64_t)i);
		assert_int_equal(ctl[i].holds_reservation, i == 1);
		assert_int_equal(ctl[i].host_id_len, 16);
		assert_memory_equal(ctl[i].host_id, fk.regs[i].host_id, 16);
	}

	/* Room for fewer: the total is still reported, no retry. */
	fake_clear_calls();
	memset(ctl, 0xee, sizeof(ctl));
	rep.max_controllers = 2;
	assert_int_equal(pr_io(d, DISK_OP_PR_REPORT, &a, NULL), DISK_OK);
	assert_int_equal(rep.nr_controllers, 3);
	assert_int_equal(ctl[1].key, 0xfeed000000000001ull);
	assert_int_equal(ctl[2].key, 0xeeeeeeeeeeeeeeeeull);
	assert_int_equal(fake_calls(NVME_IOCTL_IO_CMD, NULL, 0), 1);

	/* More registrants than one page holds (63): retried larger. */
	fake_clear_calls();
	fake_regs(100);
	fk.rtype = 0;
	rep.max_controllers = MAX_REGS;
	assert_int_equal(pr_io(d, DISK_OP_PR_REPORT, &a, NULL), DISK_OK);
	assert_int_equal(fake_calls(NVME_IOCTL_IO_CMD, c, 4), 2);
	assert_int_equal(c[0].u.nvme.data_len, 4096);
	assert_int_equal(c[1].u.nvme.data_len, 8192);
	assert_int_equal(rep.nr_controllers, 100);
	assert_int_equal(rep.type, DISK_PR_NONE);
	assert_int_equal(ctl[99].controller_id, 0x100 + 99);
	assert_int_equal(ctl[99].key, 0xfeed000000000000ull + 99);

	/* An unknown reservation type, a conflict, an errno. */
	fake_regs(1);
	fk.rtype = 7;
	assert_int_equal(pr_io(d, DISK_OP_PR_REPORT, &a, NULL), DISK_IO_ERROR);
	fk.rtype = 1;
	fk.report_ret = 0x4083;
	assert_int_equal(pr_io(d, DISK_OP_PR_REPORT, &a, NULL), DISK_RESERVATION_CONFLICT);
	fk.report_ret = 0x0004;
	assert_int_equal(pr_io(d, DISK_OP_PR_REPORT, &a, NULL), DISK_IO_ERROR);
	fk.report_ret = -EACCES;
	{
		struct disk_io io;

		assert_int_equal(pr_io(d, DISK_OP_PR_REPORT, &a, &io), DISK_IO_ERROR);
		assert_int_equal(io.os_errno, EACCES);
	}
	disk_unref(d);
}

/* ---- SCSI reservations on the emulated device -------------------------------- */

static void scsi_device(uint8_t byte2, uint8_t byte3, uint8_t mask4, uint8_t mask5)
{
	fake_attr("device/scsi_device", "");
	fake_attr("device/type", "0\n");
	fk.caps[1] = 8;
	fk.caps[2] = byte2;
	fk.caps[3] = byte3;
	fk.caps[4] = mask4;
	fk.caps[5] = mask5;
}

static void test_blockdev_scsi_caps(void **state)
{
	struct fake_call c[2];
	struct disk_io io;
	struct disk *d;

	(void)state;
	/* TMV, PTPL_C, every type. */
	scsi_device(0x01, 0x80, 0xea, 0x01);
	d = fake_open();
	assert_true(disk_get_info(d)->caps & DISK_CAP_PR);
	assert_int_equal(fake_calls(SG_IO, c, 2), 1);
	assert_int_equal(c[0].u.cdb[1], 0x02);   /* REPORT CAPABILITIES */
	assert_int_equal(c[0].u.cdb[8], 8);
	assert_int_equal(pr_io(d, DISK_OP_PR_CAPS, NULL, &io), DISK_OK);
	assert_int_equal(io.u.pr.caps, ALL_PR_CAPS);
	disk_unref(d);

	/* WR_EX and EX_AC_RO only, no PTPL_C. */
	fake_reset(false);
	scsi_device(0x00, 0x80, 0x42, 0x00);
	d = fake_open();
	assert_int_equal(pr_io(d, DISK_OP_PR_CAPS, NULL, &io), DISK_OK);
	assert_int_equal(io.u.pr.caps, DISK_PR_CAP_WE | DISK_PR_CAP_EA_RO);
	disk_unref(d);

	/* TMV clear (mask not valid), an empty mask, a CHECK CONDITION, an
	 * SG_IO error: capabilities unknown, so no reservations. */
	for (int i = 0; i < 4; i++) {
		fake_reset(false);
		scsi_device(0x01, i == 0 ? 0x00 : 0x80, i == 1 ? 0x00 : 0xea, 0);
		if (i == 2)
			fk.sg_status = 0x02;
		if (i == 3)
			fk.sg_ret = -EPERM;
		d = fake_open();
		assert_false(disk_get_info(d)->caps & DISK_CAP_PR);
		assert_int_equal(pr_io(d, DISK_OP_PR_CAPS, NULL, NULL), DISK_UNSUPPORTED);
		disk_unref(d);
	}
}

static void test_blockdev_scsi_report(void **state)
{
	struct disk_pr_controller ctl[8];
	struct disk_pr_report rep;
	struct disk_pr_args a;
	struct disk *d;

	(void)state;
	scsi_device(0x01, 0x81 /* TMV, PTPL_A */, 0xea, 0x01);
	d = fake_open();
	fk.nkeys = 3;
	fk.keys[0] = 0x1111;
	fk.keys[1] = 0x2222;
	fk.keys[2] = 0x2222;  /* two I_T nexuses may register the same key */
	fk.keys_gen = fk.res_gen = 42;
	fk.res_type = 5;      /* WR_EX_RO */
	fk.res_key = 0x2222;

	memset(&rep, 0, sizeof(rep));
	rep.controllers = ctl;
	rep.max_controllers = ARRAY_SIZE(ctl);
	a = (struct disk_pr_args){ .report = &rep };
	assert_int_equal(pr_io(d, DISK_OP_PR_REPORT, &a, NULL), DISK_OK);
	assert_int_equal(rep.generation, 42);
	assert_int_equal(rep.type, DISK_PR_WRITE_EXCLUSIVE_REG_ONLY);
	assert_true(rep.ptpl);
	assert_int_equal(rep.nr_controllers, 3);
	assert_int_equal(ctl[0].key, 0x1111);
	assert_false(ctl[0].holds_reservation);
	assert_true(ctl[1].holds_reservation);
	assert_true(ctl[2].holds_reservation);
	assert_int_equal(ctl[0].host_id_len, 0);

	/* All-registrants: every registrant holds it. */
	fk.res_type = 8;
	assert_int_equal(pr_io(d, DISK_OP_PR_REPORT, &a, NULL), DISK_OK);
	assert_int_equal(rep.type, DISK_PR_EXCLUSIVE_ACCESS_ALL_REG);
	assert_true(ctl[0].holds_reservation);

	/* No reservation. */
	fk.res_type = 0;
	assert_int_equal(pr_io(d, DISK_OP_PR_REPORT, &a, NULL), DISK_OK);
	assert_int_equal(rep.type, DISK_PR_NONE);
	assert_false(ctl[1].holds_reservation);

	/* The generation moved between READ KEYS and READ RESERVATION: the
	 * pair is read again. */
	fake_clear_calls();
	fk.res_gen_bumps = 1;
	assert_int_equal(pr_io(d, DISK_OP_PR_REPORT, &a, NULL), DISK_OK);
	assert_int_equal(fake_calls(SG_IO, NULL, 0), 1 + 2 * 2);
	/* ... and gives up when it never settles. */
	fk.res_gen_bumps = 100;
	assert_int_equal(pr_io(d, DISK_OP_PR_REPORT, &a, NULL), DISK_IO_ERROR);
	fk.res_gen_bumps = 0;

	/* An unknown type code; a reservation conflict. */
	fk.res_type = 2;
	assert_int_equal(pr_io(d, DISK_OP_PR_REPORT, &a, NULL), DISK_IO_ERROR);
	fk.res_type = 0;
	fk.sg_status = 0x18;
	assert_int_equal(pr_io(d, DISK_OP_PR_REPORT, &a, NULL), DISK_RESERVATION_CONFLICT);
	fk.sg_status = 0;

	/* PR OUT on SCSI: a raw result with the conflict status byte. */
	a = (struct disk_pr_args){ .key = 1, .type = DISK_PR_WRITE_EXCLUSIVE };
	fk.pr_ret = 0x18;
	assert_int_equal(pr_io(d, DISK_OP_PR_RESERVE, &a, NULL), DISK_RESERVATION_CONFLICT);
	disk_unref(d);
}

/* ---- eject ---------------------------------------------------------------------- */

static void test_blockdev_eject(void **state)
{
	static const struct {
		const char *attr, *value;
		bool eject;
	} kinds[] = {
		{ "device/type", "5\n", true },
		{ "uevent", "MAJOR=11\nMINOR=0\nDEVNAME=sr0\nDEVTYPE=disk\n", true },
		{ "uevent", "MAJOR=8\nMINOR=0\nDEVNAME=sda\nDEVTYPE=disk\n", false },
	};
	struct fake_call c[4];
	struct disk_io io = { .op = DISK_OP_EJECT };
	struct disk *d;

	(void)state;
	/* Not removable: no capability, UNSUPPORTED, no ioctl. */
	fake_attr("removable", "0\n");
	d = fake_open();
	assert_false(disk_get_info(d)->caps & DISK_CAP_EJECT);
	assert_int_equal(disk_sync_io(d, &io), DISK_UNSUPPORTED);
	assert_int_equal(fk.ncalls, 0);
	disk_unref(d);

	/* Removable: unlock the door (arg 0), then eject. */
	fake_reset(false);
	fake_attr("removable", "1\n");
	d = fake_open();
	assert_true(disk_get_info(d)->caps & DISK_CAP_EJECT);
	assert_false(disk_get_info(d)->caps & DISK_CAP_PR);
	assert_int_equal(disk_sync_io(d, &io), DISK_OK);
	assert_int_equal(fk.ncalls, 2);
	assert_int_equal(fk.calls[0].request, CDROM_LOCKDOOR);
	assert_int_equal(fk.calls[0].arg_value, 0);
	assert_int_equal(fk.calls[1].request, CDROMEJECT);

	/* A disk that does not know the door ioctl still ejects. */
	fake_clear_calls();
	fk.lockdoor_ret = -ENOTTY;
	assert_int_equal(disk_sync_io(d, &io), DISK_OK);
	assert_int_equal(fake_calls(CDROMEJECT, c, 4), 1);
	/* A door that will not unlock: no eject, the error comes back. */
	fake_clear_calls();
	fk.lockdoor_ret = -EBUSY;
	assert_int_equal(disk_sync_io(d, &io), DISK_IO_ERROR);
	assert_int_equal(io.os_errno, EBUSY);
	assert_int_equal(fake_calls(CDROMEJECT, NULL, 0), 0);
	fk.lockdoor_ret = 0;
	fk.eject_ret = -EIO;
	assert_int_equal(disk_sync_io(d, &io), DISK_IO_ERROR);
	assert_int_equal(io.os_errno, EIO);
	disk_unref(d);

	/* A CD-ROM by SCSI type, or by name; a disk is none. */
	for (size_t i = 0; i < ARRAY_SIZE(kinds); i++) {
		fake_reset(false);
		fake_attr(kinds[i].attr, kinds[i].value);
		d = fake_open();
		assert_int_equal(!!(disk_get_info(d)->caps & DISK_CAP_EJECT), kinds[i].eject);
		disk_unref(d);
	}
}

/* ---- resize through injected uevents ------------------------------------------ */

struct watch_rec {
	struct disk_resize_watch w;
	_Atomic unsigned calls;
	_Atomic uint64_t last;
};

static void watch_cb(struct disk_resize_watch *w, uint64_t new_count)
{
	struct watch_rec *r = container_of(w, struct watch_rec, w);

	atomic_store(&r->last, new_count);
	atomic_fetch_add(&r->calls, 1);
}

static void inject(const char *action, unsigned maj, unsigned min, const char *extra)
{
	char msg[256];
	int n = snprintf(msg, sizeof(msg), "%s@/devices/virtual/block/fake%cACTION=%s%c"
			 "SUBSYSTEM=block%cMAJOR=%u%cMINOR=%u%c%s", action, 0, action, 0, 0, maj,
			 0, min, 0, extra);

	assert_true(n > 0 && (size_t)n < sizeof(msg));
	/* @extra is "KEY=VALUE" and ends the message with its NUL. */
	blockdev_uevent_inject(msg, (size_t)n + 1);
}

static void test_blockdev_resize_injected(void **state)
{
	struct watch_rec wr = { .w = { .cb = watch_cb } };
	struct disk *d;

	(void)state;
	d = fake_open();
	if (!(disk_get_info(d)->caps & DISK_CAP_RESIZE)) {
		disk_unref(d);
		fprintf(stderr, "# skip: no kernel uevent socket here\n");
		skip();
	}
	assert_int_equal(disk_sector_count(d), 8 * MIB / 512);
	wr.w.seen_count = disk_sector_count(d);
	assert_int_equal(disk_watch_resize(d, &wr.w), 0);
	assert_int_equal(atomic_load(&wr.calls), 0);

	/* The device grows; the event names it: the watcher hears at once. */
	atomic_store(&fk.size_bytes, 12 * MIB);
	assert_int_equal(disk_sector_count(d), 8 * MIB / 512);  /* no event yet */
	inject("change", FAKE_MAJOR, FAKE_MINOR, "RESIZE=1");
	assert_int_equal(atomic_load(&wr.calls), 1);
	assert_int_equal(atomic_load(&wr.last), 12 * MIB / 512);
	assert_int_equal(disk_sector_count(d), 12 * MIB / 512);

	/* Events for other devices, without RESIZE, or not "change" do
	 * nothing; the same size again does not wake the watcher. */
	atomic_store(&fk.size_bytes, 16 * MIB);
	inject("change", FAKE_MAJOR, FAKE_MINOR + 1, "RESIZE=1");
	inject("change", FAKE_MAJOR, FAKE_MINOR, "DISKSEQ=9");
	inject("add", FAKE_MAJOR, FAKE_MINOR, "RESIZE=1");
	assert_int_equal(disk_sector_count(d), 12 * MIB / 512);
	assert_int_equal(atomic_load(&wr.calls), 1);
	atomic_store(&fk.size_bytes, 12 * MIB);
	inject("change", FAKE_MAJOR, FAKE_MINOR, "RESIZE=1");
	assert_int_equal(atomic_load(&wr.calls), 1);

	/* A shrink, by media change; then a rescan. A partial last sector
	 * does not count. */
	atomic_store(&fk.size_bytes, 4 * MIB + 100);
	inject("change", FAKE_MAJOR, FAKE_MINOR, "DISK_MEDIA_CHANGE=1");
	assert_int_equal(atomic_load(&wr.last), 4 * MIB / 512);
	assert_int_equal(disk_sector_count(d), 4 * MIB / 512);
	atomic_store(&fk.size_bytes, 6 * MIB);
	blockdev_uevent_inject("change@/x\0ACTION=change\0RESCAN=true", 36);
	assert_int_equal(atomic_load(&wr.calls), 3);
	assert_int_equal(disk_sector_count(d), 6 * MIB / 512);

	/* BLKGETSIZE64 failing keeps the last size. */
	atomic_store(&fk.size_err, -EIO);
	inject("change", FAKE_MAJOR, FAKE_MINOR, "RESIZE=1");
	assert_int_equal(disk_sector_count(d), 6 * MIB / 512);
	atomic_store(&fk.size_err, 0);

	/* A watcher that last saw an older size is told at once. */
	{
		struct watch_rec late = { .w = { .cb = watch_cb, .seen_count = 1 } };

		assert_int_equal(disk_watch_resize(d, &late.w), 0);
		assert_int_equal(atomic_load(&late.calls), 1);
		assert_int_equal(atomic_load(&late.last), 6 * MIB / 512);
		disk_unwatch_resize(d, &late.w);
	}

	/* After unwatch, nothing. */
	disk_unwatch_resize(d, &wr.w);
	atomic_store(&fk.size_bytes, 2 * MIB);
	inject("change", FAKE_MAJOR, FAKE_MINOR, "RESIZE=1");
	assert_int_equal(atomic_load(&wr.calls), 3);
	assert_int_equal(disk_sector_count(d), 2 * MIB / 512);
	disk_unref(d);
}

/* Sector count readers on several threads while events arrive: each one
 * sees a size the device had, and the watcher ends with the last one. */
struct reader {
	struct disk *d;
	_Atomic bool *stop;
	bool bad;
};

static void *reader_thread(void *arg)
{
	struct reader *r = arg;

	while (!atomic_load(r->stop)) {
		uint64_t n = disk_sector_count(r->d);

		if (n < 8 * MIB / 512 || n > 8 * MIB / 512 + 400 || (n - 8 * MIB / 512) % 8)
			r->bad = true;
	}
	return NULL;
}

static void test_blockdev_resize_threads(void **state)
{
	struct watch_rec wr = { .w = { .cb = watch_cb } };
	_Atomic bool stop = false;
	struct reader rd[3];
	pthread_t t[3];
	struct disk *d;

	(void)state;
	d = fake_open();
	if (!(disk_get_info(d)->caps & DISK_CAP_RESIZE)) {
		disk_unref(d);
		skip();
	}
	wr.w.seen_count = disk_sector_count(d);
	assert_int_equal(disk_watch_resize(d, &wr.w), 0);
	for (int i = 0; i < 3; i++) {
		rd[i] = (struct reader){ .d = d, .stop = &stop };
		assert_int_equal(pthread_create(&t[i], NULL, reader_thread, &rd[i]), 0);
	}
	for (uint64_t i = 1; i <= 50; i++) {
		atomic_store(&fk.size_bytes, 8 * MIB + i * 8 * 512);
		inject("change", FAKE_MAJOR, FAKE_MINOR, "RESIZE=1");
	}
	atomic_store(&stop, true);
	for (int i = 0; i < 3; i++) {
		pthread_join(t[i], NULL);
		assert_false(rd[i].bad);
	}
	assert_int_equal(atomic_load(&wr.last), 8 * MIB / 512 + 400);
	assert_int_equal(disk_sector_count(d), 8 * MIB / 512 + 400);
	disk_unwatch_resize(d, &wr.w);
	disk_unref(d);
}

/* ---- a loop device (root) ------------------------------------------------------- */

struct loopdev {
	struct tu_loop lo;
	char backing[PATH_MAX];
};

static struct loopdev loop;

static void set_file_size(const char *path, uint64_t size)
{
	assert_int_equal(truncate(path, (off_t)size), 0);
}

/* Attaches a @size-byte file as a loop device; skips without root or
 * losetup. */
static void loop_attach(uint64_t size)
{
	memset(&loop, 0, sizeof(loop));
	loop.lo.hold = -1;
	snprintf(loop.backing, sizeof(loop.backing), "%s", tu_path("blockdev.img"));
	unlink(loop.backing);
	assert_int_equal(close(open(loop.backing, O_RDWR | O_CREAT | O_CLOEXEC, 0644)), 0);
	set_file_size(loop.backing, size);
	tu_loop_attach(&loop.lo, loop.backing, 0);
}

/* `losetup -c`: the loop driver re-reads the backing file's size. */
static void loop_set_capacity(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "losetup -c '%s'", loop.lo.dev);
	assert_int_equal(tp_run_line(cmd, NULL, 0), 0);
}

static void loop_detach(void)
{
	tu_loop_detach(&loop.lo);
}

static int loop_teardown(void **state)
{
	(void)state;
	blockdev_set_sys(NULL);
	loop_detach();
	return 0;
}

/* Waits up to 10 s for the watcher's @want-th call. */
static bool wait_calls(struct watch_rec *wr, unsigned want)
{
	for (int i = 0; i < 1000 && atomic_load(&wr->calls) < want; i++)
		usleep(10 * 1000);
	return atomic_load(&wr->calls) >= want;
}

/* A test-side uevent socket: records what the kernel says about the loop
 * device, so the test shows which event drove the resize. */
static int uevent_socket(void)
{
	struct sockaddr_nl addr = { .nl_family = AF_NETLINK, .nl_groups = 1 };
	int s = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK,
		       NETLINK_KOBJECT_UEVENT);

	if (s >= 0 && bind(s, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
		close(s);
		s = -1;
	}
	return s;
}

/* Reads the events queued on @s; true if one is a change with RESIZE=1 for
 * @rdev. Prints it. */
static bool saw_resize_event(int s, dev_t rdev)
{
	char buf[8192], want_maj[32], want_min[32];
	bool found = false;
	ssize_t n;

	snprintf(want_maj, sizeof(want_maj), "MAJOR=%u", major(rdev));
	snprintf(want_min, sizeof(want_min), "MINOR=%u", minor(rdev));
	while ((n = recv(s, buf, sizeof(buf) - 1, 0)) > 0) {
		bool change = false, resize = false, maj = false, min = false;
		char line[1024] = "";

		buf[n] = '\0';
		for (char *p = buf; p < buf + n; p += strlen(p) + 1) {
			change |= strcmp(p, "ACTION=change") == 0;
			resize |= strcmp(p, "RESIZE=1") == 0;
			maj |= strcmp(p, want_maj) == 0;
			min |= strcmp(p, want_min) == 0;
			if (strlen(line) + strlen(p) + 2 < sizeof(line)) {
				strcat(line, p);
				strcat(line, " ");
			}
		}
		if (change && resize && maj && min) {
			fprintf(stderr, "# kernel uevent: %s\n", line);
			found = true;
		}
	}
	return found;
}

/* The test: grow the backing file, `losetup -c`, and the watcher
 * reports the new size; I/O reaches the new region; then shrink. */
static void test_blockdev_loop_resize(void **state)
{
	struct watch_rec wr = { .w = { .cb = watch_cb } };
	struct filedisk_opts o = { 0 };
	uint8_t buf[4096], back[4096];
	char err[256] = "";
	struct disk_pr_report rep = { 0 };
	struct disk_pr_args a = { .report = &rep };
	struct disk_io io = { .op = DISK_OP_EJECT };
	struct stat st;
	struct disk *d = NULL;
	int us;

	(void)state;
	loop_attach(8 * MIB);
	assert_int_equal(filedisk_open(loop.lo.dev, &o, &d, err, sizeof(err)), 0);
	assert_string_equal(disk_get_info(d)->type, "block_device");
	if (!(disk_get_info(d)->caps & DISK_CAP_RESIZE)) {
		disk_unref(d);
		fprintf(stderr, "# skip: no kernel uevent socket here\n");
		skip();
	}
	/* A loop device: no reservations, no eject — and it says so. */
	assert_false(disk_get_info(d)->caps & (DISK_CAP_PR | DISK_CAP_EJECT));
	assert_int_equal(pr_io(d, DISK_OP_PR_CAPS, NULL, NULL), DISK_UNSUPPORTED);
	assert_int_equal(pr_io(d, DISK_OP_PR_REPORT, &a, NULL), DISK_UNSUPPORTED);
	assert_int_equal(disk_sync_io(d, &io), DISK_UNSUPPORTED);

	assert_int_equal(disk_sector_count(d), 8 * MIB / 512);
	wr.w.seen_count = disk_sector_count(d);
	assert_int_equal(disk_watch_resize(d, &wr.w), 0);
	assert_int_equal(stat(loop.lo.dev, &st), 0);
	us = uevent_socket();

	/* Grow the file: the device does not change until losetup -c. */
	set_file_size(loop.backing, 12 * MIB);
	assert_int_equal(disk_sync_read(d, 8 * MIB / 512, back, 512), DISK_ILLEGAL_BLOCK);
	loop_set_capacity();
	if (!wait_calls(&wr, 1)) {
		/* A namespace that gets no uevents at all (a user-namespace
		 * container) cannot resize; anything else is a failure. */
		if (us >= 0 && !saw_resize_event(us, st.st_rdev)) {
			close(us);
			disk_unwatch_resize(d, &wr.w);
			disk_unref(d);
			fprintf(stderr, "# skip: the kernel's uevents do not reach this namespace\n");
			skip();
		}
		fail_msg("resize watcher not called within 10 s of losetup -c");
	}
	assert_int_equal(atomic_load(&wr.last), 12 * MIB / 512);
	assert_int_equal(disk_sector_count(d), 12 * MIB / 512);
	if (us >= 0)
		assert_true(saw_resize_event(us, st.st_rdev));

	/* The new region works, up to the new end and not past it. */
	tu_fill(buf, sizeof(buf), 7, 0);
	assert_int_equal(disk_sync_write(d, 8 * MIB / 512, buf, sizeof(buf), 0), DISK_OK);
	assert_int_equal(disk_sync_write(d, 12 * MIB / 512 - 8, buf, sizeof(buf), DISK_IO_FUA),
			 DISK_OK);
	assert_int_equal(disk_sync_flush(d), DISK_OK);
	memset(back, 0, sizeof(back));
	assert_int_equal(disk_sync_read(d, 8 * MIB / 512, back, sizeof(back)), DISK_OK);
	assert_memory_equal(back, buf, sizeof(back));
	assert_int_equal(disk_sync_read(d, 12 * MIB / 512 - 8, back, sizeof(back)), DISK_OK);
	assert_memory_equal(back, buf, sizeof(back));
	assert_int_equal(disk_sync_read(d, 12 * MIB / 512 - 7, back, sizeof(back)),
			 DISK_ILLEGAL_BLOCK);
	assert_int_equal(disk_sync_unmap(d, 8 * MIB / 512, 4 * MIB / 512, 0), DISK_OK);
	assert_int_equal(disk_sync_unmap(d, 12 * MIB / 512, 1, 0), DISK_ILLEGAL_BLOCK);
	contract_disk(d);

	/* Shrink. */
	set_file_size(loop.backing, 6 * MIB);
	loop_set_capacity();
	if (!wait_calls(&wr, 2))
		fail_msg("resize watcher not called within 10 s of the shrink");
	assert_int_equal(atomic_load(&wr.last), 6 * MIB / 512);
	assert_int_equal(disk_sector_count(d), 6 * MIB / 512);
	assert_int_equal(disk_sync_read(d, 6 * MIB / 512, back, 512), DISK_ILLEGAL_BLOCK);
	assert_int_equal(disk_sync_write(d, 6 * MIB / 512 - 1, buf, 1024, 0), DISK_ILLEGAL_BLOCK);
	assert_int_equal(disk_sync_read(d, 6 * MIB / 512 - 8, back, sizeof(back)), DISK_OK);
	if (us >= 0) {
		assert_true(saw_resize_event(us, st.st_rdev));
		close(us);
	}
	assert_int_equal(atomic_load(&wr.calls), 2);
	disk_unwatch_resize(d, &wr.w);
	disk_unref(d);
	/* Nothing here ever extends the backing file. */
	assert_int_equal(stat(loop.backing, &st), 0);
	assert_int_equal(st.st_size, 6 * MIB);
	loop_detach();
}

/* Requests that race a shrink — the device is already smaller but the
 * backend still believes the old size (its BLKGETSIZE64 is held at the old
 * value) — fail with ILLEGAL_BLOCK and write nothing past the new end. */
static void test_blockdev_loop_shrink_race(void **state)
{
	uint8_t *buf = aligned_alloc(4096, 8192), *back = aligned_alloc(4096, 8192);
	const uint64_t new_end = 4 * MIB / 512;

	(void)state;
	assert_non_null(buf);
	assert_non_null(back);
	loop_attach(8 * MIB);
	for (int direct = 0; direct <= 1; direct++) {
		struct filedisk_opts o = { .direct = direct };
		char err[256] = "";
		struct disk *d = NULL;
		struct stat st;

		set_file_size(loop.backing, 8 * MIB);
		loop_set_capacity();
		fake_reset(true);
		blockdev_set_sys(&fake_sys);
		assert_int_equal(filedisk_open(loop.lo.dev, &o, &d, err, sizeof(err)), 0);
		assert_int_equal(disk_sector_count(d), 8 * MIB / 512);
		atomic_store(&fk.frozen_bytes, 8 * MIB);
		atomic_store(&fk.size_frozen, true);

		set_file_size(loop.backing, 4 * MIB);
		loop_set_capacity();
		assert_int_equal(disk_sector_count(d), 8 * MIB / 512);  /* stale */
		tu_fill(buf, 8192, 9, 0);
		/* Wholly past the new end: a short (empty) read, ENOSPC. */
		assert_int_equal(disk_sync_read(d, new_end + 16, back, 4096), DISK_ILLEGAL_BLOCK);
		assert_int_equal(disk_sync_write(d, new_end + 16, buf, 4096, 0),
				 DISK_ILLEGAL_BLOCK);
		/* Straddling it: short transfers. */
		assert_int_equal(disk_sync_read(d, new_end - 8, back, 8192), DISK_ILLEGAL_BLOCK);
		assert_int_equal(disk_sync_write(d, new_end - 8, buf, 8192, DISK_IO_FUA),
				 DISK_ILLEGAL_BLOCK);
		/* Discard and zero-out past the end: the kernel's EINVAL. */
		if (disk_get_info(d)->unmap_behavior != DISK_UNMAP_IGNORED)
			assert_int_equal(disk_sync_unmap(d, new_end + 8, 8, 0), DISK_ILLEGAL_BLOCK);
		assert_int_equal(disk_sync_write_zeroes(d, new_end + 8, 8, DISK_IO_NO_UNMAP),
				 DISK_ILLEGAL_BLOCK);
		/* Below the new end all is well. */
		assert_int_equal(disk_sync_write(d, new_end - 8, buf, 4096, 0), DISK_OK);
		assert_int_equal(disk_sync_read(d, new_end - 8, back, 4096), DISK_OK);
		assert_memory_equal(back, buf, 4096);
		assert_int_equal(disk_sync_flush(d), DISK_OK);
		assert_int_equal(stat(loop.backing, &st), 0);
		assert_int_equal(st.st_size, 4 * MIB);

		/* Once the size is believed, the range check answers first. */
		atomic_store(&fk.size_frozen, false);
		blockdev_uevent_inject("change@/x\0ACTION=change\0RESCAN=true", 36);
		assert_int_equal(disk_sector_count(d), new_end);
		disk_unref(d);
		blockdev_set_sys(NULL);
	}
	loop_detach();
	free(buf);
	free(back);
}

/* The file backend's wiring on a real device that pretends (through the
 * hooks) to be an NVMe namespace with reservations on removable media:
 * disk_info carries the capabilities, the ops reach blockdev.c, and
 * `diskstack info`'s describe shows them. */
static void describe_param(struct disk_describer *dd, const char *key, const char *value)
{
	char *out = dd->opaque;

	if (strlen(out) + strlen(key) + strlen(value) + 3 < 512)
		sprintf(out + strlen(out), "%s=%s ", key, value);
}

static void test_blockdev_loop_wiring(void **state)
{
	struct filedisk_opts o = { 0 };
	struct disk_pr_args a = { .key = 3, .type = DISK_PR_EXCLUSIVE_ACCESS };
	struct disk_io io = { .op = DISK_OP_EJECT };
	char err[256] = "", desc[512] = "";
	struct disk_describer dd = { .param = describe_param, .opaque = desc };
	struct fake_call c[2];
	struct disk *d = NULL;

	(void)state;
	loop_attach(8 * MIB);
	fake_reset(true);
	nvme_device(0x7f, 1u << 5);
	fake_attr("removable", "1\n");
	blockdev_set_sys(&fake_sys);
	assert_int_equal(filedisk_open(loop.lo.dev, &o, &d, err, sizeof(err)), 0);
	assert_true(disk_get_info(d)->caps & DISK_CAP_PR);
	assert_true(disk_get_info(d)->caps & DISK_CAP_EJECT);
	assert_int_equal(pr_io(d, DISK_OP_PR_RESERVE, &a, NULL), DISK_OK);
	assert_int_equal(fake_calls(IOC_PR_RESERVE, c, 2), 1);
	assert_int_equal(c[0].u.rsv.key, 3);
	assert_int_equal(c[0].u.rsv.type, PR_EXCLUSIVE_ACCESS);
	assert_int_equal(disk_sync_io(d, &io), DISK_OK);
	assert_int_equal(fake_calls(CDROMEJECT, NULL, 0), 1);
	disk_describe(d, &dd);
	assert_non_null(strstr(desc, "reservations=nvme"));
	assert_non_null(strstr(desc, "eject=yes"));
	assert_non_null(strstr(desc, "resize="));
	contract_disk(d);
	disk_unref(d);
	blockdev_set_sys(NULL);
	loop_detach();
}

int main(void)
{
	/* Tests on the fake device (test_setup), and on a real loop device. */
#define FAKE_TEST(t) cmocka_unit_test_setup_teardown(t, test_setup, test_teardown)
#define LOOP_TEST(t) cmocka_unit_test_setup_teardown(t, NULL, loop_teardown)
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_blockdev_uevent_parse),
		cmocka_unit_test(test_blockdev_status_tables),
		FAKE_TEST(test_blockdev_nvme_caps),
		FAKE_TEST(test_blockdev_nvme_no_pr),
		FAKE_TEST(test_blockdev_pr_out_encoding),
		FAKE_TEST(test_blockdev_nvme_report),
		FAKE_TEST(test_blockdev_scsi_caps),
		FAKE_TEST(test_blockdev_scsi_report),
		FAKE_TEST(test_blockdev_eject),
		FAKE_TEST(test_blockdev_resize_injected),
		FAKE_TEST(test_blockdev_resize_threads),
		LOOP_TEST(test_blockdev_loop_resize),
		LOOP_TEST(test_blockdev_loop_shrink_race),
		LOOP_TEST(test_blockdev_loop_wiring),
	};

	real_sys = blockdev_sys_real();
	return cmocka_run_group_tests_name("blockdev", tests, tu_reactor_setup, teardown);
}
