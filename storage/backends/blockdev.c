/* SPDX-License-Identifier: MIT */
/*
 * blockdev.c: the block-device half of the file backend
 * (docs/openvmm-compat.md §4.5) — resize from kernel uevents,
 * persistent-reservation passthrough and CD-ROM eject.
 *
 * Notes on the design
 * -------------------
 * - Resize. A block device's size can change under us (losetup -c, an LV
 *   extended, a SAN LUN grown, a new CD). The kernel announces it with a
 *   "change" uevent carrying RESIZE=1 (set_capacity_and_notify; checked on
 *   this machine for `losetup -c`, grow and shrink), or DISK_MEDIA_CHANGE=1
 *   for a new medium or a detached loop device. Each struct blockdev keeps
 *   an epoch that the listener bumps for a matching event; sector count
 *   readers compare it with the epoch their cached count was read at and
 *   re-read BLKGETSIZE64 (bytes >> shift) when they differ. The listener
 *   then re-reads at once too, so resize watchers hear about the new size
 *   even when no I/O comes. A re-read that finds a new size tells the
 *   watchers (resize_notifier) with size_lock held, so notifications are
 *   ordered and a watcher added under the same lock misses none.
 * - One listener for the process: a thread that owns one
 *   NETLINK_KOBJECT_UEVENT socket (kernel group 1) and a list of registered
 *   devices; it starts with the first block device opened and stops with
 *   the last one closed. Why a thread and not a POLL op on a reactor: a
 *   disk is opened (by the resolver) before any reactor serves it and is
 *   then shared by all of them, none of which owns it; one socket serves
 *   every device (each socket receives every uevent of the system, so one
 *   per disk would multiply the work); and the socket must be drained
 *   promptly even while reactors are saturated, or the kernel drops events
 *   (ENOBUFS). An overrun, where events were lost, is handled as a rescan
 *   of every device. Only messages from the kernel (sender port 0) count.
 * - Range checks of the file backend use blockdev_sector_count(), so they
 *   see the size as of the last uevent. A request racing a shrink that the
 *   check let through still fails safely: the kernel answers a transfer
 *   past the new end short (reads) or with ENOSPC (writes), which the file
 *   backend turns into ILLEGAL_BLOCK, as upstream.
 * - Persistent reservations. NVMe namespaces (sysfs has an nsid file):
 *   Identify Namespace (RESCAP) and Identify Controller (ONCS) through the
 *   NVMe admin passthrough ioctl at open; reservations are supported when
 *   ONCS has the reservations bit and RESCAP is not 0, and the capability
 *   bits come from RESCAP. SCSI disks (sysfs device/scsi_device): PERSISTENT
 *   RESERVE IN / REPORT CAPABILITIES through SG_IO; supported when the type
 *   mask is valid (TMV) and not empty. Anything else, a partition (the
 *   kernel refuses PR ioctls on partitions), or a failed probe: no
 *   DISK_CAP_PR and the pr op answers UNSUPPORTED. REGISTER, RESERVE,
 *   RELEASE, CLEAR and PREEMPT [AND ABORT] go through the Linux PR ioctls
 *   (<linux/pr.h>, whose PR_* types are our DISK_PR_* numbers); REPORT is an
 *   NVMe Reservation Report with the extended (128-bit host id) structure
 *   through the NVMe I/O passthrough ioctl, retried with a larger buffer
 *   when more controllers are registered than fit, or for SCSI READ KEYS +
 *   READ RESERVATION (retried while their generations differ). The Linux PR
 *   interface always sets persist-through-power-loss (both drivers set
 *   APTPL/CPTPL); a REGISTER asking to clear it is logged, as upstream.
 * - Eject: CDROM_LOCKDOOR 0 then CDROMEJECT, offered when sysfs says the
 *   disk is removable or is a CD-ROM (SCSI type 5, an "sr" device). A
 *   removable disk that is not a CD-ROM answers ENOTTY to the door ioctl;
 *   that is not fatal, CDROMEJECT still runs.
 * - Blocking calls (the PR ioctls, SG_IO, NVMe passthrough, eject) run on
 *   the worker pool; the completion comes back to the submitting reactor.
 *   The small per-request descriptor comes from the reactor's buffer cache;
 *   report buffers are malloc'd on the worker (a rare control command).
 * - Locking: uev.life serialises listener start/stop and protects its
 *   socket, thread and user count; uev.lock protects the device list and is
 *   held while the listener handles an event, so blockdev_close (which
 *   unregisters under it) never frees a device the listener is using.
 *   bd->size_lock serialises size re-reads and notifications. Order:
 *   uev.lock → size_lock → the notifier's lock. Watcher callbacks must not
 *   call into the disk (disk.h), so nothing takes these in reverse.
 * - The listener thread does not survive fork(): a program that daemonizes
 *   must do so before it opens block devices (or their sizes stay fixed).
 * - Nothing here holds data: no crash-consistency concerns. Expected load:
 *   a handful of devices per process, uevents a few per second at most,
 *   PR commands rare.
 */
#include "config.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/sysmacros.h>
#include <unistd.h>
#include <linux/cdrom.h>
#include <linux/fs.h>
#include <linux/netlink.h>
#include <linux/nvme_ioctl.h>
#include <linux/pr.h>
#include <scsi/sg.h>

#include "common/compiler.h"
#include "common/endian.h"
#include "common/log.h"
#include "common/reactor.h"
#include "common/workpool.h"
#include "storage/backends/blockdev.h"

/* The ioctl numbers §4.5 names. */
_Static_assert(CDROM_LOCKDOOR == 0x5329 && CDROMEJECT == 0x5309, "CD-ROM ioctls");
_Static_assert(IOC_PR_REGISTER == _IOW('p', 200, struct pr_registration) &&
	       IOC_PR_CLEAR == _IOW('p', 205, struct pr_clear), "PR ioctls");
/* The PR_* types are our DISK_PR_* numbers (§1.6). */
_Static_assert((int)PR_WRITE_EXCLUSIVE == (int)DISK_PR_WRITE_EXCLUSIVE &&
	       (int)PR_EXCLUSIVE_ACCESS == (int)DISK_PR_EXCLUSIVE_ACCESS &&
	       (int)PR_WRITE_EXCLUSIVE_REG_ONLY == (int)DISK_PR_WRITE_EXCLUSIVE_REG_ONLY &&
	       (int)PR_EXCLUSIVE_ACCESS_REG_ONLY == (int)DISK_PR_EXCLUSIVE_ACCESS_REG_ONLY &&
	       (int)PR_WRITE_EXCLUSIVE_ALL_REGS == (int)DISK_PR_WRITE_EXCLUSIVE_ALL_REG &&
	       (int)PR_EXCLUSIVE_ACCESS_ALL_REGS == (int)DISK_PR_EXCLUSIVE_ACCESS_ALL_REG,
	       "PR types");

/* <linux/pr.h> status values (kernels >= 6.5; not in older headers). */
#define BLOCKDEV_PR_STS_RESERVATION_CONFLICT 0x18
/* NVMe generic status RESERVATION CONFLICT (SCT 0). */
#define NVME_SC_RESERVATION_CONFLICT_ 0x83
/* SCSI status byte RESERVATION CONFLICT. */
#define SCSI_STATUS_RESERVATION_CONFLICT 0x18

/* NVMe opcodes and fields used here (NVMe base/NVM command set specs). */
#define NVME_ADMIN_IDENTIFY 0x06
#define NVME_CNS_NAMESPACE 0x00
#define NVME_CNS_CONTROLLER 0x01
#define NVME_IO_RESV_REPORT 0x0e
#define NVME_IDENTIFY_BYTES 4096u
#define NVME_ID_NS_RESCAP 31           /* byte of Identify Namespace */
#define NVME_ID_CTRL_ONCS 520          /* LE16 of Identify Controller */
#define NVME_ONCS_RESERVATIONS (1u << 5)
#define NVME_RESV_EXT_HEADER 64u        /* extended report: header bytes */
#define NVME_RESV_EXT_ENTRY 64u         /* extended report: bytes per controller */

/* SCSI PERSISTENT RESERVE IN (SPC). */
#define SCSI_PR_IN 0x5e
#define SCSI_PR_IN_READ_KEYS 0x00
#define SCSI_PR_IN_READ_RESERVATION 0x01
#define SCSI_PR_IN_REPORT_CAPABILITIES 0x02
#define SCSI_PR_IN_MAX_ALLOC 65535u
#define SCSI_TYPE_CDROM 5
#define SG_TIMEOUT_MS 30000u

#define REPORT_TRIES 4
#define UEVENT_BUF_BYTES 8192
#define UEVENT_RCVBUF_BYTES (1 << 20)

struct blockdev {
	int fd;                     /* borrowed from the file backend */
	dev_t rdev;
	char *path;                 /* owned, for logs */
	uint32_t shift;             /* log2(logical sector size) */
	bool partition;
	bool listening;             /* registered with the uevent listener */
	bool can_eject;
	enum blockdev_pr_kind pr_kind;
	uint32_t nsid;              /* NVMe namespace id */
	uint32_t pr_caps;           /* DISK_PR_CAP_*, with pr_kind */

	_Atomic uint64_t epoch;       /* bumped for each uevent about this device */
	_Atomic uint64_t size_epoch;  /* epoch at which sector_count was read */
	_Atomic uint64_t sector_count;
	pthread_mutex_t size_lock;    /* serialises size re-reads and notifications */
	struct resize_notifier *watchers;

	struct blockdev *uev_next, *uev_prev; /* listener list, under uev.lock */
};

/* ---- system calls (replaceable by tests) ---------------------------------- */

static int sys_ioctl(int fd, unsigned long request, void *arg)
{
	int r = ioctl(fd, request, arg);

	return r < 0 ? -errno : r;
}

static int sys_read_file(const char *path, char *buf, size_t len)
{
	CLEANUP_CLOSE int f = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (f < 0)
		return -errno;
	n = read(f, buf, len - 1);
	if (n < 0)
		return -errno;
	buf[n] = '\0';
	return (int)n;
}

static bool sys_exists(const char *path)
{
	return access(path, F_OK) == 0;
}

static const struct blockdev_sys sys_real = {
	.ioctl = sys_ioctl,
	.read_file = sys_read_file,
	.exists = sys_exists,
};

static const struct blockdev_sys *_Atomic sys_ops = &sys_real;

static const struct blockdev_sys *sys(void)
{
	return atomic_load(&sys_ops);
}

void blockdev_set_sys(const struct blockdev_sys *s)
{
	atomic_store(&sys_ops, s ? s : &sys_real);
}

const struct blockdev_sys *blockdev_sys_real(void)
{
	return &sys_real;
}

/* ---- little-/big-endian fields ----------------------------------------- */


/* ---- status mapping ---------------------------------------------------------- */

int blockdev_errno_status(int err)
{
	if (err == EBADE)
		return DISK_RESERVATION_CONFLICT;
	if (err == ENOSPC)
		return DISK_ILLEGAL_BLOCK;
	return DISK_IO_ERROR;
}

int blockdev_pr_ioctl_status(enum blockdev_pr_kind kind, int ret, int *os_errno)
{
	*os_errno = 0;
	if (ret == 0)
		return DISK_OK;
	if (ret < 0) {
		if (ret == -EBADE)
			return DISK_RESERVATION_CONFLICT;
		*os_errno = -ret;
		return DISK_IO_ERROR;
	}
	if (ret == BLOCKDEV_PR_STS_RESERVATION_CONFLICT)
		return DISK_RESERVATION_CONFLICT;
	if (kind == BLOCKDEV_PR_NVME && (ret & 0x7ff) == NVME_SC_RESERVATION_CONFLICT_)
		return DISK_RESERVATION_CONFLICT;
	if (kind == BLOCKDEV_PR_SCSI && (ret & 0xff) == SCSI_STATUS_RESERVATION_CONFLICT)
		return DISK_RESERVATION_CONFLICT;
	*os_errno = EIO;
	return DISK_IO_ERROR;
}

/* A raw NVMe status from a passthrough command (always raw, any kernel). */
static int nvme_status(int ret, int *os_errno)
{
	*os_errno = 0;
	if (ret == 0)
		return DISK_OK;
	if (ret < 0) {
		*os_errno = -ret;
		return blockdev_errno_status(-ret);
	}
	if ((ret & 0x7ff) == NVME_SC_RESERVATION_CONFLICT_)
		return DISK_RESERVATION_CONFLICT;
	*os_errno = EIO;
	return DISK_IO_ERROR;
}

/* ---- sysfs ------------------------------------------------------------------------ */

/* Reads @dir/@name into @buf. Returns the length or -errno. */
static int attr_read(const char *dir, const char *name, char *buf, size_t len)
{
	char path[PATH_MAX];

	if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, name) >= sizeof(path))
		return -ENAMETOOLONG;
	return sys()->read_file(path, buf, len);
}

/* Reads a decimal number from @dir/@name. */
static int attr_u64(const char *dir, const char *name, uint64_t *out)
{
	char buf[64], *end;
	int r = attr_read(dir, name, buf, sizeof(buf));

	if (r < 0)
		return r;
	errno = 0;
	*out = strtoull(buf, &end, 10);
	if (errno || end == buf)
		return -EINVAL;
	return 0;
}

static bool attr_exists(const char *dir, const char *name)
{
	char path[PATH_MAX];

	if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, name) >= sizeof(path))
		return false;
	return sys()->exists(path);
}

/* True when the device's uevent file says DEVNAME=<prefix>... */
static bool devname_starts(const char *dir, const char *prefix)
{
	char buf[1024], *p;

	if (attr_read(dir, "uevent", buf, sizeof(buf)) < 0)
		return false;
	for (p = buf; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
		if (strncmp(p, "DEVNAME=", 8) == 0)
			return strncmp(p + 8, prefix, strlen(prefix)) == 0;
	}
	return false;
}

/* ---- probing ------------------------------------------------------------------- */

static void probe_eject(struct blockdev *bd, const char *dir)
{
	uint64_t v;

	bd->can_eject = (attr_u64(dir, "removable", &v) == 0 && v == 1) ||
			(attr_u64(dir, "device/type", &v) == 0 && v == SCSI_TYPE_CDROM) ||
			devname_starts(dir, "sr");
}

/* Identify (admin passthrough) with CNS @cns into @buf (NVME_IDENTIFY_BYTES). */
static int nvme_identify(struct blockdev *bd, uint32_t nsid, uint32_t cns, uint8_t *buf)
{
	struct nvme_passthru_cmd cmd = {
		.opcode = NVME_ADMIN_IDENTIFY,
		.nsid = nsid,
		.addr = (uint64_t)(uintptr_t)buf,
		.data_len = NVME_IDENTIFY_BYTES,
		.cdw10 = cns,
	};

	memset(buf, 0, NVME_IDENTIFY_BYTES);
	return sys()->ioctl(bd->fd, NVME_IOCTL_ADMIN_CMD, &cmd);
}

/* RESCAP bits (Identify Namespace byte 31) → DISK_PR_CAP_*. */
static uint32_t nvme_rescap_caps(uint8_t rescap)
{
	uint32_t caps = 0;

	if (rescap & (1u << 0))
		caps |= DISK_PR_CAP_PTPL;
	if (rescap & (1u << 1))
		caps |= DISK_PR_CAP_WE;
	if (rescap & (1u << 2))
		caps |= DISK_PR_CAP_EA;
	if (rescap & (1u << 3))
		caps |= DISK_PR_CAP_WE_RO;
	if (rescap & (1u << 4))
		caps |= DISK_PR_CAP_EA_RO;
	if (rescap & (1u << 5))
		caps |= DISK_PR_CAP_WE_AR;
	if (rescap & (1u << 6))
		caps |= DISK_PR_CAP_EA_AR;
	return caps;
}

static void probe_nvme(struct blockdev *bd, const char *dir)
{
	CLEANUP_FREE uint8_t *buf = aligned_alloc(4096, NVME_IDENTIFY_BYTES);
	uint64_t nsid;
	uint8_t rescap;
	uint16_t oncs;
	int r;

	if (!buf)
		return;
	if (attr_u64(dir, "nsid", &nsid) < 0 || nsid == 0 || nsid > UINT32_MAX) {
		r = sys()->ioctl(bd->fd, NVME_IOCTL_ID, NULL);
		if (r <= 0) {
			log_debug("file %s: NVMe namespace id unknown: no reservations", bd->path);
			return;
		}
		nsid = (uint64_t)r;
	}
	bd->nsid = (uint32_t)nsid;
	r = nvme_identify(bd, bd->nsid, NVME_CNS_NAMESPACE, buf);
	if (r != 0) {
		log_debug("file %s: NVMe Identify Namespace failed (%d): no reservations",
			  bd->path, r);
		return;
	}
	rescap = buf[NVME_ID_NS_RESCAP];
	r = nvme_identify(bd, 0, NVME_CNS_CONTROLLER, buf);
	if (r != 0) {
		log_debug("file %s: NVMe Identify Controller failed (%d): no reservations",
			  bd->path, r);
		return;
	}
	oncs = ds_get_le16(buf + NVME_ID_CTRL_ONCS);
	if (!(oncs & NVME_ONCS_RESERVATIONS) || rescap == 0) {
		log_debug("file %s: NVMe namespace %u has no reservations (ONCS %#x, RESCAP %#x)",
			  bd->path, bd->nsid, oncs, rescap);
		return;
	}
	bd->pr_kind = BLOCKDEV_PR_NVME;
	bd->pr_caps = nvme_rescap_caps(rescap);
}

/* Runs a PERSISTENT RESERVE IN with service action @sa into @buf (@len
 * bytes, <= 65535) through SG_IO. Returns a disk_status; *got is the byte
 * count transferred. */
static int scsi_pr_in(struct blockdev *bd, uint8_t sa, uint8_t *buf, uint32_t len, uint32_t *got,
		      int *os_errno)
{
	uint8_t cdb[10] = { SCSI_PR_IN, sa, 0, 0, 0, 0, 0, (uint8_t)(len >> 8), (uint8_t)len, 0 };
	uint8_t sense[32];
	struct sg_io_hdr h = {
		.interface_id = 'S',
		.dxfer_direction = SG_DXFER_FROM_DEV,
		.cmd_len = sizeof(cdb),
		.mx_sb_len = sizeof(sense),
		.dxfer_len = len,
		.dxferp = buf,
		.cmdp = cdb,
		.sbp = sense,
		.timeout = SG_TIMEOUT_MS,
	};
	int r;

	assert(len <= SCSI_PR_IN_MAX_ALLOC);
	*os_errno = 0;
	*got = 0;
	memset(buf, 0, len);
	r = sys()->ioctl(bd->fd, SG_IO, &h);
	if (r < 0) {
		*os_errno = -r;
		return blockdev_errno_status(-r);
	}
	if (h.status == SCSI_STATUS_RESERVATION_CONFLICT)
		return DISK_RESERVATION_CONFLICT;
	if (h.status != 0 || h.host_status != 0 || h.driver_status != 0 ||
	    (h.info & SG_INFO_OK_MASK) != SG_INFO_OK) {
		log_debug("file %s: PERSISTENT RESERVE IN %#x: status %#x host %#x driver %#x "
			  "sense key %#x", bd->path, sa, h.status, h.host_status, h.driver_status,
			  h.sb_len_wr > 2 ? sense[2] & 0xf : 0);
		*os_errno = EIO;
		return DISK_IO_ERROR;
	}
	*got = h.resid > 0 && (uint32_t)h.resid < len ? len - (uint32_t)h.resid : len;
	return DISK_OK;
}

/* REPORT CAPABILITIES: the type mask, if valid, into *caps; PTPL_A into
 * *ptpl_active. Returns a disk_status (INVALID_INPUT: no valid mask). */
static int scsi_report_caps(struct blockdev *bd, uint32_t *caps, bool *ptpl_active,
			    int *os_errno)
{
	uint8_t b[8];
	uint32_t got;
	int st = scsi_pr_in(bd, SCSI_PR_IN_REPORT_CAPABILITIES, b, sizeof(b), &got, os_errno);

	if (st != DISK_OK)
		return st;
	if (got < 6) {
		*os_errno = EPROTO;
		return DISK_IO_ERROR;
	}
	*ptpl_active = b[3] & 0x01;
	*caps = 0;
	if (!(b[3] & 0x80))  /* TMV: the type mask is not valid */
		return DISK_INVALID_INPUT;
	if (b[4] & (1u << 1))
		*caps |= DISK_PR_CAP_WE;
	if (b[4] & (1u << 3))
		*caps |= DISK_PR_CAP_EA;
	if (b[4] & (1u << 5))
		*caps |= DISK_PR_CAP_WE_RO;
	if (b[4] & (1u << 6))
		*caps |= DISK_PR_CAP_EA_RO;
	if (b[4] & (1u << 7))
		*caps |= DISK_PR_CAP_WE_AR;
	if (b[5] & (1u << 0))
		*caps |= DISK_PR_CAP_EA_AR;
	if (*caps && (b[2] & 0x01))  /* PTPL_C */
		*caps |= DISK_PR_CAP_PTPL;
	return DISK_OK;
}

static void probe_scsi(struct blockdev *bd)
{
	uint32_t caps;
	bool ptpl;
	int err, st = scsi_report_caps(bd, &caps, &ptpl, &err);

	if (st != DISK_OK || caps == 0) {
		log_debug("file %s: SCSI REPORT CAPABILITIES gave no reservation types "
			  "(status %d): no reservations", bd->path, st);
		return;
	}
	bd->pr_kind = BLOCKDEV_PR_SCSI;
	bd->pr_caps = caps;
}

static void blockdev_probe(struct blockdev *bd)
{
	char dir[64];

	snprintf(dir, sizeof(dir), "/sys/dev/block/%u:%u", major(bd->rdev), minor(bd->rdev));
	/* Eject and reservations act on the whole device, and the kernel
	 * refuses PR ioctls on a partition. */
	bd->partition = attr_exists(dir, "partition");
	if (bd->partition)
		return;
	probe_eject(bd, dir);
	if (attr_exists(dir, "nsid"))
		probe_nvme(bd, dir);
	else if (attr_exists(dir, "device/scsi_device"))
		probe_scsi(bd);
}

/* ---- size --------------------------------------------------------------------- */

/* Re-reads the size for the current epoch; tells the watchers about a
 * change. Called with bd->size_lock held. */
static void size_refresh_locked(struct blockdev *bd)
{
	uint64_t epoch = atomic_load(&bd->epoch);
	uint64_t old = atomic_load(&bd->sector_count), bytes = 0, count;
	int r = sys()->ioctl(bd->fd, BLKGETSIZE64, &bytes);

	if (r < 0) {
		/* Keep the old size; the next uevent retries. */
		log_error("file %s: BLKGETSIZE64: %s", bd->path, strerror(-r));
	} else {
		count = bytes >> bd->shift;
		if (count != old) {
			log_info("file %s: size changed from %llu to %llu sectors", bd->path,
				 (unsigned long long)old, (unsigned long long)count);
			atomic_store(&bd->sector_count, count);
			resize_notifier_notify(bd->watchers, count);
		}
	}
	atomic_store(&bd->size_epoch, epoch);
}

uint64_t blockdev_sector_count(struct blockdev *bd)
{
	uint64_t count;

	if (likely(atomic_load(&bd->size_epoch) == atomic_load(&bd->epoch)))
		return atomic_load(&bd->sector_count);
	pthread_mutex_lock(&bd->size_lock);
	if (atomic_load(&bd->size_epoch) != atomic_load(&bd->epoch))
		size_refresh_locked(bd);
	count = atomic_load(&bd->sector_count);
	pthread_mutex_unlock(&bd->size_lock);
	return count;
}

int blockdev_watch_resize(struct blockdev *bd, struct disk_resize_watch *w)
{
	if (!bd->listening)
		return -EOPNOTSUPP;
	pthread_mutex_lock(&bd->size_lock);
	if (atomic_load(&bd->size_epoch) != atomic_load(&bd->epoch))
		size_refresh_locked(bd);
	resize_notifier_add(bd->watchers, w, atomic_load(&bd->sector_count));
	pthread_mutex_unlock(&bd->size_lock);
	return 0;
}

void blockdev_unwatch_resize(struct blockdev *bd, struct disk_resize_watch *w)
{
	if (bd->listening)
		resize_notifier_remove(bd->watchers, w);
}

/* A uevent said @bd's size may have changed: new epoch, re-read now so that
 * watchers hear about it without waiting for I/O. */
static void blockdev_bump(struct blockdev *bd)
{
	atomic_fetch_add(&bd->epoch, 1);
	pthread_mutex_lock(&bd->size_lock);
	if (atomic_load(&bd->size_epoch) != atomic_load(&bd->epoch))
		size_refresh_locked(bd);
	pthread_mutex_unlock(&bd->size_lock);
}

/* ---- uevents ----------------------------------------------------------------- */

/* Value of @key in a KEY=VALUE string @s, or NULL. */
static const char *kv(const char *s, const char *key)
{
	size_t n = strlen(key);

	return strncmp(s, key, n) == 0 && s[n] == '=' ? s + n + 1 : NULL;
}

static bool parse_uint(const char *s, unsigned long *out)
{
	char *end;

	if (!s || *s < '0' || *s > '9')
		return false;
	errno = 0;
	*out = strtoul(s, &end, 10);
	return errno == 0 && *end == '\0';
}

enum blockdev_uevent blockdev_uevent_parse(const char *msg, size_t len, dev_t *dev)
{
	const char *p = msg, *end = msg + len, *v;
	const char *maj_s = NULL, *min_s = NULL;
	bool change = false, block = false, resize = false, rescan = false;
	unsigned long maj, min;
	bool first = true;

	while (p < end) {
		const char *nul = memchr(p, '\0', (size_t)(end - p));

		if (!nul)
			break;  /* an unterminated last string is ignored */
		if (first && strchr(p, '@')) {
			/* "ACTION@DEVPATH" header */
		} else if ((v = kv(p, "ACTION"))) {
			change = strcmp(v, "change") == 0;
		} else if ((v = kv(p, "SUBSYSTEM"))) {
			block = strcmp(v, "block") == 0;
		} else if ((v = kv(p, "RESIZE"))) {
			resize |= strcmp(v, "1") == 0;
		} else if ((v = kv(p, "DISK_MEDIA_CHANGE"))) {
			resize |= strcmp(v, "1") == 0;
		} else if ((v = kv(p, "RESCAN"))) {
			rescan |= strcmp(v, "true") == 0;
		} else if ((v = kv(p, "MAJOR"))) {
			maj_s = v;
		} else if ((v = kv(p, "MINOR"))) {
			min_s = v;
		}
		first = false;
		p = nul + 1;
	}
	if (rescan)
		return BLOCKDEV_UEVENT_RESCAN;
	if (!change || !block || !resize || !parse_uint(maj_s, &maj) || !parse_uint(min_s, &min) ||
	    maj > UINT32_MAX || min > UINT32_MAX)
		return BLOCKDEV_UEVENT_NONE;
	*dev = makedev((unsigned)maj, (unsigned)min);
	return BLOCKDEV_UEVENT_DEVICE;
}

/* The process-wide listener. */
static struct {
	pthread_mutex_t life;       /* protects users, sock, stopfd, thread; serialises start/stop */
	pthread_mutex_t lock;       /* protects list; held while an event is handled */
	unsigned users;
	int sock;
	int stopfd;
	pthread_t thread;
	struct blockdev *list;
} uev = {
	.life = PTHREAD_MUTEX_INITIALIZER,
	.lock = PTHREAD_MUTEX_INITIALIZER,
	.sock = -1,
	.stopfd = -1,
};

/* Bumps every device an event of @kind about @dev concerns. */
static void uevent_dispatch(enum blockdev_uevent kind, dev_t dev)
{
	struct blockdev *bd;

	if (kind == BLOCKDEV_UEVENT_NONE)
		return;
	pthread_mutex_lock(&uev.lock);
	for (bd = uev.list; bd; bd = bd->uev_next) {
		if (kind == BLOCKDEV_UEVENT_RESCAN || bd->rdev == dev)
			blockdev_bump(bd);
	}
	pthread_mutex_unlock(&uev.lock);
}

void blockdev_uevent_inject(const char *msg, size_t len)
{
	dev_t dev = 0;
	enum blockdev_uevent kind = blockdev_uevent_parse(msg, len, &dev);

	uevent_dispatch(kind, dev);
}

/* Drains the socket. Returns false when the listener must stop. */
static bool uevent_drain(char *buf)
{
	for (;;) {
		struct sockaddr_nl addr;
		struct iovec iov = { buf, UEVENT_BUF_BYTES };
		struct msghdr mh = { .msg_name = &addr, .msg_namelen = sizeof(addr),
				     .msg_iov = &iov, .msg_iovlen = 1 };
		ssize_t n = recvmsg(uev.sock, &mh, MSG_DONTWAIT);
		enum blockdev_uevent kind;
		dev_t dev = 0;

		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return true;
			if (errno == EINTR)
				continue;
			if (errno == ENOBUFS) {
				/* Events were dropped: any device may have changed. */
				log_warn("uevent listener: socket overrun, re-reading every device size");
				uevent_dispatch(BLOCKDEV_UEVENT_RESCAN, 0);
				continue;
			}
			log_error("uevent listener: recvmsg: %s; device sizes are now fixed",
				  strerror(errno));
			return false;
		}
		/* Only the kernel (port 0) speaks for devices; skip truncated
		 * messages rather than parse half of one. */
		if (mh.msg_namelen != sizeof(addr) || addr.nl_pid != 0 || (mh.msg_flags & MSG_TRUNC))
			continue;
		kind = blockdev_uevent_parse(buf, (size_t)n, &dev);
		uevent_dispatch(kind, dev);
	}
}

static void *uevent_thread(void *arg)
{
	struct pollfd pfd[2] = { { .fd = uev.sock, .events = POLLIN },
				 { .fd = uev.stopfd, .events = POLLIN } };
	char *buf = arg;

	for (;;) {
		if (poll(pfd, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			log_error("uevent listener: poll: %s; device sizes are now fixed",
				  strerror(errno));
			break;
		}
		if (pfd[1].revents)
			break;
		if (pfd[0].revents && !uevent_drain(buf))
			break;
	}
	free(buf);
	return NULL;
}

/* Opens the socket and starts the thread. Called with uev.life held. */
static int uevent_start(void)
{
	struct sockaddr_nl addr = { .nl_family = AF_NETLINK, .nl_groups = 1 /* kernel events */ };
	int size = UEVENT_RCVBUF_BYTES, r;
	sigset_t all, old;
	char *buf;

	uev.sock = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK,
			  NETLINK_KOBJECT_UEVENT);
	if (uev.sock < 0)
		return -errno;
	/* A larger buffer makes overruns unlikely (FORCE needs CAP_NET_ADMIN). */
	if (setsockopt(uev.sock, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof(size)) < 0)
		setsockopt(uev.sock, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
	if (bind(uev.sock, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
		r = -errno;
		goto fail;
	}
	uev.stopfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (uev.stopfd < 0) {
		r = -errno;
		goto fail;
	}
	buf = malloc(UEVENT_BUF_BYTES);
	if (!buf) {
		r = -ENOMEM;
		goto fail;
	}
	/* Signals belong to the application's threads, not this one. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	r = -pthread_create(&uev.thread, NULL, uevent_thread, buf);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r < 0) {
		free(buf);
		goto fail;
	}
	return 0;

fail:
	if (uev.stopfd >= 0)
		close(uev.stopfd);
	close(uev.sock);
	uev.stopfd = uev.sock = -1;
	return r;
}

/* Stops the thread and closes the socket. Called with uev.life held. */
static void uevent_stop(void)
{
	uint64_t one = 1;

	if (write(uev.stopfd, &one, sizeof(one)) != sizeof(one))
		log_error("uevent listener: cannot stop: %s", strerror(errno));
	pthread_join(uev.thread, NULL);
	close(uev.stopfd);
	close(uev.sock);
	uev.stopfd = uev.sock = -1;
}

static int uevent_register(struct blockdev *bd)
{
	int r = 0;

	pthread_mutex_lock(&uev.life);
	if (uev.users == 0)
		r = uevent_start();
	if (r == 0) {
		uev.users++;
		pthread_mutex_lock(&uev.lock);
		bd->uev_prev = NULL;
		bd->uev_next = uev.list;
		if (uev.list)
			uev.list->uev_prev = bd;
		uev.list = bd;
		pthread_mutex_unlock(&uev.lock);
	}
	pthread_mutex_unlock(&uev.life);
	return r;
}

static void uevent_unregister(struct blockdev *bd)
{
	pthread_mutex_lock(&uev.life);
	pthread_mutex_lock(&uev.lock);
	if (bd->uev_prev)
		bd->uev_prev->uev_next = bd->uev_next;
	else
		uev.list = bd->uev_next;
	if (bd->uev_next)
		bd->uev_next->uev_prev = bd->uev_prev;
	pthread_mutex_unlock(&uev.lock);
	if (--uev.users == 0)
		uevent_stop();
	pthread_mutex_unlock(&uev.life);
}

/* ---- PR commands (worker pool) ------------------------------------------------ */

/* Linux PR ioctl for one PR OUT op. Returns a disk_status. */
static int pr_out(struct blockdev *bd, struct disk_io *io, int *os_errno)
{
	const struct disk_pr_args *a = &io->u.pr;
	unsigned long req;
	void *arg;
	struct pr_registration reg;
	struct pr_reservation rsv;
	struct pr_preempt pre;
	struct pr_clear clr;

	switch (io->op) {
	case DISK_OP_PR_REGISTER:
		memset(&reg, 0, sizeof(reg));
		reg.old_key = a->has_current_key ? a->key : 0;
		reg.new_key = a->new_key;
		reg.flags = a->has_current_key ? 0 : PR_FL_IGNORE_KEY;
		if (a->ptpl == 0)
			log_warn("file %s: reservation register cannot clear persist-through-power-"
				 "loss through the Linux PR interface; it stays set", bd->path);
		req = IOC_PR_REGISTER;
		arg = &reg;
		break;
	case DISK_OP_PR_RESERVE:
	case DISK_OP_PR_RELEASE:
		memset(&rsv, 0, sizeof(rsv));
		rsv.key = a->key;
		rsv.type = (uint32_t)a->type;
		req = io->op == DISK_OP_PR_RESERVE ? IOC_PR_RESERVE : IOC_PR_RELEASE;
		arg = &rsv;
		break;
	case DISK_OP_PR_PREEMPT:
		memset(&pre, 0, sizeof(pre));
		pre.old_key = a->key;
		pre.new_key = a->new_key;
		pre.type = (uint32_t)a->type;
		req = a->abort ? IOC_PR_PREEMPT_ABORT : IOC_PR_PREEMPT;
		arg = &pre;
		break;
	case DISK_OP_PR_CLEAR:
		memset(&clr, 0, sizeof(clr));
		clr.key = a->key;
		req = IOC_PR_CLEAR;
		arg = &clr;
		break;
	default:
		return DISK_INVALID_INPUT;
	}
	return blockdev_pr_ioctl_status(bd->pr_kind, sys()->ioctl(bd->fd, req, arg), os_errno);
}

/* NVMe Reservation Report (extended) into io->u.pr.report. */
static int nvme_report(struct blockdev *bd, struct disk_pr_report *rep, int *os_errno)
{
	uint32_t size = 4096, want, regctl, i;
	int st = DISK_IO_ERROR;

	for (int tries = 0; tries < REPORT_TRIES; tries++) {
		CLEANUP_FREE uint8_t *buf = aligned_alloc(4096, size);
		struct nvme_passthru_cmd cmd = {
			.opcode = NVME_IO_RESV_REPORT,
			.nsid = bd->nsid,
			.data_len = size,
			.cdw10 = size / 4 - 1,  /* NUMD, 0's based */
			.cdw11 = 1,             /* EDS: extended data structure */
		};
		uint64_t need;

		if (!buf) {
			*os_errno = ENOMEM;
			return DISK_IO_ERROR;
		}
		memset(buf, 0, size);
		cmd.addr = (uint64_t)(uintptr_t)buf;
		st = nvme_status(sys()->ioctl(bd->fd, NVME_IOCTL_IO_CMD, &cmd), os_errno);
		if (st != DISK_OK)
			return st;
		regctl = ds_get_le16(buf + 5);
		want = MIN(regctl, rep->max_controllers);
		need = NVME_RESV_EXT_HEADER + (uint64_t)want * NVME_RESV_EXT_ENTRY;
		if (need > size) {
			/* More registrants than fit: again with room for them. */
			size = (uint32_t)ROUND_UP(need, 4096);
			st = DISK_IO_ERROR;
			*os_errno = EAGAIN;
			continue;
		}
		if (buf[4] > DISK_PR_EXCLUSIVE_ACCESS_ALL_REG) {
			log_error("file %s: NVMe reservation report: unknown type %u", bd->path,
				  buf[4]);
			*os_errno = EPROTO;
			return DISK_IO_ERROR;
		}
		rep->generation = ds_get_le32(buf);
		rep->type = (enum disk_pr_type)buf[4];
		rep->ptpl = buf[9] & 1;
		rep->nr_controllers = regctl;
		for (i = 0; i < want; i++) {
			const uint8_t *e = buf + NVME_RESV_EXT_HEADER + i * NVME_RESV_EXT_ENTRY;
			struct disk_pr_controller *c = &rep->controllers[i];

			memset(c, 0, sizeof(*c));
			c->controller_id = ds_get_le16(e);
			c->holds_reservation = e[2] & 1;
			c->key = ds_get_le64(e + 8);
			memcpy(c->host_id, e + 16, 16);
			c->host_id_len = 16;
		}
		return DISK_OK;
	}
	log_error("file %s: NVMe reservation report: registrants kept changing", bd->path);
	return st;
}

/* SCSI type code → DISK_PR_* (0 for an unknown code). */
static enum disk_pr_type scsi_type(uint8_t t)
{
	switch (t) {
	case 1: return DISK_PR_WRITE_EXCLUSIVE;
	case 3: return DISK_PR_EXCLUSIVE_ACCESS;
	case 5: return DISK_PR_WRITE_EXCLUSIVE_REG_ONLY;
	case 6: return DISK_PR_EXCLUSIVE_ACCESS_REG_ONLY;
	case 7: return DISK_PR_WRITE_EXCLUSIVE_ALL_REG;
	case 8: return DISK_PR_EXCLUSIVE_ACCESS_ALL_REG;
	default: return DISK_PR_NONE;
	}
}

static int scsi_short_reply(struct blockdev *bd, int *os_errno)
{
	log_error("file %s: SCSI PERSISTENT RESERVE IN: short reply", bd->path);
	*os_errno = EPROTO;
	return DISK_IO_ERROR;
}

/* SCSI READ KEYS + READ RESERVATION (+ PTPL_A) into @rep. */
static int scsi_report(struct blockdev *bd, struct disk_pr_report *rep, int *os_errno)
{
	uint32_t alloc = 4096, got, gen, nkeys, want, i, caps;
	uint8_t res[24];
	bool ptpl = false;
	int st = DISK_IO_ERROR;

	/* PTPL_A is only in REPORT CAPABILITIES. */
	st = scsi_report_caps(bd, &caps, &ptpl, os_errno);
	if (st != DISK_OK && st != DISK_INVALID_INPUT)
		return st;
	for (int tries = 0; tries < REPORT_TRIES; tries++) {
		CLEANUP_FREE uint8_t *keys = malloc(alloc);
		enum disk_pr_type type = DISK_PR_NONE;
		uint64_t res_key = 0;

		if (!keys) {
			*os_errno = ENOMEM;
			return DISK_IO_ERROR;
		}
		st = scsi_pr_in(bd, SCSI_PR_IN_READ_KEYS, keys, alloc, &got, os_errno);
		if (st != DISK_OK)
			return st;
		if (got < 8)
			return scsi_short_reply(bd, os_errno);
		gen = ds_get_be32(keys);
		nkeys = ds_get_be32(keys + 4) / 8;
		want = MIN(nkeys, rep->max_controllers);
		if (8 + (uint64_t)want * 8 > got) {
			if (alloc < SCSI_PR_IN_MAX_ALLOC && 8 + (uint64_t)want * 8 > alloc) {
				alloc = (uint32_t)MIN(8 + (uint64_t)want * 8,
						      (uint64_t)SCSI_PR_IN_MAX_ALLOC);
				continue;
			}
			/* The most one command returns (8190 keys). */
			want = (got - 8) / 8;
		}
		st = scsi_pr_in(bd, SCSI_PR_IN_READ_RESERVATION, res, sizeof(res), &got, os_errno);
		if (st != DISK_OK)
			return st;
		if (got < 8)
			return scsi_short_reply(bd, os_errno);
		if (ds_get_be32(res) != gen) {
			st = DISK_IO_ERROR;
			*os_errno = EAGAIN;
			continue;  /* changed between the two commands */
		}
		if (ds_get_be32(res + 4) >= 16) {
			if (got < 22)
				return scsi_short_reply(bd, os_errno);
			res_key = ds_get_be64(res + 8);
			type = scsi_type(res[21] & 0x0f);
			if (type == DISK_PR_NONE) {
				log_error("file %s: SCSI READ RESERVATION: unknown type %#x",
					  bd->path, res[21] & 0x0f);
				*os_errno = EPROTO;
				return DISK_IO_ERROR;
			}
		}
		rep->generation = gen;
		rep->type = type;
		rep->ptpl = ptpl;
		rep->nr_controllers = nkeys;
		for (i = 0; i < want; i++) {
			struct disk_pr_controller *c = &rep->controllers[i];
			uint64_t key = ds_get_be64(keys + 8 + 8 * i);

			memset(c, 0, sizeof(*c));
			c->key = key;
			/* SCSI does not say which I_T nexus holds it; a
			 * registrant with the holder's key does, and with an
			 * all-registrants type every registrant does. */
			c->holds_reservation = type != DISK_PR_NONE &&
				(type == DISK_PR_WRITE_EXCLUSIVE_ALL_REG ||
				 type == DISK_PR_EXCLUSIVE_ACCESS_ALL_REG || key == res_key);
		}
		return DISK_OK;
	}
	log_error("file %s: SCSI reservation report: registrations kept changing", bd->path);
	return st;
}

/* A blocking PR or eject call on the worker pool. From the reactor's
 * buffer cache. */
struct blockdev_work {
	struct work_item w;
	struct blockdev *bd;
	struct disk_io *io;
	int status;              /* out: disk_status */
	int os_errno;            /* out: with DISK_IO_ERROR */
};

static void blockdev_pr_run(struct work_item *w)
{
	struct blockdev_work *bw = container_of(w, struct blockdev_work, w);
	struct blockdev *bd = bw->bd;
	struct disk_io *io = bw->io;

	if (io->op == DISK_OP_PR_REPORT)
		bw->status = bd->pr_kind == BLOCKDEV_PR_NVME ?
			nvme_report(bd, io->u.pr.report, &bw->os_errno) :
			scsi_report(bd, io->u.pr.report, &bw->os_errno);
	else
		bw->status = pr_out(bd, io, &bw->os_errno);
}

static void blockdev_eject_run(struct work_item *w)
{
	struct blockdev_work *bw = container_of(w, struct blockdev_work, w);
	struct blockdev *bd = bw->bd;
	int r;

	/* Unlock the door first; a removable disk that is not a CD-ROM does
	 * not know the door ioctl (ENOTTY) and ejects anyway. */
	r = sys()->ioctl(bd->fd, CDROM_LOCKDOOR, (void *)(uintptr_t)0);
	if (r == -ENOTTY)
		r = 0;
	if (r == 0)
		r = sys()->ioctl(bd->fd, CDROMEJECT, NULL);
	bw->os_errno = r < 0 ? -r : 0;
	bw->status = r < 0 ? blockdev_errno_status(-r) : DISK_OK;
}

static void blockdev_work_done(struct work_item *w)
{
	struct blockdev_work *bw = container_of(w, struct blockdev_work, w);
	struct disk_io *io = bw->io;
	int status = bw->status, err = bw->os_errno;

	reactor_buf_put(w->origin, bw, sizeof(*bw));
	if (status == DISK_IO_ERROR)
		log_error("file %s: %s: %s", bw->bd->path, disk_op_str(io->op),
			  strerror(err ? err : EIO));
	io->os_errno = status == DISK_IO_ERROR ? err : 0;
	disk_io_complete(io, status);
}

static int blockdev_submit_work(struct blockdev *bd, struct disk_io *io,
				void (*run)(struct work_item *w))
{
	struct workpool *pool = workpool_default();
	struct reactor *r = io->reactor ? io->reactor : reactor_current();
	struct blockdev_work *bw;

	if (!pool || !(bw = reactor_buf_get(r, sizeof(*bw), true))) {
		io->os_errno = ENOMEM;
		return DISK_IO_ERROR;
	}
	bw->w.work = run;
	bw->w.done = blockdev_work_done;
	bw->bd = bd;
	bw->io = io;
	workpool_submit(pool, &bw->w);
	return DISK_PENDING;
}

int blockdev_pr(struct blockdev *bd, struct disk_io *io)
{
	if (bd->pr_kind == BLOCKDEV_PR_NONE)
		return DISK_UNSUPPORTED;
	switch (io->op) {
	case DISK_OP_PR_CAPS:
		io->u.pr.caps = bd->pr_caps;
		return DISK_OK;
	case DISK_OP_PR_RESERVE:
	case DISK_OP_PR_RELEASE:
	case DISK_OP_PR_PREEMPT:
		/* The dispatcher checked the type (a real one, in range). */
		break;
	case DISK_OP_PR_REPORT:
		if (io->u.pr.report->max_controllers && !io->u.pr.report->controllers)
			return DISK_INVALID_INPUT;
		break;
	case DISK_OP_PR_REGISTER:
	case DISK_OP_PR_CLEAR:
		break;
	default:
		return DISK_INVALID_INPUT;
	}
	return blockdev_submit_work(bd, io, blockdev_pr_run);
}

int blockdev_eject(struct blockdev *bd, struct disk_io *io)
{
	if (!bd->can_eject)
		return DISK_UNSUPPORTED;
	return blockdev_submit_work(bd, io, blockdev_eject_run);
}

/* ---- open, close, describe -------------------------------------------------------- */

uint32_t blockdev_caps(const struct blockdev *bd)
{
	uint32_t caps = 0;

	if (bd->listening)
		caps |= DISK_CAP_RESIZE;
	if (bd->pr_kind != BLOCKDEV_PR_NONE)
		caps |= DISK_CAP_PR;
	if (bd->can_eject)
		caps |= DISK_CAP_EJECT;
	return caps;
}

void blockdev_describe(struct blockdev *bd, struct disk_describer *dd)
{
	static const char *const kinds[] = {
		[BLOCKDEV_PR_NONE] = "none",
		[BLOCKDEV_PR_NVME] = "nvme",
		[BLOCKDEV_PR_SCSI] = "scsi",
	};

	dd->param(dd, "resize", bd->listening ? "uevents" : "fixed");
	dd->param(dd, "reservations", kinds[bd->pr_kind]);
	dd->param(dd, "eject", bd->can_eject ? "yes" : "no");
}

int blockdev_open(int fd, dev_t rdev, const char *path, uint32_t shift, uint64_t sector_count,
		  struct blockdev **out)
{
	struct blockdev *bd;
	int r;

	*out = NULL;
	bd = calloc(1, sizeof(*bd));
	if (!bd || !(bd->path = strdup(path)))
		goto nomem;
	bd->fd = fd;
	bd->rdev = rdev;
	bd->shift = shift;
	pthread_mutex_init(&bd->size_lock, NULL);
	atomic_init(&bd->sector_count, sector_count);
	/* The size came from sysfs before the listener knew the device: the
	 * first reader re-reads it, closing the window for a lost event. */
	atomic_init(&bd->epoch, 1);
	atomic_init(&bd->size_epoch, 0);
	if (resize_notifier_new(&bd->watchers) < 0) {
		pthread_mutex_destroy(&bd->size_lock);
		goto nomem;
	}
	blockdev_probe(bd);
	r = uevent_register(bd);
	if (r < 0)
		log_warn("file %s: no kernel uevents (%s): the size is fixed at open", path,
			 strerror(-r));
	bd->listening = r == 0;
	log_debug("file %s: resize %s, reservations %s (caps %#x), eject %s", path,
		  bd->listening ? "from uevents" : "fixed",
		  bd->pr_kind == BLOCKDEV_PR_NVME ? "nvme" :
		  bd->pr_kind == BLOCKDEV_PR_SCSI ? "scsi" : "none", bd->pr_caps,
		  bd->can_eject ? "yes" : "no");
	*out = bd;
	return 0;

nomem:
	if (bd)
		free(bd->path);
	free(bd);
	return -ENOMEM;
}

void blockdev_close(struct blockdev *bd)
{
	if (!bd)
		return;
	if (bd->listening)
		uevent_unregister(bd);
	resize_notifier_free(bd->watchers);
	pthread_mutex_destroy(&bd->size_lock);
	free(bd->path);
	free(bd);
}
