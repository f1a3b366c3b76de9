"""The clear-text judge of the TLS lab test (``tests/capture.py``): a connection opened before
the capture shows TLS application records first and is TLS; an SMPP bind or an HTTP request in
clear stays clear (the lab test once flagged the long-lived SMPP sessions)."""

from __future__ import annotations

import pytest

from tests.capture import Stream

pytestmark = pytest.mark.unit

APP_RECORD = bytes.fromhex("170303004a") + b"\x8f" * 74
HELLO = bytes.fromhex("160301012c") + b"\x01" * 32


def stream(client: bytes, server: bytes = b"", second: bytes = b"") -> Stream:
    return Stream("10.0.0.1:4000", "10.0.0.2:2775", client, server, second)


def test_a_session_opened_before_the_capture_is_tls() -> None:
    assert stream(APP_RECORD, APP_RECORD).verdict == "tls"
    assert stream(HELLO).verdict == "tls"


def test_clear_protocols_stay_clear() -> None:
    smpp_bind = bytes.fromhex("0000002f00000002000000000000000174656e6972")
    assert stream(smpp_bind).verdict == "clear"
    assert stream(b"POST /api/v1/campaigns HTTP/1.1\r\n").verdict == "clear"
    # a TLS-looking client but a clear server answer is not taken for TLS
    assert stream(APP_RECORD, b"HTTP/1.1 200 OK\r\n").verdict == "clear"
