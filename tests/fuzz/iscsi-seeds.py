#!/usr/bin/python3
# SPDX-License-Identifier: MIT
# iscsi-seeds.py DIR: writes seed inputs for fuzz-iscsi-pdu into DIR: one
# set-up byte (bit 0 CHAP configured, bit 1/2 header/data digests once
# negotiated), then PDUs as an initiator sends them (RFC 7143 §11):
# logins of libiscsi and open-iscsi, a discovery session with
# SendTargets, CHAP, a multi-PDU login, SCSI commands with an extended
# CDB, and malformed ones.
import hashlib
import os
import struct
import sys

TGT = "iqn.2026-12.org.diskstack:fuzz"
INI = "iqn.2007-10.com.github:sahlberg:libiscsi:iscsi-test"


def pdu(op, flags, data=b"", itt=1, f20=0, cmdsn=0, cdb=b"", ahs=b"", isid=b"\x80\0\0\0\0\1"):
    bhs = bytearray(48)
    bhs[0] = op
    bhs[1] = flags
    bhs[4] = len(ahs) // 4
    bhs[5:8] = struct.pack(">I", len(data))[1:]
    bhs[8:14] = isid if op & 0x3f == 3 else b"\0" * 6
    bhs[16:20] = struct.pack(">I", itt)
    bhs[20:24] = struct.pack(">I", f20)
    bhs[24:28] = struct.pack(">I", cmdsn)
    bhs[32:32 + len(cdb)] = cdb
    return bytes(bhs) + ahs + data + b"\0" * ((4 - len(data) % 4) % 4)


def keys(*kv):
    return b"".join(k.encode() + b"\0" for k in kv)


def login(kv, csg=1, nsg=3, t=True, c=False):
    return pdu(0x43, (0x80 if t else 0) | (0x40 if c else 0) | csg << 2 | nsg, keys(*kv))


LIBISCSI = ["InitiatorName=" + INI, "TargetName=" + TGT, "SessionType=Normal",
            "HeaderDigest=None,CRC32C", "DataDigest=None", "DefaultTime2Wait=2",
            "DefaultTime2Retain=0", "IFMarker=No", "OFMarker=No", "ErrorRecoveryLevel=0",
            "InitialR2T=No", "ImmediateData=Yes", "MaxBurstLength=262144",
            "FirstBurstLength=262144", "MaxOutstandingR2T=1", "MaxConnections=1",
            "DataPDUInOrder=Yes", "DataSequenceInOrder=Yes", "MaxRecvDataSegmentLength=262144"]
READ10 = b"\x28\0\0\0\0\0\0\0\x08\0"
seeds = {
    "libiscsi": b"\0" + login(LIBISCSI) + pdu(1, 0xc1, f20=4096, cdb=READ10),
    "openiscsi": b"\0" + login(["InitiatorName=iqn.1993-08.org.debian:01:x", "InitiatorAlias=(none)",
                                "TargetName=" + TGT, "MaxRecvDataSegmentLength=262144",
                                "MaxBurstLength=16776192", "X-com.example=1", "IFMarkInt=2048"]),
    "discovery": b"\0" + login(["InitiatorName=" + INI, "SessionType=Discovery",
                                "MaxRecvDataSegmentLength=32768"])
                 + pdu(0x44, 0x80, keys("SendTargets=All"), f20=0xffffffff),
    "digests": b"\x06" + login(LIBISCSI[:3] + ["HeaderDigest=CRC32C", "DataDigest=CRC32C"]),
    "multi": b"\0" + login(["InitiatorName=" + INI], t=False, c=True)
             + login(["TargetName=" + TGT]),
    "stages": b"\0" + login(LIBISCSI[:3] + ["AuthMethod=None"], csg=0, nsg=1)
              + login(["MaxBurstLength=65536"]),
    "chap": b"\x01" + login(LIBISCSI[:3] + ["AuthMethod=CHAP,None"], csg=0, nsg=1, t=False)
            + login(["CHAP_A=5"], csg=0, nsg=1, t=False)
            + login(["CHAP_N=alice", "CHAP_R=0x" + hashlib.md5(b"x").hexdigest(),
                     "CHAP_I=3", "CHAP_C=0b" + "AAECAwQFBgcICQoLDA0ODw=="], csg=0, nsg=1),
    "extcdb": b"\0" + login(LIBISCSI)
              + pdu(1, 0x81, cdb=b"\x7f" + b"\0" * 15,
                    ahs=struct.pack(">HBB", 17, 1, 0) + bytes(range(16))),
    "bad": b"\0" + login(["InitiatorName=" + INI, "TargetName=nope", "=x", "NoEquals"])
           + pdu(0x1f, 0x80) + b"\xff" * 48,
    "text": b"\0" + login(LIBISCSI) + pdu(0x44, 0x80, keys("SendTargets=" + TGT,
                                                            "MaxRecvDataSegmentLength=8192",
                                                            "MaxBurstLength=512")),
}
for name, blob in seeds.items():
    with open(os.path.join(sys.argv[1], name), "wb") as f:
        f.write(blob)
