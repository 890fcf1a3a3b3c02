"""Static configuration: valid files load; every mistake names the file, object and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from extproc.config.static import load_static_config, parse_static_config
from extproc.errors import ConfigError

ROOT = Path(__file__).resolve().parents[3]

POOL = """\
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferencePool
metadata: {name: pool}
spec:
  targetPortNumber: 8000
  selector: {app: vllm}
  extensionRef: {name: epp}
"""
MODEL = """\
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceModel
metadata: {name: m1}
spec:
  modelName: chat
  poolRef: {name: pool}
  targetModels: [{name: a, weight: 1}, {name: b, weight: 3}]
"""
ENDPOINTS = """\
apiVersion: extproc.local/v1alpha1
kind: StaticEndpoints
metadata: {name: pool}
spec:
  poolRef: {name: pool}
  endpoints: [{name: p0, address: "10.0.0.1:9000"}, {address: "10.0.0.2"}]
"""


def test_example_file_loads() -> None:
    config = load_static_config(ROOT / "examples" / "static-config.yaml")
    assert config.pool.name == "vllm-llama2-7b-pool"
    assert [m.model_name for m in config.models] == ["/model/llama2", "sql"]
    assert [e.address for e in config.endpoints] == ["127.0.0.1:8000", "127.0.0.1:8001"]


def test_full_document_set() -> None:
    config = parse_static_config("---\n".join([POOL, MODEL, ENDPOINTS]), "f.yaml")
    assert config.pool.extension_ref is not None
    assert config.pool.extension_ref.failure_mode == "FailClose"
    assert config.models[0].criticality == "Standard"
    assert [t.weight for t in config.models[0].target_models] == [1, 3]
    assert [e.address for e in config.endpoints] == ["10.0.0.1:9000", "10.0.0.2:8000"]
    assert config.endpoints[1].name == "endpoint-1"


@pytest.mark.parametrize(
    ("docs", "expected"),
    [
        pytest.param([POOL.replace("8000", "0")], r"InferencePool/pool: spec.targetPortNumber: 0 is below", id="port-0"),
        pytest.param([POOL.replace("8000", "'80'")], r"targetPortNumber: expected an integer, got a string", id="port-string"),
        pytest.param([POOL.replace("8000", "true")], r"targetPortNumber: expected an integer, got a boolean", id="port-bool"),
        pytest.param([POOL.replace("  selector", "  colour: blue\n  selector")], r"spec: unknown field 'colour'", id="unknown-field"),
        pytest.param([POOL.replace("  selector: {app: vllm}\n", "")], r"missing required field 'selector'", id="no-selector"),
        pytest.param([POOL, MODEL.replace("name: pool}", "name: other}")], r"InferenceModel/m1: spec.poolRef.name: InferencePool 'other' is not defined", id="dangling-poolref"),
        pytest.param([POOL, MODEL.replace("{name: b, weight: 3}", "{name: b}")], r"set weight on all targets or on none", id="partial-weights"),
        pytest.param([POOL, MODEL.replace("weight: 3", "weight: 0")], r"targetModels\[1\].weight: 0 is below", id="weight-0"),
        pytest.param([POOL, MODEL.replace("modelName: chat", "modelName: chat\n  criticality: Urgent")], r"criticality: 'Urgent' is not one of", id="bad-criticality"),
        pytest.param([POOL, POOL.replace("{name: pool}", "{name: pool2}")], r"exactly one InferencePool, found 2", id="two-pools"),
        pytest.param([POOL, MODEL, MODEL.replace("modelName: chat", "modelName: other")], r"InferenceModel/m1: a second InferenceModel named 'm1' \(the first is document 2\)", id="same-name-twice"),
        pytest.param([MODEL], r"exactly one InferencePool, found 0", id="no-pool"),
        pytest.param([POOL, ENDPOINTS.replace('"10.0.0.2"', '"node-1"')], r"endpoints\[1\].address: 'node-1' is not an IP", id="hostname"),
        pytest.param([POOL, ENDPOINTS.replace('"10.0.0.2"', '"10.0.0.1:9000"')], r"duplicate endpoint", id="duplicate-endpoint"),
        pytest.param([POOL.replace("InferencePool\n", "InferencePoool\n")], r"unsupported kind 'InferencePoool'", id="typo-kind"),
        pytest.param(["key: [unclosed"], r"not valid YAML", id="bad-yaml"),
        pytest.param([POOL.replace("  selector", "  targetPortNumber: 9000\n  selector")], r"found duplicate key 'targetPortNumber'", id="duplicate-key"),
        pytest.param(["- a list"], r"document 1: expected a mapping", id="not-a-mapping"),
    ],
)  # fmt: skip
def test_invalid_files_are_rejected_with_a_path(docs: list[str], expected: str) -> None:
    with pytest.raises(ConfigError, match=expected) as info:
        parse_static_config("---\n".join(docs), "bad.yaml")
    assert str(info.value).startswith("bad.yaml")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_static_config(tmp_path / "absent.yaml")
