"""Exit 0 once GET URL answers 200 (Patroni's /health: PostgreSQL runs), 1 after TIMEOUT seconds.
Run by the unit's ExecStartPost so that `systemctl restart` returns only when this member's
PostgreSQL runs again, and a rolling restart never stops both members at once."""

import sys
import time
import urllib.error
import urllib.request

url, timeout = sys.argv[1], float(sys.argv[2])
deadline = time.monotonic() + timeout
while time.monotonic() < deadline:
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:  # noqa: S310 - a fixed http URL
            if answer.status == 200:
                sys.exit(0)
    except (urllib.error.URLError, OSError):
        pass
    time.sleep(0.5)
print(f"{url} did not answer 200 within {timeout:.0f} s", file=sys.stderr)
sys.exit(1)
