"""model_config.json: what loads, and the one-line errors for what does not."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vif.runtime.config import ConfigError, default_model, load_model

REPO = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, content: object) -> Path:
    (tmp_path / "model").mkdir(exist_ok=True)
    path = tmp_path / "model_config.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def test_shipped_example_resolves_the_default_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIF_MODELS_DIR", str(REPO / "models"))
    model = load_model(REPO / "runtime/conf/model_config.json", "smollm2-135m-instruct")
    assert model.model == str(REPO / "models/SmolLM2-135M-Instruct")
    assert model.entry.class_name == "OpenAIServingChat"
    assert model.entry.max_model_len == 2048
    assert model.entry.engine_args["dtype"] == "float32"
    assert model.chat_template is None and model.entry.response_role == "assistant"


def test_full_entry_with_chat_template(tmp_path: Path) -> None:
    (tmp_path / "chat.jinja").write_text("{{ messages }}")
    config = write(
        tmp_path,
        {
            "m": {
                "class_name": "CustomServingGenerate",
                "model_path": "model",
                "chat_template": "chat.jinja",
                "response_role": "bot",
            }
        },
    )
    model = load_model(config, "m")
    assert (model.chat_template, model.entry.response_role) == ("{{ messages }}", "bot")
    assert model.model == str((tmp_path / "model").resolve())


@pytest.mark.parametrize(
    ("content", "name", "message"),
    [
        ("{oops", "m", "invalid JSON at line 1 column 2"),
        ("[1, 2]", "m", "expected a JSON object"),
        ({"m": {"model_path": "model"}}, "other", "model name 'other' is not in the file (models: m)"),
        ({"m": {"model_path": "model", "colour": 1}}, "m", "m.colour: Extra inputs are not permitted"),
        (
            {"m": {"model_path": "model", "max_model_len": 4}},
            "m",
            "m.max_model_len: Input should be greater than or equal to 16",
        ),
        ({"m": {}}, "m", "m.model_path: set exactly one of model_path and model_id"),
        ({"m": {"model_path": "model", "model_id": "org/name"}}, "m", "set exactly one of model_path and model_id"),
        ({"m": {"model_id": "not an id"}}, "m", "m.model_id: String should match pattern"),
        ({"m": {"model_path": "/etc"}}, "m", "m.model_path: '/etc' is outside the allowed roots"),
        ({"m": {"model_path": "../../../etc/passwd"}}, "m", "is outside the allowed roots"),
        ({"m": {"model_path": "missing"}}, "m", "m.model_path: 'missing' does not exist"),
        (
            {"m": {"model_path": "model", "chat_template": "/etc/passwd"}},
            "m",
            "m.chat_template: '/etc/passwd' is outside",
        ),
        ({"m": {"model_path": "model", "lora_adapters": {"a": "/etc"}}}, "m", "m.lora_adapters.a: '/etc' is outside"),
        (
            {"m": {"model_path": "model", "lora_adapters": {"a": "model"}}},
            "m",
            "m.lora_adapters.a: 'model' is not a LoRA adapter",
        ),
        (
            {"m": {"model_path": "model", "lora_adapters": {"m": "model"}}},
            "m",
            "m.lora_adapters.m: an adapter cannot take the model's name",
        ),
        (
            {"m": {"model_path": "model", "lora_adapters": {"a b": "model"}}},
            "m",
            "m.lora_adapters.a b.[key]: String should match pattern",
        ),
    ],
)
def test_bad_config_is_one_line_naming_file_and_field(tmp_path: Path, content: object, name: str, message: str) -> None:
    config = write(tmp_path, content)
    with pytest.raises(ConfigError) as caught:
        load_model(config, name)
    text = str(caught.value)
    assert text.startswith(str(config)) and message in text and "\n" not in text


def test_mounted_configmaps_with_symlinked_files(tmp_path: Path) -> None:
    """Kubernetes mounts ConfigMap keys as symlinks into a hidden timestamped folder; both the config and a
    chat template mounted that way must load, with the template's mount given as an allowed root."""

    def mount(folder: Path, key: str, text: str) -> None:
        data = folder / "..2026_01_01_00_00_00.000000001"
        data.mkdir(parents=True)
        (data / key).write_text(text)
        (folder / "..data").symlink_to(data.name)
        (folder / key).symlink_to(f"..data/{key}")

    weights = tmp_path / "models" / "m"
    weights.mkdir(parents=True)
    config_dir, template_dir = tmp_path / "etc-vif", tmp_path / "etc-vif-chat-template"
    entry = {"m": {"model_path": str(weights), "chat_template": str(template_dir / "t.jinja")}}
    mount(config_dir, "model_config.json", json.dumps(entry))
    mount(template_dir, "t.jinja", "{{ messages }}")
    model = load_model(config_dir / "model_config.json", "m", [str(tmp_path / "models"), str(template_dir)])
    assert model.chat_template == "{{ messages }}"


def test_symlink_out_of_the_roots_is_refused(tmp_path: Path) -> None:
    (tmp_path / "sneaky").symlink_to("/etc")
    with pytest.raises(ConfigError, match="outside the allowed roots"):
        load_model(write(tmp_path, {"m": {"model_path": "sneaky"}}), "m")


def test_extra_roots_allow_more(tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    (outside / "weights").mkdir(parents=True)
    config_dir = tmp_path / "conf"
    config_dir.mkdir()
    config = write(config_dir, {"m": {"model_path": str(outside / "weights")}})
    with pytest.raises(ConfigError):
        load_model(config, "m")
    assert load_model(config, "m", [str(outside)]).model == str(outside / "weights")


def test_hugging_face_id_needs_no_path(tmp_path: Path) -> None:
    model = load_model(write(tmp_path, {"m": {"model_id": "HuggingFaceTB/SmolLM2-135M-Instruct"}}), "m")
    assert model.model == "HuggingFaceTB/SmolLM2-135M-Instruct"


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_model(tmp_path / "nope.json", "m")


def test_default_model_without_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("VIF_MODELS_DIR", str(tmp_path))
    model = default_model()
    assert model.name == "smollm2-135m-instruct"
    assert model.model == str(tmp_path / "SmolLM2-135M-Instruct")
    assert model.entry.engine_args == {"dtype": "float32", "enforce_eager": True}


def test_lora_adapters_resolve_beside_the_model(tmp_path: Path) -> None:
    (tmp_path / "adapters" / "pirate").mkdir(parents=True)
    (tmp_path / "adapters" / "pirate" / "adapter_config.json").write_text("{}")
    model = load_model(
        write(tmp_path, {"m": {"model_path": "model", "lora_adapters": {"pirate": "adapters/pirate"}}}), "m"
    )
    assert model.adapters == {"pirate": str((tmp_path / "adapters" / "pirate").resolve())}
    assert load_model(write(tmp_path, {"m": {"model_path": "model"}}), "m").adapters == {}


def test_lora_adapter_from_hugging_face_is_an_id(tmp_path: Path) -> None:
    entry = {"model_path": "model", "lora_adapters": {"poet": {"model_id": "org/poet-lora"}}}
    assert load_model(write(tmp_path, {"m": entry}), "m").adapters == {"poet": "org/poet-lora"}
    entry["lora_adapters"] = {"poet": {"model_id": "../etc"}}
    with pytest.raises(ConfigError, match=r"m\.lora_adapters\.poet"):
        load_model(write(tmp_path, {"m": entry}), "m")
