"""`extproc local`: simulated vLLM pods, the picker and Envoy on this machine, until Ctrl-C."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from extproc.cli_common import int_at_least, port_number, positive_number
from extproc.envoyconf.bootstrap import CircuitBreaker
from extproc.stack.process import free_port, port_is_free
from extproc.stack.stack import SCENARIO_MODEL, LocalStack, StackConfig

DEFAULT_PORT = 8081
SCENARIO_BODY = {
    "model": SCENARIO_MODEL,
    "max_completion_tokens": 100,
    "temperature": 0,
    "messages": [{"role": "user", "content": "introduce yourself"}],
}


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "local", help="run simulated pods, the picker and Envoy locally (make run)",
        description="Bring up the circuit-breaker scenario on this machine with a real Envoy.",
    )  # fmt: skip
    p.add_argument(
        "--port",
        type=port_number,
        default=DEFAULT_PORT,
        help="Envoy listener port; a free one is used if it is busy (default: %(default)s)",
    )
    p.add_argument(
        "--pods", type=int_at_least(1), default=2, help="simulated vLLM pods (default: %(default)s)"
    )
    p.add_argument(
        "--speed",
        type=positive_number,
        default=1.0,
        help="simulated time speed-up; 1 is real time (default: %(default)s)",
    )
    p.add_argument(
        "--max-requests",
        type=int_at_least(0),
        default=1,
        help="circuit breaker: parallel requests to the pool (default: %(default)s)",
    )
    p.add_argument(
        "--max-pending-requests",
        type=int_at_least(0),
        default=1,
        help="circuit breaker: pending requests (default: %(default)s)",
    )
    p.add_argument(
        "--body-mode",
        choices=("BUFFERED", "FULL_DUPLEX_STREAMED"),
        default="BUFFERED",
        help="ext_proc request body mode (default: %(default)s)",
    )
    p.add_argument("--logs", action="store_true", help="echo the children's logs to stderr")
    p.add_argument(
        "--log-dir",
        type=Path,
        metavar="DIR",
        help="keep sim.log, picker.log and envoy.log here (default: a temporary "
        "directory removed on exit)",
    )
    p.set_defaults(handler=_run)  # fmt: skip


def curl_command(url: str) -> str:
    body = json.dumps(SCENARIO_BODY)
    return (
        f"curl -sS -i {url}/v1/chat/completions -H 'host: example.com' "
        f"-H 'content-type: application/json' -d '{body}'"
    )


def _run(args: argparse.Namespace) -> int:
    port = args.port if port_is_free(args.port) else free_port()
    if port != args.port:
        print(f"port {args.port} is busy; using {port}", flush=True)
    config = StackConfig(
        pods=args.pods,
        speed=args.speed,
        listen_port=port,
        body_mode=args.body_mode,
        breaker=CircuitBreaker(
            max_requests=args.max_requests, max_pending_requests=args.max_pending_requests
        ),
        echo=args.logs,
        log_dir=args.log_dir,
    )
    if args.log_dir is not None:
        try:
            args.log_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            print(f"extproc local: --log-dir {args.log_dir}: {exc.strerror}", file=sys.stderr)
            return 2
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    print(f"starting {args.pods} simulated vLLM pods, the picker and Envoy ...", flush=True)
    with LocalStack(config) as stack:
        pods = ", ".join(f"{e.name}={e.address}" for e in stack.endpoints)
        print(
            f"\nEnvoy is listening on {stack.url}\n"
            f"  pods: {pods}\n"
            f"  picker metrics: {stack.metrics_url}\n"
            f"  Envoy admin: {stack.admin_url}\n"
            f"  logs: {stack.log_dir}"
            f"{'' if args.log_dir else ' (removed on exit; --log-dir DIR keeps them)'}\n"
            f"  circuit breaker: max_requests={args.max_requests} "
            f"max_pending_requests={args.max_pending_requests}\n\n"
            "Send the scenario's request (run it in two terminals at once to see the breaker):\n\n"
            f"  {curl_command(stack.url)}\n\n"
            "Press Ctrl-C to stop.",
            flush=True,
        )
        while not stop.wait(0.5):
            for proc in (stack.sim, stack.picker, stack.envoy):
                if proc is not None and not proc.alive():
                    print(f"{proc.name} exited unexpectedly:\n{proc.tail()}", flush=True)
                    return 1
        print("stopping ...", flush=True)
    print("stopped", flush=True)
    return 0
