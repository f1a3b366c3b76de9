"""What a simulated carrier site knows: the fault settings of each channel (changed through the
control API) and the record of every message received, keyed by its idempotency reference.

Settings of one channel:

* ``mode``: ``normal``; ``refuse`` (answer an error: permanent, or temporary when
  ``refuse_temporary``); ``timeout`` (never answer); ``throttle`` (accept at most
  ``throttle_per_s`` messages per second, answer a throttling error beyond; 0 throttles all);
  ``slow`` (answer after ``delay_ms``).
* ``drop_receipts``: accept but never send the delivery receipt / call status.
* ``ack_rate``: fraction of the messages asking for an acknowledgement that get one.
* ``answer_rate``: fraction of voice calls answered.

Which messages are acknowledged or answered is a pure function of the reference
(:func:`fraction`), so that a test or a chaos run is reproducible.

Every accepted message is counted as *delivered*, as a carrier that does not deduplicate would
deliver it to the person, and is appended to the submission log (:mod:`.submissions`). The
``dedup`` option only changes what the simulator answers: the first message id again, and no
second acknowledgement reply or click; it never changes what is counted.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Final, Literal, get_args

from nodes.carriers.flow import TokenBucket
from nodes.carriers.sim.submissions import DEFAULT_CAPACITY, SubmissionLog

SimChannel = Literal["sms", "email", "voice"]
Mode = Literal["normal", "refuse", "timeout", "throttle", "slow"]
SIM_CHANNELS: Final[tuple[SimChannel, ...]] = get_args(SimChannel)
MODES: Final[tuple[Mode, ...]] = get_args(Mode)
MAX_DELAY_MS: Final = 600_000


class ControlError(ValueError):
    """A control request refused; ``field`` names the field at fault."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


@dataclass(frozen=True)
class ChannelSettings:
    mode: Mode = "normal"
    delay_ms: int = 0
    throttle_per_s: float = 0.0
    drop_receipts: bool = False
    ack_rate: float = 1.0
    answer_rate: float = 1.0
    refuse_temporary: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def fraction(reference: str, salt: str) -> float:
    """A number in [0, 1) that depends only on ``reference`` and ``salt``."""
    digest = hashlib.sha256(f"{salt}\x00{reference}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _number(payload: dict[str, Any], name: str, low: float, high: float) -> float:
    value = payload[name]
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value) or not low <= value <= high:
        raise ControlError(name, f"must be a number between {low:g} and {high:g}")
    return float(value)


def _flag(payload: dict[str, Any], name: str) -> bool:
    value = payload[name]
    if not isinstance(value, bool):
        raise ControlError(name, "must be true or false")
    return value


def parse_control(payload: object) -> tuple[tuple[SimChannel, ...], dict[str, Any]]:
    """Validate a control request; returns the channels it applies to and the changes."""
    if not isinstance(payload, dict):
        raise ControlError("body", "must be a JSON object")
    known = {"channel", *ChannelSettings.__dataclass_fields__}
    for name in payload:
        if name not in known:
            raise ControlError(str(name), f"unknown field (known: {', '.join(sorted(known))})")
    channel = payload.get("channel")
    if channel == "all":
        channels: tuple[SimChannel, ...] = SIM_CHANNELS
    elif channel in SIM_CHANNELS:
        channels = (channel,)
    else:
        raise ControlError("channel", f"must be one of {', '.join((*SIM_CHANNELS, 'all'))}")
    changes: dict[str, Any] = {}
    if "mode" in payload:
        if payload["mode"] not in MODES:
            raise ControlError("mode", f"must be one of {', '.join(MODES)}")
        changes["mode"] = payload["mode"]
    if "delay_ms" in payload:
        value = payload["delay_ms"]
        if isinstance(value, bool) or not isinstance(value, int) \
                or not 0 <= value <= MAX_DELAY_MS:
            raise ControlError("delay_ms", f"must be an integer between 0 and {MAX_DELAY_MS}")
        changes["delay_ms"] = value
    if "throttle_per_s" in payload:
        changes["throttle_per_s"] = _number(payload, "throttle_per_s", 0, 1_000_000)
    for rate in ("ack_rate", "answer_rate"):
        if rate in payload:
            changes[rate] = _number(payload, rate, 0, 1)
    for flag in ("drop_receipts", "refuse_temporary"):
        if flag in payload:
            changes[flag] = _flag(payload, flag)
    return channels, changes


@dataclass(frozen=True)
class Admission:
    """How a received message was recorded: ``duplicate`` when its reference was seen before;
    ``answer_new`` when the simulator answers it as a new message (acknowledgement replies,
    clicks): always, unless it is a duplicate at a deduplicating carrier; ``carrier_id`` the id
    to answer (the first one's at a deduplicating carrier). It is counted as delivered and
    logged whatever the answer."""

    duplicate: bool
    answer_new: bool
    carrier_id: str


@dataclass
class ChannelRecord:
    received: int = 0
    delivered: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    first_id: dict[str, str] = field(default_factory=dict)

    def report(self) -> dict[str, int]:
        unique = len(self.counts)
        return {"received": self.received, "unique_references": unique,
                "duplicates": self.received - unique, "delivered": self.delivered}


class SimState:
    def __init__(self, site: str, *, dedup: bool, log_capacity: int = DEFAULT_CAPACITY,
                 journal: str | Path | None = None) -> None:
        """``journal``: the submission log's file (:mod:`.submissions`); the records of what
        it replays at start are rebuilt, as a carrier's survive its own restart."""
        self.site = site
        self.dedup = dedup
        self.submissions = SubmissionLog(site, log_capacity, journal)
        self.settings: dict[SimChannel, ChannelSettings] = {c: ChannelSettings()
                                                            for c in SIM_CHANNELS}
        self.records: dict[SimChannel, ChannelRecord] = {c: ChannelRecord() for c in SIM_CHANNELS}
        self._buckets: dict[SimChannel, TokenBucket] = {}
        for entry in self.submissions.entries():
            if entry.channel in self.records:
                rec = self.records[entry.channel]
                rec.received += 1
                rec.delivered += 1
                rec.counts[entry.reference] += 1
                rec.first_id.setdefault(entry.reference, entry.message_id)

    def control(self, payload: object) -> dict[str, dict[str, Any]]:
        """Apply a control request (all or nothing); returns every channel's settings."""
        channels, changes = parse_control(payload)
        for channel in channels:
            self.settings[channel] = replace(self.settings[channel], **changes)
            if "throttle_per_s" in changes or changes.get("mode") == "throttle":
                self._buckets.pop(channel, None)
        return self.current_settings()

    def current_settings(self) -> dict[str, dict[str, Any]]:
        return {channel: s.as_dict() for channel, s in self.settings.items()}

    def throttle_allows(self, channel: SimChannel) -> bool:
        """In ``throttle`` mode, whether one more message fits the configured rate now."""
        bucket = self._buckets.get(channel)
        if bucket is None:
            bucket = TokenBucket(self.settings[channel].throttle_per_s)
            self._buckets[channel] = bucket
        return bucket.try_acquire()

    def record(self, channel: SimChannel, reference: str, new_id: str) -> Admission:
        rec = self.records[channel]
        rec.received += 1
        rec.delivered += 1  # as a carrier that does not deduplicate delivers it
        duplicate = reference in rec.counts
        rec.counts[reference] += 1
        self.submissions.append(channel, reference, new_id, duplicate)
        if duplicate and self.dedup:
            return Admission(duplicate=True, answer_new=False,
                             carrier_id=rec.first_id[reference])
        rec.first_id.setdefault(reference, new_id)
        return Admission(duplicate=duplicate, answer_new=True, carrier_id=new_id)

    def report(self) -> dict[str, Any]:
        channels: dict[str, dict[str, int]] = {channel: rec.report()
                                               for channel, rec in self.records.items()}
        totals = {key: sum(c[key] for c in channels.values())
                  for key in ("received", "unique_references", "duplicates", "delivered")}
        return {"site": self.site, "dedup": self.dedup, **channels, "totals": totals}

    def references(self, channel: SimChannel) -> dict[str, int]:
        return dict(self.records[channel].counts)

    def reset(self) -> None:
        self.records = {c: ChannelRecord() for c in SIM_CHANNELS}
        self.submissions.clear()
