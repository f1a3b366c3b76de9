"""E-mail acknowledgement links: signed for one reference and recipient; opening the link shows a
page and records nothing (a mail scanner acknowledges nothing); its button POSTs; forged,
replayed-after-final and early acknowledgements are refused, counted, and not stored; keys
rotate (the previous key still verifies)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from aiohttp import ClientResponse

from nodes.metrics import Metrics
from nodes.signing import AckKey, AckSigner, CallbackUrls
from tests.api.conftest import ACK_KEYS, SIGNER, Client, Sinks
from tests.api.test_callbacks import sent
from tests.fakes.memory_store import MemoryStore

pytestmark = pytest.mark.unit


def link(reference: str, signer: AckSigner = SIGNER) -> str:
    return CallbackUrls("", signer).link(reference)


async def page(r: ClientResponse) -> tuple[int, str]:
    assert r.content_type == "text/html"
    assert r.headers["Cache-Control"] == "no-store"
    assert "form-action 'self'" in r.headers["Content-Security-Policy"]
    return r.status, await r.text()


@pytest.mark.asyncio
async def test_opening_a_link_acknowledges_nothing_its_button_does(
    client: Client, store: MemoryStore, sinks: Sinks, metrics: Metrics,
) -> None:
    refs = await sent(client, store, "email", 2)
    url = link(refs[0])
    for _ in range(3):  # a mail scanner, a preview, the person: nothing is recorded
        status, text = await page(await client.get(url))
        assert status == 200 and "<form method=\"post\"" in text
    assert store.acknowledgements == [] and sinks.acks == []
    action = re.search(r'action="([^"]+)"', text)
    assert action is not None and action.group(1).replace("&amp;", "&") == url
    status, text = await page(await client.post(action.group(1).replace("&amp;", "&")))
    assert status == 200 and "Merci" in text
    assert store.acknowledgements == [(refs[0], "link")]
    assert [(a.reference, a.via) for a in sinks.acks] == [(refs[0], "link")]
    assert metrics.callbacks.value(kind="link", result="acknowledged") == 1
    # pressed again: the recipient is final, nothing more is stored
    status, text = await page(await client.post(url))
    assert status == 409 and "Déjà traité" in text
    assert store.acknowledgements == [(refs[0], "link")]
    assert metrics.callbacks_refused.value(kind="link", reason="final") == 1


def forged(refs: list[str]) -> list[tuple[str, Any, int, str]]:
    ref, other = refs
    next_attempt = ref.replace(":2.0", ":2.1")
    nobody = ref.replace(f":{ref.split(':')[1]}:", ":999:")
    return [
        ("unsigned", f"/api/v1/ack/{ref}", 403, "unsigned"),
        ("another recipient's signature",
         f"/api/v1/ack/{ref}?sig={SIGNER.sign('link', other)}", 403, "bad_signature"),
        ("a voice callback's signature",
         f"/api/v1/ack/{ref}?sig={SIGNER.sign('voice', ref)}", 403, "bad_signature"),
        ("a key nobody has", link(ref, AckSigner([AckKey("k7", "z" * 40)])), 403,
         "unknown_key"),
        ("a guessed sequential reference", "/api/v1/ack/1:1:email:2.0?sig=k2.x", 403,
         "bad_signature"),
        ("not a reference", "/api/v1/ack/1:1:email?sig=k2.x", 404, "malformed"),
        ("no such recipient", link(nobody), 404, "unknown"),
        ("early: an attempt not made", link(next_attempt), 409, "early"),
    ]


@pytest.mark.asyncio
@pytest.mark.parametrize("case", range(8))
async def test_forged_and_early_acknowledgements_are_refused_and_not_stored(
    client: Client, store: MemoryStore, sinks: Sinks, metrics: Metrics, case: int,
) -> None:
    refs = await sent(client, store, "email", 2)
    what, url, status, reason = forged(refs)[case]
    if status == 403 or reason == "malformed":
        got, _ = await page(await client.get(url))  # the page already says no
        assert got == status, what
    got, text = await page(await client.post(url))
    assert got == status, what
    assert "Merci" not in text
    assert store.acknowledgements == [] and sinks.acks == [], what
    assert metrics.callbacks_refused.value(kind="link", reason=reason) >= 1, what


@pytest.mark.asyncio
async def test_links_signed_with_the_previous_key_still_work_during_a_rotation(
    client: Client, store: MemoryStore,
) -> None:
    refs = await sent(client, store, "email", 2)
    previous = AckSigner([ACK_KEYS[1]])  # what the cluster signed with before the rotation
    assert SIGNER.sign("link", refs[0]).startswith("k2.")  # the first key signs
    status, _ = await page(await client.post(link(refs[0], previous)))
    assert status == 200
    assert store.acknowledgements == [(refs[0], "link")]
