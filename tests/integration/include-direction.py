# SPDX-License-Identifier: MIT
"""include-direction.py TOP: dependencies point one way (docs/architecture.md):

    tools -> transports and frontends -> emulators -> storage -> common
                                 \\-> net -> common

A source file may include headers from its own top-level folder and from
folders of a lower rank, never from a folder above it or beside it on the
same rank (two transports do not include each other; net/ sees only
common/). Prints every violation as FILE:LINE: INCLUDE; exits 1 if any.

Each library is one folder, too: if TOP has a Makefile.am, every
lib*_a_SOURCES list there names files of one top-level folder only
(a "PIC twin" that copies another list by reference is skipped).
"""

import os
import re
import sys

TOP = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else ".")

# Folder -> (rank, folders of the same rank it may include).
RANK = {
    "common": 0,
    "storage": 1,
    "net": 1,
    "scsi": 2, "nvme_emul": 2, "ide": 2,
    "nbd": 3, "ublk": 3, "iscsi": 3, "nvmf": 3, "vhost": 3,
    "ctl": 3,                      # the control socket (JSON-RPC); its methods live in tools/
    "nbdkit-plugin": 3,
    "diskemu": 3,                  # libdiskemu's embedding API: over the emulators
    "tools": 4,
}
# Lower-rank folders a folder must not use even so.
FORBIDDEN = {
    "net": {"storage"},            # the socket engine knows no disks
    "storage": {"net"},
    "scsi": {"net"}, "nvme_emul": {"net"}, "ide": {"net"},   # emulators know no sockets
}
# Same-rank exceptions, each with its reason.
ALLOWED_SAME_RANK = {
    ("ide", "scsi"),               # ATAPI carries SCSI CDBs to the DVD
}

# Quoted includes, and angle-bracket ones too: the build puts the top of
# the tree on the include path, so <storage/disk.h> would reach it as well.
INC = re.compile(r'^\s*#\s*include\s+["<]([^">]+)[">]')


def folder_of(relpath):
    return relpath.split("/", 1)[0]


# lib<name>_a_SOURCES = / += files...; continuation lines already joined.
LIBSRC = re.compile(r'^\s*(lib\w+)_a_SOURCES\s*\+?=(.*)$')


def library_folders(top, bad):
    """Reports every lib*.a of TOP/Makefile.am built from two folders."""
    path = os.path.join(top, "Makefile.am")
    if not os.path.exists(path):
        return
    with open(path, encoding="utf-8") as fh:
        text = fh.read().replace("\\\n", " ")
    folders = {}
    for line in text.splitlines():
        m = LIBSRC.match(line)
        if not m:
            continue
        for f in m.group(2).split():
            if not f.startswith("$("):
                folders.setdefault(m.group(1), set()).add(folder_of(f))
    for lib, dirs in sorted(folders.items()):
        if len(dirs) > 1:
            bad.append(f"Makefile.am: {lib}.a has sources from {', '.join(d + '/' for d in sorted(dirs))}")


def main():
    bad, seen, mixed = [], 0, []
    library_folders(TOP, mixed)
    for top in RANK:
        base = os.path.join(TOP, top)
        if not os.path.isdir(base):
            continue
        for root, _, files in os.walk(base):
            for f in files:
                if not f.endswith((".c", ".h")):
                    continue
                path = os.path.join(root, f)
                rel = os.path.relpath(path, TOP)
                with open(path, encoding="utf-8", errors="replace") as fh:
                    for n, line in enumerate(fh, 1):
                        m = INC.match(line)
                        if not m:
                            continue
                        inc = m.group(1)
                        seen += 1
                        if inc == "config.h":
                            continue
                        # A relative include names a file beside the includer.
                        local = os.path.normpath(os.path.join(os.path.dirname(rel), inc))
                        if os.path.exists(os.path.join(TOP, local)):
                            target = folder_of(local)
                        elif os.path.exists(os.path.join(TOP, inc)):
                            target = folder_of(inc)
                        elif line.lstrip().startswith("#") and "<" in line.split("include", 1)[1][:3]:
                            continue    # a system header
                        else:
                            bad.append(f"{rel}:{n}: {inc} (not found in the tree)")
                            continue
                        if target == top:
                            continue
                        if target not in RANK:
                            bad.append(f"{rel}:{n}: {inc} (from {target}/, outside the libraries)")
                        elif target in FORBIDDEN.get(top, ()):
                            bad.append(f"{rel}:{n}: {inc} ({top}/ must not use {target}/)")
                        elif RANK[target] > RANK[top]:
                            bad.append(f"{rel}:{n}: {inc} (points up: {top}/ is below {target}/)")
                        elif RANK[target] == RANK[top] and (top, target) not in ALLOWED_SAME_RANK:
                            bad.append(f"{rel}:{n}: {inc} (sideways: {top}/ and {target}/ are peers)")
    for b in bad:
        print("UP   " + b)
    for b in mixed:
        print("LIB  " + b)
    print(f"{seen} includes checked, {len(bad)} pointing the wrong way, "
          f"{len(mixed)} libraries of more than one folder")
    return 1 if bad or mixed or seen == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
