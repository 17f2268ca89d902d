/* SPDX-License-Identifier: MIT */
/*
 * fuzz-prelude.h: the set-up the libFuzzer targets share: the entry
 * points' prototypes, the one reactor a target runs its inputs on, and
 * the logging level (debug with FUZZ_VERBOSE set, else errors only, so
 * that a long run does not drown in the log lines bad inputs cause).
 *
 * Included by exactly one .c file per target. A target with nothing more
 * to set up defines FUZZ_PRELUDE_INITIALIZE before including it and gets
 * LLVMFuzzerInitialize from here; the others call fuzz_prelude_init()
 * from their own.
 */
#ifndef DISKSTACK_TESTS_FUZZ_PRELUDE_H
#define DISKSTACK_TESTS_FUZZ_PRELUDE_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "common/log.h"
#include "common/reactor.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The target's reactor (owned; lives until the process exits). */
static struct reactor *main_reactor;

/* Sets the logging level and makes main_reactor; aborts without one. */
static inline void fuzz_prelude_init(void)
{
	log_set_level(getenv("FUZZ_VERBOSE") ? LOG_LEVEL_DEBUG : LOG_LEVEL_ERROR);
	if (reactor_new(&main_reactor, 0) < 0)
		abort();
}

#ifdef FUZZ_PRELUDE_INITIALIZE
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fuzz_prelude_init();
	return 0;
}
#endif

#endif
