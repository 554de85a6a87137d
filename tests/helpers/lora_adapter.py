"""A small LoRA adapter for the default model, made with peft, for tests that serve adapters on the real engine."""

from __future__ import annotations

from pathlib import Path

RANK = 8


def make_adapter(base_model: Path, target: Path, seed: int = 0) -> Path:
    """A rank-8 adapter on q_proj/v_proj, saved as peft does (adapter_config.json + weights) into `target`.

    peft's default initialisation leaves one LoRA matrix at zero, which would make the adapter a no-op;
    `init_lora_weights=False` draws both at random (from `seed`), so greedy answers through it differ from the
    base model's.
    """
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base_model, dtype=torch.float32)
    config = LoraConfig(r=RANK, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(model, config).save_pretrained(target)
    return target
