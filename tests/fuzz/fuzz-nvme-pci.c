/* SPDX-License-Identifier: MIT */
/*
 * fuzz-nvme-pci.c: libFuzzer target for the NVMe PCI function
 * (nvme_emul/nvme_pci.h): the input is a guest's script of MMIO and
 * config writes and reads, guest-memory writes (queue entries, PRP
 * lists, SGL segments) and reactor passes, against a function over a
 * mem: namespace with 1 MiB of guest memory (anything past it fails
 * with -EFAULT, as a VMM reports unmapped memory).
 *
 * Input: 1 byte of set-up (bit 0: offer mem_map), then operations:
 *   00 OFF16 VAL32      BAR0 write (4 bytes; OFF rounded down to 4)
 *   01 OFF16 VAL32      BAR4 write
 *   02 OFF8 LEN8 VAL32  config write (LEN 1, 2 or 4)
 *   03 ADDR24 N8 DATA   guest memory write of N bytes (at most 64)
 *   04 N8               N reactor passes
 *   05 OFF16            BAR0 read (8 bytes when aligned, else 4)
 *   06                  the Linux bring-up: BARs, MSI-X, AQA 0F0Fh,
 *                       ASQ 10000h, ACQ 20000h, CC 460001h
 * At the end the guest disables the controller: CSTS.RDY must clear
 * (the reset drains), then the function is freed; ASan watches every
 * byte the function moves, and LeakSanitizer the queues it made.
 */
#include "config.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tests/fuzz/fuzz-prelude.h"
#include "common/endian.h"
#include "nvme_emul/nvme_pci.h"
#include "storage/disk.h"
#include "storage/spec.h"

#define MEM (1u << 20)

static uint8_t *guest;
static bool offer_map;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fuzz_prelude_init();
	guest = malloc(MEM);
	if (!guest)
		abort();
	return 0;
}

static int f_read(void *opaque, uint64_t gpa, void *buf, size_t len)
{
	(void)opaque;
	if (gpa > MEM || len > MEM - gpa)
		return -EFAULT;
	memcpy(buf, guest + gpa, len);
	return 0;
}

static int f_write(void *opaque, uint64_t gpa, const void *buf, size_t len)
{
	(void)opaque;
	if (gpa > MEM || len > MEM - gpa)
		return -EFAULT;
	memcpy(guest + gpa, buf, len);
	return 0;
}

static void *f_map(void *opaque, uint64_t gpa, size_t len)
{
	(void)opaque;
	if (!offer_map || gpa > MEM || len > MEM - gpa)
		return NULL;
	return guest + gpa;
}

static void f_msi(void *opaque, uint64_t addr, uint32_t data)
{
	(void)opaque;
	(void)addr;
	(void)data;
}

static void bringup(struct nvmeemu_pci *p)
{
	nvmeemu_pci_cfg_write(p, 0x10, 4, 0xf0000000u);
	nvmeemu_pci_cfg_write(p, 0x20, 4, 0xf0004000u);
	nvmeemu_pci_cfg_write(p, 0x04, 2, 6);
	for (unsigned v = 0; v < 9; v++) {
		nvmeemu_pci_mmio_write(p, 4, v * 16, 4, 0xfee00000u);
		nvmeemu_pci_mmio_write(p, 4, v * 16 + 8, 4, v);
		nvmeemu_pci_mmio_write(p, 4, v * 16 + 12, 4, 0);
	}
	nvmeemu_pci_cfg_write(p, 0x42, 2, 0x8000);
	nvmeemu_pci_mmio_write(p, 0, 0x14, 4, 0);
	nvmeemu_pci_mmio_write(p, 0, 0x24, 4, 0x000f000f);
	nvmeemu_pci_mmio_write(p, 0, 0x28, 8, 0x10000);
	nvmeemu_pci_mmio_write(p, 0, 0x30, 8, 0x20000);
	nvmeemu_pci_mmio_write(p, 0, 0x14, 4, 0x00460001);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct nvmeemu_pci_host h = { .mem_read = f_read, .mem_write = f_write, .mem_map = f_map,
				      .msi = f_msi };
	struct nvmeemu_subsys_opts so = { 0 };
	struct nvmeemu_subsys *s = NULL;
	struct nvmeemu_pci *p = NULL;
	struct disk *d = NULL;
	char err[256];
	size_t i = 1;
	uint64_t v;

	if (size < 1)
		return 0;
	offer_map = data[0] & 1;
	memset(guest, 0, MEM);
	nvmeemu_pci_subsys_opts(&so, 0x1414);
	if (nvmeemu_subsys_new(&so, &s, err, sizeof(err)) < 0 ||
	    spec_open_str("mem:1M", false, NULL, &d, err, sizeof(err)) < 0 ||
	    nvmeemu_subsys_add_ns(s, 1, d, err, sizeof(err)) < 0 ||
	    nvmeemu_pci_new(s, &h, &(struct nvmeemu_pci_opts){ .max_io_queues = 8,
			    .reactors = &main_reactor, .nr_reactors = 1 }, &p, err, sizeof(err)) < 0)
		abort();
	while (i < size) {
		uint8_t op = data[i++] % 7;
		size_t left = size - i;

		switch (op) {
		case 0: case 1:
			if (left < 6)
				goto end;
			nvmeemu_pci_mmio_write(p, op ? 4 : 0, ds_get_le16(data + i) & ~3u, 4,
					       ds_get_le32(data + i + 2));
			i += 6;
			break;
		case 2:
			if (left < 6)
				goto end;
			nvmeemu_pci_cfg_write(p, data[i], data[i + 1] % 5, ds_get_le32(data + i + 2));
			i += 6;
			break;
		case 3: {
			uint32_t a, n;

			if (left < 4)
				goto end;
			a = (data[i] | data[i + 1] << 8 | data[i + 2] << 16) % MEM;
			n = data[i + 3] % 65;
			i += 4;
			if (n > size - i)
				n = (uint32_t)(size - i);
			if (n > MEM - a)
				n = MEM - a;
			memcpy(guest + a, data + i, n);
			i += n;
			break;
		}
		case 4:
			if (left < 1)
				goto end;
			for (unsigned k = 0; k < data[i] % 32u; k++)
				reactor_run_once(main_reactor, false);
			i++;
			break;
		case 5:
			if (left < 2)
				goto end;
			nvmeemu_pci_mmio_read(p, 0, ds_get_le16(data + i) & 0x3ffc,
					      ds_get_le16(data + i) % 8 ? 4 : 8, &v);
			i += 2;
			break;
		case 6:
			bringup(p);
			break;
		}
	}
end:
	for (unsigned k = 0; k < 64; k++)
		reactor_run_once(main_reactor, false);
	nvmeemu_pci_mmio_write(p, 0, 0x14, 4, 0);
	for (unsigned k = 0; k < 100000; k++) {
		nvmeemu_pci_mmio_read(p, 0, 0x1c, 4, &v);
		if (!(v & 1))
			break;
		reactor_run_once(main_reactor, reactor_pending(main_reactor) > 0);
	}
	nvmeemu_pci_mmio_read(p, 0, 0x1c, 4, &v);
	if (v & 1)
		abort();                                  /* the reset never finished */
	nvmeemu_pci_free(p);
	for (unsigned k = 0; k < 8; k++)
		reactor_run_once(main_reactor, false);
	nvmeemu_subsys_free(s);
	disk_unref(d);
	return 0;
}
