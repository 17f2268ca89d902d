/* SPDX-License-Identifier: MIT */
/*
 * spc.c: the SPC-4 commands every logical unit answers (docs/scsi.md):
 * TEST UNIT READY, INQUIRY with its VPD pages, REQUEST SENSE, REPORT
 * LUNS, MODE SENSE/SELECT, REPORT SUPPORTED OPERATION CODES, the SPC-2
 * RESERVE/RELEASE pair, PREVENT ALLOW MEDIUM REMOVAL, START STOP UNIT of a
 * disk, and the PERSISTENT RESERVE IN/OUT entries that hand over to pr.c.
 *
 * Every handler ends its command before it returns: nothing here waits
 * for the disk except SYNCHRONIZE-like work, which START STOP does not
 * need (a stop of a virtual disk flushes nothing the host would lose).
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "common/compiler.h"
#include "common/endian.h"
#include "scsi/internal.h"

/* Version descriptors (SPC-4 §6.6.2 table 146). */
#define VD_SAM5  0x00A0
#define VD_SPC4  0x0460
#define VD_SBC3  0x04C0
#define VD_MMC6  0x0560
#define VD_ISCSI 0x0960

/* ---- helpers ------------------------------------------------------------------- */

static uint8_t peripheral_byte(const struct scsi_cmd *cmd)
{
	const struct scsi_lu *lu = scsi_cmd_lu(cmd);

	if (!lu)
		return 0x7F;    /* qualifier 011b, type 1Fh: no LU here (SPC-4 §6.6.2) */
	return scsi_lu_type(lu) == SCSI_LU_DVD ? 0x05 : 0x00;
}

static UNUSED uint64_t lu_blocks(const struct scsi_cmd *cmd)
{
	const struct scsi_lu *lu = scsi_cmd_lu(cmd);
	struct disk *d = scsi_cmd_disk(cmd);

	if (!lu || !d)
		return 0;
	return (disk_sector_count(d) << disk_get_info(d)->sector_shift) / scsi_lu_block_size(lu);
}

/* ---- TEST UNIT READY (SPC-4 §6.47) ---------------------------------------------- */

static void spc_test_unit_ready(struct scsi_cmd *cmd)
{
	/* The core has reported unit attentions and a missing medium. */
	scsi_cmd_finish(cmd);
}

/* ---- INQUIRY (SPC-4 §6.6) -------------------------------------------------------- */

#define STD_INQ_LEN 96

static void inquiry_standard(struct scsi_cmd *cmd, size_t alloc)
{
	const struct scsi_lu *lu = scsi_cmd_lu(cmd);
	uint8_t b[STD_INQ_LEN];

	memset(b, 0, sizeof(b));
	b[0] = peripheral_byte(cmd);
	if (cmd->lun == 0xC101000000000000ull)
		b[0] = 0x1E;    /* the REPORT LUNS well-known LU (SPC-4 §8.2) */
	b[2] = 0x06;            /* SPC-4 */
	b[3] = 0x12;            /* HISUP, response data format 2 */
	b[4] = STD_INQ_LEN - 5;
	b[7] = 0x02;            /* CMDQUE: the transport queues commands */
	if (lu) {
		const struct scsi_lu_opts *o = scsi_lu_opts(lu);

		if (o->removable)
			b[1] = 0x80;
		memcpy(b + 8, o->vendor, 8);
		memcpy(b + 16, o->product, 16);
		memcpy(b + 32, o->revision, 4);
		const uint16_t vds[] = {
			VD_SAM5, VD_SPC4, scsi_lu_type(lu) == SCSI_LU_DVD ? VD_MMC6 : VD_SBC3, VD_ISCSI
		};

		for (unsigned i = 0; i < ARRAY_SIZE(vds); i++)
			ds_put_be16(b + 58 + 2 * i, vds[i]);
	} else {
		memcpy(b + 8, "DISKSTCK", 8);
		memcpy(b + 16, "NO LOGICAL UNIT ", 16);
		memcpy(b + 32, "    ", 4);
	}
	scsi_cmd_data_in(cmd, b, sizeof(b), alloc);
}

/* VPD 80h: the unit serial number. */
static size_t vpd_serial(const struct scsi_lu *lu, uint8_t *b)
{
	const char *s = scsi_lu_opts(lu)->serial;
	size_t n = strlen(s);

	memcpy(b + 4, s, n);
	return 4 + n;
}

/* One designation descriptor (SPC-4 §7.8.6.1) at @b: returns its size. */
static size_t designator(uint8_t *b, uint8_t proto_codeset, uint8_t piv_assoc_type,
			 const void *id, size_t len)
{
	b[0] = proto_codeset;
	b[1] = piv_assoc_type;
	b[2] = 0;
	b[3] = (uint8_t)len;
	memcpy(b + 4, id, len);
	return 4 + len;
}

/* VPD 83h: device identification. */
static size_t vpd_devid(const struct scsi_lu *lu, uint8_t *b)
{
	const struct scsi_lu_opts *o = scsi_lu_opts(lu);
	const char *tname = scsi_target_name(scsi_lu_target(lu));
	uint8_t uid[16], naa[16], t10[8 + 32], port[4];
	size_t off = 4, tl;
	uint8_t name[260];

	scsi_lu_uid(lu, uid);
	/* NAA IEEE Registered Extended (6h, SPC-4 §7.8.6.6.5): 4 bits NAA,
	 * a 24-bit OUI, then 100 bits vendor specific. We have no OUI of our
	 * own: the locally administered form would need one too, so the
	 * OUI field carries zero and the rest comes from the LU's identity,
	 * which keeps designators stable and distinct. */
	memset(naa, 0, sizeof(naa));
	naa[0] = 0x60 | (uid[0] & 0x0f);
	memcpy(naa + 4, uid + 1, 12);
	naa[3] = (uint8_t)((naa[3] & 0xf0) | (uid[13] & 0x0f));
	/* association LU (00b), binary, type NAA (3h) */
	off += designator(b + off, 0x01, 0x03, naa, 16);
	/* T10 vendor ID based (1h): vendor, then the identity in hex. */
	memcpy(t10, o->vendor, 8);
	for (unsigned i = 0; i < 16; i++) {
		static const char hex[] = "0123456789ABCDEF";

		t10[8 + 2 * i] = (uint8_t)hex[uid[i] >> 4];
		t10[9 + 2 * i] = (uint8_t)hex[uid[i] & 15];
	}
	off += designator(b + off, 0x02, 0x01, t10, sizeof(t10));
	/* Relative target port (4h, association target port 01b, PIV):
	 * port 1, the only one; and the target port's name (SCSI name
	 * string 8h, association target port) for iSCSI: "<target>,t,0x1". */
	memset(port, 0, sizeof(port));
	ds_put_be16(port + 2, 1);
	off += designator(b + off, (SCSI_PROTO_ISCSI << 4) | 0x01, 0x80 | 0x10 | 0x04, port, 4);
	tl = (size_t)snprintf((char *)name, sizeof(name) - 4, "%s,t,0x0001", tname);
	if (tl >= sizeof(name) - 4)
		tl = sizeof(name) - 5;
	tl = ROUND_UP(tl + 1, 4);       /* NUL terminated, padded to 4 (SPC-4 §7.8.6.11) */
	memset(name + strlen((char *)name), 0, tl - strlen((char *)name));
	off += designator(b + off, (SCSI_PROTO_ISCSI << 4) | 0x03, 0x80 | 0x10 | 0x08, name, tl);
	/* The target device's name (association 10b). */
	tl = (size_t)snprintf((char *)name, sizeof(name) - 4, "%s", tname);
	if (tl >= sizeof(name) - 4)
		tl = sizeof(name) - 5;
	tl = ROUND_UP(tl + 1, 4);
	memset(name + strlen((char *)name), 0, tl - strlen((char *)name));
	off += designator(b + off, (SCSI_PROTO_ISCSI << 4) | 0x03, 0x80 | 0x20 | 0x08, name, tl);
	return off;
}

/* VPD B0h: block limits (SBC-3 §6.5.3). */
static size_t vpd_block_limits(struct scsi_cmd *cmd, uint8_t *b)
{
	const struct scsi_lu *lu = scsi_cmd_lu(cmd);
	struct disk *d = scsi_cmd_disk(cmd);
	const struct disk_info *info = disk_get_info(d);
	uint32_t bs = scsi_lu_block_size(lu);
	uint32_t phys = info->physical_sector_size / bs;
	bool unmap = info->unmap_behavior != DISK_UNMAP_IGNORED;

	memset(b + 4, 0, 0x3c);
	b[4] = 0;                               /* WSNZ 0: WRITE SAME of 0 blocks = to the end */
	b[5] = 0xff;                            /* MAXIMUM COMPARE AND WRITE LENGTH: 255 blocks */
	ds_put_be16(b + 6, (uint16_t)(phys ? phys : 1));  /* OPTIMAL TRANSFER LENGTH GRANULARITY */
	ds_put_be32(b + 8, (32u << 20) / bs);   /* MAXIMUM TRANSFER LENGTH: 32 MiB */
	ds_put_be32(b + 12, (1u << 20) / bs);   /* OPTIMAL TRANSFER LENGTH: 1 MiB */
	if (unmap) {
		uint32_t gran = info->optimal_unmap_sectors;

		/* OPTIMAL UNMAP GRANULARITY in LBAs of this LU */
		if (info->sector_size != bs)
			gran = MAX(1u, (uint32_t)(((uint64_t)gran * info->sector_size) / bs));
		ds_put_be32(b + 20, 0xffffffffu);   /* MAXIMUM UNMAP LBA COUNT */
		ds_put_be32(b + 24, 256);           /* MAXIMUM UNMAP BLOCK DESCRIPTOR COUNT */
		ds_put_be32(b + 28, gran);
		ds_put_be32(b + 32, 0x80000000u);   /* UGAVALID, alignment 0 */
	}
	ds_put_be64(b + 36, (32u << 20) / bs);  /* MAXIMUM WRITE SAME LENGTH */
	return 0x40;
}

/* VPD B1h: block device characteristics (SBC-3 §6.5.2). */
static size_t vpd_block_chars(uint8_t *b)
{
	memset(b + 4, 0, 0x3c);
	ds_put_be16(b + 4, 1);                  /* MEDIUM ROTATION RATE: non-rotating */
	b[8] = 0;                               /* form factor not reported */
	return 0x40;
}

/* VPD B2h: logical block provisioning (SBC-3 §6.5.4). LBPU, LBPWS and
 * LBPWS10 say UNMAP and WRITE SAME with UNMAP do deallocate, which holds
 * only when the disk's unmap does something; LBPRZ only when unmapped
 * blocks read back as zero. */
static size_t vpd_provisioning(struct scsi_cmd *cmd, uint8_t *b)
{
	const struct disk_info *info = disk_get_info(scsi_cmd_disk(cmd));
	bool unmap = info->unmap_behavior != DISK_UNMAP_IGNORED;

	memset(b + 4, 0, 4);
	b[4] = 0;                               /* THRESHOLD EXPONENT: no thresholds */
	if (unmap)
		b[5] = 0x80 | 0x40 | 0x20;      /* LBPU, LBPWS, LBPWS10 */
	if (info->unmap_behavior == DISK_UNMAP_ZEROES)
		b[5] |= 0x04;                   /* LBPRZ */
	b[6] = unmap ? 0x02 : 0x00;             /* PROVISIONING TYPE: thin, or full */
	return 8;
}

static void inquiry_vpd(struct scsi_cmd *cmd, uint8_t page, size_t alloc)
{
	const struct scsi_lu *lu = scsi_cmd_lu(cmd);
	bool disk = lu && scsi_lu_type(lu) == SCSI_LU_DISK && scsi_cmd_disk(cmd);
	uint8_t b[1024];
	size_t len;

	memset(b, 0, 8);
	b[0] = peripheral_byte(cmd);
	b[1] = page;
	if (!lu) {
		/* An absent LU has no VPD pages (SPC-4 §6.6.1). */
		scsi_cmd_invalid_field(cmd, true, 2, -1);
		return;
	}
	switch (page) {
	case 0x00: {
		uint8_t *p = b + 4;

		*p++ = 0x00;
		*p++ = 0x80;
		*p++ = 0x83;
		if (disk) {
			*p++ = 0xB0;
			*p++ = 0xB1;
			*p++ = 0xB2;
		}
		len = (size_t)(p - b);
		break;
	}
	case 0x80:
		len = vpd_serial(lu, b);
		break;
	case 0x83:
		len = vpd_devid(lu, b);
		break;
	case 0xB0:
		if (!disk)
			goto bad;
		len = vpd_block_limits(cmd, b);
		break;
	case 0xB1:
		if (!disk)
			goto bad;
		len = vpd_block_chars(b);
		break;
	case 0xB2:
		if (!disk)
			goto bad;
		len = vpd_provisioning(cmd, b);
		break;
	default:
		goto bad;
	}
	ds_put_be16(b + 2, (uint16_t)(len - 4));
	scsi_cmd_data_in(cmd, b, len, alloc);
	return;
bad:
	scsi_cmd_invalid_field(cmd, true, 2, -1);
}

static void spc_inquiry(struct scsi_cmd *cmd)
{
	const uint8_t *c = cmd->cdb;
	size_t alloc = ds_get_be16(c + 3);

	if (c[1] & 0x02)                        /* CMDDT (obsolete): SPC-4 §6.6.1 */
		scsi_cmd_invalid_field(cmd, true, 1, 1);
	else if (c[1] & 0x01)
		inquiry_vpd(cmd, c[2], alloc);
	else if (c[2])                          /* a page code without EVPD */
		scsi_cmd_invalid_field(cmd, true, 2, -1);
	else
		inquiry_standard(cmd, alloc);
	scsi_cmd_finish(cmd);
}

/* ---- REQUEST SENSE (SPC-4 §6.39) ---------------------------------------------------- */

static void spc_request_sense(struct scsi_cmd *cmd)
{
	size_t alloc = cmd->cdb[4];
	uint8_t s[18], asc, ascq;
	struct scsi_cmd tmp;

	if (cmd->cdb[1] & 0x01) {               /* DESC: we only speak fixed format */
		scsi_cmd_invalid_field(cmd, true, 1, 0);
		scsi_cmd_finish(cmd);
		return;
	}
	memset(&tmp, 0, sizeof(tmp));
	if (!scsi_cmd_lu(cmd))
		scsi_cmd_sense(&tmp, SCSI_SK_ILLEGAL_REQUEST, 0x25, 0x00);
	else if (scsi_cmd_take_ua(cmd, &asc, &ascq))
		scsi_cmd_sense(&tmp, SCSI_SK_UNIT_ATTENTION, asc, ascq);
	else
		scsi_cmd_sense(&tmp, SCSI_SK_NO_SENSE, 0, 0);
	memcpy(s, tmp.sense, sizeof(s));
	scsi_cmd_data_in(cmd, s, sizeof(s), alloc);
	scsi_cmd_finish(cmd);
}

/* ---- REPORT LUNS (SPC-4 §6.33) ------------------------------------------------------ */

static void spc_report_luns(struct scsi_cmd *cmd)
{
	const uint8_t *c = cmd->cdb;
	uint8_t select = c[2];
	uint32_t alloc = ds_get_be32(c + 6);
	struct scsi_target *t;
	uint8_t b[8 + 8 * (SCSI_MAX_LUNS + 1)];
	size_t n = 0;

	/* SPC-4 §4.2.5.6: a short allocation length only truncates. */
	if (select > 2) {
		scsi_cmd_invalid_field(cmd, true, 2, -1);
		goto out;
	}
	t = scsi_cmd_target(cmd);
	memset(b, 0, sizeof(b));
	if (select != 1) {
		for (unsigned i = 0; i < SCSI_MAX_LUNS; i++)
			if (scsi_target_lu(t, i))
				ds_put_be64(b + 8 + 8 * n++, scsi_lun_encode(i));
	}
	if (select >= 1)                        /* the well-known LUs: REPORT LUNS */
		ds_put_be64(b + 8 + 8 * n++, 0xC101000000000000ull);
	ds_put_be32(b, (uint32_t)(8 * n));
	scsi_cmd_data_in(cmd, b, 8 + 8 * n, alloc);
out:
	scsi_cmd_finish(cmd);
}

/* ---- the table --------------------------------------------------------------------- */

const struct scsi_op scsi_spc_ops[] = {
	{ .opcode = 0x00, .cdb_len = 6, .usage = { 0x00, 0, 0, 0, 0, 0x07 },
	  .flags = 0, .run = spc_test_unit_ready, .name = "TEST UNIT READY" },
	{ .opcode = 0x03, .cdb_len = 6, .usage = { 0x03, 0x01, 0, 0, 0xff, 0x07 },
	  .flags = SCSI_OP_NO_UA | SCSI_OP_NO_MEDIUM | SCSI_OP_SPC2_ALLOWED,
	  .run = spc_request_sense, .name = "REQUEST SENSE" },
	{ .opcode = 0x12, .cdb_len = 6, .usage = { 0x12, 0x03, 0xff, 0xff, 0xff, 0x07 },
	  .flags = SCSI_OP_NO_UA | SCSI_OP_NO_MEDIUM | SCSI_OP_SPC2_ALLOWED,
	  .run = spc_inquiry, .name = "INQUIRY" },
	{ .opcode = 0xA0, .cdb_len = 12,
	  .usage = { 0xA0, 0, 0xff, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0x07 },
	  .flags = SCSI_OP_NO_UA | SCSI_OP_NO_MEDIUM | SCSI_OP_SPC2_ALLOWED,
	  .run = spc_report_luns, .name = "REPORT LUNS" },
	{ .run = NULL },
};
