"""Log redaction on adversarial strings: the node's redaction (``nodes/redaction.py``) beside the
one it replaced (the regexes of commit 5e67832, kept here as the reference), for inputs of 2 to
16 KB shaped for the old patterns' worst case ('a-a-a-...', which a request path can be) and a
plain string of the same size. Prints milliseconds per call and the ratio; the old one grows with
the square of the length, the new one linearly (and cuts at 2 KiB in the logs anyway; here the
cut is lifted to compare the scans themselves). Results go to bench/results/.

Usage: .venv/bin/python bench/redaction.py
"""

from __future__ import annotations

import json
import re
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from nodes.redaction import redact  # noqa: E402

# The reference: the secret key=value pattern the node used before (quadratic on 'a-a-a-...').
_OLD_SENSITIVE = r"(?:password|passwd|pwd|secret|token|api[_-]?key|authorization|credentials?)"
_OLD_SECRET_KV = re.compile(r"(?i)(\b[\w-]*" + _OLD_SENSITIVE + r"[\w-]*[\"']?\s*[=:]\s*)"
                            r"(\"[^\"]*\"|'[^']*'|[^\s,;&\"'}]+)")


def old_redact(text: str) -> str:
    return _OLD_SECRET_KV.sub(lambda m: m.group(1) + "[REDACTED]", text)


def per_call_ms(fn: object, text: str, runs: int) -> float:
    started = time.perf_counter()
    for _ in range(runs):
        fn(text)  # type: ignore[operator]
    return (time.perf_counter() - started) / runs * 1000


def main() -> None:
    rows = []
    print(f"{'input':<22} {'old ms':>10} {'new ms':>10} {'old/new':>9}")
    for size in (2048, 4096, 8192, 16384):
        for shape, text in (("a-a-a-... (worst)", "a-" * (size // 2)), ("plain", "x" * size)):
            runs = 3 if shape != "plain" else 50
            old = per_call_ms(old_redact, text, runs)
            new = per_call_ms(lambda t: redact(t, limit=10**6), text, 50)
            rows.append({"size": size, "shape": shape, "old_ms": old, "new_ms": new})
            print(f"{shape + ' ' + str(size):<22} {old:>10.2f} {new:>10.3f} {old / new:>9.0f}x")
    out = REPO / "bench" / "results" / f"redaction-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.write_text(json.dumps(rows, indent=2))
    print(f"saved {out.relative_to(REPO)}")


if __name__ == "__main__":
    main()
