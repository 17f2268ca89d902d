/* SPDX-License-Identifier: MIT */
/*
 * virtpci.h: a PCI function served to User-Mode Linux over virt-pci
 * (docs/vhost.md, "UML virt-pci"). UML's virt-pci driver (Linux
 * arch/um/drivers/virt-pci.c, wire format in the UAPI header
 * include/uapi/linux/virtio_pcidev.h) is a vhost-user front-end: booted
 * with virtio_uml.device=SOCKET:ID it connects to our socket, and every
 * config-space and BAR access of the PCI device it shows on bus 0 becomes
 * a message on virtqueue 0; interrupts go back as messages in buffers UML
 * posts on virtqueue 1. This file is the device side of that protocol on
 * top of the vhost-user server (vhost.h): the server does the handshake,
 * the memory table and the rings; virtpci decodes the messages and calls a
 * generic PCI device (struct virtpci_dev_ops), which raises interrupts with
 * virtpci_msi and reaches guest memory (DMA) with virtpci_mem_*.
 *
 * Notes on the design
 * -------------------
 * - Reads are synchronous for UML (it busy-polls the used ring, up to
 *   virt_pci.max_delay_us microseconds, then reads all-ones), so the
 *   device's read callbacks must answer at once; writes are posted.
 * - Callbacks run on the ring thread of virtqueue 0, one at a time.
 * - UML composes every MSI message itself (its MSI domain writes address
 *   0xa0000 and the Linux IRQ number as data into the function's MSI-X
 *   table); the device reads its own table and hands virtpci_msi the
 *   entry's address and data, which UML then looks up.
 * - virtpci_msi may be called from any thread: the message is queued and
 *   the ring thread of virtqueue 1 puts it in the next buffer UML posted.
 *   An interrupt for an (address, data) pair already queued is merged
 *   with it: an MSI says "look at your queues", not "one more entry".
 * - Guest memory: UML's DMA is the identity (bus address = UML physical
 *   address) and the memory table maps physical addresses, so a DMA
 *   address is a guest-physical address of the table. The accessors
 *   copy under a read lock, so a table swap never frees memory under a
 *   copy; they fail with -EFAULT outside guest memory (or before UML sent
 *   its memory table) instead of faulting.
 */
#ifndef DISKSTACK_VHOST_VIRTPCI_H
#define DISKSTACK_VHOST_VIRTPCI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct vhost_dev_ops;
struct vhostsrv;
struct virtpci;

/* The virtio device ID of the tests' UML kernel
 * (CONFIG_UML_PCI_OVER_VIRTIO_DEVICE_ID; no official ID exists). */
#define VIRTPCI_DEVICE_ID 1234

/* virtio_pcidev_msg operations (include/uapi/linux/virtio_pcidev.h). */
enum {
	VIRTPCI_OP_CFG_READ = 1,
	VIRTPCI_OP_CFG_WRITE = 2,
	VIRTPCI_OP_MMIO_READ = 3,
	VIRTPCI_OP_MMIO_WRITE = 4,
	VIRTPCI_OP_MMIO_MEMSET = 5,
	VIRTPCI_OP_INT = 6,
	VIRTPCI_OP_MSI = 7,
	VIRTPCI_OP_PME = 8,
};

/* struct virtio_pcidev_msg: u8 op, u8 bar, u16 reserved, le32 size,
 * le64 addr, then the data. */
#define VIRTPCI_MSG_HDR_BYTES 16

/*
 * A PCI function. Every callback runs on virtqueue 0's ring thread, one at
 * a time. Data are little-endian, as on the PCI bus. @dev is
 * virtpci_opts.dev.
 */
struct virtpci_dev_ops {
	/* Required. Config space: @len is 1, 2, 4 or 8 bytes at @off (below
	 * 4096). Fill every byte of @buf (all-ones where nothing answers). */
	void (*config_read)(void *dev, uint32_t off, void *buf, uint32_t len);
	void (*config_write)(void *dev, uint32_t off, const void *buf, uint32_t len);
	/* Required. BAR @bar (0-5), @off within the BAR; @len is the access
	 * size (1, 2, 4, 8) or, from memcpy_fromio/toio, up to 4096 bytes
	 * of a longer copy, in order. */
	void (*bar_read)(void *dev, unsigned bar, uint64_t off, void *buf, uint32_t len);
	void (*bar_write)(void *dev, unsigned bar, uint64_t off, const void *buf, uint32_t len);
	/* Optional. Guest memory arrived (@connected: the front-end sent
	 * its memory table; interrupts and DMA work from now on) or went
	 * away (the front-end left; queued interrupts are dropped, and the
	 * memory is unmapped once this returns): a device resets itself
	 * here, as on a PCI reset. Control thread. */
	void (*session)(void *dev, bool connected);
};

struct virtpci_opts {
	const char *name;               /* for logs ("virt-pci"); borrowed */
	const struct virtpci_dev_ops *ops;   /* borrowed, static */
	void *dev;                      /* borrowed; outlives the virtpci */
};

/* Creates the protocol layer for @o->dev in *@out (owned by the caller;
 * virtpci_free after the server is freed). Returns 0, -EINVAL, -ENOMEM. */
int virtpci_new(const struct virtpci_opts *o, struct virtpci **out);
void virtpci_free(struct virtpci *vp);

/* The vhost-user device virtpci is (dev: the struct virtpci; two
 * virtqueues), for a server a caller sets up itself. */
extern const struct vhost_dev_ops virtpci_vhost_ops;

/* Creates a vhost-user server (two virtqueues, one thread each) serving
 * @vp; listen, start, stop and free it with vhost.h. Returns 0 or -errno. */
int virtpci_server_new(struct virtpci *vp, struct vhostsrv **out);

/*
 * Raises MSI (or MSI-X) message @addr/@data: queues an OP_MSI message for
 * UML. Any thread. Returns 0, or -ENOTCONN when no front-end is there
 * (the interrupt is lost, as on a bus nobody listens to), -ENOSPC when 64
 * distinct messages are already queued.
 */
int virtpci_msi(struct virtpci *vp, uint64_t addr, uint32_t data);
/* Asserts INTx pin @pin (1-4, INTA-INTD) as an edge (OP_INT). Any thread. */
int virtpci_intx(struct virtpci *vp, unsigned pin);

/* DMA: copies between guest-physical [@gpa, @gpa + @len) and @buf. Any
 * thread. Returns 0 or -EFAULT (outside guest memory, or none yet). */
int virtpci_mem_read(struct virtpci *vp, uint64_t gpa, void *buf, size_t len);
int virtpci_mem_write(struct virtpci *vp, uint64_t gpa, const void *buf, size_t len);

/* Our pointer to guest-physical [@gpa, @gpa + @len), NULL outside guest
 * memory: a plain offset into the mapped region, for a device that hands
 * guest buffers straight to a disk. Valid until the device's session
 * callback says the front-end left (the region is unmapped after it
 * returns), so the device must stop using it there. */
void *virtpci_mem_ptr(struct virtpci *vp, uint64_t gpa, size_t len);

/* Interrupt messages delivered to UML so far (tests, logs). */
uint64_t virtpci_msi_count(struct virtpci *vp);

#endif
