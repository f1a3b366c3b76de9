"""The SMPP fast paths give the library's bytes, and read what the simulator sends."""

from __future__ import annotations

import random

import pytest

from nodes.carriers import smpp_fast as fast
from nodes.carriers import smpp_pdu as pdu

pytestmark = pytest.mark.unit

TEXTS = ["ALERTE Test 000001 : confinez-vous, consignes sur alerte.invalid",
         "Crue: évacuez à l'étage, @ 14h $ 5", "x", "a" * 160,
         "Cellule de crise activée : rejoignez la salle de crise."]


def _messages() -> list[pdu.ShortMessage]:
    rng = random.Random(13)
    table = "".join(fast._gsm_table())
    texts = TEXTS + ["".join(rng.choice(table) for _ in range(rng.randint(1, 160)))
                     for _ in range(200)]
    out = []
    for i, text in enumerate(texts):
        tlvs: dict[int, str | int] = {pdu.TLV_TENIR_REFERENCE: f"{i}:{i * 7}:sms:0.{i % 3}"}
        if i % 2:
            tlvs[pdu.TLV_TENIR_ACK] = "reply"
        out.append(pdu.ShortMessage(source=("TENIR", "+33612345678", "0612")[i % 3],
                                    destination=f"+336390{i:05d}", text=text,
                                    registered_delivery=pdu.REGISTERED_DELIVERY_RECEIPT,
                                    tlvs=tlvs))
    return out


def test_fast_submit_sm_is_byte_for_byte_the_librarys() -> None:
    for sm in _messages():
        encoded = fast.encode_submit_sm(sm)
        assert encoded is not None, sm.text
        assert fast.with_sequence(encoded, 4242) == pdu.encode_submit_sm(4242, sm), sm.text


@pytest.mark.parametrize("text", ["a" * 161, "emoji \U0001F6A8", "{braces}", "tab\t", "€"])
def test_what_the_fast_path_cannot_encode_goes_to_the_library(text: str) -> None:
    sm = pdu.ShortMessage(source="TENIR", destination="+33612345678", text=text)
    assert fast.encode_submit_sm(sm) is None
    pdu.encode_submit_sm(1, sm)  # the library still encodes it (UCS-2, escapes, payload)


def test_a_receipt_with_its_tlvs_is_read_without_decoding_the_text() -> None:
    receipt = pdu.ShortMessage(
        source="+33639000001", destination="TENIR", esm_class=pdu.ESM_CLASS_RECEIPT,
        text="id:m-1 sub:001 dlvrd:001 stat:DELIVRD err:000 text:ALERTE",
        tlvs={pdu.TLV_TENIR_REFERENCE: "5:1:sms:0.0", pdu.TLV_RECEIPTED_MESSAGE_ID: "m-1",
              pdu.TLV_MESSAGE_STATE: pdu.MESSAGE_STATE_DELIVERED})
    assert fast.read_receipt(pdu.encode_deliver_sm(3, receipt)) == \
        ("5:1:sms:0.0", "m-1", pdu.MESSAGE_STATE_DELIVERED)


def test_a_reply_or_a_receipt_without_tlvs_goes_to_the_full_decoder() -> None:
    mo = pdu.ShortMessage(source="+33639000001", destination="TENIR", text="OK 5:1:sms:0.0")
    assert fast.read_receipt(pdu.encode_deliver_sm(3, mo)) is None
    bare = pdu.ShortMessage(source="+33639000001", destination="TENIR",
                            esm_class=pdu.ESM_CLASS_RECEIPT, text="id:m-1 stat:DELIVRD err:000")
    assert fast.read_receipt(pdu.encode_deliver_sm(3, bare)) is None
    assert fast.read_receipt(b"\0" * 20) is None
