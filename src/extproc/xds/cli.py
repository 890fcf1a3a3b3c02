"""`extproc xds`: flags of the xDS server process, mapped onto XdsConfig."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from extproc import logs
from extproc.cli_common import add_verbose_flag, port_number, run_until_signalled
from extproc.envoyconf.ads import CLUSTER_MODES, DEFAULT_XDS_PORT
from extproc.errors import ConfigError
from extproc.xds import DEFAULT_HOST, DEFAULT_POLL_INTERVAL


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "xds", help="serve the pool clusters and circuit breakers to Envoy over ADS",
        description="Aggregated Discovery Service (state of the world) for Envoy: the pool "
        "cluster(s) with thresholds from BackendTrafficPolicy documents, re-read on change.",
    )  # fmt: skip
    p.add_argument(
        "--config",
        type=Path,
        required=True,
        metavar="FILE",
        help="static multi-document YAML: InferencePool, StaticEndpoints, BackendTrafficPolicy",
    )
    p.add_argument("--host", default=DEFAULT_HOST, help="bind address (default: %(default)s)")
    p.add_argument(
        "--port",
        type=port_number,
        default=DEFAULT_XDS_PORT,
        help="ADS gRPC port, 0 picks a free one (default: %(default)s)",
    )
    p.add_argument(
        "--cluster-mode",
        choices=CLUSTER_MODES,
        default="pool",
        help="pool: one ORIGINAL_DST cluster, pool-wide thresholds; per-endpoint: one cluster "
        "per ip:port; fail-open: EDS + override_host (default: %(default)s)",
    )
    p.add_argument(
        "--poll-interval",
        type=float,
        default=DEFAULT_POLL_INTERVAL,
        metavar="SECONDS",
        help="how often the config file is checked for changes (default: %(default)s)",
    )
    add_verbose_flag(p)
    p.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from extproc.xds.app import XdsApp, XdsConfig  # gRPC and the Envoy messages: only here

    logs.configure(args.verbose)
    if not args.poll_interval > 0:
        print("extproc xds: --poll-interval must be positive", file=sys.stderr)
        return 2
    app = XdsApp(
        XdsConfig(
            config_file=args.config,
            host=args.host,
            port=args.port,
            cluster_mode=args.cluster_mode,
            poll_interval=args.poll_interval,
        )
    )
    try:
        app.load()
    except ConfigError as exc:
        print(f"extproc xds: configuration error: {exc}", file=sys.stderr)
        return 2

    run_until_signalled(app.run)
    return 0
