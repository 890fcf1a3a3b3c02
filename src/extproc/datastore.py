"""The live view of one InferencePool: its object, Ready endpoints and InferenceModels.

Writers (static config, Kubernetes watchers) replace whole immutable values; readers on the
request path never see a half-applied change and never take a lock.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable

from extproc.api.v1alpha2 import InferenceModel, InferencePool
from extproc.endpoints import Endpoint
from extproc.models import ModelTable, ResolvedModel

EndpointListener = Callable[[tuple[Endpoint, ...]], None]


class Datastore:
    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._pool: InferencePool | None = None
        self._endpoints: tuple[Endpoint, ...] = ()
        self._model_objects: dict[tuple[str, str], InferenceModel] = {}
        self._models = ModelTable((), rng)
        self._listeners: list[EndpointListener] = []

    # -- pool -------------------------------------------------------------------------------
    def pool(self) -> InferencePool | None:
        return self._pool

    def set_pool(self, pool: InferencePool | None) -> None:
        self._pool = pool
        if pool is None:
            self.set_endpoints(())
            self.replace_models(())

    # -- endpoints --------------------------------------------------------------------------
    def endpoints(self) -> tuple[Endpoint, ...]:
        return self._endpoints

    def set_endpoints(self, endpoints: Iterable[Endpoint]) -> None:
        new = tuple(sorted(set(endpoints), key=lambda e: e.address))
        if new == self._endpoints:
            return
        self._endpoints = new
        for listener in self._listeners:
            listener(new)

    def on_endpoints_changed(self, listener: EndpointListener) -> None:
        self._listeners.append(listener)

    # -- models -----------------------------------------------------------------------------
    def replace_models(self, models: Iterable[InferenceModel]) -> None:
        self._model_objects = {(m.namespace, m.name): m for m in models}
        self._models = ModelTable(self._model_objects.values(), self._rng)

    def upsert_model(self, model: InferenceModel) -> None:
        self._model_objects[(model.namespace, model.name)] = model
        self._models = ModelTable(self._model_objects.values(), self._rng)

    def delete_model(self, namespace: str, name: str) -> None:
        if self._model_objects.pop((namespace, name), None) is not None:
            self._models = ModelTable(self._model_objects.values(), self._rng)

    def models(self) -> ModelTable:
        return self._models

    def resolve_model(self, model_name: str) -> ResolvedModel | None:
        return self._models.resolve(model_name)
