"""Topology, coordination, the embedded lab and the operator CLI."""
