"""The ``sim`` subcommand's flags: defaults, overrides and argparse errors."""

from __future__ import annotations

import argparse

import pytest

from extproc.sim.cli import config_from_args, register
from extproc.sim.profiles import A10_7B, H100_7B


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="extproc")
    register(parser.add_subparsers(dest="command"))
    return parser.parse_args(["sim", *argv])


def test_defaults() -> None:
    args = parse()
    config = config_from_args(args)
    assert callable(args.handler)
    assert config.pods == 1 and config.base_port == 8000 and config.host == "127.0.0.1"
    assert config.model == "/model/llama2" and config.max_loras == 4
    assert config.profile == A10_7B and config.speed == 1.0


def test_flags_build_the_config() -> None:
    config = config_from_args(
        parse(
            "--pods", "3", "--base-port", "0", "--lora", "a", "b", "--lora", "a",
            "--profile", "h100-7b", "--num-gpu-blocks", "64", "--max-num-seqs", "8",
            "--speed", "10", "--seed", "7", "--legacy-metrics",
            "--fault-error-rate", "0.5", "--fault-latency-ms", "20", "--fault-stall",
        )
    )  # fmt: skip
    assert config.pods == 3 and config.loras == ("a", "b")
    assert config.profile.name == "h100-7b" and config.profile.num_gpu_blocks == 64
    assert config.profile.max_num_seqs == 8
    assert config.profile.step_base_ms == H100_7B.step_base_ms
    assert config.speed == 10 and config.seed == 7 and config.legacy_metrics
    assert config.faults.error_rate == 0.5 and config.faults.latency_ms == 20
    assert config.faults.stall
    assert [config.port(i) for i in range(3)] == [0, 0, 0]


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(["--pods", "0"], id="zero-pods"),
        pytest.param(["--base-port", "70000"], id="port-too-big"),
        pytest.param(["--base-port", "x"], id="port-not-int"),
        pytest.param(["--speed", "0"], id="zero-speed"),
        pytest.param(["--speed", "nan"], id="nan-speed"),
        pytest.param(["--fault-error-rate", "1.5"], id="rate-too-big"),
        pytest.param(["--fault-error-status", "404"], id="status-not-5xx"),
        pytest.param(["--profile", "tpu"], id="unknown-profile"),
        pytest.param(["--num-gpu-blocks", "-1"], id="negative-blocks"),
    ],
)
def test_bad_flags_exit_with_usage_error(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        parse(*argv)
    assert exc.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_port_range_overflow_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    args = parse("--pods", "10", "--base-port", "65530")
    with pytest.raises(SystemExit) as exc:
        args.handler(args)
    assert exc.value.code == 2
    assert "65535" in capsys.readouterr().err
