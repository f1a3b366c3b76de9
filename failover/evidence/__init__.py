"""Continuity evidence: the append-only ledger, its RFC 6962 tree, signed checkpoints with a
witness cosignature, DSSE drill and incident records, bundles an auditor verifies offline, and
the reports mapped to NIS 2 / CIR 2024/2690 / ISO 22301. See docs/evidence.md."""
