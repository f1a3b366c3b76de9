"""The clear-text judge of the TLS lab test (``tests/capture.py``): a connection opened before
the capture shows TLS application records first and is TLS; an SMPP bind or an HTTP request in
clear stays clear (the lab test once flagged the long-lived SMPP sessions); a connection whose
first captured segment is the middle of a TLS record is not taken for clear text (CI once
flagged a PostgreSQL pool connection so)."""

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


def opened_before(client: tuple[bytes, ...], server: tuple[bytes, ...]) -> Stream:
    return Stream("10.0.0.11:51104", "10.0.0.21:5432", client[0] if client else b"",
                  server[0] if server else b"", client[1] if len(client) > 1 else b"",
                  opened_in_capture=False, client_segments=client, server_segments=server)


MIDDLE_OF_A_RECORD = bytes.fromhex("64c3b1e2a0680ec334f1e2d4677b") * 8


def test_a_session_seen_from_the_middle_of_a_record_is_tls_once_a_record_starts() -> None:
    assert opened_before((APP_RECORD,), (MIDDLE_OF_A_RECORD, APP_RECORD)).verdict == "tls"
    # judged as if opened in the capture, the same first bytes read as clear
    strict = Stream("10.0.0.11:51104", "10.0.0.21:5432", MIDDLE_OF_A_RECORD, b"", b"")
    assert strict.verdict == "clear"


def test_a_session_seen_only_in_the_middle_of_records_is_not_called_clear() -> None:
    assert opened_before((), (MIDDLE_OF_A_RECORD,)).verdict == "mid-stream"


def test_text_in_a_session_opened_before_the_capture_is_clear() -> None:
    query = b"Q\x00\x00\x00\x2aSELECT state FROM campaigns WHERE id = 7\x00"
    assert opened_before((query,), (MIDDLE_OF_A_RECORD,)).verdict == "clear"
    assert opened_before((APP_RECORD,), (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n",)
                         ).verdict == "clear"
