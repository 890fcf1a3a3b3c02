"""Structured key=value logging on top of the standard library.

Usage: ``log = get_logger(__name__)`` then ``log.info("scheduled", endpoint=ep, model=m)``.
Event names are constants; values are formatted once, only when the level is enabled.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

_RESERVED = frozenset({"exc_info", "stack_info", "stacklevel"})


def _format_value(value: object) -> str:
    text = str(value)
    if text == "" or any(c in text for c in ' ="\n'):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return text


class KeyValueFormatter(logging.Formatter):
    """Formats records as ``ts=… level=… logger=… event=… k=v …``."""

    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        parts = [
            f"ts={ts}.{int(record.msecs):03d}Z",
            f"level={record.levelname.lower()}",
            f"logger={record.name}",
            f"event={_format_value(record.getMessage())}",
        ]
        fields: dict[str, Any] | None = getattr(record, "kv", None)
        if fields:
            parts.extend(f"{k}={_format_value(v)}" for k, v in fields.items())
        if record.exc_info:
            parts.append(f"exc={_format_value(self.formatException(record.exc_info))}")
        return " ".join(parts)


class KeyValueLogger:
    """A thin wrapper that turns keyword arguments into structured fields."""

    __slots__ = ("_logger",)

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger

    def is_enabled(self, level: int) -> bool:
        return self._logger.isEnabledFor(level)

    def _log(self, level: int, event: str, kw: dict[str, Any]) -> None:
        if not self._logger.isEnabledFor(level):
            return
        exc_info = kw.pop("exc_info", None)
        fields = {k: v for k, v in kw.items() if k not in _RESERVED}
        self._logger.log(level, event, extra={"kv": fields}, exc_info=exc_info, stacklevel=3)

    def debug(self, event: str, **kw: Any) -> None:
        self._log(logging.DEBUG, event, kw)

    def info(self, event: str, **kw: Any) -> None:
        self._log(logging.INFO, event, kw)

    def warning(self, event: str, **kw: Any) -> None:
        self._log(logging.WARNING, event, kw)

    def error(self, event: str, **kw: Any) -> None:
        self._log(logging.ERROR, event, kw)


def get_logger(name: str) -> KeyValueLogger:
    return KeyValueLogger(logging.getLogger(name))


def configure(verbosity: int = 0) -> None:
    """Configure the root logger once, from the composition root (never at import time)."""
    level = logging.WARNING if verbosity < 0 else logging.INFO if verbosity == 0 else logging.DEBUG
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(KeyValueFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiohttp's access log is per request; keep it out of the default output.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
