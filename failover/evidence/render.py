"""The report as HTML (Jinja2, ``templates/report.html.j2``) and PDF (WeasyPrint renders that
HTML: pango lays the text out, the timeline SVGs are drawn by its SVG engine)."""

from __future__ import annotations

import json
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

FORMATS = ("json", "html", "pdf")


def to_json(report: dict[str, Any]) -> bytes:
    return (json.dumps(report, indent=2, ensure_ascii=False) + "\n").encode()


def to_html(report: dict[str, Any]) -> str:
    env = Environment(loader=PackageLoader("failover.evidence", "templates"),
                      autoescape=select_autoescape(["html", "j2"]), undefined=StrictUndefined)
    return env.get_template("report.html.j2").render(r=report)


def to_pdf(report: dict[str, Any]) -> bytes:
    from weasyprint import HTML

    return bytes(HTML(string=to_html(report)).write_pdf())


def render(report: dict[str, Any], fmt: str) -> bytes:
    if fmt == "json":
        return to_json(report)
    if fmt == "html":
        return to_html(report).encode()
    if fmt == "pdf":
        return to_pdf(report)
    raise ValueError(f"format must be one of {', '.join(FORMATS)}")
