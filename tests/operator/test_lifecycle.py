"""How the runtime pod is probed and stops: the preStop wait, the runtime's shutdown flags, the grace period."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from helpers.model_children import own_children
from vif.operator.builders.lifecycle import (
    DRAIN_SECONDS,
    EXIT_MARGIN_SECONDS,
    MIN_SHUTDOWN_TIMEOUT,
    PRE_STOP_SECONDS,
    shutdown_timeout,
)
from vif.operator.policy import Policy, policy_violations
from vif.operator.spec import DEFAULT_GRACE_SECONDS, MAX_GRACE_SECONDS, MIN_GRACE_SECONDS, InferenceModelSpec

CPU_MODEL = {"model": {"path": "/models/SmolLM2-135M-Instruct"}}
RUNTIME_DEFAULT_SHUTDOWN_TIMEOUT = 30  # `vif-runtime serve --shutdown-timeout`'s default


def pod_spec(spec: dict[str, Any]) -> dict[str, Any]:
    deployment = own_children(spec)["Deployment"]
    return deployment["spec"]["template"]["spec"]


def flag(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


@pytest.mark.parametrize(("grace", "timeout"), [(60, 40), (25, 5), (120, 100), (3600, 3580), (10, 5)])
def test_shutdown_timeout_is_what_the_grace_period_leaves(grace: int, timeout: int) -> None:
    assert shutdown_timeout(grace) == timeout


def test_the_grace_period_bounds_fit_the_shutdown_sequence() -> None:
    # At the spec's minimum nothing is clamped: preStop + drain + the smallest timeout + the margin fill it exactly.
    assert MIN_GRACE_SECONDS == PRE_STOP_SECONDS + DRAIN_SECONDS + MIN_SHUTDOWN_TIMEOUT + EXIT_MARGIN_SECONDS
    # The default is longer than preStop + drain + the runtime's own default shutdown timeout.
    assert DEFAULT_GRACE_SECONDS > PRE_STOP_SECONDS + DRAIN_SECONDS + RUNTIME_DEFAULT_SHUTDOWN_TIMEOUT
    assert shutdown_timeout(DEFAULT_GRACE_SECONDS) >= RUNTIME_DEFAULT_SHUTDOWN_TIMEOUT


def test_default_pod_stops_gracefully() -> None:
    pod = pod_spec(CPU_MODEL)
    (container,) = pod["containers"]
    assert pod["terminationGracePeriodSeconds"] == DEFAULT_GRACE_SECONDS == 60
    assert container["lifecycle"] == {"preStop": {"sleep": {"seconds": PRE_STOP_SECONDS}}}
    assert flag(container["args"], "--drain-seconds") == str(DRAIN_SECONDS)
    assert flag(container["args"], "--shutdown-timeout") == "40"


def test_grace_period_from_the_spec() -> None:
    pod = pod_spec(
        {**CPU_MODEL, "terminationGracePeriodSeconds": 300, "engine": {"extraArgs": ["--max-num-seqs", "8"]}}
    )
    assert pod["terminationGracePeriodSeconds"] == 300
    args = pod["containers"][0]["args"]
    assert flag(args, "--shutdown-timeout") == "280"
    assert args[-2:] == ["--max-num-seqs", "8"]  # the model's own flags still come last


@pytest.mark.parametrize("grace", [MIN_GRACE_SECONDS - 1, MAX_GRACE_SECONDS + 1, 0])
def test_grace_period_out_of_bounds_is_refused(grace: int) -> None:
    with pytest.raises(ValidationError, match="terminationGracePeriodSeconds"):
        InferenceModelSpec.model_validate({**CPU_MODEL, "terminationGracePeriodSeconds": grace})


def test_the_operators_shutdown_flags_cannot_be_overridden() -> None:
    spec = InferenceModelSpec.model_validate(
        {**CPU_MODEL, "engine": {"extraArgs": ["--shutdown-timeout", "600", "--drain_seconds=1"]}}
    )
    found = policy_violations(spec, Policy(), "vif-runtime:0.1.0")
    assert any("--shutdown-timeout" in v for v in found) and any("--drain-seconds" in v for v in found), found


def test_probes_allow_a_busy_pod_time_to_answer() -> None:
    container = pod_spec(CPU_MODEL)["containers"][0]
    for name in ("livenessProbe", "readinessProbe", "startupProbe"):
        probe = container[name]
        assert probe["timeoutSeconds"] == 5 and probe["timeoutSeconds"] <= probe["periodSeconds"], name
    liveness = container["livenessProbe"]
    assert liveness["httpGet"]["path"] == "/health"
    assert liveness["periodSeconds"] * liveness["failureThreshold"] >= 60  # a minute of slowness before a restart
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 600  # ten minutes to load a model
