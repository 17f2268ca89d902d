# SPDX-License-Identifier: MIT
"""iscsi-cu-summary.py [--tests] [--expect FILE --flavour F] DIR [DIR...]

Reads the logs iscsi-cu.sh left in each DIR (one iscsi-test-cu process per
suite, verbose) and prints pass/fail/skip per suite and in total; with
several DIRs, one column per DIR (p/f/s), for comparing targets.

How a test is counted. CUnit 2.1 has no "skipped" state: iscsi-test-cu
prints "[SKIPPED] <why>" and the test then passes. So:
  fail  the result is FAILED, or the test never got a result (the suite
        process timed out, crashed, or its set-up failed: see <Suite>.rc);
  skip  the result is passed and a [SKIPPED] line came before it (also
        when only part of the test was skipped);
  pass  otherwise.
"[FAILED]" lines inside a passing test are the tool's own log of an
expected error, not a result.

--expect FILE --flavour F checks DIR (one only) against the expectations:
each line of FILE is "FLAVOURS TEST REASON", FLAVOURS a comma-separated
list or "*", TEST an fnmatch glob over "Suite.Test". Exit status 1 on any
failure or on a skip no line allows; a listed skip that passed is only a
note (the list may shrink). Without --expect the exit status is 0.
"""

import fnmatch
import os
import re
import sys

TOKEN = re.compile(r"^Suite: (\S+)|^  Test: (\S+) \.\.\.", re.M)
# The result word follows "..." on the test's own line, or starts a line.
RESULT = re.compile(r"(?:\.\.\.|^)(passed|FAILED)\b", re.M)
SKIPPED = re.compile(r"\[SKIPPED\]\s*([^\n]*)")
FAILED_WHY = re.compile(r"\[FAILED\]\s*([^\n]*)|^\s+\d+\. (\S+:\d+\s+- [^\n]*)", re.M)
RC_MEANING = {124: "timed out", 137: "killed after the timeout", 139: "crashed (SIGSEGV)",
              134: "aborted", 255: "set-up failed (login, READ CAPACITY, INQUIRY ...)"}


def read(path, default=""):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return default


def load(d):
    """Returns (label, seconds, [(suite, [(test, kind, why)])])."""
    listing = [l.strip().split(".") for l in read(os.path.join(d, "list.txt")).splitlines()]
    tests_of = {}
    for parts in listing:
        if len(parts) == 3 and parts[0] == "ALL":
            tests_of.setdefault(parts[1], []).append(parts[2])
    suites = []
    for line in read(os.path.join(d, "plan.txt")).splitlines():
        suite, glob = line.split()
        wanted = [t for t in tests_of.get(suite, []) if fnmatch.fnmatchcase(t, glob)]
        text = read(os.path.join(d, suite + ".log"))
        rc_text = read(os.path.join(d, suite + ".rc"), "?").strip()
        rc = int(rc_text) if rc_text.lstrip("-").isdigit() else None
        got = parse(text)
        rows = []
        for t in wanted:
            if t in got:
                rows.append((t,) + got[t])
            else:
                why = RC_MEANING.get(rc, "exit status %s" % rc_text)
                rows.append((t, "fail", "no result: the suite process " + why))
        suites.append((suite, rows))
    return read(os.path.join(d, "label"), d).strip(), read(os.path.join(d, "seconds"), "?").strip(), suites


def parse(text):
    """{test: (kind, why)} for one suite's log."""
    marks = list(TOKEN.finditer(text))
    got = {}
    for i, m in enumerate(marks):
        if not m.group(2):
            continue
        end = marks[i + 1].start() if i + 1 < len(marks) else len(text)
        seg = text[m.end():end]
        r = RESULT.search(seg)
        if not r:
            got[m.group(2)] = ("fail", "no result (the tool crashed or was killed in this test)")
        elif r.group(1) == "FAILED":
            # The tool's own [FAILED] message says more than the assertion.
            found = FAILED_WHY.findall(seg)
            whys = [a for a, _ in found if a] + [b for _, b in found if b]
            why = whys[0] if whys else "FAILED"
            # A verbose log may run the next command's log into the line.
            got[m.group(2)] = ("fail", re.split(r"\s{4,}", why)[0])
        else:
            s = SKIPPED.search(seg[:r.start()])
            got[m.group(2)] = ("skip", s.group(1).strip()) if s else ("pass", "")
    return got


def counts(rows):
    c = {"pass": 0, "fail": 0, "skip": 0}
    for _, kind, _ in rows:
        c[kind] += 1
    return c


def load_expect(path, flavour):
    rules = []
    for n, line in enumerate(read(path).splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(None, 2)
        if len(parts) < 3:
            sys.exit("%s:%d: want FLAVOURS TEST REASON" % (path, n))
        flavours, glob, reason = parts
        if flavours == "*" or flavour in flavours.split(","):
            rules.append((glob, reason))
    return rules


def main(argv):
    show = "--tests" in argv
    argv = [a for a in argv if a != "--tests"]
    expect = flavour = None
    if "--expect" in argv:
        i = argv.index("--expect")
        expect = argv[i + 1]
        del argv[i:i + 2]
    if "--flavour" in argv:
        i = argv.index("--flavour")
        flavour = argv[i + 1]
        del argv[i:i + 2]
    if not argv or (expect and (len(argv) != 1 or not flavour)):
        sys.exit(__doc__)
    runs = [load(d) for d in argv]

    order = []
    for _, _, suites in runs:
        for s, rows in suites:
            if s not in order:
                order.append(s)
    head = "| suite | tests | " + " | ".join("%s p/f/s" % r[0] for r in runs) + " |"
    print(head if len(runs) > 1 else "| suite | tests | pass | fail | skip |")
    print("|---|---:|" + "---|" * (len(runs) if len(runs) > 1 else 3))
    totals = [{"pass": 0, "fail": 0, "skip": 0} for _ in runs]
    for s in order:
        cells, n = [], 0
        for k, (_, _, suites) in enumerate(runs):
            rows = dict(suites).get(s)
            if rows is None:
                cells.append("-")
                continue
            c = counts(rows)
            n = max(n, len(rows))
            for key in c:
                totals[k][key] += c[key]
            cells.append("%d/%d/%d" % (c["pass"], c["fail"], c["skip"]) if len(runs) > 1
                         else "%d | %d | %d" % (c["pass"], c["fail"], c["skip"]))
        print("| %s | %d | %s |" % (s, n, " | ".join(cells)))
    tcells = ["**%d/%d/%d**" % (t["pass"], t["fail"], t["skip"]) if len(runs) > 1
              else "**%d** | **%d** | **%d**" % (t["pass"], t["fail"], t["skip"]) for t in totals]
    print("| **total** | **%d** | %s |" % (max(sum(t.values()) for t in totals), " | ".join(tcells)))
    for (label, secs, _), t in zip(runs, totals):
        print("TOTAL %s: %d tests, %d passed, %d failed, %d skipped (%s s)"
              % (label, sum(t.values()), t["pass"], t["fail"], t["skip"], secs))

    if show:
        for label, _, suites in runs:
            for s, rows in suites:
                for t, kind, why in rows:
                    if kind != "pass":
                        print("%s %s %s.%s: %s" % (kind.upper(), label, s, t, why[:200]))

    if not expect:
        return 0
    rules = load_expect(expect, flavour)
    bad = 0
    for s, rows in runs[0][2]:
        for t, kind, why in rows:
            name = "%s.%s" % (s, t)
            allowed = [r for g, r in rules if fnmatch.fnmatchcase(name, g)]
            if kind == "fail":
                print("NOT OK %s [%s]: failed: %s" % (name, flavour, why[:200]))
                bad += 1
            elif kind == "skip" and not allowed:
                print("NOT OK %s [%s]: skipped, and %s does not allow it: %s"
                      % (name, flavour, os.path.basename(expect), why[:200]))
                bad += 1
            elif kind == "pass" and allowed:
                print("NOTE %s [%s]: passes now; the expected skip (%s) can go"
                      % (name, flavour, allowed[0]))
    print("%s [%s]: %s" % (runs[0][0], flavour, "%d problem(s)" % bad if bad else "as expected"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
