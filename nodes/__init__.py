"""The alert node: REST API, dispatcher and carrier adapters (see docs/architecture.md)."""
