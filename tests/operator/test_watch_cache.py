"""The watch caches: objects by model, never stepping back to an older resourceVersion, deletions by uid."""

from __future__ import annotations

from typing import Any

from vif.operator.watch_cache import ChildCache, InstalledCRDs, ModelCache, is_newer


def child(rv: str, uid: str = "u1", ready: int = 0) -> dict[str, Any]:
    meta = {"name": "chat", "namespace": "team", "uid": uid, "resourceVersion": rv,
            "labels": {"inference.vif.dev/model": "chat"}, "managedFields": [{"manager": "x"}]}  # fmt: skip
    return {"kind": "Deployment", "metadata": meta, "status": {"readyReplicas": ready}}


def test_an_older_event_does_not_replace_a_newer_object() -> None:
    cache = ChildCache()
    cache.saw("Deployment", child("12", ready=1), deleted=False)
    cache.saw("Deployment", child("11", ready=0), deleted=False)
    assert cache.get("Deployment", "team", "chat", "chat")["status"]["readyReplicas"] == 1


def test_managed_fields_are_not_kept() -> None:
    cache = ChildCache()
    cache.saw("Deployment", child("1"), deleted=False)
    assert "managedFields" not in cache.get("Deployment", "team", "chat", "chat")["metadata"]


def test_a_new_object_of_the_same_name_replaces_the_old_one_and_deletes_go_by_uid() -> None:
    cache = ChildCache()
    cache.saw("Deployment", child("50", uid="old"), deleted=False)
    cache.saw("Deployment", child("40", uid="new"), deleted=False)  # another uid: not compared by version
    cache.saw("Deployment", child("51", uid="old"), deleted=True)  # the old one's deletion, seen late
    assert cache.get("Deployment", "team", "chat", "chat")["metadata"]["uid"] == "new"
    cache.saw("Deployment", child("60", uid="new"), deleted=True)
    assert cache.get("Deployment", "team", "chat", "chat") is None and cache.of_model("team", "chat") == []


def test_unlabelled_objects_are_not_cached() -> None:
    cache = ChildCache()
    obj = child("1")
    obj["metadata"]["labels"] = {}
    cache.saw("Deployment", obj, deleted=False)
    assert cache.of_model("team", "chat") == []


def test_the_model_cache_keeps_the_newest_body() -> None:
    cache = ModelCache()
    newer = {"metadata": {"name": "chat", "namespace": "team", "uid": "m", "resourceVersion": "9"}, "status": {"a": 1}}
    older = {"metadata": {**newer["metadata"], "resourceVersion": "8"}, "status": {}}
    cache.saw(newer, deleted=False)
    cache.saw(older, deleted=False)
    assert cache.get("team", "chat")["status"] == {"a": 1}


def test_versions_that_are_not_numbers_count_as_newer() -> None:
    assert is_newer({"metadata": {"resourceVersion": "abc"}}, "5")
    assert is_newer({"metadata": {"resourceVersion": "5"}}, "5")
    assert not is_newer({"metadata": {"resourceVersion": "4"}}, "5")


def test_crds_are_asked_once_then_follow_the_watch() -> None:
    asked: list[str] = []
    crds = InstalledCRDs(lambda name: asked.append(name) or False)
    assert "servicemonitors.monitoring.coreos.com" not in crds
    assert "servicemonitors.monitoring.coreos.com" not in crds
    crds.saw("servicemonitors.monitoring.coreos.com", deleted=False)
    assert "servicemonitors.monitoring.coreos.com" in crds
    assert asked == ["servicemonitors.monitoring.coreos.com"]
