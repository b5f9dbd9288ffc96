#!/usr/bin/env python3
"""Summarise a SyTest run: tap-summary.py OUTPREFIX  (reads OUTPREFIX.tap and OUTPREFIX.log).

TAP (stdout) gives each test's result by number; the log (stderr) gives
"tests/FILE.pl:" headers then "    Test N name..." so numbers map to files.
Groups by first path component under tests/ (directory, or single file).
Blacklisted tests (-B) that fail are counted as 'xfail', not 'failed';
blacklisted tests that pass count as passed (and in 'xpass').
"""

import collections
import re
import sys

prefix = sys.argv[1]
num2file, cur = {}, None
for line in open(prefix + ".log", errors="replace"):
    m = re.match(r"^(tests/\S+\.pl):\s*$", line)
    if m:
        cur = m.group(1)
        continue
    for m in re.finditer(r"Test (\d+) ", line):
        if line.lstrip().startswith("Test ") and cur:
            num2file.setdefault(int(m.group(1)), cur)
        break


def group(f):
    parts = f.split("/")
    return parts[1] if len(parts) > 2 else parts[1]


res = {}
plan = None
for line in open(prefix + ".tap", errors="replace"):
    m = re.match(r"^(ok|not ok) (\d+) (.*)$", line.rstrip("\n"))
    if m:
        ok, n, rest = m.group(1) == "ok", int(m.group(2)), m.group(3)
        if ok and "# skip" in rest:
            kind = "skipped"
        elif ok:
            kind = "passed"
        elif "# TODO expected fail" in rest:
            kind = "xfail"
        else:
            kind = "failed"
        res[n] = (kind, "# TODO passed but expected fail" in rest, rest)
    m = re.match(r"^1\.\.(\d+)$", line.strip())
    if m and not line.startswith(" "):
        plan = int(m.group(1))

tot = collections.Counter()
per = collections.defaultdict(collections.Counter)
for n, (kind, xpass, _) in res.items():
    g = group(num2file.get(n, "tests/?/?"))
    per[g][kind] += 1
    tot[kind] += 1
    if xpass:
        per[g]["xpass"] += 1
        tot["xpass"] += 1

cols = ["passed", "failed", "skipped", "xfail", "xpass"]
print(f"{'group':32s} " + " ".join(f"{c:>7s}" for c in cols))
for g in sorted(per):
    print(f"{g:32s} " + " ".join(f"{per[g][c]:7d}" for c in cols))
print(f"{'TOTAL':32s} " + " ".join(f"{tot[c]:7d}" for c in cols))
print(f"tests reported: {len(res)}  plan: {plan}")
if "-v" in sys.argv:
    for n, (kind, _, rest) in sorted(res.items()):
        if kind in ("failed", "xfail"):
            print(f"  {kind:7s} {n:4d} {num2file.get(n, '?')}: {rest}")
print(f"{tot['passed']} passed, {tot['failed']} failed, {tot['skipped']} skipped")
