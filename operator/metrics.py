"""The operator's own Prometheus metrics, served on --metrics-port (the chart's optional ServiceMonitor)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

RECONCILES = Counter("vif_operator_reconciles", "Reconciliations by result.", ["result"])
RECONCILE_SECONDS = Histogram("vif_operator_reconcile_seconds", "Time one reconciliation took.")
API_REQUESTS = Counter(
    "vif_operator_api_requests", "Requests the operator's handlers sent to the API server.", ["verb", "kind", "code"]
)
CHILD_APPLIES = Counter(
    "vif_operator_child_applies",
    "Children compared with what is wanted: applied, or unchanged and skipped.",
    ["result"],
)
