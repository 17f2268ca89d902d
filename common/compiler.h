/* SPDX-License-Identifier: MIT */
/*
 * compiler.h: small compiler helpers used everywhere — cleanup attributes,
 * container_of, branch hints, checked arithmetic, min/max.
 */
#ifndef DISKSTACK_COMMON_COMPILER_H
#define DISKSTACK_COMMON_COMPILER_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#define likely(x)   __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Pointer to the structure that embeds member @m at @ptr. */
#define container_of(ptr, type, m) \
	((type *)(void *)((char *)(ptr) - offsetof(type, m)))

#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))

/* Overflow-checked arithmetic: true when the result overflowed. */
#define ADD_OVERFLOW(a, b, r) __builtin_add_overflow((a), (b), (r))
#define MUL_OVERFLOW(a, b, r) __builtin_mul_overflow((a), (b), (r))

#define IS_POW2(x) ((x) != 0 && ((x) & ((x) - 1)) == 0)
#define ROUND_UP(x, a) ((((x) + (a) - 1) / (a)) * (a))
#define DIV_ROUND_UP(x, a) (((x) + (a) - 1) / (a))

#define PRINTF_FMT(f, a) __attribute__((format(printf, f, a)))
#define UNUSED __attribute__((unused))

static inline void cleanup_free_(void *p) { free(*(void **)p); }
static inline void cleanup_close_(int *fd) { if (*fd >= 0) close(*fd); }

/* Function-local resources released when the variable leaves scope. */
#define CLEANUP_FREE __attribute__((cleanup(cleanup_free_)))
#define CLEANUP_CLOSE __attribute__((cleanup(cleanup_close_)))

/* log2 of a power of two. */
static inline unsigned ilog2_u64(uint64_t x) { return 63u - (unsigned)__builtin_clzll(x); }

#endif
