"""`extproc xds`: flags of the xDS server process, mapped onto XdsConfig."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from extproc import logs
from extproc.cli_common import (
    add_kubernetes_flags,
    add_verbose_flag,
    port_number,
    serve_until_signalled,
)
from extproc.envoyconf.ads import CLUSTER_MODES, DEFAULT_XDS_PORT
from extproc.envoyconf.bootstrap import ROUTE_TIMEOUT_S
from extproc.errors import ConfigError
from extproc.k8s.settings import KubernetesSettings, default_namespace
from extproc.xds import DEFAULT_HOST, DEFAULT_METRICS_PORT, DEFAULT_POLL_INTERVAL


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "xds", help="serve the pool clusters and circuit breakers to Envoy over ADS",
        description="Aggregated Discovery Service (state of the world) for Envoy: the pool "
        "cluster(s) with thresholds from BackendTrafficPolicy, from a config file re-read on "
        "change or watched in Kubernetes.",
    )  # fmt: skip
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="static multi-document YAML: InferencePool, StaticEndpoints, BackendTrafficPolicy",
    )
    source.add_argument(
        "--pool-name",
        metavar="NAME",
        help="watch this InferencePool, its Ready pods and the BackendTrafficPolicies of its "
        "namespace in Kubernetes",
    )
    k8s = add_kubernetes_flags(p)
    k8s.add_argument(
        "--route-name",
        metavar="NAME",
        help="only policies on this HTTPRoute apply to the pool (default: any HTTPRoute of the "
        "namespace); policies on the InferencePool always apply and take precedence",
    )
    p.add_argument("--host", default=DEFAULT_HOST, help="bind address (default: %(default)s)")
    p.add_argument(
        "--port",
        type=port_number,
        default=DEFAULT_XDS_PORT,
        help="ADS gRPC port, 0 picks a free one (default: %(default)s)",
    )
    p.add_argument(
        "--metrics-port",
        type=port_number,
        default=DEFAULT_METRICS_PORT,
        help="Prometheus /metrics port, 0 picks a free one (default: %(default)s)",
    )
    p.add_argument(
        "--cluster-mode",
        choices=CLUSTER_MODES,
        default="pool",
        help="pool: one ORIGINAL_DST cluster, pool-wide thresholds; per-endpoint: one cluster "
        "per ip:port; fail-open: EDS + override_host (default: %(default)s)",
    )
    p.add_argument(
        "--route-timeout",
        type=int,
        default=ROUTE_TIMEOUT_S,
        metavar="SECONDS",
        help="upstream timeout of the route served to Envoy: the longest completion it waits "
        "for (default: %(default)s)",
    )
    p.add_argument(
        "--poll-interval",
        type=float,
        default=DEFAULT_POLL_INTERVAL,
        metavar="SECONDS",
        help="how often the config file is checked for changes, file mode only "
        "(default: %(default)s)",
    )
    add_verbose_flag(p)
    p.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from extproc.xds.app import XdsApp, XdsConfig  # gRPC and the Envoy messages: only here

    logs.configure(args.verbose)
    if not args.poll_interval > 0:
        print("extproc xds: --poll-interval must be positive", file=sys.stderr)
        return 2
    if not 1 <= args.route_timeout <= MAX_ROUTE_TIMEOUT_S:
        print(
            f"extproc xds: --route-timeout must be between 1 and {MAX_ROUTE_TIMEOUT_S} seconds",
            file=sys.stderr,
        )
        return 2
    try:
        kubernetes = kubernetes_settings(args)
    except UsageError as exc:
        print(f"extproc xds: {exc}", file=sys.stderr)
        return 2
    app = XdsApp(
        XdsConfig(
            config_file=args.config,
            kubernetes=kubernetes,
            route_name=args.route_name,
            host=args.host,
            port=args.port,
            metrics_port=args.metrics_port,
            route_timeout_s=args.route_timeout,
            cluster_mode=args.cluster_mode,
            poll_interval=args.poll_interval,
        )
    )
    try:
        app.load()
    except ConfigError as exc:
        print(f"extproc xds: configuration error: {exc}", file=sys.stderr)
        return 2

    return serve_until_signalled("extproc xds", app.run)


# Python's timedelta, which the route's Duration goes through, ends at 999,999,999 days.
MAX_ROUTE_TIMEOUT_S = 10**9 * 86400 - 1


class UsageError(Exception):
    """A flag combination argparse cannot reject on its own."""


def kubernetes_settings(args: argparse.Namespace) -> KubernetesSettings | None:
    """The Kubernetes source of `--pool-name` (no leader election: replicas serve alike)."""
    if args.pool_name is None:
        for flag, value in (
            ("--pool-namespace", args.pool_namespace), ("--kubeconfig", args.kubeconfig),
            ("--route-name", args.route_name),
        ):  # fmt: skip
            if value is not None:
                raise UsageError(f"{flag} needs --pool-name")
        return None
    return KubernetesSettings(
        pool_name=args.pool_name,
        namespace=args.pool_namespace or default_namespace(),
        kubeconfig=args.kubeconfig,
    )
