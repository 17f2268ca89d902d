/* SPDX-License-Identifier: MIT */
/*
 * nvme_pci.h: an NVMe controller as a PCI function, for embedding in a
 * VMM (libdiskemu; docs/nvme.md, "The PCI function: embedding").
 *
 * The VMM owns the vCPUs, guest memory and the interrupt controller; the
 * function owns config space, BAR0 (registers and doorbells), BAR4 (the
 * MSI-X table and PBA) and its queues. The VMM calls the config and
 * MMIO handlers from its vCPU threads; they never block on I/O: a
 * doorbell write stores the new value and posts a task to the queue's
 * reactor, which fetches submission entries from guest memory, runs
 * them through the command core (nvme.h) and writes completion entries
 * and MSI-X messages back. Enable, reset and shutdown are seen by the
 * guest through CSTS, as the NVMe Base specification's §3.5 requires.
 *
 * Layout (NVMe Base spec 2.0 §3.1, PCI Local Bus 3.0, PCIe 4.0 §7.7):
 *   config  class 01h/08h/02h; BAR0 64-bit memory, 16 KiB; BAR4 64-bit
 *           memory, 4 KiB: the MSI-X table at 0, the PBA at 800h;
 *           capabilities MSI-X at 40h, PCI Express (endpoint) at 50h.
 *   BAR0    CAP (MQES 255, CQR, DSTRD 0, TO 15 s, CSS NVM), VS 2.0,
 *           INTMS, INTMC, CC, CSTS, NSSR, AQA, ASQ, ACQ; doorbells from
 *           1000h, 4 bytes apart (SQ y tail at 1000h + 8y, CQ y head at
 *           1004h + 8y).
 */
#ifndef DISKSTACK_NVME_EMUL_NVME_PCI_H
#define DISKSTACK_NVME_EMUL_NVME_PCI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nvme_emul/nvme.h"

struct reactor;
struct nvmeemu_pci;

#define NVMEEMU_PCI_BAR0_BYTES 0x4000u
#define NVMEEMU_PCI_BAR4_BYTES 0x1000u
#define NVMEEMU_PCI_MAX_VECTORS 128u    /* the MSI-X table fills BAR4 up to the PBA */
#define NVMEEMU_PCI_MAX_IO_QUEUES 64u
#define NVMEEMU_PCI_SAVE_VERSION 1u

/*
 * What the VMM gives the function. Every callback may run on any
 * reactor thread (and mem_* also on a vCPU thread), concurrently.
 */
struct nvmeemu_pci_host {
	/* Required. Copy @len bytes of guest physical memory at @gpa from /
	 * to @buf. Return 0, or -EFAULT (any -errno) when the range is not
	 * guest RAM: never fault. The command then ends with Data Transfer
	 * Error; an unreadable queue entry makes the controller fatal
	 * (CSTS.CFS). */
	int (*mem_read)(void *opaque, uint64_t gpa, void *buf, size_t len);
	int (*mem_write)(void *opaque, uint64_t gpa, const void *buf, size_t len);
	/* Optional. A host pointer to [gpa, gpa + len) when guest memory is
	 * mapped in this process and that range is contiguous RAM, else
	 * NULL: Read and Write then move data with no copy. */
	void *(*mem_map)(void *opaque, uint64_t gpa, size_t len);
	/* Required. Deliver the MSI-X message (@addr, @data) of an enabled,
	 * unmasked vector. */
	void (*msi)(void *opaque, uint64_t addr, uint32_t data);
	void *opaque;
};

struct nvmeemu_pci_opts {
	uint16_t vendor_id, device_id;          /* 0: 1414h / C03Eh */
	uint16_t subsys_vendor_id, subsys_id;
	uint16_t cntlid;                        /* the controller ID in the subsystem (0: 1) */
	uint16_t max_io_queues;                 /* 0: 16; at most NVMEEMU_PCI_MAX_IO_QUEUES */
	uint16_t msix_vectors;                  /* 0: max_io_queues + 1; at most 128 */
	/* The reactors the queues run on (borrowed; each run by its own
	 * thread for the life of the function). The admin queue runs on
	 * reactors[0]; I/O CQ n and its SQs on reactors[n % nr_reactors]. */
	struct reactor *const *reactors;
	unsigned nr_reactors;
};

/* Sets the fields of @o that a subsystem carrying PCI functions needs:
 * queue creation is the transport's, SGLs are supported (SGLS 1), PCI
 * vendor ids @vid. The other fields stay the caller's: start from a
 * zeroed struct (and set nqn, serial, ... before or after). */
void nvmeemu_pci_subsys_opts(struct nvmeemu_subsys_opts *o, uint16_t vid);

/*
 * Makes a PCI function with a controller of @s (borrowed; it must
 * outlive the function, and should be made with nvmeemu_pci_subsys_opts).
 * @h is copied. Returns 0 or -EINVAL / -EEXIST / -ENOMEM with a message
 * in @err.
 */
int nvmeemu_pci_new(struct nvmeemu_subsys *s, const struct nvmeemu_pci_host *h,
		    const struct nvmeemu_pci_opts *o, struct nvmeemu_pci **out, char *err,
		    size_t errlen);
/* Frees @p: the guest disabled the controller and CSTS.RDY read 0, or
 * it was never enabled, or (a migration source) nvmeemu_pci_save
 * succeeded and the vCPUs stay stopped. In the last case the memory is
 * released by a task on reactors[0], which must run one more pass.
 * NULL allowed. */
void nvmeemu_pci_free(struct nvmeemu_pci *p);
/* The controller, for nvmeemu_ctrl_attach_ns and friends. */
struct nvmeemu_ctrl *nvmeemu_pci_ctrl(struct nvmeemu_pci *p);

/*
 * Config space (256 bytes): reads and writes of 1, 2 or 4 bytes at
 * @off, naturally aligned. Unknown or read-only bits ignore writes;
 * BARs answer size probing (all ones) with their size mask. vCPU
 * threads. Returns 0 or -EINVAL (bad size or alignment).
 */
int nvmeemu_pci_cfg_read(struct nvmeemu_pci *p, unsigned off, unsigned len, uint32_t *val);
int nvmeemu_pci_cfg_write(struct nvmeemu_pci *p, unsigned off, unsigned len, uint32_t val);
/* The guest physical address BAR @bar (0 or 4) is programmed to (0
 * until it is), so the VMM can route MMIO to the handlers below. */
uint64_t nvmeemu_pci_bar_addr(struct nvmeemu_pci *p, unsigned bar);

/*
 * MMIO to BAR @bar (0 or 4) at byte @off: 4- or 8-byte accesses,
 * naturally aligned (64-bit registers also as two 4-byte halves).
 * Reads of unknown or write-only registers (doorbells) read 0; writes
 * to read-only ones are ignored. vCPU threads; never waits for I/O.
 * Returns 0 or -EINVAL (bad size, alignment, bar or offset).
 */
int nvmeemu_pci_mmio_read(struct nvmeemu_pci *p, unsigned bar, uint64_t off, unsigned len,
			  uint64_t *val);
int nvmeemu_pci_mmio_write(struct nvmeemu_pci *p, unsigned bar, uint64_t off, unsigned len,
			   uint64_t val);

/*
 * Save and restore for live migration: config space, registers, MSI-X,
 * every queue's base, size, head, tail and phase, the controller
 * features, and the held Asynchronous Event Requests (re-held on
 * restore), as a versioned blob (NVMEEMU_PCI_SAVE_VERSION).
 *
 * nvmeemu_pci_save, with the vCPUs stopped: writes at most @len bytes
 * to @buf and returns the blob's size (call with @len 0 to size it), or
 * -EBUSY while commands other than held AERs run (retry once they
 * completed; no new ones start while vCPUs are stopped), -EAGAIN during
 * an enable or reset. nvmeemu_pci_restore, on a function made with the
 * same options and never enabled, before the vCPUs run: 0, or -EINVAL
 * (not a blob of a known version, or not for these options), -EBUSY.
 */
int nvmeemu_pci_save(struct nvmeemu_pci *p, void *buf, size_t len);
int nvmeemu_pci_restore(struct nvmeemu_pci *p, const void *buf, size_t len);

#endif
