"""The InferencePool/InferenceModel CRDs: their shape, and what they accept and reject."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from manifest_helpers import (
    MANIFESTS,
    REPO,
    SAMPLES,
    Doc,
    crds,
    manifest_docs,
    openapi_schema,
    schema_at,
    schema_defaults,
    to_json_schema,
    validation_errors,
)

GROUP = "inference.networking.x-k8s.io"
KINDS = ("InferencePool", "InferenceModel")


def _api_objects() -> list[tuple[str, Doc]]:
    found: list[tuple[str, Doc]] = []
    for root in (MANIFESTS, SAMPLES):
        for path, doc in manifest_docs(root):
            if doc.get("kind") in KINDS:
                rel = path.relative_to(REPO)
                found.append((f"{rel}:{doc['kind']}/{doc['metadata']['name']}", doc))
    return found


API_OBJECTS = _api_objects()


def test_scenario_and_samples_are_found() -> None:
    kinds = {doc["kind"] for _, doc in API_OBJECTS}
    assert kinds == set(KINDS)
    assert len(API_OBJECTS) >= 6


@pytest.mark.parametrize("kind", KINDS, ids=KINDS)
def test_crd_shape(kind: str) -> None:
    crd = crds()[kind]
    spec = crd["spec"]
    assert spec["group"] == GROUP
    assert spec["scope"] == "Namespaced"
    assert crd["metadata"]["name"] == f"{spec['names']['plural']}.{GROUP}"
    (version,) = spec["versions"]
    assert version["name"] == "v1alpha2"
    assert version["served"] is True
    assert version["storage"] is True
    assert version["subresources"] == {"status": {}}
    schema = version["schema"]["openAPIV3Schema"]
    assert {"spec", "status"} <= set(schema["properties"])
    for column in version["additionalPrinterColumns"]:
        if column["jsonPath"].startswith(".metadata."):
            continue  # ObjectMeta is not part of a CRD schema
        assert schema_at(schema, column["jsonPath"]) is not None, column


@pytest.mark.parametrize("kind", KINDS, ids=KINDS)
def test_crd_schema_is_valid_json_schema(kind: str) -> None:
    jsonschema.Draft7Validator.check_schema(to_json_schema(openapi_schema(kind)))


@pytest.mark.parametrize("kind", KINDS, ids=KINDS)
def test_crd_defaults_satisfy_their_own_schema(kind: str) -> None:
    defaults = list(schema_defaults(openapi_schema(kind)))
    assert defaults, "expected defaults (extensionRef / poolRef)"
    for path, node, default in defaults:
        node.pop("default")
        errors = list(jsonschema.Draft7Validator(to_json_schema(node)).iter_errors(default))
        assert not errors, f"default at {path} is invalid: {errors}"


@pytest.mark.parametrize(("obj"), [o for _, o in API_OBJECTS], ids=[i for i, _ in API_OBJECTS])
def test_objects_in_repo_validate(obj: Doc) -> None:
    assert validation_errors(obj) == []


# --- invalid and valid variants of the scenario objects ------------------------------------------

POOL: Doc = {
    "apiVersion": f"{GROUP}/v1alpha2",
    "kind": "InferencePool",
    "metadata": {"name": "vllm-llama2-7b-pool", "namespace": "default"},
    "spec": {
        "targetPortNumber": 8000,
        "selector": {"app": "vllm-llama2-7b-pool"},
        "extensionRef": {"name": "inference-gateway-ext-proc"},
    },
}

MODEL: Doc = {
    "apiVersion": f"{GROUP}/v1alpha2",
    "kind": "InferenceModel",
    "metadata": {"name": "inferencemodel-sample", "namespace": "default"},
    "spec": {
        "modelName": "/model/llama2",
        "criticality": "Critical",
        "poolRef": {"group": GROUP, "kind": "InferencePool", "name": "vllm-llama2-7b-pool"},
        "targetModels": [{"name": "/model/llama2", "weight": 100}],
    },
}

Mutation = Callable[[dict[str, Any]], None]


def _set(key: str, value: Any) -> Mutation:
    def mutate(spec: dict[str, Any]) -> None:
        target = spec
        *parents, last = key.split(".")
        for part in parents:
            target = target[part]
        target[last] = value

    return mutate


def _drop(key: str) -> Mutation:
    def mutate(spec: dict[str, Any]) -> None:
        target = spec
        *parents, last = key.split(".")
        for part in parents:
            target = target[part]
        del target[last]

    return mutate


def _variant(base: Doc, mutation: Mutation) -> Doc:
    obj = copy.deepcopy(base)
    mutation(obj["spec"])
    return obj


INVALID: list[tuple[str, Doc, Mutation, str]] = [
    ("pool-port-0", POOL, _set("targetPortNumber", 0), "targetPortNumber"),
    ("pool-port-65536", POOL, _set("targetPortNumber", 65536), "targetPortNumber"),
    ("pool-port-string", POOL, _set("targetPortNumber", "8000"), "targetPortNumber"),
    ("pool-missing-selector", POOL, _drop("selector"), "selector"),
    ("pool-selector-not-strings", POOL, _set("selector", {"app": 1}), "selector"),
    ("pool-missing-port", POOL, _drop("targetPortNumber"), "targetPortNumber"),
    ("pool-missing-extensionRef", POOL, _drop("extensionRef"), "extensionRef"),
    ("pool-extensionRef-no-name", POOL, _set("extensionRef", {"kind": "Service"}), "name"),
    ("pool-extension-port-0", POOL, _set("extensionRef.portNumber", 0), "portNumber"),
    ("pool-extension-port-65536", POOL, _set("extensionRef.portNumber", 65536), "portNumber"),
    ("pool-bad-failureMode", POOL, _set("extensionRef.failureMode", "FailSoft"), "failureMode"),
    ("pool-unknown-field", POOL, _set("targetPort", 8000), "targetPort"),
    ("model-unknown-criticality", MODEL, _set("criticality", "Urgent"), "criticality"),
    (
        "model-weights-on-some-targets",
        MODEL,
        _set("targetModels", [{"name": "a", "weight": 1}, {"name": "b"}]),
        "weights must be set on all targetModels or on none",
    ),
    (
        "model-11-targets",
        MODEL,
        _set("targetModels", [{"name": f"t{i}", "weight": 1} for i in range(11)]),
        "targetModels",
    ),
    ("model-name-257-chars", MODEL, _set("modelName", "m" * 257), "modelName"),
    ("model-name-empty", MODEL, _set("modelName", ""), "modelName"),
    ("model-missing-modelName", MODEL, _drop("modelName"), "modelName"),
    ("model-weight-0", MODEL, _set("targetModels", [{"name": "a", "weight": 0}]), "weight"),
    (
        "model-weight-over-1e6",
        MODEL,
        _set("targetModels", [{"name": "a", "weight": 1_000_001}]),
        "weight",
    ),
    ("model-target-without-name", MODEL, _set("targetModels", [{"weight": 1}]), "name"),
    ("model-target-name-254", MODEL, _set("targetModels", [{"name": "n" * 254}]), "name"),
    ("model-missing-poolRef", MODEL, _drop("poolRef"), "poolRef"),
    ("model-poolRef-without-name", MODEL, _set("poolRef", {"kind": "InferencePool"}), "name"),
]


@pytest.mark.parametrize(
    ("base", "mutation", "expected"),
    [(b, m, e) for _, b, m, e in INVALID],
    ids=[i for i, *_ in INVALID],
)
def test_invalid_variants_are_rejected(base: Doc, mutation: Mutation, expected: str) -> None:
    errors = validation_errors(_variant(base, mutation))
    assert errors, "expected the API server to reject this object"
    assert any(expected in e for e in errors), errors


VALID: list[tuple[str, Doc, Mutation]] = [
    ("pool-port-1", POOL, _set("targetPortNumber", 1)),
    ("pool-port-65535", POOL, _set("targetPortNumber", 65535)),
    ("pool-failopen", POOL, _set("extensionRef.failureMode", "FailOpen")),
    ("pool-extension-port-9002", POOL, _set("extensionRef.portNumber", 9002)),
    ("model-no-criticality", MODEL, _drop("criticality")),
    ("model-sheddable", MODEL, _set("criticality", "Sheddable")),
    ("model-no-targets", MODEL, _drop("targetModels")),
    ("model-empty-targets", MODEL, _set("targetModels", [])),
    ("model-unweighted-targets", MODEL, _set("targetModels", [{"name": "a"}, {"name": "b"}])),
    (
        "model-10-weighted-targets",
        MODEL,
        _set("targetModels", [{"name": f"t{i}", "weight": 1_000_000} for i in range(10)]),
    ),
    ("model-name-256-chars", MODEL, _set("modelName", "m" * 256)),
    ("model-poolRef-name-only", MODEL, _set("poolRef", {"name": "vllm-llama2-7b-pool"})),
]


@pytest.mark.parametrize(
    ("base", "mutation"), [(b, m) for _, b, m in VALID], ids=[i for i, *_ in VALID]
)
def test_valid_variants_are_accepted(base: Doc, mutation: Mutation) -> None:
    assert validation_errors(_variant(base, mutation)) == []


UPDATES: list[tuple[str, Mutation, bool]] = [
    ("change-modelName", _set("modelName", "/model/llama2-v2"), False),
    ("same-modelName-new-criticality", _set("criticality", "Sheddable"), True),
    ("same-modelName-new-targets", _set("targetModels", [{"name": "sql-lora"}]), True),
]


@pytest.mark.parametrize(
    ("mutation", "allowed"), [(m, a) for _, m, a in UPDATES], ids=[i for i, *_ in UPDATES]
)
def test_model_updates(mutation: Mutation, allowed: bool) -> None:
    errors = validation_errors(_variant(MODEL, mutation), old=MODEL)
    if allowed:
        assert errors == []
    else:
        assert errors == ["<root>.spec.modelName: modelName is immutable"]


def test_sample_directory_is_not_empty() -> None:
    assert sorted(p.name for p in Path(SAMPLES).glob("*.yaml"))
