"""The chart's Grafana dashboard and PrometheusRule: rendered only when asked (the rule only where its CRD is
served), and every query names only metrics that vif's runtime and router, or vLLM's engine, export.

The exported names come from the code itself (the runtime's and the router's registries, vLLM's stat logger), so
renaming a metric there fails here. Needs helm (`make cluster-build`), no cluster.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from helpers.cluster import REPO, helm
from vif.runtime.router.endpoints import EndpointSet
from vif.runtime.router.metrics import RouterMetrics
from vif.runtime.serving.metrics import RuntimeMetrics

CHART = REPO / "charts" / "vif-operator"
DASHBOARD = CHART / "dashboards" / "vif.json"
WITH_RULE_CRD = ["--api-versions", "monitoring.coreos.com/v1/PrometheusRule"]
# kube-state-metrics' HPA series, the only metrics used that vif does not export: vif knows no replica bounds.
# The dashboard's replicas panel and the VifReplicasAtMax alert use them, and say they need kube-state-metrics.
KUBE_STATE_METRICS = {
    "kube_horizontalpodautoscaler_status_current_replicas",
    "kube_horizontalpodautoscaler_status_desired_replicas",
    "kube_horizontalpodautoscaler_spec_max_replicas",
}
METRIC_CLASSES = {"counter": Counter, "gauge": Gauge, "histogram": Histogram}
# How vLLM's PrometheusStatLogger declares each kind of metric (vllm/v1/metrics/loggers.py).
VLLM_DECLARATIONS = {"_counter_cls": "counter", "_gauge_cls": "gauge", "_histogram_cls": "histogram"}
# PromQL words that are neither functions (followed by a parenthesis) nor metrics.
PROMQL_WORDS = {"and", "or", "unless", "bool", "offset"}


def exposed(name: str, kind: str) -> set[str]:
    """The series names prometheus_client serves for a metric: a counter's `_total`, a histogram's `_bucket`..."""
    registry = CollectorRegistry()
    METRIC_CLASSES[kind](name, "-", registry=registry)
    return {sample.name for family in registry.collect() for sample in family.samples}


def registry_names(registry: CollectorRegistry) -> set[str]:
    return {name for family in registry.collect() for name in exposed(family.name, family.type)}


def vllm_names() -> set[str]:
    """The metrics vLLM's Prometheus stat logger declares, read from its source (importing it needs the engine)."""
    spec = importlib.util.find_spec("vllm")
    if spec is None or not spec.submodule_search_locations:
        pytest.fail("vLLM is not installed: `make install`")
    source = Path(spec.submodule_search_locations[0]) / "v1" / "metrics" / "loggers.py"
    names: set[str] = set()
    for node in ast.walk(ast.parse(source.read_text())):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            kind = VLLM_DECLARATIONS.get(node.func.attr)
            for keyword in node.keywords if kind else ():
                if keyword.arg == "name" and isinstance(keyword.value, ast.Constant):
                    names |= exposed(keyword.value.value, kind)
    assert names, f"{source} declares no metrics the way this test reads them: has vLLM moved them?"
    return names


@pytest.fixture(scope="module")
def exported() -> set[str]:
    """Every series name a runtime pod or a router pod serves at /metrics."""
    runtime = CollectorRegistry()
    RuntimeMetrics("m", registry=runtime)
    router = RouterMetrics("m", EndpointSet(["http://replica:8000"]), pending=lambda: 0)
    return registry_names(runtime) | registry_names(router.registry) | vllm_names()


def metric_names(query: str) -> set[str]:
    """The metrics a PromQL expression, or a Grafana `label_values(selector, label)` query, selects."""
    label_values = re.fullmatch(r"label_values\((.*),\s*\w+\)", query.strip(), re.S)
    expr = label_values.group(1) if label_values else query
    names = {n for m in re.findall(r'__name__=~?"([^"]*)"', expr) for n in m.split("|")}
    bare = re.sub(r'\{[^}]*\}|\[[^\]]*\]|"[^"]*"', " ", expr)  # matchers, ranges, strings
    bare = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", bare)  # label lists
    for token in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", bare):
        if not bare[token.end() :].lstrip().startswith("(") and token.group() not in PROMQL_WORDS:
            names.add(token.group())
    return names


def render(*args: str) -> list[dict[str, Any]]:
    out = helm("template", "vif", str(CHART), "-n", "vif-system", *args).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def of_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])  # a collapsed row holds its panels


def dashboard_queries(dashboard: dict[str, Any]) -> Iterator[tuple[str, str, str]]:
    """(where, query, description) for every panel target and query variable."""
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            yield panel["title"], target["expr"], panel.get("description", "")
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            yield f"${variable['name']}", query["query"] if isinstance(query, dict) else query, ""


def alert_rules(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    (rule,) = of_kind(docs, "PrometheusRule")
    return [r for group in rule["spec"]["groups"] for r in group["rules"]]


def test_metric_names_reads_promql() -> None:
    query = 'histogram_quantile(0.95, sum by (le) (rate(a_bucket{x="y", s=~"$m(-r)?"}[$__rate_interval]))) and on (n) b'
    assert metric_names(query) == {"a_bucket", "b"}
    assert metric_names("group by (service) (vllm:x) or vector(0) > 0.5") == {"vllm:x"}
    assert metric_names('label_values({__name__=~"c|d", namespace="$ns"}, service)') == {"c", "d"}


def test_the_exported_names_come_from_the_code(exported: set[str]) -> None:
    # Spot checks that each source was read, and the suffixes prometheus_client adds.
    assert {"vif_requests_total", "vif_time_to_first_token_seconds_bucket", "vif_requests_in_flight"} <= exported
    assert {"vif_router_pending_requests", "vif_router_retries_total"} <= exported
    assert {"vllm:num_requests_waiting", "vllm:inter_token_latency_seconds_bucket"} <= exported
    assert "vif_requests" not in exported


def test_dashboard_queries_name_only_exported_metrics(exported: set[str]) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    queries = list(dashboard_queries(dashboard))
    assert len(queries) > 20
    for where, query, description in queries:
        names = metric_names(query)
        assert names, f"{where}: no metric in {query!r}"
        assert names <= exported | KUBE_STATE_METRICS, f"{where}: {names - exported} are not exported"
        if names & KUBE_STATE_METRICS:
            assert "kube-state-metrics" in description, f"{where} must say it needs kube-state-metrics"
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert {"datasource", "namespace", "model"} <= variables


@pytest.mark.helm  # renders the chart
def test_alerts_name_only_exported_metrics(exported: set[str]) -> None:
    rules = alert_rules(render("--set", "alerts.enabled=true", *WITH_RULE_CRD))
    assert {r["alert"] for r in rules} == {
        "VifModelErrorRate", "VifRouterErrorRate", "VifSlowFirstToken", "VifReplicasAtMax",
    }  # fmt: skip
    for rule in rules:
        names = metric_names(rule["expr"])
        assert names and names <= exported | KUBE_STATE_METRICS, f"{rule['alert']}: {names - exported}"
        if names & KUBE_STATE_METRICS:
            assert "kube-state-metrics" in rule["annotations"]["description"], rule["alert"]


@pytest.mark.helm  # renders the chart
def test_dashboard_config_map_only_when_asked() -> None:
    assert not of_kind(render(), "ConfigMap")
    (config_map,) = of_kind(render("--set", "dashboards.enabled=true"), "ConfigMap")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config_map["metadata"]["namespace"] == "vif-system"
    assert json.loads(config_map["data"]["vif.json"]) == json.loads(DASHBOARD.read_text())
    args = ["--set", "dashboards.label=team/dashboards", "--set", "dashboards.labelValue=vif"]
    (config_map,) = of_kind(render("--set", "dashboards.enabled=true", "--set", "dashboards.namespace=grafana", *args),
                            "ConfigMap")  # fmt: skip
    assert config_map["metadata"]["labels"]["team/dashboards"] == "vif"
    assert config_map["metadata"]["namespace"] == "grafana"


@pytest.mark.helm  # renders the chart
def test_prometheus_rule_only_when_asked_and_its_crd_is_served() -> None:
    assert not of_kind(render(*WITH_RULE_CRD), "PrometheusRule")  # not asked
    assert not of_kind(render("--set", "alerts.enabled=true"), "PrometheusRule")  # no CRD
    (rule,) = of_kind(render("--set", "alerts.enabled=true", "--set", "alerts.labels.release=kps", *WITH_RULE_CRD),
                      "PrometheusRule")  # fmt: skip
    assert rule["metadata"]["labels"]["release"] == "kps"


@pytest.mark.helm  # renders the chart
def test_alert_thresholds_come_from_values() -> None:
    values = ["--set", "alerts.timeToFirstToken.p95Seconds=2.5", "--set", "alerts.errorRate.threshold=0.01",
              "--set", "alerts.replicasAtMax.enabled=false"]  # fmt: skip
    rules = {r["alert"]: r for r in alert_rules(render("--set", "alerts.enabled=true", *values, *WITH_RULE_CRD))}
    assert rules["VifSlowFirstToken"]["expr"].endswith("> 2.5")
    assert rules["VifModelErrorRate"]["expr"].endswith("> 0.01")
    assert "VifReplicasAtMax" not in rules
