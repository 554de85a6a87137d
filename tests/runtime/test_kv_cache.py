"""The CPU KV cache plan, and the readers of the model's facts and of the memory this process may use."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vif.runtime.engine.kv_cache import (
    AvailableMemory,
    GiB,
    KVCacheDoesNotFit,
    ModelFacts,
    available_memory,
    kv_dtype_bytes,
    plan_kv_cache,
    read_cgroup_free,
    read_meminfo_available,
    read_model_facts,
)

# SmolLM2-135M in float32: 2 x 30 layers x 3 KV heads x 64 x 4 bytes = 46,080 bytes a token.
SMOLLM2 = ModelFacts(
    num_layers=30, num_kv_heads=3, head_size=64, dtype_bytes=4, weight_bytes=GiB // 4, max_position_embeddings=8192
)
SMOLLM2_CONFIG = {
    "num_hidden_layers": 30,
    "num_attention_heads": 9,
    "num_key_value_heads": 3,
    "hidden_size": 576,
    "head_dim": 64,
    "max_position_embeddings": 8192,
}


def test_bytes_per_token() -> None:
    assert SMOLLM2.bytes_per_token == 46_080


def test_every_sequence_at_full_length_when_it_fits() -> None:
    plan = plan_kv_cache(SMOLLM2, max_model_len=2048, max_num_seqs=4, available=16 * GiB)
    assert plan.tokens == 4 * 2048 and plan.bytes == 4 * 2048 * 46_080
    assert plan.reason == "4 sequences x 2048 tokens"


def test_capped_at_a_quarter_of_what_the_weights_leave() -> None:
    plan = plan_kv_cache(SMOLLM2, max_model_len=2048, max_num_seqs=128, available=16 * GiB + GiB // 4)
    assert plan.bytes == 4 * GiB and plan.tokens == 4 * GiB // 46_080
    assert "1/4 of 16.00 GiB left after 0.25 GiB of weights" in plan.reason
    assert "128 sequences x 2048 tokens would need 11.25 GiB" in plan.reason
    assert plan.describe().startswith(f"4.00 GiB, {4 * GiB // 46_080} tokens (")


def test_one_full_sequence_or_a_clear_error() -> None:
    one_sequence = 2048 * 46_080
    plan = plan_kv_cache(SMOLLM2, 2048, 128, available=GiB // 4 + 4 * one_sequence)
    assert plan.tokens == 2048
    with pytest.raises(KVCacheDoesNotFit, match=r"one 2048-token sequence needs 0\.09 GiB, more than 1/4 of") as exc:
        plan_kv_cache(SMOLLM2, 2048, 128, available=GiB // 4 + 4 * one_sequence - 1)
    assert "\n" not in str(exc.value) and "VLLM_CPU_KVCACHE_SPACE" in str(exc.value)


def test_weights_larger_than_the_memory() -> None:
    with pytest.raises(KVCacheDoesNotFit, match=r"of the 0\.00 GiB left after the weights"):
        plan_kv_cache(SMOLLM2, 2048, 1, available=GiB // 8)


@pytest.mark.parametrize(
    ("dtype", "kv_cache_dtype", "size"),
    [
        ("float32", "auto", 4),
        ("float", "auto", 4),
        ("bfloat16", "auto", 2),
        ("torch.float16", "auto", 2),
        ("auto", "auto", 2),  # vLLM's CPU "auto" is a 16-bit type, float32 checkpoints included
        ("float32", "bfloat16", 2),
        ("float32", "fp8_e4m3", 1),
    ],
)
def test_dtype_in_effect(dtype: str, kv_cache_dtype: str, size: int) -> None:
    assert kv_dtype_bytes(dtype, kv_cache_dtype) == size


def test_model_facts_from_a_model_directory(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps(SMOLLM2_CONFIG))
    (tmp_path / "model-00001.safetensors").write_bytes(b"x" * 1000)
    (tmp_path / "model-00002.safetensors").write_bytes(b"x" * 24)
    (tmp_path / "tokenizer.json").write_bytes(b"x" * 5000)
    facts = read_model_facts(tmp_path, "float32", "auto")
    assert facts == ModelFacts(30, 3, 64, 4, 1024, 8192)


def test_model_facts_without_head_dim_or_kv_heads_nested_in_text_config(tmp_path: Path) -> None:
    config = {"num_hidden_layers": 2, "num_attention_heads": 8, "hidden_size": 512}
    (tmp_path / "config.json").write_text(json.dumps({"text_config": config}))
    facts = read_model_facts(tmp_path, "bfloat16", "auto")
    assert (facts.num_kv_heads, facts.head_size, facts.dtype_bytes, facts.weight_bytes) == (8, 64, 2, 0)
    assert facts.max_position_embeddings is None


def test_model_facts_missing(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_model_facts(tmp_path, "auto", "auto")
    (tmp_path / "config.json").write_text(json.dumps({"num_hidden_layers": 2}))
    with pytest.raises(KeyError):
        read_model_facts(tmp_path, "auto", "auto")


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_cgroup_v2_limit_minus_usage(tmp_path: Path) -> None:
    write(tmp_path / "memory.max", f"{8 * GiB}\n")
    write(tmp_path / "memory.current", f"{GiB}\n")
    assert read_cgroup_free(tmp_path) == AvailableMemory(7 * GiB, "cgroup limit 8.00 GiB - usage 1.00 GiB")


def test_cgroup_v2_without_a_limit(tmp_path: Path) -> None:
    write(tmp_path / "memory.max", "max\n")
    write(tmp_path / "memory.current", f"{GiB}\n")
    assert read_cgroup_free(tmp_path) is None


def test_cgroup_v1_limit_minus_usage(tmp_path: Path) -> None:
    write(tmp_path / "memory/memory.limit_in_bytes", f"{4 * GiB}\n")
    write(tmp_path / "memory/memory.usage_in_bytes", f"{5 * GiB}\n")  # over the limit: nothing left
    assert read_cgroup_free(tmp_path) == AvailableMemory(0, "cgroup limit 4.00 GiB - usage 5.00 GiB")


def test_cgroup_v1_without_a_limit(tmp_path: Path) -> None:
    write(tmp_path / "memory/memory.limit_in_bytes", "9223372036854771712\n")
    assert read_cgroup_free(tmp_path) is None
    assert read_cgroup_free(tmp_path / "absent") is None


MEMINFO = "MemTotal:       24684096 kB\nMemFree:        18267228 kB\nMemAvailable:   23942160 kB\n"


def test_meminfo_available(tmp_path: Path) -> None:
    write(tmp_path / "meminfo", MEMINFO)
    assert read_meminfo_available(tmp_path / "meminfo") == AvailableMemory(23942160 * 1024, "MemAvailable 22.83 GiB")
    write(tmp_path / "meminfo", "MemTotal: 1 kB\n")
    assert read_meminfo_available(tmp_path / "meminfo") is None
    assert read_meminfo_available(tmp_path / "absent") is None


def test_available_memory_is_the_smaller_reading(tmp_path: Path) -> None:
    write(tmp_path / "proc/meminfo", MEMINFO)
    cgroup = tmp_path / "cgroup"
    assert available_memory(cgroup, tmp_path / "proc/meminfo").source == "MemAvailable 22.83 GiB"  # no cgroup limit
    write(cgroup / "memory.max", f"{8 * GiB}")
    write(cgroup / "memory.current", "0")
    assert available_memory(cgroup, tmp_path / "proc/meminfo").bytes == 8 * GiB  # the pod's limit
    write(cgroup / "memory.max", f"{64 * GiB}")
    assert available_memory(cgroup, tmp_path / "proc/meminfo").bytes == 23942160 * 1024  # the machine has less
    assert available_memory(tmp_path / "none", tmp_path / "none") is None


def test_this_machine_has_a_reading() -> None:
    memory = available_memory()
    assert memory is not None and memory.bytes > 0
