"""Sampling profiles of a running process during one phase of a bench, with py-spy.

py-spy is not a dependency of the project: the bench looks for it on PATH (or at
$PY_SPY) and, without it, records that no profile was taken. It writes collapsed stacks
("raw" format), and `summary` turns them into the table of the functions that hold the
most samples, self and inclusive, that goes into a note.
"""

from __future__ import annotations

import contextlib
import os
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


def summary(path: Path, top: int = 25) -> list[tuple[str, float, float]]:
    """(function, self share, inclusive share) of the `top` functions by inclusive share."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    if not total:
        return []
    return [(f, own[f] / total, n / total) for f, n in inclusive.most_common(top)]
