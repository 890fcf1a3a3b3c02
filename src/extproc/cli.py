"""The `extproc` command line: one subcommand per process kind (serve, sim, local, xds)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from extproc import __version__

# Each subcommand module exposes `register(subparsers)`, which adds its parser and sets
# `handler` (argparse.Namespace -> exit code) as a default. Imports are lazy so that
# `extproc sim` does not pay for gRPC and `extproc serve` does not pay for the simulator.
Handler = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="extproc",
        description="Endpoint picker for LLM inference gateways (Envoy ext_proc).",
    )
    parser.add_argument("--version", action="version", version=f"extproc {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    from extproc.local import register as register_local
    from extproc.serve_cli import register as register_serve
    from extproc.sim.cli import register as register_sim
    from extproc.xds.cli import register as register_xds

    register_serve(sub)
    register_sim(sub)
    register_local(sub)
    register_xds(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
