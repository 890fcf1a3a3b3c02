"""Supervised child processes: start, wait for a readiness line, stop with a deadline."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import IO


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (the caller binds it soon after)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


class ProcessError(RuntimeError):
    """A child process failed to start or exited early; carries its last output lines."""


class ManagedProcess:
    """A child process whose output is copied to a log file and kept for inspection.

    The child gets its own process group so that stopping it also stops anything it spawned,
    and it is never left behind: `stop()` sends SIGTERM, waits, then SIGKILLs.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path | None = None,
        env: dict[str, str] | None = None,
        echo: bool = False,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self._lines: deque[str] = deque(maxlen=2000)
        self._cond = threading.Condition()
        self._log: IO[str] | None = log_path.open("a", encoding="utf-8") if log_path else None
        self._echo = echo
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
            text=True,
            bufsize=1,
        )
        self._pump = threading.Thread(target=self._read, name=f"{name}-output", daemon=True)
        self._pump.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.rstrip("\n")
            with self._cond:
                self._lines.append(line)
                self._cond.notify_all()
            if self._log is not None:
                self._log.write(line + "\n")
                self._log.flush()
            if self._echo:
                sys.stderr.write(f"[{self.name}] {line}\n")
        with self._cond:
            self._cond.notify_all()

    def wait_for(self, pattern: str, timeout: float) -> re.Match[str]:
        """Wait until an output line matches `pattern`; raise ProcessError on exit or timeout."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        seen = 0
        with self._cond:
            while True:
                lines = list(self._lines)
                for line in lines[seen:]:
                    match = regex.search(line)
                    if match:
                        return match
                seen = len(lines)
                if self.proc.poll() is not None and not self._pump.is_alive():
                    raise ProcessError(
                        f"{self.name} exited with {self.proc.returncode}:\n{self.tail()}"
                    )
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise ProcessError(f"{self.name} not ready after {timeout}s:\n{self.tail()}")
                self._cond.wait(min(remaining, 0.2))

    def lines_matching(self, pattern: str) -> list[re.Match[str]]:
        regex = re.compile(pattern)
        with self._cond:
            return [m for line in self._lines if (m := regex.search(line))]

    def tail(self, n: int = 40) -> str:
        with self._cond:
            return "\n".join(list(self._lines)[-n:])

    def output(self) -> str:
        with self._cond:
            return "\n".join(self._lines)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            os.killpg(self.proc.pid, sig)

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, wait up to `timeout`, then SIGKILL; return the exit code."""
        if self.alive():
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
            except ProcessLookupError:
                pass
        self._pump.join(2)
        if self._log is not None:
            self._log.close()
            self._log = None
        return self.proc.returncode
