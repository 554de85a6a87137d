"""What a model's status says of its live configuration (`status.liveConfig`, docs/live-config.md), from what its
pods' `GET /live-config` answered: pure, so it is tested without a cluster. `live_watch.LiveConfigWatch` asks the
pods; `reconcile` turns a refusal into `Degraded`/`LiveConfigRefused`.
"""

from __future__ import annotations

from typing import Any

from vif.operator.reasons import Reason

IN_FORCE: dict[str, str] = {"refused": "", "message": ""}  # every pod that answered took the newest version


def report(answers: dict[str, dict[str, Any]]) -> dict[str, str]:
    """`status.liveConfig` from the pods' answers (pod name -> answer): the first refusal, named by its pod, with
    why; empty fields when no pod refused."""
    for pod, answer in sorted(answers.items()):
        refused = answer.get("refused")
        if isinstance(refused, dict):
            message = f"pod {pod} refused a new version and serves the previous one: {refused.get('error', '')}"
            return {"refused": str(refused.get("version", "")), "message": message[:500]}
    return dict(IN_FORCE)


def live_refusal(body: dict[str, Any]) -> tuple[str, str] | None:
    """(reason, message) while a pod refuses the model's live configuration; never once the model names no Secret
    or template of the user's (the watch no longer asks, so a refusal left in its status is over)."""
    return refusal((body.get("status") or {}).get("liveConfig")) if names_own_config(body) else None


def refusal(live_config: dict[str, Any] | None) -> tuple[str, str] | None:
    """(reason, message) while `status.liveConfig` says a pod refuses."""
    if not live_config or not live_config.get("refused"):
        return None
    return Reason.LIVE_CONFIG_REFUSED, str(live_config.get("message") or "a replica refused its live configuration")


def names_own_config(body: dict[str, Any]) -> bool:
    """The model reads a Secret or ConfigMap of the user's live: decided without parsing its spec."""
    spec = body.get("spec") or {}
    return bool(spec.get("apiKeySecret") or (spec.get("serving") or {}).get("chatTemplate"))
