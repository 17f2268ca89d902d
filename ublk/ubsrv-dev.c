/* SPDX-License-Identifier: MIT */
/*
 * ubsrv-dev.c: one served ublk device — creation with negotiation,
 * parameters from the disk, the queue threads, recovery of a device whose
 * server died, and the ordered teardown (Documentation/block/ublk.rst
 * "Control plane", with its user-recovery description; the commands in
 * include/uapi/linux/ublk_cmd.h; docs/diskstack-ublk.md).
 *
 * Notes on the design
 * -------------------
 * - Threads: the caller's thread is the control thread; it sends every
 *   control command. START_DEV and END_USER_RECOVERY block until every tag
 *   of every queue is FETCHed and START_DEV reads the partition table
 *   through the queues (pitfall 2), so they are sent only after each queue
 *   thread has reported its FETCHes in, and never from a queue thread.
 * - Negotiation: ADD_DEV asks for USER_COPY only with --copy user (and
 *   fails when GET_FEATURES does not offer it), and for USER_RECOVERY|REISSUE
 *   with --recoverable; the flags the kernel copies back are the contract
 *   (pitfall 17): USER_COPY missing fails --copy user, recovery missing
 *   fails, CMD_IOCTL_ENCODE selects the encoded I/O opcodes.
 * - Copy mode: --copy auto (the default) is kernel copy on every kernel.
 *   USER_COPY costs the server one pread/pwrite on /dev/ublkcN per request
 *   on top of the same copy, and did not beat kernel copy in
 *   tests/vm/bench-ublk.sh (see docs/diskstack-ublk.md, "Benchmark"); it
 *   stays available with --copy user.
 * - Teardown order (pitfall 3): STOP_DEV (del_gendisk drains every request
 *   through the still-running queues, then the kernel aborts the armed
 *   commands), join the queue threads (each frees its ring once every tag
 *   is aborted), unmap the descriptors and buffers, close /dev/ublkcN, and
 *   only then DEL_DEV, which would otherwise wait for our own references.
 *   A start-up failure takes the same path: STOP_DEV also cancels the
 *   FETCHes of a device that never started.
 * - Recovery: START_USER_RECOVERY answers -EBUSY until the dead server's
 *   files are released and the device is QUIESCED (up to ~5 s on 6.1,
 *   whose monitor work polls; at once on newer kernels), so it is retried
 *   for a while. SET_PARAMS and START_DEV are never sent on that path.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/compiler.h"
#include "common/log.h"
#include "ublk/ubsrv-internal.h"

/* Largest discard and write-zeroes request advertised, in 512-byte sectors. */
#define UBSRV_MAX_DISCARD_SECTORS ((1u << 30) >> 9)
#define UBSRV_MAX_WRITE_ZEROES_SECTORS ((64u << 20) >> 9)

/* How long recovery waits for the kernel to quiesce the device. */
#define UBSRV_RECOVERY_WAIT_MS 30000u

/* ---- parameters ------------------------------------------------------------- */

int ubsrv_params_build(const struct disk_info *info, uint64_t sectors, bool read_only,
		       uint32_t max_io_bytes, struct ubsrv_params *p, char *err, size_t errlen)
{
	const uint32_t page = (uint32_t)sysconf(_SC_PAGESIZE);
	const unsigned lshift = ilog2_u64(info->sector_size);
	const unsigned pshift = ilog2_u64(info->physical_sector_size);
	const bool ro = read_only || info->read_only;
	uint64_t dev_sectors, gran;

	memset(p, 0, sizeof(*p));
	p->len = sizeof(*p);
	if (info->sector_size > page) {
		(void)errbuf_printf(err, errlen, "sector size %u is larger than the page size (%u): "
			            "ublk cannot expose it", info->sector_size, page);
		return -EINVAL;
	}
	if (max_io_bytes < info->sector_size || max_io_bytes % page) {
		(void)errbuf_printf(err, errlen, "--max-io %u is not a multiple of the page size (%u) "
			            "or smaller than a sector", max_io_bytes, page);
		return -EINVAL;
	}
	if (MUL_OVERFLOW(sectors, (uint64_t)info->sector_size >> 9, &dev_sectors)) {
		(void)errbuf_printf(err, errlen, "disk too large");
		return -EINVAL;
	}

	p->types = UBSRV_PARAM_TYPE_BASIC;
	p->basic.logical_bs_shift = (uint8_t)lshift;
	p->basic.physical_bs_shift = (uint8_t)MAX(pshift, lshift);
	p->basic.io_min_shift = p->basic.physical_bs_shift;
	p->basic.io_opt_shift = p->basic.physical_bs_shift;
	p->basic.max_sectors = max_io_bytes >> 9;
	p->basic.dev_sectors = dev_sectors;
	if (ro)
		p->basic.attrs |= UBSRV_ATTR_READ_ONLY;
	/* Some layer acknowledges writes before they are durable: the kernel
	 * must send FLUSH, and may send FUA writes (the dispatcher emulates
	 * FUA where a backend does not honour it). */
	if (info->caps & DISK_CAP_VOLATILE_CACHE)
		p->basic.attrs |= UBSRV_ATTR_VOLATILE_CACHE | UBSRV_ATTR_FUA;

	if (!ro) {
		/* Write-zeroes always works (the dispatcher emulates it); discard
		 * only when unmap does something. The kernel wants one segment
		 * and a non-zero granularity (pitfall 18). */
		gran = (uint64_t)info->optimal_unmap_sectors * info->sector_size;
		if (gran < info->sector_size || gran > UINT32_MAX)
			gran = info->sector_size;
		p->types |= UBSRV_PARAM_TYPE_DISCARD;
		p->discard.discard_granularity = (uint32_t)gran;
		p->discard.discard_alignment = 0;
		p->discard.max_write_zeroes_sectors = UBSRV_MAX_WRITE_ZEROES_SECTORS;
		if (info->unmap_behavior != DISK_UNMAP_IGNORED) {
			p->discard.max_discard_sectors = UBSRV_MAX_DISCARD_SECTORS;
			p->discard.max_discard_segments = 1;
		}
	}
	return 0;
}

bool ubsrv_pid_alive(int pid)
{
	char path[64], buf[512];
	const char *p;
	FILE *fp;
	size_t n;

	if (pid <= 0)
		return false;
	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	fp = fopen(path, "re");
	if (!fp)
		return kill(pid, 0) == 0 || errno == EPERM;
	n = fread(buf, 1, sizeof(buf) - 1, fp);
	fclose(fp);
	buf[n] = '\0';
	/* "pid (comm) S ...": the state follows the last ')'. */
	p = strrchr(buf, ')');
	if (!p || p[1] != ' ')
		return true;
	return p[2] != 'Z' && p[2] != 'X' && p[2] != 'x';
}

/* ---- queue start-up handshake --------------------------------------------------- */

void ubsrv_dev_queue_started(struct ubsrv_dev *dev, int status)
{
	pthread_mutex_lock(&dev->lock);
	if (status < 0)
		dev->nr_failed++;
	else
		dev->nr_ready++;
	pthread_cond_broadcast(&dev->cond);
	pthread_mutex_unlock(&dev->lock);
}

void ubsrv_dev_queue_exited(struct ubsrv_dev *dev)
{
	uint64_t one = 1;

	if (write(dev->exit_efd, &one, sizeof(one)) < 0)
		log_debug("ublk%u: eventfd write: %s", dev->id, strerror(errno));
}

/* ---- lifetime ---------------------------------------------------------------- */

static int ubsrv_dev_alloc(struct ubsrv_ctrl *c, struct disk *d, struct ubsrv_dev **out)
{
	struct ubsrv_dev *dev = calloc(1, sizeof(*dev));

	if (!dev)
		return -ENOMEM;
	dev->ctrl = c;
	dev->disk = disk_ref(d);
	dev->cdev_fd = -1;
	dev->sector_shift = disk_get_info(d)->sector_shift;
	pthread_mutex_init(&dev->lock, NULL);
	pthread_cond_init(&dev->cond, NULL);
	dev->exit_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (dev->exit_efd < 0) {
		int e = errno;

		disk_unref(dev->disk);
		free(dev);
		return -e;
	}
	*out = dev;
	return 0;
}

static void ubsrv_dev_free(struct ubsrv_dev *dev)
{
	if (!dev)
		return;
	free(dev->queues);
	if (dev->exit_efd >= 0)
		close(dev->exit_efd);
	pthread_cond_destroy(&dev->cond);
	pthread_mutex_destroy(&dev->lock);
	disk_unref(dev->disk);
	free(dev);
}

/* Opens /dev/ublkcN, which udev may still be creating (pitfall: kublk
 * retries for 3 s). */
static int ubsrv_dev_open_cdev(struct ubsrv_dev *dev, char *err, size_t errlen)
{
	char path[64];
	int fd = -1;

	snprintf(path, sizeof(path), "/dev/ublkc%u", dev->id);
	for (int i = 0; i < 300; i++) {
		fd = open(path, O_RDWR | O_CLOEXEC);
		if (fd >= 0 || errno != ENOENT)
			break;
		usleep(10000);
	}
	if (fd < 0) {
		int e = errno;

		(void)errbuf_printf(err, errlen, "cannot open %s: %s%s", path, strerror(e),
			            e == EBUSY ? " (another process holds it: is a server still running?)" : "");
		return -e;
	}
	dev->cdev_fd = fd;
	return 0;
}

/* Pins each queue to one CPU of the set blk-mq maps to it (pitfall 8). */
static void ubsrv_dev_pick_cpus(struct ubsrv_dev *dev)
{
	for (unsigned q = 0; q < dev->nr_queues; q++) {
		cpu_set_t set;
		unsigned n, pick;
		int cpu = -1;

		if (ubsrv_ctrl_queue_affinity(dev->ctrl, dev->id, q, &set) < 0)
			continue;
		n = (unsigned)CPU_COUNT(&set);
		if (n == 0)
			continue;
		/* Spread queues sharing a mask over its CPUs. */
		pick = q % n;
		for (int i = 0; i < CPU_SETSIZE; i++) {
			if (CPU_ISSET(i, &set) && pick-- == 0) {
				cpu = i;
				break;
			}
		}
		dev->queues[q].cpu = cpu;
	}
}

/* Sets up and starts every queue, then waits until each has its FETCHes in
 * the kernel. On failure the threads that did start keep waiting for the
 * STOP_DEV of the teardown. */
static int ubsrv_dev_start_queues(struct ubsrv_dev *dev, char *err, size_t errlen)
{
	int ret;

	dev->queues = calloc(dev->nr_queues, sizeof(*dev->queues));
	if (!dev->queues) {
		(void)errbuf_printf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	for (unsigned q = 0; q < dev->nr_queues; q++) {
		ret = ubsrv_queue_init(&dev->queues[q], dev, q, err, errlen);
		if (ret < 0) {
			for (unsigned i = 0; i < q; i++)
				ubsrv_queue_fini(&dev->queues[i]);
			free(dev->queues);
			dev->queues = NULL;
			return ret;
		}
	}
	ubsrv_dev_pick_cpus(dev);
	for (unsigned q = 0; q < dev->nr_queues; q++) {
		ret = ubsrv_queue_start(&dev->queues[q]);
		if (ret < 0) {
			(void)errbuf_printf(err, errlen, "cannot start the thread of queue %u: %s", q,
				            strerror(-ret));
			/* Count it as failed so the wait below ends. */
			ubsrv_dev_queue_started(dev, ret);
		}
	}
	pthread_mutex_lock(&dev->lock);
	while (dev->nr_ready + dev->nr_failed < dev->nr_queues)
		pthread_cond_wait(&dev->cond, &dev->lock);
	ret = dev->nr_failed ? -EIO : 0;
	pthread_mutex_unlock(&dev->lock);
	if (ret < 0 && err && !err[0])
		(void)errbuf_printf(err, errlen, "%u of %u queues failed to start (see the messages above)",
			            dev->nr_failed, dev->nr_queues);
	return ret;
}

/* Opens the device's character device and starts its queue threads: the
 * common tail of adding a device and of recovering one. */
static int ubsrv_dev_run_queues(struct ubsrv_dev *dev, char *err, size_t errlen)
{
	int ret = ubsrv_dev_open_cdev(dev, err, errlen);

	return ret < 0 ? ret : ubsrv_dev_start_queues(dev, err, errlen);
}

/* The ordered teardown; also the failure path of add and recover. */
static int ubsrv_dev_teardown(struct ubsrv_dev *dev)
{
	int ret, first = 0;
	uint64_t ios = 0, errors = 0;

	if (dev->added) {
		ret = ubsrv_ctrl_stop_dev(dev->ctrl, dev->id);
		if (ret < 0 && ret != -ENODEV) {
			log_error("ublk%u: STOP_DEV failed: %s", dev->id, strerror(-ret));
			first = ret;
		}
	}
	if (dev->queues) {
		for (unsigned q = 0; q < dev->nr_queues; q++) {
			ios += atomic_load(&dev->queues[q].nr_ios);
			errors += atomic_load(&dev->queues[q].nr_errors);
			ubsrv_queue_fini(&dev->queues[q]);
		}
	}
	if (dev->cdev_fd >= 0) {
		close(dev->cdev_fd);
		dev->cdev_fd = -1;
	}
	if (dev->added) {
		ret = ubsrv_ctrl_del_dev(dev->ctrl, dev->id);
		if (ret < 0 && ret != -ENODEV) {
			log_error("ublk%u: DEL_DEV failed: %s", dev->id, strerror(-ret));
			if (!first)
				first = ret;
		}
		dev->added = false;
	}
	if (dev->started) {
		ret = disk_sync_flush(dev->disk);
		if (ret != DISK_OK) {
			log_error("ublk%u: final flush failed: %s", dev->id, disk_status_str(ret));
			if (!first)
				first = -EIO;
		}
	}
	log_debug("ublk%u: served %" PRIu64 " requests, %" PRIu64 " failed", dev->id, ios, errors);
	return first;
}

/* Requested flags, from the options and what the kernel offers. */
static int ubsrv_dev_flags(struct ubsrv_ctrl *c, const struct ubsrv_opts *o, uint64_t *flags,
			   char *err, size_t errlen)
{
	bool known;
	uint64_t features = ubsrv_ctrl_features(c, &known);

	*flags = 0;
	if (o->recoverable) {
		if (known && !(features & UBSRV_F_USER_RECOVERY)) {
			(void)errbuf_printf(err, errlen, "this kernel's ublk driver has no user recovery "
				            "(--recoverable needs Linux 6.1 or later)");
			return -EOPNOTSUPP;
		}
		*flags |= UBSRV_F_USER_RECOVERY | UBSRV_F_USER_RECOVERY_REISSUE;
	}
	/* auto means kernel copy: see "Copy mode" above. */
	if (o->copy == UBSRV_COPY_USER) {
		if (!known || !(features & UBSRV_F_USER_COPY)) {
			(void)errbuf_printf(err, errlen, "this kernel's ublk driver does not offer USER_COPY "
				            "(--copy user needs Linux 6.5 or later)");
			return -EOPNOTSUPP;
		}
		*flags |= UBSRV_F_USER_COPY;
	}
	/* Asked for whenever offered: it only adds a control command
	 * (ubsrv_dev_update_size), the data path is the same. */
	if (known && (features & UBSRV_F_UPDATE_SIZE))
		*flags |= UBSRV_F_UPDATE_SIZE;
	return 0;
}

int ubsrv_dev_add(struct ubsrv_ctrl *c, struct disk *d, const struct ubsrv_opts *o,
		  struct ubsrv_dev **out, char *err, size_t errlen)
{
	const struct disk_info *di = disk_get_info(d);
	struct ubsrv_ctrl_dev_info info;
	struct ubsrv_params params;
	struct ubsrv_dev *dev;
	uint64_t want;
	int ret;

	if (err && errlen)
		err[0] = '\0';
	/* Check what the kernel would refuse before creating anything. */
	ret = ubsrv_params_build(di, disk_sector_count(d), o->read_only, o->max_io_bytes, &params,
				 err, errlen);
	if (ret < 0)
		return ret;
	ret = ubsrv_dev_flags(c, o, &want, err, errlen);
	if (ret < 0)
		return ret;
	ret = ubsrv_dev_alloc(c, d, &dev);
	if (ret < 0) {
		(void)errbuf_printf(err, errlen, "%s", strerror(-ret));
		return ret;
	}
	dev->read_only = o->read_only || di->read_only;

	memset(&info, 0, sizeof(info));
	info.nr_hw_queues = (uint16_t)o->queues;
	info.queue_depth = (uint16_t)o->depth;
	info.max_io_buf_bytes = o->max_io_bytes;
	info.dev_id = o->dev_id < 0 ? UINT32_MAX : (uint32_t)o->dev_id;
	info.ublksrv_pid = getpid();
	info.flags = want;
	ret = ubsrv_ctrl_add_dev(c, &info);
	if (ret < 0) {
		if (ret == -EEXIST)
			(void)errbuf_printf(err, errlen, "ublk device id %" PRId64 " is already in use", o->dev_id);
		else if (ret == -ENOSPC && o->dev_id >= 0)
			(void)errbuf_printf(err, errlen, "ublk device id %" PRId64 " is not available", o->dev_id);
		else
			(void)errbuf_printf(err, errlen, "ublk ADD_DEV failed: %s", strerror(-ret));
		ubsrv_dev_free(dev);
		return ret;
	}
	dev->added = true;
	dev->id = info.dev_id;
	dev->info = info;
	dev->nr_queues = info.nr_hw_queues;
	log_debug("ublk%u: ADD_DEV: asked flags 0x%" PRIx64 ", got 0x%" PRIx64 "; %u queues x %u, "
		  "%u-byte buffers", dev->id, want, info.flags, info.nr_hw_queues, info.queue_depth,
		  info.max_io_buf_bytes);

	/* The flags that came back are the contract. */
	if ((want & UBSRV_F_USER_RECOVERY) && !(info.flags & UBSRV_F_USER_RECOVERY)) {
		(void)errbuf_printf(err, errlen, "the kernel did not accept USER_RECOVERY for ublk%u", dev->id);
		ret = -EOPNOTSUPP;
		goto fail;
	}
	if ((want & UBSRV_F_USER_COPY) && !(info.flags & UBSRV_F_USER_COPY)) {
		(void)errbuf_printf(err, errlen, "the kernel did not accept USER_COPY for ublk%u", dev->id);
		ret = -EOPNOTSUPP;
		goto fail;
	}
	if (info.flags & UBSRV_F_NEED_GET_DATA) {
		(void)errbuf_printf(err, errlen, "the kernel forced NEED_GET_DATA on ublk%u", dev->id);
		ret = -EPROTO;
		goto fail;
	}
	dev->user_copy = (info.flags & UBSRV_F_USER_COPY) != 0;
	dev->io_encoded = (info.flags & UBSRV_F_CMD_IOCTL_ENCODE) != 0;
	if (info.nr_hw_queues == 0 || info.queue_depth == 0 ||
	    info.max_io_buf_bytes < di->sector_size) {
		(void)errbuf_printf(err, errlen, "the kernel answered ADD_DEV with %u queues of depth %u and "
			            "%u-byte buffers", info.nr_hw_queues, info.queue_depth, info.max_io_buf_bytes);
		ret = -EPROTO;
		goto fail;
	}

	/* The kernel rounds max_io_buf_bytes down to the page size. */
	ret = ubsrv_params_build(di, disk_sector_count(d), dev->read_only, info.max_io_buf_bytes,
				 &params, err, errlen);
	if (ret < 0)
		goto fail;
	ret = ubsrv_ctrl_set_params(c, dev->id, &params);
	if (ret < 0) {
		(void)errbuf_printf(err, errlen, "the kernel refused the parameters of ublk%u (SET_PARAMS: %s)",
			            dev->id, strerror(-ret));
		goto fail;
	}

	ret = ubsrv_dev_run_queues(dev, err, errlen);
	if (ret < 0)
		goto fail;
	ret = ubsrv_ctrl_start_dev(c, dev->id, getpid());
	if (ret < 0) {
		(void)errbuf_printf(err, errlen, "ublk START_DEV of ublk%u failed: %s", dev->id, strerror(-ret));
		goto fail;
	}
	dev->started = true;
	*out = dev;
	return 0;

fail:
	ubsrv_dev_teardown(dev);
	ubsrv_dev_free(dev);
	return ret;
}

int ubsrv_dev_recover(struct ubsrv_ctrl *c, struct disk *d, uint32_t id,
		      struct ubsrv_dev **out, char *err, size_t errlen)
{
	const struct disk_info *di = disk_get_info(d);
	struct ubsrv_ctrl_dev_info info;
	struct ubsrv_params params;
	struct ubsrv_dev *dev;
	uint64_t deadline, disk_bytes, dev_bytes;
	int ret;

	if (err && errlen)
		err[0] = '\0';
	ret = ubsrv_ctrl_get_dev_info(c, id, &info);
	if (ret < 0) {
		if (ret == -ENODEV)
			(void)errbuf_printf(err, errlen, "there is no ublk device %u", id);
		else
			(void)errbuf_printf(err, errlen, "GET_DEV_INFO of ublk%u failed: %s", id, strerror(-ret));
		return ret;
	}
	if (!(info.flags & UBSRV_F_USER_RECOVERY)) {
		(void)errbuf_printf(err, errlen, "ublk%u was not created with --recoverable", id);
		return -EINVAL;
	}
	if (info.state == UBSRV_S_DEV_DEAD) {
		(void)errbuf_printf(err, errlen, "ublk%u is dead (never started, or stopped); remove it with "
			            "'diskstack ublk del %u'", id, id);
		return -EINVAL;
	}
	/* LIVE with a dead server is normal for a moment (6.1 notices within
	 * 5 s); LIVE with a running one is a mistake. */
	if (info.state == UBSRV_S_DEV_LIVE && ubsrv_pid_alive(info.ublksrv_pid)) {
		(void)errbuf_printf(err, errlen, "ublk%u is live, served by pid %d: recover attaches a server "
			            "to a device whose server died", id, info.ublksrv_pid);
		return -EBUSY;
	}
	ret = ubsrv_ctrl_get_params(c, id, &params);
	if (ret < 0) {
		(void)errbuf_printf(err, errlen, "GET_PARAMS of ublk%u failed: %s", id, strerror(-ret));
		return ret;
	}
	disk_bytes = disk_sector_count(d) << di->sector_shift;
	dev_bytes = params.basic.dev_sectors << 9;
	if (params.basic.logical_bs_shift != di->sector_shift || disk_bytes != dev_bytes) {
		(void)errbuf_printf(err, errlen, "the disk does not match ublk%u: %" PRIu64 " bytes in %u-byte "
			            "sectors, the device has %" PRIu64 " bytes in %u-byte sectors", id,
			            disk_bytes, di->sector_size, dev_bytes, 1u << params.basic.logical_bs_shift);
		return -EINVAL;
	}
	if (info.max_io_buf_bytes < di->sector_size || info.nr_hw_queues == 0 ||
	    info.queue_depth == 0) {
		(void)errbuf_printf(err, errlen, "ublk%u reports unusable geometry", id);
		return -EPROTO;
	}

	/* Wait for the kernel to notice the dead server and quiesce. */
	deadline = reactor_now_ns() + (uint64_t)UBSRV_RECOVERY_WAIT_MS * 1000000u;
	for (unsigned delay_ms = 20;; delay_ms = MIN(delay_ms * 2, 500u)) {
		ret = ubsrv_ctrl_start_recovery(c, id);
		if (ret != -EBUSY || reactor_now_ns() >= deadline)
			break;
		usleep(delay_ms * 1000);
	}
	if (ret < 0) {
		if (ret == -EBUSY)
			(void)errbuf_printf(err, errlen, "ublk%u is still busy after %u s: is its server still "
				            "running (pid %d)?", id, UBSRV_RECOVERY_WAIT_MS / 1000,
				            info.ublksrv_pid);
		else
			(void)errbuf_printf(err, errlen, "START_USER_RECOVERY of ublk%u failed: %s", id,
				            strerror(-ret));
		return ret;
	}

	ret = ubsrv_dev_alloc(c, d, &dev);
	if (ret < 0) {
		(void)errbuf_printf(err, errlen, "%s", strerror(-ret));
		return ret;
	}
	/* Re-read: the state moved on. */
	(void)ubsrv_ctrl_get_dev_info(c, id, &info);
	dev->id = id;
	dev->info = info;
	dev->nr_queues = info.nr_hw_queues;
	dev->added = true;
	dev->read_only = (params.basic.attrs & UBSRV_ATTR_READ_ONLY) || di->read_only;
	dev->user_copy = (info.flags & UBSRV_F_USER_COPY) != 0;
	dev->io_encoded = (info.flags & UBSRV_F_CMD_IOCTL_ENCODE) != 0;

	ret = ubsrv_dev_run_queues(dev, err, errlen);
	if (ret < 0)
		goto fail;
	ret = ubsrv_ctrl_end_recovery(c, id, getpid());
	if (ret < 0) {
		(void)errbuf_printf(err, errlen, "END_USER_RECOVERY of ublk%u failed: %s", id, strerror(-ret));
		goto fail;
	}
	dev->started = true;
	*out = dev;
	return 0;

fail:
	if (dev->queues) {
		/* The queue threads hold FETCHes that only STOP_DEV (which would
		 * delete the disk the user wants to keep) or the death of this
		 * process cancels. Die like a crashed server: the kernel quiesces
		 * the device again and another 'ublk recover' can follow. */
		log_error("ublk%u: %s", id, err && err[0] ? err : strerror(-ret));
		log_error("ublk%u: recovery failed with the queues running; exiting so the kernel "
			  "releases them (the device stays recoverable)", id);
		_exit(EXIT_FAILURE);
	}
	if (dev->cdev_fd >= 0)
		close(dev->cdev_fd);
	ubsrv_dev_free(dev);
	return ret;
}

uint32_t ubsrv_dev_id(const struct ubsrv_dev *dev)
{
	return dev->id;
}

const struct ubsrv_ctrl_dev_info *ubsrv_dev_info(const struct ubsrv_dev *dev)
{
	return &dev->info;
}

bool ubsrv_dev_user_copy(const struct ubsrv_dev *dev)
{
	return dev->user_copy;
}

bool ubsrv_dev_read_only(const struct ubsrv_dev *dev)
{
	return dev->read_only;
}

int ubsrv_dev_serve(struct ubsrv_dev *dev, int sigfd)
{
	for (;;) {
		struct pollfd pfd[2] = {
			{ .fd = sigfd, .events = POLLIN },
			{ .fd = dev->exit_efd, .events = POLLIN },
		};
		int n = poll(pfd, 2, -1);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			log_error("ublk%u: poll: %s", dev->id, strerror(errno));
			return 0;
		}
		if (pfd[0].revents & POLLIN) {
			struct signalfd_siginfo si;
			ssize_t r = read(sigfd, &si, sizeof(si));

			if (r == (ssize_t)sizeof(si))
				return (int)si.ssi_signo;
		}
		if (pfd[1].revents & POLLIN) {
			log_warn("ublk%u: the device was stopped from outside; shutting down", dev->id);
			return 0;
		}
	}
}

int ubsrv_dev_update_size(struct ubsrv_dev *dev)
{
	uint64_t sectors = (disk_sector_count(dev->disk) << dev->sector_shift) >> 9;

	if (!(dev->info.flags & UBSRV_F_UPDATE_SIZE))
		return -EOPNOTSUPP;
	return ubsrv_ctrl_update_size(dev->ctrl, dev->id, sectors);
}

int ubsrv_dev_stop(struct ubsrv_dev *dev)
{
	int ret;

	if (!dev)
		return 0;
	ret = ubsrv_dev_teardown(dev);
	ubsrv_dev_free(dev);
	return ret;
}
