"""Fast paths for the two PDUs an SMS campaign sends and receives per message: submit_sm out,
its delivery receipt in. aiosmpplib's codecs build an object graph per PDU (measured with
py-spy: about a quarter of an alert node's CPU); these build and read the bytes directly,
for the common case only, and say None otherwise so that the caller uses the library:

* :func:`encode_submit_sm`: a text whose every character is a single GSM 03.38 septet of the
  default alphabet (data_coding 0, one octet per character, as the library sends it), at
  most ``MAX_FAST_TEXT`` characters, TLVs that are ASCII strings. The table comes from the
  library itself at first use, and ``tests/unit/test_smpp_fast.py`` checks that both give the
  same bytes.
* :func:`read_receipt`: a deliver_sm receipt that carries the reference, receipted_message_id
  and message_state TLVs (the simulators and most SMSCs do); its text is not decoded.

Encoded PDUs carry sequence number 0: :func:`with_sequence` sets it when the PDU is sent.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import Final

from nodes.carriers import smpp_pdu as pdu

MAX_FAST_TEXT: Final = 160
_HEAD = struct.Struct("!IIII")
_CANDIDATES: Final = "".join(chr(c) for c in range(32, 127)) + "\n\réèùìòÇØøÅåÄÖÑÜäöñüàÉ§¿¡£¥"
_table: dict[str, int] | None = None


def _gsm_table() -> dict[str, int]:
    """character -> its single default-alphabet octet, as the library encodes it."""
    global _table
    if _table is None:
        table = {}
        for ch in _CANDIDATES:
            raw = pdu.encode_submit_sm(0, pdu.ShortMessage(source="A", destination="1", text=ch))
            # data_coding and sm_length sit just before the message octets, at the end here
            if raw[-3] == 0 and raw[-2] == 1:
                table[ch] = raw[-1]
        _table = table
    return _table


def _plain(address: str) -> bool:
    """An address the fast path encodes as the library does: an E.164-long number or an
    alphanumeric sender id of at most 11 characters; the library judges anything else."""
    number = address.removeprefix("+")
    return address.isascii() and 0 < len(number) <= (15 if number.isdigit() else 11)


def _address(address: str) -> bytes:
    number = address.removeprefix("+")
    if number.isdigit() and number != address:
        ton, npi = 1, 1
    elif number.isdigit():
        ton, npi = 0, 1
    else:
        ton, npi, number = 5, 0, address
    return bytes((ton, npi)) + number.encode("ascii") + b"\0"


def encode_submit_sm(sm: pdu.ShortMessage) -> bytes | None:
    """The submit_sm of ``sm`` with sequence 0, or None when the fast path does not apply."""
    table = _gsm_table()
    text = sm.text
    if not 0 < len(text) <= MAX_FAST_TEXT or not _plain(sm.source) \
            or not _plain(sm.destination):
        return None
    try:
        message = bytes([table[c] for c in text])
    except KeyError:
        return None
    tlvs = bytearray()
    for tag, value in sm.tlvs.items():
        if not isinstance(value, str) or not value.isascii():
            return None
        raw = value.encode("ascii")
        tlvs += struct.pack("!HH", tag, len(raw)) + raw
    body = (b"\0" + _address(sm.source) + _address(sm.destination)
            + bytes((sm.esm_class, 0, 0)) + b"\0\0"
            + bytes((sm.registered_delivery, 0, 0, 0, len(message))) + message + bytes(tlvs))
    return _HEAD.pack(16 + len(body), pdu.Command.SUBMIT_SM, 0, 0) + body


def with_sequence(encoded: bytes, sequence: int) -> bytes:
    out = bytearray(encoded)
    struct.pack_into("!I", out, 12, sequence)
    return bytes(out)


def _cstring(raw: bytes, at: int) -> int:
    """The offset after the NUL-terminated string that starts at ``at``."""
    end = raw.index(b"\0", at)
    return end + 1


def read_receipt(raw: bytes) -> tuple[str, str, int] | None:
    """(reference, receipted message id, message_state) of a deliver_sm receipt that carries
    all three as TLVs; None for anything else (the caller decodes it fully)."""
    try:
        at = _cstring(raw, 16)  # service_type
        at = _cstring(raw, at + 2)  # source ton, npi, address
        at = _cstring(raw, at + 2)  # destination ton, npi, address
        esm_class = raw[at]
        if (esm_class & 0b00111100) >> 2 != 1:
            return None
        at = _cstring(raw, at + 3)  # esm_class, protocol_id, priority; schedule_delivery_time
        at = _cstring(raw, at)  # validity_period
        # registered_delivery, replace_if_present, data_coding, sm_default_msg_id, sm_length
        at += 5 + raw[at + 4]
        tlvs: dict[int, bytes] = {}
        while at + 4 <= len(raw):
            tag, length = struct.unpack_from("!HH", raw, at)
            tlvs[tag] = raw[at + 4:at + 4 + length]
            at += 4 + length
    except (ValueError, IndexError, struct.error):
        return None
    return _receipt_fields(tlvs)


def _receipt_fields(tlvs: Mapping[int, bytes]) -> tuple[str, str, int] | None:
    ref = tlvs.get(pdu.TLV_TENIR_REFERENCE)
    mid = tlvs.get(pdu.TLV_RECEIPTED_MESSAGE_ID)
    state = tlvs.get(pdu.TLV_MESSAGE_STATE)
    if not ref or not mid or state is None or len(state) != 1:
        return None
    try:
        return (ref.rstrip(b"\0").decode("ascii"), mid.rstrip(b"\0").decode("ascii"), state[0])
    except UnicodeDecodeError:
        return None
