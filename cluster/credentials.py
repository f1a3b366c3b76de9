"""Where the CLI finds a secret: an environment variable (production: the operator exports it
from the vault), else the lab's generated secrets (``Layout.load_secrets``), else nothing."""

from __future__ import annotations

import os


def secret(env: str, lab_key: str) -> str | None:
    """``$env`` when set and not empty, else the lab's secret ``lab_key``, else None."""
    given = os.environ.get(env)
    if given:
        return given
    from cluster.lab.layout import Layout, lab_dir

    found = (Layout(lab_dir()).load_secrets() or {}).get(lab_key)
    return found or None
