"""`model_config.json`: per model name, the serving class, model path, context length, chat template and role.

Weights come from `model_path` (a directory) or `model_id` (a Hugging Face id that vLLM downloads).

```json
{"smollm2-135m-instruct": {"class_name": "OpenAIServingChat", "model_path": "../models/SmolLM2-135M-Instruct",
  "max_model_len": 2048, "chat_template": null, "response_role": "assistant",
  "engine_args": {"dtype": "float32"}, "allowed_classes": [],
  "lora_adapters": {"smollm2-pirate": "../adapters/pirate"}}}
```
`lora_adapters` are LoRA adapters (peft's format) served beside the base model: a request whose `model` names
one runs through it. Each is a directory, or `{"model_id": "org/name"}` for one vLLM downloads from the Hugging
Face Hub at start-up.

Relative paths are relative to the file. Every path must resolve (symlinks followed) inside an allowed root,
so a config cannot point the server at arbitrary files. Any problem is one `ConfigError` line naming the file
and the field.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from vif.runtime.model_prep import DEFAULT_MODEL_NAME, default_model_path, models_dir
from vif.runtime.sources.huggingface import REPO_ID

DEFAULT_ENGINE_ARGS: dict[str, Any] = {
    # vLLM's bfloat16 CPU path gives wrong tokens for SmolLM2 on AMX machines; float32 answers correctly.
    "dtype": "float32",
    "enforce_eager": True,
}


# An adapter's name as clients send it in `model`; OpenAI-style ids (`org/name:tag`) fit.
AdapterName = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_][A-Za-z0-9_./:-]*$")]


class ConfigError(ValueError):
    """A bad config file: the message is one line naming the file and the field."""


class AdapterId(BaseModel):
    """A LoRA adapter on the Hugging Face Hub: vLLM downloads it when the engine loads its adapters."""

    model_config = ConfigDict(extra="forbid")

    model_id: str = Field(pattern=REPO_ID)


class ModelEntry(BaseModel):
    """One model of `model_config.json`."""

    model_config = ConfigDict(extra="forbid")

    class_name: str = Field("OpenAIServingChat", min_length=1)
    model_path: str | None = Field(None, min_length=1, description="A model directory on disk.")
    model_id: str | None = Field(
        None, pattern=REPO_ID, description="Instead of model_path: a Hugging Face id vLLM downloads."
    )
    max_model_len: int | None = Field(None, ge=16)
    chat_template: str | None = None
    response_role: str = Field("assistant", min_length=1)
    tool_call_parser: str | None = Field(
        None,
        pattern=r"^[\w.-]+$",
        description="The vLLM tool-call parser (hermes, pythonic, ...) that reads tool calls in free answers.",
    )
    engine_args: dict[str, Any] = Field(default_factory=dict)
    allowed_classes: list[str] = Field(default_factory=list)
    lora_adapters: dict[AdapterName, Annotated[str, Field(min_length=1)] | AdapterId] = Field(
        default_factory=dict,
        description="Adapter name -> its directory (peft's adapter_config.json and weights) or Hugging Face id.",
    )


@dataclass(frozen=True)
class ResolvedModel:
    """A config entry with its paths checked and the chat template read."""

    name: str
    entry: ModelEntry
    model: str
    chat_template: str | None
    source: str
    adapters: dict[str, str] = field(default_factory=dict)  # name -> checked directory or Hugging Face id
    # As written, not resolved: a mounted ConfigMap's file is a symlink the kubelet points at each new version
    chat_template_file: Path | None = None


def allowed_roots(config_file: Path | None, extra: Sequence[str] = ()) -> list[Path]:
    """The config's folder, the models folder, `/models`, `$VIF_ALLOWED_ROOTS` (os.pathsep-separated) and `extra`."""
    roots = [models_dir(), Path("/models")]
    if config_file is not None:
        # the folder as written: a mounted ConfigMap's file is a symlink into a hidden timestamped folder
        roots.append(config_file.absolute().parent)
    roots += [Path(p) for p in os.environ.get("VIF_ALLOWED_ROOTS", "").split(os.pathsep) if p]
    roots += [Path(p) for p in extra]
    return [r.resolve() for r in roots]


def default_model() -> ResolvedModel:
    """The built-in default: SmolLM2-135M-Instruct as prepared by `vif-runtime prepare-model`."""
    entry = ModelEntry(model_path=str(default_model_path()), max_model_len=2048, engine_args=DEFAULT_ENGINE_ARGS)
    return ResolvedModel(DEFAULT_MODEL_NAME, entry, str(default_model_path()), None, "built-in default")


def is_hub_id(model: str) -> bool:
    """`org/name` and not a folder of that name: what `vllm serve` downloads from the Hugging Face Hub."""
    return re.fullmatch(REPO_ID, model) is not None and not Path(model).expanduser().is_dir()


def named_model(folder: str, name: str) -> ResolvedModel:
    """A model folder given on the command line (or downloaded for it), as `vllm serve` takes one, served under
    `name`. Its engine defaults are the default model's; flags override them."""
    path = Path(folder).expanduser()
    if not path.is_dir():
        raise ConfigError(f"{folder}: neither a model directory nor a Hugging Face id (ORG/NAME)")
    resolved = str(path.resolve())
    return ResolvedModel(name, ModelEntry(model_path=resolved, engine_args=DEFAULT_ENGINE_ARGS), resolved, None,
                         "the command line")  # fmt: skip


def load_model(config_file: Path, model_name: str, extra_roots: Sequence[str] = ()) -> ResolvedModel:
    """Read `config_file`, pick `model_name` and check its fields and paths."""
    where = str(config_file)
    try:
        raw = json.loads(config_file.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{where}: file not found") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{where}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a JSON object mapping model names to their settings")
    if model_name not in raw:
        known = ", ".join(sorted(raw)) or "none"
        raise ConfigError(f"{where}: model name '{model_name}' is not in the file (models: {known})")
    try:
        entry = ModelEntry.model_validate(raw[model_name])
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"{where}: {model_name}.{loc}: {first['msg']}") from None
    roots = allowed_roots(config_file, extra_roots)
    base = config_file.absolute().parent
    if (entry.model_path is None) == (entry.model_id is None):
        raise ConfigError(f"{where}: {model_name}.model_path: set exactly one of model_path and model_id")
    model = entry.model_id or str(
        _checked_path(entry.model_path or "", base, roots, f"{where}: {model_name}.model_path")
    )
    template, template_file = None, None
    if entry.chat_template is not None:
        path = _checked_path(entry.chat_template, base, roots, f"{where}: {model_name}.chat_template")
        template, template_file = path.read_text(), base / entry.chat_template
    adapters = {}
    for name, value in entry.lora_adapters.items():
        loc = f"{where}: {model_name}.lora_adapters.{name}"
        if name == model_name:
            raise ConfigError(f"{loc}: an adapter cannot take the model's name")
        if isinstance(value, AdapterId):
            adapters[name] = value.model_id
            continue
        path = _checked_path(value, base, roots, loc)
        if not (path / "adapter_config.json").is_file():
            raise ConfigError(f"{loc}: '{value}' is not a LoRA adapter (no adapter_config.json)")
        adapters[name] = str(path)
    return ResolvedModel(model_name, entry, str(model), template, where, adapters, template_file)


def _checked_path(value: str, base: Path, roots: Sequence[Path], field: str) -> Path:
    path = (base / value).resolve()
    if not any(path.is_relative_to(root) for root in roots):
        raise ConfigError(f"{field}: '{value}' is outside the allowed roots ({', '.join(map(str, roots))})")
    if not path.exists():
        raise ConfigError(f"{field}: '{value}' does not exist")
    return path
