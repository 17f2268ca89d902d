# SPDX-License-Identifier: MIT
"""deps-packaged.py TOP: every external program and Python module that the
tests, the tools and the VM suite use must come from a Debian package that
tools/quickstart.sh installs (directly, or through the Depends of one it
lists), or from a package every Debian system has (Essential: yes or
Priority: required). Prints one line per dependency; exits 1 on any gap.

What it looks at:
  * shell scripts under tests/ and tools/ (and *.sh anywhere under tests/vm):
    the word in command position of every simple command, the arguments of
    `requires`, `command -v` and `which`, the word lists of `for` loops inside
    a function whose name ends in "requires", and every absolute path into a
    bin directory;
  * Python: `import`/`from` lines in *.py files and in shell here-documents
    fed to Python, less the standard library;
  * C test sources and tools: the first word of each string literal passed
    to the shell (popen/system command lines) and tp_have()/argv programs;
  * the libraries configure.ac looks for with PKG_CHECK_MODULES (their .pc
    files).
A word counts as a program when it resolves on $PATH (or is an absolute
path) to a file in a bin directory. Shell functions defined in the scanned
scripts, shell builtins and keywords are not programs. Commands that run
only inside the VM guests' busybox initramfs resolve to busybox applets.
Words that resolve to nothing are not reported: the scan over-approximates
(case labels, here-document lines), and a test that needs a program that
is absent fails by itself under DISKSTACK_STRICT_DEPS=1.

Why: a package installed by hand on a developer machine hides a missing
install step; CI on that machine stays green while a fresh machine fails.
"""

import os
import re
import shutil
import subprocess
import sys

TOP = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else ".")
BIN_DIRS = ("/usr/bin/", "/usr/sbin/", "/bin/", "/sbin/", "/usr/local/bin/",
            "/usr/local/sbin/", "/usr/libexec/")

SHELL_WORDS = set("""
if then else elif fi for while until do done case esac in function select
time ! { } [[ ]] [ test echo printf read cd pwd export unset set shift exit
return local declare typeset eval exec trap wait kill true false break
continue source . : let getopts umask ulimit type command builtin hash
readonly alias unalias jobs fg bg disown shopt mapfile readarray pushd popd
dirs caller enable help history compgen complete suspend times logout
""".split())

# Wrappers whose argument is the real command.
WRAPPERS = {"exec", "env", "nice", "nohup", "command", "timeout", "flock",
            "setsid", "taskset", "stdbuf", "ionice", "xargs", "sudo",
            "unshare", "chroot", "strace"}


def rel(p):
    return os.path.relpath(p, TOP)


def source_files():
    shells, pys, cs = [], [], []
    for sub in ("tests", "tools", ".ci"):
        base = os.path.join(TOP, sub)
        for root, dirs, files in os.walk(base):
            dirs[:] = [d for d in dirs if not d.startswith("build")]
            for f in files:
                p = os.path.join(root, f)
                if f.endswith(".py"):
                    pys.append(p)
                elif f.endswith(".c") or f.endswith(".h"):
                    cs.append(p)
                elif f.endswith(".sh") or f == "run":
                    shells.append(p)
                else:
                    try:
                        with open(p, "rb") as fh:
                            head = fh.read(64)
                    except OSError:
                        continue
                    if head.startswith(b"#!") and b"sh" in head.split(b"\n")[0]:
                        shells.append(p)
    return sorted(shells), sorted(pys), sorted(cs)


HEREDOC = re.compile(r"<<-?\s*(['\"]?)([A-Za-z_][A-Za-z0-9_]*)\1")
SPLIT = re.compile(r"\|\||&&|[|;&(){}`]|\$\(|\bthen\b|\bdo\b|\belse\b|\bif\b|"
                   r"\bwhile\b|\buntil\b|\bexec\b|!")
ASSIGN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\[[^]]*\])?\+?=")
FUNC_DEF = re.compile(r"^\s*(?:function\s+)?([A-Za-z_][A-Za-z0-9_.-]*)\s*\(\)")
NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+-]*$")


def strip_comment(line):
    # A # that starts a word starts a comment (good enough: our scripts do
    # not put # inside quoted words at word start except in ${#...}).
    out, q = [], None
    for i, ch in enumerate(line):
        if q:
            if ch == q:
                q = None
        elif ch in "'\"":
            q = ch
        elif ch == "#" and (i == 0 or line[i - 1] in " \t;|&(") and \
                not line[i - 1:i + 1] == "$#":
            break
        out.append(ch)
    return "".join(out)


def unquote_strings(line):
    """Blanks out the insides of quoted strings except "$(...)" ones, so that
    words in messages are not taken for commands."""
    def repl(m):
        s = m.group(0)
        if "$(" in s:
            return s
        return '""'
    line = re.sub(r"'[^']*'", repl, line)
    return re.sub(r'"(?:[^"\\]|\\.)*"', repl, line)


def scan_shell(path, progs, pymods, funcs):
    try:
        text = open(path, encoding="utf-8", errors="replace").read()
    except OSError:
        return
    lines = text.split("\n")
    i = 0
    in_requires_fn = False
    while i < len(lines):
        raw = lines[i]
        i += 1
        # An array body (name=( ... ) over several lines) holds data, such
        # as quickstart.sh's package names, not commands.
        if re.match(r"^\s*[A-Za-z_][A-Za-z0-9_]*=\(\s*$", raw):
            while i < len(lines) and not re.match(r"^\s*\)", lines[i]):
                i += 1
            i += 1
            continue
        m = FUNC_DEF.match(raw)
        if m:
            funcs.add(m.group(1))
            in_requires_fn = m.group(1).endswith("requires")
        elif raw.startswith("}"):
            in_requires_fn = False
        line = strip_comment(raw)
        hd = HEREDOC.search(line)
        body = []
        if hd:
            end = hd.group(2)
            while i < len(lines) and lines[i].strip() != end:
                body.append(lines[i])
                i += 1
            i += 1
            if re.search(r"python3?\b|\$PY\b|\$py\b|\$\{PY|nbdsh|\.py\b", line):
                scan_python_text("\n".join(body), pymods)
        # python3 -c '...' one-liners and requires_python's modules.
        for m in re.finditer(r"""-c\s+(['"])(.*?)\1""", line):
            if re.search(r"python3?\b|\$PY\b|\$py\b", line[:m.start()]):
                scan_python_text(m.group(2).replace(";", "\n"), pymods)
        m = re.match(r"^\s*requires_python\s+(.*)$", line)
        if m:
            for w in m.group(1).split():
                pymods.add(w.split(".")[0])
        for p in re.findall(r"(?<![\w$/.-])(/(?:usr/)?(?:local/)?s?bin/[A-Za-z0-9_.+-]+)", line):
            progs.setdefault(p, set()).add(rel(path))
        words_line = unquote_strings(line)
        # requires / command -v / which arguments.
        m = re.match(r"^\s*(requires|vm_requires)\s+(.*)$", words_line)
        if m:
            for w in m.group(2).split():
                if NAME.match(w) or w.startswith("/"):
                    progs.setdefault(w, set()).add(rel(path))
        for m in re.finditer(r"\b(?:command -v|which)\s+(\S+)", line):
            w = m.group(1).strip("'\"")
            if NAME.match(w):
                progs.setdefault(w, set()).add(rel(path))
        if in_requires_fn:
            m = re.match(r"^\s*for\s+\w+\s+in\s+(.*?)(;\s*do)?\s*\\?$", line)
            j = i
            acc = m.group(1) if m else None
            while acc is not None and raw.rstrip().endswith("\\") and j < len(lines):
                raw = lines[j]
                j += 1
                acc += " " + raw.strip().rstrip("\\").split("; do")[0]
            if acc:
                for w in acc.split():
                    if NAME.match(w):
                        progs.setdefault(w, set()).add(rel(path))
        for seg in SPLIT.split(words_line):
            words = seg.split()
            while words and (ASSIGN.match(words[0]) or words[0] in WRAPPERS or
                             re.match(r"^-|^[0-9.]+[smhd]?$", words[0])):
                words.pop(0)
            if not words:
                continue
            w = words[0]
            if NAME.match(w) and w not in SHELL_WORDS:
                progs.setdefault(w, set()).add(rel(path))


def scan_python_text(text, pymods):
    for line in text.split("\n"):
        m = re.match(r"^\s*import\s+(.+)$", line)
        if m:
            for part in m.group(1).split(","):
                name = part.strip().split()[0].split(".")[0] if part.strip() else ""
                if name:
                    pymods.add(name)
            continue
        m = re.match(r"^\s*from\s+([A-Za-z_][\w.]*)\s+import\b", line)
        if m:
            pymods.add(m.group(1).split(".")[0])


def scan_c(path, progs):
    text = open(path, encoding="utf-8", errors="replace").read()
    for m in re.finditer(r"\b(?:tp_have|system|popen)\s*\(\s*\"([^\"]+)\"", text):
        w = m.group(1).split()[0]
        if NAME.match(w) or w.startswith("/"):
            progs.setdefault(w, set()).add(rel(path))
    # Command lines built with snprintf(cmd, ..., "prog args", ...).
    for m in re.finditer(r"snprintf\s*\(\s*cmd\s*,[^,]+,\s*\"([^\"]+)\"", text):
        for w in m.group(1).split()[:1]:
            if NAME.match(w):
                progs.setdefault(w, set()).add(rel(path))
    # argv arrays: { "prog", ... } whose first element is a program name.
    for m in re.finditer(r"(?:char\s*\*\s*(?:const\s*)?\w*argv\w*\s*\[\s*\]\s*=\s*\{)\s*(?:\(char\s*\*\)\s*)?\"([^\"]+)\"", text):
        w = m.group(1)
        if NAME.match(w) or w.startswith("/"):
            progs.setdefault(w, set()).add(rel(path))


_OWNERS = None


def dpkg_owner(path):
    """The packages that own PATH, from dpkg's file lists (one read of
    /var/lib/dpkg/info instead of a dpkg-query -S per path)."""
    global _OWNERS
    if _OWNERS is None:
        _OWNERS = {}
        info = "/var/lib/dpkg/info"
        for f in os.listdir(info):
            if not f.endswith(".list"):
                continue
            pkg = f[:-5].split(":")[0]
            with open(os.path.join(info, f), encoding="utf-8", errors="replace") as fh:
                for line in fh:
                    _OWNERS.setdefault(line.rstrip("\n"), []).append(pkg)
    cands = [path, os.path.realpath(path)]
    # usrmerge: /bin/x is /usr/bin/x and dpkg may know either.
    for c in list(cands):
        cands.append(c[4:] if c.startswith("/usr/") else "/usr" + c)
    for c in cands:
        if c in _OWNERS:
            return _OWNERS[c]
    return None


def installed_db():
    fmt = "${Package}\t${Status}\t${Essential}\t${Priority}\t${Pre-Depends}\t${Depends}\t${Provides}\n"
    out = subprocess.run(["dpkg-query", "-W", "-f", fmt], capture_output=True,
                         text=True).stdout
    db, providers = {}, {}
    for line in out.splitlines():
        f = line.split("\t")
        if len(f) < 7 or "install ok installed" not in f[1]:
            continue
        db[f[0]] = f
        for p in f[6].split(","):
            p = p.strip().split(" ")[0]
            if p:
                providers.setdefault(p, []).append(f[0])
    return db, providers


def quickstart_packages():
    text = open(os.path.join(TOP, "tools/quickstart.sh")).read()
    pkgs = set()
    for m in re.finditer(r"^\w+_pkgs=\(\n(.*?)^\)", text, re.S | re.M):
        for line in m.group(1).splitlines():
            line = line.split("#")[0].strip()
            if line:
                pkgs.add(line)
    return pkgs


_SOLE = {}


def sole_provider(virtual):
    """The one package of the archive that provides VIRTUAL, or None when
    there are several (or apt knows none)."""
    if virtual not in _SOLE:
        out = subprocess.run(["apt-cache", "showpkg", virtual], capture_output=True,
                             text=True).stdout
        provs = set()
        if "Reverse Provides:" in out:
            for line in out.split("Reverse Provides:", 1)[1].strip().splitlines():
                if line.strip():
                    provs.add(line.split()[0])
        _SOLE[virtual] = provs.pop() if len(provs) == 1 else None
    return _SOLE[virtual]


def closure(roots, db, providers):
    """The packages apt installs for ROOTS with --no-install-recommends: the
    Depends and Pre-Depends, each alternative group resolved to its first
    member (what apt picks on a machine that has none of them)."""
    seen, todo = set(), list(roots)
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        if p not in db and p in providers:
            # A virtual package: apt picks among the archive's providers,
            # which need not be the one installed here. Followed only when
            # the archive has exactly one.
            only = sole_provider(p)
            if only:
                todo.append(only)
            continue
        seen.add(p)
        if p not in db:
            continue
        for field in (db[p][4], db[p][5]):
            for group in field.split(","):
                alt = group.split("|")[0].strip()
                name = alt.split(" ")[0].split(":")[0]
                if name:
                    todo.append(name)
    return seen


def main():
    shells, pys, cs = source_files()
    progs, pymods, funcs = {}, set(), set()
    for p in shells:
        scan_shell(p, progs, pymods, funcs)
    for p in pys:
        scan_python_text(open(p, encoding="utf-8", errors="replace").read(), pymods)
    for p in cs:
        scan_c(p, progs)

    db, providers = installed_db()
    listed = quickstart_packages()
    missing_listed = sorted(p for p in listed if p not in db)
    covered = closure(listed, db, providers)
    base = {p for p, f in db.items() if f[2] == "yes" or f[3] == "required"}
    base = closure(base, db, providers)

    try:
        bb = set(subprocess.run(["/bin/busybox", "--list"], capture_output=True,
                                text=True).stdout.split())
    except OSError:
        bb = set()

    gaps, lines = [], []

    def judge(kind, name, path, users):
        owners = dpkg_owner(path) if path else None
        if owners is None:
            gaps.append(f"{kind} {name}: {path or 'not found'} belongs to no Debian "
                         f"package (used by {', '.join(sorted(users))[:200]})")
            return
        how = None
        for o in owners:
            if o in listed:
                how = f"{o} (listed)"
            elif o in covered and not how:
                how = f"{o} (a dependency of a listed package)"
            elif o in base and not how:
                how = f"{o} (every Debian system)"
        if how:
            lines.append(f"ok   {kind} {name}: {path} from {how}")
        else:
            gaps.append(f"{kind} {name}: {path} comes from {', '.join(owners)}, which "
                        f"tools/quickstart.sh does not install (used by "
                        f"{', '.join(sorted(users))[:200]})")

    for name in sorted(progs):
        users = progs[name]
        if name in funcs or name in SHELL_WORDS:
            continue
        if name.startswith("/"):
            if not any(name.startswith(d) for d in BIN_DIRS):
                continue
            path = name if os.path.exists(name) else None
        else:
            # Wherever $PATH finds it: a program in /opt, ~/.local/bin or a
            # virtualenv belongs to no package and is reported as a gap.
            path = shutil.which(name)
        guest_only = all(u.startswith("tests/vm/guest-") or u == "tests/vm/init.sh"
                         for u in users)
        if guest_only and not name.startswith("/") and name in bb:
            lines.append(f"ok   program {name}: a busybox applet in the guest")
            continue
        if path is None:
            # Not a program here: a word the scan took for a command (a case
            # label, a here-document line), or a program a test looks for
            # and skips without; under DISKSTACK_STRICT_DEPS=1 that test
            # fails on its own.
            continue
        judge("program", name, path, users)

    stdlib = set(sys.stdlib_module_names)
    # The repository's own modules (tests/integration/nvmfhost.py, ...):
    # imported from the tree, not packages.
    own = {os.path.splitext(os.path.basename(p))[0] for p in pys}
    for mod in sorted(pymods):
        if mod in stdlib or mod.startswith("_") or mod in own:
            continue
        r = subprocess.run(["/usr/bin/python3", "-I", "-c",
                            f"import {mod}; print({mod}.__file__ or '')"],
                           capture_output=True, text=True, cwd="/")
        path = r.stdout.strip() if r.returncode == 0 else None
        if not path:
            gaps.append(f"python module {mod}: /usr/bin/python3 -I cannot import it")
            continue
        judge("python module", mod, path, {"python"})

    ac = open(os.path.join(TOP, "configure.ac")).read()
    for mods in re.findall(r"PKG_CHECK_MODULES\(\s*\[?\w+\]?\s*,\s*\[?([^\],)]+)", ac):
        for mod in mods.split():
            if not re.match(r"^[A-Za-z]", mod):
                continue
            r = subprocess.run(["pkg-config", "--variable=pcfiledir", mod],
                               capture_output=True, text=True)
            if r.returncode != 0:
                continue   # optional library, absent: configure drops it
            judge("library", mod, os.path.join(r.stdout.strip(), mod + ".pc"),
                  {"configure.ac"})

    for line in lines:
        print(line)
    for p in missing_listed:
        gaps.append(f"package {p}: listed in tools/quickstart.sh but not installed")
    for g in gaps:
        print("GAP  " + g)
    print(f"{len(lines)} dependencies packaged, {len(gaps)} gaps")
    return 1 if gaps else 0


if __name__ == "__main__":
    sys.exit(main())
