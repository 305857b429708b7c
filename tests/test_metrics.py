"""Metrics and /healthz over real HTTP on 127.0.0.1, and the pure health rule."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from creatio_attach.metrics import DURATION_BUCKETS, Metrics, MetricsServer, health_check


def get(url: str) -> tuple[int, str, str]:
    """(status, content type, body) of a GET, errors included."""
    r = requests.get(url, timeout=10)
    return r.status_code, r.headers.get("Content-Type", ""), r.text


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """{(sample name, sorted labels): value} of a Prometheus text page."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


class Switch:
    """A health callback whose answer the test sets."""

    def __init__(self) -> None:
        self.answer = (True, "ok")

    def __call__(self) -> tuple[bool, str]:
        return self.answer


@pytest.fixture
def served() -> Iterator[tuple[Metrics, MetricsServer, Switch]]:
    metrics = Metrics()
    switch = Switch()
    server = MetricsServer("127.0.0.1", 0, metrics=metrics, health=switch).start()
    yield metrics, server, switch
    server.stop()


def test_metrics_page_shows_uploads_failures_retries_and_queue(
    served: tuple[Metrics, MetricsServer, Switch],
) -> None:
    metrics, server, _ = served
    metrics.add_inboxes(["scans", "calls"])
    metrics.uploaded("scans", 1000, 0.3, now=1_700_000_000.0)
    metrics.uploaded("scans", 500, 42.0, now=1_700_000_100.0)
    metrics.failed("scans", "rejected_type")
    metrics.failed("scans", "rejected_type")
    metrics.failed("calls", "no_parent")
    metrics.retried("calls")
    metrics.set_queue({"scans": {"done": 2, "ready": 3}, "calls": {"retry_wait": 1}})
    metrics.creatio_contact(True, now=1_700_000_100.0)

    status, ctype, body = get(server.url + "/metrics")
    assert status == 200
    assert ctype.startswith("text/plain")
    s = samples(body)
    scans, calls = (("inbox", "scans"),), (("inbox", "calls"),)
    assert s[("creatio_attach_files_uploaded_total", scans)] == 2
    assert s[("creatio_attach_files_uploaded_total", calls)] == 0
    assert s[("creatio_attach_bytes_uploaded_total", scans)] == 1500
    assert s[("creatio_attach_failures_total", (*scans, ("reason", "rejected_type")))] == 2
    assert s[("creatio_attach_failures_total", (*calls, ("reason", "no_parent")))] == 1
    assert s[("creatio_attach_retries_total", calls)] == 1
    assert s[("creatio_attach_queue_files", (*scans, ("state", "ready")))] == 3
    assert s[("creatio_attach_queue_files", (*calls, ("state", "retry_wait")))] == 1
    assert s[("creatio_attach_last_success_timestamp_seconds", scans)] == 1_700_000_100.0
    assert s[("creatio_attach_creatio_reachable", ())] == 1
    assert s[("creatio_attach_upload_duration_seconds_count", scans)] == 2
    assert s[("creatio_attach_upload_duration_seconds_sum", scans)] == pytest.approx(42.3)
    assert s[("creatio_attach_upload_duration_seconds_bucket", (*scans, ("le", "0.5")))] == 1
    assert s[("creatio_attach_upload_duration_seconds_bucket", (*scans, ("le", "60.0")))] == 2
    assert DURATION_BUCKETS[-1] == 600.0


def test_queue_states_that_emptied_drop_to_zero(
    served: tuple[Metrics, MetricsServer, Switch],
) -> None:
    metrics, server, _ = served
    metrics.set_queue({"scans": {"ready": 3, "uploading": 1}})
    metrics.set_queue({"scans": {"done": 4}})
    s = samples(get(server.url + "/metrics")[2])
    q = "creatio_attach_queue_files"
    assert s[(q, (("inbox", "scans"), ("state", "ready")))] == 0
    assert s[(q, (("inbox", "scans"), ("state", "uploading")))] == 0
    assert s[(q, (("inbox", "scans"), ("state", "done")))] == 4


def test_healthz_answers_200_ok_and_503_with_the_reason(
    served: tuple[Metrics, MetricsServer, Switch],
) -> None:
    _, server, switch = served
    assert get(server.url + "/healthz")[::2] == (200, "ok\n")
    switch.answer = (False, "the inbox watcher is not running")
    assert get(server.url + "/healthz")[::2] == (503, "the inbox watcher is not running\n")


def test_healthz_is_503_when_the_check_itself_breaks() -> None:
    def broken() -> tuple[bool, str]:
        raise KeyError("watcher")

    with MetricsServer("127.0.0.1", 0, metrics=Metrics(), health=broken) as server:
        status, _, body = get(server.url + "/healthz")
    assert status == 503
    assert body == "health check failed: KeyError\n"


def test_unknown_paths_are_404(served: tuple[Metrics, MetricsServer, Switch]) -> None:
    assert get(served[1].url + "/")[0] == 404


def test_two_metrics_objects_do_not_share_a_registry() -> None:
    a, b = Metrics(), Metrics()
    a.uploaded("scans", 10, 0.1)
    name = "creatio_attach_files_uploaded_total"
    assert a.registry.get_sample_value(name, {"inbox": "scans"}) == 1
    assert b.registry.get_sample_value(name, {"inbox": "scans"}) is None


def test_creatio_reachability_follows_contacts(
    served: tuple[Metrics, MetricsServer, Switch],
) -> None:
    metrics, server, _ = served
    metrics.creatio_contact(True, now=100.0)
    metrics.creatio_contact(False, now=200.0)
    metrics.creatio_contact(False, now=260.0)  # the run of failures began at 200
    assert metrics.failing_since == 200.0
    assert metrics.last_contact_ok_at == 100.0
    assert samples(get(server.url + "/metrics")[2])[("creatio_attach_creatio_reachable", ())] == 0
    assert metrics.health(True, limit=3600, now=300.0)[0] is True
    assert metrics.health(True, limit=60, now=300.0) == (
        False,
        "Creatio unreachable for 100 s (limit 60 s; last success 200 s ago)",
    )
    metrics.creatio_contact(True, now=310.0)
    assert metrics.failing_since is None
    assert metrics.health(True, limit=60, now=320.0) == (True, "ok")


def test_health_rule() -> None:
    # the watcher is down: unhealthy whatever Creatio does
    assert health_check(False, 10.0, None, 3600, 20.0) == (
        False,
        "the inbox watcher is not running",
    )
    # the last contact succeeded, or there was none yet
    assert health_check(True, 10.0, None, 3600, 20.0) == (True, "ok")
    assert health_check(True, None, None, 3600, 20.0) == (True, "ok")
    # failing, but for less than the limit: still healthy, the service retries
    ok, text = health_check(True, 10.0, 15.0, 60, 70.0)
    assert ok
    assert text.startswith("ok (Creatio unreachable for 55 s, retrying")
    # failing for the limit or longer
    assert health_check(True, None, 15.0, 60, 75.0) == (
        False,
        "Creatio unreachable for 60 s (limit 60 s; no successful contact since start)",
    )


def test_metrics_served_over_ipv6_loopback_when_asked() -> None:
    server = MetricsServer("::1", 0, metrics=Metrics(), health=lambda: (True, "ok"))
    assert server.url.startswith("http://[::1]:")
    with server:
        assert get(server.url + "/healthz")[0] == 200


def test_stop_closes_the_port_and_ends_the_thread() -> None:
    server = MetricsServer("127.0.0.1", 0, metrics=Metrics(), health=lambda: (True, "ok")).start()
    url = server.url
    assert get(url + "/healthz")[0] == 200
    server.stop()
    assert not any(t.name == "metrics-http" for t in threading.enumerate())
    with pytest.raises(requests.ConnectionError):
        requests.get(url + "/healthz", timeout=2)
