"""The simulated SMSC: the server side of SMPP 3.4 on aiosmpplib's PDU codecs.

* bind_transceiver checks system_id and password; other binds are refused (ESME_RBINDFAIL).
* enquire_link, unbind answered in any state; submit_sm before a bind gets ESME_RINVBNDSTS.
* Each submit_sm is handled in its own task, so a session may have many outstanding (windowing)
  and a ``slow`` or ``timeout`` channel does not hold the others up.
* Garbage gets a generic_nack: ESME_RINVCMDID for an unknown command, ESME_RINVCMDLEN for an
  undecodable body, and for an impossible command_length (after which the connection is closed,
  since the stream cannot be resynchronised).
* A delivery receipt (deliver_sm, esm_class 0x04, receipted_message_id and message_state TLVs, the
  standard "id:... stat:DELIVRD" text) follows an accepted submit_sm that asked for one, after the
  receipt delay. It goes to the session that submitted, or to any bound session if that one is
  gone, or waits for the next bind; a deliver_sm answered ESME_RX_T_APPN is delivered again
  (up to 5 attempts, backing off), and one left unanswered when its session ends is delivered
  on the next bound session (at least once, as real SMSCs do).
* A reply "OK <reference>" (a mobile-originated deliver_sm) is simulated for the ``ack_rate``
  fraction of the messages that asked for ack "reply" (TLV ``TLV_TENIR_ACK``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import ssl
import uuid
from collections import deque
from collections.abc import Callable
from datetime import datetime
from typing import Final

from nodes.carriers import smpp_pdu as pdu
from nodes.carriers.redact import mask_phone
from nodes.carriers.sim.state import SimState, fraction
from nodes.carriers.smpp_pdu import Command, Header, PduError, ShortMessage, Status
from nodes.tasks import TaskSet

log = logging.getLogger("tenir.sim.smpp")
HANDSHAKE_S = 10.0  # a TLS handshake not done by then is dropped

MAX_PENDING_REPORTS: Final = 100_000
REPLY_AFTER_RECEIPT_S: Final = 0.05
REDELIVERY_DELAY_S: Final = 0.1
MAX_DELIVERY_ATTEMPTS: Final = 5
UNBIND_GRACE_S: Final = 1.0


class SmppServer:
    def __init__(
        self, state: SimState, *, host: str, port: int, system_id: str, password: str,
        receipt_delay_s: float, server_name: str = "tenir-sim", tls: ssl.SSLContext | None = None,
    ) -> None:
        self.state = state
        self.host = host
        self.port = port
        self.system_id = system_id
        self._password = password
        self.receipt_delay_s = receipt_delay_s
        self.server_name = server_name[:15]
        self.tls = tls
        self.stopping = asyncio.Event()
        self.sessions: set[SmppSession] = set()
        self._session_tasks: set[asyncio.Task[None]] = set()
        self._pending: deque[ShortMessage] = deque(maxlen=MAX_PENDING_REPORTS)
        self._reports = TaskSet("smpp-reports", log)
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._accept, self.host, self.port,
                                                  ssl=self.tls, ssl_handshake_timeout=(
                                                      HANDSHAKE_S if self.tls else None))
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    def check_credentials(self, system_id: str, password: str) -> Status:
        if not hmac.compare_digest(system_id.encode(), self.system_id.encode()):
            return Status.RINVSYSID
        if not hmac.compare_digest(password.encode(), self._password.encode()):
            return Status.RINVPASWD
        return Status.ROK

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if self.stopping.is_set() or task is None:
            writer.close()
            return
        self._session_tasks.add(task)
        session = SmppSession(self, reader, writer)
        self.sessions.add(session)
        try:
            await session.run()
        finally:
            self.sessions.discard(session)
            self._session_tasks.discard(task)

    # -- receipts and replies ---------------------------------------------------------------

    def schedule_report(self, report: ShortMessage, delay_s: float, origin: SmppSession,
                        attempt: int = 1) -> None:
        self._reports.spawn(self._report_later(report, delay_s, origin, attempt),
                            name="smpp-report")

    async def _report_later(self, report: ShortMessage, delay_s: float,
                            origin: SmppSession, attempt: int) -> None:
        await asyncio.sleep(delay_s)
        await self.deliver(report, origin, attempt)

    async def deliver(self, report: ShortMessage, origin: SmppSession | None = None,
                      attempt: int = 1) -> None:
        session = origin if origin is not None and origin.bound else self._any_bound()
        if session is None:
            self._pending.append(report)
            return
        try:
            await session.send_deliver(report, attempt)
        except ConnectionError:
            self._pending.append(report)

    def requeue(self, report: ShortMessage) -> None:
        session = self._any_bound()
        if session is None:
            self._pending.append(report)
        else:
            self._reports.spawn(self.deliver(report, session), name="smpp-report-requeue")

    def _any_bound(self) -> SmppSession | None:
        return next((s for s in self.sessions if s.bound), None)

    def flush_pending(self, session: SmppSession) -> None:
        """Hand the reports that found no bound session to a newly bound one."""
        while self._pending:
            report = self._pending.popleft()
            self._reports.spawn(self.deliver(report, session), name="smpp-report-flush")

    # -- shutdown --------------------------------------------------------------------------

    async def stop(self) -> None:
        """Stop accepting, unbind and close every session, reap every task."""
        self.stopping.set()
        if self._server is not None:
            self._server.close()
        await asyncio.gather(*(s.shutdown() for s in list(self.sessions)),
                             return_exceptions=True)
        await self._reports.close()
        if self._session_tasks:
            _done, pending = await asyncio.wait(set(self._session_tasks), timeout=2.0)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=1.0)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)


class SmppSession:
    def __init__(self, server: SmppServer, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        self.server = server
        self.state = server.state
        self._reader = reader
        self._writer = writer
        peer = writer.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        self.bound = False
        self._seq = 0
        self._tasks = TaskSet(f"smpp-session-{self.peer}", log)
        self._unbind_resp = asyncio.Event()
        self._unacked: dict[int, tuple[ShortMessage, int]] = {}  # deliver_sm awaiting its resp

    def _next_seq(self) -> int:
        self._seq = self._seq % 0x7FFFFFFF + 1
        return self._seq

    async def send(self, data: bytes) -> None:
        if self._writer.is_closing():
            raise ConnectionResetError("session closed")
        self._writer.write(data)
        await self._writer.drain()

    async def send_request(self, make: Callable[[int], bytes]) -> None:
        await self.send(make(self._next_seq()))

    async def send_deliver(self, report: ShortMessage, attempt: int) -> None:
        seq = self._next_seq()
        self._unacked[seq] = (report, attempt)
        try:
            await self.send(pdu.encode_deliver_sm(seq, report))
        except ConnectionError:
            self._unacked.pop(seq, None)
            raise

    def _deliver_sm_resp(self, header: Header) -> None:
        """ESME_RX_T_APPN (the ESME could not take it now): deliver again later."""
        report, attempt = self._unacked.pop(header.sequence, (None, 0))
        if report is None or header.status == Status.ROK:
            return
        retry = header.status == Status.RX_T_APPN and attempt < MAX_DELIVERY_ATTEMPTS
        log.warning("deliver_sm refused by ESME", extra={
            "event": "smpp_deliver_refused", "peer": self.peer,
            "status": pdu.status_name(header.status), "attempt": attempt, "retry": retry})
        if retry:
            self.server.schedule_report(report, REDELIVERY_DELAY_S * attempt, self, attempt + 1)

    async def _nack(self, header: Header, status: Status) -> None:
        log.warning("generic_nack", extra={"event": "smpp_generic_nack", "peer": self.peer,
                                           "command_id": f"0x{header.command_id:08x}",
                                           "status": pdu.status_name(status)})
        await self.send(pdu.encode_simple(Command.GENERIC_NACK, header.sequence, status))

    async def run(self) -> None:
        log.info("session opened", extra={"event": "smpp_session_open", "peer": self.peer})
        try:
            while True:
                try:
                    header, raw = await pdu.read_pdu(self._reader)
                except PduError as exc:
                    if exc.header is not None:
                        await self._nack(exc.header, Status.RINVCMDLEN)
                    break
                if not await self._dispatch(header, raw):
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.bound = False
            # Reports this session never acknowledged go to the next bound session.
            if not self.server.stopping.is_set():
                for report, _attempt in self._unacked.values():
                    self.server.requeue(report)
            self._unacked.clear()
            await self._tasks.close()
            self._writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._writer.wait_closed(), 1.0)
            log.info("session closed", extra={"event": "smpp_session_closed", "peer": self.peer})

    async def _dispatch(self, header: Header, raw: bytes) -> bool:
        """Handle one PDU; False when the session must end."""
        command = header.command
        if command is None:
            await self._nack(header, Status.RINVCMDID)
            return True
        if header.is_response:
            if command is Command.UNBIND_RESP:
                self._unbind_resp.set()
                return False
            if command is Command.DELIVER_SM_RESP:
                self._deliver_sm_resp(header)
                return True
            if header.status != Status.ROK:
                log.warning("error response from ESME",
                            extra={"event": "smpp_esme_error", "peer": self.peer,
                                   "command": command.name, "status": pdu.status_name(
                                       header.status)})
            return True
        if command is Command.ENQUIRE_LINK:
            await self.send(pdu.encode_simple(Command.ENQUIRE_LINK_RESP, header.sequence))
        elif command is Command.UNBIND:
            await self.send(pdu.encode_simple(Command.UNBIND_RESP, header.sequence))
            log.info("unbound by ESME", extra={"event": "smpp_unbind", "peer": self.peer})
            return False
        elif command in (Command.BIND_TRANSCEIVER, Command.BIND_TRANSMITTER,
                         Command.BIND_RECEIVER):
            await self._bind(header, raw)
        elif command is Command.SUBMIT_SM:
            if not self.bound:
                await self.send(pdu.encode_submit_sm_resp(header.sequence, Status.RINVBNDSTS, ""))
            else:
                self._tasks.spawn(self._submit(header, raw), name="smpp-submit")
        else:
            await self._nack(header, Status.RINVCMDID)
        return True

    async def _bind(self, header: Header, raw: bytes) -> None:
        try:
            request = pdu.decode_bind(header, raw)
        except PduError:
            await self._nack(header, Status.RINVCMDLEN)
            return
        if self.bound:
            status = Status.RALYBND
        elif request.command is not Command.BIND_TRANSCEIVER:
            status = Status.RBINDFAIL
        else:
            status = self.server.check_credentials(request.system_id, request.password)
        await self.send(pdu.encode_bind_resp(request.command, header.sequence, status,
                                             self.server.server_name))
        extra = {"peer": self.peer, "system_id": request.system_id,
                 "status": pdu.status_name(status)}
        if status is not Status.ROK:
            log.warning("bind refused", extra={"event": "smpp_bind_refused", **extra})
            return
        self.bound = True
        log.info("bound", extra={"event": "smpp_bound", **extra})
        self.server.flush_pending(self)

    async def _submit(self, header: Header, raw: bytes) -> None:
        try:
            sm = pdu.decode_short_message(header, raw)
        except PduError as exc:
            log.warning("undecodable submit_sm", extra={"event": "smpp_bad_submit",
                                                       "peer": self.peer, "error": str(exc)})
            await self._nack(header, Status.RINVCMDLEN)
            return
        settings = self.state.settings["sms"]
        reference = sm.reference or f"untagged:{uuid.uuid4().hex}"
        extra = {"peer": self.peer, "reference": reference, "to": mask_phone(sm.destination),
                 "mode": settings.mode}
        if settings.mode == "timeout":
            log.debug("submit_sm left unanswered", extra={"event": "sms_timeout", **extra})
            return
        if settings.mode == "slow":
            await asyncio.sleep(settings.delay_ms / 1000)
        if settings.mode == "refuse":
            status = Status.RSYSERR if settings.refuse_temporary else Status.RSUBMITFAIL
            await self.send(pdu.encode_submit_sm_resp(header.sequence, status, ""))
            log.debug("submit_sm refused", extra={"event": "sms_refused", **extra,
                                                 "status": pdu.status_name(status)})
            return
        if settings.mode == "throttle" and not self.state.throttle_allows("sms"):
            await self.send(pdu.encode_submit_sm_resp(header.sequence, Status.RTHROTTLED, ""))
            log.debug("submit_sm throttled", extra={"event": "sms_throttled", **extra})
            return
        admission = self.state.record("sms", reference, uuid.uuid4().hex)
        await self.send(pdu.encode_submit_sm_resp(header.sequence, Status.ROK,
                                                  admission.carrier_id))
        log.debug("submit_sm accepted", extra={
            "event": "sms_accepted", **extra, "message_id": admission.carrier_id,
            "duplicate": admission.duplicate, "answered_new": admission.answer_new})
        delay = self.server.receipt_delay_s
        if sm.registered_delivery & pdu.REGISTERED_DELIVERY_RECEIPT and not settings.drop_receipts:
            self.server.schedule_report(_receipt(sm, reference, admission.carrier_id), delay, self)
        wants_reply = sm.tlvs.get(pdu.TLV_TENIR_ACK) == "reply"
        if admission.answer_new and wants_reply and fraction(reference, "ack") < settings.ack_rate:
            reply = ShortMessage(source=sm.destination, destination=sm.source,
                                 text=f"OK {reference}")
            self.server.schedule_report(reply, delay + REPLY_AFTER_RECEIPT_S, self)

    async def shutdown(self) -> None:
        """Unbind (waiting briefly for unbind_resp), then close the connection."""
        if self.bound and not self._writer.is_closing():
            self.bound = False
            with contextlib.suppress(ConnectionError, OSError):
                await self.send_request(lambda seq: pdu.encode_simple(Command.UNBIND, seq))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._unbind_resp.wait(), UNBIND_GRACE_S)
        self._writer.close()


def _receipt(sm: ShortMessage, reference: str, message_id: str) -> ShortMessage:
    now = datetime.now()
    return ShortMessage(
        source=sm.destination,
        destination=sm.source,
        text=pdu.receipt_text(message_id, "DELIVRD", 0, sm.text, now, now),
        esm_class=pdu.ESM_CLASS_RECEIPT,
        tlvs={pdu.TLV_RECEIPTED_MESSAGE_ID: message_id,
              pdu.TLV_MESSAGE_STATE: pdu.MESSAGE_STATE_DELIVERED,
              pdu.TLV_TENIR_REFERENCE: reference},
    )
