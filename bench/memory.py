"""Resident memory of a server process tree, sampled from outside with psutil.

A server is measured as its process plus its children (Synapse may fork
workers; ours does not), never PostgreSQL, which both share.
"""

from __future__ import annotations

import threading

import psutil


def tree_rss(pid: int) -> int | None:
    """Bytes resident in the process and its descendants; None once it is gone."""
    try:
        proc = psutil.Process(pid)
        total = proc.memory_info().rss
        for child in proc.children(recursive=True):
            try:
                total += child.memory_info().rss
            except psutil.NoSuchProcess:
                pass
        return total
    except psutil.NoSuchProcess:
        return None


class PeakSampler:
    """Polls tree_rss in a thread while a scenario runs, keeping the peak.

    A thread, not a task: the load generator's event loop is busy exactly when
    the server's memory is interesting.
    """

    def __init__(self, pid: int, interval: float = 0.25):
        self.pid = pid
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"rss-{pid}", daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            rss = tree_rss(self.pid)
            if rss is not None:
                self.peak = max(self.peak, rss)
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def mib(nbytes: int | None) -> float | None:
    return None if nbytes is None else nbytes / (1024 * 1024)
