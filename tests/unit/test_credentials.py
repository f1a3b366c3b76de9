"""Where the CLI finds a secret: the environment first, then the lab's secrets, else a clear
refusal naming the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from cluster.credentials import secret
from cluster.lab.health import haproxy_stats_password
from cluster.node_api import ApiError, operator_token
from replication.haproxy import HAProxyError

pytestmark = pytest.mark.unit


@pytest.fixture
def lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TENIR_LAB_DIR", str(tmp_path))
    for name in ("TENIR_TOKEN", "TENIR_HAPROXY_STATS_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def test_the_environment_wins_then_the_lab_then_nothing(
        lab: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert secret("TENIR_TOKEN", "token_operator") is None
    with pytest.raises(ApiError, match="set TENIR_TOKEN"):
        operator_token()
    with pytest.raises(HAProxyError, match="set TENIR_HAPROXY_STATS_PASSWORD"):
        haproxy_stats_password()
    from cluster.lab.layout import Layout

    layout = Layout(lab)
    layout.root.mkdir(parents=True, exist_ok=True)
    secrets = layout.load_or_create_secrets()
    assert operator_token() == secrets["token_operator"]
    assert haproxy_stats_password() == secrets["haproxy_stats"]
    monkeypatch.setenv("TENIR_TOKEN", "from-the-vault")
    assert operator_token() == "from-the-vault"
    monkeypatch.setenv("TENIR_TOKEN", "")  # empty is unset
    assert operator_token() == secrets["token_operator"]
