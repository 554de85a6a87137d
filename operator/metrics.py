"""The operator's own Prometheus metrics, served on --metrics-port (the chart's optional ServiceMonitor)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

RECONCILES = Counter("vif_operator_reconciles", "Reconciliations by result.", ["result"])
RECONCILE_SECONDS = Histogram("vif_operator_reconcile_seconds", "Time one reconciliation took.")
