"""The metrics registry and its text exposition."""

from __future__ import annotations

import math

import pytest

from nodes.metrics import Metrics, Registry, format_value

pytestmark = pytest.mark.unit


def test_counters_and_gauges_render_in_exposition_format() -> None:
    r = Registry()
    sent = r.counter("tenir_messages_sent_total", "Sent.", ("channel", "carrier", "result"))
    sent.inc(channel="sms", carrier="smpp-paris", result="accepted")
    sent.inc(2, channel="sms", carrier="smpp-paris", result="accepted")
    sent.inc(channel="voice", carrier='say "hi"\\\n', result="refused")
    g = r.gauge("tenir_batches_running", "Running batches.")
    g.inc(3)
    g.dec()
    text = r.render()
    assert text.splitlines() == [
        "# HELP tenir_messages_sent_total Sent.",
        "# TYPE tenir_messages_sent_total counter",
        'tenir_messages_sent_total{channel="sms",carrier="smpp-paris",result="accepted"} 3',
        'tenir_messages_sent_total{channel="voice",carrier="say \\"hi\\"\\\\\\n",'
        'result="refused"} 1',
        "# HELP tenir_batches_running Running batches.",
        "# TYPE tenir_batches_running gauge",
        "tenir_batches_running 2",
    ]
    assert sent.value(channel="sms", carrier="smpp-paris", result="accepted") == 3


def test_misuse_is_refused() -> None:
    r = Registry()
    c = r.counter("c_total", "C.", ("a",))
    with pytest.raises(ValueError, match="decrease"):
        c.inc(-1, a="x")
    with pytest.raises(ValueError, match="labels"):
        c.inc(b="x")
    with pytest.raises(ValueError, match="labels"):
        c.inc()
    assert r.counter("c_total", "C.", ("a",)) is c  # same declaration: same metric
    with pytest.raises(ValueError, match="already declared"):
        r.gauge("c_total", "C.", ("a",))
    with pytest.raises(ValueError, match="already declared"):
        r.counter("c_total", "C.", ("b",))
    with pytest.raises(ValueError, match="invalid metric name"):
        r.counter("1bad", "x")
    with pytest.raises(ValueError, match="invalid label"):
        r.counter("ok_total", "x", ("__reserved",))


def test_values_are_formatted_as_prometheus_reads_them() -> None:
    assert format_value(3.0) == "3"
    assert format_value(0.25) == "0.25"
    assert format_value(math.inf) == "+Inf"
    assert format_value(-math.inf) == "-Inf"
    assert format_value(math.nan) == "NaN"


def test_node_metrics_declare_the_dispatcher_series() -> None:
    m = Metrics()
    m.fencing_rejections.inc()
    m.messages_sent.inc(channel="email", carrier="smtp-mrs", result="retryable")
    text = m.render()
    assert "tenir_fencing_rejections_total 1" in text
    assert ('tenir_messages_sent_total{channel="email",carrier="smtp-mrs",result="retryable"} 1'
            in text)
