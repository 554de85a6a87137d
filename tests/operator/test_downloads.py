"""A model's download in its status: what is reported from the pods' answers, how a failure becomes Degraded, and
the watch that asks the pods (against an in-memory API and the runtime's own progress endpoint)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from helpers.fake_kube import FakeKubeAPI, fake_cluster, model_body
from helpers.processes import free_port
from vif.operator.download_status import FIELDS, report, settled, summary
from vif.operator.downloads import DownloadWatch
from vif.operator.model_ref import ModelRef
from vif.operator.reconcile import reconcile
from vif.operator.settings import OperatorSettings
from vif.operator.spec import InferenceModelSpec
from vif.operator.watch_cache import ModelCache
from vif.runtime.sources.progress import DownloadProgress, serving_progress

GIB = 2**30
SPEC = {"model": {"huggingFace": {"id": "org/Model-1B"}, "cache": {"size": "20Gi"}}}
SETTINGS = OperatorSettings(runtime_image="vif-runtime:test")
SOURCE = "org/Model-1B@main"


@pytest.fixture
def engine_ready_port() -> Iterator[int]:
    """A port where something answers as the runtime does once its engine is up: /progress 404, /ready 200."""

    class Engine(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/ready" else 404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Engine)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def answer(phase: str, done: int = 0, total: int = 0, **more: Any) -> dict[str, Any]:
    return {"phase": phase, "bytesDone": done, "bytesTotal": total, **more}


def test_a_failure_is_reported_first_then_the_download_furthest_along() -> None:
    failed = answer("Failed", 3, 10, message="model.safetensors: stalled")
    assert report([answer("Downloading", 5, 10), failed], SOURCE)["message"] == "model.safetensors: stalled"  # type: ignore[index]
    chosen = report([answer("Ready"), answer("Downloading", 2, 10), answer("Downloading", 7, 10)], SOURCE)
    assert chosen is not None and (chosen["bytesDone"], chosen["source"]) == (7, SOURCE)
    assert report([answer("Pending"), answer("Verifying", 10, 10)], SOURCE)["phase"] == "Verifying"  # type: ignore[index]
    assert report([], SOURCE) is None and report([{"phase": "Exploded"}], SOURCE) is None


def test_every_field_is_always_there_so_a_merge_patch_replaces_each() -> None:
    reported = report([answer("Downloading", 1, 10, bytesPerSecond=None, secondsLeft=None)], SOURCE)
    assert reported is not None and reported.keys() == {*FIELDS, "source", "summary"}
    assert (reported["bytesPerSecond"], reported["secondsLeft"], reported["message"]) == (0, 0, "")
    ready = {**FIELDS, "phase": "Ready", "bytesDone": 10, "bytesTotal": 10, "source": SOURCE, "summary": "Ready"}
    assert settled(reported, SOURCE) == ready
    assert settled(reported, "org/Model-1B@v2")["bytesTotal"] == 0  # another source's size says nothing
    assert settled(None, SOURCE)["bytesTotal"] == 0  # found in the cache before anyone asked


def test_the_summary_reads_like_a_progress_bar() -> None:
    downloading = {**FIELDS, "phase": "Downloading", "bytesDone": int(6.1 * GIB), "bytesTotal": int(14.2 * GIB),
                   "bytesPerSecond": 85 * 2**20, "secondsLeft": 95}  # fmt: skip
    assert summary(downloading) == "Downloading 42% 6.1/14.2GiB 85MiB/s 95s"
    assert summary({**downloading, "bytesPerSecond": 0, "secondsLeft": 0}) == "Downloading 42% 6.1/14.2GiB"
    assert summary({**downloading, "phase": "Verifying"}) == "Verifying 14.2GiB"
    assert summary({**FIELDS, "phase": "Failed", "message": "401: gated"}) == "Failed: 401: gated"
    assert summary({**FIELDS, "phase": "Pending"}) == "Pending"


def failed_body() -> dict[str, Any]:
    body = model_body("chat", SPEC)
    download = {**FIELDS, "phase": "Failed", "message": "org/Model-1B@main: 404: no such repository"}
    body["status"] = {"download": {**download, "summary": summary(download)}}
    return body


def test_a_failed_download_degrades_the_model() -> None:
    cluster, _ = fake_cluster()
    outcome = reconcile(failed_body(), cluster, SETTINGS)
    assert outcome.failure == ("DownloadFailed", "org/Model-1B@main: 404: no such repository")
    degraded = next(c for c in outcome.status["conditions"] if c["type"] == "Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "DownloadFailed")
    assert "download" not in outcome.status  # the watch's to write

    going = failed_body()
    going["status"]["download"] = {**FIELDS, "phase": "Downloading", "source": SOURCE}
    assert reconcile(going, cluster, SETTINGS).failure is None  # restarted, and resuming


def pod(api: FakeKubeAPI, name: str, ip: str) -> None:
    ref = ModelRef("chat", "team", "model-uid", InferenceModelSpec.model_validate(SPEC))
    api.add({"kind": "Pod", "metadata": {"name": name, "namespace": "team", "labels": ref.selector()},
             "status": {"podIP": ip}})  # fmt: skip


def test_the_watch_writes_what_the_pods_say_and_converges_the_model() -> None:
    cluster, api = fake_cluster()
    models = ModelCache()
    models.saw(api.add(model_body("chat", SPEC)), deleted=False)
    pod(api, "chat-a", "127.0.0.1")
    pod(api, "chat-b", "127.0.0.2")  # nothing answers there: the engine runs, or it has not started
    converged: list[tuple[str, str]] = []
    port = free_port()
    watch = DownloadWatch(cluster, models, converged.append, port=port)
    progress = DownloadProgress()
    with serving_progress(progress, "127.0.0.1", port):
        update = progress.reporter("org/Model-1B", 10 * GIB)
        update(4 * GIB)
        watch.check(("team", "chat"))
        stored = api.objects[("InferenceModel", "team", "chat")]["status"]["download"]
        assert (stored["phase"], stored["bytesDone"], stored["bytesTotal"]) == ("Downloading", 4 * GIB, 10 * GIB)
        assert stored["summary"].startswith("Downloading 40% 4.0/10.0GiB")
        assert converged == [("team", "chat")]

        progress.fail("model.safetensors: stalled: no byte for 30 s, after 5 attempts")
        watch.check(("team", "chat"))
        stored = api.objects[("InferenceModel", "team", "chat")]["status"]["download"]
        assert stored["summary"] == "Failed: model.safetensors: stalled: no byte for 30 s, after 5 attempts"

    api.calls.clear()
    watch.check(("team", "chat"))  # the fetch has exited: nothing answers, the last report stays
    assert not [c for c in api.calls if c[0] == "PATCH_STATUS"] and len(converged) == 2


def test_an_engine_that_is_ready_settles_the_download(engine_ready_port: int) -> None:
    """Once the engine listens on the pod's port, its /ready is the sign the cache held the model (the pod's own
    readiness is not asked: on some planes it comes from elsewhere)."""
    cluster, api = fake_cluster()
    models = ModelCache()
    body = model_body("chat", SPEC)
    body["status"] = {"download": {**FIELDS, "phase": "Verifying", "bytesDone": 10, "bytesTotal": 10,
                                   "source": SOURCE}}  # fmt: skip
    models.saw(api.add(body), deleted=False)
    pod(api, "chat-a", "127.0.0.1")
    DownloadWatch(cluster, models, lambda key: None, port=engine_ready_port).check(("team", "chat"))
    stored = api.objects[("InferenceModel", "team", "chat")]["status"]["download"]
    assert (stored["phase"], stored["bytesTotal"], stored["summary"]) == ("Ready", 10, "Ready")


def test_the_watch_leaves_downloaded_models_and_models_without_a_cache_alone() -> None:
    cluster, api = fake_cluster()
    models = ModelCache()
    done = model_body("done", SPEC)
    done["status"] = {"download": {**FIELDS, "phase": "Ready", "source": SOURCE}}
    models.saw(api.add(done), deleted=False)
    models.saw(api.add(model_body("plain", {"model": {"path": "/models/m"}})), deleted=False)
    watch = DownloadWatch(cluster, models, lambda key: None, port=free_port())
    watch.check(("team", "done"))
    watch.check(("team", "plain"))
    assert not [c for c in api.calls if c[0] == "LIST"]

    revised = {"model": {**SPEC["model"], "huggingFace": {"id": "org/Model-1B", "revision": "v2"}}}
    models.saw(api.add({**done, "spec": revised}), deleted=False)
    watch.check(("team", "done"))  # a new revision is a new download: asked again
    assert [c for c in api.calls if c[0] == "LIST"]
