"""Resolves a config's `class_name` to a serving class, through an allowlist only.

Allowed: the built-ins, classes registered under the entry-point group `vif.serving_engines` (installed
packages that declare themselves plugins), and `module:Class` names listed in the model's `allowed_classes`.
Nothing else is imported: a `class_name` alone never imports a module. `allowed_classes` is an explicit grant
by whoever writes the config, and importing a module runs its top-level code, so treat the config file as
code when it uses it.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Sequence
from importlib.metadata import entry_points

from vif.runtime.serving.base import BaseServingEngine
from vif.runtime.serving.chat import OpenAIServingChat
from vif.runtime.serving.completion import OpenAIServingCompletion
from vif.runtime.serving.generate import CustomServingGenerate

ENTRY_POINT_GROUP = "vif.serving_engines"
BUILTINS: dict[str, type[BaseServingEngine]] = {
    cls.__name__: cls for cls in (OpenAIServingChat, OpenAIServingCompletion, CustomServingGenerate)
}


class UnknownServingClass(LookupError):
    """`class_name` is not on the allowlist, or is not a serving class."""


def resolve_serving_class(name: str, allowed_classes: Sequence[str] = ()) -> type[BaseServingEngine]:
    if name in BUILTINS:
        return BUILTINS[name]
    registered = {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}
    if name in registered:
        cls = registered[name].load()
    elif name in allowed_classes:
        module_name, _, attr = name.partition(":")
        if not attr:
            raise UnknownServingClass(f"'{name}' must be written 'package.module:ClassName'")
        cls = getattr(importlib.import_module(module_name), attr, None)
    else:
        known = ", ".join([*BUILTINS, *registered, *allowed_classes])
        raise UnknownServingClass(f"'{name}' is not an allowed serving class (allowed: {known})")
    if not (isinstance(cls, type) and issubclass(cls, BaseServingEngine)):
        raise UnknownServingClass(f"'{name}' is not a subclass of BaseServingEngine")
    if getattr(cls, "protocol", None) not in {c.protocol for c in BUILTINS.values()}:
        raise UnknownServingClass(f"'{name}' does not set protocol to chat, completion or generate")
    if inspect.isabstract(cls):
        missing = ", ".join(sorted(cls.__abstractmethods__))
        raise UnknownServingClass(f"'{name}' does not implement {missing}")
    return cls


def serving_classes(class_name: str, allowed_classes: Sequence[str] = ()) -> dict[str, type[BaseServingEngine]]:
    """The class per protocol: the built-ins, with `class_name` taking the place of its protocol's built-in."""
    classes = {cls.protocol: cls for cls in BUILTINS.values()}
    chosen = resolve_serving_class(class_name, allowed_classes)
    classes[chosen.protocol] = chosen
    return classes
