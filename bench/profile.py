"""Sampling profiles of a running process during one phase of a bench, with py-spy.

py-spy is not a dependency of the project: the bench looks for it on PATH (or at
$PY_SPY) and, without it, records that no profile was taken. It writes collapsed stacks
("raw" format), and `summary` turns them into the table of the functions that hold the
most samples, self and inclusive, that goes into a note.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path


def py_spy() -> str | None:
    return os.environ.get("PY_SPY") or shutil.which("py-spy")


@contextlib.contextmanager
def profiled(pid: int | None, out: Path | None, rate: int = 250) -> Iterator[Path | None]:
    """Samples `pid` (threads' idle time left out) while the block runs; yields the path
    of the collapsed stacks, or None when no profile is taken."""
    exe = py_spy()
    if out is None or pid is None or exe is None:
        yield None
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [exe, "record", "--pid", str(pid), "--rate", str(rate), "--format", "raw",
         "--output", str(out), "--nonblocking"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        yield out
    finally:
        # py-spy writes its file on SIGINT, as after Ctrl-C.
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


_LINE = re.compile(r":\d+\)$")


def _counts(path: Path, lines: bool = True) -> tuple[Counter[str], Counter[str], int]:
    """Samples per frame, as the innermost frame (self) and anywhere on the stack; with
    lines=False, per function ("f (file.py)": the line numbers py-spy adds dropped)."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    if not path.exists():  # py-spy stopped before it attached: no samples
        return own, inclusive, 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        if not lines:
            frames = [_LINE.sub(")", f) for f in frames]
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    return own, inclusive, total


def summary(path: Path, top: int = 25, by: str = "inclusive") -> list[tuple[str, float, float]]:
    """(function, self share, inclusive share) of the `top` functions by inclusive share
    (or by self share with by="self")."""
    own, inclusive, total = _counts(path)
    if not total:
        return []
    ranked = (own if by == "self" else inclusive).most_common(top)
    return [(f, own[f] / total, inclusive[f] / total) for f, _ in ranked]


# Frames of this project's packages (py-spy names files relative to sys.path).
OUR_PACKAGES = ("homeserver/", "federation/", "e2ee/", "storage/")
# Frames on (nearly) every request's stack, not work of their own: start-up, and the
# route wrapper and middleware every handler runs in (their own cost shows as self).
_PLUMBING = (
    "homeserver/cli.py",
    "homeserver/__main__.py",
    "homeserver/http/routes.py",
    "homeserver/http/middleware.py",
)


def tables(path: Path, top: int = 15) -> dict:
    """What a result keeps of one profile: its sample count, the `top` functions by
    inclusive share (summary's order), by self share, and this project's own functions by
    inclusive share (start-up, route wrapper and middleware left out), each as
    [function, self share, inclusive share], per function (line numbers dropped)."""
    own, inclusive, total = _counts(path, lines=False)

    def rows(names: list[str]) -> list[list]:
        return [[f, round(own[f] / total, 4), round(inclusive[f] / total, 4)] for f in names]

    if not total:
        return {"samples": 0, "top": [], "top_self": [], "top_ours": []}
    ours = [
        f
        for f, _ in inclusive.most_common()
        if f.split(" (", 1)[-1].startswith(OUR_PACKAGES)
        and not f.split(" (", 1)[-1].startswith(_PLUMBING)
    ]
    return {
        "samples": total,
        "top": rows([f for f, _ in inclusive.most_common(top)]),
        "top_self": rows([f for f, _ in own.most_common(top)]),
        "top_ours": rows(ours[:top]),
    }
