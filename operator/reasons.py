"""Every reason the operator writes into a model's conditions and events: docs/troubleshooting.md says what each
means and what to do (a test checks that it lists them all). A rollout's failure also passes on the Deployment's
own reason (`FailedCreate`, `ProgressDeadlineExceeded`, ...)."""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    # Ready
    REPLICAS_READY = "ReplicasReady"
    REPLICAS_NOT_READY = "ReplicasNotReady"
    SCALED_TO_ZERO = "ScaledToZero"
    DEPLOYMENT_MISSING = "DeploymentMissing"
    ROUTER_NOT_READY = "RouterNotReady"
    # Progressing
    CREATING = "Creating"
    ROLLING_OUT = "RollingOut"
    ROLLOUT_COMPLETE = "RolloutComplete"
    # Degraded (and a Warning event), or all is well
    AS_EXPECTED = "AsExpected"
    INVALID_SPEC = "InvalidSpec"
    POLICY_VIOLATION = "PolicyViolation"
    KIND_NOT_INSTALLED = "KindNotInstalled"
    NAME_CONFLICT = "NameConflict"
    APPLY_FAILED = "ApplyFailed"
    DOWNLOAD_FAILED = "DownloadFailed"
    LIVE_CONFIG_REFUSED = "LiveConfigRefused"
    KEDA_REQUIRED = "KEDARequired"
    PROMETHEUS_ADDRESS_MISSING = "PrometheusAddressMissing"
    TRACING_ENDPOINT_MISSING = "TracingEndpointMissing"
    # Normal events
    PRUNED = "Pruned"
