/* SPDX-License-Identifier: MIT */
/*
 * proto.h: the vhost-user wire format (QEMU's "Vhost-user Protocol"
 * specification, docs/interop/vhost-user.rst) and the virtio constants the
 * library needs (OASIS "Virtual I/O Device (VIRTIO) Version 1.2", §2.7
 * split virtqueues, virtio 1.2 §5.2 the block device and §5.6 the SCSI
 * host device). Names carry a VHU_ / VIRTIO_ prefix of our own; values
 * are the specifications'. Everything on the wire
 * and in the rings is little-endian: the library builds for little-endian
 * hosts only (checked in vring.c).
 */
#ifndef DISKSTACK_VHOST_PROTO_H
#define DISKSTACK_VHOST_PROTO_H

#include <stddef.h>
#include <stdint.h>

/* ---- message framing (vhost-user spec, "Message Specification") ------- */

#define VHU_HDR_BYTES 12            /* u32 request, u32 flags, u32 size */
#define VHU_VERSION 0x1             /* flags bits 0-1 */
#define VHU_FLAG_VERSION_MASK 0x3u
#define VHU_FLAG_REPLY (1u << 2)
#define VHU_FLAG_NEED_REPLY (1u << 3)
#define VHU_MAX_FDS 8               /* the spec's limit of fds per message */
#define VHU_MAX_PAYLOAD 4096        /* larger than any message we accept */

/* Sends one message, the VHU_HDR_BYTES header at @hdr (as given: its size
 * field is not checked) and @len payload bytes, with @nfds (at most
 * VHU_MAX_FDS) descriptors as SCM_RIGHTS, in one sendmsg on @sock.
 * Messages are small: a short write means the peer is gone or stuck.
 * Returns 0, -EPROTO after a short write, or -errno. Defined in
 * server.c; the test front-ends send with it too. */
int vhu_sendmsg(int sock, const void *hdr, const void *payload, size_t len, const int *fds,
		unsigned nfds);

/* Receives up to @len bytes into @buf with one recvmsg on @sock (@flags
 * added to MSG_CMSG_CLOEXEC). With @fds, the descriptors that come with
 * them (SCM_RIGHTS) are appended at @fds[*@nfds] up to VHU_MAX_FDS in all
 * (the caller owns them; any beyond are closed), and more than one
 * message's worth (MSG_CTRUNC) is -EPROTO once those are stored; without
 * @fds none are accepted. Returns the byte count (0: the peer closed) or
 * -errno. Defined in server.c; the test front-ends receive with it too. */
ssize_t vhu_recvmsg(int sock, void *buf, size_t len, int flags, int *fds, unsigned *nfds);

/* Front-end -> back-end requests. */
enum {
	VHU_GET_FEATURES = 1,
	VHU_SET_FEATURES = 2,
	VHU_SET_OWNER = 3,
	VHU_RESET_OWNER = 4,
	VHU_SET_MEM_TABLE = 5,
	VHU_SET_LOG_BASE = 6,
	VHU_SET_LOG_FD = 7,
	VHU_SET_VRING_NUM = 8,
	VHU_SET_VRING_ADDR = 9,
	VHU_SET_VRING_BASE = 10,
	VHU_GET_VRING_BASE = 11,
	VHU_SET_VRING_KICK = 12,
	VHU_SET_VRING_CALL = 13,
	VHU_SET_VRING_ERR = 14,
	VHU_GET_PROTOCOL_FEATURES = 15,
	VHU_SET_PROTOCOL_FEATURES = 16,
	VHU_GET_QUEUE_NUM = 17,
	VHU_SET_VRING_ENABLE = 18,
	VHU_SEND_RARP = 19,
	VHU_NET_SET_MTU = 20,
	VHU_SET_BACKEND_REQ_FD = 21,  /* SET_SLAVE_REQ_FD in QEMU 7.2 */
	VHU_IOTLB_MSG = 22,
	VHU_SET_VRING_ENDIAN = 23,
	VHU_GET_CONFIG = 24,
	VHU_SET_CONFIG = 25,
	VHU_GET_INFLIGHT_FD = 31,
	VHU_SET_INFLIGHT_FD = 32,
	VHU_RESET_DEVICE = 34,
	VHU_GET_MAX_MEM_SLOTS = 36,
	VHU_ADD_MEM_REG = 37,
	VHU_REM_MEM_REG = 38,
	VHU_REQ_MAX = 64,
};

/* Back-end -> front-end requests (on the SET_BACKEND_REQ_FD socket). */
enum {
	VHU_BACKEND_IOTLB_MSG = 1,
	VHU_BACKEND_CONFIG_CHANGE_MSG = 2,
	VHU_BACKEND_VRING_HOST_NOTIFIER_MSG = 3,
};

/* VHOST_USER_F_PROTOCOL_FEATURES: a vhost-user bit in GET_FEATURES. */
#define VHU_F_PROTOCOL_FEATURES 30

/* Protocol feature bits (GET/SET_PROTOCOL_FEATURES). */
enum {
	VHU_PROTO_MQ = 0,
	VHU_PROTO_LOG_SHMFD = 1,
	VHU_PROTO_RARP = 2,
	VHU_PROTO_REPLY_ACK = 3,
	VHU_PROTO_NET_MTU = 4,
	VHU_PROTO_BACKEND_REQ = 5,      /* SLAVE_REQ in QEMU 7.2 */
	VHU_PROTO_CROSS_ENDIAN = 6,
	VHU_PROTO_CRYPTO_SESSION = 7,
	VHU_PROTO_PAGEFAULT = 8,
	VHU_PROTO_CONFIG = 9,
	VHU_PROTO_BACKEND_SEND_FD = 10,
	VHU_PROTO_HOST_NOTIFIER = 11,
	VHU_PROTO_INFLIGHT_SHMFD = 12,
	VHU_PROTO_RESET_DEVICE = 13,
	VHU_PROTO_INBAND_NOTIFICATIONS = 14,
	VHU_PROTO_CONFIGURE_MEM_SLOTS = 15,
	VHU_PROTO_STATUS = 16,
};

/* u64 payloads of SET_VRING_KICK/CALL/ERR: bits 0-7 the index, bit 8 = no fd. */
#define VHU_VRING_IDX_MASK 0xffu
#define VHU_VRING_NOFD (1u << 8)

#define VHU_MAX_REGIONS 8           /* SET_MEM_TABLE's array */

struct vhu_region {
	uint64_t guest_phys;
	uint64_t size;
	uint64_t user_addr;
	uint64_t mmap_offset;
};

struct vhu_mem_table {
	uint32_t nregions;
	uint32_t padding;
	struct vhu_region regions[VHU_MAX_REGIONS];
};

struct vhu_vring_state {
	uint32_t index;
	uint32_t num;
};

struct vhu_vring_addr {
	uint32_t index;
	uint32_t flags;                 /* bit 0: log the used ring */
	uint64_t desc_user_addr;
	uint64_t used_user_addr;
	uint64_t avail_user_addr;
	uint64_t log_guest_addr;
};

#define VHU_CONFIG_HDR_BYTES 12     /* u32 offset, u32 size, u32 flags */
#define VHU_CONFIG_MAX 256          /* VHOST_USER_MAX_CONFIG_SIZE */

struct vhu_inflight {
	uint64_t mmap_size;
	uint64_t mmap_offset;
	uint16_t num_queues;
	uint16_t queue_size;
	uint8_t pad[4];                 /* QEMU sends 24 bytes (struct padding) */
};

/* ---- split virtqueues (virtio 1.2 §2.7) ------------------------------- */

#define VIRTQ_DESC_F_NEXT 1
#define VIRTQ_DESC_F_WRITE 2
#define VIRTQ_DESC_F_INDIRECT 4
#define VIRTQ_AVAIL_F_NO_INTERRUPT 1
#define VIRTQ_USED_F_NO_NOTIFY 1
#define VIRTQ_MAX_SIZE 32768        /* virtio 1.2 §2.7: Queue Size is at most 32768 */

struct virtq_desc {
	uint64_t addr;                  /* guest-physical */
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};

struct virtq_used_elem {
	uint32_t id;
	uint32_t len;
};

/* ---- virtio feature bits (virtio 1.2 §6 and §5.2.3) ------------- */

#define VIRTIO_F_INDIRECT_DESC 28
#define VIRTIO_F_EVENT_IDX 29
#define VIRTIO_F_VERSION_1 32

#define VIRTIO_BLK_F_SIZE_MAX 1
#define VIRTIO_BLK_F_SEG_MAX 2
#define VIRTIO_BLK_F_GEOMETRY 4
#define VIRTIO_BLK_F_RO 5
#define VIRTIO_BLK_F_BLK_SIZE 6
#define VIRTIO_BLK_F_FLUSH 9
#define VIRTIO_BLK_F_TOPOLOGY 10
#define VIRTIO_BLK_F_CONFIG_WCE 11
#define VIRTIO_BLK_F_MQ 12
#define VIRTIO_BLK_F_DISCARD 13
#define VIRTIO_BLK_F_WRITE_ZEROES 14

/* virtio 1.2 §5.2.6 request types and status. */
#define VIRTIO_BLK_T_IN 0
#define VIRTIO_BLK_T_OUT 1
#define VIRTIO_BLK_T_FLUSH 4
#define VIRTIO_BLK_T_GET_ID 8
#define VIRTIO_BLK_T_DISCARD 11
#define VIRTIO_BLK_T_WRITE_ZEROES 13
#define VIRTIO_BLK_S_OK 0
#define VIRTIO_BLK_S_IOERR 1
#define VIRTIO_BLK_S_UNSUPP 2
#define VIRTIO_BLK_ID_BYTES 20
#define VIRTIO_BLK_WZ_F_UNMAP 1

/* virtio 1.2 §5.2.4 struct virtio_blk_config (offsets; packed, little-endian). */
enum {
	VIRTIO_BLK_CFG_CAPACITY = 0,            /* le64, 512-byte sectors */
	VIRTIO_BLK_CFG_SIZE_MAX = 8,            /* le32 */
	VIRTIO_BLK_CFG_SEG_MAX = 12,            /* le32 */
	VIRTIO_BLK_CFG_GEOMETRY = 16,           /* le16 cylinders, u8 heads, u8 sectors */
	VIRTIO_BLK_CFG_BLK_SIZE = 20,           /* le32 */
	VIRTIO_BLK_CFG_PHYS_BLOCK_EXP = 24,     /* u8 */
	VIRTIO_BLK_CFG_ALIGNMENT_OFFSET = 25,   /* u8 */
	VIRTIO_BLK_CFG_MIN_IO_SIZE = 26,        /* le16 */
	VIRTIO_BLK_CFG_OPT_IO_SIZE = 28,        /* le32 */
	VIRTIO_BLK_CFG_WRITEBACK = 32,          /* u8 */
	VIRTIO_BLK_CFG_NUM_QUEUES = 34,         /* le16 */
	VIRTIO_BLK_CFG_MAX_DISCARD_SECTORS = 36,
	VIRTIO_BLK_CFG_MAX_DISCARD_SEG = 40,
	VIRTIO_BLK_CFG_DISCARD_ALIGNMENT = 44,
	VIRTIO_BLK_CFG_MAX_WZ_SECTORS = 48,
	VIRTIO_BLK_CFG_MAX_WZ_SEG = 52,
	VIRTIO_BLK_CFG_WZ_MAY_UNMAP = 56,       /* u8 */
	VIRTIO_BLK_CFG_BYTES = 60,              /* through the three reserved bytes */
};

/* ---- virtio-scsi (virtio 1.2 §5.6) ------------------------------------ */

/* Feature bits (virtio 1.2 §5.6.3). */
#define VIRTIO_SCSI_F_INOUT 0
#define VIRTIO_SCSI_F_HOTPLUG 1
#define VIRTIO_SCSI_F_CHANGE 2
#define VIRTIO_SCSI_F_T10_PI 3

/* Virtqueues (virtio 1.2 §5.6.2): control, event, then the request queues. */
#define VIRTIO_SCSI_VQ_CONTROL 0
#define VIRTIO_SCSI_VQ_EVENT 1
#define VIRTIO_SCSI_VQ_REQUEST 2

/* The sizes QEMU 7.2's config space gives (virtio 1.2 §5.6.4 defaults: cdb_size
 * 32, sense_size 96), which fix the request and response layouts. */
#define VIRTIO_SCSI_CDB_SIZE 32
#define VIRTIO_SCSI_SENSE_SIZE 96
/* struct virtio_scsi_req_cmd, device-readable part: u8 lun[8], le64 id,
 * u8 task_attr, u8 prio, u8 crn, u8 cdb[cdb_size]. */
#define VIRTIO_SCSI_CMD_REQ_BYTES (19 + VIRTIO_SCSI_CDB_SIZE)
/* Device-writable part: le32 sense_len, le32 residual, le16
 * status_qualifier, u8 status, u8 response, u8 sense[sense_size]. */
#define VIRTIO_SCSI_CMD_RESP_BYTES (12 + VIRTIO_SCSI_SENSE_SIZE)

/* Response codes (virtio 1.2 §5.6.6.1). */
#define VIRTIO_SCSI_S_OK 0
#define VIRTIO_SCSI_S_OVERRUN 1
#define VIRTIO_SCSI_S_ABORTED 2
#define VIRTIO_SCSI_S_BAD_TARGET 3
#define VIRTIO_SCSI_S_RESET 4
#define VIRTIO_SCSI_S_BUSY 5
#define VIRTIO_SCSI_S_TRANSPORT_FAILURE 6
#define VIRTIO_SCSI_S_TARGET_FAILURE 7
#define VIRTIO_SCSI_S_NEXUS_FAILURE 8
#define VIRTIO_SCSI_S_FAILURE 9
#define VIRTIO_SCSI_S_FUNCTION_SUCCEEDED 10
#define VIRTIO_SCSI_S_FUNCTION_REJECTED 11
#define VIRTIO_SCSI_S_INCORRECT_LUN 12
#define VIRTIO_SCSI_S_FUNCTION_COMPLETE 0

/* Control queue requests (virtio 1.2 §5.6.6.2). */
#define VIRTIO_SCSI_T_TMF 0
#define VIRTIO_SCSI_T_AN_QUERY 1
#define VIRTIO_SCSI_T_AN_SUBSCRIBE 2
#define VIRTIO_SCSI_T_TMF_ABORT_TASK 0
#define VIRTIO_SCSI_T_TMF_ABORT_TASK_SET 1
#define VIRTIO_SCSI_T_TMF_CLEAR_ACA 2
#define VIRTIO_SCSI_T_TMF_CLEAR_TASK_SET 3
#define VIRTIO_SCSI_T_TMF_I_T_NEXUS_RESET 4
#define VIRTIO_SCSI_T_TMF_LOGICAL_UNIT_RESET 5
#define VIRTIO_SCSI_T_TMF_QUERY_TASK 6
#define VIRTIO_SCSI_T_TMF_QUERY_TASK_SET 7
/* TMF: le32 type, le32 subtype, u8 lun[8], le64 id; response u8. */
#define VIRTIO_SCSI_TMF_REQ_BYTES 24
/* AN: le32 type, u8 lun[8], le32 event_requested; response le32
 * event_actual, u8 response. */
#define VIRTIO_SCSI_AN_REQ_BYTES 16
#define VIRTIO_SCSI_AN_RESP_BYTES 5
/* Asynchronous notification classes (the GET EVENT STATUS NOTIFICATION
 * classes of MMC). */
#define VIRTIO_SCSI_EVT_ASYNC_OPERATIONAL_CHANGE 2
#define VIRTIO_SCSI_EVT_ASYNC_POWER_MGMT 4
#define VIRTIO_SCSI_EVT_ASYNC_EXTERNAL_REQUEST 8
#define VIRTIO_SCSI_EVT_ASYNC_MEDIA_CHANGE 16
#define VIRTIO_SCSI_EVT_ASYNC_MULTI_HOST 32
#define VIRTIO_SCSI_EVT_ASYNC_DEVICE_BUSY 64

/* Event queue (virtio 1.2 §5.6.6.3): le32 event, u8 lun[8], le32 reason. */
#define VIRTIO_SCSI_EVENT_BYTES 16
#define VIRTIO_SCSI_T_NO_EVENT 0
#define VIRTIO_SCSI_T_TRANSPORT_RESET 1
#define VIRTIO_SCSI_T_ASYNC_NOTIFY 2
#define VIRTIO_SCSI_T_PARAM_CHANGE 3
#define VIRTIO_SCSI_T_EVENTS_MISSED 0x80000000u
#define VIRTIO_SCSI_EVT_RESET_HARD 0
#define VIRTIO_SCSI_EVT_RESET_RESCAN 1
#define VIRTIO_SCSI_EVT_RESET_REMOVED 2

#endif
