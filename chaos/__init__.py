"""Chaos testing: faults paired with their heal, workloads that record each operation, checkers."""
