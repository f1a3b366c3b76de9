"""The drills' unit tests keep their runs' files in a temporary folder."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def drill_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "drills"
    monkeypatch.setenv("TENIR_DRILL_DIR", str(folder))
    return folder
