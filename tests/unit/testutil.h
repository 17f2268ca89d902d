/* SPDX-License-Identifier: MIT */
/*
 * testutil.h: helpers shared by the unit tests.
 */
#ifndef DISKSTACK_TESTS_TESTUTIL_H
#define DISKSTACK_TESTS_TESTUTIL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <sys/uio.h>
#include <cmocka.h>

#include "common/reactor.h"
#include "storage/disk.h"
#include "storage/layered.h"

/* The calling thread's reactor, created on first use. Never NULL (fails the
 * test instead). */
struct reactor *tu_reactor(void);

/* Frees the calling thread's reactor, if any (end of a thread or test). */
void tu_reactor_done(void);

/* cmocka setup and teardown (of a group or of one test) that only create
 * and free the calling thread's reactor (tu_reactor, tu_reactor_done).
 * Always return 0. */
int tu_reactor_setup(void **state);
int tu_reactor_teardown(void **state);

/* Fills @buf with a pattern derived from (@tag, byte offset @off): each
 * 8-byte word holds tag << 48 | (off + i) / 8. Deterministic. */
void tu_fill(void *buf, size_t len, uint64_t tag, uint64_t off);
/* Checks the pattern of tu_fill; returns the first bad byte offset or -1. */
long tu_check(const void *buf, size_t len, uint64_t tag, uint64_t off);

/* True if every byte of @buf is zero. */
int tu_is_zero(const void *buf, size_t len);

/* A fresh temporary directory for this process (created once, removed at
 * exit). Returns a static path. */
const char *tu_tmpdir(void);
/* "<tmpdir>/<name>" in a static rotating buffer (8 slots). */
const char *tu_path(const char *name);

/* Attaches @l above @lower (NULL for a bottom layer) with layer_attach()
 * and copies the recorded metadata to *@meta. The tu_layer_* helpers below
 * take the sector size from layer_get_meta(), else from
 * tu_layer_set_sector_size(), else assume 512. Returns 0 or the attach
 * error (the error message is printed, the test does not fail). */
int tu_layer_attach(struct layer *l, const struct layer_meta *lower, struct layer_meta *meta);
/* Tells the tu_layer_* helpers the sector size of @l. */
void tu_layer_set_sector_size(struct layer *l, uint32_t sector_size);

/* Runs a layer op synchronously on the current reactor: sets io->done,
 * calls the op, waits if it returned DISK_PENDING. Returns the status. */
int tu_layer_io(struct layer *l, struct disk_io *io);
/* Synchronous layer helpers built on tu_layer_io. @marker may be NULL for
 * a read (a private one is used; the number of marked sectors is returned
 * through *nmarked if non-NULL). */
int tu_layer_read(struct layer *l, uint64_t sector, void *buf, size_t len, uint64_t *nmarked);
int tu_layer_write(struct layer *l, uint64_t sector, const void *buf, size_t len, uint32_t flags);
int tu_layer_unmap(struct layer *l, uint64_t sector, uint64_t count, bool next_is_zero);

/* Reads or writes exactly @n bytes on the blocking descriptor @fd; an
 * error or end of file fails the test. */
void tu_read_full(int fd, void *p, size_t n);
void tu_write_full(int fd, const void *p, size_t n);

/* What disk_describe() said about one disk: its own parameters, one
 * "key=value\n" line each, in order (cut at the buffer's end). */
struct tu_described {
	char text[4096];
};
/* Describes @d (borrowed) into *@out. */
void tu_describe(struct disk *d, struct tu_described *out);

/* Chooses the size in bytes of iovec entry @i (any size > 0; the splitter
 * clamps it to what is left). @arg is the caller's. */
typedef size_t tu_iov_size_fn(void *arg, int i);
/* Splits @buf (@len bytes, borrowed) into @iov entries of the sizes @size
 * chooses, in order, at most @max of them (more fails the test). Returns
 * the count. */
int tu_split_iov(void *buf, size_t len, tu_iov_size_fn *size, void *arg, struct iovec *iov,
		 int max);
/* tu_split_iov with the @nsizes sizes of @sizes in turn, repeated. */
int tu_split_iov_sizes(void *buf, size_t len, const size_t *sizes, unsigned nsizes,
		       struct iovec *iov, int max);

/* A loop device over a backing file, for the tests that need root. */
struct tu_loop {
	char dev[64];           /* /dev/loopN, "" when not attached */
	int hold;               /* open on dev: with AUTOCLEAR, a killed test frees it */
	bool autoclear;         /* AUTOCLEAR set: closing hold detaches it */
};

/* Attaches the existing file @backing (borrowed) with `losetup --find`,
 * with a logical @sector_size (0: the driver's default), and holds it open
 * with AUTOCLEAR so that the device goes away even if the test is killed.
 * Skips the test without root or loop device support. */
void tu_loop_attach(struct tu_loop *l, const char *backing, unsigned sector_size);
/* Detaches @l (through its held descriptor, never by name once it may be
 * free: another test may have attached the same /dev/loopN). Harmless on a
 * zeroed or already detached @l with hold = -1. */
void tu_loop_detach(struct tu_loop *l);

/* Seed for randomised tests: $DISKSTACK_SEED or the time; printed. */
uint64_t tu_seed(const char *test);
/* xorshift64* step. */
uint64_t tu_rand(uint64_t *state);

#endif
