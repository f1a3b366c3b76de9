"""Failover drills: chaostoolkit experiments (``chaos/drills/*.yaml``) run safely against a real
cluster, measured in business terms and recorded in the continuity ledger (docs/drills.md)."""
