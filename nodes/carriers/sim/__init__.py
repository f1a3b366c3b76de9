"""Carrier simulators: one process per site speaking SMPP 3.4 (SMS), SMTP (e-mail) and an HTTP
call-control API (voice), with a control API to inject faults and a report of what was received.
Run with ``python -m nodes.carriers.sim --site paris ...`` (see ``__main__``)."""
