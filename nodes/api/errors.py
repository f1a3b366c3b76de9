"""Errors as JSON: ``{"error": "...", "field": "..."}`` (``field`` when one is at fault).

* :class:`ApiError` raised by a handler or a middleware carries its status;
* ``store_api.InvalidInput`` becomes 422 with its field, ``store_api.NotFound`` 404;
* aiohttp's own HTTP errors (404 no route, 405, 413 body too large) keep their status;
* a store that cannot be reached (``ConnectionError``, ``TimeoutError``, and PostgreSQL's
  ``OperationalError`` or read-only refusal while Patroni fails or switches over) gives 503
  with ``Retry-After``, so that clients retry; anything else is logged and answered 500
  without detail.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from typing import Any

import psycopg
from aiohttp import web

from nodes.api.spec import Handler
from replication.store_api import InvalidInput, NotFound

log = logging.getLogger("tenir.api")


def json_response(
    data: Any, status: int = 200, headers: Mapping[str, str] | None = None,
) -> web.Response:
    return web.Response(
        text=json.dumps(data, ensure_ascii=False, separators=(",", ":")),
        status=status, content_type="application/json", charset="utf-8",
        headers=dict(headers) if headers else None,
    )


MAX_FIELD_NAME = 100  # characters of a field name (perhaps a client's JSON key) repeated back


def short_field(field: str) -> str:
    """``field`` as repeated in an error: a client's 16 KB key comes back cut, with its length."""
    if len(field) <= MAX_FIELD_NAME:
        return field
    return f"{field[:MAX_FIELD_NAME]}...({len(field)} characters)"


def error_body(error: str, field: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"error": error}
    if field is not None:
        body["field"] = field
    return body


class ApiError(Exception):
    """A refusal with its HTTP status, message and (if one is at fault) the field or line.
    ``close``: close the connection after the answer (a body left unread, a slow client)."""

    def __init__(
        self, status: int, error: str, field: str | None = None, *,
        headers: Mapping[str, str] | None = None, extra: Mapping[str, Any] | None = None,
        close: bool = False,
    ) -> None:
        field = short_field(field) if field is not None else None
        super().__init__(f"{status} {field + ': ' if field else ''}{error}")
        self.status = status
        self.error = error
        self.field = field
        self.headers = dict(headers) if headers else {}
        self.extra = dict(extra) if extra else {}
        self.close = close

    def response(self) -> web.Response:
        response = json_response(
            {**error_body(self.error, self.field), **self.extra}, self.status, self.headers,
        )
        if self.close:
            response.force_close()
        return response


def invalid(field: str, problem: str) -> ApiError:
    return ApiError(422, problem, field)


def _log_refusal(request: web.Request, status: int, error: str, field: str | None) -> None:
    log.info(
        "refused %s %s%s: %s", request.method, request.path, f" ({field})" if field else "",
        error, extra={"status": status, "field": field},
    )


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as e:
        _log_refusal(request, e.status, e.error, e.field)
        return e.response()
    except InvalidInput as e:
        field = short_field(e.field)
        _log_refusal(request, 422, e.problem, field)
        return json_response(error_body(e.problem, field), 422)
    except NotFound as e:
        _log_refusal(request, 404, str(e), None)
        return json_response(error_body(f"not found: {e}"), 404)
    except web.HTTPException as e:
        if e.status < 400:
            raise
        headers = {k: v for k, v in e.headers.items() if k.lower() == "allow"}
        if e.status == 413:
            too_large = json_response(error_body("request body too large", "body"), 413)
            too_large.force_close()
            return too_large
        return json_response(error_body(e.reason.lower()), e.status, headers)
    except asyncio.CancelledError:
        raise
    except (ConnectionError, TimeoutError, psycopg.OperationalError,
            psycopg.errors.ReadOnlySqlTransaction):
        # PostgreSQL failing over: connections cut, the old primary shutting down or read-only
        log.warning("campaign store unavailable on %s %s", request.method, request.path,
                    exc_info=True)
        return json_response(error_body("campaign store unavailable, retry later"), 503,
                             {"Retry-After": "1"})
    except Exception:
        log.exception("internal error on %s %s", request.method, request.path)
        return json_response(error_body("internal error"), 500)
