"""Render configuration from the Ansible roles' templates, so the lab and a real deployment share
one source of configuration. Role defaults (``defaults/main.yml``) are read first; the lab's values
override them; an undefined variable is an error, never an empty string."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jinja2
import yaml

ROLES_DIR = Path(__file__).resolve().parents[1] / "ansible" / "roles"


def role_defaults(role: str, roles_dir: Path = ROLES_DIR) -> dict[str, Any]:
    path = roles_dir / role / "defaults" / "main.yml"
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: defaults must be a mapping")
    return data


def _strict_tojson(value: Any) -> str:
    """JSON text, which is also a valid YAML scalar: quotes and backslashes in a secret stay
    intact. Unlike Jinja's own filter, an undefined value is an error here too."""
    if isinstance(value, jinja2.Undefined):
        value._fail_with_undefined_error()
    return json.dumps(value)


def render(role: str, template: str, values: dict[str, Any], roles_dir: Path = ROLES_DIR) -> str:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(roles_dir / role / "templates")),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        autoescape=False,  # noqa: S701 - configuration files, not HTML
    )
    env.filters["tojson"] = _strict_tojson
    context = {**role_defaults(role, roles_dir), **values}
    return env.get_template(template).render(**context)
