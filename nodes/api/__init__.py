"""The alert node's REST API (aiohttp): contacts, groups, scenarios, campaigns, carrier
callbacks, probes, metrics and its OpenAPI document. See :func:`create_app`."""

from nodes.api.app import create_app
from nodes.api.spec import ROLES, Role

__all__ = ["ROLES", "Role", "create_app"]
