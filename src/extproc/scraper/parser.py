"""A targeted Prometheus text parser: reads only the wanted families, never the whole page.

A vLLM page is tens of kilobytes, mostly histograms nobody here reads. Instead of tokenising every
line, each wanted family is located with ``bytes.find`` on ``"\\n" + name`` (a C-speed scan) and
only those sample lines are parsed. The page stays bytes (no decoding, no copy); only the label
sets of info series are decoded. The exposition format requires a family's lines to form one
group, so the walk stops at the first line after the group that does not start with the name: a
present family costs a scan up to its group, not of the whole page (a full scan only proves
absence; a group of longer names that start with the name, like `name_by_reason`, is passed
over). Comments, ``_created`` series, other families and malformed lines are skipped without
raising; ``NaN`` and infinite samples are ignored.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

from extproc.scraper.engines import MetricNames
from extproc.scraper.snapshot import EndpointMetrics

Sample = tuple[bytes, float]  # (raw text after the family name up to the value, value)


class ParseError(ValueError):
    """The page holds none of the families that describe load (waiting, running, KV use)."""


_SEPARATORS = frozenset(b"{ \t")  # the byte after a family name in a sample line


@functools.lru_cache(maxsize=128)
def _needles(name: str) -> tuple[bytes, bytes]:
    """`name` and ``"\\n" + name`` as bytes."""
    encoded = name.encode()
    return encoded, b"\n" + encoded


def _samples(page: bytes, name: str) -> list[Sample]:
    """(rest-of-line, value) for every sample line of exactly family `name`."""
    out: list[Sample] = []
    encoded, needle = _needles(name)
    size = len(encoded)
    if page.startswith(encoded):
        start = 0
    else:
        start = page.find(needle) + 1
        if start == 0:
            return out
    length = len(page)
    while True:
        end = page.find(b"\n", start)
        if end < 0:
            end = length
        # The byte after the name separates `name{` / `name 1` from `name_created` and friends.
        if start + size < end and page[start + size] in _SEPARATORS:
            rest = page[start + size : end]
            closing = rest.rfind(b"}") if rest[0] == 0x7B else 0  # "{"
            fields = rest[closing + 1 :].split() if closing >= 0 else ()
            if fields:
                try:
                    value = float(fields[0])
                except ValueError:
                    value = math.nan
                if math.isfinite(value):  # NaN and infinities are not usable samples
                    out.append((rest, value))
        # The next line continues the group only if it starts with the name (the format keeps
        # a family's lines together; `name_created` lines belong to the same group).
        if page.startswith(encoded, end + 1):
            start = end + 1
            continue
        if out:
            return out
        # The group held only longer names (`name_by_reason`, ...): the family may come later.
        start = page.find(needle, end) + 1
        if start == 0:
            return out


@functools.lru_cache(maxsize=64)
def _selector(name: str) -> tuple[str, tuple[bytes, bytes] | None]:
    """``family{label=value}`` → (family, (',label="value"', '{label="value"')); plain names
    → (name, None). The two needles match the pair as the first label or a later one."""
    family, brace, selector = name.partition("{")
    if not brace:
        return name, None
    label, _, value = selector.rstrip("}").partition("=")
    pair = f'{label.strip()}="{value.strip().strip(chr(34))}"'.encode()
    return family, (b"," + pair, b"{" + pair)


def _first(page: bytes, names: tuple[str, ...]) -> list[Sample]:
    for name in names:
        if "{" not in name:  # a plain family name: the common case
            found = _samples(page, name)
        else:
            family, needles = _selector(name)
            found = _samples(page, family)
            if needles is not None:
                later, first = needles
                found = [s for s in found if later in s[0] or s[0].startswith(first)]
        if found:
            return found
    return []


def parse_labels(rest: str) -> dict[str, str] | None:
    """Labels of ``{a="x",b="y\\"z"}``; None when malformed. Handles \\\\, \\" and \\n escapes."""
    if not rest.startswith("{"):
        return {}
    labels: dict[str, str] = {}
    i, n = 1, len(rest)
    while i < n:
        while i < n and rest[i] in " ,\t":
            i += 1
        if i < n and rest[i] == "}":
            return labels
        eq = rest.find("=", i)
        if eq < 0:
            return None
        key = rest[i:eq].strip()
        i = eq + 1
        while i < n and rest[i] == " ":
            i += 1
        if i >= n or rest[i] != '"':
            return None
        i += 1
        buf: list[str] = []
        while i < n:
            c = rest[i]
            if c == "\\" and i + 1 < n:
                nxt = rest[i + 1]
                buf.append("\n" if nxt == "n" else nxt)
                i += 2
            elif c == '"':
                break
            else:
                buf.append(c)
                i += 1
        else:
            return None
        labels[key] = "".join(buf)
        i += 1
    return None


# Label sets of the info series (LoRA adapters, cache geometry) rarely change between scrapes:
# memoise the character-level parse (a pure function of the text; callers only read the dict).
@functools.lru_cache(maxsize=256)
def _cached_labels(rest: bytes) -> dict[str, str] | None:
    return parse_labels(rest.decode("utf-8", "replace"))


@functools.lru_cache(maxsize=256)
def _split_list(value: str) -> frozenset[str]:
    return frozenset(part.strip() for part in value.split(",") if part.strip())


def _derived(
    page: bytes, names: tuple[str, str], combine: Callable[[float, float], float]
) -> list[Sample]:
    """One sample combining the sums of two families (empty when either is absent, or when
    `combine` gives a negative value)."""
    first, second = _first(page, names[:1]), _first(page, names[1:])
    if not (first and second):
        return []
    value = combine(sum(v for _, v in first), sum(v for _, v in second))
    return [(b"", value)] if value >= 0 else []


def _gauge_int(samples: list[Sample]) -> int:
    """The first sample's value as a non-negative int (0 when absent)."""
    return max(0, int(samples[0][1])) if samples else 0


def _int(value: str | None) -> int:
    try:
        return max(0, int(float(value))) if value else 0
    except ValueError:
        return 0


def parse_metrics(page: bytes | str, names: MetricNames, updated_at: float) -> EndpointMetrics:
    """Build a snapshot from one exposition page; raise ParseError if it describes no load.

    Queue lengths are summed over all series (data-parallel `engine`s, models); KV use is the
    mean over series. Of the LoRA info series, the one with the largest value (vLLM writes the
    wall-clock time of the last change) wins. Families missing from the page read as zero.
    Bytes that are not UTF-8 are read as U+FFFD in label values.
    """
    text = page.encode("utf-8", "replace") if isinstance(page, str) else page
    waiting = _first(text, names.waiting)
    running = _first(text, names.running)
    kv = _first(text, names.kv_usage)
    if not waiting and names.waiting_from:
        waiting = _derived(text, names.waiting_from, lambda total, part: total - part)
    if not kv and names.kv_usage_from:
        kv = _derived(text, names.kv_usage_from, lambda used, cap: used / cap if cap else -1.0)
    if not (waiting or running or kv):
        raise ParseError("no load metrics (waiting, running, KV use) on the page")
    running_loras: frozenset[str] = frozenset()
    waiting_loras: frozenset[str] = frozenset()
    max_lora = 0
    lora = _first(text, names.lora_info)
    if lora:
        for rest, _ in sorted(lora, key=lambda s: s[1], reverse=True):
            labels = _cached_labels(rest)
            if labels is not None:
                running_loras = _split_list(labels.get("running_lora_adapters", ""))
                waiting_loras = _split_list(labels.get("waiting_lora_adapters", ""))
                max_lora = _int(labels.get("max_lora"))
                break
    block_size = num_gpu_blocks = 0
    size_label, blocks_label = names.cache_config_labels
    for rest, _ in _first(text, names.cache_config):
        labels = _cached_labels(rest)
        if labels is not None:
            block_size = _int(labels.get(size_label))
            num_gpu_blocks = _int(labels.get(blocks_label))
            break
    if not block_size and names.block_size:
        block_size = _gauge_int(_first(text, names.block_size))
    if not num_gpu_blocks and names.num_blocks:
        num_gpu_blocks = _gauge_int(_first(text, names.num_blocks))
    return EndpointMetrics(
        waiting=max(0, round(sum(v for _, v in waiting))) if waiting else 0,
        running=max(0, round(sum(v for _, v in running))) if running else 0,
        kv_usage=sum(v for _, v in kv) / len(kv) if kv else 0.0,
        running_loras=running_loras,
        waiting_loras=waiting_loras,
        max_lora=max_lora,
        block_size=block_size,
        num_gpu_blocks=num_gpu_blocks,
        prefix_cache_queries=sum(v for _, v in _first(text, names.prefix_queries)),
        prefix_cache_hits=sum(v for _, v in _first(text, names.prefix_hits)),
        updated_at=updated_at,
    )
