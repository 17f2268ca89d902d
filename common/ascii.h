/* SPDX-License-Identifier: MIT */
/*
 * ascii.h: checks on the ASCII strings that identify an emulated device
 * (SCSI INQUIRY vendor/product/revision/serial, NVMe serial/model/firmware
 * and NQN). One copy for both emulators.
 */
#ifndef DISKSTACK_COMMON_ASCII_H
#define DISKSTACK_COMMON_ASCII_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

/* Whether @s (borrowed; NULL: not given, which is fine) is at most @max
 * bytes of printable ASCII (20h-7Eh), the character set SPC-4 and the NVMe
 * base specification allow in these fields. */
static inline bool ascii_printable(const char *s, size_t max)
{
	if (!s)
		return true;
	if (strlen(s) > max)
		return false;
	for (; *s; s++)
		if (*s < 0x20 || *s > 0x7e)
			return false;
	return true;
}

#endif
