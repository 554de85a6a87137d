"""`class_name` resolves only through the allowlist: built-ins, entry points, and names the config allows."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from example_plugin import ShoutingServingChat

from vif.runtime.serving.base import BaseServingEngine
from vif.runtime.serving.chat import OpenAIServingChat
from vif.runtime.serving.completion import OpenAIServingCompletion
from vif.runtime.serving.generate import CustomServingGenerate
from vif.runtime.serving.registry import UnknownServingClass, resolve_serving_class, serving_classes


def test_builtins_cover_the_three_protocols() -> None:
    assert serving_classes("OpenAIServingChat") == {
        "chat": OpenAIServingChat,
        "completion": OpenAIServingCompletion,
        "generate": CustomServingGenerate,
    }


def test_unlisted_module_path_is_refused_without_import() -> None:
    sys.modules.pop("example_plugin_never_imported", None)
    with pytest.raises(UnknownServingClass, match="not an allowed serving class"):
        resolve_serving_class("os:system")
    with pytest.raises(UnknownServingClass, match="not an allowed"):
        resolve_serving_class("example_plugin_never_imported:X")
    assert "example_plugin_never_imported" not in sys.modules


def test_allowed_class_must_be_a_serving_class() -> None:
    with pytest.raises(UnknownServingClass, match="not a subclass of BaseServingEngine"):
        resolve_serving_class("os:getcwd", ["os:getcwd"])
    with pytest.raises(UnknownServingClass, match=r"package\.module:ClassName"):
        resolve_serving_class("example_plugin", ["example_plugin"])


def test_allowed_plugin_replaces_chat_only() -> None:
    name = "example_plugin:ShoutingServingChat"
    classes = serving_classes(name, [name])
    assert classes["chat"] is ShoutingServingChat
    assert classes["generate"] is CustomServingGenerate


def test_entry_point_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A distribution that registers the class under `vif.serving_engines`, as a plugin package would."""
    dist = tmp_path / "shouting_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: shouting-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[vif.serving_engines]\nShouting = example_plugin:ShoutingServingChat\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert resolve_serving_class("Shouting") is ShoutingServingChat


class IncompleteServing(BaseServingEngine):
    """A plugin that forgot the steps its protocol needs."""

    protocol = "chat"


def test_a_class_missing_required_steps_is_refused_at_start_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "incomplete_plugin", sys.modules[__name__])
    name = "incomplete_plugin:IncompleteServing"
    with pytest.raises(UnknownServingClass, match="does not implement create_prompt, format_chunks, format_response"):
        resolve_serving_class(name, [name])
