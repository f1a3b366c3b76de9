"""Exit 0 once GET URL answers 200 (Patroni's /health: PostgreSQL runs), 1 after TIMEOUT seconds;
an https URL is verified with the CA file given third.
Run by the unit's ExecStartPost so that `systemctl restart` returns only when this member's
PostgreSQL runs again, and a rolling restart never stops both members at once."""

import ssl
import sys
import time
import urllib.error
import urllib.request

url, timeout = sys.argv[1], float(sys.argv[2])
context = ssl.create_default_context(cafile=sys.argv[3]) if len(sys.argv) > 3 else None
deadline = time.monotonic() + timeout
while time.monotonic() < deadline:
    try:
        with urllib.request.urlopen(url, timeout=2,  # noqa: S310 - a fixed URL
                                    context=context) as answer:
            if answer.status == 200:
                sys.exit(0)
    except (urllib.error.URLError, OSError):
        pass
    time.sleep(0.5)
print(f"{url} did not answer 200 within {timeout:.0f} s", file=sys.stderr)
sys.exit(1)
