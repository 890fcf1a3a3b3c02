"""LoRA slots: load latency, slot limit, eviction of idle adapters only."""

from __future__ import annotations

from extproc.sim.lora import LoraSlots


def test_adapter_is_ready_after_its_load_time() -> None:
    slots = LoraSlots(2, 0.05)
    assert not slots.acquire("a", 0.0)
    assert slots.loading(0.01) == ["a"] and slots.next_ready_at(0.01) == 0.05
    assert slots.acquire("a", 0.05)
    assert slots.loaded(0.05) == ["a"] and slots.loads == 1


def test_no_slot_while_every_adapter_is_running_or_loading() -> None:
    slots = LoraSlots(2, 1.0)
    slots.acquire("a", 0.0)
    assert slots.acquire("a", 1.0)
    slots.start_running("a")
    assert not slots.acquire("b", 1.0)  # loading until 2.0
    assert not slots.acquire("c", 1.5)  # a is running, b is loading
    assert slots.loads == 2


def test_idle_adapter_is_evicted_least_recently_used_first() -> None:
    slots = LoraSlots(2, 0.0)
    slots.acquire("a", 0.0)
    slots.acquire("b", 1.0)
    slots.start_running("b")
    slots.stop_running("b")
    assert slots.acquire("c", 2.0)
    assert slots.loaded(2.0) == ["b", "c"]
    assert slots.loads == 3


def test_running_adapter_is_pinned() -> None:
    slots = LoraSlots(1, 0.0)
    slots.acquire("a", 0.0)
    slots.start_running("a")
    slots.start_running("a")
    slots.stop_running("a")
    assert not slots.acquire("b", 1.0)
    slots.stop_running("a")
    assert slots.acquire("b", 1.0)
