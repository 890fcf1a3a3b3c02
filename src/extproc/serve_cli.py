"""`extproc serve`: flags of the picker process, mapped onto ServeConfig."""

from __future__ import annotations

import argparse
import os
import socket
import sys
import uuid
from pathlib import Path
from typing import Any

from extproc import logs
from extproc.app import (
    DEFAULT_DRAIN_SECONDS,
    DEFAULT_GRPC_PORT,
    DEFAULT_HEALTH_PORT,
    DEFAULT_METRICS_PORT,
    ServeConfig,
    serve,
)
from extproc.cli_common import (
    add_kubernetes_flags,
    add_verbose_flag,
    int_at_least,
    non_negative_number,
    port_number,
)
from extproc.config.reload import DEFAULT_POLL_INTERVAL
from extproc.k8s.settings import (
    DEFAULT_LEASE_DURATION_S,
    KubernetesSettings,
    LeaderElectionSettings,
    default_lease_name,
    default_namespace,
)
from extproc.scraper.engines import ENGINES
from extproc.scraper.manager import ScrapeConfig
from extproc.server.exchange import (
    BUFFERED,
    DEFAULT_MAX_BODY_BYTES,
    FULL_DUPLEX,
    ExchangeSettings,
)
from extproc.server.listeners import BUILTIN, GRPC_SERVERS

BODY_MODES = {"buffered": BUFFERED, "full-duplex-streamed": FULL_DUPLEX}


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "serve", help="run the ext_proc endpoint picker",
        description="Serve Envoy's ext_proc stream and pick an endpoint for every request.",
    )  # fmt: skip
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="static multi-document YAML: InferencePool, InferenceModels, StaticEndpoints",
    )
    source.add_argument(
        "--pool-name",
        metavar="NAME",
        help="watch this InferencePool, its Ready pods and InferenceModels in Kubernetes",
    )
    k8s = add_kubernetes_flags(p)
    k8s.add_argument(
        "--leader-election",
        type=_bool,
        nargs="?",
        const=True,
        default=None,
        metavar="BOOL",
        help="active-passive HA on a Lease: only the leader is ready and serves ext_proc "
        "(default: true with --pool-name)",
    )
    k8s.add_argument(
        "--lease-name",
        metavar="NAME",
        help="the coordination.k8s.io Lease (default: <pool-name>-epp-leader)",
    )
    k8s.add_argument(
        "--lease-duration",
        type=_duration,
        default=DEFAULT_LEASE_DURATION_S,
        metavar="SECONDS",
        help="a standby takes over this long after the leader's last renewal "
        "(default: %(default)s)",
    )
    tls = p.add_argument_group("TLS")
    tls.add_argument(
        "--secure-serving",
        type=_bool,
        nargs="?",
        const=True,
        default=None,
        metavar="BOOL",
        help="serve ext_proc over TLS (default: true with --pool-name, false with --config)",
    )
    tls.add_argument(
        "--cert-path",
        type=Path,
        metavar="DIR",
        help="tls.crt and tls.key in DIR, reloaded on change (default: a generated "
        "self-signed certificate)",
    )
    p.add_argument("--host", default="0.0.0.0", help="bind address (default: %(default)s)")
    p.add_argument(
        "--grpc-port",
        type=port_number,
        default=DEFAULT_GRPC_PORT,
        help="ext_proc gRPC port, 0 picks a free one (default: %(default)s)",
    )
    p.add_argument(
        "--grpc-server",
        choices=GRPC_SERVERS,
        default=BUILTIN,
        help="the ext_proc port's gRPC server: the built-in HTTP/2 server, or grpcio's "
        "grpc.aio (slower; a fallback) (default: %(default)s)",
    )
    p.add_argument(
        "--grpc-health-port",
        type=port_number,
        default=DEFAULT_HEALTH_PORT,
        help="gRPC health port (default: %(default)s)",
    )
    p.add_argument(
        "--metrics-port",
        type=port_number,
        default=DEFAULT_METRICS_PORT,
        help="Prometheus metrics port (default: %(default)s)",
    )
    p.add_argument(
        "--model-passthrough",
        action="store_true",
        help="route models without an InferenceModel unchanged instead of 404",
    )
    p.add_argument(
        "--default-body-mode",
        choices=sorted(BODY_MODES),
        default="buffered",
        help="request body mode assumed when Envoy does not announce one",
    )
    p.add_argument(
        "--config-poll-interval",
        type=non_negative_number,
        default=DEFAULT_POLL_INTERVAL,
        metavar="SECONDS",
        help="how often --config is checked for changes; an invalid edit is logged and the last "
        "good configuration stays; 0 disables reloading (default: %(default)s)",
    )
    p.add_argument(
        "--max-body-bytes",
        type=int,
        default=DEFAULT_MAX_BODY_BYTES,
        help="largest request body buffered in full-duplex mode (default: %(default)s)",
    )
    p.add_argument(
        "--clear-route-cache",
        action="store_true",
        help="ask Envoy to re-route after the destination is set "
        "(routes that pick a cluster per endpoint)",
    )
    p.add_argument(
        "--fallbacks",
        type=int_at_least(0),
        default=0,
        help="ordered fallback endpoints returned after the primary as a comma list (default: "
        "0); needs Envoy's override_host policy (envoy/envoy-ads-fail-open.yaml): an "
        "ORIGINAL_DST cluster cannot parse a list",
    )
    p.add_argument(
        "--drain-seconds",
        type=non_negative_number,
        default=DEFAULT_DRAIN_SECONDS,
        help="on shutdown, how long open streams may finish (default: %(default)s)",
    )
    p.add_argument(
        "--profile",
        default="default",
        metavar="NAME",
        help="scheduling: a shipped profile (default, reference-default, legacy-v0.3) "
        "or least-inflight (no metrics); overridden by --config-file",
    )
    p.add_argument(
        "--config-file",
        type=Path,
        metavar="FILE",
        help="EndpointPickerConfig YAML (plugins and scheduling profiles)",
    )
    p.add_argument(
        "--scheduling-profile",
        metavar="NAME",
        help="which schedulingProfile of the config to run (default: the first)",
    )
    p.add_argument(
        "--refresh-metrics-interval",
        type=_duration,
        default=0.05,
        metavar="SECONDS",
        help="how often each endpoint's /metrics is scraped (default: %(default)s)",
    )
    p.add_argument(
        "--metrics-staleness",
        type=_duration,
        default=1.0,
        metavar="SECONDS",
        help="older snapshots are stale and not picked while fresh ones exist "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--engine",
        choices=ENGINES,
        default="vllm",
        help="model server whose metric names to scrape: vLLM, SGLang, or TensorRT-LLM "
        "(trtllm-serve or Triton's backend) (default: %(default)s)",
    )
    p.add_argument(
        "--metrics-path",
        type=_metrics_path,
        default="/metrics",
        metavar="PATH",
        help="HTTP path of each endpoint's Prometheus page; trtllm-serve serves it at "
        "/prometheus/metrics (default: %(default)s)",
    )
    p.add_argument("--seed", type=int, default=None, help="seed for random tie-breaks")
    add_verbose_flag(p)
    p.set_defaults(handler=_run)


def _metrics_path(text: str) -> str:
    """An absolute URL path without spaces (it is put after the endpoint's host:port)."""
    if not text.startswith("/") or any(c.isspace() for c in text) or "#" in text:
        raise argparse.ArgumentTypeError(f"not an absolute URL path: {text!r}")
    return text


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("true", "1", "yes", "on"):
        return True
    if value in ("false", "0", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"{text!r} is not a boolean (true or false)")


def _identity() -> str:
    """Unique per process: the pod name (or host name) and a random suffix."""
    base = os.environ.get("POD_NAME") or socket.gethostname()
    return f"{base}_{uuid.uuid4().hex[:8]}"


class UsageError(Exception):
    """Flags that do not make sense together."""


def _kubernetes(args: argparse.Namespace) -> KubernetesSettings | None:
    if args.pool_name is None:
        for flag, value in (
            ("--pool-namespace", args.pool_namespace), ("--kubeconfig", args.kubeconfig),
            ("--lease-name", args.lease_name), ("--leader-election", args.leader_election),
        ):  # fmt: skip
            if value:
                raise UsageError(f"{flag} needs --pool-name")
        return None
    election = None
    if args.leader_election is not False:
        election = LeaderElectionSettings(
            lease_name=args.lease_name or default_lease_name(args.pool_name),
            identity=_identity(),
            lease_duration=args.lease_duration,
        )
    return KubernetesSettings(
        pool_name=args.pool_name,
        namespace=args.pool_namespace or default_namespace(),
        kubeconfig=args.kubeconfig,
        leader_election=election,
    )


def _secure_serving(args: argparse.Namespace) -> bool:
    if args.secure_serving is None:
        return args.pool_name is not None or args.cert_path is not None
    if args.cert_path is not None and not args.secure_serving:
        raise UsageError("--cert-path needs TLS: drop --secure-serving=false")
    return bool(args.secure_serving)


def _duration(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number of seconds")
    return value


def _run(args: argparse.Namespace) -> int:
    logs.configure(args.verbose)
    try:
        kubernetes = _kubernetes(args)
        secure_serving = _secure_serving(args)
    except UsageError as exc:
        print(f"extproc serve: error: {exc}", file=sys.stderr)
        return 2
    config = ServeConfig(
        host=args.host,
        grpc_port=args.grpc_port,
        grpc_health_port=args.grpc_health_port,
        metrics_port=args.metrics_port,
        static_config=args.config,
        config_poll_interval=args.config_poll_interval,
        exchange=ExchangeSettings(
            model_passthrough=args.model_passthrough,
            default_body_mode=BODY_MODES[args.default_body_mode],
            max_body_bytes=args.max_body_bytes,
            clear_route_cache=args.clear_route_cache,
        ),
        fallbacks=args.fallbacks,
        drain_seconds=args.drain_seconds,
        seed=args.seed,
        scheduler=args.config_file if args.config_file else args.profile,
        scheduling_profile=args.scheduling_profile,
        scrape=ScrapeConfig(
            interval=args.refresh_metrics_interval, engine=args.engine, path=args.metrics_path
        ),
        metrics_staleness=args.metrics_staleness,
        kubernetes=kubernetes,
        secure_serving=secure_serving,
        cert_path=args.cert_path,
        grpc_server=args.grpc_server,
    )
    return serve(config)
