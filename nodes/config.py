"""An alert node's configuration file (YAML, rendered from the ``tenir_node`` role's template),
validated at load: every error names the key at fault, and never repeats a value (it may be a
secret).

Security-related keys: ``users`` (name, role, ``token_sha256`` or ``token``), ``ack_keys`` (the
keys that sign acknowledgement links and voice callback URLs, the first signs),
``carriers.voice_callback_secrets`` (what the voice carrier signs its callbacks with) and the
optional ``http`` section (``nodes/api/limits.py``: timeouts, caps, rate limits).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import yaml

from cluster.tls import TlsFiles
from failover.drills.schedule import IntervalError, parse_intervals
from nodes.api.limits import HttpLimits
from nodes.carriers.callback_auth import MIN_SECRET as MIN_CALLBACK_SECRET
from nodes.evidence_config import EvidenceConfig, parse_evidence
from nodes.signing import AckKey
from nodes.tls_config import CarrierTls, parse_carrier_tls, parse_tls
from nodes.users import ROLES, ApiUser

T = TypeVar("T")
# Test-only switches (the chaos suite's proofs that its checkers can fail) are refused unless
# the node's environment sets this variable to 1: a configuration file alone cannot weaken a
# production node.
UNSAFE_ENV = "TENIR_UNSAFE_TEST_SWITCHES"
UNSAFE_SWITCHES = ("watchdog_off",)
# Where a node journals its outcomes before the store has them (nodes/journal.py): its systemd
# unit's StateDirectory, the only place it may write.
DEFAULT_JOURNAL_DIR = "/var/lib/tenir/journal"
DEFAULT_CLAIM_AHEAD_S = 25.0  # a Patroni failover takes up to ttl + loop_wait + ~1.5 s
DEFAULT_CLAIM_AHEAD_MAX = 256  # 25 s at 1,000 recipients/s per node (batches of 100)


class NodeConfigError(ValueError):
    def __init__(self, source: str, key: str, problem: str) -> None:
        self.key = key
        super().__init__(f"{source}: {key}: {problem}")


@dataclass(frozen=True)
class CarrierEndpoints:
    host: str
    smpp_port: int
    smpp_system_id: str
    smpp_password: str
    smtp_port: int
    voice_port: int
    rate_per_s: float
    window: int
    voice_callback_secrets: tuple[str, ...]
    tls: CarrierTls = field(default_factory=CarrierTls)

    def __repr__(self) -> str:  # no secret in a traceback
        return f"CarrierEndpoints(host={self.host!r}, ...)"


@dataclass(frozen=True)
class CoordinationConfig:
    backend: str  # etcd | zookeeper
    endpoints: tuple[str, ...]
    namespace: str
    ttl: float
    retry_timeout: float
    fencing_safety: float
    watchdog_cycle_s: float
    # a node that has not reached the store for this long, while others do, stops sending and
    # lets its batches move (nodes/store_health.py)
    store_grace_s: float = 3.0
    zk_digest: str | None = None  # ZooKeeper: user:password of the nodes' digest ACL


@dataclass(frozen=True)
class NodeConfig:
    node: str
    site: str
    listen_host: str
    listen_port: int
    public_url: str
    dsn: str
    users: tuple[ApiUser, ...]
    ack_keys: tuple[AckKey, ...]
    carriers: CarrierEndpoints
    lease_s: float
    max_batches: int
    drain_deadline_s: float
    receipt_timeout_s: float
    log_level: str
    coordination: CoordinationConfig | None = None
    patroni_urls: tuple[str, ...] = ()  # Patroni REST APIs the watchdog reads /cluster from
    unsafe: frozenset[str] = frozenset()  # test-only switches on (UNSAFE_SWITCHES)
    evidence: EvidenceConfig | None = None  # the continuity ledger's keys and witness
    http: HttpLimits = field(default_factory=HttpLimits)
    journal_dir: str = DEFAULT_JOURNAL_DIR  # outcomes written here first (nodes/journal.py)
    # work held beyond what is being sent, to go on sending while no claim can be made (a
    # PostgreSQL failover): seconds of it at the node's own rate, and at most this many batches
    claim_ahead_s: float = DEFAULT_CLAIM_AHEAD_S
    claim_ahead_max: int = DEFAULT_CLAIM_AHEAD_MAX
    # drill kind -> seconds between two drills (the inventory's tenir_drill_intervals)
    drill_intervals: Mapping[str, float] = dataclasses.field(default_factory=dict)
    tls: TlsFiles | None = None  # the API over HTTPS, TLS to Patroni, witness, coordination

    def __repr__(self) -> str:  # no DSN password, token or key in a traceback
        return f"NodeConfig(node={self.node!r}, site={self.site!r}, ...)"


def _get(data: dict[str, Any], key: str, kind: type, source: str, prefix: str = "") -> Any:
    full = f"{prefix}{key}"
    if key not in data:
        raise NodeConfigError(source, full, "is missing")
    value = data[key]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        # The type only, never the value: it may be a secret.
        raise NodeConfigError(source, full, f"must be {_TYPE.get(kind, kind.__name__)}, "
                                            f"got {_TYPE.get(type(value), type(value).__name__)}")
    return value


_TYPE: dict[type, str] = {str: "a string", int: "an integer", float: "a number",
                          bool: "a boolean", list: "a list", dict: "a mapping",
                          type(None): "nothing"}


def _built(source: str, key: str, make: Callable[[], T]) -> T:
    """``make()``, its ValueError "field: problem" becoming an error naming ``key.field``."""
    try:
        return make()
    except ValueError as exc:
        field_name, _, problem = str(exc).partition(": ")
        raise NodeConfigError(source, f"{key}.{field_name}", problem) from None


def _users(data: dict[str, Any], source: str) -> tuple[ApiUser, ...]:
    raw = _get(data, "users", list, source)
    if not raw:
        raise NodeConfigError(source, "users", "must list at least one user")
    users: list[ApiUser] = []
    for i, entry in enumerate(raw):
        key = f"users[{i}]"
        if not isinstance(entry, dict):
            raise NodeConfigError(source, key, "must be a mapping {name, role, token_sha256}")
        unknown = sorted(set(entry) - {"name", "role", "token_sha256", "token"})
        if unknown:
            raise NodeConfigError(source, f"{key}.{unknown[0]}", "unknown key")
        name = _get(entry, "name", str, source, f"{key}.")
        role = _get(entry, "role", str, source, f"{key}.")
        if role not in ROLES:
            raise NodeConfigError(source, f"{key}.role", f"must be one of {', '.join(ROLES)}")
        if ("token" in entry) == ("token_sha256" in entry):
            raise NodeConfigError(source, key, "give token_sha256 (or token), exactly one")
        given = "token" if "token" in entry else "token_sha256"
        secret = _get(entry, given, str, source, f"{key}.")
        make = ApiUser.with_token if given == "token" else ApiUser
        users.append(_built(source, key, partial(make, name, role, secret)))
    if len({u.name for u in users}) != len(users):
        raise NodeConfigError(source, "users", "two users with the same name")
    if len({u.token_sha256 for u in users}) != len(users):
        raise NodeConfigError(source, "users", "two users with the same token")
    return tuple(users)


def _ack_keys(data: dict[str, Any], source: str) -> tuple[AckKey, ...]:
    raw = _get(data, "ack_keys", list, source)
    if not raw:
        raise NodeConfigError(source, "ack_keys", "must list at least one key {id, secret}")
    keys: list[AckKey] = []
    for i, entry in enumerate(raw):
        key = f"ack_keys[{i}]"
        if not isinstance(entry, dict) or set(entry) != {"id", "secret"}:
            raise NodeConfigError(source, key, "must be a mapping {id, secret}")
        key_id = _get(entry, "id", str, source, f"{key}.")
        secret = _get(entry, "secret", str, source, f"{key}.")
        keys.append(_built(source, key, partial(AckKey, key_id, secret)))
    if len({k.id for k in keys}) != len(keys):
        raise NodeConfigError(source, "ack_keys", "two keys with the same id")
    return tuple(keys)


def _callback_secrets(c: dict[str, Any], source: str) -> tuple[str, ...]:
    raw = _get(c, "voice_callback_secrets", list, source, "carriers.")
    if not raw:
        raise NodeConfigError(source, "carriers.voice_callback_secrets",
                              "must list at least one secret")
    for i, secret in enumerate(raw):
        if not isinstance(secret, str) or len(secret) < MIN_CALLBACK_SECRET:
            raise NodeConfigError(source, f"carriers.voice_callback_secrets[{i}]",
                                  f"must be a string of {MIN_CALLBACK_SECRET}+ characters")
    return tuple(raw)


def _http(data: dict[str, Any], source: str) -> HttpLimits:
    raw = data.get("http")
    if raw is None:
        return HttpLimits()
    if not isinstance(raw, dict):
        raise NodeConfigError(source, "http", "must be a mapping")
    known = {f.name for f in dataclasses.fields(HttpLimits)}
    values: dict[str, Any] = {}
    for name in raw:
        if name not in known:
            raise NodeConfigError(source, f"http.{name}", "unknown key")
        kind = int if isinstance(getattr(HttpLimits(), name), int) else float
        values[name] = _get(raw, name, kind, source, "http.")
    return _built(source, "http", partial(HttpLimits, **values))


def _patroni_urls(data: dict[str, Any], source: str) -> tuple[str, ...]:
    """Optional ``patroni_urls``: a list of ``http(s)://host:port`` (no path), or null/absent."""
    raw = data.get("patroni_urls")
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise NodeConfigError(source, "patroni_urls",
                              f"must be a list of http://host:port, got {raw!r}")
    urls: list[str] = []
    for i, url in enumerate(raw):
        parts = urlsplit(url) if isinstance(url, str) else None
        if parts is not None and (parts.username is not None or parts.password is not None):
            # GET /cluster needs no credentials, and the URL goes into events and logs: the
            # error does not repeat it either.
            raise NodeConfigError(source, f"patroni_urls[{i}]",
                                  "must not carry credentials (GET /cluster needs none)")
        if (parts is None or parts.scheme not in ("http", "https") or not parts.hostname
                or parts.path not in ("", "/") or parts.query or parts.fragment):
            raise NodeConfigError(source, f"patroni_urls[{i}]",
                                  f"must be http://host:port of a Patroni REST API, got {url!r}")
        try:
            parts.port  # noqa: B018 - raises ValueError on a port out of range or not a number
        except ValueError as exc:
            raise NodeConfigError(source, f"patroni_urls[{i}]", str(exc)) from exc
        urls.append(url.rstrip("/"))
    return tuple(urls)


def _drill_intervals(raw: Any, source: str) -> dict[str, float]:
    """``drills: {intervals: {kind: interval}}`` (``failover/drills/schedule.py``)."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise NodeConfigError(source, "drills", "must be a mapping (intervals)")
    try:
        return parse_intervals(raw.get("intervals"), "drills.intervals")
    except IntervalError as exc:
        raise NodeConfigError(source, exc.key, str(exc).split(": ", 1)[1]) from None


def _unsafe(data: dict[str, Any], source: str, environ: Mapping[str, str]) -> frozenset[str]:
    """``unsafe_test_switches``: a list of UNSAFE_SWITCHES, refused without UNSAFE_ENV=1."""
    raw = data.get("unsafe_test_switches")
    if raw is None or raw == []:
        return frozenset()
    if not isinstance(raw, list) or not all(isinstance(x, str) for x in raw):
        raise NodeConfigError(source, "unsafe_test_switches", "must be a list of names")
    for name in raw:
        if name not in UNSAFE_SWITCHES:
            raise NodeConfigError(source, "unsafe_test_switches",
                                  f"unknown switch {name!r} (known: {', '.join(UNSAFE_SWITCHES)})")
    if environ.get(UNSAFE_ENV) != "1":
        raise NodeConfigError(source, "unsafe_test_switches",
                              f"test-only switches {raw} refused: set {UNSAFE_ENV}=1 in the "
                              "node's environment (tests only, never in production)")
    return frozenset(raw)


def parse_node_config(data: Any, source: str = "<node config>",
                      environ: Mapping[str, str] | None = None) -> NodeConfig:
    if not isinstance(data, dict):
        raise NodeConfigError(source, "(document)", "must be a mapping")
    c = _get(data, "carriers", dict, source)
    carriers = CarrierEndpoints(
        host=_get(c, "host", str, source, "carriers."),
        smpp_port=_get(c, "smpp_port", int, source, "carriers."),
        smpp_system_id=_get(c, "smpp_system_id", str, source, "carriers."),
        smpp_password=_get(c, "smpp_password", str, source, "carriers."),
        smtp_port=_get(c, "smtp_port", int, source, "carriers."),
        voice_port=_get(c, "voice_port", int, source, "carriers."),
        rate_per_s=_get(c, "rate_per_s", float, source, "carriers."),
        window=_get(c, "window", int, source, "carriers."),
        voice_callback_secrets=_callback_secrets(c, source),
        tls=parse_carrier_tls(c, lambda key, problem: NodeConfigError(source, key, problem)),
    )
    cfg = NodeConfig(
        node=_get(data, "node", str, source),
        site=_get(data, "site", str, source),
        listen_host=_get(data, "listen_host", str, source),
        listen_port=_get(data, "listen_port", int, source),
        public_url=_get(data, "public_url", str, source).rstrip("/"),
        dsn=_get(data, "dsn", str, source),
        users=_users(data, source),
        ack_keys=_ack_keys(data, source),
        carriers=carriers,
        lease_s=_get(data, "lease_s", float, source),
        max_batches=_get(data, "max_batches", int, source),
        drain_deadline_s=_get(data, "drain_deadline_s", float, source),
        receipt_timeout_s=_get(data, "receipt_timeout_s", float, source),
        log_level=str(data.get("log_level", "INFO")),
        patroni_urls=_patroni_urls(data, source),
        unsafe=_unsafe(data, source, os.environ if environ is None else environ),
        evidence=parse_evidence(data.get("evidence"),
                                lambda key, problem: NodeConfigError(source, key, problem)),
        http=_http(data, source),
        journal_dir=_journal_dir(data, source),
        claim_ahead_s=(_get(data, "claim_ahead_s", float, source) if "claim_ahead_s" in data
                       else DEFAULT_CLAIM_AHEAD_S),
        claim_ahead_max=(_get(data, "claim_ahead_max", int, source)
                         if "claim_ahead_max" in data else DEFAULT_CLAIM_AHEAD_MAX),
        drill_intervals=_drill_intervals(data.get("drills"), source),
        tls=parse_tls(data.get("tls"), lambda key, problem: NodeConfigError(source, key, problem)),
    )
    raw_coord = data.get("coordination")
    if raw_coord is not None:
        k = _get(data, "coordination", dict, source)
        endpoints = _get(k, "endpoints", list, source, "coordination.")
        if not endpoints or not all(isinstance(e, str) and ":" in e for e in endpoints):
            raise NodeConfigError(source, "coordination.endpoints",
                                  "must be a non-empty list of host:port")
        coord = CoordinationConfig(
            backend=_get(k, "backend", str, source, "coordination."),
            endpoints=tuple(endpoints),
            namespace=_get(k, "namespace", str, source, "coordination."),
            ttl=_get(k, "ttl", float, source, "coordination."),
            retry_timeout=_get(k, "retry_timeout", float, source, "coordination."),
            fencing_safety=_get(k, "fencing_safety", float, source, "coordination."),
            watchdog_cycle_s=_get(k, "watchdog_cycle_s", float, source, "coordination."),
            store_grace_s=(_get(k, "store_grace_s", float, source, "coordination.")
                           if "store_grace_s" in k else 3.0),
            zk_digest=(_get(k, "zk_digest", str, source, "coordination.")
                       if k.get("zk_digest") is not None else None),
        )
        if coord.zk_digest is not None and ":" not in coord.zk_digest[1:-1]:
            raise NodeConfigError(source, "coordination.zk_digest", "must be user:password")
        if coord.backend not in ("etcd", "zookeeper"):
            raise NodeConfigError(source, "coordination.backend", "must be etcd or zookeeper")
        if not coord.retry_timeout <= coord.fencing_safety < coord.ttl:
            raise NodeConfigError(source, "coordination.fencing_safety",
                                  "must be >= retry_timeout and < ttl")
        if not coord.retry_timeout <= coord.store_grace_s <= coord.ttl:
            raise NodeConfigError(source, "coordination.store_grace_s",
                                  "must be >= retry_timeout (one slow answer is no cut) and "
                                  "<= ttl (a cut site's work moves no later than a dead one's)")
        cfg = dataclasses.replace(cfg, coordination=coord)
    if cfg.tls is not None and not cfg.public_url.startswith("https://"):
        raise NodeConfigError(source, "public_url", "must be https:// when tls is set (the "
                              "links and callback URLs it makes would be followed in clear)")
    if cfg.tls is not None and any(u.startswith("http://") for u in cfg.patroni_urls):
        raise NodeConfigError(source, "patroni_urls", "must be https:// when tls is set")
    if cfg.lease_s < 3:
        raise NodeConfigError(source, "lease_s", "must be at least 3 seconds")
    if not 1 <= cfg.max_batches <= 64:
        raise NodeConfigError(source, "max_batches", "must be between 1 and 64")
    if not 0 <= cfg.claim_ahead_s <= 600:
        raise NodeConfigError(source, "claim_ahead_s", "must be between 0 (no reserve) and 600")
    if not 0 <= cfg.claim_ahead_max <= 1024:
        raise NodeConfigError(source, "claim_ahead_max", "must be between 0 and 1024")
    return cfg


def _journal_dir(data: dict[str, Any], source: str) -> str:
    """``journal_dir``: an absolute directory (default DEFAULT_JOURNAL_DIR)."""
    if data.get("journal_dir") is None:
        return DEFAULT_JOURNAL_DIR
    value: str = _get(data, "journal_dir", str, source)
    if not value.startswith("/") or "\0" in value:
        raise NodeConfigError(source, "journal_dir", "must be an absolute path")
    return value.rstrip("/") or "/"


def load_node_config(path: str | Path) -> NodeConfig:
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise NodeConfigError(str(p), "(file)", str(exc)) from exc
    return parse_node_config(data, str(p))
