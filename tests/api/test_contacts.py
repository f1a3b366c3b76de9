"""Contacts as JSON and as CSV, groups: strict input, E.164 normalisation, all-or-nothing
imports reported line by line, body size limit."""

from __future__ import annotations

import time
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from nodes.api.limits import HttpLimits
from nodes.metrics import Metrics
from tests.api.conftest import OPERATOR, Client, auth, make_app
from tests.fakes.memory_store import MemoryStore

pytestmark = pytest.mark.unit

CSV = {**auth(OPERATOR), "Content-Type": "text/csv"}


async def post_contact(client: Client, body: Any) -> tuple[int, Any]:
    r = await client.post("/api/v1/contacts", headers=auth(OPERATOR), json=body)
    return r.status, await r.json()


@pytest.mark.asyncio
async def test_national_french_numbers_are_stored_in_e164(
    client: Client, store: MemoryStore,
) -> None:
    status, body = await post_contact(client, {
        "name": " Jeanne Martin ", "phone": "01 23 45 67 89", "mobile": "06.12.34.56.78",
        "email": "Jeanne@Mairie.Example.fr", "language": "EN", "groups": ["crise", "crise"],
        "external_id": "rh-42"})
    assert status == 201, body
    assert body["count"] == 1
    contact = (await store.list_contacts())[0]
    assert (contact.name, contact.phone, contact.mobile) == (
        "Jeanne Martin", "+33123456789", "+33612345678")
    assert contact.email == "Jeanne@mairie.example.fr"
    assert contact.language == "en"
    assert contact.groups == ("crise",)
    assert (await store.list_groups()) == {"crise": 1}
    status, _ = await post_contact(client, {"name": "Intl", "mobile": "+44 7911 123456"})
    assert status == 201


@pytest.mark.asyncio
@pytest.mark.parametrize(("body", "field"), [
    ({"name": "A", "phone": "06 12 34"}, "phone"),
    ({"name": "A", "phone": "+33 6 12 34 56 78 90 12"}, "phone"),
    ({"name": "A", "phone": "hello"}, "phone"),
    ({"name": "A", "mobile": "01 23 45 67 89"}, "mobile"),  # a landline cannot get SMS
    ({"name": "A", "email": "not-an-address"}, "email"),
    ({"name": "A", "email": "a@b"}, "email"),
    ({"name": "A", "email": "a b@example.fr"}, "email"),
    ({"name": "A", "mobile": "0612345678", "language": "xx"}, "language"),
    ({"name": "A"}, "phone"),  # no way to reach this contact
    ({"name": "", "mobile": "0612345678"}, "name"),
    ({"mobile": "0612345678"}, "name"),
    ({"name": 12, "mobile": "0612345678"}, "name"),
    ({"name": "A", "mobile": 612345678}, "mobile"),
    ({"name": "A", "mobile": "0612345678", "groups": "crise"}, "groups"),
    ({"name": "A", "mobile": "0612345678", "groups": ["ok", 3]}, "groups[1]"),
    ({"name": "A", "mobile": "0612345678", "groups": ["a;b"]}, "groups[0]"),
    ({"name": "A", "mobile": "0612345678", "nickname": "Jo"}, "nickname"),
])
async def test_invalid_contact_is_refused_naming_the_field_and_nothing_is_stored(
    client: Client, store: MemoryStore, body: dict[str, Any], field: str,
) -> None:
    status, answer = await post_contact(client, body)
    assert status == 422, answer
    assert answer["field"] == field
    assert answer["error"]
    assert "add_contacts" not in store.calls


@pytest.mark.asyncio
async def test_problem_texts_do_not_echo_the_personal_data(client: Client) -> None:
    status, answer = await post_contact(client, {"name": "A", "phone": "06 99 99 9"})
    assert status == 422
    assert "99" not in str(answer)


@pytest.mark.asyncio
@pytest.mark.parametrize(("data", "status"), [
    (b"[1, 2]", 400),
    (b'"a string"', 400),
    (b"null", 400),
    (b"{not json", 400),
    (b'{"name": "a", "name": "b", "mobile": "0612345678"}', 400),  # duplicate key
    (b'{"name": "a", "mobile": "0612345678", "x": NaN}', 400),
    (b"\xff\xfe{}", 400),
])
async def test_body_that_is_not_one_json_object_is_400(
    client: Client, store: MemoryStore, data: bytes, status: int,
) -> None:
    r = await client.post("/api/v1/contacts", data=data,
                          headers={**auth(OPERATOR), "Content-Type": "application/json"})
    assert r.status == status
    assert (await r.json())["field"] == "body"
    assert "add_contacts" not in store.calls


@pytest.mark.asyncio
async def test_wrong_content_type_is_415(client: Client) -> None:
    r = await client.post("/api/v1/contacts", data='{"name": "a"}',
                          headers={**auth(OPERATOR), "Content-Type": "text/plain"})
    assert r.status == 415


@pytest.mark.asyncio
async def test_oversized_body_is_413_whether_announced_or_streamed(
    store: MemoryStore, metrics: Metrics,
) -> None:
    app = make_app(store, metrics, limits=HttpLimits(json_body_bytes=1024,
                                                     import_body_bytes=1024))
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        big = {"name": "A" * 2000, "mobile": "0612345678"}
        r = await client.post("/api/v1/contacts", headers=auth(OPERATOR), json=big)
        assert r.status == 413
        assert (await r.json())["field"] == "body"

        async def chunks() -> Any:  # no Content-Length: the limit applies while reading
            yield b"name,mobile\n"
            for _ in range(100):
                yield b"Someone with a long name,0612345678\n"

        r = await client.post("/api/v1/contacts/import", headers=CSV, data=chunks())
        assert r.status == 413
        assert (await r.json())["field"] == "body"
    assert "add_contacts" not in store.calls


@pytest.mark.asyncio
async def test_contacts_are_paginated(client: Client) -> None:
    for i in range(5):
        status, _ = await post_contact(client, {"name": f"C{i}", "mobile": f"061234567{i}"})
        assert status == 201
    r = await client.get("/api/v1/contacts?limit=2&offset=2", headers=auth(OPERATOR))
    page = await r.json()
    assert [c["name"] for c in page["items"]] == ["C2", "C3"]
    assert page["items"][0]["mobile"] == "+33612345672"
    assert (page["limit"], page["offset"], page["next_offset"]) == (2, 2, 4)
    r = await client.get("/api/v1/contacts?limit=2&offset=4", headers=auth(OPERATOR))
    assert (await r.json())["next_offset"] is None
    for query, field in (("limit=0", "limit"), ("limit=abc", "limit"), ("offset=-1", "offset"),
                         ("page=2", "page")):
        r = await client.get(f"/api/v1/contacts?{query}", headers=auth(OPERATOR))
        assert r.status == 422, query
        assert (await r.json())["field"] == field


@pytest.mark.asyncio
async def test_groups_are_created_once_and_listed_with_member_counts(client: Client) -> None:
    r = await client.post("/api/v1/groups", headers=auth(OPERATOR), json={"name": "élus"})
    assert r.status == 201
    r = await client.post("/api/v1/groups", headers=auth(OPERATOR), json={"name": "élus"})
    assert r.status == 409  # already exists
    assert (await r.json())["field"] == "name"
    r = await client.post("/api/v1/groups", headers=auth(OPERATOR), json={"name": "a", "b": 1})
    assert (r.status, (await r.json())["field"]) == (422, "b")
    await post_contact(client, {"name": "A", "mobile": "0612345678", "groups": ["élus"]})
    r = await client.get("/api/v1/groups", headers=auth(OPERATOR))
    assert (await r.json())["items"] == [{"name": "élus", "members": 1}]


# -- CSV ---------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_csv_import_stores_every_line(client: Client, store: MemoryStore) -> None:
    data = (
        "\ufeffname,phone,mobile,email,language,groups\r\n"
        '"Martin, Jeanne",01 23 45 67 89,06 12 34 56 78,jeanne@example.fr,fr,crise;élus\r\n'
        "Paul,,+33 7 81 23 45 67,,en,crise\r\n"
        ",,,,,\r\n"  # a spreadsheet's empty row: skipped
        "Zoé,,,zoe@example.fr,,\r\n"
    )
    r = await client.post("/api/v1/contacts/import", headers=CSV, data=data.encode())
    assert r.status == 201, await r.text()
    assert await r.json() == {"count": 3}
    contacts = await store.list_contacts()
    assert [(c.name, c.mobile, c.language) for c in contacts] == [
        ("Martin, Jeanne", "+33612345678", "fr"), ("Paul", "+33781234567", "en"),
        ("Zoé", None, "fr")]
    assert contacts[0].groups == ("crise", "élus")
    assert await store.list_groups() == {"crise": 2, "élus": 1}


@pytest.mark.asyncio
async def test_csv_columns_may_come_in_any_order_and_some_may_be_missing(
    client: Client, store: MemoryStore,
) -> None:
    r = await client.post("/api/v1/contacts/import", headers=CSV,
                          data="mobile,name\n0612345678,A\n")
    assert r.status == 201
    assert (await store.list_contacts())[0].mobile == "+33612345678"


@pytest.mark.asyncio
async def test_malformed_csv_lines_are_reported_line_by_line_and_nothing_is_stored(
    client: Client, store: MemoryStore,
) -> None:
    data = (
        "name,phone,mobile,email,language,groups\n"  # line 1
        "Bon,,0612345678,,fr,\n"  # 2: fine
        "Mauvais tel,06 12,,,fr,\n"  # 3: phone
        "Deux erreurs,,0612345678,pas-un-email,zz,\n"  # 4: email and language
        "Trop court,0612345678\n"  # 5: field count
        '"Sur deux\nlignes",,0612345678,,,\n'  # 6-7: a name on two lines
        ",,0612345678,,,\n"  # 8: name
        "Fixe en mobile,,01 23 45 67 89,,,\n"  # 9: mobile
    )
    r = await client.post("/api/v1/contacts/import", headers=CSV, data=data)
    assert r.status == 422
    body = await r.json()
    assert [(e["line"], e["field"]) for e in body["errors"]] == [
        (3, "phone"), (4, "email"), (4, "language"), (5, "line"), (6, "name"), (8, "name"),
        (9, "mobile")]
    assert all(e["problem"] for e in body["errors"])
    assert body["error_count"] == 7 and body["truncated"] is False
    assert body["field"] == "line 3"
    assert "add_contacts" not in store.calls
    assert await store.list_contacts() == []


@pytest.mark.asyncio
@pytest.mark.parametrize(("header", "field"), [
    ("name,phone,nickname", "nickname"),
    ("name,phone,phone", "phone"),
    ("phone,mobile", "name"),
    ("name;phone;mobile", "header"),
])
async def test_csv_header_with_unknown_repeated_or_missing_columns_is_refused(
    client: Client, store: MemoryStore, header: str, field: str,
) -> None:
    r = await client.post("/api/v1/contacts/import", headers=CSV,
                          data=f"{header}\nA,0612345678,x\n")
    assert r.status == 422
    errors = (await r.json())["errors"]
    assert (errors[0]["line"], errors[0]["field"]) == (1, field)
    assert store.calls == []


@pytest.mark.asyncio
async def test_csv_that_is_not_utf8_empty_or_not_csv_is_refused(client: Client) -> None:
    r = await client.post("/api/v1/contacts/import", headers=CSV,
                          data="name,mobile\nZo\xe9,0612345678\n".encode("latin-1"))
    assert r.status == 400
    assert "UTF-8" in (await r.json())["error"]
    r = await client.post("/api/v1/contacts/import", headers=CSV, data=b"")
    assert r.status == 422
    r = await client.post("/api/v1/contacts/import", headers=CSV, data=b"name,mobile\n")
    assert r.status == 422
    r = await client.post("/api/v1/contacts/import", data="name\nA\n",
                          headers={**auth(OPERATOR), "Content-Type": "application/json"})
    assert r.status == 415


@pytest.mark.asyncio
async def test_csv_error_list_is_bounded(client: Client) -> None:
    data = "name,mobile\n" + "A,06\n" * 1500
    r = await client.post("/api/v1/contacts/import", headers=CSV, data=data)
    body = await r.json()
    assert r.status == 422
    assert len(body["errors"]) == 1000
    assert body["error_count"] == 1500 and body["truncated"] is True


@pytest.mark.asyncio
async def test_csv_with_more_than_100000_rows_is_413(client: Client, store: MemoryStore) -> None:
    data = "name,email\n" + "A,\n" * 100_001
    r = await client.post("/api/v1/contacts/import", headers=CSV, data=data)
    assert r.status == 413
    assert (await r.json())["field"] == "line 100002"
    assert store.calls == []


@pytest.mark.asyncio
async def test_a_100000_row_csv_import_succeeds(client: Client, store: MemoryStore) -> None:
    lines = ["name,phone,mobile,email,language,groups"]
    for i in range(100_000):
        lines.append(f"Habitant {i},01 {i // 10000 % 100:02d} {i // 100 % 100:02d} "
                     f"{i % 100:02d} 00,06 {i:08d},h{i}@commune.example.fr,fr,"
                     f"quartier-{i % 20};commune")
    data = ("\n".join(lines) + "\n").encode()
    started = time.perf_counter()
    r = await client.post("/api/v1/contacts/import", headers=CSV, data=data)
    elapsed = time.perf_counter() - started
    assert r.status == 201, (await r.text())[:500]
    assert await r.json() == {"count": 100_000}
    print(f"\n100,000-row CSV import ({len(data) / 1e6:.1f} MB): {elapsed:.2f} s")
    groups = await store.list_groups()
    assert groups["commune"] == 100_000 and groups["quartier-7"] == 5000
    last = (await store.list_contacts(limit=1, offset=99_999))[0]
    assert last.mobile == "+33600099999"


@pytest.mark.asyncio
async def test_an_operator_erases_a_contact_and_its_campaign_recipients(
    client: Client, store: MemoryStore,
) -> None:
    from tests.api.conftest import AUDITOR, seed
    await seed(client, contacts=2)
    r = await client.post("/api/v1/campaigns", headers=auth(OPERATOR),
                          json={"scenario": "alerte", "group": "crise"})
    campaign = (await r.json())["id"]
    contacts = (await (await client.get("/api/v1/contacts", headers=auth(OPERATOR))).json())
    first = contacts["items"][0]
    assert (await client.delete(f"/api/v1/contacts/{first['id']}",
                                headers=auth(AUDITOR))).status == 403
    r = await client.delete(f"/api/v1/contacts/{first['id']}", headers=auth(OPERATOR))
    assert r.status == 200
    assert await r.json() == {"contact": first["id"], "recipients_blanked": 1}
    left = (await (await client.get("/api/v1/contacts", headers=auth(OPERATOR))).json())
    assert [c["id"] for c in left["items"]] == [contacts["items"][1]["id"]]
    batch = await store.claim_batch("n1", 30)
    assert batch is not None
    erased = [p for p in batch.recipients if p.name == "(erased)"]
    assert len(erased) == 1 and erased[0].campaign_id == campaign
    assert (erased[0].phone, erased[0].mobile, erased[0].email) == (None, None, None)
    [event] = [e for e in store.events if e.kind == "operator.contact.erased"]
    assert event.details == {"by": "alice", "contact": first["id"], "recipients": 1}
    assert "Agent" not in event.sentence and "mairie" not in str(event.details)
    r = await client.delete(f"/api/v1/contacts/{first['id']}", headers=auth(OPERATOR))
    assert r.status == 404
