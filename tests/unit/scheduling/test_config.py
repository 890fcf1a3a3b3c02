"""EndpointPickerConfig loading: shipped profiles load; mistakes name the plugin and key."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from extproc.errors import ConfigError
from extproc.scheduling.config import load_profile, parse_config, shipped_profiles
from extproc.scheduling.factory import build_scheduler, instantiate

from .builders import FakeDatastore, make_harness

HEAD = "apiVersion: inference.networking.x-k8s.io/v1alpha1\nkind: EndpointPickerConfig\n"
PROFILE = "schedulingProfiles:\n- name: p\n  plugins:\n  - {pluginRef: queue-scorer, weight: 2}\n"


@pytest.mark.parametrize("name", ["default", "reference-default", "legacy-v0.3"])
def test_shipped_profiles_load(name: str) -> None:
    config = load_profile(name)
    assert instantiate(config, random.Random(0))
    assert name in shipped_profiles()


def test_load_from_path(tmp_path: Path) -> None:
    path = tmp_path / "epp.yaml"
    path.write_text(HEAD + "plugins:\n- type: queue-scorer\n" + PROFILE)
    h = make_harness([])
    scheduler = build_scheduler(
        path,
        datastore=FakeDatastore([]),
        store=h.store,
        inflight=h.inflight,
        metrics=None,
        rng=random.Random(0),
    )
    assert scheduler.profile.name == "p"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param(
            HEAD + "plugins:\n- type: queue-scorer\n- type: random-picker\n"
            "- type: queue-scorer\n  name: q2\n  parameters: {maxx: 1}\n" + PROFILE,
            "epp.yaml: plugins[2] (queue-scorer): parameters: unknown field 'maxx'",
            id="unknown-parameter",
        ),
        pytest.param(
            HEAD + "plugins:\n- type: queue-scorer\n- type: nope-scorer\n" + PROFILE,
            "epp.yaml: plugins[1] (nope-scorer): unknown plugin type 'nope-scorer'",
            id="unknown-type",
        ),
        pytest.param(
            HEAD + "plugins:\n- type: queue-scorer\n  paramters: {}\n" + PROFILE,
            "epp.yaml: plugins[0] (queue-scorer): unknown field 'paramters'",
            id="unknown-plugin-key",
        ),
        pytest.param(
            HEAD + "plugins:\n- type: kv-cache-utilization-scorer\n" + PROFILE,
            "epp.yaml: schedulingProfiles[0] (p): plugins[0] (queue-scorer): pluginRef "
            "'queue-scorer' names no plugin",
            id="dangling-ref",
        ),
        pytest.param(
            HEAD + "plugins:\n- type: queue-scorer\nschedulingProfiles:\n- name: p\n  plugins:\n"
            "  - {pluginRef: queue-scorer, weight: -1}\n",
            "plugins[0] (queue-scorer).weight: -1 is below the minimum 0",
            id="negative-weight",
        ),
        pytest.param(
            HEAD + "plugins:\n- type: queue-scorer\nschedulingProfiles:\n- name: p\n  plugins:\n"
            "  - {pluginRef: queue-scorer, weight: heavy}\n",
            "plugins[0] (queue-scorer).weight: expected an integer or a number, got a string",
            id="weight-not-a-number",
        ),
        pytest.param(
            HEAD + "plugins:\n- type: random-picker\nschedulingProfiles:\n- name: p\n  plugins:\n"
            "  - {pluginRef: random-picker, weight: 2}\n",
            "plugins[0] (random-picker).weight: only scorers take a weight",
            id="weight-on-picker",
        ),
        pytest.param(
            HEAD + "plugins:\n- type: prefix-cache-scorer\n  parameters: {hashBlockSize: 0}\n"
            "schedulingProfiles:\n- name: p\n  plugins:\n  - {pluginRef: prefix-cache-scorer}\n",
            "plugins[0] (prefix-cache-scorer): parameters.hashBlockSize: 0 is below the minimum",
            id="parameter-out-of-range",
        ),
        pytest.param(
            HEAD + "plugins:\n- type: has-capacity-filter\n- type: decision-tree\n"
            "  parameters: {critical: [missing], nonCritical: []}\n"
            "schedulingProfiles:\n- name: p\n  plugins:\n  - {pluginRef: decision-tree}\n",
            "plugins[1] (decision-tree): parameters.critical: 'missing' is not a filter plugin",
            id="tree-unknown-filter",
        ),
        pytest.param(
            "apiVersion: v1\nkind: EndpointPickerConfig\nplugins: []\n" + PROFILE,
            "epp.yaml.apiVersion", id="wrong-api-version",
        ),
        pytest.param(HEAD + "plugins: []\nschedulingProfiles: []\n",
                     "at least one profile", id="no-profile"),
        pytest.param(HEAD + "plugins: [\n", "not valid YAML", id="bad-yaml"),
        pytest.param(
            HEAD + "plugins:\n- type: queue-scorer\n" + PROFILE
            + "saturationDetector: {queueDepth: 3}\n",
            "epp.yaml.saturationDetector: unknown field 'queueDepth'", id="saturation-key",
        ),
        pytest.param(
            HEAD + "plugins:\n- type: queue-scorer\nschedulingProfiles:\n- name: p\n  plugins:\n"
            "  - {pluginRef: queue-scorer, weight: .inf}\n",
            "plugins[0] (queue-scorer).weight: must be a finite number, got inf",
            id="infinite-weight",
        ),
        pytest.param(
            HEAD + "plugins:\n- type: queue-scorer\n" + PROFILE
            + "saturationDetector: {kvCacheUtilThreshold: .nan}\n",
            "epp.yaml.saturationDetector.kvCacheUtilThreshold: must be a finite number",
            id="saturation-kv-nan",
        ),
        pytest.param(
            HEAD + "plugins:\n- type: queue-scorer\n" + PROFILE
            + "saturationDetector: {kvCacheUtilThreshold: -0.5}\n",
            "saturationDetector.kvCacheUtilThreshold: -0.5 is below the minimum 0",
            id="saturation-kv-negative",
        ),
        pytest.param(
            HEAD + "plugins:\n- type: queue-scorer\n- type: has-capacity-filter\n"
            "  parameters: {kvCacheThreshold: 1.5}\n" + PROFILE,
            "plugins[1] (has-capacity-filter): parameters.kvCacheThreshold: 1.5 is above the "
            "maximum 1", id="capacity-kv-above-one",
        ),
        pytest.param(
            HEAD + "plugins:\n- type: queue-scorer\nschedulingProfiles:\n- name: p\n  plugins:\n"
            "  - pluginRef: queue-scorer\n    weight: 2\n    weight: 0\n",
            "found duplicate key 'weight'", id="duplicate-key",
        ),
        pytest.param(
            HEAD + "plugins:\n- type: queue-scorer\nplugins:\n- type: kv-cache-utilization-scorer\n"
            + PROFILE, "found duplicate key 'plugins'", id="duplicate-section",
        ),
        pytest.param(
            HEAD + "plugins:\n- type: queue-scorer\n- type: random-picker\n- type: max-score-picker\n"
            "schedulingProfiles:\n- name: p\n  plugins:\n  - {pluginRef: queue-scorer}\n"
            "  - {pluginRef: random-picker}\n  - {pluginRef: max-score-picker}\n",
            "plugins[2] (max-score-picker): a second picker in profile 'p' (it has "
            "'random-picker' already)", id="two-pickers",
        ),
        pytest.param(
            HEAD + "plugins:\n- type: queue-scorer\n- type: random-picker\n" + PROFILE
            + "- name: b\n  plugins:\n  - {pluginRef: random-picker, weight: 3}\n",
            "schedulingProfiles[1] (b): plugins[0] (random-picker).weight: only scorers take a "
            "weight", id="unselected-profile-checked",
        ),
    ],
)  # fmt: skip
def test_invalid_configs_name_plugin_and_key(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        instantiate(parse_config(text, "epp.yaml"), random.Random(0))
        # Profile-level checks (weights on non-scorers) happen when the scheduler is built.
        h = make_harness([])
        build_scheduler(
            parse_config(text, "epp.yaml"),
            datastore=FakeDatastore([]),
            store=h.store,
            inflight=h.inflight,
            metrics=None,
            rng=random.Random(0),
        )
    assert message in str(info.value)


def test_unknown_profile_name() -> None:
    with pytest.raises(ConfigError, match="unknown scheduling profile 'nope'"):
        load_profile("nope")
