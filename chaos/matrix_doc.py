"""The chaos matrix's table in ``docs/chaos.md``: ``tenir chaos matrix --doc docs/chaos.md``
rewrites what lies between the two markers, and nothing else."""

from __future__ import annotations

from collections.abc import Sequence

BEGIN = "<!-- chaos-matrix: begin (written by tenir chaos matrix; do not edit) -->"
END = "<!-- chaos-matrix: end -->"


class MarkerError(ValueError):
    pass


def section(table: Sequence[str], date: str, commit: str, runs: int, failed: int,
            command: str) -> list[str]:
    verdict = "every run valid" if not failed else f"{failed} of {runs} runs NOT valid"
    return [BEGIN, "", f"Run on {date} at commit `{commit}` ({runs} runs, {verdict}): "
            f"`{command}`.", "", "```", *table, "```", "", END]


def rewrite(text: str, lines: Sequence[str], source: str = "docs/chaos.md") -> str:
    """``text`` with the marked section replaced by ``lines`` (which carry the markers)."""
    if text.count(BEGIN) != 1 or text.count(END) != 1:
        raise MarkerError(f"{source}: needs exactly one line {BEGIN!r} and one {END!r}")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    if "\n" not in head and head:  # the marker must start its line
        raise MarkerError(f"{source}: {BEGIN!r} must start a line")
    return head + "\n".join(lines) + tail
