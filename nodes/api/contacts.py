"""Contacts (one as JSON, many as CSV), their erasure, and groups.

``DELETE /api/v1/contacts/{id}`` (operator) erases a person: the contact goes, and every campaign
recipient copied from it loses its name and addresses (outcomes stay as evidence); an
``operator.contact.erased`` event records who did it, without any personal data.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from nodes.api.bodies import Fields, check_query, page, query_int, read_body, read_json_object
from nodes.api.context import context, principal
from nodes.api.csv_import import (
    COLUMNS,
    MAX_REPORTED_ERRORS,
    MAX_ROWS,
    CsvRefused,
    CsvTooLarge,
    CsvUnreadable,
    parse_contacts_csv,
)
from nodes.api.errors import ApiError, invalid, json_response
from nodes.api.serialize import contact_json
from nodes.api.spec import (
    API,
    JSON,
    LIMIT,
    MAX_OFFSET,
    OFFSET,
    Body,
    Param,
    Resp,
    RouteSpec,
    list_of,
    nullable,
    page_of,
    ref,
    text,
)
from nodes.api.validate import (
    MAX_GROUP,
    MAX_GROUPS,
    MAX_NAME,
    RawContact,
    check_contact,
    check_group,
)

log = logging.getLogger("tenir.api.contacts")

CONTACT_FIELDS = ("name", "phone", "mobile", "email", "language", "groups", "external_id")


async def create_contact(request: web.Request) -> web.Response:
    f = Fields(await read_json_object(request), CONTACT_FIELDS)
    raw = RawContact(
        name=f.req_str("name", MAX_NAME), phone=f.opt_str("phone"),
        mobile=f.opt_str("mobile"), email=f.opt_str("email"), language=f.opt_str("language"),
        groups=tuple(f.str_list("groups", MAX_GROUPS, MAX_GROUP)),
        external_id=f.opt_str("external_id", 100),
    )
    contact, problems = check_contact(raw)
    if problems or contact is None:
        field, problem = problems[0] if problems else ("body", "invalid contact")
        raise ApiError(422, problem, field, extra={
            "errors": [{"field": fd, "problem": pb} for fd, pb in problems],
        })
    ctx = context(request)
    count = await ctx.store.add_contacts([contact])
    ctx.metrics.contacts_imported.inc(count)
    return json_response({"count": count, "contact": contact_json(contact)}, 201)


async def list_contacts(request: web.Request) -> web.Response:
    check_query(request, ("limit", "offset"))
    limit = query_int(request, "limit", 100, 1, 1000)
    offset = query_int(request, "offset", 0, 0, MAX_OFFSET)
    contacts = await context(request).store.list_contacts(limit=limit, offset=offset)
    return json_response(page([contact_json(c) for c in contacts], limit, offset))


async def import_contacts(request: web.Request) -> web.Response:
    raw = await read_body(request, "text/csv")
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        contacts = await asyncio.to_thread(parse_contacts_csv, raw)
    except CsvUnreadable as e:
        raise ApiError(400, str(e), "body") from None
    except CsvTooLarge as e:
        raise ApiError(413, f"more than {MAX_ROWS} rows", f"line {e.line}") from None
    except CsvRefused as e:
        first = e.errors[0]
        log.info("CSV import refused: %d problems, first at line %d", e.count, first.line)
        return json_response({
            "error": f"{e.count} problems; nothing was imported",
            "field": f"line {first.line}",
            "errors": [err.as_json() for err in e.errors],
            "error_count": e.count,
            "truncated": e.count > len(e.errors),
        }, 422)
    validated = loop.time()
    ctx = context(request)
    count = await ctx.store.add_contacts(contacts)
    ctx.metrics.contacts_imported.inc(count)
    log.info("imported %d contacts (validation %.2f s, store %.2f s)", count,
             validated - started, loop.time() - validated)
    return json_response({"count": count}, 201)


async def erase_contact(request: web.Request) -> web.Response:
    check_query(request, ())
    contact_id = int(request.match_info["id"])
    ctx = context(request)
    if contact_id < 1:
        raise ApiError(404, f"not found: contact {contact_id}")
    blanked = await ctx.store.erase_contact(contact_id)
    who = principal(request).id
    await ctx.store.record_event(
        "operator.contact.erased", f"contact {contact_id} erased by {who}: {blanked} campaign "
        "recipients blanked", ctx.node, ctx.site,
        details={"by": who, "contact": contact_id, "recipients": blanked})
    log.info("contact %d erased by %s (%d campaign recipients blanked)", contact_id, who,
             blanked)
    return json_response({"contact": contact_id, "recipients_blanked": blanked})


async def create_group(request: web.Request) -> web.Response:
    f = Fields(await read_json_object(request), ("name",))
    name, problem = check_group(f.req_str("name", MAX_GROUP))
    if problem is not None or name is None:
        raise invalid("name", problem or "required")
    store = context(request).store
    if name in await store.list_groups():
        raise ApiError(409, f"group {name!r} already exists", "name")
    await store.create_group(name)
    return json_response({"name": name, "members": 0}, 201)


async def list_groups(request: web.Request) -> web.Response:
    check_query(request, ())
    groups = await context(request).store.list_groups()
    return json_response({"items": [{"name": n, "members": m} for n, m in groups.items()]})


_NULLABLE_STR: JSON = {"type": ["string", "null"]}

SCHEMAS: dict[str, JSON] = {
    "ContactIn": {
        "type": "object", "additionalProperties": False, "required": ["name"],
        "description": "At least one of phone, mobile, email. Phone numbers may be national "
                       "French ('06 12 34 56 78') or international; they are stored in E.164.",
        "properties": {
            "name": text(MAX_NAME),
            "phone": {**_NULLABLE_STR, "maxLength": 1000,
                      "description": "any valid phone number"},
            "mobile": {**_NULLABLE_STR, "maxLength": 1000,
                       "description": "a number that can receive SMS"},
            "email": {**_NULLABLE_STR, "maxLength": 1000, "format": "email"},
            "language": {**_NULLABLE_STR, "maxLength": 1000, "description": "ISO 639-1 code",
                         "default": "fr"},
            "groups": nullable({"type": "array", "items": text(MAX_GROUP, exclude=";"),
                                "maxItems": MAX_GROUPS}),
            "external_id": {**_NULLABLE_STR, "maxLength": 100},
        },
        "anyOf": [{"required": [name], "properties": {name: {"type": "string",
                                                             "pattern": "\\S"}}}
                  for name in ("phone", "mobile", "email")],
    },
    "Contact": {
        "type": "object",
        "required": ["id", "name", "phone", "mobile", "email", "language", "groups",
                     "external_id"],
        "properties": {
            "id": {"type": "integer"}, "name": {"type": "string"},
            "phone": {**_NULLABLE_STR, "description": "E.164"},
            "mobile": {**_NULLABLE_STR, "description": "E.164"},
            "email": _NULLABLE_STR, "language": {"type": "string"},
            "groups": {"type": "array", "items": {"type": "string"}},
            "external_id": _NULLABLE_STR,
        },
    },
    "ContactCreated": {
        "type": "object", "required": ["count", "contact"],
        "properties": {"count": {"type": "integer"}, "contact": {
            "description": "the contact as stored (normalised, without id)",
            "type": "object", "additionalProperties": True}},
    },
    "Erased": {
        "type": "object", "required": ["contact", "recipients_blanked"],
        "properties": {"contact": {"type": "integer"},
                       "recipients_blanked": {"type": "integer", "description":
                                              "campaign recipients whose name and addresses "
                                              "were removed (their outcomes are kept)"}},
    },
    "ImportResult": {
        "type": "object", "required": ["count"], "properties": {"count": {"type": "integer"}},
    },
    "CsvErrors": {
        "type": "object", "required": ["error", "errors", "error_count", "truncated"],
        "properties": {
            "error": {"type": "string"},
            "field": {"type": "string", "description": "'line N' of the first problem"},
            "errors": {"type": "array", "maxItems": MAX_REPORTED_ERRORS, "items": {
                "type": "object", "required": ["line", "field", "problem"],
                "properties": {"line": {"type": "integer"}, "field": {"type": "string"},
                               "problem": {"type": "string"}},
            }},
            "error_count": {"type": "integer"},
            "truncated": {"type": "boolean"},
        },
    },
    "GroupIn": {
        "type": "object", "additionalProperties": False, "required": ["name"],
        "properties": {"name": text(MAX_GROUP, exclude=";")},
    },
    "Group": {
        "type": "object", "required": ["name", "members"],
        "properties": {"name": {"type": "string"}, "members": {"type": "integer"}},
    },
}

CSV_DESCRIPTION = (
    f"UTF-8 CSV, header naming columns among {','.join(COLUMNS)} (name required); groups "
    f"separated by ';'; at most {MAX_ROWS} rows. Every line is validated before anything is "
    "stored: one bad line refuses the whole file."
)

ROUTES: tuple[RouteSpec, ...] = (
    RouteSpec("POST", f"{API}/contacts", create_contact, "write", "createContact",
              "Add one contact", "contacts",
              {201: Resp("created", ref("ContactCreated"))},
              body=Body("application/json", ref("ContactIn")),
              checked=("phone", "mobile", "email", "language", "external_id")),
    RouteSpec("GET", f"{API}/contacts", list_contacts, "read", "listContacts",
              "List contacts", "contacts", {200: Resp("one page", page_of("Contact"))},
              params=(LIMIT, OFFSET)),
    RouteSpec("DELETE", f"{API}/contacts/{{id:\\d{{1,18}}}}", erase_contact, "write",
              "eraseContact", "Erase a contact's personal data (right to erasure)", "contacts",
              {200: Resp("erased", ref("Erased"))},
              params=(Param("id", "path", {"type": "integer", "minimum": 1}, "contact id",
                            True),)),
    RouteSpec("POST", f"{API}/contacts/import", import_contacts, "write", "importContacts",
              "Import contacts from CSV, all or nothing", "contacts",
              {201: Resp("all imported", ref("ImportResult")),
               422: Resp("problems, line by line; nothing imported", ref("CsvErrors"))},
              body=Body("text/csv", {"type": "string"}, CSV_DESCRIPTION), large_body=True,
              checked=("line", "header", "body")),
    RouteSpec("POST", f"{API}/groups", create_group, "write", "createGroup",
              "Create a group", "groups", {201: Resp("created", ref("Group"))},
              body=Body("application/json", ref("GroupIn")), errors=(409,)),
    RouteSpec("GET", f"{API}/groups", list_groups, "read", "listGroups",
              "List groups with their member counts", "groups",
              {200: Resp("all groups", list_of("Group"))}),
)
