# SPDX-License-Identifier: MIT
"""bench-iscsi-summary.py RAW: medians of bench-iscsi.sh's raw lines
("round job server ios seconds iops cpu_s cpu_us_per_io load1") per job and
server, and the ratios the issue sets as goals: ours/tgt IOPS (>= 2),
ours/tgt CPU per I/O (<= 0.5), ours/nbd IOPS (>= 0.8). Medians, because
the machine is shared and single runs swing by 10-20 %."""

import statistics
import sys


def main(path):
    rows = {}
    loads = []
    for line in open(path):
        if line.startswith("#") or not line.strip():
            continue
        r, job, server, ios, secs, iops, cpu_s, cpu_us, load = line.split()
        rows.setdefault(job, {}).setdefault(server, []).append((float(iops), float(cpu_us)))
        loads.append(float(load))
    servers = []
    for per in rows.values():
        for s in per:
            if s not in servers:
                servers.append(s)
    print("| job | " + " | ".join("%s IOPS (runs)" % s for s in servers) + " | "
          + " | ".join("%s CPU µs/IO" % s for s in servers)
          + " | ours/tgt IOPS | ours/tgt CPU | ours/nbd IOPS"
          + (" | base/tgt IOPS | base/nbd IOPS |" if "base" in servers else " |"))
    print("|---|" + "---:|" * (2 * len(servers) + 3 + 2 * ("base" in servers)))
    for job, per in rows.items():
        med = {s: (statistics.median(i for i, _ in v), statistics.median(c for _, c in v))
               for s, v in per.items()}
        runs = {s: "/".join("%.0f" % i for i, _ in v) for s, v in per.items()}
        cells = ["%.0f (%s)" % (med[s][0], runs[s]) if s in med else "-" for s in servers]
        cells += ["%.1f" % med[s][1] if s in med else "-" for s in servers]

        def ratio(a, b, k):
            return "%.2f" % (med[a][k] / med[b][k]) if a in med and b in med and med[b][k] else "-"
        cells += [ratio("ours", "tgt", 0), ratio("ours", "tgt", 1), ratio("ours", "nbd", 0)]
        if "base" in servers:
            # BASE= (bench-iscsi.sh): an older build of our target.
            cells += [ratio("base", "tgt", 0), ratio("base", "nbd", 0)]
        print("| %s | %s |" % (job, " | ".join(cells)))
    if loads:
        print("\nload average (1 min) during the jobs: %.1f-%.1f, median %.1f"
              % (min(loads), max(loads), statistics.median(loads)))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
