"""Re-reading the static config file: changes apply, invalid edits keep the last good config."""

from __future__ import annotations

import os
from pathlib import Path

from extproc.config.reload import FileChanges, StaticConfigReloader
from extproc.config.static import StaticConfig
from tests.unit.config.test_static import ENDPOINTS, MODEL, POOL


def _write(path: Path, text: str, bump: int) -> None:
    path.write_text(text)
    st = path.stat()
    # Same-second rewrites of the same size must still count as changes.
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + bump))


def test_file_changes_fire_once_per_modification(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("a")
    changes = FileChanges(path)
    assert not changes.changed()
    _write(path, "b", 1_000_000)
    assert changes.changed()
    assert not changes.changed()
    path.unlink()
    assert not changes.changed()  # a missing file is not a change to apply


def test_reload_applies_valid_edits_and_keeps_the_last_good(tmp_path: Path) -> None:
    path = tmp_path / "picker.yaml"
    path.write_text("---\n".join([POOL, MODEL, ENDPOINTS]))
    applied: list[StaticConfig] = []
    reloader = StaticConfigReloader(path, applied.append, interval=0.01)
    assert not reloader.poll()

    one_endpoint = ENDPOINTS.replace(', {address: "10.0.0.2"}', "")
    _write(path, "---\n".join([POOL, MODEL, one_endpoint]), 1_000_000)
    assert reloader.poll()
    assert [e.address for e in applied[-1].endpoints] == ["10.0.0.1:9000"]

    _write(path, "---\n".join([POOL.replace("8000", "0"), MODEL, ENDPOINTS]), 2_000_000)
    assert not reloader.poll()  # rejected: logged, nothing applied
    assert len(applied) == 1
