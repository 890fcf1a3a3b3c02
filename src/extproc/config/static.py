"""Static configuration for runs without Kubernetes.

One multi-document YAML file holds the objects exactly as they appear in Kubernetes manifests:

- one ``InferencePool`` (``inference.networking.x-k8s.io/v1alpha2``);
- any number of ``InferenceModel`` objects whose ``poolRef`` names that pool;
- one ``StaticEndpoints`` document (``extproc.local/v1alpha1``) listing the pool's endpoints,
  standing in for the Ready pods that Kubernetes would report::

      apiVersion: extproc.local/v1alpha1
      kind: StaticEndpoints
      metadata: {name: vllm-llama2-7b-pool}
      spec:
        poolRef: {name: vllm-llama2-7b-pool}
        endpoints:
          - {name: pod-0, address: "127.0.0.1:8000"}
          - {name: pod-1, address: "127.0.0.1"}   # port defaults to targetPortNumber

- any number of ``BackendTrafficPolicy`` objects (``gateway.envoyproxy.io/v1alpha1``) whose
  ``spec.circuitBreaker`` the xDS server (`extproc xds`) turns into Envoy circuit-breaker
  thresholds (see `extproc.envoyconf.policy`); the picker itself ignores them unless a
  scheduling plugin (``endpoint-capacity-filter``) reads them.

Documents of other kinds are rejected, so a typo cannot silently drop an object.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from extproc.api import v1alpha2 as api
from extproc.config.strict import Fields, load_yaml_all
from extproc.endpoints import Endpoint, parse_address
from extproc.envoyconf.policy import (
    POLICY_API_VERSION,
    POLICY_KIND,
    BackendTrafficPolicy,
    parse_policy,
)
from extproc.errors import ConfigError

STATIC_API_VERSION = "extproc.local/v1alpha1"
STATIC_ENDPOINTS_KIND = "StaticEndpoints"


@dataclass(frozen=True, slots=True, kw_only=True)
class StaticConfig:
    pool: api.InferencePool
    models: tuple[api.InferenceModel, ...]
    endpoints: tuple[Endpoint, ...]
    policies: tuple[BackendTrafficPolicy, ...] = ()


def load_static_config(path: Path) -> StaticConfig:
    """Read and validate `path`; raise ConfigError naming file, object and field."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    return parse_static_config(text, str(path))


def parse_static_config(text: str, source: str) -> StaticConfig:
    try:
        documents = [d for d in load_yaml_all(text) if d is not None]
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}") from exc

    pools: list[api.InferencePool] = []
    models: list[api.InferenceModel] = []
    endpoint_docs: list[tuple[str, str, Fields]] = []
    policies: list[BackendTrafficPolicy] = []
    seen: dict[tuple[str, str, str], int] = {}  # (kind, namespace, name) -> document number
    for index, doc in enumerate(documents):
        head = _read_head(doc, f"{source}: document {index + 1}", source, strict_metadata=True)
        key = (head.kind, head.namespace, head.name)
        if key in seen:  # as in the API server, a name is one object: the later would replace it
            raise ConfigError(
                f"{head.where}: a second {head.kind} named {head.name!r} "
                f"(the first is document {seen[key]})"
            )
        seen[key] = index + 1
        if head.kind == "InferencePool" and head.api_version == api.API_VERSION:
            pools.append(_pool(head.spec, head.name, head.namespace))
        elif head.kind == "InferenceModel" and head.api_version == api.API_VERSION:
            models.append(_model(head.spec, head.name, head.namespace, (head.created, index)))
        elif head.kind == STATIC_ENDPOINTS_KIND and head.api_version == STATIC_API_VERSION:
            endpoint_docs.append((head.where, head.name, head.spec))
        elif head.kind == POLICY_KIND and head.api_version == POLICY_API_VERSION:
            policies.append(
                parse_policy(head.spec, head.name, head.namespace, (head.created, index))
            )
        else:
            raise ConfigError(
                f"{head.where}: unsupported kind {head.kind!r} with apiVersion {head.api_version!r}"
            )

    if len(pools) != 1:
        raise ConfigError(f"{source}: expected exactly one InferencePool, found {len(pools)}")
    pool = pools[0]
    for model in models:
        if model.pool_name != pool.name:
            raise ConfigError(
                f"{source}: InferenceModel/{model.name}: spec.poolRef.name: "
                f"InferencePool {model.pool_name!r} is not defined in this file"
            )
    if len(endpoint_docs) > 1:
        raise ConfigError(f"{source}: expected at most one {STATIC_ENDPOINTS_KIND} document")
    endpoints: tuple[Endpoint, ...] = ()
    if endpoint_docs:
        where, _, spec = endpoint_docs[0]
        endpoints = _endpoints(spec, where, pool)
    return StaticConfig(
        pool=pool, models=tuple(models), endpoints=endpoints, policies=tuple(policies)
    )


def parse_pool(obj: object, where: str) -> api.InferencePool:
    """An InferencePool object as the API server returns it (metadata read leniently)."""
    head = _read_head(obj, where, where, strict_metadata=False, kind="InferencePool")
    return _pool(head.spec, head.name, head.namespace)


def parse_model(obj: object, where: str, order: int = 0) -> api.InferenceModel:
    """An InferenceModel object as the API server returns it (metadata read leniently).

    `order` breaks ties between objects with the same creationTimestamp (oldest wins).
    """
    head = _read_head(obj, where, where, strict_metadata=False, kind="InferenceModel")
    return _model(head.spec, head.name, head.namespace, (head.created, order))


@dataclass(frozen=True, slots=True)
class _Head:
    kind: str
    api_version: str
    name: str
    namespace: str
    created: str
    where: str
    spec: Fields


def _read_head(
    doc: object, where: str, source: str, *, strict_metadata: bool, kind: str | None = None
) -> _Head:
    """Read kind, apiVersion, metadata and spec of one object; `spec` is left to the caller.

    Static files are strict about metadata; objects from the API server carry many metadata
    fields (managedFields, ownerReferences, ...) that do not matter here. With `kind`, the
    object must be of that kind and of the v1alpha2 apiVersion (list items may omit both).
    """
    head = Fields(doc, where)
    if kind is None:
        doc_kind = head.string("kind")
        api_version = head.string("apiVersion")
    else:
        doc_kind = head.choice("kind", (kind,), kind)
        api_version = head.choice("apiVersion", (api.API_VERSION,), api.API_VERSION)
    meta = head.sub("metadata")
    assert meta is not None
    name = meta.string("name")
    namespace = meta.string("namespace", "default")
    created = meta.string("creationTimestamp", "")
    if strict_metadata:
        meta.ignore("labels", "annotations", "uid", "resourceVersion", "generation")
        meta.done()
    object_where = f"{source}: {doc_kind}/{name}"
    spec = head.sub("spec")
    assert spec is not None
    spec.where = f"{object_where}: spec"
    head.ignore("status")
    if strict_metadata:
        head.done()
    return _Head(doc_kind, api_version, name, namespace, created, object_where, spec)


def _pool(spec: Fields, name: str, namespace: str) -> api.InferencePool:
    selector = spec.str_map("selector")
    if not selector:
        raise ConfigError(f"{spec.where}.selector: must not be empty")
    port = spec.integer("targetPortNumber", lo=1, hi=65535)
    ref = spec.sub("extensionRef", required=False)
    extension_ref = None
    if ref is not None:
        extension_ref = api.ExtensionRef(
            name=ref.string("name"),
            group=ref.string("group", ""),
            kind=ref.string("kind", "Service"),
            port_number=ref.integer("portNumber", api.DEFAULT_EXTENSION_PORT, lo=1, hi=65535),
            failure_mode=ref.choice("failureMode", api.FAILURE_MODES, "FailClose"),
        )
        ref.done()
    spec.done()
    return api.InferencePool(
        name=name,
        namespace=namespace,
        selector=selector,
        target_port=port,
        extension_ref=extension_ref,
    )


def _model(spec: Fields, name: str, namespace: str, age: tuple[str, int]) -> api.InferenceModel:
    model_name = spec.string("modelName")
    if len(model_name) > api.MAX_MODEL_NAME_LENGTH:
        raise ConfigError(f"{spec.where}.modelName: longer than {api.MAX_MODEL_NAME_LENGTH}")
    criticality = spec.choice("criticality", api.CRITICALITIES, "Standard")
    raw_targets = spec.sequence("targetModels", [])
    if len(raw_targets) > api.MAX_TARGET_MODELS:
        raise ConfigError(f"{spec.where}.targetModels: at most {api.MAX_TARGET_MODELS} entries")
    targets = []
    for i, raw in enumerate(raw_targets):
        t = Fields(raw, f"{spec.where}.targetModels[{i}]")
        targets.append(
            api.TargetModel(
                name=t.string("name"),
                weight=t.integer("weight", None, lo=1, hi=api.MAX_TARGET_WEIGHT),
            )
        )
        t.done()
    weighted = [t.weight is not None for t in targets]
    if any(weighted) and not all(weighted):
        raise ConfigError(f"{spec.where}.targetModels: set weight on all targets or on none")
    ref = spec.sub("poolRef")
    assert ref is not None
    pool_name = ref.string("name")
    ref.choice("kind", ("InferencePool",), "InferencePool")
    ref.choice("group", (api.GROUP,), api.GROUP)
    ref.done()
    spec.done()
    return api.InferenceModel(
        name=name,
        namespace=namespace,
        model_name=model_name,
        criticality=criticality,
        target_models=tuple(targets),
        pool_name=pool_name,
        age_key=age,
    )


def _endpoints(spec: Fields, where: str, pool: api.InferencePool) -> tuple[Endpoint, ...]:
    ref = spec.sub("poolRef")
    assert ref is not None
    if ref.string("name") != pool.name:
        raise ConfigError(f"{where}: spec.poolRef.name: does not name InferencePool {pool.name!r}")
    ref.done()
    out: list[Endpoint] = []
    seen: set[str] = set()
    for i, raw in enumerate(spec.sequence("endpoints")):
        item = Fields(raw, f"{spec.where}.endpoints[{i}]")
        address = item.string("address")
        name = item.string("name", f"endpoint-{i}")
        item.done()
        try:
            ip, port = parse_address(address, pool.target_port)
        except ValueError as exc:
            raise ConfigError(f"{item.where}.address: {exc}") from None
        endpoint = Endpoint(name=name, ip=ip, port=port)
        if endpoint.address in seen:
            raise ConfigError(f"{item.where}.address: duplicate endpoint {endpoint.address}")
        seen.add(endpoint.address)
        out.append(endpoint)
    spec.done()
    return tuple(out)


def render_static_config(
    pool: Mapping[str, Any], models: Sequence[Mapping[str, Any]], endpoints: Sequence[Endpoint]
) -> str:
    """Write a static config file from manifest-shaped dicts (used by the local stack)."""
    pool_name = pool["metadata"]["name"]
    endpoint_doc = {
        "apiVersion": STATIC_API_VERSION,
        "kind": STATIC_ENDPOINTS_KIND,
        "metadata": {"name": pool_name},
        "spec": {
            "poolRef": {"name": pool_name},
            "endpoints": [{"name": e.name, "address": e.address} for e in endpoints],
        },
    }
    return yaml.safe_dump_all([pool, *models, endpoint_doc], sort_keys=False)
