"""A replica's refusal of its live configuration in the model's status: what is reported from the pods' answers, how
it degrades the model, and the watch that asks the pods (against an in-memory API, and `/live-config` answers the
runtime's own `LiveFiles` makes)."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from helpers.fake_kube import FakeKubeAPI, fake_cluster, model_body
from helpers.processes import free_port
from vif.operator.live_status import IN_FORCE, names_own_config, refusal, report
from vif.operator.live_watch import LiveConfigWatch
from vif.operator.model_ref import ModelRef
from vif.operator.reconcile import reconcile
from vif.operator.settings import OperatorSettings
from vif.operator.spec import InferenceModelSpec
from vif.operator.watch_cache import ModelCache
from vif.runtime.shared.live_files import LiveFiles

SPEC = {"model": {"path": "/models/m"}, "apiKeySecret": {"name": "keys", "key": "api-keys"}}
SETTINGS = OperatorSettings(runtime_image="vif-runtime:test")


def runtime_answer(tmp_path: Path, refuse: bool) -> dict[str, Any]:
    """What a runtime's `GET /live-config` says after its keys file became empty (`refuse`), or unchanged."""
    keys = tmp_path / "keys"
    keys.write_text("k1")

    def read() -> str:
        if not keys.read_text().strip():
            raise LookupError(f"--api-keys-file {keys} holds no key")
        return keys.read_text()

    files = LiveFiles([keys], read, lambda _: None)
    if refuse:
        keys.write_text("")
        asyncio.run(files.poll())
    return files.status()


@pytest.fixture(autouse=True)
def folders(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()


@pytest.fixture
def answering(tmp_path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """A port answering `/live-config` as a runtime that refused a keys file does; the answer, to change."""
    answer = runtime_answer(tmp_path, refuse=True)

    class Runtime(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps(answer).encode()
            self.send_response(200 if self.path == "/live-config" else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Runtime)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1], answer
    server.shutdown()
    server.server_close()


def test_the_first_refusal_is_reported_with_its_pod_and_no_refusal_is_all_clear(tmp_path: Path) -> None:
    refused, fine = runtime_answer(tmp_path / "a", True), runtime_answer(tmp_path / "b", False)
    found = report({"chat-b": refused, "chat-a": fine})
    assert found["refused"] == refused["refused"]["version"]
    assert found["message"].startswith("pod chat-b refused a new version and serves the previous one: --api-keys")
    assert report({"chat-a": fine}) == IN_FORCE == report({})
    assert refusal(found) == ("LiveConfigRefused", found["message"]) and refusal(IN_FORCE) is refusal(None) is None


def test_a_refusal_degrades_the_model_while_it_lasts() -> None:
    cluster, _ = fake_cluster()
    body = model_body("chat", SPEC)
    body["status"] = {"liveConfig": {"refused": "abc", "message": "pod chat-a refused ...: no key"}}
    outcome = reconcile(body, cluster, SETTINGS)
    assert outcome.failure == ("LiveConfigRefused", "pod chat-a refused ...: no key")
    degraded = next(c for c in outcome.status["conditions"] if c["type"] == "Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "LiveConfigRefused")
    body["status"] = {"liveConfig": IN_FORCE}
    assert reconcile(body, cluster, SETTINGS).failure is None
    plain = model_body("plain", {"model": {"path": "/models/m"}})  # its keys Secret dropped: the refusal is over
    plain["status"] = {"liveConfig": {"refused": "abc", "message": "pod plain-a refused ...: no key"}}
    assert reconcile(plain, cluster, SETTINGS).failure is None


def pod(api: FakeKubeAPI, name: str, ip: str) -> None:
    ref = ModelRef("chat", "team", "model-uid", InferenceModelSpec.model_validate(SPEC))
    api.add({"kind": "Pod", "metadata": {"name": name, "namespace": "team", "labels": ref.selector()},
             "status": {"podIP": ip}})  # fmt: skip


def test_the_watch_writes_a_refusal_and_its_end_and_converges_the_model(
    answering: tuple[int, dict[str, Any]],
) -> None:
    port, answer = answering
    cluster, api = fake_cluster()
    models = ModelCache()
    models.saw(api.add(model_body("chat", SPEC)), deleted=False)
    pod(api, "chat-a", "127.0.0.1")
    pod(api, "chat-b", "127.0.0.2")  # nothing answers there: not counted
    converged: list[tuple[str, str]] = []
    watch = LiveConfigWatch(cluster, models, converged.append, port=port)
    watch.check(("team", "chat"))
    stored = api.objects[("InferenceModel", "team", "chat")]["status"]["liveConfig"]
    assert "pod chat-a refused" in stored["message"] and "holds no key" in stored["message"]
    assert converged == [("team", "chat")]

    api.calls.clear()
    watch.check(("team", "chat"))  # the same refusal: nothing written
    assert not [c for c in api.calls if c[0] == "PATCH_STATUS"] and len(converged) == 1

    answer["refused"] = None  # the Secret was fixed, and the runtime took it
    watch.check(("team", "chat"))
    assert api.objects[("InferenceModel", "team", "chat")]["status"]["liveConfig"] == IN_FORCE
    assert len(converged) == 2


def test_a_model_without_pods_refuses_nothing(answering: tuple[int, dict[str, Any]]) -> None:
    """Scaled to zero after a refusal: no pod serves the refused version, so the status says none refuses."""
    cluster, api = fake_cluster()
    models = ModelCache()
    body = model_body("chat", SPEC)
    body["status"] = {"liveConfig": {"refused": "abc", "message": "pod chat-a refused ..."}}
    models.saw(api.add(body), deleted=False)
    LiveConfigWatch(cluster, models, lambda key: None, port=answering[0]).check(("team", "chat"))
    assert api.objects[("InferenceModel", "team", "chat")]["status"]["liveConfig"] == IN_FORCE


def test_the_watch_asks_only_models_that_name_a_secret_or_template_of_their_own() -> None:
    cluster, api = fake_cluster()
    models = ModelCache()
    models.saw(api.add(model_body("plain", {"model": {"path": "/models/m"}})), deleted=False)
    LiveConfigWatch(cluster, models, lambda key: None, port=free_port()).check(("team", "plain"))
    assert not [c for c in api.calls if c[0] == "LIST"]
    templated = model_body("t", {"model": {"path": "/m"}, "serving": {"chatTemplate": {"name": "c", "key": "k"}}})
    assert names_own_config(templated) and names_own_config(model_body("k", SPEC))
