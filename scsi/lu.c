/* SPDX-License-Identifier: MIT */
/*
 * lu.c: targets, logical units, I_T nexuses, unit attentions and the
 * command dispatcher of the SCSI core (docs/scsi.md).
 *
 * Notes on the design
 * -------------------
 * - A target holds a fixed table of SCSI_MAX_LUNS LU pointers and the
 *   list of its nexuses under target->lock. A slot is published with a
 *   release store under the lock and read with an acquire load and no
 *   lock, so an LU added while nexuses run (hot-add, which a transport
 *   announces to its initiator through the event listener) appears whole
 *   or not at all.
 * - Hot-remove (scsi_target_remove_lu) empties the slot, then waits for
 *   lu->inflight, the commands that hold the LU, to drain. A command
 *   counts itself in inflight and then reads the slot again: either it
 *   sees the LU still there (and the remover, whose store comes later in
 *   the single total order of these seq_cst operations, sees the count),
 *   or it backs out and answers as for an absent LUN. Because a command
 *   may still touch the count after loading a stale pointer, the LU's
 *   memory is kept (t->retired) until the target is freed; its disk,
 *   PR state and watches are released at once.
 * - Per (LU, nexus) state — the unit-attention queue and the PREVENT bit —
 *   lives in the nexus (one struct itl per LUN, so no allocation when a
 *   UA is queued) and is protected by that LU's lock. The LU's shared
 *   state (the SPC-2 reservation holder, the number of nexuses that
 *   prevent removal, the mode parameters) is under the same lock.
 *   Lock order: target->lock, then lu->lock; the disk's resize-watch lock
 *   comes before both (the watch callback takes them).
 * - A command's state (where done() must run, which LU and op, the DVD
 *   medium reference) lives in scsi_cmd.core_ctx: nothing is allocated
 *   per command. scsi_cmd_finish calls done() directly when the command
 *   ends after scsi_cmd_submit returned (a disk completion), and defers
 *   it with a reactor task when the handler ends it inside submit.
 * - Unit attentions follow SAM-5 §5.14: queued per I_T nexus and LU,
 *   reported once each, oldest first, to the next command other than
 *   INQUIRY, REPORT LUNS and REQUEST SENSE; a reset (29h/xx) supersedes
 *   whatever was queued before it. The queue holds UA_MAX entries and
 *   drops duplicates; when it is full, a new condition is dropped (what
 *   the initiator re-reads after the reset or capacity UA it has is the
 *   whole state anyway).
 */
#include "config.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>


#include "common/ascii.h"
#include "common/compiler.h"
#include "common/hash.h"
#include "common/log.h"
#include "common/reactor.h"
#include "scsi/internal.h"

#define UA_MAX 8

/* The REPORT LUNS well-known logical unit (SPC-4 §8.2): W-LUN C101h in
 * extended addressing (SAM-5 §4.7.8). */
#define WLUN_REPORT_LUNS 0xC101000000000000ull

/* Per (LU, nexus) state, under the LU's lock. */
struct itl {
	uint8_t ua_asc[UA_MAX], ua_ascq[UA_MAX];
	uint8_t nua;
	bool prevent;
};

struct scsi_nexus {
	struct scsi_target *t;
	struct scsi_initiator_id id;
	struct disk_initiator dinit;
	struct scsi_nexus *next, *prev;     /* under t->lock */
	atomic_uint inflight;               /* commands submitted and not finished */
	bool (*gone)(void *opaque);         /* scsi_nexus_set_probe, or NULL */
	void *gone_opaque;
	struct itl itl[SCSI_MAX_LUNS];
};

struct scsi_target {
	char *name;
	struct scsi_lu *luns[SCSI_MAX_LUNS]; /* see the notes */
	pthread_mutex_t lock;               /* protects the nexus list, the listener */
	struct scsi_nexus *nexuses;
	bool had_nexus;
	scsi_event_fn *event_fn;            /* the transport's listener, or NULL */
	void *event_opaque;
	struct scsi_lu *retired;            /* removed LUs, freed with the target (notes) */
};

struct scsi_lu {
	pthread_mutex_t lock;               /* see the notes */
	struct scsi_target *t;              /* set by scsi_target_add_lu */
	unsigned lun;
	enum scsi_lu_type type;
	struct scsi_lu_opts opts;           /* strings point into the buffers below */
	char vendor[9], product[17], revision[5], serial[65];
	struct disk *disk;                  /* disk LU: our reference; DVD: NULL */
	uint32_t block_size;
	bool read_only;
	uint8_t uid[16];
	bool has_uid;                       /* from the disk id; else made in add_lu */
	struct scsi_pr *pr;
	struct scsi_dvd *dvd;
	struct scsi_sbc *sbc;
	struct disk_resize_watch watch;
	bool watching;
	const struct scsi_op *const *tables;
	/* Under @lock: */
	const struct scsi_nexus *spc2_holder;
	unsigned prevent_count;
	bool wce_default;
	atomic_bool wce;                    /* read on every write without the lock */
	atomic_bool swp;                    /* the control page's SWP */
	atomic_bool ejected;                /* a removable disk's medium is out */
	atomic_uint inflight;               /* commands holding the LU (notes: hot-remove) */
	struct scsi_lu *next_retired;       /* under t->lock */
};

/* lu.c's per-command state, in scsi_cmd.core_ctx. */
struct cmd_state {
	struct reactor_task task;
	struct reactor *r;
	struct scsi_lu *lu;
	const struct scsi_op *op;
	struct disk *medium;                /* DVD: a reference for the command */
	bool in_submit, finished;
};
_Static_assert(sizeof(struct cmd_state) <= sizeof(((struct scsi_cmd *)0)->core_ctx),
	       "struct cmd_state must fit in scsi_cmd.core_ctx");

static struct cmd_state *cmd_state(const struct scsi_cmd *cmd)
{
	return (struct cmd_state *)(void *)cmd->core_ctx;
}

static const struct scsi_op *const disk_tables[] = { scsi_sbc_ops, scsi_spc_ops, NULL };
static const struct scsi_op *const dvd_tables[] = { scsi_mmc_ops, scsi_spc_ops, NULL };
static const struct scsi_op *const absent_tables[] = { scsi_spc_ops, NULL };

/* ---- small helpers ------------------------------------------------------------- */

int scsi_port_disk_initiator(enum scsi_protocol proto, const char *port, struct disk_initiator *out)
{
	uint8_t p = (uint8_t)proto;

	memset(out, 0, sizeof(*out));
	ds_hash16(&p, 1, port, strnlen(port, 255), out->host_id);
	out->host_id_len = 16;
	return 0;
}

int scsi_op_bad_field(const struct scsi_op *op, const uint8_t *cdb, int *bit)
{
	for (unsigned i = 1; i < op->cdb_len; i++) {
		uint8_t allowed = op->usage[i];
		uint8_t bad;

		if (i == 1 && op->has_sa)
			allowed |= 0x1f;
		bad = cdb[i] & (uint8_t)~allowed;
		if (bad) {
			*bit = 31 - __builtin_clz(bad);
			return (int)i;
		}
	}
	return -1;
}

/* Copies @s (NULL: @def) into @buf of @n bytes + NUL, space padded. */
static void pad_copy(char *buf, size_t n, const char *s, const char *def)
{
	size_t l;

	if (!s)
		s = def;
	l = strnlen(s, n);
	memcpy(buf, s, l);
	memset(buf + l, ' ', n - l);
	buf[n] = '\0';
}

/* Queues @asc/@ascq on @it (the LU's lock held). */
static void itl_queue_ua(struct itl *it, uint8_t asc, uint8_t ascq)
{
	if (asc == 0x29)        /* a reset supersedes what came before it */
		it->nua = 0;
	for (unsigned i = 0; i < it->nua; i++)
		if (it->ua_asc[i] == asc && it->ua_ascq[i] == ascq)
			return;
	if (it->nua == UA_MAX)
		return;
	it->ua_asc[it->nua] = asc;
	it->ua_ascq[it->nua] = ascq;
	it->nua++;
}

static bool itl_take_ua(struct itl *it, uint8_t *asc, uint8_t *ascq)
{
	if (!it->nua)
		return false;
	*asc = it->ua_asc[0];
	*ascq = it->ua_ascq[0];
	it->nua--;
	memmove(it->ua_asc, it->ua_asc + 1, it->nua);
	memmove(it->ua_ascq, it->ua_ascq + 1, it->nua);
	return true;
}

/* ---- logical units ------------------------------------------------------------- */

/* Tells the target's listener (t->lock held). */
static void target_event_locked(struct scsi_target *t, unsigned lun, enum scsi_event ev)
{
	if (t->event_fn)
		t->event_fn(t->event_opaque, lun, ev);
}

static void target_event(struct scsi_target *t, unsigned lun, enum scsi_event ev)
{
	pthread_mutex_lock(&t->lock);
	target_event_locked(t, lun, ev);
	pthread_mutex_unlock(&t->lock);
}

static void lu_resize_cb(struct disk_resize_watch *w, uint64_t new_count)
{
	struct scsi_lu *lu = w->opaque;

	w->seen_count = new_count;
	/* SBC-3 §4.10 (and SPC-4 table for ASC 2Ah/09h): every nexus learns
	 * of the new capacity on its next command. */
	scsi_lu_ua_all(lu, NULL, 0x2A, 0x09);
	if (lu->t)
		target_event(lu->t, lu->lun, SCSI_EVENT_CAPACITY_CHANGED);
}

static const char *lu_default_product(enum scsi_lu_type type)
{
	return type == SCSI_LU_DVD ? "VIRTUAL DVD" : "VIRTUAL DISK";
}

int scsi_lu_new(struct disk *disk, const struct scsi_lu_opts *o, struct scsi_lu **out,
		char *err, size_t errlen)
{
	static const struct scsi_lu_opts defaults = { .type = SCSI_LU_DISK };
	struct scsi_lu *lu;
	int r;

	if (!o)
		o = &defaults;
	*out = NULL;
	if (o->type != SCSI_LU_DISK && o->type != SCSI_LU_DVD)
		return errbuf_printf(err, errlen, "unknown logical unit type %d", (int)o->type);
	if (o->type == SCSI_LU_DISK && !disk)
		return errbuf_printf(err, errlen, "a disk logical unit needs a disk");
	if (!ascii_printable(o->vendor, 8) || !ascii_printable(o->product, 16) ||
	    !ascii_printable(o->revision, 4) || !ascii_printable(o->serial, 64))
		return errbuf_printf(err, errlen, "INQUIRY vendor/product/revision/serial must be "
				     "printable ASCII of at most 8/16/4/64 characters");
	if (disk && o->type == SCSI_LU_DISK && disk_sector_size(disk) != 512 &&
	    disk_sector_size(disk) != 4096)
		return errbuf_printf(err, errlen, "a SCSI disk needs 512- or 4096-byte sectors, not %u",
				     disk_sector_size(disk));
	if (disk && o->type == SCSI_LU_DVD &&
	    (disk_sector_count(disk) << disk_get_info(disk)->sector_shift) % 2048)
		return errbuf_printf(err, errlen, "a DVD image must be a multiple of 2048 bytes");

	lu = calloc(1, sizeof(*lu));
	if (!lu)
		return errbuf_fail(err, errlen, -ENOMEM, "out of memory");
	r = -pthread_mutex_init(&lu->lock, NULL);
	if (r < 0) {
		free(lu);
		return errbuf_fail(err, errlen, r, "cannot create a lock: %s", strerror(-r));
	}
	lu->type = o->type;
	lu->opts = *o;
	pad_copy(lu->vendor, 8, o->vendor, "DISKSTCK");
	pad_copy(lu->product, 16, o->product, lu_default_product(o->type));
	pad_copy(lu->revision, 4, o->revision, PACKAGE_VERSION);
	lu->opts.vendor = lu->vendor;
	lu->opts.product = lu->product;
	lu->opts.revision = lu->revision;
	lu->opts.pr_state_path = NULL;  /* borrowed during this call only */
	if (o->serial)
		snprintf(lu->serial, sizeof(lu->serial), "%s", o->serial);
	lu->opts.serial = lu->serial;   /* filled in by scsi_target_add_lu when empty */

	if (o->type == SCSI_LU_DISK) {
		const struct disk_info *info = disk_get_info(disk);

		lu->tables = disk_tables;
		lu->disk = disk_ref(disk);
		lu->block_size = info->sector_size;
		lu->read_only = info->read_only;
		lu->wce_default = info->caps & DISK_CAP_VOLATILE_CACHE;
		atomic_store(&lu->wce, lu->wce_default);
		if (info->has_disk_id) {
			memcpy(lu->uid, info->disk_id, 16);
			lu->has_uid = true;
		}
		r = scsi_pr_new(lu, disk, o->pr_state_path, &lu->pr, err, errlen);
		if (r < 0)
			goto fail;
		r = scsi_sbc_lu_init(lu, &lu->sbc);
		if (r < 0) {
			errbuf_fail(err, errlen, r, "cannot set up the disk's commands: %s",
				    strerror(-r));
			goto fail;
		}
		lu->watch.cb = lu_resize_cb;
		lu->watch.opaque = lu;
		lu->watch.seen_count = disk_sector_count(disk);
		lu->watching = disk_watch_resize(disk, &lu->watch) == 0;
	} else {
		lu->tables = dvd_tables;
		lu->block_size = 2048;
		lu->read_only = true;
		lu->opts.removable = true;
		r = scsi_dvd_new(lu, disk, &lu->dvd, err, errlen);
		if (r < 0)
			goto fail;
	}
	*out = lu;
	return 0;

fail:
	scsi_lu_free(lu);
	return r;
}

/* Releases what @lu holds besides its memory and lock (hot-remove keeps
 * those: see the notes). */
static void lu_release(struct scsi_lu *lu)
{
	if (lu->watching)
		disk_unwatch_resize(lu->disk, &lu->watch);
	lu->watching = false;
	if (lu->sbc)
		scsi_sbc_lu_fini(lu->sbc);
	lu->sbc = NULL;
	scsi_pr_free(lu->pr);
	lu->pr = NULL;
	scsi_dvd_free(lu->dvd);
	lu->dvd = NULL;
	disk_unref(lu->disk);
	lu->disk = NULL;
}

void scsi_lu_free(struct scsi_lu *lu)
{
	if (!lu)
		return;
	lu_release(lu);
	pthread_mutex_destroy(&lu->lock);
	free(lu);
}

int scsi_lu_change_media(struct scsi_lu *lu, struct disk *disk, bool force)
{
	int ret;

	if (lu->type != SCSI_LU_DVD)
		return -EINVAL;
	if (!force && scsi_lu_removal_blocked(lu)) {
		scsi_dvd_eject_request(lu->dvd);
		return -EBUSY;
	}
	ret = scsi_dvd_change_media(lu->dvd, disk);
	if (ret == 0 && lu->t)
		target_event(lu->t, lu->lun, SCSI_EVENT_MEDIA_CHANGED);
	return ret;
}

enum scsi_lu_type scsi_lu_type(const struct scsi_lu *lu) { return lu->type; }
const struct scsi_lu_opts *scsi_lu_opts(const struct scsi_lu *lu) { return &lu->opts; }
unsigned scsi_lu_lun(const struct scsi_lu *lu) { return lu->lun; }
struct scsi_target *scsi_lu_target(const struct scsi_lu *lu) { return lu->t; }
uint32_t scsi_lu_block_size(const struct scsi_lu *lu) { return lu->block_size; }
bool scsi_lu_wce(const struct scsi_lu *lu) { return atomic_load_explicit(&lu->wce, memory_order_relaxed); }
bool scsi_lu_wce_default(const struct scsi_lu *lu) { return lu->wce_default; }
bool scsi_lu_read_only(const struct scsi_lu *lu)
{
	return lu->read_only || atomic_load_explicit(&lu->swp, memory_order_relaxed);
}
bool scsi_lu_swp(const struct scsi_lu *lu) { return atomic_load(&lu->swp); }
void scsi_lu_set_swp(struct scsi_lu *lu, bool swp) { atomic_store(&lu->swp, swp); }
bool scsi_lu_loaded(const struct scsi_lu *lu) { return !atomic_load(&lu->ejected); }
void scsi_lu_set_loaded(struct scsi_lu *lu, bool loaded) { atomic_store(&lu->ejected, !loaded); }
struct scsi_pr *scsi_lu_pr(const struct scsi_lu *lu) { return lu->pr; }
struct scsi_dvd *scsi_lu_dvd(const struct scsi_lu *lu) { return lu->dvd; }
struct scsi_sbc *scsi_lu_sbc(const struct scsi_lu *lu) { return lu->sbc; }

const struct scsi_op *const *scsi_lu_op_tables(const struct scsi_lu *lu)
{
	return lu ? lu->tables : absent_tables;
}

void scsi_lu_set_wce(struct scsi_lu *lu, bool wce)
{
	atomic_store(&lu->wce, wce);
}

bool scsi_lu_removal_prevented(const struct scsi_lu *lu)
{
	struct scsi_lu *l = (struct scsi_lu *)lu;
	bool r;

	pthread_mutex_lock(&l->lock);
	r = l->prevent_count > 0;
	pthread_mutex_unlock(&l->lock);
	return r;
}

static void nexus_loss_locked(struct scsi_nexus *n, int ua_ascq);

bool scsi_lu_removal_blocked(struct scsi_lu *lu)
{
	struct scsi_target *t = lu->t;
	bool r = scsi_lu_removal_prevented(lu);

	if (!r || !t)
		return r;
	/* Rare path: some nexus prevents removal. One whose initiator has
	 * already closed its connection is lost (SAM-5 §6.3.4) even if its
	 * transport's thread has not run since; its loss is done here, once
	 * more later by scsi_nexus_free, which finds nothing left to drop. */
	pthread_mutex_lock(&t->lock);
	for (struct scsi_nexus *n = t->nexuses; n; n = n->next) {
		bool holds;

		pthread_mutex_lock(&lu->lock);
		holds = n->itl[lu->lun].prevent;
		pthread_mutex_unlock(&lu->lock);
		if (holds && n->gone && n->gone(n->gone_opaque))
			nexus_loss_locked(n, -1);
	}
	r = scsi_lu_removal_prevented(lu);
	pthread_mutex_unlock(&t->lock);
	return r;
}

void scsi_lu_uid(const struct scsi_lu *lu, uint8_t uid[16])
{
	memcpy(uid, lu->uid, 16);
}

/* ---- targets ---------------------------------------------------------------------- */

int scsi_target_new(const char *name, struct scsi_target **out)
{
	struct scsi_target *t = calloc(1, sizeof(*t));

	*out = NULL;
	if (!t)
		return -ENOMEM;
	t->name = strdup(name ? name : "");
	if (!t->name) {
		free(t);
		return -ENOMEM;
	}
	if (pthread_mutex_init(&t->lock, NULL)) {
		free(t->name);
		free(t);
		return -ENOMEM;
	}
	*out = t;
	return 0;
}

/* REPORTED LUNS DATA HAS CHANGED (SPC-4 §6.33, 3Fh/0Eh) for every
 * nexus on every LU the target has now. Under t->lock. */
static void target_queue_inventory_ua_locked(struct scsi_target *t)
{
	for (struct scsi_nexus *n = t->nexuses; n; n = n->next) {
		for (unsigned i = 0; i < SCSI_MAX_LUNS; i++) {
			struct scsi_lu *o = t->luns[i];

			if (!o)
				continue;
			pthread_mutex_lock(&o->lock);
			itl_queue_ua(&n->itl[i], 0x3F, 0x0E);
			pthread_mutex_unlock(&o->lock);
		}
	}
}

int scsi_target_add_lu(struct scsi_target *t, unsigned lun, struct scsi_lu *lu)
{
	char tag[16];

	if (lun >= SCSI_MAX_LUNS) {
		scsi_lu_free(lu);
		return -EINVAL;
	}
	if (scsi_target_lu(t, lun)) {
		scsi_lu_free(lu);
		return -EEXIST;
	}
	lu->lun = lun;
	/* Without a disk id the LU's identity comes from where it is: the
	 * same target name and LUN give the same designators every run. */
	if (!lu->has_uid) {
		snprintf(tag, sizeof(tag), "/lun/%u", lun);
		ds_hash16(t->name, strlen(t->name), tag, strlen(tag), lu->uid);
		lu->has_uid = true;
	}
	if (!lu->serial[0])
		for (unsigned i = 0; i < 16; i++)
			snprintf(lu->serial + 2 * i, 3, "%02x", lu->uid[i]);
	pthread_mutex_lock(&t->lock);
	if (t->luns[lun]) {
		pthread_mutex_unlock(&t->lock);
		scsi_lu_free(lu);
		return -EEXIST;
	}
	/* The resize watch may fire from now on: it reads lu->t. */
	pthread_mutex_lock(&lu->lock);
	lu->t = t;
	pthread_mutex_unlock(&lu->lock);
	if (t->had_nexus) {
		/* Hot-add. The new LU starts as after power on for every
		 * nexus; the others report the new inventory (SPC-4 §6.33:
		 * REPORTED LUNS DATA HAS CHANGED, 3Fh/0Eh). */
		for (struct scsi_nexus *n = t->nexuses; n; n = n->next)
			itl_queue_ua(&n->itl[lun], 0x29, 0x00);
		target_queue_inventory_ua_locked(t);
	}
	__atomic_store_n(&t->luns[lun], lu, __ATOMIC_RELEASE);
	if (t->had_nexus)
		target_event_locked(t, lun, SCSI_EVENT_LUN_ADDED);
	pthread_mutex_unlock(&t->lock);
	return 0;
}

struct scsi_lu *scsi_target_lu(const struct scsi_target *t, unsigned lun)
{
	return lun < SCSI_MAX_LUNS ? __atomic_load_n(&t->luns[lun], __ATOMIC_ACQUIRE) : NULL;
}

int scsi_target_remove_lu(struct scsi_target *t, unsigned lun)
{
	struct scsi_lu *lu;

	if (lun >= SCSI_MAX_LUNS)
		return -ENOENT;
	pthread_mutex_lock(&t->lock);
	lu = t->luns[lun];
	if (!lu) {
		pthread_mutex_unlock(&t->lock);
		return -ENOENT;
	}
	__atomic_store_n(&t->luns[lun], NULL, __ATOMIC_SEQ_CST);
	/* SPC-4 §6.33: the other LUs report the new inventory; the slot's
	 * per-nexus state goes, so that a LU added there later starts
	 * clean (hot-add queues its power-on UA). */
	target_queue_inventory_ua_locked(t);
	if (t->had_nexus)
		target_event_locked(t, lun, SCSI_EVENT_LUN_REMOVED);
	lu->next_retired = t->retired;
	t->retired = lu;
	pthread_mutex_unlock(&t->lock);

	/* Drain: commands already past the slot finish normally (a disk
	 * request cannot be recalled); new ones see the LUN absent. */
	while (atomic_load(&lu->inflight) != 0) {
		struct timespec ts = { .tv_nsec = 1000000 };

		nanosleep(&ts, NULL);
	}
	pthread_mutex_lock(&t->lock);
	pthread_mutex_lock(&lu->lock);
	for (struct scsi_nexus *n = t->nexuses; n; n = n->next)
		n->itl[lun] = (struct itl){ 0 };
	lu->prevent_count = 0;
	lu->spc2_holder = NULL;
	pthread_mutex_unlock(&lu->lock);
	pthread_mutex_unlock(&t->lock);
	lu_release(lu);
	return 0;
}

void scsi_target_set_event_fn(struct scsi_target *t, scsi_event_fn *fn, void *opaque)
{
	pthread_mutex_lock(&t->lock);
	t->event_fn = fn;
	t->event_opaque = opaque;
	pthread_mutex_unlock(&t->lock);
}

const char *scsi_target_name(const struct scsi_target *t)
{
	return t->name;
}

void scsi_target_free(struct scsi_target *t)
{
	if (!t)
		return;
	assert(!t->nexuses);
	for (unsigned i = 0; i < SCSI_MAX_LUNS; i++)
		scsi_lu_free(t->luns[i]);
	while (t->retired) {
		struct scsi_lu *lu = t->retired;

		t->retired = lu->next_retired;
		scsi_lu_free(lu);
	}
	pthread_mutex_destroy(&t->lock);
	free(t->name);
	free(t);
}

/* ---- nexuses --------------------------------------------------------------------- */

int scsi_nexus_new(struct scsi_target *t, const struct scsi_initiator_id *id,
		   struct scsi_nexus **out)
{
	struct scsi_nexus *n = calloc(1, sizeof(*n));

	*out = NULL;
	if (!n)
		return -ENOMEM;
	n->t = t;
	n->id = *id;
	n->id.name[sizeof(n->id.name) - 1] = '\0';
	n->id.port[sizeof(n->id.port) - 1] = '\0';
	/* The port name identifies the I_T nexus (SPC-4 §7.6.4.6); a name
	 * without a port (a transport with one port per initiator) stands
	 * for itself. */
	scsi_port_disk_initiator(n->id.protocol, n->id.port[0] ? n->id.port : n->id.name,
				 &n->dinit);
	pthread_mutex_lock(&t->lock);
	/* SAM-5 §5.14: a new nexus first hears of the "reset" it saw. */
	for (unsigned i = 0; i < SCSI_MAX_LUNS; i++)
		if (t->luns[i])
			itl_queue_ua(&n->itl[i], 0x29, 0x00);
	t->had_nexus = true;
	n->next = t->nexuses;
	if (t->nexuses)
		t->nexuses->prev = n;
	t->nexuses = n;
	pthread_mutex_unlock(&t->lock);
	*out = n;
	return 0;
}

/* I_T nexus loss (SAM-5 §6.3.4, SPC-2 §5.5.1): the nexus's SPC-2
 * reservation and its PREVENT go; persistent reservations stay. With
 * @ua_ascq the nexus stays and gets 29h/@ua_ascq on every LU. t->lock held. */
static void nexus_loss_locked(struct scsi_nexus *n, int ua_ascq)
{
	struct scsi_target *t = n->t;

	for (unsigned i = 0; i < SCSI_MAX_LUNS; i++) {
		struct scsi_lu *lu = t->luns[i];

		if (!lu)
			continue;
		pthread_mutex_lock(&lu->lock);
		if (lu->spc2_holder == n)
			lu->spc2_holder = NULL;
		if (n->itl[i].prevent) {
			n->itl[i].prevent = false;
			lu->prevent_count--;
		}
		if (ua_ascq >= 0)
			itl_queue_ua(&n->itl[i], 0x29, (uint8_t)ua_ascq);
		pthread_mutex_unlock(&lu->lock);
	}
}

void scsi_nexus_free(struct scsi_nexus *n)
{
	struct scsi_target *t;

	if (!n)
		return;
	t = n->t;
	assert(atomic_load(&n->inflight) == 0);
	pthread_mutex_lock(&t->lock);
	if (n->prev)
		n->prev->next = n->next;
	else
		t->nexuses = n->next;
	if (n->next)
		n->next->prev = n->prev;
	nexus_loss_locked(n, -1);
	pthread_mutex_unlock(&t->lock);
	free(n);
}

void scsi_nexus_set_probe(struct scsi_nexus *n, bool (*gone)(void *opaque), void *opaque)
{
	pthread_mutex_lock(&n->t->lock);
	n->gone = gone;
	n->gone_opaque = opaque;
	pthread_mutex_unlock(&n->t->lock);
}

void scsi_nexus_reset(struct scsi_nexus *n)
{
	pthread_mutex_lock(&n->t->lock);
	/* SAM-5 §7.7: I_T NEXUS LOSS OCCURRED (29h/07h). */
	nexus_loss_locked(n, 0x07);
	pthread_mutex_unlock(&n->t->lock);
}

const struct scsi_initiator_id *scsi_nexus_id(const struct scsi_nexus *n)
{
	return &n->id;
}

const struct disk_initiator *scsi_nexus_disk_initiator(const struct scsi_nexus *n)
{
	return &n->dinit;
}

/* ---- unit attentions ------------------------------------------------------------- */

/* Queues @asc/@ascq on @lu for every nexus of its target that @match
 * accepts (with @arg, @len), under the target's and the LU's locks. */
static void lu_ua_where(struct scsi_lu *lu,
			bool (*match)(const struct scsi_nexus *n, const void *arg, size_t len),
			const void *arg, size_t len, uint8_t asc, uint8_t ascq)
{
	struct scsi_target *t = lu->t;

	if (!t)
		return;
	pthread_mutex_lock(&t->lock);
	pthread_mutex_lock(&lu->lock);
	for (struct scsi_nexus *n = t->nexuses; n; n = n->next)
		if (match(n, arg, len))
			itl_queue_ua(&n->itl[lu->lun], asc, ascq);
	pthread_mutex_unlock(&lu->lock);
	pthread_mutex_unlock(&t->lock);
}

static bool lu_nexus_other(const struct scsi_nexus *n, const void *except, size_t len)
{
	(void)len;
	return n != except;
}

static bool lu_nexus_of_host(const struct scsi_nexus *n, const void *host_id, size_t len)
{
	return n->dinit.host_id_len == len && !memcmp(n->dinit.host_id, host_id, len);
}

void scsi_lu_ua_all(struct scsi_lu *lu, const struct scsi_nexus *except, uint8_t asc,
		    uint8_t ascq)
{
	lu_ua_where(lu, lu_nexus_other, except, 0, asc, ascq);
}

void scsi_lu_ua_host(struct scsi_lu *lu, const uint8_t *host_id, size_t len, uint8_t asc,
		     uint8_t ascq)
{
	lu_ua_where(lu, lu_nexus_of_host, host_id, len, asc, ascq);
}

bool scsi_cmd_take_ua(struct scsi_cmd *cmd, uint8_t *asc, uint8_t *ascq)
{
	struct scsi_lu *lu = cmd_state(cmd)->lu;
	bool r;

	if (!lu)
		return false;
	pthread_mutex_lock(&lu->lock);
	r = itl_take_ua(&cmd->nexus->itl[lu->lun], asc, ascq);
	pthread_mutex_unlock(&lu->lock);
	return r;
}

/* ---- reservations and PREVENT ------------------------------------------------------ */

bool scsi_lu_spc2_reserve(struct scsi_cmd *cmd)
{
	struct scsi_lu *lu = cmd_state(cmd)->lu;
	bool ok;

	pthread_mutex_lock(&lu->lock);
	ok = !lu->spc2_holder || lu->spc2_holder == cmd->nexus;
	if (ok)
		lu->spc2_holder = cmd->nexus;
	pthread_mutex_unlock(&lu->lock);
	return ok;
}

void scsi_lu_spc2_release(struct scsi_cmd *cmd)
{
	struct scsi_lu *lu = cmd_state(cmd)->lu;

	pthread_mutex_lock(&lu->lock);
	if (lu->spc2_holder == cmd->nexus)
		lu->spc2_holder = NULL;
	pthread_mutex_unlock(&lu->lock);
}

void scsi_lu_set_prevent(struct scsi_cmd *cmd, bool prevent)
{
	struct scsi_lu *lu = cmd_state(cmd)->lu;
	struct itl *it = &cmd->nexus->itl[lu->lun];

	pthread_mutex_lock(&lu->lock);
	if (prevent != it->prevent) {
		it->prevent = prevent;
		if (prevent)
			lu->prevent_count++;
		else
			lu->prevent_count--;
	}
	pthread_mutex_unlock(&lu->lock);
}

/* ---- task management --------------------------------------------------------------- */

/* Resets @lu (target->lock held): SAM-5 §6.3.3 and SPC-2 §5.5.1. */
static void lu_reset_locked(struct scsi_lu *lu, uint8_t ascq)
{
	struct scsi_target *t = lu->t;

	pthread_mutex_lock(&lu->lock);
	lu->spc2_holder = NULL;
	lu->prevent_count = 0;
	atomic_store(&lu->wce, lu->wce_default);
	atomic_store(&lu->swp, false);
	for (struct scsi_nexus *n = t->nexuses; n; n = n->next) {
		n->itl[lu->lun].prevent = false;
		itl_queue_ua(&n->itl[lu->lun], 0x29, ascq);
	}
	pthread_mutex_unlock(&lu->lock);
}

int scsi_lu_reset(struct scsi_nexus *n, uint64_t lun)
{
	struct scsi_target *t = n->t;
	int l = scsi_lun_decode(lun);
	struct scsi_lu *lu = l >= 0 ? scsi_target_lu(t, (unsigned)l) : NULL;

	if (!lu)
		return -ENOENT;
	pthread_mutex_lock(&t->lock);
	if (t->luns[l] != lu) {             /* removed meanwhile */
		pthread_mutex_unlock(&t->lock);
		return -ENOENT;
	}
	lu_reset_locked(lu, 0x03);
	pthread_mutex_unlock(&t->lock);
	return 0;
}

void scsi_target_reset(struct scsi_nexus *n)
{
	struct scsi_target *t = n->t;

	pthread_mutex_lock(&t->lock);
	for (unsigned i = 0; i < SCSI_MAX_LUNS; i++)
		if (t->luns[i])
			lu_reset_locked(t->luns[i], 0x02);
	pthread_mutex_unlock(&t->lock);
}

/* ---- commands ------------------------------------------------------------------------ */

struct scsi_lu *scsi_cmd_lu(const struct scsi_cmd *cmd)
{
	return cmd_state(cmd)->lu;
}

struct scsi_target *scsi_cmd_target(const struct scsi_cmd *cmd)
{
	return cmd->nexus->t;
}

struct disk *scsi_cmd_disk(const struct scsi_cmd *cmd)
{
	const struct cmd_state *s = cmd_state(cmd);

	if (!s->lu)
		return NULL;
	if (s->lu->type == SCSI_LU_DVD)
		return s->medium;
	return s->lu->pr ? scsi_pr_disk(s->lu->pr) : s->lu->disk;
}

struct disk_io *scsi_cmd_io(struct scsi_cmd *cmd, void (*done)(struct disk_io *io))
{
	struct disk_io *io = disk_io_get(cmd_state(cmd)->r);

	if (!io)
		return NULL;
	io->initiator = &cmd->nexus->dinit;
	io->done = done;
	io->opaque = cmd;
	return io;
}

static void cmd_done_task(struct reactor_task *task)
{
	struct cmd_state *s = container_of(task, struct cmd_state, task);
	struct scsi_cmd *cmd = container_of((void *)s, struct scsi_cmd, core_ctx);

	cmd->done(cmd);
}

void scsi_cmd_finish(struct scsi_cmd *cmd)
{
	struct cmd_state *s = cmd_state(cmd);

	assert(!s->finished);
	s->finished = true;
	if (s->medium) {
		disk_unref(s->medium);
		s->medium = NULL;
	}
	if (s->lu)
		atomic_fetch_sub(&s->lu->inflight, 1);
	atomic_fetch_sub_explicit(&cmd->nexus->inflight, 1, memory_order_relaxed);
	if (s->in_submit) {
		s->task.fn = cmd_done_task;
		reactor_defer(s->r, &s->task);
	} else {
		cmd->done(cmd);
	}
}

/* The offset of the CONTROL byte of a CDB by its group code (SAM-5
 * §5.2, SPC-4 §4.2.5), or 0 when the group is vendor specific. */
static unsigned cdb_control_offset(const uint8_t *cdb)
{
	switch (cdb[0] >> 5) {
	case 0: return 5;
	case 1: case 2: return 9;
	case 3: return cdb[0] == 0x7F ? 1 : 0;
	case 4: return 15;
	case 5: return 11;
	default: return 0;
	}
}

/* Looks @cdb up in @tables. Returns the op, or NULL with *@sa_bad set when
 * the opcode is known but its service action is not. */
static const struct scsi_op *find_op(const struct scsi_op *const *tables, const uint8_t *cdb,
				     bool *sa_bad)
{
	uint16_t sa = cdb[0] == 0x7F ? (uint16_t)(cdb[8] << 8 | cdb[9]) : (cdb[1] & 0x1f);

	*sa_bad = false;
	for (; *tables; tables++)
		for (const struct scsi_op *op = *tables; op->run; op++) {
			if (op->opcode != cdb[0])
				continue;
			if (!op->has_sa || op->sa == sa)
				return op;
			*sa_bad = true;
		}
	return NULL;
}

/* SPC-4 §8.2: the REPORT LUNS well-known LU takes INQUIRY, REPORT LUNS,
 * REQUEST SENSE and TEST UNIT READY. */
static bool wlun_allows(uint8_t opcode)
{
	return opcode == 0x12 || opcode == 0xA0 || opcode == 0x03 || opcode == 0x00;
}

void scsi_cmd_submit(struct scsi_cmd *cmd)
{
	struct cmd_state *s = cmd_state(cmd);
	struct scsi_target *t = cmd->nexus->t;
	const struct scsi_op *op;
	struct scsi_lu *lu = NULL;
	bool sa_bad, absent_ok;
	unsigned ctl;
	int lun;

	memset(s, 0, sizeof(*s));
	s->r = reactor_current();
	assert(s->r);
	s->in_submit = true;
	atomic_fetch_add_explicit(&cmd->nexus->inflight, 1, memory_order_relaxed);
	cmd->status = SCSI_GOOD;
	cmd->data_len = 0;
	cmd->want_len = 0;
	cmd->sense_len = 0;
	if (cmd->cdb_len > SCSI_CDB_MAX)
		cmd->cdb_len = SCSI_CDB_MAX;
	/* Handlers read CDB fields at fixed offsets: what the transport did
	 * not send reads as zero. */
	memset(cmd->cdb + cmd->cdb_len, 0, SCSI_CDB_MAX - cmd->cdb_len);

	lun = scsi_lun_decode(cmd->lun);
	if (lun >= 0 && lun < SCSI_MAX_LUNS)
		lu = scsi_target_lu(t, (unsigned)lun);
	if (lu) {
		/* See the notes (hot-remove). */
		atomic_fetch_add(&lu->inflight, 1);
		if (__atomic_load_n(&t->luns[lun], __ATOMIC_SEQ_CST) != lu) {
			atomic_fetch_sub(&lu->inflight, 1);
			lu = NULL;
		}
	}
	s->lu = lu;

	if (!lu) {
		/* SPC-4 (INQUIRY §6.6.2, REPORT LUNS §6.33, REQUEST SENSE
		 * §6.39): LUN 0 (present or not) and the REPORT LUNS W-LUN
		 * answer INQUIRY and REPORT LUNS; any absent LUN answers
		 * INQUIRY (peripheral qualifier 011b) and REQUEST SENSE;
		 * everything else is LOGICAL UNIT NOT SUPPORTED. */
		uint8_t opc = cmd->cdb[0];

		if (cmd->lun == WLUN_REPORT_LUNS)
			absent_ok = wlun_allows(opc);
		else
			absent_ok = opc == 0x12 || opc == 0x03 || (opc == 0xA0 && lun == 0);
		if (!absent_ok) {
			if (cmd->lun == WLUN_REPORT_LUNS)
				scsi_cmd_sense(cmd, SCSI_SK_ILLEGAL_REQUEST, 0x20, 0x00);
			else
				scsi_cmd_sense(cmd, SCSI_SK_ILLEGAL_REQUEST, 0x25, 0x00);
			goto finish;
		}
	}

	op = find_op(scsi_lu_op_tables(lu), cmd->cdb, &sa_bad);
	if (!op) {
		if (sa_bad)
			scsi_cmd_invalid_field(cmd, true, cmd->cdb[0] == 0x7F ? 8 : 1,
					       cmd->cdb[0] == 0x7F ? 7 : 4);
		else
			scsi_cmd_sense(cmd, SCSI_SK_ILLEGAL_REQUEST, 0x20, 0x00);
		goto finish;
	}
	s->op = op;
	/* No ACA (SAM-5 §5.9.3): NACA = 1 is an invalid field. */
	ctl = cdb_control_offset(cmd->cdb);
	if (ctl && (cmd->cdb[ctl] & 0x04)) {
		scsi_cmd_invalid_field(cmd, true, (uint16_t)ctl, 2);
		goto finish;
	}

	if (lu) {
		uint8_t asc, ascq;
		bool conflict;

		if (!(op->flags & SCSI_OP_NO_UA) && scsi_cmd_take_ua(cmd, &asc, &ascq)) {
			scsi_cmd_sense(cmd, SCSI_SK_UNIT_ATTENTION, asc, ascq);
			goto finish;
		}
		pthread_mutex_lock(&lu->lock);
		conflict = lu->spc2_holder && lu->spc2_holder != cmd->nexus &&
			   !(op->flags & SCSI_OP_SPC2_ALLOWED);
		pthread_mutex_unlock(&lu->lock);
		if (!conflict && lu->pr && !(op->flags & SCSI_OP_MEDIUM_IO))
			conflict = scsi_pr_conflicts(lu->pr, cmd->nexus, cmd->cdb);
		if (conflict) {
			scsi_cmd_status(cmd, SCSI_RESERVATION_CONFLICT);
			goto finish;
		}
		if (lu->dvd) {
			s->medium = scsi_dvd_medium(lu->dvd);
			if (!s->medium && !(op->flags & SCSI_OP_NO_MEDIUM)) {
				scsi_cmd_sense(cmd, SCSI_SK_NOT_READY, 0x3A, 0x00);
				goto finish;
			}
		}
		if (atomic_load_explicit(&lu->ejected, memory_order_relaxed) &&
		    !(op->flags & SCSI_OP_NO_MEDIUM)) {
			scsi_cmd_sense(cmd, SCSI_SK_NOT_READY, 0x3A, 0x00);
			goto finish;
		}
		if ((op->flags & SCSI_OP_WRITES) && scsi_lu_read_only(lu)) {
			int bit, byte = scsi_op_bad_field(op, cmd->cdb, &bit);

			/* A CDB with a field the command does not have (a
			 * WRPROTECT the LU cannot honour) is an invalid CDB
			 * before it is a write to a protected medium (libiscsi's
			 * *.WriteProtect tests). */
			if (byte >= 0) {
				scsi_cmd_invalid_field(cmd, true, (uint16_t)byte, bit);
				goto finish;
			}
			scsi_cmd_sense(cmd, SCSI_SK_DATA_PROTECT, 0x27, 0x00);
			goto finish;
		}
	}
	op->run(cmd);
	s->in_submit = false;
	return;

finish:
	scsi_cmd_finish(cmd);
	s->in_submit = false;
}
