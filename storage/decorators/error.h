/* SPDX-License-Identifier: MIT */
/*
 * error.h: the fault-injection decorator, `error:<rules>:<spec>`
 * (docs/decorator-error.md has the grammar and examples).
 *
 * A rule names the operations it fails, the status they fail with, and
 * when:
 *
 *     <rules> = <rule>[/<rule>...]
 *     <rule>  = <ops>:<status>[;<option>...]
 *     <ops>   = read | write | flush | unmap | trim | all
 *     <status> = eio | enospc | eperm | erofs | ... (an I/O error with that errno)
 *              | medium (unrecovered read on reads, write fault otherwise)
 *              | readonly (a write-protected disk)
 *     <option> = rate=<p> | range=<first>[-<last>] | after=<n> | once
 *              | count=<n> | delay=<time> | seed=<n>
 *
 * `error:read:eio:mem:1G` fails every read of a RAM disk with EIO. Rules
 * are tried in order for each request; the first that fires decides its
 * status, and a request no rule fails passes through untouched. Every
 * other operation (block status, cache, persistent reservations, eject,
 * resize) passes through, and the capabilities are the lower disk's.
 *
 * The rules can be replaced while requests run (error_disk_set): the
 * management server's fault-set / fault-clear.
 */
#ifndef DISKSTACK_STORAGE_ERROR_H
#define DISKSTACK_STORAGE_ERROR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "storage/disk.h"

/* Most rules in one set. */
#define ERROR_MAX_RULES 32
/* Longest delay=: one hour, in microseconds (as the delay decorator). */
#define ERROR_MAX_DELAY_US (3600ull * 1000 * 1000)

/*
 * Checks the rules text @text of @len bytes (not NUL-terminated; borrowed)
 * without keeping anything. Returns 0, or -EINVAL with the part that is
 * wrong at [*bad_off, *bad_off + *bad_len) of @text (len 0: a position
 * only), a message in *what and an optional hint in *hint (static strings;
 * any pointer may be NULL). For the spec parser and for callers that want
 * to point at the offending part themselves.
 */
int error_rules_check(const char *text, size_t len, size_t *bad_off, size_t *bad_len,
		      const char **what, const char **hint);

/*
 * Wraps @lower in an error disk with the rules @rules (borrowed, may be ""
 * for none). On success the new disk owns @lower; on failure the caller
 * still does. Errors (message in @err of @errlen bytes): -EINVAL for bad
 * rules (the message quotes the bad part and its offset), -ENOMEM.
 */
int error_new(const char *rules, struct disk *lower, struct disk **out, char *err,
	      size_t errlen);

/* True when @d (NULL allowed) is an error disk (from error_new or an
 * error: spec; not one below it). Any thread. */
bool error_disk_is(const struct disk *d);

/*
 * Replaces the rules of @d with @rules (borrowed; "" clears them).
 * Thread-safe, any thread, while requests are being served on other
 * reactors: the new set takes over atomically, requests already decided
 * keep their fate (a delayed failure still fails), and every rule's
 * counters (after=, count=, once, the rate's draws) start again from zero.
 * Returns 0; -EINVAL with a message in @err (may be NULL) for bad rules,
 * the old rules staying in force; -ENOTTY if @d is not an error disk;
 * -ENOMEM.
 */
int error_disk_set(struct disk *d, const char *rules, char *err, size_t errlen);

/* Removes every rule of @d: everything passes through. Returns 0 or
 * -ENOTTY if @d is not an error disk. Any thread. */
int error_disk_clear(struct disk *d);

/*
 * Writes the current rules of @d in canonical form (what error_disk_set
 * accepts; "" when there are none) into @buf of @len bytes, NUL-terminated.
 * Returns the length of the text (without the NUL), -ERANGE when @len is
 * too small (@buf then holds "" if @len > 0), or -ENOTTY if @d is not an
 * error disk. Any thread.
 */
int error_disk_get(struct disk *d, char *buf, size_t len);

/* Counters of rule @index of @d's current set: requests the rule matched
 * (operation and range) and how many of them it failed. Returns 0,
 * -ENOENT when there is no such rule, -ENOTTY for other disks. Any thread. */
int error_disk_stats(struct disk *d, unsigned index, uint64_t *matched, uint64_t *injected);

#endif
