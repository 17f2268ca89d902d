/* SPDX-License-Identifier: MIT */
/*
 * core.c: subsystems, namespaces, controllers, command dispatch and
 * completion, asynchronous events and the error log of the NVMe command
 * core (docs/nvme.md).
 *
 * Notes on the design
 * -------------------
 * - A subsystem owns a table of NVMEEMU_MAX_NSID namespace pointers,
 *   written under a read-write lock and read by commands without it
 *   (nvmeemu_ns_get). A namespace removed while commands run on it lives
 *   until the last one finishes, and the data path takes no mutex.
 * - References per thread. Each thread keeps a small cache (ns_tcache)
 *   of namespaces it has commands running on, each with a plain count of
 *   them; the first command takes one counted reference for the thread,
 *   the last one to end drops it. A command and its end run on one
 *   thread (nvme.h), so the count needs no atomic, and at a queue depth
 *   above one a command costs no locked instruction. A removal waits for
 *   the counted references as before; a thread whose count is above
 *   zero still sees the table, so a command that starts after the
 *   removal cleared the entry fails, and one that raced with it is
 *   covered by the thread's reference, which the removal waits for.
 *   A command whose cache slot holds another namespace takes a counted
 *   reference of its own.
 * - SMART / Health data counters are per thread too (struct ctrl_stat
 *   in internal.h), summed by Get Log Page.
 * - A controller's attached namespaces are an atomic bitmap read without
 *   a lock; everything else of the controller (features, held AERs,
 *   pending events, the logs) is under ctrl->lock, which no data command
 *   takes unless it fails (the error log).
 * - Asynchronous events (NVMe Base spec §5.2): an event is pending until a held
 *   AER reports it; then it is "outstanding" and its type stays masked
 *   until the host reads its log page with RAE = 0 (the changed namespace
 *   list 04h, the reservation notification log 80h). A namespace notice
 *   also needs AEC bit 8. The newest held AER reports first. An AER's
 *   completion is always posted to its own reactor, since events come
 *   from any thread (a resize watch, another controller's reservation
 *   command, a host-side attach).
 * - Resize: each namespace watches its disk; the callback runs with the
 *   disk's watcher lock held and only queues the NSID on every controller
 *   it is attached to (s->lock, then ctrl->lock) -- no disk call.
 */
#include "config.h"

#include <assert.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>


#include "common/ascii.h"
#include "common/compiler.h"
#include "common/hash.h"
#include "common/log.h"
#include "nvme_emul/internal.h"
#include "nvme_emul/nvme_pipe.h"
#include "storage/decorators/prwrap.h"

/* ---- small helpers ------------------------------------------------------------- */

static void bit_set(_Atomic uint64_t *map, uint32_t i, bool on)
{
	if (on)
		atomic_fetch_or(&map[i / 64], 1ull << (i % 64));
	else
		atomic_fetch_and(&map[i / 64], ~(1ull << (i % 64)));
}

bool nvmeemu_ctrl_has_ns(const struct nvmeemu_ctrl *c, uint32_t nsid)
{
	if (nsid == 0 || nsid > NVMEEMU_MAX_NSID)
		return false;
	return atomic_load_explicit(&((struct nvmeemu_ctrl *)c)->attached[nsid / 64],
				    memory_order_acquire) & (1ull << (nsid % 64));
}

/* ---- subsystems ---------------------------------------------------------------- */

int nvmeemu_subsys_new(const struct nvmeemu_subsys_opts *o, struct nvmeemu_subsys **out,
		       char *err, size_t errlen)
{
	static const struct nvmeemu_subsys_opts defaults = { 0 };
	struct nvmeemu_subsys *s;
	uint8_t id[16];
	char uuid[37];

	if (!o)
		o = &defaults;
	*out = NULL;
	if (!ascii_printable(o->serial, 20) || !ascii_printable(o->model, 40) || !ascii_printable(o->firmware, 8))
		return errbuf_printf(err, errlen, "NVMe serial/model/firmware must be printable ASCII "
				     "of at most 20/40/8 characters");
	if (o->nqn && (strlen(o->nqn) == 0 || strlen(o->nqn) > 223 || !ascii_printable(o->nqn, 223)))
		return errbuf_printf(err, errlen, "an NVMe Qualified Name has 1 to 223 printable characters");
	if (o->mdts > 20)
		return errbuf_printf(err, errlen, "MDTS %u is out of range (0..20)", o->mdts);
	s = calloc(1, sizeof(*s));
	if (!s)
		return errbuf_fail(err, errlen, -ENOMEM, "out of memory");
	s->o = *o;
	if (!s->o.mdts)
		s->o.mdts = 6;
	pthread_rwlock_init(&s->ns_lock, NULL);
	pthread_mutex_init(&s->lock, NULL);
	/* Identify strings are space padded, not NUL terminated (NVMe Base spec
	 * §5.17.2.1); the buffers keep a NUL for our own use. */
	if (o->nqn)
		snprintf(s->nqn, sizeof(s->nqn), "%s", o->nqn);
	ds_hash16("diskstack-nvme", 14, o->nqn ? o->nqn : (o->serial ? o->serial : ""),
	       strlen(o->nqn ? o->nqn : (o->serial ? o->serial : "")), id);
	if (o->serial)
		snprintf(s->serial, sizeof(s->serial), "%-20s", o->serial);
	else
		snprintf(s->serial, sizeof(s->serial), "DS%02X%02X%02X%02X%02X%02X%02X%02X  ", id[0],
			 id[1], id[2], id[3], id[4], id[5], id[6], id[7]);
	snprintf(s->model, sizeof(s->model), "%-40s", o->model ? o->model : "diskstack NVMe");
	snprintf(s->firmware, sizeof(s->firmware), "%-8.8s", o->firmware ? o->firmware : PACKAGE_VERSION);
	if (!o->nqn) {
		id[6] = (id[6] & 0x0f) | 0x80;  /* RFC 9562 version 8, variant 10b */
		id[8] = (id[8] & 0x3f) | 0x80;
		snprintf(uuid, sizeof(uuid),
			 "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
			 id[0], id[1], id[2], id[3], id[4], id[5], id[6], id[7], id[8], id[9], id[10],
			 id[11], id[12], id[13], id[14], id[15]);
		snprintf(s->nqn, sizeof(s->nqn), "nqn.2014-08.org.nvmexpress:uuid:%s", uuid);
	}
	s->o.serial = s->serial;
	s->o.model = s->model;
	s->o.firmware = s->firmware;
	s->o.nqn = s->nqn;
	*out = s;
	return 0;
}

const char *nvmeemu_subsys_nqn(const struct nvmeemu_subsys *s)
{
	return s->nqn;
}

bool nvmeemu_subsys_has_ns(const struct nvmeemu_subsys *s, uint32_t nsid)
{
	return nsid >= 1 && nsid <= NVMEEMU_MAX_NSID &&
	       __atomic_load_n(&s->ns[nsid], __ATOMIC_ACQUIRE) != NULL;
}

/* Lets go of what the namespace holds; its memory is the caller's. */
static void ns_release(struct nvmeemu_ns *ns)
{
	if (ns->watching)
		disk_unwatch_resize(ns->disk, &ns->watch);
	disk_unref(ns->io_disk);
	disk_unref(ns->disk);
	pthread_mutex_destroy(&ns->pr_lock);
}

static void ns_free(struct nvmeemu_ns *ns)
{
	ns_release(ns);
	free(ns);
}

/* ---- per-thread references and counters ------------------------------------------- */

/* One namespace this thread has @n commands running on, for which it
 * holds one counted reference; @n == 0: free. Touched by this thread
 * alone. */
struct ns_tref {
	struct nvmeemu_ns *ns;
	unsigned n;
};

#define NS_TCACHE 8
static __thread struct ns_tref ns_tcache[NS_TCACHE];

static struct ns_tref *ns_tref_slot(const struct nvmeemu_ns *ns)
{
	return &ns_tcache[(uint32_t)(((uintptr_t)ns >> 4) * 0x9e3779b1u) >> 29];
}

/* A reference to @ns if it still has one (a removal ends the last). */
static bool ns_ref_try(struct nvmeemu_ns *ns)
{
	unsigned n = atomic_load(&ns->refs);

	do {
		if (!n)
			return false;
	} while (!atomic_compare_exchange_weak(&ns->refs, &n, n + 1));
	return true;
}

/* nvmeemu_ns_get for a command, from the thread's cache: sets *@tref
 * when the reference is the thread's (ns_put_cmd gives it back). */
static struct nvmeemu_ns *ns_get_cmd(struct nvmeemu_subsys *s, struct nvmeemu_ctrl *c,
				     uint32_t nsid, bool *tref)
{
	struct nvmeemu_ns *ns;
	struct ns_tref *t;

	if (nsid == 0 || nsid > NVMEEMU_MAX_NSID || !nvmeemu_ctrl_has_ns(c, nsid))
		return NULL;
	ns = __atomic_load_n(&s->ns[nsid], __ATOMIC_ACQUIRE);
	if (!ns)
		return NULL;
	t = ns_tref_slot(ns);
	if (t->n && t->ns == ns) {
		/* The thread's reference covers it (see the notes). */
		t->n++;
		*tref = true;
		return ns;
	}
	if (!ns_ref_try(ns))
		return NULL;
	if (!t->n) {
		t->ns = ns;
		t->n = 1;
		*tref = true;
	}
	return ns;
}

static void ns_put_cmd(struct nvmeemu_ns *ns, bool tref)
{
	struct ns_tref *t;

	if (!tref) {
		nvmeemu_ns_put(ns);
		return;
	}
	t = ns_tref_slot(ns);
	assert(t->ns == ns && t->n);
	if (!--t->n)
		nvmeemu_ns_put(ns);
}

__thread int nvmeemu_stat_slot = -1;

/* Stat slots 1..CTRL_STAT_SLOTS - 1 taken by live threads (bit i). */
static pthread_mutex_t stat_slot_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t stat_slots_used = 1;
static pthread_once_t stat_slot_once = PTHREAD_ONCE_INIT;
static pthread_key_t stat_slot_key;
static bool stat_slot_key_ok;

_Static_assert(CTRL_STAT_SLOTS <= 64, "stat_slots_used is one word");

/* At thread exit: the slot goes back. Its counts stay in every
 * controller's slot, and the next thread to take it adds to them (the
 * lock orders its first load after our last store). */
static void stat_slot_release(void *v)
{
	pthread_mutex_lock(&stat_slot_lock);
	stat_slots_used &= ~(1ull << (uintptr_t)v);
	pthread_mutex_unlock(&stat_slot_lock);
}

static void stat_slot_key_init(void)
{
	stat_slot_key_ok = pthread_key_create(&stat_slot_key, stat_slot_release) == 0;
}

int nvmeemu_stat_slot_take(void)
{
	int i = 0;

	pthread_once(&stat_slot_once, stat_slot_key_init);
	pthread_mutex_lock(&stat_slot_lock);
	if (stat_slot_key_ok && ~stat_slots_used) {
		i = __builtin_ctzll(~stat_slots_used);
		if (pthread_setspecific(stat_slot_key, (void *)(uintptr_t)i) == 0)
			stat_slots_used |= 1ull << i;
		else
			i = 0;
	}
	pthread_mutex_unlock(&stat_slot_lock);
	nvmeemu_stat_slot = i;
	return i;
}

void nvmeemu_ctrl_io_counts(struct nvmeemu_ctrl *c, uint64_t *rb, uint64_t *wb, uint64_t *rc,
			    uint64_t *wc)
{
	*rb = *wb = *rc = *wc = 0;
	for (unsigned i = 0; i < CTRL_STAT_SLOTS; i++) {
		const struct ctrl_stat *t = &c->stat[i];

		*rb += atomic_load_explicit(&t->read_bytes, memory_order_relaxed);
		*wb += atomic_load_explicit(&t->write_bytes, memory_order_relaxed);
		*rc += atomic_load_explicit(&t->read_cmds, memory_order_relaxed);
		*wc += atomic_load_explicit(&t->write_cmds, memory_order_relaxed);
	}
}

void nvmeemu_ns_put(struct nvmeemu_ns *ns)
{
	if (ns && atomic_fetch_sub(&ns->refs, 1) == 1)
		ns_free(ns);
}

struct nvmeemu_ns *nvmeemu_ns_get(struct nvmeemu_subsys *s, struct nvmeemu_ctrl *c, uint32_t nsid)
{
	struct nvmeemu_ns *ns;

	if (nsid == 0 || nsid > NVMEEMU_MAX_NSID)
		return NULL;
	if (c && !nvmeemu_ctrl_has_ns(c, nsid))
		return NULL;
	/* No lock: the read lock's two atomic operations per command cost as
	 * much as the rest of the lookup. A namespace's memory outlives its
	 * removal (s->dead), and a removed one has no references left, so
	 * taking one only while some are held is safe against the race with
	 * nvmeemu_subsys_remove_ns; a command that wins it merely started
	 * before the removal, which waits for it. */
	ns = __atomic_load_n(&s->ns[nsid], __ATOMIC_ACQUIRE);
	return ns && ns_ref_try(ns) ? ns : NULL;
}

void nvmeemu_subsys_free(struct nvmeemu_subsys *s)
{
	if (!s)
		return;
	assert(!s->ctrls);
	for (uint32_t i = 1; i <= NVMEEMU_MAX_NSID; i++)
		nvmeemu_ns_put(s->ns[i]);
	while (s->dead) {
		struct nvmeemu_ns *ns = s->dead;

		s->dead = ns->dead_next;
		free(ns);
	}
	pthread_rwlock_destroy(&s->ns_lock);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

bool nvmeemu_subsys_vwc(struct nvmeemu_subsys *s)
{
	bool vwc = false;

	pthread_rwlock_rdlock(&s->ns_lock);
	for (uint32_t i = 1; i <= NVMEEMU_MAX_NSID && !vwc; i++)
		vwc = s->ns[i] && s->ns[i]->volatile_cache;
	pthread_rwlock_unlock(&s->ns_lock);
	return vwc;
}

/* The disk's size changed: every controller it is attached to learns of
 * it (NVMe Base spec §5.2: Namespace Attribute Changed). Watcher lock held. */
static void ns_resize_cb(struct disk_resize_watch *w, uint64_t new_count)
{
	struct nvmeemu_ns *ns = w->opaque;
	struct nvmeemu_subsys *s = ns->s;

	w->seen_count = new_count;
	pthread_mutex_lock(&s->lock);
	for (struct nvmeemu_ctrl *c = s->ctrls; c; c = c->next)
		if (nvmeemu_ctrl_has_ns(c, ns->nsid))
			nvmeemu_ctrl_ns_changed(c, ns->nsid);
	pthread_mutex_unlock(&s->lock);
}

/* NGUID, EUI-64 and UUID of a namespace: from the disk id when it has
 * one, so that every controller and every run report the same values
 * (Linux requires it of a namespace seen through two controllers), else
 * from the subsystem NQN and the NSID. */
static void ns_identity(struct nvmeemu_ns *ns, const struct disk_info *info)
{
	uint8_t base[16], h[16];

	if (info->has_disk_id)
		memcpy(base, info->disk_id, 16);
	else
		ds_hash16(ns->s->nqn, strlen(ns->s->nqn), &ns->nsid, sizeof(ns->nsid), base);
	memcpy(ns->nguid, base, 16);
	ds_hash16("eui64", 5, base, 16, h);
	memcpy(ns->eui64, h, 8);
	ds_hash16("uuid", 4, base, 16, h);
	h[6] = (h[6] & 0x0f) | 0x80;    /* RFC 9562 version 8, variant 10b */
	h[8] = (h[8] & 0x3f) | 0x80;
	memcpy(ns->uuid, h, 16);
}

int nvmeemu_subsys_add_ns(struct nvmeemu_subsys *s, uint32_t nsid, struct disk *disk,
			  char *err, size_t errlen)
{
	const struct disk_info *info = disk_get_info(disk);
	struct nvmeemu_ns *ns;
	int r;

	if (nsid == 0 || nsid > NVMEEMU_MAX_NSID)
		return errbuf_printf(err, errlen, "namespace ID %u is out of range (1..%u)", nsid,
				     NVMEEMU_MAX_NSID);
	if (info->sector_size > 65536)
		return errbuf_printf(err, errlen, "an NVMe namespace needs sectors of 512 bytes to "
				     "64 KiB, not %u", info->sector_size);
	ns = calloc(1, sizeof(*ns));
	if (!ns)
		return errbuf_fail(err, errlen, -ENOMEM, "out of memory");
	atomic_init(&ns->refs, 1);
	pthread_mutex_init(&ns->pr_lock, NULL);
	ns->nsid = nsid;
	ns->s = s;
	ns->disk = disk_ref(disk);
	ns->block_size = info->sector_size;
	ns->lbads = info->sector_shift;
	ns->phys_blocks = info->physical_sector_size / info->sector_size;
	ns->unmap_blocks = info->optimal_unmap_sectors;
	ns->read_only = info->read_only;
	ns->volatile_cache = info->caps & DISK_CAP_VOLATILE_CACHE;
	ns->unmap = info->unmap_behavior;
	ns_identity(ns, info);
	if (info->caps & DISK_CAP_PR) {
		ns->io_disk = disk_ref(disk);
	} else {
		/* Every namespace answers reservations: ours over this disk. */
		r = prwrap_new(disk_ref(disk), &ns->io_disk);
		if (r < 0) {
			disk_unref(disk);
			nvmeemu_ns_put(ns);
			return errbuf_fail(err, errlen, r, "reservations: %s", strerror(-r));
		}
	}
	r = nvmeemu_resv_init(ns);
	if (r < 0) {
		nvmeemu_ns_put(ns);
		return errbuf_fail(err, errlen, r, "reservations: cannot read the disk's state: %s",
				   strerror(-r));
	}
	pthread_rwlock_wrlock(&s->ns_lock);
	if (s->ns[nsid]) {
		pthread_rwlock_unlock(&s->ns_lock);
		nvmeemu_ns_put(ns);
		return errbuf_fail(err, errlen, -EEXIST, "namespace %u exists", nsid);
	}
	__atomic_store_n(&s->ns[nsid], ns, __ATOMIC_RELEASE);
	pthread_rwlock_unlock(&s->ns_lock);
	/* Not under s->lock: the watch may fire at once and take it. */
	ns->watch.cb = ns_resize_cb;
	ns->watch.opaque = ns;
	ns->watch.seen_count = disk_sector_count(disk);
	ns->watching = disk_watch_resize(disk, &ns->watch) == 0;
	pthread_mutex_lock(&s->lock);
	for (struct nvmeemu_ctrl *c = s->ctrls; c; c = c->next) {
		bit_set(c->attached, nsid, true);
		nvmeemu_ctrl_ns_changed(c, nsid);
	}
	pthread_mutex_unlock(&s->lock);
	return 0;
}

int nvmeemu_subsys_remove_ns(struct nvmeemu_subsys *s, uint32_t nsid)
{
	struct nvmeemu_ns *ns;

	if (nsid == 0 || nsid > NVMEEMU_MAX_NSID)
		return -ENOENT;
	pthread_mutex_lock(&s->lock);
	pthread_rwlock_wrlock(&s->ns_lock);
	ns = s->ns[nsid];
	__atomic_store_n(&s->ns[nsid], NULL, __ATOMIC_SEQ_CST);
	pthread_rwlock_unlock(&s->ns_lock);
	if (ns) {
		for (struct nvmeemu_ctrl *c = s->ctrls; c; c = c->next) {
			if (nvmeemu_ctrl_has_ns(c, nsid)) {
				bit_set(c->attached, nsid, false);
				nvmeemu_ctrl_ns_changed(c, nsid);
			}
		}
	}
	pthread_mutex_unlock(&s->lock);
	if (!ns)
		return -ENOENT;
	/* Stop watching now, not when the last command lets go: the
	 * callback takes s->lock, which is no longer held here. */
	if (ns->watching) {
		disk_unwatch_resize(ns->disk, &ns->watch);
		ns->watching = false;
	}
	/* Commands hold a reference each (nvmeemu_ns_get); the namespace's
	 * own is the last. Waiting for them lets the caller's flush of the
	 * disk cover every write the namespace took (nvme.h). The last one
	 * goes from 1 to 0 here, never through a command's put, so a lookup
	 * that raced with the removal either holds a reference we wait for
	 * or finds none. */
	for (unsigned one = 1; !atomic_compare_exchange_strong(&ns->refs, &one, 0); one = 1)
		usleep(1000);
	ns_release(ns);
	pthread_mutex_lock(&s->lock);
	ns->dead_next = s->dead;
	s->dead = ns;
	pthread_mutex_unlock(&s->lock);
	return 0;
}

/* ---- controllers ---------------------------------------------------------------- */

void nvmeemu_feat_defaults(struct nvmeemu_ctrl *c, struct ctrl_feat *f)
{
	memset(f, 0, sizeof(*f));
	f->temp_over = 0x0157;          /* 343 K, WCTEMP */
	f->temp_under = 0;
	f->wce = true;
	f->nsq = f->ncq = c->max_io_queues;
}

int nvmeemu_ctrl_new(struct nvmeemu_subsys *s, const struct nvmeemu_ctrl_opts *o,
		     struct nvmeemu_ctrl **out)
{
	struct nvmeemu_ctrl *c;

	*out = NULL;
	if (o->host_id_len != 0 && o->host_id_len != 8 && o->host_id_len != 16)
		return -EINVAL;
	if (o->vectors > NVMEEMU_MAX_VECTORS)
		return -EINVAL;
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->stat = aligned_alloc(64, CTRL_STAT_SLOTS * sizeof(*c->stat));
	if (!c->stat) {
		free(c);
		return -ENOMEM;
	}
	memset(c->stat, 0, CTRL_STAT_SLOTS * sizeof(*c->stat));
	c->s = s;
	c->cntlid = o->cntlid;
	c->max_io_queues = o->max_io_queues ? o->max_io_queues : 1;
	c->vectors = o->vectors;
	memcpy(c->ini.host_id, o->host_id, o->host_id_len);
	c->ini.host_id_len = o->host_id_len;
	c->ini.controller_id = o->cntlid;
	c->created_ns = reactor_now_ns();
	atomic_store(&c->last_cmd_ns, c->created_ns);
	pthread_mutex_init(&c->lock, NULL);
	nvmeemu_feat_defaults(c, &c->feat);
	atomic_init(&c->wce, c->feat.wce);
	pthread_mutex_lock(&s->lock);
	for (struct nvmeemu_ctrl *o2 = s->ctrls; o2; o2 = o2->next) {
		if (o2->cntlid == o->cntlid) {
			pthread_mutex_unlock(&s->lock);
			pthread_mutex_destroy(&c->lock);
			free(c->stat);
			free(c);
			return -EEXIST;
		}
	}
	pthread_rwlock_rdlock(&s->ns_lock);
	for (uint32_t i = 1; i <= NVMEEMU_MAX_NSID; i++)
		if (s->ns[i])
			bit_set(c->attached, i, true);
	pthread_rwlock_unlock(&s->ns_lock);
	c->next = s->ctrls;
	if (s->ctrls)
		s->ctrls->prev = c;
	s->ctrls = c;
	pthread_mutex_unlock(&s->lock);
	*out = c;
	return 0;
}

uint16_t nvmeemu_ctrl_cntlid(const struct nvmeemu_ctrl *c)
{
	return c->cntlid;
}

static void aer_done_task(struct reactor_task *task)
{
	struct cmd_state *st = container_of(task, struct cmd_state, task);
	struct nvmeemu_cmd *cmd = container_of((void *)st, struct nvmeemu_cmd, core_ctx);

	cmd->done(cmd);
}

/* Fills the CQE of @cmd from @status and the state's dw0. */
static void cmd_fill_cqe(struct nvmeemu_cmd *cmd, uint16_t status)
{
	struct cmd_state *st = cmd_state(cmd);

	cmd->status = status;
	memset(cmd->cqe, 0, sizeof(cmd->cqe));
	ds_put_le32(cmd->cqe, st->dw0);
	ds_put_le16(cmd->cqe + 10, cmd->qid);
	memcpy(cmd->cqe + 12, cmd->sqe + 2, 2);          /* CID */
	ds_put_le16(cmd->cqe + 14, (uint16_t)(status << 1));
}

/* Ends a held AER (c->lock held): its done() is posted to its reactor. */
static void aer_complete_locked(struct nvmeemu_cmd *cmd, uint16_t status, uint32_t dw0)
{
	struct cmd_state *st = cmd_state(cmd);

	st->dw0 = dw0;
	st->finished = true;
	cmd_fill_cqe(cmd, status);
	st->task.fn = aer_done_task;
	reactor_post(st->r, &st->task);
}

void nvmeemu_ctrl_reset(struct nvmeemu_ctrl *c)
{
	pthread_mutex_lock(&c->lock);
	for (unsigned i = 0; i < c->naer; i++)
		aer_complete_locked(c->aer[i], NVMEEMU_ABORT_SQ_DELETION, 0);
	c->naer = 0;
	nvmeemu_feat_defaults(c, &c->feat);
	memset(c->resv_mask, 0, sizeof(c->resv_mask));
	memset(c->no_coalesce, 0, sizeof(c->no_coalesce));
	memset(c->changed, 0, sizeof(c->changed));
	c->nchanged = 0;
	c->ns_notice_out = c->resv_notice_out = false;
	c->rlog_n = c->rlog_head = 0;
	c->err_n = c->err_head = 0;
	c->err_count = 0;
	pthread_mutex_unlock(&c->lock);
	atomic_store(&c->kato_ms, 0);
	atomic_store(&c->coalescing, 0);
	atomic_store(&c->wce, true);
}

void nvmeemu_ctrl_free(struct nvmeemu_ctrl *c)
{
	struct nvmeemu_subsys *s;

	if (!c)
		return;
	s = c->s;
	nvmeemu_ctrl_reset(c);
	pthread_mutex_lock(&s->lock);
	if (c->prev)
		c->prev->next = c->next;
	else
		s->ctrls = c->next;
	if (c->next)
		c->next->prev = c->prev;
	pthread_mutex_unlock(&s->lock);
	pthread_mutex_destroy(&c->lock);
	free(c->stat);
	free(c);
}

int nvmeemu_ctrl_attach_ns(struct nvmeemu_ctrl *c, uint32_t nsid)
{
	struct nvmeemu_ns *ns = nvmeemu_ns_get(c->s, NULL, nsid);
	int r = 0;

	if (!ns)
		return -ENOENT;
	pthread_mutex_lock(&c->s->lock);
	if (nvmeemu_ctrl_has_ns(c, nsid)) {
		r = -EEXIST;
	} else {
		bit_set(c->attached, nsid, true);
		nvmeemu_ctrl_ns_changed(c, nsid);
	}
	pthread_mutex_unlock(&c->s->lock);
	nvmeemu_ns_put(ns);
	return r;
}

int nvmeemu_ctrl_detach_ns(struct nvmeemu_ctrl *c, uint32_t nsid)
{
	struct nvmeemu_ns *ns = nvmeemu_ns_get(c->s, NULL, nsid);
	int r = 0;

	if (!ns)
		return -ENOENT;
	pthread_mutex_lock(&c->s->lock);
	if (!nvmeemu_ctrl_has_ns(c, nsid)) {
		r = -ENXIO;
	} else {
		bit_set(c->attached, nsid, false);
		nvmeemu_ctrl_ns_changed(c, nsid);
	}
	pthread_mutex_unlock(&c->s->lock);
	nvmeemu_ns_put(ns);
	return r;
}

void nvmeemu_ctrl_set_io_queues(struct nvmeemu_ctrl *c, unsigned count)
{
	atomic_store(&c->io_queues, count);
}

void nvmeemu_ctrl_granted_queues(const struct nvmeemu_ctrl *c, uint16_t *nsq, uint16_t *ncq)
{
	struct nvmeemu_ctrl *m = (struct nvmeemu_ctrl *)c;

	pthread_mutex_lock(&m->lock);
	*nsq = m->feat.nsq;
	*ncq = m->feat.ncq;
	pthread_mutex_unlock(&m->lock);
}

uint32_t nvmeemu_ctrl_kato_ms(const struct nvmeemu_ctrl *c)
{
	return atomic_load(&((struct nvmeemu_ctrl *)c)->kato_ms);
}

void nvmeemu_ctrl_set_kato_ms(struct nvmeemu_ctrl *c, uint32_t ms)
{
	/* Commands stamp their arrival only while a KATO is set (a clock
	 * read per command costs more than the rest of a 4 KiB Read's
	 * dispatch), so setting one starts the timer from now (NVMe Base
	 * spec §3.9): the stamp goes first, then the timeout readers see. */
	atomic_store(&c->last_cmd_ns, reactor_now_ns());
	atomic_store(&c->kato_ms, ms);
}

bool nvmeemu_ctrl_kato_expired(const struct nvmeemu_ctrl *c, uint64_t now_ns)
{
	struct nvmeemu_ctrl *m = (struct nvmeemu_ctrl *)c;
	uint64_t kato = atomic_load(&m->kato_ms), last = atomic_load(&m->last_cmd_ns);

	return kato && now_ns > last && now_ns - last > kato * 1000000ull;
}

uint32_t nvmeemu_ctrl_coalescing(const struct nvmeemu_ctrl *c)
{
	return atomic_load(&((struct nvmeemu_ctrl *)c)->coalescing);
}

bool nvmeemu_ctrl_vector_no_coalescing(const struct nvmeemu_ctrl *c, uint16_t iv)
{
	struct nvmeemu_ctrl *m = (struct nvmeemu_ctrl *)c;
	bool cd;

	if (iv >= m->vectors)
		return false;
	pthread_mutex_lock(&m->lock);
	cd = m->no_coalesce[iv / 8] & (1u << (iv % 8));
	pthread_mutex_unlock(&m->lock);
	return cd;
}

/* ---- asynchronous events ----------------------------------------------------------- */

/* Async event DW0 (NVMe Base spec Figure 146): type, info, log page. */
#define AEN(type, info, lid) ((uint32_t)(type) | (uint32_t)(info) << 8 | (uint32_t)(lid) << 16)
#define AEN_NS_CHANGED AEN(2, 0x00, 0x04)       /* Notice: Namespace Attribute Changed */
#define AEN_RESV_LOG   AEN(6, 0x00, 0x80)       /* I/O command specific: Reservation Log Page Available */
#define AEC_NS_ATTR    (1u << 8)

void nvmeemu_events_fire_locked(struct nvmeemu_ctrl *c)
{
	if (c->naer && c->nchanged && !c->ns_notice_out && (c->feat.aec & AEC_NS_ATTR)) {
		aer_complete_locked(c->aer[--c->naer], NVMEEMU_SUCCESS, AEN_NS_CHANGED);
		c->ns_notice_out = true;
	}
	if (c->naer && c->rlog_n && !c->resv_notice_out) {
		aer_complete_locked(c->aer[--c->naer], NVMEEMU_SUCCESS, AEN_RESV_LOG);
		c->resv_notice_out = true;
	}
}

bool nvmeemu_aer_hold(struct nvmeemu_ctrl *c, struct nvmeemu_cmd *cmd)
{
	bool ok;

	pthread_mutex_lock(&c->lock);
	ok = c->naer < NVMEEMU_MAX_AER;
	if (ok) {
		c->aer[c->naer++] = cmd;
		nvmeemu_events_fire_locked(c);
	}
	pthread_mutex_unlock(&c->lock);
	return ok;
}

bool nvmeemu_aer_abort(struct nvmeemu_ctrl *c, uint16_t cid)
{
	bool found = false;

	pthread_mutex_lock(&c->lock);
	for (unsigned i = 0; i < c->naer; i++) {
		if (ds_get_le16(c->aer[i]->sqe + 2) != cid)
			continue;
		aer_complete_locked(c->aer[i], NVMEEMU_ABORT_REQUESTED, 0);
		memmove(&c->aer[i], &c->aer[i + 1], (c->naer - i - 1) * sizeof(c->aer[0]));
		c->naer--;
		found = true;
		break;
	}
	pthread_mutex_unlock(&c->lock);
	return found;
}

void nvmeemu_ctrl_ns_changed(struct nvmeemu_ctrl *c, uint32_t nsid)
{
	pthread_mutex_lock(&c->lock);
	if (!(c->changed[nsid / 64] & (1ull << (nsid % 64)))) {
		c->changed[nsid / 64] |= 1ull << (nsid % 64);
		c->nchanged++;
	}
	nvmeemu_events_fire_locked(c);
	pthread_mutex_unlock(&c->lock);
}

void nvmeemu_ctrl_resv_notice(struct nvmeemu_ctrl *c, uint8_t type, uint32_t nsid)
{
	struct resv_entry *e;

	pthread_mutex_lock(&c->lock);
	/* Feature 82h: bit 1 REGPRE, 2 RESREL, 3 RESPRE mask the type. */
	if (!(c->resv_mask[nsid] & (1u << type))) {
		/* NVMe Base spec §5.16.1.22: the count goes on when older pages
		 * are lost; a full queue drops its oldest. */
		if (c->rlog_n == RESVLOG_ENTRIES) {
			c->rlog_head = (c->rlog_head + 1) % RESVLOG_ENTRIES;
			c->rlog_n--;
		}
		e = &c->rlog[(c->rlog_head + c->rlog_n) % RESVLOG_ENTRIES];
		c->rlog_count = c->rlog_count == UINT64_MAX ? 1 : c->rlog_count + 1;
		e->count = c->rlog_count;
		e->type = type;
		e->nsid = nsid;
		c->rlog_n++;
		nvmeemu_events_fire_locked(c);
	}
	pthread_mutex_unlock(&c->lock);
}

/* ---- completion ------------------------------------------------------------------- */

static void cmd_done_task(struct reactor_task *task)
{
	struct cmd_state *st = container_of(task, struct cmd_state, task);
	struct nvmeemu_cmd *cmd = container_of((void *)st, struct nvmeemu_cmd, core_ctx);

	cmd->done(cmd);
}

/* Error Information log (NVMe Base spec §5.16.1.2): failures other than the
 * ones a host provokes on purpose while probing (an unknown opcode or
 * feature, an AER aborted by a reset). */
static void errlog_add(struct nvmeemu_cmd *cmd, uint16_t status)
{
	struct nvmeemu_ctrl *c = cmd->ctrl;
	struct err_entry *e;
	uint8_t opc = cmd->sqe[0];

	pthread_mutex_lock(&c->lock);
	e = &c->errlog[(c->err_head + c->err_n) % ERRLOG_ENTRIES];
	if (c->err_n == ERRLOG_ENTRIES)
		c->err_head = (c->err_head + 1) % ERRLOG_ENTRIES;
	else
		c->err_n++;
	e->count = ++c->err_count;
	e->sqid = cmd->qid;
	e->cid = ds_get_le16(cmd->sqe + 2);
	e->status = status;
	e->nsid = cmd_dw(cmd, 1);
	/* Commands with an SLBA: Read, Write, Compare, Write Zeroes. */
	e->lba = cmd->qid && (opc == 0x01 || opc == 0x02 || opc == 0x05 || opc == 0x08)
		 ? ds_get_le64(cmd->sqe + 40) : 0;
	pthread_mutex_unlock(&c->lock);
}

void nvmeemu_finish(struct nvmeemu_cmd *cmd, uint16_t status, uint32_t dw0)
{
	struct cmd_state *st = cmd_state(cmd);
	uint16_t plain = status & ~(NVMEEMU_DNR | NVMEEMU_MORE);

	assert(!st->finished);
	st->finished = true;
	st->dw0 = dw0;
	if (st->io) {
		disk_io_put(st->r, st->io);
		st->io = NULL;
	}
	if (st->buf) {
		reactor_buf_put(st->r, st->buf, st->buf_len);
		st->buf = NULL;
	}
	if (st->ns) {
		assert(!st->tref || reactor_current() == st->r);
		ns_put_cmd(st->ns, st->tref);
		st->ns = NULL;
	}
	if (plain != NVMEEMU_SUCCESS && plain != NVMEEMU_INVALID_OPCODE &&
	    plain != NVMEEMU_ABORT_SQ_DELETION && plain != NVMEEMU_ABORT_REQUESTED)
		errlog_add(cmd, status);
	if (NVMEEMU_SCT(plain) == 2)
		atomic_fetch_add(&cmd->ctrl->media_errors, 1);
	cmd_fill_cqe(cmd, status);
	if (st->in_submit) {
		st->task.fn = cmd_done_task;
		reactor_defer(st->r, &st->task);
	} else {
		cmd->done(cmd);
	}
}

void nvmeemu_finish_disk(struct nvmeemu_cmd *cmd, struct disk_io *io)
{
	nvmeemu_finish(cmd, nvmeemu_disk_status(io), 0);
}

uint16_t nvmeemu_data_errno(int r)
{
	switch (r) {
	case -EMSGSIZE:
		return NVMEEMU_SGL_LENGTH_INVALID | NVMEEMU_DNR;
	case -EINVAL:
		return NVMEEMU_PRP_OFFSET_INVALID | NVMEEMU_DNR;
	default:
		return NVMEEMU_DATA_XFER_ERROR;
	}
}

uint16_t nvmeemu_get(struct nvmeemu_cmd *cmd, uint64_t off, void *buf, size_t len)
{
	int r;

	if (!len)
		return 0;
	if (!cmd->data)
		return nvmeemu_data_errno(-EMSGSIZE);
	r = cmd->data->get(cmd, off, buf, len);
	return r < 0 ? nvmeemu_data_errno(r) : 0;
}

uint16_t nvmeemu_put(struct nvmeemu_cmd *cmd, uint64_t off, const void *buf, size_t len)
{
	int r;

	if (!len)
		return 0;
	if (!cmd->data)
		return nvmeemu_data_errno(-EMSGSIZE);
	r = cmd->data->put(cmd, off, buf, len);
	return r < 0 ? nvmeemu_data_errno(r) : 0;
}

struct disk_io *nvmeemu_cmd_io(struct nvmeemu_cmd *cmd, void (*done)(struct disk_io *io))
{
	struct cmd_state *st = cmd_state(cmd);

	if (!st->io) {
		st->io = disk_io_get(st->r);
		if (!st->io)
			return NULL;
	} else {
		memset(st->io, 0, offsetof(struct disk_io, status));
	}
	st->io->initiator = &cmd->ctrl->ini;
	st->io->done = done;
	st->io->opaque = cmd;
	return st->io;
}

void *nvmeemu_cmd_buf(struct nvmeemu_cmd *cmd, size_t len, bool zero)
{
	struct cmd_state *st = cmd_state(cmd);

	assert(!st->buf);
	st->buf = reactor_buf_get(st->r, len, zero);
	st->buf_len = st->buf ? len : 0;
	return st->buf;
}

/* ---- dispatch ------------------------------------------------------------------------ */

static const struct nvmeemu_op *op_find(const struct nvmeemu_op *table, uint8_t opc)
{
	for (const struct nvmeemu_op *op = table; op->run; op++)
		if (op->opc == opc)
			return op;
	return NULL;
}

static void cmd_submit(struct nvmeemu_cmd *cmd, int pipe_fd, size_t len, size_t room)
{
	struct cmd_state *st = cmd_state(cmd);
	struct nvmeemu_ctrl *c = cmd->ctrl;
	const struct nvmeemu_op *op;
	uint8_t opc = cmd->sqe[0];

	memset(st, 0, sizeof(*st));
	st->pipe_fd = pipe_fd;
	st->pipe_len = (uint32_t)MIN(len, (size_t)UINT32_MAX);
	st->pipe_room = (uint32_t)MIN(room, (size_t)UINT32_MAX);
	st->r = reactor_current();
	assert(st->r);
	st->in_submit = true;
	st->opc = opc;
	if (atomic_load_explicit(&c->kato_ms, memory_order_relaxed))
		atomic_store_explicit(&c->last_cmd_ns, reactor_now_ns(), memory_order_relaxed);
	op = op_find(cmd->qid ? nvmeemu_io_ops : nvmeemu_admin_ops, opc);
	if (!op) {
		nvmeemu_finish(cmd, NVMEEMU_INVALID_OPCODE | NVMEEMU_DNR, 0);
	} else if (cmd->sqe[1] & 0x03) {
		/* FUSE (CDW0 bits 9:8): no fused operations (FUSES 0). */
		nvmeemu_finish(cmd, NVMEEMU_INVALID_FIELD | NVMEEMU_DNR, 0);
	} else if ((op->flags & OP_NS) &&
		   !(st->ns = ns_get_cmd(c->s, c, cmd_dw(cmd, 1), &st->tref))) {
		/* An NSID that is not an active namespace of this controller,
		 * the broadcast value included (NVMe Base spec §3.2.1.2). */
		nvmeemu_finish(cmd, NVMEEMU_INVALID_NS | NVMEEMU_DNR, 0);
	} else if ((op->flags & OP_WRITES) && st->ns->read_only) {
		nvmeemu_finish(cmd, NVMEEMU_WRITE_TO_RO | NVMEEMU_DNR, 0);
	} else {
		op->run(cmd);
	}
	st->in_submit = false;
}

void nvmeemu_cmd_submit(struct nvmeemu_cmd *cmd)
{
	cmd_submit(cmd, -1, 0, 0);
}

void nvmeemu_cmd_submit_pipe(struct nvmeemu_cmd *cmd, int pipe_fd, size_t len, size_t room)
{
	cmd_submit(cmd, pipe_fd, len, room);
}

size_t nvmeemu_cmd_piped(const struct nvmeemu_cmd *cmd)
{
	return ((const struct cmd_state *)(const void *)cmd->core_ctx)->piped;
}

bool nvmeemu_cmd_pipe_ok(struct nvmeemu_cmd *cmd)
{
	struct nvmeemu_ns *ns;
	bool ok;

	if (!cmd->qid || (cmd->sqe[0] != 0x01 && cmd->sqe[0] != 0x02))
		return false;
	ns = nvmeemu_ns_get(cmd->ctrl->s, cmd->ctrl, cmd_dw(cmd, 1));
	if (!ns)
		return false;
	ok = disk_get_info(ns->io_disk)->caps & DISK_CAP_PIPE;
	nvmeemu_ns_put(ns);
	return ok;
}

/* ---- CQE accessors -------------------------------------------------------------------- */

uint32_t nvmeemu_cqe_dw0(const uint8_t cqe[NVMEEMU_CQE_BYTES])
{
	return ds_get_le32(cqe);
}

uint16_t nvmeemu_cqe_cid(const uint8_t cqe[NVMEEMU_CQE_BYTES])
{
	return ds_get_le16(cqe + 12);
}

uint16_t nvmeemu_cqe_status(const uint8_t cqe[NVMEEMU_CQE_BYTES])
{
	return ds_get_le16(cqe + 14) >> 1;
}
