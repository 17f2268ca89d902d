/* SPDX-License-Identifier: MIT */
/*
 * mem.h: a vhost-user guest memory table — the regions of SET_MEM_TABLE,
 * each fd mapped once, and the translations the rings need.
 *
 * Two address spaces (vhost-user spec, "Memory regions"): descriptors
 * carry guest-physical addresses; SET_VRING_ADDR carries the front-end's
 * own virtual addresses (user_addr). Both translate to a pointer into our
 * mapping of the same region. A table is built once and never changes
 * afterwards (the server swaps whole tables while every ring is stopped),
 * so lookups take no lock and make no syscall: a scan of at most
 * VHOSTMEM_MAX_REGIONS entries.
 *
 * Guest memory is untrusted: a translation succeeds only when the whole
 * range [addr, addr + len) lies inside one region. Ranges that touch two
 * regions fail even when the regions happen to be adjacent.
 */
#ifndef DISKSTACK_VHOST_MEM_H
#define DISKSTACK_VHOST_MEM_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VHOSTMEM_MAX_REGIONS 8

struct vhostmem_region {
	uint64_t guest_phys;
	uint64_t size;
	uint64_t user_addr;
	uint8_t *host;                  /* our pointer to guest_phys */
	void *map;                      /* what mmap returned (NULL: not ours) */
	size_t map_len;
	bool guarded;                   /* under the SIGBUS guard (vhostmem_fd_seal) */
};

struct vhostmem {
	unsigned nregions;
	struct vhostmem_region regions[VHOSTMEM_MAX_REGIONS];
	atomic_bool damaged;            /* vhostmem_damaged */
};

/*
 * Creates an empty table in *@out (owned by the caller; vhostmem_free).
 * Returns 0 or -ENOMEM.
 */
int vhostmem_new(struct vhostmem **out);

/* Checks that bytes [@off, @off + @len) of @fd exist: a shared mapping
 * of a regular file (a memfd) past its end faults with SIGBUS on the first
 * access, so a front-end that sends a region larger than its file must be
 * refused before anything touches the mapping. Returns 0, -EINVAL, or
 * fstat's -errno. Other kinds of fd (devices) are left to mmap.
 * Call vhostmem_fd_seal() first: the file must not shrink after the check. */
int vhostmem_fd_covers(int fd, uint64_t off, uint64_t len);

/* Keeps the front-end from shrinking @fd (borrowed) under our mapping,
 * which would make our next access to the lost pages die of SIGBUS: adds
 * F_SEAL_SHRINK to a file that takes seals (memfd_create(2) with
 * MFD_ALLOW_SEALING; QEMU's memory-backend-memfd has it, and its default
 * seal=on already sealed it). The front-end may still grow the file. A file
 * that cannot be sealed (not a memfd: tmpfs or hugetlbfs files of
 * memory-backend-file; or a memfd with F_SEAL_SEAL and no F_SEAL_SHRINK:
 * memory-backend-memfd,seal=off) is still accepted, since refusing it would
 * refuse working QEMU setups: returns 1 for it, and logs a warning naming
 * @what. Returns 0 when @fd cannot shrink any more, or fcntl's -errno.
 * vhostmem_add_fd puts a region of such a file under the SIGBUS guard:
 * if the file shrinks after all, the process survives, the lost pages
 * read as zeroes and vhostmem_damaged turns true. */
int vhostmem_fd_seal(int fd, const char *what);

/* True once an access to a guarded region found its file shrunk under
 * the mapping (a front-end that truncated its guest memory): the pages
 * past the fault were replaced by private zero pages, so guest memory no
 * longer means anything and the device must stop (the rings break with
 * "guest memory shrank"). One relaxed load: cheap enough per request. */
static inline bool vhostmem_damaged(const struct vhostmem *m)
{
	return atomic_load_explicit((atomic_bool *)&m->damaged, memory_order_relaxed);
}

/*
 * Maps @size bytes of @fd from @mmap_offset (shared, read-write) and adds
 * them as a region at @guest_phys / @user_addr, sealing the file against
 * shrinking first where it can (vhostmem_fd_seal), else guarding the
 * mapping against SIGBUS (vhostmem_damaged). @fd is borrowed (the
 * caller closes it; the mapping stays). Returns 0, -EINVAL for an empty,
 * wrapping or overlapping region or one that ends past the end of a
 * regular file (vhostmem_fd_covers), -E2BIG when the table is full, or
 * fcntl's or mmap's -errno.
 */
int vhostmem_add_fd(struct vhostmem *m, uint64_t guest_phys, uint64_t size, uint64_t user_addr,
		    int fd, uint64_t mmap_offset);

/*
 * Adds memory the caller already has at @host (borrowed: it must outlive
 * the table; for tests and fuzz targets). Same checks and returns.
 */
int vhostmem_add_host(struct vhostmem *m, uint64_t guest_phys, uint64_t size, uint64_t user_addr,
		      void *host);

/* Unmaps every region and frees the table. NULL allowed. Only once
 * nothing can touch its memory any more (every ring over it stopped):
 * the SIGBUS guard's handler may be reading a region's entry. */
void vhostmem_free(struct vhostmem *m);

/* Pointer to guest-physical [@gpa, @gpa + @len) or NULL when the range is
 * not inside one region (or wraps). @len 0 is checked like 1 byte. */
void *vhostmem_gpa(const struct vhostmem *m, uint64_t gpa, uint64_t len);

/* Same for a front-end virtual address (ring addresses). */
void *vhostmem_uva(const struct vhostmem *m, uint64_t uva, uint64_t len);

#endif
