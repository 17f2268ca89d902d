/* SPDX-License-Identifier: MIT */
/*
 * spc.c: the SPC-4 commands every logical unit answers (docs/scsi.md):
 * TEST UNIT READY, INQUIRY with its VPD pages, REQUEST SENSE, REPORT
 * LUNS, MODE SENSE/SELECT, REPORT SUPPORTED OPERATION CODES, the SPC-2
 * RESERVE/RELEASE pair, PREVENT ALLOW MEDIUM REMOVAL, START STOP UNIT of a
 * disk, and the PERSISTENT RESERVE IN/OUT entries that hand over to pr.c.
 *
 * Every handler but START STOP UNIT ends its command before it returns;
 * a stop writes the disk's cache back first (SBC-3 §5.25).
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

static uint64_t lu_blocks(const struct scsi_cmd *cmd)
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
	uint8_t name[256];      /* a designator's length is one byte */

	scsi_lu_uid(lu, uid);
	/* NAA IEEE Registered Extended (6h, SPC-4 §7.8.6.6.5): 4 bits NAA,
	 * a 24-bit OUI, then 100 bits vendor specific. We have no OUI of our
	 * own: the locally administered form would need one too, so the
	 * OUI field carries zero and the rest comes from the LU's identity,
	 * which keeps designators stable and distinct. */
	memset(naa, 0, sizeof(naa));
	naa[0] = 0x60;
	naa[3] = uid[0] & 0x0f;
	memcpy(naa + 4, uid + 1, 12);
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
	tl = (size_t)snprintf((char *)name, 252, "%s,t,0x0001", tname);
	if (tl > 251)
		tl = 251;
	tl = ROUND_UP(tl + 1, 4);       /* NUL terminated, padded to 4 (SPC-4 §7.8.6.11) */
	memset(name + strlen((char *)name), 0, tl - strlen((char *)name));
	off += designator(b + off, (SCSI_PROTO_ISCSI << 4) | 0x03, 0x80 | 0x10 | 0x08, name, tl);
	/* The target device's name (association 10b). */
	tl = (size_t)snprintf((char *)name, 252, "%s", tname);
	if (tl > 251)
		tl = 251;
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

/* ---- mode pages (SPC-4 §7.5, SBC-3 §6.4) -------------------------------------------------- */

enum { PC_CURRENT = 0, PC_CHANGEABLE = 1, PC_DEFAULT = 2, PC_SAVED = 3 };

#define CACHING_LEN 20
#define CONTROL_LEN 12
#define IEC_LEN 12

/* Writes page @page with values of kind @pc at @p; returns its size, or
 * 0 when the LU has no such page. */
static size_t mode_page(const struct scsi_lu *lu, uint8_t page, int pc, uint8_t *p)
{
	switch (page) {
	case 0x08:      /* caching (SBC-3 §6.4.5): WCE is ours to change */
		if (scsi_lu_type(lu) != SCSI_LU_DISK)
			return 0;
		memset(p, 0, CACHING_LEN);
		p[0] = 0x08;
		p[1] = CACHING_LEN - 2;
		if (pc == PC_CHANGEABLE)
			p[2] = 0x04;
		else if ((pc == PC_CURRENT ? scsi_lu_wce(lu) : scsi_lu_wce_default(lu)))
			p[2] = 0x04;
		return CACHING_LEN;
	case 0x0A:      /* control (SPC-4 §7.5.8) */
		memset(p, 0, CONTROL_LEN);
		p[0] = 0x0A;
		p[1] = CONTROL_LEN - 2;
		if (pc == PC_CHANGEABLE) {
			/* SWP only, on a disk (a DVD is read-only anyway) */
			if (scsi_lu_type(lu) == SCSI_LU_DISK)
				p[4] = 0x08;
			return CONTROL_LEN;
		}
		/* TST 000b (one task set), D_SENSE 0 (fixed format sense),
		 * QUEUE ALGORITHM MODIFIER 1 (unrestricted reordering),
		 * QERR 00b, TAS 1 (commands another nexus aborts end with
		 * TASK ABORTED), BUSY TIMEOUT PERIOD unlimited. */
		p[3] = 0x10;
		if (pc == PC_CURRENT && scsi_lu_swp(lu))
			p[4] = 0x08;
		p[5] = 0x40;
		p[8] = 0xff;
		p[9] = 0xff;
		return CONTROL_LEN;
	case 0x1C:      /* informational exceptions control (SPC-4 §7.5.11) */
		memset(p, 0, IEC_LEN);
		p[0] = 0x1C;
		p[1] = IEC_LEN - 2;
		if (pc != PC_CHANGEABLE)
			p[2] = 0x08;    /* DEXCPT: we report no failure predictions */
		return IEC_LEN;
	default:
		return 0;
	}
}

static const uint8_t all_pages[] = { 0x08, 0x0A, 0x1C };

/* MODE SENSE(6) 1Ah and (10) 5Ah (SPC-4 §6.11, §6.12). */
static void spc_mode_sense(struct scsi_cmd *cmd)
{
	const uint8_t *c = cmd->cdb;
	const struct scsi_lu *lu = scsi_cmd_lu(cmd);
	bool ten = c[0] == 0x5A;
	bool dbd = c[1] & 0x08, llbaa = ten && (c[1] & 0x10);
	int pc = c[2] >> 6;
	uint8_t page = c[2] & 0x3f, subpage = c[3];
	size_t alloc = ten ? ds_get_be16(c + 7) : c[4];
	size_t hdr = ten ? 8 : 4, off, bdl = 0;
	uint8_t b[512];

	if (pc == PC_SAVED) {
		scsi_cmd_sense(cmd, SCSI_SK_ILLEGAL_REQUEST, 0x39, 0x00);
		goto out;
	}
	if (subpage != 0 && subpage != 0xff) {
		scsi_cmd_invalid_field(cmd, true, 3, -1);
		goto out;
	}
	memset(b, 0, sizeof(b));
	/* Block descriptors (SPC-4 §7.5.5, SBC-3 §6.4.2) for a disk. */
	if (!dbd && scsi_lu_type(lu) == SCSI_LU_DISK) {
		uint64_t blocks = lu_blocks(cmd);
		uint8_t *d = b + hdr;

		if (llbaa) {
			ds_put_be64(d, blocks);
			ds_put_be32(d + 12, scsi_lu_block_size(lu));
			bdl = 16;
		} else {
			ds_put_be32(d, blocks > UINT32_MAX ? UINT32_MAX : (uint32_t)blocks);
			ds_put_be32(d + 4, scsi_lu_block_size(lu) & 0xffffff);
			bdl = 8;
		}
	}
	off = hdr + bdl;
	if (page == 0x3f) {
		for (unsigned i = 0; i < ARRAY_SIZE(all_pages); i++)
			off += mode_page(lu, all_pages[i], pc, b + off);
	} else {
		size_t n = mode_page(lu, page, pc, b + off);

		if (!n) {
			scsi_cmd_invalid_field(cmd, true, 2, 5);
			goto out;
		}
		off += n;
	}
	/* The header: the device-specific parameter holds WP and DPOFUA
	 * for a disk (SBC-3 §6.4.1); MMC leaves it zero. */
	if (scsi_lu_type(lu) == SCSI_LU_DISK)
		b[ten ? 3 : 2] = (uint8_t)((scsi_lu_read_only(lu) ? 0x80 : 0) | 0x10);
	if (ten) {
		ds_put_be16(b, (uint16_t)(off - 2));
		b[4] = llbaa && bdl ? 0x01 : 0;
		ds_put_be16(b + 6, (uint16_t)bdl);
	} else {
		b[0] = (uint8_t)(off - 1);
		b[3] = (uint8_t)bdl;
	}
	scsi_cmd_data_in(cmd, b, off, alloc);
out:
	scsi_cmd_finish(cmd);
}

/* MODE SELECT(6) 15h and (10) 55h (SPC-4 §6.9, §6.10): the changeable
 * bits of the pages MODE SENSE reports may change, every other field
 * must keep its current value. All or nothing. */
static void spc_mode_select(struct scsi_cmd *cmd)
{
	const uint8_t *c = cmd->cdb;
	struct scsi_lu *lu = scsi_cmd_lu(cmd);
	bool ten = c[0] == 0x55;
	size_t len = ten ? ds_get_be16(c + 7) : c[4];
	size_t hdr = ten ? 8 : 4, bdl, off;
	bool wce = scsi_lu_wce(lu), swp = scsi_lu_swp(lu);
	uint8_t b[512];

	if (c[1] & 0x01) {
		/* SPC-4 §6.9: SP = 1 without saved pages is an invalid field */
		scsi_cmd_invalid_field(cmd, true, 1, 0);
		goto out;
	}
	if (!len)
		goto out;
	if (!(c[1] & 0x10)) {   /* PF = 0: vendor-specific pages, we have none */
		scsi_cmd_invalid_field(cmd, true, 1, 4);
		goto out;
	}
	if (len > sizeof(b) || len < hdr) {
		scsi_cmd_data_out(cmd, b, MIN(len, sizeof(b)));
		cmd->want_len = len;
		scsi_cmd_sense(cmd, SCSI_SK_ILLEGAL_REQUEST, 0x1A, 0x00);
		goto out;
	}
	scsi_cmd_data_out(cmd, b, len);
	bdl = ten ? ds_get_be16(b + 6) : b[3];
	if (hdr + bdl > len || (bdl && bdl != (ten && (b[4] & 1) ? 16 : 8)) ||
	    (bdl && scsi_lu_type(lu) != SCSI_LU_DISK)) {
		scsi_cmd_invalid_field(cmd, false, (uint16_t)(ten ? 6 : 3), -1);
		goto out;
	}
	if (bdl) {
		/* The block length must stay; the number of blocks may be
		 * given as zero or as the current capacity (no format). */
		const uint8_t *d = b + hdr;
		uint64_t blocks = bdl == 16 ? ds_get_be64(d) : ds_get_be32(d);
		uint32_t bs = bdl == 16 ? ds_get_be32(d + 12) : (ds_get_be32(d + 4) & 0xffffff);
		uint64_t cur = lu_blocks(cmd);

		if (bs != scsi_lu_block_size(lu)) {
			scsi_cmd_invalid_field(cmd, false, (uint16_t)(hdr + (bdl == 16 ? 12 : 5)), -1);
			goto out;
		}
		if (blocks && blocks != cur && !(bdl == 8 && blocks == UINT32_MAX && cur > UINT32_MAX)) {
			scsi_cmd_invalid_field(cmd, false, (uint16_t)hdr, -1);
			goto out;
		}
	}
	for (off = hdr + bdl; off < len;) {
		uint8_t cur[32], chg[32];
		const uint8_t *p = b + off;
		size_t n;

		if (len - off < 2) {
			scsi_cmd_sense(cmd, SCSI_SK_ILLEGAL_REQUEST, 0x1A, 0x00);
			goto out;
		}
		n = mode_page(lu, p[0] & 0x3f, PC_CURRENT, cur);
		if (!n || (p[0] & 0x40)) {      /* unknown page, or a subpage */
			scsi_cmd_invalid_field(cmd, false, (uint16_t)off, 5);
			goto out;
		}
		if (p[1] != n - 2) {
			scsi_cmd_invalid_field(cmd, false, (uint16_t)(off + 1), -1);
			goto out;
		}
		if (len - off < n) {
			scsi_cmd_sense(cmd, SCSI_SK_ILLEGAL_REQUEST, 0x1A, 0x00);
			goto out;
		}
		mode_page(lu, p[0] & 0x3f, PC_CHANGEABLE, chg);
		for (size_t i = 2; i < n; i++) {
			uint8_t diff = (uint8_t)((p[i] ^ cur[i]) & ~chg[i]);

			if (diff) {
				scsi_cmd_invalid_field(cmd, false, (uint16_t)(off + i),
						       31 - __builtin_clz(diff));
				goto out;
			}
		}
		if ((p[0] & 0x3f) == 0x08)
			wce = p[2] & 0x04;
		else if ((p[0] & 0x3f) == 0x0A)
			swp = p[4] & 0x08;
		off += n;
	}
	if (wce != scsi_lu_wce(lu) || swp != scsi_lu_swp(lu)) {
		scsi_lu_set_wce(lu, wce);
		scsi_lu_set_swp(lu, swp);
		/* SPC-4 §7.5.1: the other nexuses learn of shared mode
		 * parameters changing. */
		scsi_lu_ua_all(lu, cmd->nexus, 0x2A, 0x01);
	}
out:
	scsi_cmd_finish(cmd);
}

/* ---- REPORT SUPPORTED OPERATION CODES (SPC-4 §6.35) ------------------------------------ */

/* The op that answers @opcode/@sa on @lu (the first in table order). */
static const struct scsi_op *rsoc_find(const struct scsi_lu *lu, uint8_t opcode, uint16_t sa,
				       bool match_sa, bool *has_sa)
{
	*has_sa = false;
	for (const struct scsi_op *const *t = scsi_lu_op_tables(lu); *t; t++)
		for (const struct scsi_op *op = *t; op->run; op++) {
			if (op->opcode != opcode)
				continue;
			*has_sa |= op->has_sa;
			if (!op->has_sa || !match_sa || op->sa == sa)
				return op;
		}
	return NULL;
}

/* The command timeouts descriptor (SPC-4 §6.35.4): nominal time not
 * given, 30 s recommended. */
static size_t rsoc_timeouts(uint8_t *p)
{
	memset(p, 0, 12);
	ds_put_be16(p, 0x0A);
	ds_put_be32(p + 8, 30);
	return 12;
}

static void spc_report_opcodes(struct scsi_cmd *cmd)
{
	const uint8_t *c = cmd->cdb;
	const struct scsi_lu *lu = scsi_cmd_lu(cmd);
	bool rctd = c[2] & 0x80;
	uint8_t options = c[2] & 0x07, req_op = c[3];
	uint16_t req_sa = ds_get_be16(c + 4);
	uint32_t alloc = ds_get_be32(c + 6);
	uint8_t tb[4096];
	size_t off = 0;

	if (options == 0) {
		off = 4;
		for (const struct scsi_op *const *t = scsi_lu_op_tables(lu); *t; t++)
			for (const struct scsi_op *op = *t; op->run; op++) {
				bool has_sa;

				/* an entry an earlier table shadows is not reachable */
				if (rsoc_find(lu, op->opcode, op->sa, true, &has_sa) != op)
					continue;
				if (off + 20 > sizeof(tb))
					break;
				memset(tb + off, 0, 8);
				tb[off] = op->opcode;
				if (op->has_sa) {
					ds_put_be16(tb + off + 2, op->sa);
					tb[off + 5] |= 0x01;            /* SERVACTV */
				}
				if (rctd)
					tb[off + 5] |= 0x02;            /* CTDP */
				ds_put_be16(tb + off + 6, op->cdb_len);
				off += 8;
				if (rctd)
					off += rsoc_timeouts(tb + off);
			}
		ds_put_be32(tb, (uint32_t)(off - 4));
	} else if (options <= 3) {
		bool has_sa;
		const struct scsi_op *op = rsoc_find(lu, req_op, req_sa, options != 1, &has_sa);

		/* 001b names an opcode without service actions, 010b one with */
		if ((options == 1 && has_sa) || (options == 2 && !has_sa)) {
			scsi_cmd_invalid_field(cmd, true, 2, 2);
			goto out;
		}
		memset(tb, 0, 4);
		if (op && op->has_sa != (options != 1 && has_sa))
			op = NULL;
		if (!op) {
			tb[1] = 0x01;                   /* SUPPORT: not supported */
			off = 4;
		} else {
			tb[1] = (uint8_t)(0x03 | (rctd ? 0x80 : 0));
			ds_put_be16(tb + 2, op->cdb_len);
			memcpy(tb + 4, op->usage, op->cdb_len);
			off = 4 + op->cdb_len;
			if (rctd)
				off += rsoc_timeouts(tb + off);
		}
	} else {
		scsi_cmd_invalid_field(cmd, true, 2, 2);
		goto out;
	}
	scsi_cmd_data_in(cmd, tb, off, alloc);
out:
	scsi_cmd_finish(cmd);
}

/* ---- RESERVE / RELEASE (SPC-2 §7.21, §7.17) --------------------------------------------- */

static void spc_reserve(struct scsi_cmd *cmd)
{
	const uint8_t *c = cmd->cdb;

	/* Extents and third-party reservations are obsolete (SPC-2). */
	if (c[0] == 0x16 ? (c[1] & 0x1f) : (c[1] & 0x13))
		scsi_cmd_invalid_field(cmd, true, 1, -1);
	else if (!scsi_lu_spc2_reserve(cmd))
		scsi_cmd_status(cmd, SCSI_RESERVATION_CONFLICT);
	scsi_cmd_finish(cmd);
}

static void spc_release(struct scsi_cmd *cmd)
{
	const uint8_t *c = cmd->cdb;

	if (c[0] == 0x17 ? (c[1] & 0x1f) : (c[1] & 0x13))
		scsi_cmd_invalid_field(cmd, true, 1, -1);
	else
		scsi_lu_spc2_release(cmd);
	scsi_cmd_finish(cmd);
}

/* ---- PREVENT ALLOW MEDIUM REMOVAL (SPC-4 §6.15, SBC-3 §5.11) --------------------------- */

static void spc_prevent_allow(struct scsi_cmd *cmd)
{
	uint8_t prevent = cmd->cdb[4] & 0x03;

	/* 10b and 11b are obsolete for a disk (persistent prevent is MMC's). */
	if (prevent > 1)
		scsi_cmd_invalid_field(cmd, true, 4, 1);
	else
		scsi_lu_set_prevent(cmd, prevent);
	scsi_cmd_finish(cmd);
}

/* ---- START STOP UNIT of a disk (SBC-3 §5.25) ---------------------------------------------- */

static void spc_start_stop_flushed(struct disk_io *io)
{
	struct scsi_cmd *cmd = io->opaque;

	scsi_cmd_disk_status(cmd, io, 0);
	disk_io_put(io->reactor, io);
	scsi_cmd_finish(cmd);
}

static void spc_start_stop(struct scsi_cmd *cmd)
{
	const uint8_t *c = cmd->cdb;
	struct scsi_lu *lu = scsi_cmd_lu(cmd);
	uint8_t power = c[4] >> 4;
	bool loej = c[4] & 0x02, start = c[4] & 0x01, no_flush = c[4] & 0x04;
	struct disk_io *io;

	/* A power condition other than START_VALID: LOEJ and START are
	 * ignored; a virtual disk has no power states to move between. */
	if (power)
		goto out;
	if (loej) {
		if (!scsi_lu_opts(lu)->removable) {
			scsi_cmd_invalid_field(cmd, true, 4, 1);
			goto out;
		}
		if (scsi_lu_removal_blocked(lu)) {
			scsi_cmd_sense(cmd, SCSI_SK_ILLEGAL_REQUEST, 0x53, 0x02);
			goto out;
		}
		scsi_lu_set_loaded(lu, start);
	}
	/* Stopping writes the cache back first (SBC-3 §5.25), unless told
	 * not to; with WCE off there is nothing cached. */
	if (!start && !no_flush && scsi_lu_wce(lu) && scsi_cmd_disk(cmd)) {
		io = scsi_cmd_io(cmd, spc_start_stop_flushed);
		if (!io) {
			scsi_cmd_status(cmd, SCSI_BUSY);
			goto out;
		}
		io->op = DISK_OP_FLUSH;
		disk_submit(scsi_cmd_disk(cmd), io);
		return;
	}
out:
	scsi_cmd_finish(cmd);
}

/* ---- PERSISTENT RESERVE IN/OUT entries (pr.c) ----------------------------------------------- */

/* A DVD has no PR front: its PR commands are unsupported. */
static void spc_pr_in(struct scsi_cmd *cmd)
{
	struct scsi_pr *pr = scsi_lu_pr(scsi_cmd_lu(cmd));

	if (pr) {
		scsi_pr_in(pr, cmd);
		return;
	}
	scsi_cmd_sense(cmd, SCSI_SK_ILLEGAL_REQUEST, 0x20, 0x00);
	scsi_cmd_finish(cmd);
}

static void spc_pr_out(struct scsi_cmd *cmd)
{
	struct scsi_pr *pr = scsi_lu_pr(scsi_cmd_lu(cmd));

	if (pr) {
		scsi_pr_out(pr, cmd);
		return;
	}
	scsi_cmd_sense(cmd, SCSI_SK_ILLEGAL_REQUEST, 0x20, 0x00);
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
	{ .opcode = 0x15, .cdb_len = 6, .usage = { 0x15, 0x11, 0, 0, 0xff, 0x07 },
	  .flags = SCSI_OP_NO_MEDIUM, .run = spc_mode_select, .name = "MODE SELECT(6)" },
	{ .opcode = 0x16, .cdb_len = 6, .usage = { 0x16, 0, 0, 0, 0, 0x07 },
	  .flags = SCSI_OP_NO_MEDIUM, .run = spc_reserve, .name = "RESERVE(6)" },
	{ .opcode = 0x17, .cdb_len = 6, .usage = { 0x17, 0, 0, 0, 0, 0x07 },
	  .flags = SCSI_OP_NO_MEDIUM | SCSI_OP_SPC2_ALLOWED, .run = spc_release,
	  .name = "RELEASE(6)" },
	{ .opcode = 0x1A, .cdb_len = 6, .usage = { 0x1A, 0x08, 0xff, 0xff, 0xff, 0x07 },
	  .flags = SCSI_OP_NO_MEDIUM, .run = spc_mode_sense, .name = "MODE SENSE(6)" },
	{ .opcode = 0x1B, .cdb_len = 6, .usage = { 0x1B, 0x01, 0, 0x0f, 0xf7, 0x07 },
	  .flags = SCSI_OP_NO_MEDIUM, .run = spc_start_stop, .name = "START STOP UNIT" },
	{ .opcode = 0x1E, .cdb_len = 6, .usage = { 0x1E, 0, 0, 0, 0x03, 0x07 },
	  .flags = SCSI_OP_NO_MEDIUM, .run = spc_prevent_allow,
	  .name = "PREVENT ALLOW MEDIUM REMOVAL" },
	{ .opcode = 0x55, .cdb_len = 10,
	  .usage = { 0x55, 0x11, 0, 0, 0, 0, 0, 0xff, 0xff, 0x07 },
	  .flags = SCSI_OP_NO_MEDIUM, .run = spc_mode_select, .name = "MODE SELECT(10)" },
	{ .opcode = 0x56, .cdb_len = 10, .usage = { 0x56, 0, 0, 0, 0, 0, 0, 0, 0, 0x07 },
	  .flags = SCSI_OP_NO_MEDIUM, .run = spc_reserve, .name = "RESERVE(10)" },
	{ .opcode = 0x57, .cdb_len = 10, .usage = { 0x57, 0, 0, 0, 0, 0, 0, 0, 0, 0x07 },
	  .flags = SCSI_OP_NO_MEDIUM | SCSI_OP_SPC2_ALLOWED, .run = spc_release,
	  .name = "RELEASE(10)" },
	{ .opcode = 0x5A, .cdb_len = 10,
	  .usage = { 0x5A, 0x18, 0xff, 0xff, 0, 0, 0, 0xff, 0xff, 0x07 },
	  .flags = SCSI_OP_NO_MEDIUM, .run = spc_mode_sense, .name = "MODE SENSE(10)" },
#define PR_IN(n) \
	{ .opcode = 0x5E, .has_sa = true, .sa = n, .cdb_len = 10, \
	  .usage = { 0x5E, 0x1f, 0, 0, 0, 0, 0, 0xff, 0xff, 0x07 }, \
	  .flags = SCSI_OP_NO_MEDIUM | SCSI_OP_SPC2_ALLOWED, .run = spc_pr_in, \
	  .name = "PERSISTENT RESERVE IN" }
	PR_IN(0), PR_IN(1), PR_IN(2), PR_IN(3),
#undef PR_IN
#define PR_OUT(n) \
	{ .opcode = 0x5F, .has_sa = true, .sa = n, .cdb_len = 10, \
	  .usage = { 0x5F, 0x1f, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x07 }, \
	  .flags = SCSI_OP_NO_MEDIUM, .run = spc_pr_out, .name = "PERSISTENT RESERVE OUT" }
	PR_OUT(0), PR_OUT(1), PR_OUT(2), PR_OUT(3), PR_OUT(4), PR_OUT(5), PR_OUT(6), PR_OUT(7),
#undef PR_OUT
	{ .opcode = 0xA3, .has_sa = true, .sa = 0x0C, .cdb_len = 12,
	  .usage = { 0xA3, 0x1f, 0x87, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0x07 },
	  .flags = SCSI_OP_NO_MEDIUM | SCSI_OP_SPC2_ALLOWED,
	  .run = spc_report_opcodes, .name = "REPORT SUPPORTED OPERATION CODES" },
	{ .run = NULL },
};
