"""The clear-text judge of the TLS lab test (``tests/capture.py``): a connection opened in the
capture is TLS from its first handshake record, an SMPP bind or an HTTP request in clear stays
clear; a connection opened before the capture (the long-lived SMPP sessions, CI's PostgreSQL
pool connection seen from the middle of a TLS record) is judged by all its segments; and the
search of the raw capture finds a number in a clear submit_sm made by tenir's own encoders."""

from __future__ import annotations

import os

import pytest

from nodes.carriers import smpp_fast, smpp_pdu
from tests.capture import Stream, clear_numbers

pytestmark = pytest.mark.unit

APP_RECORD = bytes.fromhex("170303004a") + b"\x8f" * 74
HELLO = bytes.fromhex("160301012c") + b"\x01" * 32
MIDDLE_OF_A_RECORD = bytes.fromhex("64c3b1e2a0680ec334f1e2d4677b") * 8


def opened_in_capture(client: bytes, server: bytes = b"", second: bytes = b"") -> Stream:
    return Stream("10.0.0.1:4000", "10.0.0.2:2775", tuple(p for p in (client, second) if p),
                  (server,) if server else ())


def opened_before(client: tuple[bytes, ...], server: tuple[bytes, ...]) -> Stream:
    return Stream("10.0.0.11:51104", "10.0.0.21:5432", client, server, opened_in_capture=False)


def test_a_connection_opened_in_the_capture_is_tls_from_its_handshake() -> None:
    assert opened_in_capture(HELLO).verdict == "tls"
    request = bytes.fromhex("0000000804d2162f")  # PostgreSQL's SSLRequest, then TLS
    assert opened_in_capture(request, b"S", HELLO).verdict == "tls"
    assert opened_in_capture(request, b"N", b"Q\0\0\0\x0bSELECT 1").verdict == "clear"


def test_clear_protocols_stay_clear() -> None:
    smpp_bind = bytes.fromhex("0000002f00000002000000000000000174656e6972")
    assert opened_in_capture(smpp_bind).verdict == "clear"
    assert opened_in_capture(b"POST /api/v1/campaigns HTTP/1.1\r\n").verdict == "clear"
    # opened in the capture, application records first is not how TLS starts
    assert opened_in_capture(APP_RECORD, APP_RECORD).verdict == "clear"


def test_a_session_opened_before_the_capture_is_tls_once_a_record_starts_each_side() -> None:
    assert opened_before((APP_RECORD,), (APP_RECORD,)).verdict == "tls"
    assert opened_before((APP_RECORD,), (MIDDLE_OF_A_RECORD, APP_RECORD)).verdict == "tls"
    # judged as if opened in the capture, the same first bytes read as clear
    assert opened_in_capture(MIDDLE_OF_A_RECORD).verdict == "clear"


def test_a_session_seen_only_in_the_middle_of_records_is_not_called_clear() -> None:
    assert opened_before((), (MIDDLE_OF_A_RECORD,)).verdict == "mid-stream"


def test_text_in_a_session_opened_before_the_capture_is_clear() -> None:
    query = b"Q\x00\x00\x00\x2aSELECT state FROM campaigns WHERE id = 7\x00"
    assert opened_before((query,), (MIDDLE_OF_A_RECORD,)).verdict == "clear"
    assert opened_before((APP_RECORD,), (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n",)
                         ).verdict == "clear"
    # a TLS-looking client but a clear server answer is not taken for TLS
    assert opened_before((APP_RECORD,), (b"HTTP/1.1 200 OK\r\n\r\n",)).verdict == "clear"


@pytest.mark.parametrize("number", ["+33639000042", "33639000042"])
def test_a_clear_submit_sm_shows_its_number_in_the_raw_capture(number: str) -> None:
    sm = smpp_pdu.ShortMessage(source="TENIR", destination=number, text="Alerte")
    fast = smpp_fast.encode_submit_sm(sm)
    assert fast is not None
    for pdu in (fast, smpp_pdu.encode_submit_sm(7, sm)):
        assert clear_numbers(b"\xd4\xc3\xb2\xa1" + os.urandom(64) + pdu) == [b"33639000042"]
    # a megabyte of ciphertext-like bytes holds no such run of digits
    assert clear_numbers(os.urandom(1 << 20)) == []
