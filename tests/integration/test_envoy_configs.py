"""Every shipped Envoy file validates with the real Envoy, and nothing shipped has drifted."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from extproc.envoyconf.bootstrap import BootstrapParams, build_bootstrap, render_bootstrap
from extproc.stack.stack import envoy_binary, scenario_documents

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted((ROOT / "envoy").glob("*.yaml"))


@pytest.mark.integration
@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_envoy_config_validates(path: Path) -> None:
    out = subprocess.run(
        [envoy_binary(), "--mode", "validate", "-c", str(path), "--log-level", "error"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.integration
@pytest.mark.parametrize(
    "params",
    [
        BootstrapParams(body_mode="FULL_DUPLEX_STREAMED", listen_port=1, extproc_port=2),
        BootstrapParams(direct_endpoints=(("127.0.0.1", 8000), ("127.0.0.1", 8001))),
    ],
    ids=["full-duplex", "direct"],
)
def test_rendered_variants_validate(tmp_path: Path, params: BootstrapParams) -> None:
    config = tmp_path / "envoy.yaml"
    config.write_text(render_bootstrap(params))
    out = subprocess.run(
        [envoy_binary(), "--mode", "validate", "-c", str(config), "--log-level", "error"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.integration
def test_kubernetes_standalone_bootstrap_validates(tmp_path: Path) -> None:
    (config_map,) = yaml.safe_load_all(
        (ROOT / "manifests" / "xds" / "envoy-bootstrap.yaml").read_text()
    )
    config = tmp_path / "envoy.yaml"
    config.write_text(config_map["data"]["envoy.yaml"])
    out = subprocess.run(
        [envoy_binary(), "--mode", "validate", "-c", str(config), "--log-level", "error"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_route_allows_silent_completions_as_long_as_its_timeout() -> None:
    # Without a route idle timeout Envoy's default stream idle timeout (300 s) ends a
    # non-streaming completion that sends nothing until it is done: measured on Envoy 1.40, a
    # 310 s answer got `504 stream timeout` at 300 s under the 600 s route timeout.
    config = build_bootstrap(BootstrapParams(route_timeout_s=900))
    hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    (route,) = hcm["typed_config"]["route_config"]["virtual_hosts"][0]["routes"]
    assert route["route"]["timeout"] == route["route"]["idle_timeout"] == "900s"


def test_shipped_files_match_the_builder() -> None:
    from extproc.tools import gen_envoy

    for name, (purpose, params) in gen_envoy.FILES.items():
        expected = render_bootstrap(params, gen_envoy._HEADER.format(purpose=purpose))
        assert (ROOT / "envoy" / name).read_text() == expected, f"run `make envoy-config` ({name})"


def test_compose_file_mounts_existing_files() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yaml").read_text())
    for service in compose["services"].values():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            assert (ROOT / source).exists(), source
    picker_cmd = compose["services"]["picker"]["command"]
    assert "--config" in picker_cmd


def test_local_stack_uses_the_scenario_rules_of_the_manifests() -> None:
    manifest = ROOT / "manifests" / "scenario" / "inference_rules.yaml"
    shipped = [d for d in yaml.safe_load_all(manifest.read_text()) if d]

    def key(doc: dict[str, object]) -> tuple[object, object]:
        meta = doc["metadata"]
        assert isinstance(meta, dict)
        return doc["kind"], meta["name"]

    ours = {key(d): d["spec"] for d in scenario_documents()}
    theirs = {key(d): d["spec"] for d in shipped}
    assert ours == theirs
