/* SPDX-License-Identifier: MIT */
/*
 * dvd.c: the DVD logical unit of the SCSI core (docs/scsi-dvd.md): a read-only
 * drive with a tray and one removable medium, answering the MMC-6 commands
 * a Linux sr driver and Windows' cdrom.sys send to a DVD-ROM drive. The
 * core looks a DVD's CDB up in scsi_mmc_ops first and then in the SPC
 * table, so this file holds what a DVD does differently (TEST UNIT READY,
 * START STOP UNIT, MODE SENSE(10)) and the MMC commands of its own.
 *
 * Notes on the design
 * -------------------
 * - The medium is a disk whose size is a whole number of 2048-byte logical
 *   blocks (MMC-6 §4.2.1: a DVD's user data block is 2048 bytes), with a
 *   sector size of at most 2048 bytes, so DVD block n is disk sector
 *   n << (11 - sector_shift). Anything else is refused when it is loaded.
 *   The medium is never written: the LU is read-only and no write opcode
 *   is in its tables.
 * - State (struct scsi_dvd, under dvd->lock): the loaded medium (our
 *   reference, or NULL), the medium the guest ejected (kept, so that
 *   START STOP UNIT LOEJ=1 START=1 loads it again as a tray would), whether
 *   the tray is open, a short FIFO of media-class events and the pending
 *   operational change for GET EVENT STATUS NOTIFICATION (MMC-6 §6.6).
 * - Who changes it: the host, from any thread, through
 *   scsi_lu_change_media (a new medium closes the tray; the old one and a
 *   guest-ejected one are dropped), and the guest with START STOP UNIT
 *   (eject unless some nexus prevents removal; load what it ejected).
 *   Each load queues UNIT ATTENTION 28h/00h NOT READY TO READY CHANGE,
 *   MEDIUM MAY HAVE CHANGED (SPC-4 §6.47; for the guest's own load, to the
 *   other nexuses only), and a load or removal queues the media events
 *   and an operational change (the current profile and features change).
 * - Commands never look at dvd->medium directly for I/O: the core took a
 *   reference for each command when it started (scsi_dvd_medium) and
 *   scsi_cmd_disk returns it, so a medium that the host replaces under a
 *   running READ stays open until that READ ends.
 * - Locking: dvd->lock is a leaf. Nothing here calls into the core (unit
 *   attentions, the PREVENT state) or into a disk while holding it, and
 *   references that a change drops are released after it is unlocked.
 * - Empty drive: the core answers NOT READY 3Ah/00h for every command
 *   without SCSI_OP_NO_MEDIUM; TEST UNIT READY (ours) says whether the
 *   tray is open or closed (3Ah/02h, 3Ah/01h), as MMC-6 §F.1 lists.
 * - GET EVENT STATUS NOTIFICATION is polled only (Async = 0 in the
 *   Morphing feature). Events are reported lowest class first, and "no
 *   change" only when no requested class has one: Windows' class driver
 *   keeps a workaround on for drives that report "no change" of a lower
 *   class while a media event waits.
 */
#include "config.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "common/compiler.h"
#include "common/endian.h"
#include "common/log.h"
#include "common/reactor.h"
#include "scsi/internal.h"

#define DVD_BLOCK 2048u
#define DVD_BLOCK_SHIFT 11u
#define DVD_EVENTS_MAX 4

/* MMC-6 §6.6.2.5 media event codes. */
enum {
	DVD_EV_NO_CHANGE = 0,
	DVD_EV_EJECT_REQUEST = 1,
	DVD_EV_NEW_MEDIA = 2,
	DVD_EV_MEDIA_REMOVAL = 3,
};

/* GET EVENT STATUS NOTIFICATION classes (MMC-6 §6.6.1, table 142). */
enum {
	DVD_CLASS_OPERATIONAL = 1,
	DVD_CLASS_POWER = 2,
	DVD_CLASS_MEDIA = 4,
};
#define DVD_CLASSES ((1u << DVD_CLASS_OPERATIONAL) | (1u << DVD_CLASS_POWER) | \
		     (1u << DVD_CLASS_MEDIA))

/* MMC-6 profiles (§5.3.1). */
#define DVD_PROFILE_CD_ROM 0x0008
#define DVD_PROFILE_DVD_ROM 0x0010

struct scsi_dvd {
	struct scsi_lu *lu;
	pthread_mutex_t lock;           /* protects everything below */
	struct disk *medium;            /* loaded medium (our reference), or NULL */
	struct disk *ejected;           /* what the guest ejected (our reference), or NULL */
	bool tray_open;
	uint8_t events[DVD_EVENTS_MAX]; /* media-class events, oldest first */
	unsigned nevents;
	bool op_change;                 /* operational change: feature set changed */
	bool persistent_prevent;        /* PREVENT ALLOW's Persistent Prevent state */
};

/* ---- the medium ------------------------------------------------------------------ */

/* Checks that @d can be a medium: 0, or -EINVAL with a message. */
static int dvd_check_medium(struct disk *d, char *err, size_t errlen)
{
	uint32_t ss = disk_sector_size(d);
	uint64_t sectors = disk_sector_count(d);

	if (ss > DVD_BLOCK)
		return errbuf_printf(err, errlen,
				     "a DVD medium needs sectors of at most %u bytes, not %u",
				     DVD_BLOCK, ss);
	if (sectors == 0)
		return errbuf_printf(err, errlen, "a DVD medium cannot be empty");
	/* ss divides 2048: the size is a multiple of 2048 when the sector
	 * count is a multiple of the sectors per block. */
	if (sectors % (DVD_BLOCK / ss) != 0)
		return errbuf_printf(err, errlen,
				     "a DVD medium must be a multiple of %u bytes; this one has "
				     "%llu bytes", DVD_BLOCK, (unsigned long long)sectors * ss);
	return 0;
}

/* The medium's size in 2048-byte blocks (live: a file may be resized; a
 * partial block at the end is not part of the medium). */
static uint64_t dvd_blocks(struct disk *d)
{
	return disk_sector_count(d) >> (DVD_BLOCK_SHIFT - disk_get_info(d)->sector_shift);
}

/* Queues media event @ev (dvd->lock held). A full queue drops its oldest
 * event: what the guest learns last is the current state. */
static void dvd_push_event_locked(struct scsi_dvd *dvd, uint8_t ev)
{
	if (dvd->nevents > 0 && dvd->events[dvd->nevents - 1] == ev)
		return;
	if (dvd->nevents == DVD_EVENTS_MAX) {
		memmove(dvd->events, dvd->events + 1, DVD_EVENTS_MAX - 1);
		dvd->nevents--;
	}
	dvd->events[dvd->nevents++] = ev;
}

int scsi_dvd_new(struct scsi_lu *lu, struct disk *medium, struct scsi_dvd **out, char *err,
		 size_t errlen)
{
	struct scsi_dvd *dvd;
	int r;

	*out = NULL;
	if (medium) {
		r = dvd_check_medium(medium, err, errlen);
		if (r < 0)
			return r;
	}
	dvd = calloc(1, sizeof(*dvd));
	if (!dvd)
		return errbuf_fail(err, errlen, -ENOMEM, "out of memory");
	r = -pthread_mutex_init(&dvd->lock, NULL);
	if (r < 0) {
		free(dvd);
		return errbuf_fail(err, errlen, r, "cannot make the DVD's lock");
	}
	dvd->lu = lu;
	/* A drive that powers on with a disc in it has no media event to
	 * report: the power-on unit attention tells the initiator to look. */
	dvd->medium = medium ? disk_ref(medium) : NULL;
	*out = dvd;
	return 0;
}

void scsi_dvd_free(struct scsi_dvd *dvd)
{
	if (!dvd)
		return;
	disk_unref(dvd->medium);
	disk_unref(dvd->ejected);
	pthread_mutex_destroy(&dvd->lock);
	free(dvd);
}

bool scsi_dvd_has_medium(const struct scsi_dvd *dvd)
{
	struct scsi_dvd *d = (struct scsi_dvd *)dvd;   /* the lock, not the state */
	bool has;

	pthread_mutex_lock(&d->lock);
	has = d->medium != NULL;
	pthread_mutex_unlock(&d->lock);
	return has;
}

struct disk *scsi_dvd_medium(struct scsi_dvd *dvd)
{
	struct disk *d;

	pthread_mutex_lock(&dvd->lock);
	d = dvd->medium ? disk_ref(dvd->medium) : NULL;
	pthread_mutex_unlock(&dvd->lock);
	return d;
}

int scsi_dvd_change_media(struct scsi_dvd *dvd, struct disk *disk)
{
	struct disk *old, *ejected;
	char err[160];

	if (disk && dvd_check_medium(disk, err, sizeof(err)) < 0) {
		log_msg(LOG_LEVEL_ERROR, "DVD LUN %u: medium refused: %s", scsi_lu_lun(dvd->lu),
			err);
		return -EINVAL;
	}
	pthread_mutex_lock(&dvd->lock);
	old = dvd->medium;
	ejected = dvd->ejected;
	dvd->ejected = NULL;
	dvd->medium = disk ? disk_ref(disk) : NULL;
	if (old)
		dvd_push_event_locked(dvd, DVD_EV_MEDIA_REMOVAL);
	if (disk) {
		/* Loading a disc closes the tray (MMC-6 §4.1.4). */
		dvd->tray_open = false;
		dvd_push_event_locked(dvd, DVD_EV_NEW_MEDIA);
	}
	if (old || disk)
		dvd->op_change = true;
	pthread_mutex_unlock(&dvd->lock);

	disk_unref(old);
	disk_unref(ejected);
	if (disk)
		scsi_lu_ua_all(dvd->lu, NULL, 0x28, 0x00);
	return 0;
}

void scsi_dvd_eject_request(struct scsi_dvd *dvd)
{
	pthread_mutex_lock(&dvd->lock);
	dvd_push_event_locked(dvd, DVD_EV_EJECT_REQUEST);
	pthread_mutex_unlock(&dvd->lock);
}

/* ---- helpers ------------------------------------------------------------------------ */

static struct scsi_dvd *cmd_dvd(const struct scsi_cmd *cmd)
{
	struct scsi_dvd *dvd = scsi_lu_dvd(scsi_cmd_lu(cmd));

	assert(dvd);
	return dvd;
}

/* NOT READY, MEDIUM NOT PRESENT with the tray's state (MMC-6 §F.1). */
static void dvd_not_present(struct scsi_cmd *cmd)
{
	struct scsi_dvd *dvd = cmd_dvd(cmd);
	bool open;

	pthread_mutex_lock(&dvd->lock);
	open = dvd->tray_open;
	pthread_mutex_unlock(&dvd->lock);
	scsi_cmd_sense(cmd, SCSI_SK_NOT_READY, 0x3A, open ? 0x02 : 0x01);
}

/* The command's medium: the core holds a reference until it finishes.
 * Ops without SCSI_OP_NO_MEDIUM never run without one. */
static struct disk *cmd_medium(const struct scsi_cmd *cmd)
{
	struct disk *d = scsi_cmd_disk(cmd);

	assert(d);
	return d;
}

static void dvd_lba_out_of_range(struct scsi_cmd *cmd)
{
	scsi_cmd_sense(cmd, SCSI_SK_ILLEGAL_REQUEST, 0x21, 0x00);
}

/* Writes LBA @lba as MSF (MMC-6 §6.26.3.1: MSF = LBA + 150 frames of
 * 1/75 s), saturating at FFh:3Bh:4Ah for LBAs MSF cannot express. */
static void dvd_put_msf(uint8_t *p, uint64_t lba)
{
	uint64_t f = lba + 150;

	if (f > 255ull * 60 * 75 + 59 * 75 + 74) {
		p[0] = 0;
		p[1] = 0xFF;
		p[2] = 0x3B;
		p[3] = 0x4A;
		return;
	}
	p[0] = 0;
	p[1] = (uint8_t)(f / (60 * 75));
	p[2] = (uint8_t)(f / 75 % 60);
	p[3] = (uint8_t)(f % 75);
}

/* ---- TEST UNIT READY, START STOP UNIT, MECHANISM STATUS ------------------------------ */

static void dvd_test_unit_ready(struct scsi_cmd *cmd)
{
	if (!scsi_cmd_disk(cmd))
		dvd_not_present(cmd);
	scsi_cmd_finish(cmd);
}

/* START STOP UNIT (SBC-3 §5.25 as MMC-6 §6.38 narrows it): LOEJ=1
 * START=0 opens the tray and ejects the medium, LOEJ=1 START=1 closes it
 * and loads what the guest ejected; without LOEJ, and with a power
 * condition, there is nothing to do for a virtual drive. */
static void dvd_start_stop_unit(struct scsi_cmd *cmd)
{
	struct scsi_dvd *dvd = cmd_dvd(cmd);
	uint8_t b4 = cmd->cdb[4];
	bool loej = b4 & 0x02, start = b4 & 0x01;
	struct disk *dropped = NULL;
	bool loaded = false;

	if ((b4 >> 4) != 0 || !loej)
		goto out;
	if (!start) {
		/* MMC-6 §6.38: refused while a PREVENT is in force. */
		if (scsi_lu_removal_blocked(scsi_cmd_lu(cmd))) {
			scsi_cmd_sense(cmd, SCSI_SK_ILLEGAL_REQUEST, 0x53, 0x02);
			goto out;
		}
		pthread_mutex_lock(&dvd->lock);
		if (dvd->medium) {
			dropped = dvd->ejected;
			dvd->ejected = dvd->medium;
			dvd->medium = NULL;
			dvd_push_event_locked(dvd, DVD_EV_MEDIA_REMOVAL);
			dvd->op_change = true;
		}
		dvd->tray_open = true;
		pthread_mutex_unlock(&dvd->lock);
	} else {
		pthread_mutex_lock(&dvd->lock);
		dvd->tray_open = false;
		if (!dvd->medium && dvd->ejected) {
			dvd->medium = dvd->ejected;
			dvd->ejected = NULL;
			dvd_push_event_locked(dvd, DVD_EV_NEW_MEDIA);
			dvd->op_change = true;
			loaded = true;
		}
		pthread_mutex_unlock(&dvd->lock);
		/* This nexus knows; the others learn as after any load. */
		if (loaded)
			scsi_lu_ua_all(dvd->lu, cmd->nexus, 0x28, 0x00);
	}
	disk_unref(dropped);
out:
	scsi_cmd_finish(cmd);
}

/* PREVENT ALLOW MEDIUM REMOVAL as MMC-6 §6.22 extends it: the Persistent
 * bit sets or clears the Persistent Prevent state, which GET EVENT STATUS
 * NOTIFICATION reports; either kind of prevent refuses ejects and host
 * changes (the core keeps the per-nexus prevent). */
static void dvd_prevent_allow(struct scsi_cmd *cmd)
{
	struct scsi_dvd *dvd = cmd_dvd(cmd);
	bool prevent = cmd->cdb[4] & 0x01, persistent = cmd->cdb[4] & 0x02;

	if (persistent) {
		pthread_mutex_lock(&dvd->lock);
		dvd->persistent_prevent = prevent;
		pthread_mutex_unlock(&dvd->lock);
	}
	scsi_lu_set_prevent(cmd, prevent);
	scsi_cmd_finish(cmd);
}

/* MECHANISM STATUS (MMC-6 §6.11): the 8-byte header, no changer slots. */
static void dvd_mechanism_status(struct scsi_cmd *cmd)
{
	struct scsi_dvd *dvd = cmd_dvd(cmd);
	uint8_t buf[8] = { 0 };

	pthread_mutex_lock(&dvd->lock);
	buf[1] = dvd->tray_open ? 0x10 : 0x00;      /* Door open; mechanism idle */
	pthread_mutex_unlock(&dvd->lock);
	scsi_cmd_data_in(cmd, buf, sizeof(buf), ds_get_be16(cmd->cdb + 8));
	scsi_cmd_finish(cmd);
}

/* ---- GET EVENT STATUS NOTIFICATION ------------------------------------------------- */

static void dvd_get_event_status(struct scsi_cmd *cmd)
{
	struct scsi_dvd *dvd = cmd_dvd(cmd);
	size_t alloc = ds_get_be16(cmd->cdb + 7);
	unsigned want = cmd->cdb[4] & DVD_CLASSES;
	uint8_t buf[8] = { 0 };
	unsigned cls;
	/* A poll too short for the descriptor leaves the event queued. */
	bool take = alloc >= sizeof(buf);

	if (!(cmd->cdb[1] & 0x01)) {
		/* Asynchronous notification is not supported (Morphing
		 * feature Async = 0): MMC-6 §6.6.2.1. */
		scsi_cmd_invalid_field(cmd, true, 1, 0);
		goto out;
	}
	buf[3] = DVD_CLASSES;
	if (!want) {
		/* NEA: none of the requested classes is supported. */
		ds_put_be16(buf, 2);
		buf[2] = 0x80;
		scsi_cmd_data_in(cmd, buf, 4, alloc);
		goto out;
	}
	ds_put_be16(buf, 6);

	pthread_mutex_lock(&dvd->lock);
	if ((want & (1u << DVD_CLASS_OPERATIONAL)) && dvd->op_change)
		cls = DVD_CLASS_OPERATIONAL;
	else if ((want & (1u << DVD_CLASS_MEDIA)) && dvd->nevents > 0)
		cls = DVD_CLASS_MEDIA;
	else
		cls = (unsigned)__builtin_ctz(want);      /* no change, lowest class */
	buf[2] = (uint8_t)cls;
	switch (cls) {
	case DVD_CLASS_OPERATIONAL:
		/* MMC-6 §6.6.2.2: Operational Change Occurred, Feature Change. */
		if (dvd->op_change) {
			buf[4] = 0x02;
			ds_put_be16(buf + 6, 0x0001);
			if (take)
				dvd->op_change = false;
		}
		buf[5] = dvd->persistent_prevent ? 0x80 : 0x00;
		break;
	case DVD_CLASS_POWER:
		buf[5] = 0x01;                          /* Active */
		break;
	case DVD_CLASS_MEDIA:
		if (dvd->nevents > 0) {
			buf[4] = dvd->events[0];
			if (take)
				memmove(dvd->events, dvd->events + 1, --dvd->nevents);
		}
		buf[5] = (uint8_t)((dvd->medium ? 0x02 : 0) | (dvd->tray_open ? 0x01 : 0));
		break;
	default:
		break;
	}
	pthread_mutex_unlock(&dvd->lock);
	scsi_cmd_data_in(cmd, buf, sizeof(buf), alloc);
out:
	scsi_cmd_finish(cmd);
}

/* ---- GET CONFIGURATION --------------------------------------------------------------- */

/* Appends a feature header (MMC-6 §5.2.2) at @p; returns its length. */
static size_t dvd_feature(uint8_t *p, uint16_t code, unsigned version, bool persistent,
			  bool current, uint8_t add_len)
{
	ds_put_be16(p, code);
	p[2] = (uint8_t)(version << 2 | (persistent ? 0x02 : 0) | (current ? 0x01 : 0));
	p[3] = add_len;
	return 4 + (size_t)add_len;
}

/*
 * GET CONFIGURATION (MMC-6 §6.6): the features of the DVD-ROM profile
 * (MMC-6 §5.4.8's mandatory list) and CD Read for the CD-ROM profile that
 * any DVD drive also reads, in ascending order. RT 0 lists every feature
 * from the starting one, RT 1 only the current ones, RT 2 just that one.
 */
static void dvd_get_configuration(struct scsi_cmd *cmd)
{
	unsigned rt = cmd->cdb[1] & 0x03;
	uint16_t start = ds_get_be16(cmd->cdb + 2);
	size_t alloc = ds_get_be16(cmd->cdb + 7);
	bool loaded = scsi_cmd_disk(cmd) != NULL;
	uint8_t buf[128] = { 0 };
	size_t n = 8;
	const struct { uint16_t code; bool current; } list[] = {
		{ 0x0000, true },       /* Profile List */
		{ 0x0001, true },       /* Core */
		{ 0x0002, true },       /* Morphing */
		{ 0x0003, true },       /* Removable Medium */
		{ 0x0010, loaded },     /* Random Readable */
		{ 0x001E, false },      /* CD Read: no CD is ever loaded */
		{ 0x001F, loaded },     /* DVD Read */
		{ 0x0100, true },       /* Power Management */
		{ 0x0105, true },       /* Timeout */
		{ 0x0107, loaded },     /* Real Time Streaming */
	};

	if (rt == 3) {
		scsi_cmd_invalid_field(cmd, true, 1, 1);
		goto out;
	}
	ds_put_be16(buf + 6, loaded ? DVD_PROFILE_DVD_ROM : 0);
	for (size_t i = 0; i < ARRAY_SIZE(list); i++) {
		uint16_t code = list[i].code;
		bool cur = list[i].current;
		uint8_t *p = buf + n;

		if (rt == 2 ? code != start : code < start || (rt == 1 && !cur))
			continue;
		switch (code) {
		case 0x0000:
			n += dvd_feature(p, code, 0, true, true, 8);
			ds_put_be16(p + 4, DVD_PROFILE_DVD_ROM);
			p[6] = loaded ? 0x01 : 0x00;        /* CurrentP */
			ds_put_be16(p + 8, DVD_PROFILE_CD_ROM);
			break;
		case 0x0001:
			n += dvd_feature(p, code, 2, true, true, 8);
			ds_put_be32(p + 4, 0x00000001);     /* SCSI family */
			break;
		case 0x0002:
			n += dvd_feature(p, code, 1, true, true, 4);
			p[4] = 0x02;                        /* OCEvent; Async = 0 */
			break;
		case 0x0003:
			n += dvd_feature(p, code, 2, true, true, 4);
			p[4] = 0x20 | 0x10 | 0x08 | 0x01;   /* tray, Load, Eject, Lock */
			break;
		case 0x0010:
			n += dvd_feature(p, code, 0, false, cur, 8);
			ds_put_be32(p + 4, DVD_BLOCK);
			ds_put_be16(p + 8, 16);             /* an ECC block: 16 sectors */
			break;
		case 0x001E:
			n += dvd_feature(p, code, 2, false, cur, 4);
			break;
		case 0x001F:
			n += dvd_feature(p, code, 2, false, cur, 4);
			break;
		case 0x0100:
			n += dvd_feature(p, code, 0, true, true, 0);
			break;
		case 0x0105:
			n += dvd_feature(p, code, 1, true, true, 4);
			break;
		case 0x0107:
			n += dvd_feature(p, code, 5, false, cur, 4);
			p[4] = 0x08;                        /* SCS: SET CD SPEED */
			break;
		default:
			break;
		}
	}
	assert(n <= sizeof(buf));
	/* Data Length counts the bytes after itself (MMC-6 §6.6.2.1). */
	ds_put_be32(buf, (uint32_t)(n - 4));
	scsi_cmd_data_in(cmd, buf, n, alloc);
out:
	scsi_cmd_finish(cmd);
}

/* ---- READ CAPACITY, READ TOC, disc and track information ---------------------------- */

static void dvd_read_capacity(struct scsi_cmd *cmd)
{
	uint64_t blocks = dvd_blocks(cmd_medium(cmd));
	uint8_t buf[8];

	ds_put_be32(buf, blocks - 1 > UINT32_MAX ? UINT32_MAX : (uint32_t)(blocks - 1));
	ds_put_be32(buf + 4, DVD_BLOCK);
	scsi_cmd_data_in(cmd, buf, sizeof(buf), sizeof(buf));
	scsi_cmd_finish(cmd);
}

/* A track descriptor of READ TOC (MMC-6 §6.26.3.2): a data track recorded
 * uninterrupted (ADR 1, CONTROL 4). */
static void dvd_toc_track(uint8_t *p, uint8_t track, uint64_t lba, bool msf)
{
	p[0] = 0;
	p[1] = 0x14;
	p[2] = track;
	p[3] = 0;
	if (msf)
		dvd_put_msf(p + 4, lba);
	else
		ds_put_be32(p + 4, lba > UINT32_MAX ? UINT32_MAX : (uint32_t)lba);
}

/* READ TOC/PMA/ATIP (MMC-6 §6.26): one session holding track 1 over the
 * whole medium, and the lead-out after it. */
static void dvd_read_toc(struct scsi_cmd *cmd)
{
	uint64_t blocks = dvd_blocks(cmd_medium(cmd));
	bool msf = cmd->cdb[1] & 0x02;
	unsigned format = cmd->cdb[2] & 0x0F;
	uint8_t track = cmd->cdb[6];
	size_t alloc = ds_get_be16(cmd->cdb + 7);
	uint8_t buf[20] = { 0 };
	size_t n = 4;

	/* SFF-8020i put the format in bits 7-6 of the CONTROL byte, and
	 * MMC keeps that form when Format is 0; Linux' sr still uses it
	 * for the session info. */
	if (format == 0)
		format = cmd->cdb[9] >> 6;
	switch (format) {
	case 0:         /* formatted TOC */
		if (track > 1 && track != 0xAA) {
			scsi_cmd_invalid_field(cmd, true, 6, -1);
			goto out;
		}
		buf[2] = 1;
		buf[3] = 1;
		if (track <= 1) {
			dvd_toc_track(buf + n, 1, 0, msf);
			n += 8;
		}
		dvd_toc_track(buf + n, 0xAA, blocks, msf);
		n += 8;
		break;
	case 1:         /* session information: the first track of the last session */
		buf[2] = 1;
		buf[3] = 1;
		dvd_toc_track(buf + n, 1, 0, msf);
		n += 8;
		break;
	default:        /* the raw TOC, PMA, ATIP and CD-TEXT are CD only */
		scsi_cmd_invalid_field(cmd, true, 2, 3);
		goto out;
	}
	ds_put_be16(buf, (uint16_t)(n - 2));
	scsi_cmd_data_in(cmd, buf, n, alloc);
out:
	scsi_cmd_finish(cmd);
}

/* READ DISC INFORMATION (MMC-6 §6.22), standard disc information: a
 * complete, finalized, non-erasable disc of one session and one track,
 * unrestricted use. */
static void dvd_read_disc_information(struct scsi_cmd *cmd)
{
	uint8_t buf[34] = { 0 };

	if (cmd->cdb[1] & 0x07) {
		scsi_cmd_invalid_field(cmd, true, 1, 2);
		goto out;
	}
	ds_put_be16(buf, sizeof(buf) - 2);
	buf[2] = 0x0E;          /* last session complete, disc complete */
	buf[3] = 1;             /* first track on the disc */
	buf[4] = 1;             /* sessions */
	buf[5] = 1;             /* first track in the last session */
	buf[6] = 1;             /* last track in the last session */
	buf[7] = 0x20;          /* URU */
	scsi_cmd_data_in(cmd, buf, sizeof(buf), ds_get_be16(cmd->cdb + 7));
out:
	scsi_cmd_finish(cmd);
}

/* READ TRACK INFORMATION (MMC-6 §6.27) of track 1, addressed by an LBA
 * in it, by its number, or by its session's. */
static void dvd_read_track_information(struct scsi_cmd *cmd)
{
	uint64_t blocks = dvd_blocks(cmd_medium(cmd));
	uint32_t num = ds_get_be32(cmd->cdb + 2);
	uint8_t buf[48] = { 0 };

	if (cmd->cdb[1] & 0x04) {
		/* Open: there is no open (invisible) track on a ROM disc. */
		scsi_cmd_invalid_field(cmd, true, 1, 2);
		goto out;
	}
	switch (cmd->cdb[1] & 0x03) {
	case 0:         /* LBA */
		if (num >= blocks) {
			dvd_lba_out_of_range(cmd);
			goto out;
		}
		break;
	case 1:         /* track number */
	case 2:         /* session number */
		if (num != 1) {
			scsi_cmd_invalid_field(cmd, true, 2, -1);
			goto out;
		}
		break;
	default:
		scsi_cmd_invalid_field(cmd, true, 1, 1);
		goto out;
	}
	ds_put_be16(buf, sizeof(buf) - 2);
	buf[2] = 1;             /* track */
	buf[3] = 1;             /* session */
	buf[5] = 0x04;          /* track mode: data, recorded uninterrupted */
	buf[6] = 0x01;          /* data mode 1 */
	ds_put_be32(buf + 20, 16);                 /* blocking factor: an ECC block */
	ds_put_be32(buf + 24, blocks > UINT32_MAX ? UINT32_MAX : (uint32_t)blocks);
	scsi_cmd_data_in(cmd, buf, sizeof(buf), ds_get_be16(cmd->cdb + 7));
out:
	scsi_cmd_finish(cmd);
}

/* ---- MODE SENSE(10) ------------------------------------------------------------------- */

/* The CD/DVD Capabilities and Mechanical Status page (2Ah; MMC-3 §5.5.10,
 * which MMC-6 keeps for legacy hosts: Linux' sr reads its read and eject
 * bits). @current: current values, else the changeable mask (nothing). */
static size_t dvd_page_2a(struct scsi_dvd *dvd, uint8_t *p, bool current)
{
	/* DVD read speed 8x in kB/s (MMC-6 §6.39: 1x DVD is 1385 kB/s). */
	const uint16_t speed = 8 * 1385;
	bool prevented;

	memset(p, 0, 32);
	p[0] = 0x2A;
	p[1] = 30;
	if (!current)
		return 32;
	prevented = scsi_lu_removal_prevented(dvd->lu);
	p[2] = 0x3F;                    /* reads CD-R, CD-RW, Method 2, DVD-ROM, DVD-R, DVD-RAM */
	p[3] = 0x00;                    /* writes nothing */
	p[6] = 0x20 | 0x08 | 0x01 | (prevented ? 0x02 : 0);     /* tray, Eject, Lock, state */
	ds_put_be16(p + 8, speed);      /* maximum read speed (obsolete) */
	ds_put_be16(p + 14, speed);     /* current read speed (obsolete) */
	return 32;
}

static void dvd_mode_sense10(struct scsi_cmd *cmd)
{
	unsigned pc = cmd->cdb[2] >> 6, page = cmd->cdb[2] & 0x3F, sub = cmd->cdb[3];
	uint8_t buf[8 + 32] = { 0 };
	size_t n = 8;

	if (pc == 3) {
		scsi_cmd_sense(cmd, SCSI_SK_ILLEGAL_REQUEST, 0x39, 0x00);
		goto out;
	}
	if (page != 0x2A && page != 0x3F) {
		scsi_cmd_invalid_field(cmd, true, 2, 5);
		goto out;
	}
	if (sub != 0 && !(page == 0x3F && sub == 0xFF)) {
		scsi_cmd_invalid_field(cmd, true, 3, 7);
		goto out;
	}
	n += dvd_page_2a(cmd_dvd(cmd), buf + n, pc != 1);
	/* No block descriptors; medium type and device parameter 0. */
	ds_put_be16(buf, (uint16_t)(n - 2));
	scsi_cmd_data_in(cmd, buf, n, ds_get_be16(cmd->cdb + 7));
out:
	scsi_cmd_finish(cmd);
}

/* ---- performance ---------------------------------------------------------------------- */

/* GET PERFORMANCE (MMC-6 §6.8): one nominal read performance descriptor
 * over the medium; no write performance and no exceptions. */
static void dvd_get_performance(struct scsi_cmd *cmd)
{
	uint64_t blocks = dvd_blocks(cmd_medium(cmd));
	unsigned type = cmd->cdb[10], except = cmd->cdb[1] & 0x03;
	bool write = cmd->cdb[1] & 0x04;
	uint16_t max = ds_get_be16(cmd->cdb + 8);
	const uint32_t kbps = 8 * 1385;
	uint8_t buf[8 + 16] = { 0 };
	size_t n = 8;

	if (type == 0x03) {
		/* Write Speed descriptors: a ROM drive has none. */
	} else if (type != 0x00) {
		scsi_cmd_invalid_field(cmd, true, 10, -1);
		goto out;
	} else if (except == 3) {
		scsi_cmd_invalid_field(cmd, true, 1, 1);
		goto out;
	} else {
		buf[4] = (uint8_t)((write ? 0x02 : 0) | (except ? 0x01 : 0));
		if (!write && except == 0 && max > 0) {
			ds_put_be32(buf + 8, 0);
			ds_put_be32(buf + 12, kbps);
			ds_put_be32(buf + 16, blocks - 1 > UINT32_MAX ? UINT32_MAX
							      : (uint32_t)(blocks - 1));
			ds_put_be32(buf + 20, kbps);
			n += 16;
		}
	}
	ds_put_be32(buf, (uint32_t)(n - 4));
	scsi_cmd_data_in(cmd, buf, n, n);
out:
	scsi_cmd_finish(cmd);
}

/* SET CD SPEED (MMC-6 §6.37): a virtual drive reads at whatever speed the
 * disk gives; accepted and ignored. */
static void dvd_set_cd_speed(struct scsi_cmd *cmd)
{
	scsi_cmd_finish(cmd);
}

/* SET STREAMING (MMC-6 §6.39): the performance descriptor is taken and
 * ignored, as SET CD SPEED. */
static void dvd_set_streaming(struct scsi_cmd *cmd)
{
	uint8_t desc[28];
	uint16_t len = ds_get_be16(cmd->cdb + 9);

	if (cmd->cdb[8] != 0x00 && cmd->cdb[8] != 0x05) {
		scsi_cmd_invalid_field(cmd, true, 8, -1);
		goto out;
	}
	/* Consume what the initiator sent, up to one descriptor. */
	(void)scsi_cmd_data_out(cmd, desc, MIN(len, sizeof(desc)));
	cmd->want_len = len;
out:
	scsi_cmd_finish(cmd);
}

/* ---- READ(10), READ(12) ----------------------------------------------------------------- */

/*
 * A READ's scratch, from the reactor's buffer cache: the iovec list the
 * disk fills (cmd->iov cut to the room the transport gave, then a bounce
 * block when that room ends inside a block), and the bounce block.
 */
struct dvd_read {
	size_t bytes;                   /* size of this scratch */
	uint64_t lba;
	size_t room;                    /* bytes that go to cmd->iov */
	size_t whole;                   /* of which read straight into it */
	uint8_t bounce[DVD_BLOCK];
	struct iovec iov[];
};

static void dvd_read_done(struct disk_io *io)
{
	struct scsi_cmd *cmd = io->opaque;
	struct dvd_read *rd = cmd->core;
	struct reactor *r = reactor_current();

	if (io->status == DISK_OK) {
		if (rd->room > rd->whole)
			iov_from_buf(cmd->iov, cmd->iovcnt, rd->whole, rd->bounce,
				     rd->room - rd->whole);
		cmd->data_len = (uint32_t)rd->room;
	} else {
		scsi_cmd_disk_status(cmd, io, rd->lba);
	}
	cmd->core = NULL;
	disk_io_put(r, io);
	reactor_buf_put(r, rd, rd->bytes);
	scsi_cmd_finish(cmd);
}

static void dvd_read(struct scsi_cmd *cmd, uint64_t lba, uint64_t nblocks)
{
	struct disk *medium = cmd_medium(cmd);
	uint64_t blocks = dvd_blocks(medium);
	struct reactor *r = reactor_current();
	uint64_t want = nblocks * DVD_BLOCK;
	size_t room, bytes;
	struct dvd_read *rd;
	struct disk_io *io;
	int k = 0;

	if (lba > blocks || nblocks > blocks - lba) {
		dvd_lba_out_of_range(cmd);
		goto out;
	}
	room = (size_t)MIN(want, (uint64_t)cmd->xfer_len);
	cmd->want_len = want;
	if (room == 0)
		goto out;

	bytes = sizeof(*rd) + ((size_t)cmd->iovcnt + 1) * sizeof(struct iovec);
	rd = reactor_buf_get(r, bytes, false);
	if (!rd) {
		scsi_cmd_status(cmd, SCSI_BUSY);
		goto out;
	}
	rd->bytes = bytes;
	rd->lba = lba;
	rd->room = room;
	rd->whole = room / DVD_BLOCK * DVD_BLOCK;
	if (rd->whole > 0) {
		k = iov_slice(cmd->iov, cmd->iovcnt, 0, rd->whole, rd->iov, cmd->iovcnt);
		assert(k > 0);
	}
	if (room > rd->whole)
		rd->iov[k++] = (struct iovec){ .iov_base = rd->bounce, .iov_len = DVD_BLOCK };
	io = scsi_cmd_io(cmd, dvd_read_done);
	if (!io) {
		reactor_buf_put(r, rd, bytes);
		scsi_cmd_status(cmd, SCSI_BUSY);
		goto out;
	}
	io->op = DISK_OP_READ;
	io->sector = lba << (DVD_BLOCK_SHIFT - disk_get_info(medium)->sector_shift);
	io->iov = rd->iov;
	io->iovcnt = k;
	cmd->core = rd;
	disk_submit(medium, io);
	return;
out:
	scsi_cmd_finish(cmd);
}

static void dvd_read10(struct scsi_cmd *cmd)
{
	dvd_read(cmd, ds_get_be32(cmd->cdb + 2), ds_get_be16(cmd->cdb + 7));
}

static void dvd_read12(struct scsi_cmd *cmd)
{
	dvd_read(cmd, ds_get_be32(cmd->cdb + 2), ds_get_be32(cmd->cdb + 6));
}

/* ---- the table ------------------------------------------------------------------------- */

/*
 * MMC-6 commands of a DVD-ROM drive (§4.1.1 lists them per feature), and
 * the SPC ones whose DVD meaning differs. The usage data (SPC-4 §6.35.3)
 * marks the CDB bits each handler reads, and the CONTROL byte's as the
 * SPC table does. GET CONFIGURATION and GET EVENT STATUS NOTIFICATION run
 * despite a pending unit attention, as MMC §4.1.6.1 (Unit Attention) asks
 * of them, INQUIRY and REQUEST SENSE: the host polls them
 * to learn about the very media change the attention reports.
 */
const struct scsi_op scsi_mmc_ops[] = {
	{ .opcode = 0x00, .cdb_len = 6, .usage = { 0x00, 0, 0, 0, 0, 0x07 },
	  .flags = SCSI_OP_NO_MEDIUM, .run = dvd_test_unit_ready, .name = "TEST UNIT READY" },
	{ .opcode = 0x1B, .cdb_len = 6, .usage = { 0x1B, 0x01, 0, 0x0F, 0xF3, 0x07 },
	  .flags = SCSI_OP_NO_MEDIUM, .run = dvd_start_stop_unit, .name = "START STOP UNIT" },
	{ .opcode = 0x1E, .cdb_len = 6, .usage = { 0x1E, 0, 0, 0, 0x03, 0x07 },
	  .flags = SCSI_OP_NO_MEDIUM, .run = dvd_prevent_allow,
	  .name = "PREVENT ALLOW MEDIUM REMOVAL" },
	{ .opcode = 0x25, .cdb_len = 10, .usage = { 0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0x07 },
	  .run = dvd_read_capacity, .name = "READ CAPACITY(10)" },
	{ .opcode = 0x28, .cdb_len = 10,
	  .usage = { 0x28, 0x18, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0xFF, 0xFF, 0x07 },
	  .run = dvd_read10, .name = "READ(10)" },
	{ .opcode = 0x43, .cdb_len = 10,
	  .usage = { 0x43, 0x02, 0x0F, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xC7 },
	  .run = dvd_read_toc, .name = "READ TOC/PMA/ATIP" },
	{ .opcode = 0x46, .cdb_len = 10,
	  .usage = { 0x46, 0x03, 0xFF, 0xFF, 0, 0, 0, 0xFF, 0xFF, 0x07 },
	  .flags = SCSI_OP_NO_MEDIUM | SCSI_OP_NO_UA,
	  .run = dvd_get_configuration, .name = "GET CONFIGURATION" },
	{ .opcode = 0x4A, .cdb_len = 10,
	  .usage = { 0x4A, 0x01, 0, 0, 0xFF, 0, 0, 0xFF, 0xFF, 0x07 },
	  .flags = SCSI_OP_NO_MEDIUM | SCSI_OP_NO_UA,
	  .run = dvd_get_event_status, .name = "GET EVENT STATUS NOTIFICATION" },
	{ .opcode = 0x51, .cdb_len = 10,
	  .usage = { 0x51, 0x07, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0x07 },
	  .run = dvd_read_disc_information, .name = "READ DISC INFORMATION" },
	{ .opcode = 0x52, .cdb_len = 10,
	  .usage = { 0x52, 0x07, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0xFF, 0xFF, 0x07 },
	  .run = dvd_read_track_information, .name = "READ TRACK INFORMATION" },
	{ .opcode = 0x5A, .cdb_len = 10,
	  .usage = { 0x5A, 0x18, 0xFF, 0xFF, 0, 0, 0, 0xFF, 0xFF, 0x07 },
	  .flags = SCSI_OP_NO_MEDIUM, .run = dvd_mode_sense10, .name = "MODE SENSE(10)" },
	{ .opcode = 0xA8, .cdb_len = 12,
	  .usage = { 0xA8, 0x18, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0x07 },
	  .run = dvd_read12, .name = "READ(12)" },
	{ .opcode = 0xAC, .cdb_len = 12,
	  .usage = { 0xAC, 0x1F, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0xFF, 0xFF, 0xFF, 0x07 },
	  .run = dvd_get_performance, .name = "GET PERFORMANCE" },
	{ .opcode = 0xB6, .cdb_len = 12,
	  .usage = { 0xB6, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0x07 },
	  .flags = SCSI_OP_NO_MEDIUM, .run = dvd_set_streaming, .name = "SET STREAMING" },
	{ .opcode = 0xBB, .cdb_len = 12,
	  .usage = { 0xBB, 0x03, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0, 0, 0x07 },
	  .flags = SCSI_OP_NO_MEDIUM, .run = dvd_set_cd_speed, .name = "SET CD SPEED" },
	{ .opcode = 0xBD, .cdb_len = 12,
	  .usage = { 0xBD, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0, 0x07 },
	  .flags = SCSI_OP_NO_MEDIUM, .run = dvd_mechanism_status, .name = "MECHANISM STATUS" },
	{ .run = NULL },
};
