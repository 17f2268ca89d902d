/* SPDX-License-Identifier: MIT */
/*
 * mem.c: the guest memory table (mem.h).
 *
 * The SIGBUS guard. A shared mapping of a file that shrinks faults with
 * SIGBUS on the first access past the new end (mmap(2)), and the default
 * action kills the whole server for one front-end's mistake. Regions of
 * files we could not seal against shrinking are listed in a fixed table
 * that a SIGBUS handler (installed once, process-wide, on the first such
 * region) reads without locks: for a fault inside a listed mapping it
 * maps private zero pages over the mapping from the faulting page to its
 * end (MAP_FIXED), sets the table's damaged flag and returns, so the
 * access is retried on the zero page. A fault anywhere else goes to the
 * handler that was there before (or, if that was the default, the
 * default action runs as it would have). The guard costs nothing per
 * request; the rings test the flag once per pop.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/compiler.h"
#include "common/log.h"
#include "vhost/mem.h"

/* ---- the SIGBUS guard ---------------------------------------------------------- */

#define GUARD_SLOTS 64

struct guard_slot {
	_Atomic(uintptr_t) start;       /* 0: free; published last */
	_Atomic(size_t) len;
	_Atomic(atomic_bool *) damaged;
};

static struct guard_slot guard_slots[GUARD_SLOTS];
static pthread_mutex_t guard_lock = PTHREAD_MUTEX_INITIALIZER;
static struct sigaction guard_prev;
static uintptr_t guard_page;
static bool guard_on;

static void guard_handler(int sig, siginfo_t *si, void *uctx)
{
	uintptr_t a = (uintptr_t)si->si_addr;
	int saved = errno;

	/* Only a fault has an address (si_code > 0); a SIGBUS sent by
	 * kill(2) or sigqueue(3) goes to the previous disposition. */
	for (unsigned i = 0; si->si_code > 0 && i < GUARD_SLOTS; i++) {
		uintptr_t start = atomic_load_explicit(&guard_slots[i].start, memory_order_acquire);
		size_t len = atomic_load_explicit(&guard_slots[i].len, memory_order_relaxed);
		uintptr_t from = a & ~(guard_page - 1);

		if (!start || a < start || a - start >= len)
			continue;
		/* MAP_NORESERVE: a region as large as guest RAM must not
		 * fail for want of commit charge (overcommit_memory=2). */
		if (mmap((void *)from, start + len - from, PROT_READ | PROT_WRITE,
			 MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0) == MAP_FAILED)
			break;
		atomic_store(atomic_load(&guard_slots[i].damaged), true);
		errno = saved;
		return;
	}
	errno = saved;
	if ((guard_prev.sa_flags & SA_SIGINFO) && guard_prev.sa_sigaction) {
		guard_prev.sa_sigaction(sig, si, uctx);
	} else if (guard_prev.sa_handler != SIG_DFL && guard_prev.sa_handler != SIG_IGN &&
		   !(guard_prev.sa_flags & SA_SIGINFO)) {
		guard_prev.sa_handler(sig);
	} else if (si->si_code <= 0) {
		/* Sent, and the previous disposition was the default (raised
		 * again to get it) or to ignore it (the guard stays). */
		if (guard_prev.sa_handler == SIG_DFL) {
			signal(sig, SIG_DFL);
			raise(sig);
		}
	} else {
		/* A fault: the access runs again and gets the default action
		 * (a SIGBUS from a fault cannot be ignored). */
		signal(sig, SIG_DFL);
	}
}

/* Lists [@p, @p + @len) under the guard; -ENOSPC when the table is full,
 * or sigaction's -errno. The handler reads slots without the lock: a
 * slot's fields are written before its start is published. */
static int guard_add(void *p, size_t len, atomic_bool *damaged)
{
	int ret = -ENOSPC;

	pthread_mutex_lock(&guard_lock);
	if (!guard_on) {
		struct sigaction sa = { .sa_sigaction = guard_handler,
					.sa_flags = SA_SIGINFO | SA_RESTART | SA_NODEFER };

		guard_page = (uintptr_t)sysconf(_SC_PAGESIZE);
		sigemptyset(&sa.sa_mask);
		if (sigaction(SIGBUS, &sa, &guard_prev) < 0) {
			ret = -errno;
			goto out;
		}
		guard_on = true;
	}
	for (unsigned i = 0; i < GUARD_SLOTS; i++) {
		if (atomic_load(&guard_slots[i].start))
			continue;
		atomic_store(&guard_slots[i].len, len);
		atomic_store(&guard_slots[i].damaged, damaged);
		atomic_store_explicit(&guard_slots[i].start, (uintptr_t)p, memory_order_release);
		ret = 0;
		break;
	}
out:
	pthread_mutex_unlock(&guard_lock);
	return ret;
}

/* Takes @p off the guard (before it is unmapped). */
static void guard_remove(void *p)
{
	pthread_mutex_lock(&guard_lock);
	for (unsigned i = 0; i < GUARD_SLOTS; i++)
		if (atomic_load(&guard_slots[i].start) == (uintptr_t)p)
			atomic_store_explicit(&guard_slots[i].start, 0, memory_order_release);
	pthread_mutex_unlock(&guard_lock);
}

/* ---- tables --------------------------------------------------------------------- */

int vhostmem_new(struct vhostmem **out)
{
	*out = calloc(1, sizeof(**out));
	if (!*out)
		return -ENOMEM;
	atomic_init(&(*out)->damaged, false);
	return 0;
}

void vhostmem_free(struct vhostmem *m)
{
	if (!m)
		return;
	for (unsigned i = 0; i < m->nregions; i++) {
		if (m->regions[i].guarded)
			guard_remove(m->regions[i].map);
		if (m->regions[i].map)
			munmap(m->regions[i].map, m->regions[i].map_len);
	}
	free(m);
}

/* True when [a, a + alen) and [b, b + blen) overlap (neither wraps). */
static bool vhostmem_overlap(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
	return a < b + blen && b < a + alen;
}

static int vhostmem_check(const struct vhostmem *m, uint64_t guest_phys, uint64_t size,
			  uint64_t user_addr)
{
	uint64_t end;

	if (m->nregions == VHOSTMEM_MAX_REGIONS)
		return -E2BIG;
	if (size == 0 || ADD_OVERFLOW(guest_phys, size, &end) || ADD_OVERFLOW(user_addr, size, &end))
		return -EINVAL;
	for (unsigned i = 0; i < m->nregions; i++) {
		const struct vhostmem_region *r = &m->regions[i];

		if (vhostmem_overlap(guest_phys, size, r->guest_phys, r->size) ||
		    vhostmem_overlap(user_addr, size, r->user_addr, r->size))
			return -EINVAL;
	}
	return 0;
}

int vhostmem_fd_covers(int fd, uint64_t off, uint64_t len)
{
	struct stat st;
	uint64_t end;

	if (fstat(fd, &st) < 0)
		return -errno;
	if (!S_ISREG(st.st_mode))
		return 0;
	if (ADD_OVERFLOW(off, len, &end) || end > (uint64_t)st.st_size)
		return -EINVAL;
	return 0;
}

int vhostmem_fd_seal(int fd, const char *what)
{
	int seals = fcntl(fd, F_GET_SEALS);

	if (seals < 0 && errno != EINVAL)
		return -errno;
	if (seals >= 0 && (seals & F_SEAL_SHRINK))
		return 0;
	if (seals >= 0 && !(seals & F_SEAL_SEAL)) {
		if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK) == 0)
			return 0;
		/* A seal added by the front-end meanwhile: look again. */
		if (errno != EPERM)
			return -errno;
		return vhostmem_fd_seal(fd, what);
	}
	log_warn("vhost: %s: the file cannot be sealed against shrinking (not a memfd, or "
		 "sealed without F_SEAL_SHRINK); if the front-end shrinks it, the device stops",
		 what);
	return 1;
}

int vhostmem_add_fd(struct vhostmem *m, uint64_t guest_phys, uint64_t size, uint64_t user_addr,
		    int fd, uint64_t mmap_offset)
{
	uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
	uint64_t start = mmap_offset & ~(page - 1), len;
	struct vhostmem_region *r;
	bool unsealed;
	void *p;
	int ret;

	if ((ret = vhostmem_check(m, guest_phys, size, user_addr)) < 0)
		return ret;
	/* Map from the page that holds mmap_offset: QEMU's offsets are page
	 * aligned, the spec does not promise it. */
	if (ADD_OVERFLOW(size, mmap_offset - start, &len) || len > SIZE_MAX || mmap_offset > INT64_MAX)
		return -EINVAL;
	if ((ret = vhostmem_fd_seal(fd, "guest memory region")) < 0)
		return ret;
	unsealed = ret == 1;
	if ((ret = vhostmem_fd_covers(fd, mmap_offset, size)) < 0)
		return ret;
	p = mmap(NULL, (size_t)len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, (off_t)start);
	if (p == MAP_FAILED)
		return -errno;
	if (unsealed && (ret = guard_add(p, (size_t)len, &m->damaged)) < 0) {
		log_error("vhost: guest memory region: cannot guard an unsealed file against "
			  "shrinking: %s", strerror(-ret));
		munmap(p, (size_t)len);
		return ret;
	}
	r = &m->regions[m->nregions++];
	r->guarded = unsealed;
	r->guest_phys = guest_phys;
	r->size = size;
	r->user_addr = user_addr;
	r->map = p;
	r->map_len = (size_t)len;
	r->host = (uint8_t *)p + (mmap_offset - start);
	return 0;
}

int vhostmem_add_host(struct vhostmem *m, uint64_t guest_phys, uint64_t size, uint64_t user_addr,
		      void *host)
{
	int ret = vhostmem_check(m, guest_phys, size, user_addr);
	struct vhostmem_region *r;

	if (ret < 0)
		return ret;
	r = &m->regions[m->nregions++];
	*r = (struct vhostmem_region){ .guest_phys = guest_phys, .size = size,
				       .user_addr = user_addr, .host = host };
	return 0;
}

/* The host address of [@addr, @addr + @len) in one address space of the
 * regions: front-end virtual (@uva) or guest physical; NULL if no region
 * holds it all. */
static void *vhostmem_lookup(const struct vhostmem *m, uint64_t addr, uint64_t len, bool uva)
{
	if (len == 0)
		len = 1;
	for (unsigned i = 0; i < m->nregions; i++) {
		const struct vhostmem_region *r = &m->regions[i];
		uint64_t base = uva ? r->user_addr : r->guest_phys;

		/* Written so that nothing overflows: addr - base < size and
		 * len <= size - (addr - base). */
		if (addr >= base && addr - base < r->size && len <= r->size - (addr - base))
			return r->host + (addr - base);
	}
	return NULL;
}

void *vhostmem_gpa(const struct vhostmem *m, uint64_t gpa, uint64_t len)
{
	return vhostmem_lookup(m, gpa, len, false);
}

void *vhostmem_uva(const struct vhostmem *m, uint64_t uva, uint64_t len)
{
	return vhostmem_lookup(m, uva, len, true);
}
