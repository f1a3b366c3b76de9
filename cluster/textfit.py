"""Output that fits the screen: every line the CLI prints is at most 80 columns (fewer on a
narrower terminal); a longer line is wrapped at spaces, its continuation indented under it."""

from __future__ import annotations

import os
import re
import sys
import textwrap
from collections.abc import Iterable
from typing import TextIO

MAX_WIDTH = 80
_NBSP = "\u00a0"
_QUANTITY = re.compile(r"(\d) (s|ms|min|h|bytes|batches)\b")  # "12.1 s" is not split


def output_width(stream: TextIO | None = None) -> int:
    """80, or the terminal's width if ``stream`` is a narrower terminal."""
    stream = stream if stream is not None else sys.stdout
    try:
        if stream.isatty():
            return max(20, min(MAX_WIDTH, os.get_terminal_size(stream.fileno()).columns))
    except (OSError, ValueError, AttributeError):
        pass
    return MAX_WIDTH


def wrap(line: str, width: int = MAX_WIDTH) -> list[str]:
    """``line`` as lines of at most ``width`` columns; continuations are indented 4 columns more
    than the line's own indent."""
    if len(line) <= width:
        return [line]
    indent = line[: len(line) - len(line.lstrip(" "))]
    more = indent + "    "
    if len(more) >= width // 2:
        more = "    "
    glued = _QUANTITY.sub(rf"\1{_NBSP}\2", line)
    parts = textwrap.wrap(glued, width=width, subsequent_indent=more, break_on_hyphens=False)
    return [p.replace(_NBSP, " ") for p in parts] or [line[:width]]


def fit(lines: Iterable[str], width: int = MAX_WIDTH) -> list[str]:
    out: list[str] = []
    for line in lines:
        for part in line.split("\n"):
            out += wrap(part, width)
    return out


def echo(text: str | Iterable[str], stream: TextIO | None = None) -> None:
    """Print ``text`` (a string or lines) to ``stream`` (stdout), fitted to its width."""
    stream = stream if stream is not None else sys.stdout
    lines = [text] if isinstance(text, str) else list(text)
    for line in fit(lines, output_width(stream)):
        print(line, file=stream, flush=True)
