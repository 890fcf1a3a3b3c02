"""Envoy direct vs Envoy + picker: added latency and throughput, short and long bodies.

Run: `make bench-overhead` (needs `wrk`; the target installs it with apt-get when missing).

The upstream is a second Envoy answering every request instantly with a fixed chat completion
(and `/metrics` with a small vLLM exposition, so the picker's scheduler has fresh metrics). Both
paths are measured in the same run, alternating, and each cell reports the median of its rounds.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.common import machine, markdown_table, process_cpu_seconds, replace_section
from extproc.endpoints import Endpoint
from extproc.envoyconf.bootstrap import CircuitBreaker
from extproc.stack.process import ManagedProcess, free_port
from extproc.stack.stack import LocalStack, StackConfig, envoy_binary

COMPLETION = json.dumps(
    {
        "id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": "/model/llama2",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"},
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 1, "total_tokens": 11},
    }
)  # fmt: skip
EXPOSITION = """\
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{model_name="/model/llama2"} 1.0
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{model_name="/model/llama2"} 0.0
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{model_name="/model/llama2"} 0.1
"""
GRPCIO_PATH = "Envoy + picker on grpcio"
LUA = """\
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Host"] = "example.com"
local f = io.open(os.getenv("BENCH_BODY"), "rb")
wrk.body = f:read("*a")
f:close()
"""


def backend_config(port: int, admin: int) -> str:
    def direct(prefix: str, body: str, content_type: str) -> dict[str, object]:
        return {
            "match": {"prefix": prefix},
            "direct_response": {"status": 200, "body": {"inline_string": body}},
            "response_headers_to_add": [
                {"header": {"key": "content-type", "value": content_type}},
                {"header": {"key": "x-inference-pod", "value": "instant"}},
            ],
        }

    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network."
        "http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "backend",
        "route_config": {
            "virtual_hosts": [
                {
                    "name": "backend",
                    "domains": ["*"],
                    "routes": [
                        direct("/metrics", EXPOSITION, "text/plain; version=0.0.4"),
                        direct("/", COMPLETION, "application/json"),
                    ],
                }
            ]
        },
        "http_filters": [
            {
                "name": "envoy.filters.http.router",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
                },
            }
        ],
    }
    config = {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
        "static_resources": {
            "listeners": [
                {
                    "name": "backend",
                    "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
                    "per_connection_buffer_limit_bytes": 4 * 1024 * 1024,
                    "filter_chains": [
                        {
                            "filters": [
                                {
                                    "name": "envoy.filters.network.http_connection_manager",
                                    "typed_config": hcm,
                                }
                            ]
                        }
                    ],
                }
            ]
        },
    }
    return json.dumps(config)


def make_body(size: int) -> bytes:
    base = {
        "model": "/model/llama2",
        "max_tokens": 16,
        "messages": [{"role": "user", "content": ""}],
    }
    pad = size - len(json.dumps(base))
    base["messages"][0]["content"] = "x" * max(pad, 0)  # type: ignore[index]
    return json.dumps(base).encode()


@dataclass
class Sample:
    rps: float
    p50_ms: float
    errors: int
    cpu_us_per_req: float | None


def run_wrk(
    url: str, body_file: Path, script: Path, conns: int, seconds: float
) -> tuple[float, float, int]:
    out = subprocess.run(
        ["wrk", "-t1", f"-c{conns}", f"-d{max(1, round(seconds))}s", "--latency", "-s", str(script), url + "/v1/chat/completions"],
        capture_output=True, text=True, check=True, env={"BENCH_BODY": str(body_file), "PATH": "/usr/bin:/bin"},
    ).stdout  # fmt: skip
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = re.search(r"50%\s+([\d.]+)(us|ms|s)", out)
    assert p50 is not None, out
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p50.group(2)]
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return rps, float(p50.group(1)) * scale, int(errors.group(1)) if errors else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of one wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per cell")
    parser.add_argument("--profile", default="default", help="picker scheduling profile")
    parser.add_argument("--quick", action="store_true", help="1 KB only, no BENCHMARKS.md update")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-overhead-"))
    script = work / "post.lua"
    script.write_text(LUA)
    bodies = {"1 KB": make_body(1024), "100 KB": make_body(100 * 1024)}
    if args.quick:
        del bodies["100 KB"]
    body_files = {}
    for name, data in bodies.items():
        body_files[name] = work / f"body-{len(data)}.json"
        body_files[name].write_bytes(data)

    port, admin = free_port(), free_port()
    (work / "backend.json").write_text(backend_config(port, admin))
    backend = ManagedProcess(
        "backend", [envoy_binary(), "-c", str(work / "backend.json"), "--concurrency", "1",
                    "--disable-hot-restart", "--log-level", "warn"], work / "backend.log",
    )  # fmt: skip
    time.sleep(1.0)
    upstream = Endpoint("instant", "127.0.0.1", port)
    common = {
        "pods": 0,
        "extra_endpoints": (upstream,),
        "breaker": CircuitBreaker(),
        "log_dir": work,
    }

    def picker_stack(body_mode: str, *extra: str) -> LocalStack:
        picker_args = ("--profile", args.profile, *extra)
        picker = StackConfig(picker_args=picker_args, body_mode=body_mode, **common)  # type: ignore[arg-type]
        return LocalStack(picker)

    stacks = {
        "Envoy direct": LocalStack(StackConfig(with_picker=False, **common)),  # type: ignore[arg-type]
        "Envoy + picker": picker_stack("BUFFERED"),
        "Envoy + picker, full-duplex": picker_stack("FULL_DUPLEX_STREAMED"),
        # The same picker on grpcio's grpc.aio server instead of the built-in HTTP/2 server.
        GRPCIO_PATH: picker_stack("BUFFERED", "--grpc-server", "grpcio"),
    }
    results: dict[tuple[str, str, int], list[Sample]] = {}
    try:
        for stack in stacks.values():
            stack.start()
        time.sleep(0.5)
        cells = [(b, c) for b in bodies for c in (1, 32)]
        for round_no in range(args.rounds):
            for body, conns in cells:
                for path, stack in stacks.items():
                    pid = stack.picker.proc.pid if stack.picker else None
                    cpu0 = process_cpu_seconds(pid) if pid else 0.0
                    rps, p50, errors = run_wrk(
                        stack.url, body_files[body], script, conns, args.seconds
                    )
                    cpu = None
                    if pid:
                        cpu = (process_cpu_seconds(pid) - cpu0) / max(rps * args.seconds, 1) * 1e6
                    results.setdefault((path, body, conns), []).append(
                        Sample(rps, p50, errors, cpu)
                    )
                    print(f"round {round_no + 1}/{args.rounds} {path:27} {body:6} c={conns:<3} "
                          f"{rps:8.0f} req/s  p50 {p50:6.2f} ms  errors {errors}", flush=True)  # fmt: skip
    finally:
        for stack in stacks.values():
            stack.stop()
        backend.stop()

    def med(path: str, body: str, conns: int, attr: str) -> float:
        values = [getattr(s, attr) for s in results[(path, body, conns)]]
        values = [v for v in values if v is not None]
        return statistics.median(values) if values else float("nan")

    rows = []
    for body in bodies:
        for conns in (1, 32):
            for path in stacks:
                cpu = med(path, body, conns, "cpu_us_per_req")
                rows.append([
                    path, body, conns, f"{med(path, body, conns, 'rps'):,.0f}",
                    f"{med(path, body, conns, 'p50_ms'):.2f}",
                    "–" if cpu != cpu else f"{cpu:,.0f}",
                    sum(s.errors for s in results[(path, body, conns)]),
                ])  # fmt: skip
    table = markdown_table(
        ["path", "body", "conc.", "req/s", "p50 ms", "picker CPU µs/req", "non-2xx"], rows
    )
    if args.quick:
        print("\n" + table)
        return 0
    added_p50 = med("Envoy + picker", "1 KB", 1, "p50_ms") - med(
        "Envoy direct", "1 KB", 1, "p50_ms"
    )
    ratio32 = med("Envoy + picker", "1 KB", 32, "rps") / med("Envoy direct", "1 KB", 32, "rps")
    fd = "Envoy + picker, full-duplex"
    fd_added = med(fd, "1 KB", 1, "p50_ms") - med("Envoy direct", "1 KB", 1, "p50_ms")
    fd_ratio32 = med(fd, "1 KB", 32, "rps") / med("Envoy direct", "1 KB", 32, "rps")
    long_ratio = med("Envoy + picker", "100 KB", 32, "rps") / med(
        "Envoy + picker", "1 KB", 32, "rps"
    )

    def spread(a: tuple[str, str], b: tuple[str, str]) -> str:
        """The throughput ratio a / b at concurrency 32 in each round (the noise on this VM)."""
        pairs = zip(results[(*a, 32)], results[(*b, 32)], strict=True)
        ratios = sorted(x.rps / y.rps for x, y in pairs)
        return f" (rounds {ratios[0]:.0%}–{ratios[-1]:.0%})" if len(ratios) > 1 else ""

    grpcio_added = med(GRPCIO_PATH, "1 KB", 1, "p50_ms") - med("Envoy direct", "1 KB", 1, "p50_ms")
    grpcio_ratio32 = med(GRPCIO_PATH, "1 KB", 32, "rps") / med("Envoy direct", "1 KB", 32, "rps")
    checks = markdown_table(
        ["target", "measured", "goal", "met"],
        [
            ["added p50 latency, 1 KB, conc. 1", f"{added_p50:.2f} ms", "≤ 1.0 ms",
             "yes" if added_p50 <= 1.0 else "no"],
            ["picker / direct throughput, 1 KB, conc. 32",
             f"{ratio32:.0%}" + spread(("Envoy + picker", "1 KB"), ("Envoy direct", "1 KB")), "≥ 25%",
             "yes" if ratio32 >= 0.25 else "no"],
            ["100 KB / 1 KB throughput with picker, conc. 32",
             f"{long_ratio:.0%}" + spread(("Envoy + picker", "100 KB"), ("Envoy + picker", "1 KB")),
             "≥ 50%",
             "yes" if long_ratio >= 0.5 else "no"],
            ["added p50 latency, full-duplex, 1 KB, conc. 1", f"{fd_added:.2f} ms", "≤ 1.0 ms",
             "yes" if fd_added <= 1.0 else "no"],
            ["picker / direct throughput, full-duplex, 1 KB, conc. 32", f"{fd_ratio32:.0%}",
             "≥ 25%", "yes" if fd_ratio32 >= 0.25 else "no"],
            ["diagnostic: added p50 latency on grpcio, 1 KB, conc. 1", f"{grpcio_added:.2f} ms",
             "–", "–"],
            ["diagnostic: picker on grpcio / direct throughput, 1 KB, conc. 32",
             f"{grpcio_ratio32:.0%}", "–", "–"],
        ],
    )  # fmt: skip
    print("\n" + table + "\n\n" + checks)
    replace_section(
        "Overhead (make bench-overhead)",
        f"Command: `make bench-overhead` (`python -m bench.overhead --seconds {args.seconds:g} "
        f"--rounds {args.rounds} --profile {args.profile}`), {time.strftime('%Y-%m-%d')}, "
        f"{machine()}.\n\nEnvoy 1.40 `--concurrency 2`, wrk 1 thread, an instant Envoy upstream; "
        f"picker profile `{args.profile}` (scheduler with fresh scraped metrics), served by the "
        "built-in HTTP/2 server unless the row says grpcio (`--grpc-server grpcio`). Medians of "
        f"{args.rounds} alternating rounds of {args.seconds:g} s.\n\n{table}\n\n{checks}\n\n"
        "Where the time goes, and the designs measured against these targets: "
        "`docs/performance.md`.\n",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
