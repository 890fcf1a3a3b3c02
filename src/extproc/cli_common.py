"""Pieces every subcommand shares: argument types and running until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path


def port_number(text: str) -> int:
    """argparse type: a TCP port, 0 meaning "pick a free one"."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be between 0 and 65535, got {value}")
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
