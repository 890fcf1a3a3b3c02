"""Noticing that a configuration file changed, without inotify.

The file's (mtime, size, inode) is compared on every poll: it works on every filesystem, with
editors that replace the file, and with Kubernetes ConfigMap volumes (which swap a symlink).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable
from pathlib import Path

from extproc.config.static import StaticConfig, load_static_config
from extproc.errors import ConfigError
from extproc.logs import get_logger

log = get_logger(__name__)

DEFAULT_POLL_INTERVAL = 1.0
StatKey = tuple[int, int, int, int]


class FileChanges:
    """`changed()` is true once per modification of `path` since the last call."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._seen = self._stat()

    def changed(self) -> bool:
        key = self._stat()
        if key is None or key == self._seen:
            return False
        self._seen = key
        return True

    def _stat(self) -> StatKey | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        # ctime too: a same-size rewrite whose mtime was set back (cp -p, rsync -t, touch -r)
        # or that landed within the mtime's granularity still changes it.
        return (st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino)


class StaticConfigReloader:
    """Re-read a static config file when it changes and hand the result to `apply`.

    An invalid file is logged with the reason (file, object, field) and the last good
    configuration stays in force; the loop keeps going after any failure.
    """

    def __init__(
        self,
        path: Path,
        apply: Callable[[StaticConfig], None],
        interval: float = DEFAULT_POLL_INTERVAL,
    ) -> None:
        self.changes = FileChanges(path)
        self.apply = apply
        self.interval = interval

    def poll(self) -> bool:
        """Reload if the file changed; return True when a new configuration was applied."""
        if not self.changes.changed():
            return False
        path = self.changes.path
        try:
            config = load_static_config(path)
        except ConfigError as exc:
            log.error("config_rejected", file=str(path), error=str(exc), kept="last good")
            return False
        self.apply(config)
        return True

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                self.poll()
            except Exception:  # keep watching whatever happens to one reload
                log.error("config_reload_failed", file=str(self.changes.path), exc_info=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval)
