/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * uapi.h: diskstack's own copy of the ublk kernel interface.
 *
 * The values and layouts come from the kernel's UAPI header
 * include/uapi/linux/ublk_cmd.h (Linux 6.1.192 and 6.12.117 as shipped by
 * Debian; Documentation/block/ublk.rst describes the commands), never from
 * ublksrv's copy, which has drifted from the kernel ABI. The header is
 * licensed as the kernel's UAPI (GPL-2.0 WITH Linux-syscall-note) because it
 * restates that interface; the names carry the ubsrv_/UBSRV_ prefix so they
 * cannot clash with <linux/ublk_cmd.h> (bookworm's copy is the 6.1 one and
 * lacks everything after 6.1).
 *
 * Layouts are pinned with static assertions below; tests/unit/test-ublk.c
 * checks the ioctl-encoded numbers against the values the kernel defines.
 */
#ifndef DISKSTACK_UBLK_UAPI_H
#define DISKSTACK_UBLK_UAPI_H

#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <linux/ioctl.h>

/* ---- control commands (on /dev/ublk-control, SQE128 uring_cmd) ---------- */

/* Legacy command numbers: the opcode itself on 6.0-6.3, still accepted when
 * the kernel has CONFIG_BLKDEV_UBLK_LEGACY_OPCODES (the default). */
#define UBSRV_CMD_GET_QUEUE_AFFINITY   0x01u
#define UBSRV_CMD_GET_DEV_INFO         0x02u
#define UBSRV_CMD_ADD_DEV              0x04u
#define UBSRV_CMD_DEL_DEV              0x05u
#define UBSRV_CMD_START_DEV            0x06u
#define UBSRV_CMD_STOP_DEV             0x07u
#define UBSRV_CMD_SET_PARAMS           0x08u
#define UBSRV_CMD_GET_PARAMS           0x09u
#define UBSRV_CMD_START_USER_RECOVERY  0x10u   /* 6.1 */
#define UBSRV_CMD_END_USER_RECOVERY    0x11u   /* 6.1 */
#define UBSRV_CMD_GET_DEV_INFO2        0x12u   /* 6.3 */
#define UBSRV_CMD_GET_FEATURES         0x13u   /* 6.5, encoded form only */
#define UBSRV_CMD_DEL_DEV_ASYNC        0x14u   /* 6.9, encoded form only */
#define UBSRV_CMD_UPDATE_SIZE          0x15u   /* 6.16, encoded form only; data[0]: 512-byte sectors */

/* ---- I/O commands (on /dev/ublkcN, plain 64-byte SQE uring_cmd) --------- */

#define UBSRV_IO_FETCH_REQ             0x20u
#define UBSRV_IO_COMMIT_AND_FETCH_REQ  0x21u
#define UBSRV_IO_NEED_GET_DATA         0x22u

/* cqe->res of an I/O command. */
#define UBSRV_IO_RES_OK                0
#define UBSRV_IO_RES_NEED_GET_DATA     1
#define UBSRV_IO_RES_ABORT             (-19)   /* -ENODEV: device stopping, do not re-fetch */

/* mmap offset of queue 0's descriptor array; queue q is at
 * q * round_up(UBSRV_MAX_QUEUE_DEPTH * sizeof(struct ubsrv_io_desc), page). */
#define UBSRV_CMD_BUF_OFFSET           0
/* USER_COPY: pread/pwrite offset of (queue, tag, byte) on /dev/ublkcN. */
#define UBSRV_IO_BUF_OFFSET            0x80000000ull
#define UBSRV_IO_BUF_BITS              25      /* 32 MiB per request */
#define UBSRV_TAG_OFF                  UBSRV_IO_BUF_BITS
#define UBSRV_TAG_BITS                 16
#define UBSRV_QID_OFF                  (UBSRV_TAG_OFF + UBSRV_TAG_BITS)
#define UBSRV_QID_BITS                 12

#define UBSRV_MAX_QUEUE_DEPTH          4096u
#define UBSRV_MAX_NR_QUEUES            (1u << UBSRV_QID_BITS)

/* ---- feature flags (struct ubsrv_ctrl_dev_info.flags, GET_FEATURES) ----- */

#define UBSRV_F_SUPPORT_ZERO_COPY        (1ull << 0)
#define UBSRV_F_URING_CMD_COMP_IN_TASK   (1ull << 1)
#define UBSRV_F_NEED_GET_DATA            (1ull << 2)
#define UBSRV_F_USER_RECOVERY            (1ull << 3)   /* 6.1 */
#define UBSRV_F_USER_RECOVERY_REISSUE    (1ull << 4)   /* 6.1 */
#define UBSRV_F_UNPRIVILEGED_DEV         (1ull << 5)   /* 6.3 */
#define UBSRV_F_CMD_IOCTL_ENCODE         (1ull << 6)   /* 6.4 */
#define UBSRV_F_USER_COPY                (1ull << 7)   /* 6.5 */
#define UBSRV_F_ZONED                    (1ull << 8)   /* 6.6 */
#define UBSRV_F_USER_RECOVERY_FAIL_IO    (1ull << 9)   /* 6.13 */
#define UBSRV_F_UPDATE_SIZE              (1ull << 10)  /* 6.16: UPDATE_SIZE on a live device */

/* Device states (struct ubsrv_ctrl_dev_info.state). */
#define UBSRV_S_DEV_DEAD                 0
#define UBSRV_S_DEV_LIVE                 1
#define UBSRV_S_DEV_QUIESCED             2
#define UBSRV_S_DEV_FAIL_IO              3             /* 6.13 */

/* ---- structures --------------------------------------------------------- */

/* The command area of a control SQE (starts at SQE byte 48). */
struct ubsrv_ctrl_cmd {
	uint32_t dev_id;        /* target; ADD_DEV: 0xffffffff = any id */
	uint16_t queue_id;      /* 0xffff unless per-queue */
	uint16_t len;           /* length of the buffer at @addr */
	uint64_t addr;          /* in/out buffer */
	uint64_t data[1];       /* inline argument (pid, queue id) */
	uint16_t dev_path_len;  /* unprivileged devices only (6.3) */
	uint16_t pad;
	uint32_t reserved;      /* 6.1 declared data[2]: same layout */
};

/* In for ADD_DEV, out for ADD_DEV and GET_DEV_INFO. */
struct ubsrv_ctrl_dev_info {
	uint16_t nr_hw_queues;
	uint16_t queue_depth;
	uint16_t state;         /* UBSRV_S_DEV_*, owned by the driver */
	uint16_t pad0;
	uint32_t max_io_buf_bytes;
	uint32_t dev_id;
	int32_t ublksrv_pid;    /* set by START_DEV / END_USER_RECOVERY; -1 when none */
	uint32_t pad1;
	uint64_t flags;         /* requested UBSRV_F_*; the kernel writes back what it kept */
	uint64_t ublksrv_flags; /* opaque to the kernel */
	uint32_t owner_uid;     /* 6.3; reserved0 on 6.1 */
	uint32_t owner_gid;
	uint64_t reserved1;
	uint64_t reserved2;
};

/* I/O descriptor, one per tag, in the read-only mmap of /dev/ublkcN. */
struct ubsrv_io_desc {
	uint32_t op_flags;      /* op in bits 0-7, UBSRV_IO_F_* in bits 8-31 */
	uint32_t nr_sectors;    /* 512-byte sectors; nr_zones for REPORT_ZONES */
	uint64_t start_sector;  /* 512-byte sectors */
	uint64_t addr;          /* copy mode: the buffer given for this tag */
};

#define UBSRV_IO_OP_READ          0
#define UBSRV_IO_OP_WRITE         1
#define UBSRV_IO_OP_FLUSH         2
#define UBSRV_IO_OP_DISCARD       3
#define UBSRV_IO_OP_WRITE_SAME    4
#define UBSRV_IO_OP_WRITE_ZEROES  5

#define UBSRV_IO_F_FAILFAST_DEV        (1u << 8)
#define UBSRV_IO_F_FAILFAST_TRANSPORT  (1u << 9)
#define UBSRV_IO_F_FAILFAST_DRIVER     (1u << 10)
#define UBSRV_IO_F_META                (1u << 11)
#define UBSRV_IO_F_FUA                 (1u << 13)
#define UBSRV_IO_F_NOUNMAP             (1u << 15)
#define UBSRV_IO_F_SWAP                (1u << 16)

/* The command area of an I/O SQE. */
struct ubsrv_io_cmd {
	uint16_t q_id;
	uint16_t tag;
	int32_t result;         /* COMMIT: bytes done or -errno */
	uint64_t addr;          /* copy mode: the tag's buffer; 0 with USER_COPY */
};

/* ---- parameters (SET_PARAMS / GET_PARAMS) -------------------------------- */

#define UBSRV_ATTR_READ_ONLY       (1u << 0)
#define UBSRV_ATTR_ROTATIONAL      (1u << 1)
#define UBSRV_ATTR_VOLATILE_CACHE  (1u << 2)
#define UBSRV_ATTR_FUA             (1u << 3)

struct ubsrv_param_basic {
	uint32_t attrs;                 /* UBSRV_ATTR_* */
	uint8_t logical_bs_shift;       /* 9..PAGE_SHIFT, <= physical */
	uint8_t physical_bs_shift;
	uint8_t io_opt_shift;
	uint8_t io_min_shift;
	uint32_t max_sectors;           /* <= max_io_buf_bytes >> 9; >= 8 from 6.12 */
	uint32_t chunk_sectors;
	uint64_t dev_sectors;           /* 512-byte sectors */
	uint64_t virt_boundary_mask;
};

struct ubsrv_param_discard {
	uint32_t discard_alignment;
	uint32_t discard_granularity;   /* bytes, != 0 */
	uint32_t max_discard_sectors;   /* 0 = no discard */
	uint32_t max_write_zeroes_sectors;
	uint16_t max_discard_segments;  /* 1 when discard is on */
	uint16_t reserved0;
};

/* Read-only; filled by GET_PARAMS from 6.2. */
struct ubsrv_param_devt {
	uint32_t char_major;
	uint32_t char_minor;
	uint32_t disk_major;
	uint32_t disk_minor;
};

struct ubsrv_param_zoned {
	uint32_t max_open_zones;
	uint32_t max_active_zones;
	uint32_t max_zone_append_sectors;
	uint8_t reserved[20];
};

#define UBSRV_PARAM_TYPE_BASIC    (1u << 0)
#define UBSRV_PARAM_TYPE_DISCARD  (1u << 1)
#define UBSRV_PARAM_TYPE_DEVT     (1u << 2)   /* 6.2, read-only */
#define UBSRV_PARAM_TYPE_ZONED    (1u << 3)   /* 6.6 */

/* The 6.12 layout. A kernel copies at most its own size (64 bytes on 6.1)
 * and masks @types, so the same struct works everywhere. */
struct ubsrv_params {
	uint32_t len;
	uint32_t types;                 /* UBSRV_PARAM_TYPE_* */
	struct ubsrv_param_basic basic;
	struct ubsrv_param_discard discard;
	struct ubsrv_param_devt devt;
	struct ubsrv_param_zoned zoned;
};

static_assert(sizeof(struct ubsrv_ctrl_cmd) == 32, "ubsrv_ctrl_cmd layout");
static_assert(offsetof(struct ubsrv_ctrl_cmd, data) == 16, "ubsrv_ctrl_cmd layout");
static_assert(sizeof(struct ubsrv_ctrl_dev_info) == 64, "ubsrv_ctrl_dev_info layout");
static_assert(offsetof(struct ubsrv_ctrl_dev_info, ublksrv_pid) == 16, "dev_info layout");
static_assert(offsetof(struct ubsrv_ctrl_dev_info, flags) == 24, "dev_info layout");
static_assert(sizeof(struct ubsrv_io_desc) == 24, "ubsrv_io_desc layout");
static_assert(sizeof(struct ubsrv_io_cmd) == 16, "ubsrv_io_cmd layout");
static_assert(sizeof(struct ubsrv_param_basic) == 32, "param_basic layout");
static_assert(sizeof(struct ubsrv_param_discard) == 20, "param_discard layout");
static_assert(offsetof(struct ubsrv_params, basic) == 8, "params layout");
static_assert(offsetof(struct ubsrv_params, discard) == 40, "params layout");
static_assert(offsetof(struct ubsrv_params, devt) == 60, "params layout");
static_assert(offsetof(struct ubsrv_params, zoned) == 76, "params layout");
/* 108 bytes of fields, padded to the 8-byte alignment of basic (the kernel
 * struct is the same). */
static_assert(sizeof(struct ubsrv_params) == 112, "params layout");

/* ---- ioctl-encoded opcodes (advertised by UBSRV_F_CMD_IOCTL_ENCODE) ------ */

/* Control commands that only read are _IOR, the rest _IOWR, as the kernel
 * defines them; I/O commands are all _IOWR over struct ubsrv_io_cmd. */
#define UBSRV_U_CMD_IOR(nr)   ((uint32_t)_IOR('u', (nr), struct ubsrv_ctrl_cmd))
#define UBSRV_U_CMD_IOWR(nr)  ((uint32_t)_IOWR('u', (nr), struct ubsrv_ctrl_cmd))
#define UBSRV_U_IO(nr)        ((uint32_t)_IOWR('u', (nr), struct ubsrv_io_cmd))

#define UBSRV_U_CMD_GET_FEATURES   UBSRV_U_CMD_IOR(UBSRV_CMD_GET_FEATURES)
#define UBSRV_U_CMD_DEL_DEV_ASYNC  UBSRV_U_CMD_IOR(UBSRV_CMD_DEL_DEV_ASYNC)

/* Length GET_FEATURES insists on. */
#define UBSRV_FEATURES_LEN 8

#endif
