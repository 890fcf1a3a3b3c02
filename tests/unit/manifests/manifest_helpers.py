"""Manifest test helpers: YAML loading, CRD checks (JSON Schema + CEL), container flags."""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import celpy
import jsonschema
import yaml

REPO = Path(__file__).resolve().parents[3]
MANIFESTS = REPO / "manifests"
SAMPLES = Path(__file__).resolve().parent / "samples"
CRD_DIR = MANIFESTS / "crds"

Doc = dict[str, Any]

# x-kubernetes-* keys: either irrelevant to JSON Schema (list types, int-or-string handled by
# `type`) or translated below (preserve-unknown-fields, validations).
_PRESERVE = "x-kubernetes-preserve-unknown-fields"
_VALIDATIONS = "x-kubernetes-validations"


def load_docs(path: Path) -> list[Doc]:
    """All non-empty YAML documents of one file."""
    with path.open(encoding="utf-8") as f:
        return [doc for doc in yaml.safe_load_all(f) if doc]


def yaml_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.yaml") if p.is_file())


def manifest_docs(root: Path = MANIFESTS) -> list[tuple[Path, Doc]]:
    """Every Kubernetes object under `root` (kustomization files excluded)."""
    return [
        (path, doc)
        for path in yaml_files(root)
        if path.name != "kustomization.yaml"
        for doc in load_docs(path)
    ]


def find(docs: Sequence[Doc], kind: str, name: str) -> Doc:
    """The one object of `kind` named `name`; fails the test otherwise."""
    found = [d for d in docs if d.get("kind") == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected exactly one {kind}/{name}, found {len(found)}"
    return found[0]


def docs_in(directory: Path) -> list[Doc]:
    return [doc for _, doc in manifest_docs(directory)]


# ---------------------------------------------------------------------------------------------
# CRD schemas
# ---------------------------------------------------------------------------------------------


@functools.cache
def crds() -> dict[str, Doc]:
    """CRDs in manifests/crds keyed by kind."""
    found: dict[str, Doc] = {}
    for _, doc in manifest_docs(CRD_DIR):
        if doc["kind"] == "CustomResourceDefinition":
            found[doc["spec"]["names"]["kind"]] = doc
    return found


def openapi_schema(kind: str, version: str = "v1alpha2") -> Doc:
    for v in crds()[kind]["spec"]["versions"]:
        if v["name"] == version:
            schema: Doc = v["schema"]["openAPIV3Schema"]
            return schema
    raise KeyError(f"{kind} has no version {version}")


def to_json_schema(node: Mapping[str, Any]) -> Doc:
    """Translate a Kubernetes structural schema into an equivalent strict JSON Schema.

    Kubernetes rejects unknown fields (kubectl's default strict field validation), so objects
    with `properties` get `additionalProperties: false` unless they preserve unknown fields.
    CEL rules are not JSON Schema: `cel_errors` evaluates them separately.
    """
    out: Doc = {}
    for key, value in node.items():
        if key.startswith("x-kubernetes-"):
            continue
        if key == "properties":
            out[key] = {name: to_json_schema(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties") and isinstance(value, Mapping):
            out[key] = to_json_schema(value)
        else:
            out[key] = copy.deepcopy(value)
    if "properties" in node and "additionalProperties" not in node and not node.get(_PRESERVE):
        out["additionalProperties"] = False
    return out


@functools.cache
def _cel_program(rule: str) -> celpy.Runner:
    env = celpy.Environment()
    return env.program(env.compile(rule))


_MISSING = object()


def _cel_walk(schema: Mapping[str, Any], value: Any, old: Any, path: str) -> Iterator[str]:
    """Yield `path: message` for each failing x-kubernetes-validations rule under `schema`."""
    for validation in schema.get(_VALIDATIONS, []):
        rule: str = validation["rule"]
        transition = "oldSelf" in rule
        if transition and old is _MISSING:
            continue  # transition rules only run on updates where the old value exists
        activation = {"self": celpy.json_to_cel(value)}
        if transition:
            activation["oldSelf"] = celpy.json_to_cel(old)
        result = _cel_program(rule).evaluate(activation)
        if not isinstance(result, celpy.celtypes.BoolType) or not bool(result):
            yield f"{path}: {validation.get('message', rule)}"
    if isinstance(value, Mapping):
        for name, sub in schema.get("properties", {}).items():
            if name in value:
                old_sub = old.get(name, _MISSING) if isinstance(old, Mapping) else _MISSING
                yield from _cel_walk(sub, value[name], old_sub, f"{path}.{name}")
    elif isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            # Transition rules under lists need list-type map/set correlation; ours have none.
            yield from _cel_walk(schema["items"], item, _MISSING, f"{path}[{i}]")


def cel_errors(schema: Mapping[str, Any], obj: Any, old: Any = _MISSING) -> list[str]:
    return list(_cel_walk(schema, obj, old, "<root>"))


def validation_errors(obj: Doc, old: Doc | None = None) -> list[str]:
    """What the API server would say about creating `obj` (or updating `old` to `obj`)."""
    kind = obj["kind"]
    version = obj["apiVersion"].rpartition("/")[2]
    schema = openapi_schema(kind, version)
    validator = jsonschema.Draft7Validator(to_json_schema(schema))
    errors = [
        f"{'.'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}"
        for e in validator.iter_errors(obj)
    ]
    if errors:  # the API server stops before CEL when the schema already fails
        return errors
    return cel_errors(schema, obj, _MISSING if old is None else old)


def schema_defaults(node: Mapping[str, Any], path: str = "") -> Iterator[tuple[str, Doc, Any]]:
    """(path, schema, default) for every `default` in a schema."""
    if "default" in node:
        yield path, dict(node), node["default"]
    for name, sub in node.get("properties", {}).items():
        yield from schema_defaults(sub, f"{path}.{name}")
    if isinstance(node.get("items"), Mapping):
        yield from schema_defaults(node["items"], f"{path}[]")


def schema_at(schema: Mapping[str, Any], json_path: str) -> Mapping[str, Any] | None:
    """The sub-schema a simple printer-column JSONPath like `.spec.poolRef.name` points at."""
    node: Mapping[str, Any] = schema
    for part in json_path.strip(".").split("."):
        props = node.get("properties", {})
        if part not in props:
            return None
        node = props[part]
    return node


# ---------------------------------------------------------------------------------------------
# Container command lines
# ---------------------------------------------------------------------------------------------


def parse_flags(args: Sequence[str]) -> dict[str, list[str]]:
    """`--name value`, `--name=value` and `-v 1` into {name: [values...]} (repeatable flags)."""
    flags: dict[str, list[str]] = {}
    i = 0
    while i < len(args):
        token = args[i]
        if not token.startswith("-"):
            i += 1  # positional (the subcommand)
            continue
        name, eq, inline = token.partition("=")
        if eq:
            flags.setdefault(name, []).append(inline)
            i += 1
        elif i + 1 < len(args) and not args[i + 1].startswith("-"):
            flags.setdefault(name, []).append(args[i + 1])
            i += 2
        else:
            flags.setdefault(name, []).append("")
            i += 1
    return flags


def flag(args: Sequence[str], name: str) -> str:
    values = parse_flags(args).get(name, [])
    assert len(values) == 1, f"expected {name} once in {list(args)}, got {values}"
    return values[0]


def container(deployment: Doc, name: str | None = None) -> Doc:
    containers: list[Doc] = deployment["spec"]["template"]["spec"]["containers"]
    if name is None:
        assert len(containers) == 1, "expected a single container"
        return containers[0]
    return next(c for c in containers if c["name"] == name)


def container_port(c: Doc, port_name: str) -> int:
    ports: list[Doc] = c["ports"]
    return int(next(p["containerPort"] for p in ports if p["name"] == port_name))


def service_port(service: Doc, port_name: str) -> Doc:
    ports: list[Doc] = service["spec"]["ports"]
    return next(p for p in ports if p["name"] == port_name)
