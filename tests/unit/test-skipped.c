/* SPDX-License-Identifier: MIT */
/*
 * test-skipped.c: stands in for the unit test of a module that this build
 * left out (an optional library configure did not use). It reports the
 * whole test as skipped, with the reason, in TAP ("1..0 # SKIP ...").
 */
#include <stdio.h>

#ifndef DS_SKIP_REASON
#error "DS_SKIP_REASON must name the missing build option"
#endif

int main(void)
{
	printf("1..0 # SKIP %s\n", DS_SKIP_REASON);
	return 0;
}
