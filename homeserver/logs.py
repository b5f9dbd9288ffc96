"""The process's log format: one record is one line, whatever the request put in it.

Records carry request-derived text (paths, IDs, remote servers' answers). A CR or LF in
it would start a line that reads like a record of its own (log forging), so control
characters in the message are escaped, and the lines of a traceback are indented under a
marker that no record starts with.
"""

from __future__ import annotations

import logging
import re
import sys

from storage.availability import OutageWithoutTraceback

# Every C0 control but TAB, DEL, the Unicode line and paragraph separators, and lone
# surrogates (which the stream could not even encode).
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f\u2028\u2029\ud800-\udfff]")
CONTINUATION = "\n    | "


def _escape(match: re.Match[str]) -> str:
    return match.group().encode("unicode_escape").decode("ascii")


def escape_control(text: str) -> str:
    return _CONTROL.sub(_escape, text)


class OneLineFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        # Another handler may have cached its own (multi-line) rendering of the traceback.
        cached, record.exc_text = record.exc_text, None
        try:
            return super().format(record)
        finally:
            record.exc_text = cached

    def formatMessage(self, record: logging.LogRecord) -> str:
        return escape_control(super().formatMessage(record))

    def formatException(self, ei) -> str:
        return CONTINUATION.lstrip("\n") + super().formatException(ei).replace("\r", "\\r").replace(
            "\n", CONTINUATION
        )

    def formatStack(self, stack_info: str) -> str:
        return CONTINUATION.lstrip("\n") + stack_info.replace("\r", "\\r").replace(
            "\n", CONTINUATION
        )


def setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(OneLineFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(OutageWithoutTraceback())
    logging.basicConfig(level=level, handlers=[handler])
    # aiohttp's access log prints full URLs, query strings included (access tokens).
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
