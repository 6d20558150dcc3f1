"""The files for teams on Prometheus (deploy/prometheus, deploy/grafana) load, and name only what a running gateway
exports: the alert rules by promtool (Debian's `prometheus` package, installed by run.sh's test setup) and its rule
unit tests, else by their YAML; the Grafana dashboard by its JSON, every PromQL expression in it checked against the
series of a real gateway process in front of real Chroma servers."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import chromadb
import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.harness import GatewayProcess, wait_drained

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
SCRAPE = ROOT / "deploy" / "prometheus" / "prometheus.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "chroma-ha.json"
BUILT_IN_ALERTS = {"instance_down", "divergence", "lag", "backlog", "store"}  # chroma_ha/ops/alerts.py's keys
PROMETHEUS_OWN = {"up"}  # series Prometheus makes itself for every target

_KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset"}
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"')
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGES = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_NAME = re.compile(r"(?<![a-zA-Z0-9_:.])[a-zA-Z_:][a-zA-Z0-9_:]*(?![a-zA-Z0-9_:]|\s*\()")
_TEMPLATE = re.compile(r"\$\w+")


def metric_names(expr: str) -> set[str]:
    """The series an expression reads: what is left once strings, matchers, ranges, grouping clauses, variables,
    function calls and keywords are taken out."""
    bare = expr
    for pattern in (_STRINGS, _MATCHERS, _RANGES, _GROUPING, _TEMPLATE):
        bare = pattern.sub(" ", bare)
    return {m.group(0) for m in _NAME.finditer(bare)} - _KEYWORDS


def test_metric_names_are_found_in_promql() -> None:
    expr = (
        "histogram_quantile(0.99, sum by (le, route_class) (rate(chroma_ha_request_duration_seconds_bucket"
        '{instance=~"$gateway",status=~"5.."}[$__rate_interval]))) > 1 and on (instance) up == 1'
    )
    assert metric_names(expr) == {"chroma_ha_request_duration_seconds_bucket", "up"}


@pytest.fixture
def exported(gateway: GatewayProcess) -> set[str]:
    """Every sample name a gateway that has served reads and writes exports."""
    col = chromadb.HttpClient(host="127.0.0.1", port=gateway.port).create_collection("metered", embedding_function=None)
    col.add(ids=["a", "b"], embeddings=[[1.0, 0.0], [0.0, 1.0]])
    col.query(query_embeddings=[[1.0, 0.0]], n_results=1)
    wait_drained(gateway.url)
    text = httpx.get(f"{gateway.url}/metrics", timeout=10).text
    return {s.name for family in text_string_to_metric_families(text) for s in family.samples}


def rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(RULES.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def test_alert_rules_are_valid_and_name_only_exported_series(exported: set[str]) -> None:
    promtool = shutil.which("promtool")
    if promtool is not None:
        for what, path in (("rules", RULES), ("config", SCRAPE)):
            checked = subprocess.run([promtool, "check", what, str(path)], capture_output=True, text=True)
            assert checked.returncode == 0, checked.stdout + checked.stderr
    # without promtool (it did not install), the YAML itself: every rule well formed
    names = [rule["alert"] for rule in rules()]
    assert len(names) == len(set(names))
    for rule in rules():
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}
        assert rule["annotations"]["summary"]
        unknown = metric_names(rule["expr"]) - exported - PROMETHEUS_OWN
        assert not unknown, f"{rule['alert']} reads series no gateway exports: {unknown}"
    # every built-in alert has its rule, said in a comment beside it
    text = RULES.read_text()
    assert {key for key in BUILT_IN_ALERTS if f"built-in: {key}" in text} == BUILT_IN_ALERTS


def test_alert_rules_fire_as_the_built_in_alerts_do(tmp_path: Path) -> None:
    """promtool's rule unit tests: an instance down as two gateways see it fires once; lag of a down instance
    does not fire; a divergence does."""
    promtool = shutil.which("promtool")
    assert promtool is not None, "promtool is missing: run.sh test installs Debian's prometheus package"
    by_gw = 'chroma_ha_instance_{}{{job="chroma-ha",instance="{}",exported_instance="http://b:8000"}}'
    down = {
        "severity": "critical",
        "exported_instance": "http://b:8000",
    }
    tests = {
        "rule_files": [str(RULES)],
        "evaluation_interval": "15s",
        "tests": [
            {
                "interval": "15s",
                "input_series": [
                    *(
                        {"series": by_gw.format("up", gw), "values": "1 1 0 0 0 0 0 0 0 0"}
                        for gw in ("gw-1:8000", "gw-2:8000")
                    ),
                    *(
                        {"series": by_gw.format("lag_seconds", gw), "values": "0 0 90 105 120 135 150 165 180 195"}
                        for gw in ("gw-1:8000", "gw-2:8000")
                    ),
                    {"series": 'chroma_ha_divergences{job="chroma-ha",instance="gw-1:8000"}', "values": "0 0 1 1 1"},
                ],
                "alert_rule_test": [
                    {"eval_time": "15s", "alertname": "ChromaHaInstanceDown", "exp_alerts": []},
                    {
                        "eval_time": "2m",
                        "alertname": "ChromaHaInstanceDown",
                        "exp_alerts": [
                            {
                                "exp_labels": down,
                                "exp_annotations": {
                                    "summary": "Instance http://b:8000 is down",
                                    "description": "Reads go to the other instances; its writes wait in the log "
                                    "and are applied when it returns.",
                                },
                            }
                        ],
                    },
                    {"eval_time": "2m", "alertname": "ChromaHaInstanceLag", "exp_alerts": []},
                    {
                        "eval_time": "1m",
                        "alertname": "ChromaHaDivergence",
                        "exp_alerts": [
                            {
                                "exp_labels": {"severity": "critical"},
                                "exp_annotations": {
                                    "summary": "1 unresolved divergences between instances",
                                    "description": "See `chroma-ha wal divergences`; repair with `chroma-ha repair` "
                                    "or `chroma-ha bootstrap`.",
                                },
                            }
                        ],
                    },
                ],
            }
        ],
    }
    path = tmp_path / "rules_test.yml"
    path.write_text(yaml.safe_dump(tests))
    tested = subprocess.run([promtool, "test", "rules", str(path)], capture_output=True, text=True)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_the_grafana_dashboard_imports_and_reads_only_exported_series(exported: set[str]) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["title"] and dashboard["uid"] and isinstance(dashboard["schemaVersion"], int)
    assert [i["pluginId"] for i in dashboard["__inputs"]] == ["prometheus"]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    expressions = [t["expr"] for p in panels for t in p["targets"]]
    assert len(expressions) >= 20
    for panel in panels:
        assert panel["datasource"]["uid"] == "${datasource}" and panel["targets"], panel["title"]
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24 and grid["h"] > 0
    read = set().union(*(metric_names(e) for e in expressions))
    assert not read - exported, f"the dashboard reads series no gateway exports: {read - exported}"
    gateway_query = variables["gateway"]["query"]["query"]
    assert not metric_names(gateway_query.replace("label_values", "")) - exported - {"instance"}
    # the whole cluster, and each gateway's share beside it
    titles = " ".join(p["title"] for p in panels)
    assert "the cluster and each gateway's share" in titles
    assert any("sum by (instance)" in e and "appended_entries" in e for e in expressions)
    assert any(e.startswith("sum(rate(chroma_ha_log_appended_entries_total") for e in expressions)
