"""The sliding window of unread verdicts (homeserver.sync.unread): counts per thread
follow the events that stay in the window."""

from __future__ import annotations

from homeserver.sync import unread


def _slid(windows, rows, codes, by_thread=True):
    unread._slide(windows, rows, codes, by_thread)
    return windows


def test_thread_counts_follow_the_window(monkeypatch):
    monkeypatch.setattr(unread, "MAX_UNREAD", 3)
    notify, mention = unread._NOTIFIES, unread._NOTIFIES | unread._HIGHLIGHTS
    windows = {"!r": (b"", None)}
    rows = [("!r", "$1", None), ("!r", "$2", "$root"), ("!r", "$3", None)]
    _slid(windows, rows, [notify, mention, 0])
    counts = unread._window_counts(*windows["!r"])
    assert counts.main == {"notification_count": 1, "highlight_count": 0}
    assert counts.threads == {"$root": {"notification_count": 1, "highlight_count": 1}}
    # Two more: $1 and the thread's mention leave the window.
    _slid(windows, [("!r", "$4", None), ("!r", "$5", None)], [notify, notify])
    window, threads = windows["!r"]
    assert (window, threads) == (bytes([0, notify, notify]), None)
    counts = unread._window_counts(window, threads)
    assert (counts.main["notification_count"], counts.threads) == (2, {})


def test_without_threads_no_thread_roots_are_kept():
    windows = {"!r": (b"", None)}
    _slid(windows, [("!r", "$1", "$root")], [unread._NOTIFIES], by_thread=False)
    assert windows["!r"] == (bytes([unread._NOTIFIES]), None)
    assert unread._window_counts(*windows["!r"]).main["notification_count"] == 1
