"""SMS carrier adapter: an SMPP 3.4 ESME (client) bound as a transceiver.

Written on aiosmpplib's PDU codecs (:mod:`.smpp_pdu`) rather than its ``ESME`` class: the ESME is
queue-and-hook driven (``send`` would return before the carrier answered, the answer arriving in
a hook to be correlated by hand), starts untracked tasks and owns its reconnect loop; the
contract here needs ``send`` to return the carrier's verdict, within a timeout.

* ``start`` connects and binds (``ConnectionError`` if that fails); afterwards a lost connection
  is re-established in the background with exponential backoff, and a ``send`` issued meanwhile
  waits for the new bind within its timeout.
* ``submit`` queues a message and calls back with its result (``SubmitQueue``,
  ``submit_queue.py``: no task or waiter per message); ``send`` awaits one. Up to ``window``
  submit_sm are outstanding at once, correlated by sequence number, the next written from the
  read loop as an answer frees a slot; the rate is capped at ``rate_per_s``; a message waits for
  a slot at most ``max_wait_s`` (None: as long as it takes). Cancelling a ``send`` withdraws a
  message not written yet. submit_sm_resp maps to the result: ESME_ROK accepted,
  ESME_RTHROTTLED throttled and retryable, ESME_RSYSERR/RMSGQFUL/RX_T_APPN/RINVBNDSTS retryable,
  anything else refused for good. No answer within ``timeout_s`` is retryable.
* deliver_sm receipts go to the receipt sink (reference from the ``TLV_TENIR_REFERENCE`` TLV,
  else from the message_id the carrier gave at submission); a mobile-originated "OK <reference>"
  goes to the ack sink with ``via="reply"``. A receipt in the form the fast path reads
  (``smpp_fast``) is handed over in the read loop itself: no task per receipt (the receipt sink
  answers at once, see ``ReceiptSink``); any other deliver_sm runs in a task of its own, at most
  ``MAX_CONCURRENT_DELIVERIES`` at once. The deliver_sm_resp is sent after the sink returned,
  ESME_RX_T_APPN if it raised, so that the carrier redelivers (at least once).
* enquire_link every ``enquire_link_s``; no answer within ``timeout_s`` drops the connection.
* A message SMS cannot carry (an ack rule other than none/reply, a reference that is not short
  ASCII, an unencodable address) is refused, not retryable; only wiring mistakes (wrong channel,
  ``send`` before ``start``) raise.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import ssl
from collections import OrderedDict
from collections.abc import Awaitable
from typing import Final

from nodes.carriers import smpp_fast
from nodes.carriers import smpp_pdu as pdu
from nodes.carriers.base import Ack, AckSink, Message, Receipt, ReceiptSink, SendResult
from nodes.carriers.flow import WriteCoalescer
from nodes.carriers.redact import mask_phone
from nodes.carriers.smpp_pdu import Command, Header, PduError, ShortMessage, Status
from nodes.carriers.submit_queue import Done, Submission, SubmitQueue
from nodes.tasks import TaskSet
from replication.store_api import Channel

log = logging.getLogger("tenir.carriers.smpp")

RETRYABLE: Final = frozenset({Status.RSYSERR, Status.RMSGQFUL, Status.RTHROTTLED,
                              Status.RX_T_APPN, Status.RINVBNDSTS})
FINAL_STATES: Final = {"DELIVRD": "delivered", "UNDELIV": "failed", "REJECTD": "failed",
                       "EXPIRED": "failed", "DELETED": "failed", "UNKNOWN": "failed"}
MESSAGE_STATE_NAMES: Final = {1: "ENROUTE", 2: "DELIVRD", 3: "EXPIRED", 4: "DELETED",
                              5: "UNDELIV", 6: "ACCEPTD", 7: "UNKNOWN", 8: "REJECTD"}
MAX_TRACKED: Final = 200_000
MAX_CONCURRENT_DELIVERIES: Final = 64
_REPLY: Final = re.compile(r"^\s*OK\s+(\S+)\s*$", re.IGNORECASE)


class BindError(ConnectionError):
    def __init__(self, status: int) -> None:
        super().__init__(f"bind refused: {pdu.status_name(status)}")
        self.status = status


def _bounded_put(table: OrderedDict[str, str], key: str, value: str) -> None:
    table[key] = value
    table.move_to_end(key)
    while len(table) > MAX_TRACKED:
        table.popitem(last=False)


def _digits(address: str) -> str:
    return address.removeprefix("+")


class SmppAdapter:
    channel: Channel = "sms"

    def __init__(
        self, *, host: str, port: int, system_id: str, password: str, name: str = "smpp",
        source_addr: str = "TENIR", window: int = 10, rate_per_s: float | None = None,
        timeout_s: float = 10.0, max_wait_s: float | None = None, enquire_link_s: float = 30.0,
        connect_timeout_s: float = 5.0, reconnect_min_s: float = 0.2,
        reconnect_max_s: float = 5.0, tls: ssl.SSLContext | None = None,
    ) -> None:
        if len(system_id) > 15 or len(password) > 8:
            raise ValueError("system_id/password: at most 15/8 characters (SMPP 3.4)")
        if timeout_s <= 0 or enquire_link_s <= 0 or connect_timeout_s <= 0:
            raise ValueError("timeouts must be > 0")
        self.name = name
        self.host = host
        self.port = port
        self.system_id = system_id
        self._password = password
        self.source_addr = source_addr
        self.timeout_s = timeout_s
        self.enquire_link_s = enquire_link_s
        self.connect_timeout_s = connect_timeout_s
        self.reconnect_min_s = reconnect_min_s
        self.reconnect_max_s = reconnect_max_s
        self.tls = tls  # SMPP over TLS, the carrier verified by name or address
        self._queue = SubmitQueue(window=window, rate_per_s=rate_per_s, max_wait_s=max_wait_s,
                                  timeout_s=timeout_s, write=self._write_submission,
                                  on_finish=self._submitted)
        self._pending: dict[int, asyncio.Future[tuple[int, str]]] = {}  # enquire_link, unbind
        self._ids: OrderedDict[str, str] = OrderedDict()  # carrier message_id -> reference
        self._reply_from: OrderedDict[str, str] = OrderedDict()  # reference -> recipient
        self._bound = asyncio.Event()
        self._writer: asyncio.StreamWriter | None = None
        self._runner: asyncio.Task[None] | None = None
        self._deliveries = TaskSet(f"{name}-deliveries", log)
        self._delivery_slots = asyncio.Semaphore(MAX_CONCURRENT_DELIVERIES)
        self._out = WriteCoalescer()
        self._on_receipt: ReceiptSink | None = None
        self._on_ack: AckSink | None = None
        self._seq = 0
        self._closed = False
        self.binds = 0  # successful binds so far (1 + reconnections)

    @property
    def bound(self) -> bool:
        return self._bound.is_set()

    @property
    def in_flight(self) -> int:
        """Messages sent and not yet answered by the carrier (at most ``window``)."""
        return self._queue.in_flight

    def _next_seq(self) -> int:
        self._seq = self._seq % 0x7FFFFFFF + 1
        return self._seq

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self, on_receipt: ReceiptSink, on_ack: AckSink) -> None:
        if self._runner is not None:
            return
        if self._closed:
            raise RuntimeError(f"{self.name}: closed")
        self._on_receipt, self._on_ack = on_receipt, on_ack
        first: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None
        try:
            first = await self._connect_and_bind()
        except (BindError, ssl.SSLCertVerificationError):
            raise  # refused credentials, or a carrier our CA does not sign: said at once
        except (ConnectionError, OSError) as exc:
            # A carrier down when the node starts (a site powered on: its simulator boots beside
            # the node) is a channel down, not a node down: the runner binds when it answers.
            # The node exited here once, and systemd's start limit kept it down for good.
            log.warning("carrier unreachable at start: binding in the background",
                        extra={"event": "smpp_start_unbound", "carrier": self.name,
                               "error": str(exc)})
            first = None
        else:
            self._writer = first[1]
            self._bound.set()  # bound when start returns, before the runner first runs
        self._runner = asyncio.create_task(self._run(first), name=f"{self.name}-conn")

    async def close(self) -> None:
        """Unbind (waiting up to a second for unbind_resp), disconnect, reap every task."""
        if self._closed:
            return
        self._closed = True
        writer = self._writer
        if writer is not None and self._bound.is_set():
            with contextlib.suppress(ConnectionError, OSError, TimeoutError):
                await asyncio.wait_for(self._request(writer, Command.UNBIND), 1.0)
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
        if writer is not None:
            writer.close()
        self._fail_pending("adapter closed")
        self._queue.close()
        await self._deliveries.close()
        log.info("smpp adapter closed", extra={"event": "smpp_closed", "carrier": self.name})

    async def _connect_and_bind(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                reader, writer = await asyncio.open_connection(
                    self.host, self.port, limit=pdu.MAX_PDU_LEN + 1024, ssl=self.tls,
                    server_hostname=self.host if self.tls is not None else None)
                try:
                    seq = self._next_seq()
                    writer.write(pdu.encode_bind_transceiver(seq, self.system_id,
                                                             self._password))
                    await writer.drain()
                    while True:
                        header, _raw = await pdu.read_pdu(reader)
                        if header.command is Command.GENERIC_NACK or (
                                header.command is Command.BIND_TRANSCEIVER_RESP
                                and header.sequence == seq):
                            break
                    if header.status != Status.ROK or header.command is Command.GENERIC_NACK:
                        raise BindError(header.status)
                except BaseException:
                    writer.close()
                    raise
        except TimeoutError:
            raise ConnectionError(f"{self.name}: no bind within {self.connect_timeout_s} s") \
                from None
        except (asyncio.IncompleteReadError, PduError) as exc:
            raise ConnectionError(f"{self.name}: bind failed: {exc!r}") from exc
        self.binds += 1
        log.info("bound", extra={"event": "smpp_bound", "carrier": self.name,
                                 "system_id": self.system_id, "binds": self.binds})
        return reader, writer

    async def _run(self, first: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None
                   ) -> None:
        """Own the connection: serve it until it is lost, then reconnect until closed (first
        None: not bound yet, connect first)."""
        delay = self.reconnect_min_s
        connection = first
        while True:
            if connection is not None:
                reader, writer = connection
                self._writer = writer
                self._bound.set()
                self._queue.bound()  # what took a slot while unbound goes out now
                try:
                    await self._serve(reader, writer)
                finally:
                    self._bound.clear()
                    self._writer = None
                    writer.close()
                    self._fail_pending("connection lost")
                    self._queue.lost("connection lost")
                if self._closed:
                    return
                log.warning("connection lost, reconnecting", extra={"event": "smpp_lost",
                                                                    "carrier": self.name})
            while True:
                await asyncio.sleep(delay)
                try:
                    connection = await self._connect_and_bind()
                except (ConnectionError, OSError) as exc:
                    delay = min(delay * 2, self.reconnect_max_s)
                    log.warning("reconnect failed", extra={"event": "smpp_reconnect_failed",
                                                           "carrier": self.name,
                                                           "error": str(exc), "retry_s": delay})
                    continue
                delay = self.reconnect_min_s
                break

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        keepalive = asyncio.create_task(self._keepalive(writer), name=f"{self.name}-keepalive")
        try:
            await self._read_loop(reader, writer)
        finally:
            keepalive.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keepalive

    def _fail_pending(self, why: str) -> None:
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(ConnectionResetError(why))

    async def _keepalive(self, writer: asyncio.StreamWriter) -> None:
        while True:
            await asyncio.sleep(self.enquire_link_s)
            try:
                await asyncio.wait_for(self._request(writer, Command.ENQUIRE_LINK),
                                       self.timeout_s)
            except (TimeoutError, ConnectionError, OSError):
                log.warning("enquire_link unanswered, dropping the connection",
                            extra={"event": "smpp_keepalive_failed", "carrier": self.name})
                writer.close()
                return

    async def _request(self, writer: asyncio.StreamWriter, command: Command) -> int:
        """Send a body-less request and wait for its response's status."""
        seq = self._next_seq()
        future: asyncio.Future[tuple[int, str]] = asyncio.get_running_loop().create_future()
        self._pending[seq] = future
        try:
            writer.write(pdu.encode_simple(command, seq))
            await writer.drain()
            status, _ = await future
            return status
        finally:
            self._pending.pop(seq, None)

    # -- reading ---------------------------------------------------------------------------

    async def _read_loop(self, reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                header, raw = await pdu.read_pdu(reader)
            except (asyncio.IncompleteReadError, ConnectionError, OSError):
                return
            except PduError as exc:
                log.error("unframeable PDU from carrier", extra={
                    "event": "smpp_bad_pdu", "carrier": self.name, "error": str(exc)})
                return
            command = header.command
            if header.is_response:
                self._on_response(header, raw)
            elif command is Command.DELIVER_SM:
                fast = smpp_fast.read_receipt(raw)
                if fast is not None:  # a receipt: its sink answers at once (see ReceiptSink)
                    self._answer_deliver(writer, header.sequence,
                                         await self._sink(self._on_fast_receipt(*fast)))
                    continue
                await self._delivery_slots.acquire()
                self._deliveries.spawn(self._on_deliver(header, raw, writer),
                                       name=f"{self.name}-deliver")
            elif command is Command.ENQUIRE_LINK:
                writer.write(pdu.encode_simple(Command.ENQUIRE_LINK_RESP, header.sequence))
            elif command is Command.UNBIND:
                writer.write(pdu.encode_simple(Command.UNBIND_RESP, header.sequence))
                with contextlib.suppress(ConnectionError, OSError):
                    await writer.drain()
                log.info("unbound by carrier", extra={"event": "smpp_unbound_by_carrier",
                                                      "carrier": self.name})
                return
            else:
                writer.write(pdu.encode_simple(Command.GENERIC_NACK, header.sequence,
                                               Status.RINVCMDID))

    def _on_response(self, header: Header, raw: bytes) -> None:
        if header.command is Command.SUBMIT_SM_RESP or header.command is Command.GENERIC_NACK:
            sub = self._queue.answered(header.sequence)
            if sub is not None:
                status = header.status
                message_id = ""
                if status == Status.ROK and header.command is Command.SUBMIT_SM_RESP:
                    with contextlib.suppress(PduError):
                        message_id = pdu.decode_message_id(header, raw)
                    if message_id:
                        # Recorded before the sender hears: a receipt read next maps already.
                        _bounded_put(self._ids, message_id, sub.reference)
                self._queue.finish(sub, _result_of(status, message_id))
                return
        future = self._pending.pop(header.sequence, None)
        if future is None or future.done():
            return  # answered after its timeout: the sender has already given up
        future.set_result((header.status, ""))

    async def _on_deliver(self, header: Header, raw: bytes,
                          writer: asyncio.StreamWriter) -> None:
        """A deliver_sm the fast path could not read (a reply, a receipt in another form)."""
        try:
            status: int = Status.ROK
            try:
                sm = pdu.decode_short_message(header, raw)
            except PduError as exc:
                log.error("undecodable deliver_sm", extra={"event": "smpp_bad_deliver",
                                                           "carrier": self.name,
                                                           "error": str(exc)})
                status = Status.RX_P_APPN
            else:
                status = await self._sink(self._on_receipt_pdu(sm) if sm.is_receipt
                                          else self._on_mo(sm))
            self._answer_deliver(writer, header.sequence, status)
        finally:
            self._delivery_slots.release()

    def _answer_deliver(self, writer: asyncio.StreamWriter, sequence: int, status: int) -> None:
        """The deliver_sm_resp, once the sink returned (a connection closing meanwhile gets
        none: the carrier delivers again on the next one)."""
        if not writer.is_closing():
            self._out.write(writer, pdu.encode_deliver_sm_resp(sequence, status))

    async def _sink(self, handled: Awaitable[None]) -> int:
        """The deliver_sm_resp status: ESME_RX_T_APPN if the sink failed (redelivered)."""
        try:
            await handled
        except Exception:
            log.exception("sink failed; carrier will redeliver",
                          extra={"event": "smpp_sink_failed", "carrier": self.name})
            return Status.RX_T_APPN
        return Status.ROK

    async def _on_fast_receipt(self, reference: str, message_id: str, message_state: int) -> None:
        """A receipt read by the fast path (its TLVs; the text is not decoded)."""
        stat = MESSAGE_STATE_NAMES.get(message_state, "")
        state = FINAL_STATES.get(stat)
        if state is None:
            log.info("receipt ignored", extra={
                "event": "smpp_receipt_ignored", "carrier": self.name, "message_id": message_id,
                "stat": stat, "why": "not final"})
            return
        if self._on_receipt is not None:
            await self._on_receipt(Receipt(reference, message_id, "delivered"
                                           if state == "delivered" else "failed",
                                           f"stat:{stat}"))
        self._ids.pop(message_id, None)

    async def _on_receipt_pdu(self, sm: ShortMessage) -> None:
        fields = pdu.parse_receipt_text(sm.text)
        message_id = sm.receipted_message_id or fields.get("id") or None
        reference = sm.reference or (self._ids.get(message_id) if message_id else None)
        stat = fields.get("stat", "").upper()
        state_tlv = sm.tlvs.get(pdu.TLV_MESSAGE_STATE)
        if not stat and isinstance(state_tlv, int):
            stat = MESSAGE_STATE_NAMES.get(state_tlv, "")
        state = FINAL_STATES.get(stat)
        if reference is None or state is None:
            log.info("receipt ignored", extra={
                "event": "smpp_receipt_ignored", "carrier": self.name, "message_id": message_id,
                "stat": stat, "why": "unknown message" if reference is None else "not final"})
            return
        detail = f"stat:{stat} err:{fields.get('err', '000')}"
        if self._on_receipt is not None:
            await self._on_receipt(Receipt(reference, message_id, "delivered"
                                           if state == "delivered" else "failed", detail))
        if message_id:
            self._ids.pop(message_id, None)

    async def _on_mo(self, sm: ShortMessage) -> None:
        m = _REPLY.match(sm.text)
        if m is None:
            log.info("incoming SMS is not an acknowledgement", extra={
                "event": "smpp_mo_ignored", "carrier": self.name, "from": mask_phone(sm.source)})
            return
        reference = m.group(1)
        expected = self._reply_from.get(reference)
        if expected is not None and _digits(expected) != _digits(sm.source):
            log.warning("reply from another number than the recipient's", extra={
                "event": "smpp_mo_mismatch", "carrier": self.name, "reference": reference,
                "from": mask_phone(sm.source)})
            return
        if self._on_ack is not None:
            await self._on_ack(Ack(reference, via="reply"))
        self._reply_from.pop(reference, None)

    # -- sending ---------------------------------------------------------------------------

    async def send(self, message: Message) -> SendResult:
        future: asyncio.Future[SendResult] = asyncio.get_running_loop().create_future()

        def settle(result: SendResult) -> None:
            if not future.done():
                future.set_result(result)

        submitted = self.submit(message, settle)
        if isinstance(submitted, SendResult):
            return submitted
        try:
            return await future
        except asyncio.CancelledError:
            submitted.cancel()  # not written yet: never written
            raise

    def submit(self, message: Message, done: Done) -> SendResult | Submission:
        """``send`` without a coroutine (``nodes.carriers.base.Submits``): the result when it
        is known at once (a message SMS cannot carry, the adapter closed), else the queued
        submission, whose ``done`` gets what ``send`` would have returned."""
        if message.channel != "sms":
            raise ValueError(f"channel: {self.name} sends SMS, not {message.channel!r}")
        if self._runner is None:
            raise RuntimeError(f"{self.name}: send() before start()")
        try:
            encoded = self._encode(message)
        except ValueError as exc:  # a scenario/data mistake: refuse it, let the caller fall back
            log.error("message cannot be sent by SMS", extra={
                "event": "sms_invalid", "carrier": self.name, "reference": message.reference,
                "error": str(exc)})
            return SendResult(False, error=f"invalid message: {exc}", retryable=False)
        if self._closed:
            return SendResult(False, error="adapter closed", retryable=True)
        return self._queue.put(encoded, message.reference, message.to, message.ack == "reply",
                               done)

    def _write_submission(self, sub: Submission) -> int:
        """The submission's submit_sm written now, under a new sequence number; 0 while not
        bound (the queue holds it until the bind). The window bounds what is unsent."""
        writer = self._writer
        if not self._bound.is_set() or writer is None or writer.is_closing():
            return 0
        seq = self._next_seq()
        self._out.write(writer, smpp_fast.with_sequence(sub.payload, seq))
        return seq

    def _submitted(self, sub: Submission, result: SendResult) -> None:
        if result.accepted:
            if sub.reply:
                _bounded_put(self._reply_from, sub.reference, sub.to)
        else:
            log.info("submit_sm not accepted", extra={
                "event": "sms_not_sent", "carrier": self.name, "reference": sub.reference,
                "to": mask_phone(sub.to), "error": result.error,
                "retryable": result.retryable, "throttled": result.throttled})

    def _encode(self, message: Message) -> bytes:
        """The message's submit_sm (sequence 0), encoded once: ValueError if it cannot be (an
        unencodable text or address)."""
        if message.ack not in ("none", "reply"):
            raise ValueError(f"ack: an SMS can only be acknowledged by a reply, "
                             f"not {message.ack!r}")
        if not message.reference.isascii() or not 0 < len(message.reference) <= 200:
            raise ValueError("reference: 1 to 200 ASCII characters")
        tlvs: dict[int, str | int] = {pdu.TLV_TENIR_REFERENCE: message.reference}
        if message.ack == "reply":
            tlvs[pdu.TLV_TENIR_ACK] = "reply"
        sm = ShortMessage(source=self.source_addr, destination=message.to, text=message.text,
                          registered_delivery=pdu.REGISTERED_DELIVERY_RECEIPT, tlvs=tlvs)
        encoded = smpp_fast.encode_submit_sm(sm)
        if encoded is None:  # beyond the fast path: the library (UCS-2, escapes, payload)
            encoded = pdu.encode_submit_sm(0, sm)
        return encoded


def _result_of(status: int, message_id: str) -> SendResult:
    """A submit_sm_resp's status as a result (see the module's docstring)."""
    if status == Status.ROK:
        return SendResult(True, carrier_message_id=message_id or None)
    error = pdu.status_name(status)
    if status == Status.RTHROTTLED:
        return SendResult(False, error=error, retryable=True, throttled=True)
    return SendResult(False, error=error, retryable=status in RETRYABLE)
