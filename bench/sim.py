"""Simulator fidelity under load: simulated vs achieved token rate, and the simulator's CPU.

``python -m bench.sim`` starts one simulator process (8 pods, speed 1) and one load-generator
process (256 concurrent streaming chat requests, 32 per pod, closed loop). After a warm-up it
measures a window and compares:

- simulated token rate: what the engine model says it produced per simulated second
  (tokens generated / modelled step time, summed over pods, from ``/admin/state``);
- achieved token rate: streamed tokens the clients received per simulated second.

If the simulator's event loop cannot keep up, steps finish later than the model says and the
achieved rate falls below the simulated one. Target: achieved within 5% of simulated.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from typing import Any

import aiohttp

from bench.common import machine, markdown_table, process_cpu_seconds, replace_section

MODEL = "/model/llama2"
HEADING = "Simulator (make bench-sim)"
TARGET = 0.05


# -- load generator (its own process, so it does not share the simulator's CPU) -----------
async def _states(session: aiohttp.ClientSession, addresses: list[str]) -> list[dict[str, Any]]:
    async def one(address: str) -> dict[str, Any]:
        async with session.get(f"http://{address}/admin/state") as resp:
            data: dict[str, Any] = await resp.json()
            return data

    return list(await asyncio.gather(*(one(a) for a in addresses)))


async def generate_load(args: argparse.Namespace) -> dict[str, Any]:
    addresses: list[str] = args.addresses.split(",")
    received = 0
    completed = 0
    errors = 0
    measuring = False
    ttfts: list[float] = []
    scrapes: list[float] = []

    async def worker(index: int, session: aiohttp.ClientSession) -> None:
        nonlocal received, completed, errors
        rng = random.Random(index)
        url = f"http://{addresses[index % len(addresses)]}/v1/chat/completions"
        n = 0
        while True:
            n += 1
            words = " ".join(f"q{index}x{n}w{i}" for i in range(rng.randint(40, 160)))
            body = {
                "model": MODEL,
                "messages": [{"role": "user", "content": words}],
                "max_tokens": rng.randint(args.min_tokens, args.max_tokens),
                "stream": True,
                "stream_options": {"include_usage": True},
            }
            start = time.monotonic()
            first = True
            async with session.post(url, json=body) as resp:
                if resp.status != 200:
                    errors += 1
                    await resp.read()
                    continue
                async for line in resp.content:
                    if b'"delta":{"content"' in line:
                        received += 1
                        if first:
                            first = False
                            if measuring:
                                ttfts.append(time.monotonic() - start)
            completed += 1

    async def scraper(address: str, session: aiohttp.ClientSession) -> None:
        # Like the picker: GET /metrics on every pod every 50 ms.
        url = f"http://{address}/metrics"
        while True:
            start = time.monotonic()
            async with session.get(url) as resp:
                await resp.read()
            if measuring:
                scrapes.append(time.monotonic() - start)
            await asyncio.sleep(max(0.0, args.scrape_interval - (time.monotonic() - start)))

    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=None)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        tasks = [asyncio.create_task(worker(i, session)) for i in range(args.concurrency)]
        tasks += [asyncio.create_task(scraper(a, session)) for a in addresses]
        await asyncio.sleep(args.warmup)
        measuring = True
        before = {
            "wall": time.monotonic(),
            "received": received,
            "completed": completed,
            "sim_cpu": process_cpu_seconds(args.sim_pid),
            "load_cpu": time.process_time(),
            "states": await _states(session, addresses),
        }
        await asyncio.sleep(args.duration)
        after = {
            "wall": time.monotonic(),
            "received": received,
            "completed": completed,
            "sim_cpu": process_cpu_seconds(args.sim_pid),
            "load_cpu": time.process_time(),
            "states": await _states(session, addresses),
        }
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return {
        "before": before,
        "after": after,
        "errors": errors,
        "ttfts": ttfts,
        "scrapes": scrapes,
    }


# -- orchestration ---------------------------------------------------------------------------
def start_simulator(args: argparse.Namespace) -> tuple[subprocess.Popen[bytes], list[str]]:
    command = [
        sys.executable, "-m", "extproc.sim", "--pods", str(args.pods), "--base-port", "0",
        "--speed", str(args.speed), "--seed", "0", "--profile", args.profile,
    ]  # fmt: skip
    sim = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert sim.stdout is not None
    addresses: list[str] = []
    for raw in sim.stdout:
        line = raw.decode().strip()
        if line == "ready":
            return sim, addresses
        addresses.append(dict(f.split("=", 1) for f in line.split())["address"])
    raise SystemExit(f"simulator exited early with status {sim.wait()}")


def summarize(args: argparse.Namespace, result: dict[str, Any]) -> tuple[list[list[str]], bool]:
    before, after = result["before"], result["after"]
    wall = after["wall"] - before["wall"]
    sim_seconds = wall * args.speed
    pairs = list(zip(before["states"], after["states"], strict=True))
    generated = sum(a["generated_tokens"] - b["generated_tokens"] for b, a in pairs)
    steps = sum(a["steps"] - b["steps"] for b, a in pairs)
    busy = [a["busy_sim_seconds"] - b["busy_sim_seconds"] for b, a in pairs]
    late = sum(a["late_wall_seconds"] - b["late_wall_seconds"] for b, a in pairs)
    resets = sum(a["catch_up_resets"] - b["catch_up_resets"] for b, a in pairs)
    preemptions = sum(a["preemptions"] - b["preemptions"] for b, a in pairs)
    simulated_rate = sum(
        (a["generated_tokens"] - b["generated_tokens"]) / d
        for (b, a), d in zip(pairs, busy, strict=True)
    )
    achieved_rate = (after["received"] - before["received"]) / sim_seconds
    ratio = achieved_rate / simulated_rate
    sim_cpu = (after["sim_cpu"] - before["sim_cpu"]) / wall
    load_cpu = (after["load_cpu"] - before["load_cpu"]) / wall
    ttfts = sorted(result["ttfts"])
    p50 = statistics.median(ttfts) if ttfts else float("nan")
    p95 = ttfts[int(0.95 * (len(ttfts) - 1))] if ttfts else float("nan")
    scrapes = sorted(result["scrapes"])
    scrape_p99 = scrapes[int(0.99 * (len(scrapes) - 1))] if scrapes else float("nan")
    ok = abs(1 - ratio) <= TARGET
    per_pod = args.concurrency // args.pods
    step_ms = sum(busy) / steps * 1000
    done = after["completed"] - before["completed"]
    rows = [
        ["pods x concurrent streams", f"{args.pods} x {per_pod} = {args.concurrency}"],
        ["profile, speed", f"{args.profile}, {args.speed:g}"],
        ["window", f"{wall:.1f} s after {args.warmup:g} s warm-up"],
        ["simulated token rate (engine model)", f"{simulated_rate:,.0f} tok/s"],
        ["generated token rate (engine, wall clock)", f"{generated / sim_seconds:,.0f} tok/s"],
        ["achieved token rate (clients)", f"{achieved_rate:,.0f} tok/s"],
        ["achieved / simulated", f"{ratio:.1%} ({'PASS' if ok else 'FAIL'}, target ±{TARGET:.0%})"],
        ["pod busy (modelled step time / window)", f"{statistics.mean(busy) / sim_seconds:.1%}"],
        ["mean step (modelled) / tokens per step", f"{step_ms:.1f} ms / {generated / steps:.1f}"],
        ["step lateness (wall, mean)", f"{late / steps * 1000:.2f} ms, {resets} catch-up resets"],
        ["requests done / errors / preemptions", f"{done} / {result['errors']} / {preemptions}"],
        ["client TTFT p50 / p95 (wall)", f"{p50 * 1000:.0f} ms / {p95 * 1000:.0f} ms"],
        [
            f"/metrics scrapes (every {args.scrape_interval * 1000:g} ms per pod), p99 seen by "
            "the busy client",
            f"{len(scrapes) / wall:.0f}/s, {scrape_p99 * 1000:.1f} ms",
        ],
        ["simulator process CPU", f"{sim_cpu:.0%} of one core"],
        ["load generator CPU", f"{load_cpu:.0%} of one core"],
    ]  # fmt: skip
    return rows, ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sim", description=__doc__.split("\n")[0])
    parser.add_argument("--pods", type=int, default=8)
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--speed", type=float, default=1.0)
    parser.add_argument("--profile", default="a10-7b")
    parser.add_argument("--warmup", type=float, default=10.0)
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--min-tokens", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--scrape-interval", type=float, default=0.05)
    parser.add_argument("--no-write", action="store_true", help="do not update BENCHMARKS.md")
    parser.add_argument("--load", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--addresses", help=argparse.SUPPRESS)
    parser.add_argument("--sim-pid", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.load:
        print(json.dumps(asyncio.run(generate_load(args))))
        return 0

    sim, addresses = start_simulator(args)
    try:
        load_argv = [
            arg for arg in (argv if argv is not None else sys.argv[1:]) if arg != "--no-write"
        ]
        load = subprocess.run(
            [sys.executable, "-m", "bench.sim", *load_argv, "--load",
             "--addresses", ",".join(addresses), "--sim-pid", str(sim.pid)],
            capture_output=True, check=True,
        )  # fmt: skip
    finally:
        sim.terminate()
        sim.wait(timeout=30)
    rows, ok = summarize(args, json.loads(load.stdout))
    table = markdown_table(["measure", "value"], rows)
    print(table)
    if not args.no_write:
        date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        body = (
            f"Command: `make bench-sim` (`.venv/bin/python -m bench.sim`). Run {date} on "
            f"{machine()}.\n\nOne simulator process serves {args.pods} pods; a separate "
            f"load-generator process keeps {args.concurrency} streaming chat requests in flight "
            f"(prompts of ~80-320 tokens, max_tokens {args.min_tokens}-{args.max_tokens}) and "
            f"scrapes every pod's /metrics every {args.scrape_interval * 1000:g} ms, as the "
            "picker does. Simulated rate = tokens the engine model generated / modelled step "
            "time (per pod, summed); achieved rate = tokens the clients received / wall time "
            "x speed.\n\n" + table
        )
        replace_section(HEADING, body)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
