"""Carrier adapters (clients of SMPP, SMTP and the voice call-control API) and, in ``sim/``, the
project's own carrier simulators speaking those protocols."""
