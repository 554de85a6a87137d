"""Whether a model's replicas took its live configuration (docs/live-config.md), in `status.liveConfig`.

The runtime reloads its API keys and chat template when their Secret or ConfigMap changes, and refuses a version it
cannot use (no key, a template that does not compile), keeping the one in force. Those are the user's own objects,
which the operator neither reads nor watches; so a `LiveConfigWatch` thread asks the ready pods of every model that
names one (`apiKeySecret`, `serving.chatTemplate`) for their `GET /live-config`, every `interval` seconds, and
writes a refusal (or its end) to `status.liveConfig`; the model's converge turns a refusal into
`Degraded`/`LiveConfigRefused` and a Warning event. (The live ConfigMap the operator writes itself is checked by the
CRD's schema before it is written.)
"""

from __future__ import annotations

from typing import Any

from vif.operator.builders.common import RUNTIME_PORT
from vif.operator.live_status import IN_FORCE, names_own_config, report
from vif.operator.model_runs import ModelKey
from vif.operator.pod_watch import PodWatch, get_json, pod_ips
from vif.operator.reconcile import InvalidSpec, parse
from vif.operator.spec import KIND

INTERVAL_SECONDS = 10.0  # the kubelet itself takes up to a minute to update a mounted Secret or ConfigMap


def ask(pod_ip: str, port: int = RUNTIME_PORT) -> dict[str, Any] | None:
    """A pod's `/live-config` answer, or None if it does not answer."""
    answered = get_json(f"http://{pod_ip}:{port}/live-config")
    return answered[1] if answered is not None and answered[0] == 200 else None


class LiveConfigWatch(PodWatch):
    """Every `interval` seconds: ask the pods of each held model that `names_own_config`; when the report differs
    from `status.liveConfig`, write it and `converge` the model."""

    name = "live-config-watch"
    default_interval = INTERVAL_SECONDS

    def check(self, key: ModelKey) -> None:
        body = self._models.get(*key)
        if body is None or not names_own_config(body):
            return
        try:
            ref = parse(body)
        except InvalidSpec:
            return
        selector = ",".join(f"{k}={v}" for k, v in sorted(ref.selector().items()))
        pods = self._cluster.api.list("Pod", ref.namespace, selector)
        answers = {name: answer for name, ip in pod_ips(pods).items() if (answer := ask(ip, self._port)) is not None}
        found = report(answers)
        old = (body.get("status") or {}).get("liveConfig") or IN_FORCE
        # no answer from pods that are starting: the last report stands; no pod at all (scaled to zero): none refuses
        if (not answers and pods) or found == old:
            return
        written = self._cluster.api.patch_status(KIND, ref.namespace, ref.name, {"liveConfig": found})
        self._models.saw(written, deleted=False)
        self._converge(key)
