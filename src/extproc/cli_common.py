"""Pieces every subcommand shares: argument types and running until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import math
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

from extproc.errors import ConfigError


def port_number(text: str) -> int:
    """argparse type: a TCP port, 0 meaning "pick a free one"."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be between 0 and 65535, got {value}")
    return value


def int_at_least(low: int) -> Callable[[str], int]:
    """argparse type: an integer ≥ `low`."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        return value

    return parse


def _finite(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return value


def non_negative_number(text: str) -> float:
    """argparse type: a finite number ≥ 0."""
    value = _finite(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be ≥ 0, got {text}")
    return value


def positive_number(text: str) -> float:
    """argparse type: a finite number greater than 0."""
    value = _finite(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {text}")
    return value


def add_verbose_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-v", "--verbose", type=int, nargs="?", const=1, default=0,
        help="log verbosity: 0 info, 1+ debug",
    )  # fmt: skip


def add_kubernetes_flags(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """The flags every Kubernetes-mode subcommand takes beside `--pool-name`."""
    group = parser.add_argument_group("Kubernetes (with --pool-name)")
    group.add_argument(
        "--pool-namespace",
        metavar="NS",
        help="the pool's namespace (default: this pod's namespace, else 'default')",
    )
    group.add_argument(
        "--kubeconfig",
        type=Path,
        metavar="FILE",
        help="kubeconfig file (default: in-cluster config, else ~/.kube/config)",
    )
    return group


def run_until_signalled(run: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run `run(stop)` in a fresh event loop; SIGINT and SIGTERM set `stop`."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run(stop)

    asyncio.run(main())


def serve_until_signalled(command: str, run: Callable[[asyncio.Event], Awaitable[None]]) -> int:
    """`run_until_signalled`, with what can only fail once serving starts as one line on
    stderr instead of a traceback: a configuration error found then (TLS files: exit 2), a
    port that cannot be bound (in use, or an address not on this host: exit 1)."""
    try:
        run_until_signalled(run)
    except ConfigError as exc:
        print(f"{command}: configuration error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"{command}: cannot serve: {exc}", file=sys.stderr)
        return 1
    except RuntimeError as exc:
        if not str(exc).startswith("Failed to bind"):  # grpcio's bind failure; others are bugs
            raise
        print(f"{command}: cannot serve: {exc}", file=sys.stderr)
        return 1
    return 0
