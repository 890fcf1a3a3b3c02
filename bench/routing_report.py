"""bench-routing's report: the result tables, the target checks and the plot.

Every function reads the cells `bench.routing` measured; nothing here starts a process.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import TYPE_CHECKING

from bench.common import markdown_table, percentile

if TYPE_CHECKING:
    from bench.routing import Calibration, Cell

PODS = 8
ROUND_ROBIN = "round-robin"


def fmt_ms(seconds: float) -> str:
    return "nan" if seconds != seconds else f"{seconds * 1000:,.0f}"


def table(cells: list[Cell]) -> str:
    rows = []
    for c in cells:
        rows.append([
            f"{c.load:.0%}", c.policy, len(c.measured()),
            fmt_ms(c.pct("ttft_s", 50)), fmt_ms(c.pct("ttft_s", 90)), fmt_ms(c.pct("ttft_s", 99)),
            fmt_ms(c.pct("ttft_s", 90, shared=True)), fmt_ms(c.pct("ttft_s", 90, shared=False)),
            fmt_ms(c.pct("e2e_s", 50)), fmt_ms(c.pct("e2e_s", 90)),
            f"{c.tokens_per_s():,.0f}", f"{c.requests_per_s():.2f}",
            f"{c.prefix_hit_rate():.0%}", int(c.pods.get("lora_loads", 0)),
            int(c.pods.get("vllm:num_preemptions_total", 0)),
            f"{c.shed()} ({c.shed('Critical')})", c.errors(),
        ])  # fmt: skip
    return markdown_table(
        ["load", "policy", "requests", "TTFT p50 ms", "TTFT p90 ms", "TTFT p99 ms",
         "TTFT p90 shared-prefix ms", "TTFT p90 no-shared-prefix ms", "e2e p50 ms", "e2e p90 ms", "output tok/s", "req/s", "prefix hit", "LoRA loads",
         "preempt.", "shed 429 (Critical)", "errors"],
        rows,
    )  # fmt: skip


def cpu_table(cells: list[Cell]) -> str:
    rows = []
    for c in cells:
        lags = sorted(o.lag_s for o in c.outcomes)
        rows.append([
            f"{c.load:.0%}", c.policy, f"{c.wall_s:.1f}",
            *(f"{c.cpu.get(k, 0):.0f}%" if k in c.cpu else "–"
              for k in ("load generator", "sim", "envoy", "picker")),
            f"{lags[int(0.99 * (len(lags) - 1))] * 1000:.1f}",
            int(c.pods.get("catch_up_resets", 0)),
        ])  # fmt: skip
    return markdown_table(
        ["load", "policy", "wall s", "load gen CPU", "sim CPU", "Envoy CPU", "picker CPU",
         "send lag p99 ms (wall)", "sim catch-up resets"],
        rows,
    )  # fmt: skip


def plot(cells: list[Cell], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for policy in dict.fromkeys(c.policy for c in cells):
        mine = sorted((c for c in cells if c.policy == policy), key=lambda c: c.load)
        ax.plot([c.load * 100 for c in mine], [c.pct("ttft_s", 90) * 1000 for c in mine],
                marker="o", label=policy, linewidth=2.5 if policy == "default" else 1.5)  # fmt: skip
    ax.axvline(100, color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("offered load, % of round-robin's saturation throughput")
    ax.set_ylabel("p90 TTFT, ms (simulated time)")
    ax.set_yscale("log")
    ax.set_title(f"Routing: p90 time to first token, {PODS} simulated A10 pods, 10 LoRAs")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


TARGETS = ((ROUND_ROBIN, 0.5), ("reference-default", 0.8))


def _cell(cells: list[Cell], policy: str, load: float) -> Cell | None:
    return next((c for c in cells if c.policy == policy and abs(c.load - load) < 1e-9), None)


def target_load(cells: list[Cell]) -> float:
    return 0.8 if _cell(cells, "default", 0.8) else max(c.load for c in cells)


def seed_ratios(runs: dict[int, list[Cell]], other: str, load: float) -> dict[int, float]:
    """Per workload seed, `default`'s p90 TTFT over `other`'s (both from the same run)."""
    out = {}
    for seed, cells in runs.items():
        d, o = _cell(cells, "default", load), _cell(cells, other, load)
        if d is not None and o is not None:
            out[seed] = d.pct("ttft_s", 90) / o.pct("ttft_s", 90)
    return out


def targets(runs: dict[int, list[Cell]]) -> tuple[str, bool]:
    """The issue's targets; a ratio is the median over the workload seeds run at its load (a
    p90 of a few hundred requests moves by ±10% between identical runs)."""
    cells = next(iter(runs.values()))
    rows = []
    met = True
    load = target_load(cells)
    for other, ratio in TARGETS:
        ratios = seed_ratios(runs, other, load)
        if not ratios:
            continue
        got = statistics.median(ratios.values())
        ok = got <= ratio
        met &= ok
        each = ", ".join(f"{r:.2f}x" for r in ratios.values())
        rows.append([f"`default` p90 TTFT at {load:.0%} / `{other}`",
                     f"median {got:.2f}x over {len(ratios)} seed(s) ({each})",
                     f"≤ {ratio}x", "yes" if ok else "no"])  # fmt: skip
    crit = sum(
        c.shed("Critical", everything=True)
        for seed_cells in runs.values()
        for c in seed_cells
        if c.policy == "default"
    )
    met &= crit == 0
    rows.append(["Critical requests shed by `default` (all loads, warm-up included)", str(crit),
                 "0", "yes" if crit == 0 else "no"])  # fmt: skip
    return markdown_table(["target", "measured", "goal", "met"], rows), met


def ratio_table(cells: list[Cell]) -> str:
    """p90 TTFT of `default` over the other policies', per load (a summary of the table)."""
    rows = []
    for load in dict.fromkeys(c.load for c in cells):
        mine = {c.policy: c for c in cells if c.load == load}
        d = mine.get("default")
        if d is None:
            continue
        rows.append([f"{load:.0%}", *(
            f"{d.pct('ttft_s', 90) / mine[p].pct('ttft_s', 90):.2f}x" if p in mine else "–"
            for p in (ROUND_ROBIN, "random", "legacy-v0.3", "reference-default"))])  # fmt: skip
    return markdown_table(
        ["load", "/ round-robin", "/ random", "/ legacy-v0.3", "/ reference-default"], rows
    )


def seeds_table(runs: dict[int, list[Cell]], load: float, floors: dict[int, list[float]]) -> str:
    """p90 TTFT of the target policies per workload seed at the target load, with the seed's
    routing-independent floor, the ratio a router that reached it would score, and how far
    above the floor `default` lands relative to the reference. With several seeds, a last row
    pools their requests (one p90 over all of them: steadier than any one seed's).

    `floors[seed]` holds the floor of each measured request (simulated seconds)."""
    policies = [p for p, _ in TARGETS]
    reference = policies[-1]
    rows = [
        _seed_row(str(seed), {c.policy: _ttfts(c) for c in cells if c.load == load}, floors[seed])
        for seed, cells in runs.items()
    ]
    if len(runs) > 1:
        pooled: dict[str, list[float]] = {}
        for cells in runs.values():
            for c in cells:
                if c.load == load:
                    pooled.setdefault(c.policy, []).extend(_ttfts(c))
        every_floor = [f for each in floors.values() for f in each]
        rows.append(_seed_row(f"{len(runs)} seeds pooled", pooled, every_floor))
    header = ["workload seed", "`default` p90 ms"]
    for other in policies:
        header += [f"`{other}` p90 ms", "ratio"]
    header += ["floor p90 ms", f"floor / `{reference}`",
               f"above the floor: `default` / `{reference}`"]  # fmt: skip
    return markdown_table(header, rows)


def _ttfts(cell: Cell) -> list[float]:
    return [o.ttft_s * cell.speed for o in cell.ok() if o.ttft_s is not None]


def _seed_row(label: str, ttfts: dict[str, list[float]], floors: list[float]) -> list[object]:
    p90 = {policy: percentile(values, 90) for policy, values in ttfts.items()}
    d = p90.get("default")
    row: list[object] = [label, fmt_ms(d) if d is not None else "–"]
    for other, _ in TARGETS:
        o = p90.get(other)
        row.append(fmt_ms(o) if o is not None else "–")
        row.append(f"{d / o:.2f}x" if d is not None and o is not None else "–")
    floor, ref = percentile(floors, 90), p90.get(TARGETS[-1][0])
    row.append(fmt_ms(floor))
    row.append(f"{floor / ref:.2f}x" if ref is not None else "–")
    row.append(f"{(d - floor) / (ref - floor):.2f}x" if d is not None and ref is not None else "–")
    return row


def over_goal_table(
    runs: dict[int, list[Cell]],
    load: float,
    floors: dict[int, list[float]],
    no_shared_prefix: frozenset[str],
) -> str:
    """Per workload seed, `default`'s measured requests slower than the reference goal
    (`reference-default`'s p90 x the target ratio, same run), by cause: a routing-independent
    floor above the goal already; no shared prefix, over it by waiting (a step in progress,
    other prefills); or a shared prefix (stuck behind a long prefill, a cold pod, an adapter
    load). A p90 under the goal allows 10% of the requests above it.

    `floors[seed][i]` is request `i`'s floor (simulated seconds)."""
    other, ratio = TARGETS[-1]
    rows = []
    for seed, cells in runs.items():
        d, o = _cell(cells, "default", load), _cell(cells, other, load)
        if d is None or o is None:
            continue
        goal = ratio * o.pct("ttft_s", 90)
        ok = d.ok()
        floor = waiting = shared = 0
        for outcome in ok:
            if outcome.ttft_s is None or outcome.ttft_s * d.speed <= goal:
                continue
            if floors[seed][outcome.index] > goal:
                floor += 1
            elif outcome.tenant in no_shared_prefix:
                waiting += 1
            else:
                shared += 1
        rows.append([seed, fmt_ms(goal), len(ok) // 10, floor + waiting + shared, floor, waiting,
                     shared])  # fmt: skip
    return markdown_table(
        ["workload seed", "goal: p90 ms", "allowed above", "`default` above", "floor above",
         "no shared prefix, waited", "shared prefix"],
        rows,
    )  # fmt: skip


def calibration_table(cal: Calibration) -> str:
    rows = [[n, f"{n // PODS}", f"{t:.2f}", p]
            for n, t, p in zip(cal.concurrency, cal.throughput, cal.preemptions, strict=True)]  # fmt: skip
    return markdown_table(
        ["in flight (fleet)", "per pod", "completions / simulated s", "preemptions"], rows
    )
