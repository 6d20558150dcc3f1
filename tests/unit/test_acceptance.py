"""The judgements of `chroma-ha check` (chroma_ha/ops/acceptance.py), from documents as a gateway answers them."""

from __future__ import annotations

import pytest

from chroma_ha.ops.acceptance import (
    FAIL,
    PASS,
    SKIP,
    CheckFailed,
    CheckReport,
    CheckResult,
    NotApplicable,
    data_auth_on,
    describe_lag,
    document_deletion,
    judge_document,
    judge_health,
    judge_metrics,
    lagging,
)

HEALTHY = {
    "status": "healthy",
    "healthy_instances": "2/2",
    "store": "ok",
    "instances": {"http://a:1": {"up": True}, "http://b:1": {"up": True}},
}


def test_health_passes_only_with_every_instance_up_and_names_those_down() -> None:
    assert judge_health(HEALTHY, 200) == "healthy, 2/2 instances up"
    degraded = {**HEALTHY, "status": "degraded", "instances": {"http://a:1": {"up": True}, "http://b:1": {"up": False}}}
    with pytest.raises(CheckFailed, match="instance http://b:1 down") as failed:
        judge_health(degraded, 200)
    assert failed.value.instances == ["http://b:1"]
    with pytest.raises(CheckFailed, match="store unreachable"):
        judge_health({**HEALTHY, "store": "unreachable"}, 200)
    with pytest.raises(CheckFailed, match="HTTP 503"):
        judge_health(HEALTHY, 503)
    with pytest.raises(CheckFailed, match="without a health document"):
        judge_health({"error": "NotFound"}, 404)


def test_admin_documents_need_their_fields() -> None:
    assert judge_document("/wal/divergences", {"divergences": [], "count": 0})
    with pytest.raises(CheckFailed, match="lacks head, oldest"):
        judge_document("/wal/status", {"instances": {}, "divergence_count": 0, "divergences": []})
    with pytest.raises(CheckFailed, match="not a JSON object"):
        judge_document("/status", [1, 2])


def test_metrics_must_parse_and_hold_the_gateways_series() -> None:
    text = (
        "# TYPE chroma_ha_log_head_seq gauge\nchroma_ha_log_head_seq 7\n"
        '# TYPE chroma_ha_instance_up gauge\nchroma_ha_instance_up{instance="http://a:1"} 1\n'
        '# TYPE chroma_ha_requests counter\nchroma_ha_requests_total{route_class="read"} 3\n'
    )
    assert judge_metrics(text).endswith(" families, 3 samples")
    with pytest.raises(CheckFailed, match="lacks chroma_ha_instance_up, chroma_ha_requests"):
        judge_metrics("chroma_ha_log_head_seq 7\n")
    with pytest.raises(CheckFailed, match="does not parse"):
        judge_metrics("chroma_ha_log_head_seq{ 7\n")


def test_lagging_instances_are_those_below_the_seq() -> None:
    status = {"instances": {"http://a:1": {"cursor": 9, "up": True}, "http://b:1": {"cursor": 4, "up": False}}}
    assert lagging(status, 9) == {"http://b:1": (4, False)}
    assert lagging(status, 4) == {}
    assert describe_lag(lagging(status, 9), 9) == "instance http://b:1 is down, at seq 4 of 9"


def test_document_deletion_applies_where_configured_for_the_collection() -> None:
    with pytest.raises(NotApplicable, match="not configured"):
        document_deletion({"settings": {"delete_expand_key": ""}}, "scratch")
    assert document_deletion({"settings": {"delete_expand_key": "doc", "delete_expand_collections": []}}, "s") == "doc"
    limited = {"settings": {"delete_expand_key": "doc", "delete_expand_collections": ["docs", "pages"]}}
    with pytest.raises(NotApplicable, match="limited to docs, pages"):
        document_deletion(limited, "scratch")
    assert document_deletion(limited, "docs") == "doc"


def test_data_auth_is_on_as_the_gateway_says() -> None:
    assert not data_auth_on({"settings": {"admin_token": "***", "ack": "one"}})
    assert data_auth_on({"settings": {"admin_token": "", "auth_tokens": "***"}})
    assert not data_auth_on({"settings": {"auth_tokens": ""}})
    assert data_auth_on({"auth": {"enabled": True}})
    assert not data_auth_on({"auth": {"enabled": False}})


def test_a_report_passes_only_with_checks_and_none_failed() -> None:
    assert not CheckReport("http://g").ok
    report = CheckReport("http://g", [CheckResult("a", PASS, 0.1), CheckResult("b", SKIP, 0.0, "not configured")])
    assert report.ok
    report.results.append(CheckResult("c", FAIL, 1.0, "down", ["http://b:1"]))
    assert not report.ok and report.instances_at_fault == ["http://b:1"]
    assert report.as_dict()["checks"][2] == {
        "name": "c",
        "status": "fail",
        "seconds": 1.0,
        "detail": "down",
        "instances": ["http://b:1"],
    }
