"""``extproc sim``: run N simulated vLLM pods in one process until SIGINT/SIGTERM.

Once every pod listens, stdout gets one ``pod=sim-<i> address=<ip>:<port>`` line per pod and
then ``ready`` (flushed), so a parent process can read the actual ports (``--base-port 0``).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import math
import signal
import sys
from typing import Any, TextIO

from extproc import logs
from extproc.cli_common import int_at_least, port_number, positive_number
from extproc.sim.cluster import SimCluster
from extproc.sim.config import (
    DEFAULT_HOST,
    DEFAULT_MAX_LORAS,
    DEFAULT_MODEL,
    DEFAULT_SHUTDOWN_TIMEOUT_S,
    DEFAULT_SPEED,
    SimConfig,
)
from extproc.sim.faults import DEFAULT_ERROR_STATUS, FaultConfig
from extproc.sim.profiles import DEFAULT_PROFILE, PROFILES, get_profile

log = logs.get_logger(__name__)

DEFAULT_BASE_PORT = 8000


def _float_in(low: float, high: float | None) -> Any:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if math.isnan(value) or value < low or (high is not None and value > high):
            bound = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise argparse.ArgumentTypeError(f"must be {bound}, got {text}")
        return value

    return parse


def register(subparsers: Any) -> None:
    """Add the ``sim`` subcommand to ``subparsers`` (argparse subparsers action)."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "sim",
        help="run simulated vLLM pods",
        description="Run N simulated vLLM pods (OpenAI API, /metrics, /health) in one process.",
    )
    add_arguments(parser)
    parser.set_defaults(handler=run, sim_parser=parser)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The simulator's flags, shared by ``extproc sim`` and ``python -m extproc.sim``."""
    pods = parser.add_argument_group("pods")
    pods.add_argument("--pods", type=int_at_least(1), default=1, help="number of pods (default 1)")
    pods.add_argument(
        "--base-port", type=port_number, default=DEFAULT_BASE_PORT,
        help=f"port of pod 0; pod i gets base+i; 0 picks free ports (default {DEFAULT_BASE_PORT})",
    )  # fmt: skip
    pods.add_argument("--host", default=DEFAULT_HOST, help=f"listen address ({DEFAULT_HOST})")
    pods.add_argument("--model", default=DEFAULT_MODEL, help=f"base model name ({DEFAULT_MODEL})")
    pods.add_argument(
        "--lora", action="extend", nargs="+", default=[], metavar="NAME",
        help="serve LoRA adapters with these names (repeatable: --lora a b --lora c)",
    )  # fmt: skip
    pods.add_argument("--max-loras", type=int_at_least(1), default=DEFAULT_MAX_LORAS)
    pods.add_argument("--seed", type=int, default=0, help="random seed (pod i uses seed+i)")
    pods.add_argument(
        "--speed", type=positive_number, default=DEFAULT_SPEED,
        help="simulated seconds per wall second (10 = ten times faster than real time)",
    )  # fmt: skip
    pods.add_argument("--profile", choices=sorted(PROFILES), default=DEFAULT_PROFILE)
    pods.add_argument(
        "--legacy-metrics", action="store_true",
        help="export vllm:gpu_cache_usage_perc instead of vllm:kv_cache_usage_perc",
    )  # fmt: skip
    pods.add_argument(
        "--shutdown-timeout", type=_float_in(0.0, None), default=DEFAULT_SHUTDOWN_TIMEOUT_S,
        help="seconds in-flight requests get to finish on SIGTERM",
    )  # fmt: skip
    pods.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    engine = parser.add_argument_group("engine (override the profile)")
    for flag in ("num-gpu-blocks", "max-num-seqs", "max-num-batched-tokens", "max-model-len"):
        engine.add_argument(f"--{flag}", type=int_at_least(1), default=None)
    faults = parser.add_argument_group("fault injection (changeable via POST /admin/faults)")
    faults.add_argument(
        "--fault-error-rate", type=_float_in(0.0, 1.0), default=0.0,
        help="fraction of inference requests answered with an error",
    )  # fmt: skip
    faults.add_argument(
        "--fault-error-status", type=int, default=DEFAULT_ERROR_STATUS, choices=range(500, 600),
        metavar="5XX", help=f"status of injected errors (default {DEFAULT_ERROR_STATUS})",
    )  # fmt: skip
    faults.add_argument(
        "--fault-latency-ms", type=_float_in(0.0, None), default=0.0,
        help="wall-clock delay added before every inference request",
    )  # fmt: skip
    faults.add_argument(
        "--fault-stall", action="store_true", help="accept inference requests, never answer"
    )


def config_from_args(args: argparse.Namespace) -> SimConfig:
    """Build the SimConfig; ValueError says which setting is wrong."""
    profile = get_profile(args.profile)
    overrides = {
        name: getattr(args, name)
        for name in ("num_gpu_blocks", "max_num_seqs", "max_num_batched_tokens", "max_model_len")
        if getattr(args, name) is not None
    }
    return SimConfig(
        pods=args.pods,
        host=args.host,
        base_port=args.base_port,
        model=args.model,
        loras=tuple(dict.fromkeys(args.lora)),
        max_loras=args.max_loras,
        seed=args.seed,
        speed=args.speed,
        profile=dataclasses.replace(profile, **overrides),
        legacy_metrics=args.legacy_metrics,
        faults=FaultConfig(
            error_rate=args.fault_error_rate,
            error_status=args.fault_error_status,
            latency_ms=args.fault_latency_ms,
            stall=args.fault_stall,
        ),
        shutdown_timeout_s=args.shutdown_timeout,
    )


def run(args: argparse.Namespace) -> int:
    """The ``sim`` handler: serve until SIGINT/SIGTERM, then shut down; 0 on a clean stop."""
    try:
        config = config_from_args(args)
    except ValueError as exc:
        args.sim_parser.error(str(exc))  # exits with status 2
    logs.configure(args.verbose)
    return asyncio.run(serve(config))


async def serve(config: SimConfig, out: TextIO = sys.stdout) -> int:
    """Run the cluster until a signal; prints the address lines and ``ready`` to ``out``."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    cluster = SimCluster(config)
    try:
        try:
            await cluster.start()
        except OSError as exc:
            log.error("listen_failed", host=config.host, base_port=config.base_port, error=exc)
            return 1
        for pod in cluster.pods:
            out.write(f"pod={pod.name} address={pod.address}\n")
        out.write("ready\n")
        out.flush()
        await stop.wait()
        log.info("shutting_down", pods=len(cluster.pods))
        await cluster.stop()
        return 0
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
