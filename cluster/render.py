"""Render one of the Ansible roles' templates outside Ansible, for unit tests of a template with
given values. Role defaults (``defaults/main.yml``) are read first and the given values override
them; a default that is itself a template (derived from the inventory, ``{{ ... }}``) is evaluated
against the values when it can be, and left out otherwise, so that a template using it without a
value fails. An undefined variable is an error, never an empty string. Deployments render with
Ansible itself (``ansible/``)."""

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
    return env.get_template(template).render(**_context(role_defaults(role, roles_dir), values))


def _context(defaults: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """Defaults under values; derived defaults evaluated against what is known (twice, for a
    default derived from another), dropped when they cannot be."""
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)  # noqa: S701
    derived = {k: v for k, v in defaults.items()
               if isinstance(v, str) and "{{" in v and k not in values}
    context = {k: v for k, v in defaults.items() if k not in derived}
    context.update(values)
    for _ in range(2):
        for name, text in list(derived.items()):
            try:
                context[name] = env.from_string(text).render(**context)
            except (jinja2.TemplateError, TypeError):
                continue
            del derived[name]
    return context
