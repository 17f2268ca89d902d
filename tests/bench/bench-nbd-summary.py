# SPDX-License-Identifier: MIT
# bench-nbd-summary.py R REPS SERVERS JOBS: the tables of bench-nbd.sh from
# the fio JSON and CPU files in R: median IOPS and server CPU per I/O per
# server and job, then ratios.
import json, os, statistics, sys

R, reps, servers, jobs = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(), sys.argv[4].split()

def load(j, s, rep):
    try:
        f = json.load(open(os.path.join(R, "%s.%s.%d.json" % (j, s, rep))))
        c = json.load(open(os.path.join(R, "%s.%s.%d.cpu.json" % (j, s, rep))))
    except (OSError, ValueError):
        return None
    job = f["jobs"][0]
    iops = job["read"]["iops"] + job["write"]["iops"]
    ios = job["read"]["total_ios"] + job["write"]["total_ios"]
    per = lambda k: (c[k] * 1e6 / ios) if ios and k in c else float("nan")
    return iops, per("cpu_s"), per("user_s"), per("sys_s")

rows = {}
print("| job | " + " | ".join(servers) + " |")
print("|---|" + "---:|" * len(servers))
for j in jobs:
    cells = []
    for s in servers:
        runs = [r for r in (load(j, s, k) for k in range(1, reps + 1)) if r]
        if not runs:
            cells.append("n/a")
            continue
        iops = statistics.median(r[0] for r in runs)
        cpu = statistics.median(r[1] for r in runs)
        user = statistics.median(r[2] for r in runs)
        sys_ = statistics.median(r[3] for r in runs)
        rows[(j, s)] = (iops, cpu, user, sys_)
        cells.append("%.0f IOPS, %.1f us/IO" % (iops, cpu))
    print("| %s | %s |" % (j, " | ".join(cells)))
print()
print("IOPS ratios (medians) and server CPU per I/O ratio:")
print()
print("| job | ds-mem / better nbdkit | ds-file / qemu-nbd | ds-mem / qemu-nbd | CPU/IO ds-mem / nbdkit | CPU/IO ds-mem / cheaper nbdkit |")
print("|---|---:|---:|---:|---:|---:|")
for j in jobs:
    def g(s, i=0):
        return rows[(j, s)][i] if (j, s) in rows else None
    nk = [s for s in ("nbdkit", "nbdkit-t1") if g(s)]
    best = max(nk, key=lambda s: g(s)) if nk else None
    r1 = g("ds-mem") / g(best) if best and g("ds-mem") else None
    r2 = g("ds-file") / g("qemu-nbd") if g("ds-file") and g("qemu-nbd") else None
    r3 = g("ds-mem") / g("qemu-nbd") if g("ds-mem") and g("qemu-nbd") else None
    r4 = g("ds-mem", 1) / g("nbdkit", 1) if g("nbdkit") and g("ds-mem") else None
    cheap = min(nk, key=lambda s: g(s, 1)) if nk else None
    r5 = g("ds-mem", 1) / g(cheap, 1) if cheap and g("ds-mem") else None
    f = lambda x: "%.2f" % x if x is not None else "n/a"
    print("| %s | %s (vs %s) | %s | %s | %s | %s (vs %s) |" % (j, f(r1), best or "-", f(r2), f(r3),
                                                          f(r4), f(r5), cheap or "-"))

print()
print("Server CPU per I/O split into user and kernel time (medians, us):")
print()
print("| job | " + " | ".join(servers) + " |")
print("|---|" + "---:|" * len(servers))
for j in jobs:
    cells = []
    for s in servers:
        if (j, s) not in rows:
            cells.append("n/a")
            continue
        _, _, user, sys_ = rows[(j, s)]
        if user != user or sys_ != sys_:    # NaN: results from before the split
            cells.append("n/a")
        else:
            cells.append("%.1f user + %.1f kernel" % (user, sys_))
    print("| %s | %s |" % (j, " | ".join(cells)))
