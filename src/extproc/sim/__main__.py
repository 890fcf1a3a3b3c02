"""``python -m extproc.sim``: the ``extproc sim`` command without the rest of the CLI."""

from __future__ import annotations

import argparse
import sys

from extproc.sim.cli import add_arguments, run


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m extproc.sim", description=__doc__)
    add_arguments(parser)
    parser.set_defaults(sim_parser=parser)
    return run(parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())
