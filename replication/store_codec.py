"""Validation and encoding for the PostgreSQL campaign store (``replication/store.py``).

Everything here is pure Python: what the store checks before it touches the database (the
database checks again with its own constraints), how scenarios map to jsonb, and how a flush of
outcomes is packed into rows, sent as JSON to ``tenir_record_outcomes_json`` (migration 0010).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from replication.store_api import (
    CHANNELS,
    AckRule,
    Channel,
    ChannelStep,
    ContactIn,
    InvalidInput,
    NotFound,
    Outcome,
    ScenarioIn,
)

E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")  # same as the CHECK constraints of 0001
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")
LANGUAGE = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$")
ATTEMPT_STATES = ("sent", "delivered", "acknowledged", "failed")
FINAL_STATES = ("delivered", "acknowledged", "failed")
ACK_RULES: tuple[AckRule, ...] = ("none", "dtmf", "reply", "link")
# Which acknowledgement each channel can carry: a key press on a call, a reply to an SMS, a
# link clicked in an e-mail.
ACK_FOR_CHANNEL: dict[Channel, AckRule] = {"voice": "dtmf", "sms": "reply", "email": "link"}
MAX_POPULATION = 9_999_999  # synthetic numbers are +33639 followed by 7 digits
MAX_BATCH_SIZE = 10_000
# A launch that names no batch size: batches of 100 up to 200,000 recipients, then larger, so that
# a campaign has about AUTO_BATCHES of them, up to 500 recipients each. Each batch costs a claim,
# at least one outcome write and a finish, each a commit waited for by the synchronous standby:
# at 1,000,000 recipients on the lab, batches of 500 took PostgreSQL from 71 to 43 µs per alert.
# Small campaigns keep small batches: spread over every node at once, moved in small pieces.
AUTO_BATCH_MIN = 100
AUTO_BATCH_MAX = 500
AUTO_BATCHES = 2000


def auto_batch_size(recipients: int) -> int:
    """The batch size of a launch of ``recipients`` that names none (a multiple of 100)."""
    return max(AUTO_BATCH_MIN, min(AUTO_BATCH_MAX, recipients // AUTO_BATCHES // 100 * 100))
MAX_TEXT = 1000


class UnknownName(InvalidInput, NotFound):
    """A name that refers to nothing (scenario, group): both an InvalidInput naming the field
    and a NotFound, so that callers catching either one get it."""


def _rank(state: str) -> int:
    return {"sent": 0, "acknowledged": 2}.get(state, 1)


def _text(field: str, value: object, *, required: bool = True, limit: int = MAX_TEXT) -> None:
    if value is None and not required:
        return
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(field, "must be a non-empty string")
    if len(value) > limit:
        raise InvalidInput(field, f"longer than {limit} characters")


def check_name(field: str, value: object) -> str:
    _text(field, value, limit=200)
    return cast(str, value).strip()


def check_page(limit: int, offset: int) -> None:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 10_000:
        raise InvalidInput("limit", "must be an integer from 1 to 10000")
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise InvalidInput("offset", "must be an integer >= 0")


def validate_contact(line: int, c: ContactIn) -> None:
    where = f"line {line}"
    try:
        _text("name", c.name, limit=200)
        for fname in ("phone", "mobile"):
            number = getattr(c, fname)
            if number is not None and (not isinstance(number, str) or not E164.match(number)):
                raise InvalidInput(fname, f"{number!r} is not an E.164 number (+33612345678)")
        if c.email is not None and (not isinstance(c.email, str) or not EMAIL.match(c.email)
                                    or len(c.email) > 320):
            raise InvalidInput("email", f"{c.email!r} is not an e-mail address")
        if c.phone is None and c.mobile is None and c.email is None:
            raise InvalidInput("phone", "a contact needs a phone, a mobile or an e-mail")
        if not isinstance(c.language, str) or not LANGUAGE.match(c.language):
            raise InvalidInput("language", f"{c.language!r} is not a language code (fr, en...)")
        _text("external_id", c.external_id, required=False, limit=200)
        if isinstance(c.groups, str):
            raise InvalidInput("groups", "must be a sequence of group names, not a string")
        for g in c.groups:
            _text("groups", g, limit=200)
    except InvalidInput as e:
        raise InvalidInput(where, f"{e.field}: {e.problem}") from None


def _number(field: str, value: object, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidInput(field, "must be a number")
    if not low <= value <= high:
        raise InvalidInput(field, f"must be between {low:g} and {high:g}")
    return float(value)


def validate_scenario(s: ScenarioIn) -> None:
    check_name("name", s.name)
    if isinstance(s.priority, bool) or not isinstance(s.priority, int) or not 1 <= s.priority <= 9:
        raise InvalidInput("priority", "must be an integer from 1 (highest) to 9")
    if not s.steps:
        raise InvalidInput("steps", "a scenario needs at least one channel step")
    for i, step in enumerate(s.steps):
        f = f"steps[{i}]"
        if not isinstance(step, ChannelStep):
            raise InvalidInput(f, "must be a ChannelStep")
        if step.channel not in CHANNELS:
            raise InvalidInput(f"{f}.channel", f"must be one of {', '.join(CHANNELS)}")
        if not isinstance(step.templates, dict) or "fr" not in step.templates:
            raise InvalidInput(f"{f}.templates", "needs a 'fr' template (the fallback language)")
        for lang, text in step.templates.items():
            if not isinstance(lang, str) or not LANGUAGE.match(lang):
                raise InvalidInput(f"{f}.templates", f"{lang!r} is not a language code")
            _text(f"{f}.templates.{lang}", text, limit=10_000)
        if isinstance(step.retries, bool) or not isinstance(step.retries, int) \
                or not 0 <= step.retries <= 10:
            raise InvalidInput(f"{f}.retries", "must be an integer from 0 to 10")
        _number(f"{f}.retry_interval_s", step.retry_interval_s, 0, 3600)
        if step.ack not in ACK_RULES:
            raise InvalidInput(f"{f}.ack", f"must be one of {', '.join(ACK_RULES)}")
        if step.ack != "none" and ACK_FOR_CHANNEL[step.channel] != step.ack:
            raise InvalidInput(f"{f}.ack", f"{step.channel} acknowledges by "
                               f"{ACK_FOR_CHANNEL[step.channel]}, not {step.ack}")
        _number(f"{f}.ack_timeout_s", step.ack_timeout_s, 1, 86_400)


def steps_to_json(steps: Sequence[ChannelStep]) -> list[dict[str, Any]]:
    return [{"channel": s.channel, "templates": dict(s.templates), "retries": s.retries,
             "retry_interval_s": float(s.retry_interval_s), "ack": s.ack,
             "ack_timeout_s": float(s.ack_timeout_s)} for s in steps]


def steps_from_json(data: Any) -> tuple[ChannelStep, ...]:
    return tuple(ChannelStep(channel=d["channel"], templates=dict(d["templates"]),
                             retries=int(d["retries"]),
                             retry_interval_s=float(d["retry_interval_s"]), ack=d["ack"],
                             ack_timeout_s=float(d["ack_timeout_s"])) for d in data)


@dataclass
class PackedOutcomes:
    """One flush, merged: a row per attempt and a row per recipient."""

    attempt_rows: list[list[Any]]  # reference, recipient, channel, carrier, state, site, step,
    # attempt, carrier_message_id, detail, at
    recipient_rows: list[list[Any]]  # id, step, next_attempt, final_state, final_channel,
    # final_site, final_reference, final_at

    @property
    def attempts(self) -> list[list[Any]]:
        """The 11 attempt columns (the arrays of ``tenir_record_outcomes``)."""
        return _columns(self.attempt_rows, 11)

    @property
    def recipients(self) -> list[list[Any]]:
        """The 8 recipient columns."""
        return _columns(self.recipient_rows, 8)

    def to_json(self) -> tuple[str, str]:
        """The two parameters of ``tenir_record_outcomes_json``: encoded in C, where psycopg
        adapts array elements one by one in Python (8 µs an outcome)."""
        return (json.dumps(self.attempt_rows, default=_iso, separators=(",", ":")),
                json.dumps(self.recipient_rows, default=_iso, separators=(",", ":")))


def _columns(rows: list[list[Any]], width: int) -> list[list[Any]]:
    return [list(col) for col in zip(*rows, strict=True)] if rows else [[] for _ in range(width)]


def _iso(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} in an outcome")


def _check_outcome(i: int, o: Outcome) -> None:
    f = f"outcomes[{i}]"
    if isinstance(o.recipient_id, bool) or not isinstance(o.recipient_id, int) \
            or o.recipient_id <= 0:
        raise InvalidInput(f"{f}.recipient_id", "must be a positive integer")
    if o.channel not in CHANNELS:
        raise InvalidInput(f"{f}.channel", f"must be one of {', '.join(CHANNELS)}")
    if o.state not in ATTEMPT_STATES:
        raise InvalidInput(f"{f}.state", f"must be one of {', '.join(ATTEMPT_STATES)}")
    if o.final and o.state not in FINAL_STATES:
        raise InvalidInput(f"{f}.state", "a final outcome is delivered, acknowledged or failed")
    for name in ("step", "attempt"):
        v = getattr(o, name)
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < 1_000_000:
            raise InvalidInput(f"{f}.{name}", "must be an integer >= 0")
    for name in ("reference", "carrier", "site"):
        v = getattr(o, name)
        if not isinstance(v, str) or not v or len(v) > 200:
            raise InvalidInput(f"{f}.{name}", "must be a non-empty string")
    if o.at is not None and (not isinstance(o.at, datetime) or o.at.utcoffset() is None):
        raise InvalidInput(f"{f}.at", "must be a datetime with a time zone")


def pack_outcomes(outcomes: Sequence[Outcome]) -> PackedOutcomes:
    """Validate a flush and pack it. Several outcomes with one reference (the send, then its
    receipt) merge into one attempt: the state only moves up (sent < delivered, failed <
    acknowledged; the first of equals stays), the latest carrier message id and detail win.
    Per recipient: the furthest (step, attempt + 1) and the first final outcome."""
    by_ref: dict[str, list[Any]] = {}  # in the order first seen: the attempt rows
    progress: dict[int, list[Any]] = {}
    for i, o in enumerate(outcomes):
        _check_outcome(i, o)
        row = by_ref.get(o.reference)
        if row is None:
            by_ref[o.reference] = [o.reference, o.recipient_id, o.channel, o.carrier,
                                   o.state, o.site, o.step, o.attempt,
                                   o.carrier_message_id, o.detail, o.at]
        else:
            if row[1] != o.recipient_id:
                raise InvalidInput(f"outcomes[{i}].reference",
                                   f"{o.reference!r} already used for recipient {row[1]}")
            if _rank(o.state) > _rank(row[4]):
                row[4] = o.state
            row[8] = o.carrier_message_id or row[8]
            row[9] = o.detail or row[9]
        nxt = o.attempt + 1
        p = progress.get(o.recipient_id)
        if p is None:
            progress[o.recipient_id] = p = [o.recipient_id, o.step, nxt, None, None, None, None,
                                            None]
        elif (o.step, nxt) > (p[1], p[2]):
            p[1], p[2] = o.step, nxt
        if o.final and p[3] is None:
            p[3:] = [o.state, o.channel, o.site, o.reference, o.at]
    return PackedOutcomes(list(by_ref.values()), list(progress.values()))
