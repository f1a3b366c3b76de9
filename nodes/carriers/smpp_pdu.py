"""SMPP 3.4 PDUs for the SMPP adapter and the SMSC simulator, on aiosmpplib's codecs.

aiosmpplib ships no type information, so this module is the one typed boundary around it: the
rest of the code sees plain ints, strings and the frozen dataclasses below. Framing (reading a
PDU off a stream, checking its length) is done here too, because the library's header parser
raises on any command id or status it does not know, which a server must answer with a
generic_nack rather than crash on.

The idempotency reference travels in a vendor-specific TLV (``TLV_TENIR_REFERENCE``), since the
standard ``user_message_reference`` is a 16-bit integer; the acknowledgement rule a message asks
for travels in ``TLV_TENIR_ACK``. Both are plain ASCII octet strings.
"""

from __future__ import annotations

import asyncio
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import IntEnum
from typing import Any, Final

from aiosmpplib import protocol as _proto  # type: ignore[import-untyped]
from aiosmpplib import state as _state

HEADER_LEN: Final = 16
MAX_PDU_LEN: Final = 70_000  # message_payload may hold 64 KiB

TLV_RECEIPTED_MESSAGE_ID: Final = 0x001E
TLV_MESSAGE_STATE: Final = 0x0427
TLV_TENIR_REFERENCE: Final = 0x1501
TLV_TENIR_ACK: Final = 0x1502

MESSAGE_STATE_DELIVERED: Final = 2
ESM_CLASS_RECEIPT: Final = 0b00000100
REGISTERED_DELIVERY_RECEIPT: Final = 0b00000001
RESPONSE_BIT: Final = 0x80000000


class Command(IntEnum):
    GENERIC_NACK = 0x80000000
    BIND_RECEIVER = 0x00000001
    BIND_RECEIVER_RESP = 0x80000001
    BIND_TRANSMITTER = 0x00000002
    BIND_TRANSMITTER_RESP = 0x80000002
    SUBMIT_SM = 0x00000004
    SUBMIT_SM_RESP = 0x80000004
    DELIVER_SM = 0x00000005
    DELIVER_SM_RESP = 0x80000005
    UNBIND = 0x00000006
    UNBIND_RESP = 0x80000006
    BIND_TRANSCEIVER = 0x00000009
    BIND_TRANSCEIVER_RESP = 0x80000009
    ENQUIRE_LINK = 0x00000015
    ENQUIRE_LINK_RESP = 0x80000015


class Status(IntEnum):
    """The command_status values this project sends or interprets (SMPP 3.4 section 5.1.3)."""

    ROK = 0x00
    RINVMSGLEN = 0x01
    RINVCMDLEN = 0x02
    RINVCMDID = 0x03
    RINVBNDSTS = 0x04
    RALYBND = 0x05
    RSYSERR = 0x08
    RINVDSTADR = 0x0B
    RBINDFAIL = 0x0D
    RINVPASWD = 0x0E
    RINVSYSID = 0x0F
    RMSGQFUL = 0x14
    RSUBMITFAIL = 0x45
    RTHROTTLED = 0x58
    RX_T_APPN = 0x64
    RX_P_APPN = 0x65
    RUNKNOWNERR = 0xFF


def status_name(status: int) -> str:
    try:
        return f"ESME_{Status(status).name}"
    except ValueError:
        return f"0x{status:08x}"


class PduError(Exception):
    """A PDU that cannot be framed or decoded; ``header`` when the header itself was readable."""

    def __init__(self, problem: str, header: Header | None = None) -> None:
        super().__init__(problem)
        self.header = header


@dataclass(frozen=True)
class Header:
    length: int
    command_id: int
    status: int
    sequence: int

    @property
    def is_response(self) -> bool:
        return bool(self.command_id & RESPONSE_BIT)

    @property
    def command(self) -> Command | None:
        try:
            return Command(self.command_id)
        except ValueError:
            return None


def parse_header(data: bytes) -> Header:
    length, command_id, status, sequence = struct.unpack_from("!IIII", data)
    return Header(length, command_id, status, sequence)


async def read_pdu(reader: asyncio.StreamReader) -> tuple[Header, bytes]:
    """One whole PDU. ``IncompleteReadError`` at end of stream; :class:`PduError` when the
    command_length is impossible (the stream cannot be resynchronised after that)."""
    head = await reader.readexactly(HEADER_LEN)
    header = parse_header(head)
    if not HEADER_LEN <= header.length <= MAX_PDU_LEN:
        raise PduError(f"command_length {header.length} out of range", header)
    body = await reader.readexactly(header.length - HEADER_LEN) if header.length > HEADER_LEN \
        else b""
    return header, head + body


@dataclass(frozen=True)
class ShortMessage:
    """The body shared by submit_sm and deliver_sm. Addresses starting with ``+`` go as
    international ISDN numbers, other digit strings as ISDN numbers of unknown type, anything
    else as an alphanumeric sender id."""

    source: str
    destination: str
    text: str
    esm_class: int = 0
    registered_delivery: int = 0
    tlvs: Mapping[int, str | int] = field(default_factory=dict)

    @property
    def is_receipt(self) -> bool:
        return (self.esm_class & 0b00111100) >> 2 == 1

    @property
    def reference(self) -> str | None:
        value = self.tlvs.get(TLV_TENIR_REFERENCE)
        return value if isinstance(value, str) and value else None

    @property
    def receipted_message_id(self) -> str | None:
        value = self.tlvs.get(TLV_RECEIPTED_MESSAGE_ID)
        return value if isinstance(value, str) and value else None


@dataclass(frozen=True)
class BindRequest:
    command: Command
    system_id: str
    password: str
    system_type: str


def _phone_number(address: str) -> Any:
    number = address.removeprefix("+")
    if number.isdigit() and number != address:
        return _state.PhoneNumber(number, _state.TON.INTERNATIONAL, _state.NPI.ISDN)
    if number.isdigit():
        return _state.PhoneNumber(number, _state.TON.UNKNOWN, _state.NPI.ISDN)
    return _state.PhoneNumber(address, _state.TON.ALPHANUMERIC, _state.NPI.UNKNOWN)


def _address(phone: Any) -> str:
    number = str(phone.number)
    if int(phone.ton) == int(_state.TON.INTERNATIONAL) and number.isdigit():
        return "+" + number
    return number


def _encode_short_message(cls: Any, sequence: int, sm: ShortMessage) -> bytes:
    """GSM 03.38 when the text fits it, else UCS-2; characters UCS-2 cannot hold become '?'."""
    def build(encoding: str | None, errors: str) -> bytes:
        msg = cls(
            sequence_num=sequence,
            short_message=sm.text,
            source=_phone_number(sm.source),
            destination=_phone_number(sm.destination),
            esm_class=sm.esm_class,
            registered_delivery=sm.registered_delivery,
            optional_params=[_state.OptionalParam(tag, value) for tag, value in sm.tlvs.items()],
            encoding=encoding,
            error_handling=errors,
        )
        return bytes(msg.pdu())

    try:
        try:
            return build(None, "strict")
        except UnicodeError:
            return build("ucs2", "replace")
    except (ValueError, UnicodeError, struct.error) as exc:
        raise ValueError(f"cannot encode short message: {exc}") from exc


def encode_submit_sm(sequence: int, sm: ShortMessage) -> bytes:
    return _encode_short_message(_proto.SubmitSm, sequence, sm)


def encode_deliver_sm(sequence: int, sm: ShortMessage) -> bytes:
    return _encode_short_message(_proto.DeliverSm, sequence, sm)


def _lib_header(header: Header) -> Any:
    try:
        status = _state.SmppCommandStatus(header.status)
    except ValueError:
        status = _state.SmppCommandStatus.ESME_RUNKNOWNERR
    return _state.PduHeader(header.length, _state.SmppCommand(header.command_id), status,
                            header.sequence)


def decode_short_message(header: Header, pdu: bytes) -> ShortMessage:
    """The body of a submit_sm or deliver_sm."""
    if header.command not in (Command.SUBMIT_SM, Command.DELIVER_SM):
        raise PduError(f"not a submit_sm/deliver_sm: 0x{header.command_id:08x}", header)
    try:
        msg = _proto.SubmitSm.from_pdu(pdu, _lib_header(header), default_encoding="gsm0338")
    except Exception as exc:  # the library raises anything from IndexError to LookupError
        raise PduError(f"undecodable short message body: {exc!r}", header) from exc
    tlvs: dict[int, str | int] = {}
    for param in msg.optional_params or []:
        if isinstance(param.value, (str, int)):
            tlvs[int(param.tag)] = param.value
    return ShortMessage(
        source=_address(msg.source),
        destination=_address(msg.destination),
        text=str(msg.short_message or msg.message_payload),
        esm_class=int(msg.esm_class),
        registered_delivery=int(msg.registered_delivery),
        tlvs=tlvs,
    )


def encode_bind_transceiver(sequence: int, system_id: str, password: str,
                            system_type: str = "") -> bytes:
    msg = _proto.BindTransceiver(sequence_num=sequence, system_id=system_id, password=password,
                                 system_type=system_type)
    return bytes(msg.pdu())


def decode_bind(header: Header, pdu: bytes) -> BindRequest:
    command = header.command
    if command not in (Command.BIND_TRANSCEIVER, Command.BIND_TRANSMITTER,
                       Command.BIND_RECEIVER):
        raise PduError(f"not a bind: 0x{header.command_id:08x}", header)
    try:
        msg = _proto.BindTransceiver.from_pdu(pdu, _lib_header(header))
    except Exception as exc:
        raise PduError(f"undecodable bind body: {exc!r}", header) from exc
    return BindRequest(command, str(msg.system_id), str(msg.password), str(msg.system_type))


_BIND_RESP: Final[dict[Command, Any]] = {
    Command.BIND_TRANSCEIVER: _proto.BindTransceiverResp,
    Command.BIND_TRANSMITTER: _proto.BindTransmitterResp,
    Command.BIND_RECEIVER: _proto.BindReceiverResp,
}


def encode_bind_resp(request: Command, sequence: int, status: int, system_id: str) -> bytes:
    cls = _BIND_RESP[request]
    msg = cls(sequence_num=sequence, command_status=_state.SmppCommandStatus(status),
              system_id=system_id if status == Status.ROK else "")
    return bytes(msg.pdu())


def decode_bind_resp(header: Header, pdu: bytes) -> str:
    """The SMSC's system_id from a bind_*_resp (empty when the bind was refused)."""
    if header.length <= HEADER_LEN:
        return ""
    try:
        msg = _proto.BindTransceiverResp.from_pdu(pdu, _lib_header(header))
    except Exception as exc:
        raise PduError(f"undecodable bind response: {exc!r}", header) from exc
    return str(msg.system_id)


def encode_submit_sm_resp(sequence: int, status: int, message_id: str) -> bytes:
    if status != Status.ROK:  # SMPP 3.4 4.4.2: no body when command_status is non-zero
        return struct.pack("!IIII", HEADER_LEN, Command.SUBMIT_SM_RESP, status, sequence)
    msg = _proto.SubmitSmResp(sequence_num=sequence, message_id=message_id)
    return bytes(msg.pdu())


def decode_message_id(header: Header, pdu: bytes) -> str:
    """The message_id of a submit_sm_resp (empty when absent)."""
    if header.length <= HEADER_LEN:
        return ""
    try:
        msg = _proto.SubmitSmResp.from_pdu(pdu, _lib_header(header))
    except Exception as exc:
        raise PduError(f"undecodable submit_sm_resp: {exc!r}", header) from exc
    return str(msg.message_id).rstrip("\x00")


def encode_deliver_sm_resp(sequence: int, status: int = Status.ROK) -> bytes:
    msg = _proto.DeliverSmResp(sequence_num=sequence,
                               command_status=_state.SmppCommandStatus(status))
    return bytes(msg.pdu())


_SIMPLE: Final[dict[Command, Any]] = {
    Command.ENQUIRE_LINK: _proto.EnquireLink,
    Command.ENQUIRE_LINK_RESP: _proto.EnquireLinkResp,
    Command.UNBIND: _proto.Unbind,
    Command.UNBIND_RESP: _proto.UnbindResp,
    Command.GENERIC_NACK: _proto.GenericNack,
}


def encode_simple(command: Command, sequence: int, status: int = Status.ROK) -> bytes:
    """A body-less PDU: enquire_link(_resp), unbind(_resp), generic_nack."""
    cls = _SIMPLE[command]
    try:
        lib_status = _state.SmppCommandStatus(status)
    except ValueError:
        lib_status = _state.SmppCommandStatus.ESME_RUNKNOWNERR
    return bytes(cls(sequence_num=sequence, command_status=lib_status).pdu())


# -- delivery receipts --------------------------------------------------------------------------

def receipt_text(message_id: str, stat: str, err: int, text: str, submitted: datetime,
                 done: datetime) -> str:
    """The de-facto standard receipt text (SMPP 3.4 appendix B)."""
    return (f"id:{message_id} sub:001 dlvrd:{1 if stat == 'DELIVRD' else 0:03d} "
            f"submit date:{submitted:%y%m%d%H%M} done date:{done:%y%m%d%H%M} "
            f"stat:{stat} err:{err:03d} text:{text[:20]}")


_RECEIPT_FIELD = re.compile(r"\b(id|sub|dlvrd|submit date|done date|stat|err):(\S*)", re.I)
_RECEIPT_TEXT = re.compile(r"\btext:(.*)$", re.I | re.S)


def parse_receipt_text(text: str) -> dict[str, str]:
    """Fields of a receipt text, keys lower-cased; tolerant of missing or reordered fields."""
    m = _RECEIPT_TEXT.search(text)
    head = text[: m.start()] if m else text
    fields = {f.group(1).lower(): f.group(2) for f in _RECEIPT_FIELD.finditer(head)}
    if m:
        fields["text"] = m.group(1)
    return fields
