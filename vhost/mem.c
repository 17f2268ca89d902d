/* SPDX-License-Identifier: MIT */
/*
 * mem.c: the guest memory table (mem.h).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/compiler.h"
#include "common/log.h"
#include "vhost/mem.h"

int vhostmem_new(struct vhostmem **out)
{
	*out = calloc(1, sizeof(**out));
	return *out ? 0 : -ENOMEM;
}

void vhostmem_free(struct vhostmem *m)
{
	if (!m)
		return;
	for (unsigned i = 0; i < m->nregions; i++)
		if (m->regions[i].map)
			munmap(m->regions[i].map, m->regions[i].map_len);
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
		 "sealed without F_SEAL_SHRINK); a front-end that shrinks it makes the back-end "
		 "die of SIGBUS", what);
	return 1;
}

int vhostmem_add_fd(struct vhostmem *m, uint64_t guest_phys, uint64_t size, uint64_t user_addr,
		    int fd, uint64_t mmap_offset)
{
	uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
	uint64_t start = mmap_offset & ~(page - 1), len;
	struct vhostmem_region *r;
	void *p;
	int ret;

	if ((ret = vhostmem_check(m, guest_phys, size, user_addr)) < 0)
		return ret;
	/* Map from the page that holds mmap_offset: QEMU's offsets are page
	 * aligned, the spec does not promise it. */
	if (ADD_OVERFLOW(size, mmap_offset - start, &len) || len > SIZE_MAX || mmap_offset > INT64_MAX)
		return -EINVAL;
	if ((ret = vhostmem_fd_seal(fd, "guest memory region")) < 0 ||
	    (ret = vhostmem_fd_covers(fd, mmap_offset, size)) < 0)
		return ret;
	p = mmap(NULL, (size_t)len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, (off_t)start);
	if (p == MAP_FAILED)
		return -errno;
	r = &m->regions[m->nregions++];
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
