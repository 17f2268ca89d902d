/* SPDX-License-Identifier: MIT */
/*
 * fuzz-vhdfooter.c: libFuzzer target for the fixed-VHD footer checks
 * (storage/vhdfooter.c, storage/vhd1.c): the first 8 bytes of the input are
 * the file length, the next 512 the footer. A footer that passes must
 * describe a disk that fits in the file; one that fails must be explained.
 */
#include "config.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "storage/backends/vhd1.h"
#include "storage/backends/vhdfooter.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t raw[VHDFOOTER_BYTES];
	struct vhdfooter f;
	uint64_t file_len = 0;
	char err[256];
	int r;

	if (size < 8)
		return 0;
	memcpy(&file_len, data, 8);
	memset(raw, 0, sizeof(raw));
	memset(&f, 0, sizeof(f));
	memcpy(raw, data + 8, size - 8 < sizeof(raw) ? size - 8 : sizeof(raw));

	err[0] = '\0';
	r = vhd1_parse_footer(raw, file_len, &f, err, sizeof(err));
	if (r == 0) {
		if (f.current_size == 0 || f.current_size % 512 ||
		    f.current_size > file_len - VHDFOOTER_BYTES)
			abort();
	} else if ((r != -EINVAL && r != -ENOTSUP) || !err[0]) {
		abort();
	}
	/* Building and re-parsing any size that fits gives the same size. */
	uint64_t sz = (file_len % (UINT64_C(1) << 40)) & ~UINT64_C(511);
	if (sz) {
		vhdfooter_build_hyperv(sz, f.unique_id, raw);
		if (vhdfooter_parse(raw, sz, &f) != VHDFOOTER_OK || f.current_size != sz)
			abort();
	}
	return 0;
}
