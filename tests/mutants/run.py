#!/usr/bin/env python3
"""Mutation testing: break one validation check at a time and see a test fail.

Each mutant in mutants.ini replaces one exact piece of text (it must occur exactly once in its
file, so the table stays in step with the code) by a weaker version.  For each mutant, in a
scratch copy of the tree: apply, build, run the unit tests the mutant names (then every other
unit test, then the e2e tests it names, until one fails), record killed or survived, revert.
A mutant that does not build is an error in the table.

  run.py                 every mutant
  run.py --smoke         the mutants marked smoke = yes, their own unit tests only
  run.py NAME...         the mutants named
Environment: MUTATE_DIR (scratch directory, default a new one under $TMPDIR),
MUTATE_E2E_WRAP (a command put in front of each e2e run, e.g. a job-slot wrapper).
Exit status: 0 when every mutant was killed."""

import configparser
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
UNIT_TIMEOUT = 60
E2E_TIMEOUT = 900


def load(path):
    cp = configparser.RawConfigParser(delimiters=("=",), comment_prefixes=("#",),
                                      inline_comment_prefixes=None, strict=True)
    cp.optionxform = str
    with open(path) as f:
        cp.read_file(f)
    muts = []
    for name in cp.sections():
        s = cp[name]
        for k in ("file", "find", "replace", "tests", "why"):
            if k not in s:
                sys.exit("mutants.ini [%s]: no %s" % (name, k))
        tests = s["tests"].split()
        muts.append({
            "name": name, "file": s["file"], "find": s["find"], "replace": s["replace"],
            "why": s["why"],
            "unit": [t for t in tests if not t.startswith("e2e:")],
            "e2e": [t[4:] for t in tests if t.startswith("e2e:")],
            "smoke": s.get("smoke", "no") == "yes",
        })
    return muts


def scratch_copy():
    d = os.environ.get("MUTATE_DIR") or tempfile.mkdtemp(prefix="khyve-mutate.")
    tree = os.path.join(d, "tree")
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT,
                           capture_output=True, check=True).stdout.split(b"\0")
    for f in files:
        if not f:
            continue
        f = f.decode()
        src, dst = os.path.join(ROOT, f), os.path.join(tree, f)
        if not os.path.isfile(src):
            continue
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        if not os.path.exists(dst) or open(src, "rb").read() != open(dst, "rb").read():
            shutil.copy2(src, dst)
    return d, tree


def make(tree, targets, log):
    r = subprocess.run(["make", "-j2", "--no-print-directory"] + targets, cwd=tree,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    log.write(r.stdout)
    return r.returncode == 0


def unit_targets(tree):
    return sorted("build/tests/" + f[:-2] for f in os.listdir(os.path.join(tree, "tests/unit"))
                  if f.startswith("test_") and f.endswith(".c"))


def run_unit(tree, t, log):
    """True if the unit test @t failed (or hung)."""
    try:
        r = subprocess.run([os.path.join(tree, "build/tests", t)], cwd=tree,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=UNIT_TIMEOUT)
    except subprocess.TimeoutExpired:
        log.write(b"%s: timed out\n" % t.encode())
        return True
    log.write(r.stdout)
    return r.returncode != 0


def run_e2e(tree, name, log):
    wrap = shlex.split(os.environ.get("MUTATE_E2E_WRAP", ""))
    env = dict(os.environ, E2E_ONLY=name, KHYVE_BUILD=os.path.join(tree, "build"))
    try:
        r = subprocess.run(wrap + ["python3", os.path.join(tree, "tests/e2e/run.py")], cwd=tree,
                           env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=E2E_TIMEOUT)
    except subprocess.TimeoutExpired:
        log.write(b"e2e %s: timed out\n" % name.encode())
        return True
    log.write(r.stdout)
    return r.returncode != 0 or b" 1 passed" not in r.stdout


def try_mutant(tree, m, smoke, log, broken):
    """'killed by X', 'survived' or 'error: ...'.  Tests in @broken fail unmutated: not run."""
    path = os.path.join(tree, m["file"])
    orig = open(path).read()
    n = orig.count(m["find"])
    if n != 1:
        return "error: the text to replace occurs %d times in %s" % (n, m["file"])
    open(path, "w").write(orig.replace(m["find"], m["replace"]))
    try:
        first = [t for t in m["unit"] if t not in broken]
        if not make(tree, ["build/tests/" + t for t in first], log):
            return "error: does not build"
        for t in first:
            if run_unit(tree, t, log):
                return "killed by " + t
        if smoke:
            return "survived"
        if not make(tree, unit_targets(tree), log):
            return "error: does not build"
        for t in unit_targets(tree):
            t = os.path.basename(t)
            if t not in first and t not in broken and run_unit(tree, t, log):
                return "killed by " + t
        if m["e2e"]:
            if not make(tree, ["all"], log):
                return "error: does not build"
            for e in m["e2e"]:
                if run_e2e(tree, e, log):
                    return "killed by e2e " + e
        return "survived"
    finally:
        open(path, "w").write(orig)
        # A new mtime, so the next build compiles the original again.
        os.utime(path)


def main(argv):
    smoke = "--smoke" in argv
    names = [a for a in argv if not a.startswith("--")]
    muts = load(os.path.join(HERE, "mutants.ini"))
    if names:
        muts = [m for m in muts if m["name"] in names]
    elif smoke:
        muts = [m for m in muts if m["smoke"]]
    d, tree = scratch_copy()
    logpath = os.path.join(d, "mutate.log")
    print("mutate: %d mutants, scratch tree %s, log %s" % (len(muts), tree, logpath), flush=True)
    counts = {"killed": 0, "survived": 0, "error": 0}
    t0 = time.time()
    with open(logpath, "ab") as log:
        if not make(tree, ["all"] + unit_targets(tree), log):
            print("mutate: the unmutated tree does not build (see %s)" % logpath)
            return 2
        # A test that fails on the unmutated tree proves nothing: leave it out, loudly.
        wanted = set(t for m in muts for t in m["unit"]) if smoke else None
        broken = set()
        for t in unit_targets(tree):
            t = os.path.basename(t)
            if (wanted is None or t in wanted) and run_unit(tree, t, log):
                broken.add(t)
        if broken:
            print("mutate: WARNING: %s fail(s) without any mutant; not used"
                  % ", ".join(sorted(broken)), flush=True)
        for m in muts:
            log.write(b"\n==== mutant %s\n" % m["name"].encode())
            t = time.time()
            res = try_mutant(tree, m, smoke, log, broken)
            log.flush()
            counts[res.split()[0].rstrip(":")] += 1
            print("  %-28s %-40s (%.0fs) %s" % (m["name"], res, time.time() - t, m["file"]),
                  flush=True)
            if not res.startswith("killed"):
                print("    %s" % m["why"], flush=True)
    total = counts["killed"] + counts["survived"]
    print("mutate: %d killed, %d survived, %d errors; score %d/%d = %.0f%% (%.0f s)"
          % (counts["killed"], counts["survived"], counts["error"], counts["killed"], total,
             100.0 * counts["killed"] / total if total else 0, time.time() - t0))
    clean = counts["survived"] == 0 and counts["error"] == 0
    if clean and not os.environ.get("MUTATE_DIR"):
        shutil.rmtree(d, ignore_errors=True)
    elif not clean:
        print("mutate: the scratch tree and its log stay in %s" % d)
    return 0 if clean and not broken else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
