"""How the runtime container is probed and how it stops, inside the pod's termination grace period.

Stopping: the kubelet runs the preStop hook (a sleep, while the endpoint controllers and every proxy drop the
pod), then sends SIGTERM. The runtime then answers `/ready` with 503 for `--drain-seconds` with its listener
still open, closes it, gives in-flight requests `--shutdown-timeout` seconds, aborts what is left and exits.
The kubelet kills the container `terminationGracePeriodSeconds` after the preStop hook began, so:

    shutdown timeout = grace - preStop - drain - exit margin, and at least MIN_SHUTDOWN_TIMEOUT

The exit margin covers stopping vLLM's engine process after the abort. The spec's lower bound on the grace
period (`spec.MIN_GRACE_SECONDS`) is the sum at the minimum, so the clamp never makes the sum exceed it.

Probing: a busy CPU pod can take seconds to answer, so every probe allows 5 seconds (Kubernetes' default is 1),
and liveness restarts a pod only after a minute without an answer.
"""

from __future__ import annotations

from typing import Any

from vif.operator.spec import InferenceModelSpec

PRE_STOP_SECONDS = 5  # endpoint removal reaches kube-proxy and routers in about this time
DRAIN_SECONDS = 5  # the runtime's /ready says 503 with the listener open, for whoever polls /ready itself
EXIT_MARGIN_SECONDS = 10
MIN_SHUTDOWN_TIMEOUT = 5
PROBE_TIMEOUT_SECONDS = 5


def shutdown_timeout(grace_seconds: int) -> int:
    """Seconds in-flight requests get after SIGTERM's drain, so the runtime exits before the kubelet kills it."""
    return max(grace_seconds - PRE_STOP_SECONDS - DRAIN_SECONDS - EXIT_MARGIN_SECONDS, MIN_SHUTDOWN_TIMEOUT)


def lifecycle_args(spec: InferenceModelSpec) -> list[str]:
    """The runtime's shutdown flags for the spec's grace period."""
    timeout = shutdown_timeout(spec.termination_grace_period_seconds)
    return ["--drain-seconds", str(DRAIN_SECONDS), "--shutdown-timeout", str(timeout)]


def pre_stop_hook() -> dict[str, Any]:
    """A container `lifecycle`: the kubelet's own sleep (Kubernetes 1.30+), since the image may have no `sleep`."""
    return {"preStop": {"sleep": {"seconds": PRE_STOP_SECONDS}}}


def probe(path: str, period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": "http"},
        "periodSeconds": period,
        "timeoutSeconds": PROBE_TIMEOUT_SECONDS,
        "failureThreshold": failures,
    }


def probes() -> dict[str, dict[str, Any]]:
    """The container's probes: `/health` answers while the process lives, `/ready` once the model serves."""
    return {
        "livenessProbe": probe("/health", 10, 6),  # a minute without an answer
        "readinessProbe": probe("/ready", 5, 3),
        # Loading a model can take minutes; liveness waits until the process has answered once (10 minutes).
        "startupProbe": probe("/health", 5, 120),
    }
