"""Clients of the witness's ``add-checkpoint``: over HTTP (:class:`HttpWitness`) or in the
same process (:class:`LocalWitness`, around the same :class:`WitnessCore`)."""

from __future__ import annotations

import ssl
from typing import Protocol

import aiohttp

from failover.evidence import note
from failover.evidence.witness import Answer, WitnessCore, request_body


class WitnessError(RuntimeError):
    """The witness refused (status and its reason) or could not be reached."""

    def __init__(self, status: int | None, reason: str) -> None:
        self.status = status
        super().__init__(f"witness: {status or 'unreachable'}: {reason.strip()}")


class WitnessConflict(WitnessError):
    """409: the witness's latest cosigned size is not the old size sent."""

    def __init__(self, known_size: int) -> None:
        self.known_size = known_size
        super().__init__(409, f"it last cosigned size {known_size}")


class Cosigner(Protocol):
    async def add_checkpoint(self, old_size: int, proof: list[bytes],
                             signed_note: str) -> list[note.SignatureLine]: ...


def _answer(answer: Answer) -> list[note.SignatureLine]:
    if answer.status == 409 and answer.content_type == "text/x.tlog.size":
        raise WitnessConflict(int(answer.body.strip()))
    if answer.status != 200:
        raise WitnessError(answer.status, answer.body)
    parsed = note.parse_note("x\n\n" + answer.body)
    return list(parsed.signatures)


class LocalWitness:
    def __init__(self, core: WitnessCore) -> None:
        self.core = core

    async def add_checkpoint(self, old_size: int, proof: list[bytes],
                             signed_note: str) -> list[note.SignatureLine]:
        return _answer(await self.core.add_checkpoint(request_body(old_size, proof,
                                                                   signed_note)))


class HttpWitness:
    def __init__(self, base_url: str, timeout_s: float = 5.0,
                 tls: ssl.SSLContext | None = None) -> None:
        self.url = base_url.rstrip("/") + "/add-checkpoint"
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.tls = tls  # verifies an https witness (the cluster's CA)

    async def add_checkpoint(self, old_size: int, proof: list[bytes],
                             signed_note: str) -> list[note.SignatureLine]:
        body = request_body(old_size, proof, signed_note)
        try:
            connector = aiohttp.TCPConnector(ssl=self.tls if self.tls is not None else True)
            async with aiohttp.ClientSession(timeout=self.timeout,
                                             connector=connector) as session, session.post(
                    self.url, data=body.encode(),
                    headers={"Content-Type": "text/plain"}) as resp:
                text = await resp.text()
                ctype = resp.headers.get("Content-Type", "").split(";")[0]
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise WitnessError(None, f"{type(exc).__name__}: {exc}") from exc
        return _answer(Answer(resp.status, text, ctype))
