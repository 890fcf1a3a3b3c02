"""docs/plugins.md: every registered plugin documented, and the committed file current."""

from __future__ import annotations

from extproc.scheduling.registry import REGISTRY
from extproc.tools import gen_plugin_docs


def test_every_registered_plugin_has_a_documented_section() -> None:
    text = gen_plugin_docs.render()
    for kind, factory in REGISTRY.items():
        assert gen_plugin_docs.plugin_class(kind, factory).__doc__
        assert f"### `{kind}`" in text


def test_the_committed_reference_is_current() -> None:
    assert gen_plugin_docs.OUTPUT.read_text() == gen_plugin_docs.render(), (
        "docs/plugins.md is stale: run `make plugin-docs`"
    )
