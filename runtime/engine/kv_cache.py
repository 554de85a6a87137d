"""The CPU KV cache's size, from the model, the context length, the batch and the memory this process may use.

Without a size, vLLM's CPU backend reserves `gpu_memory_utilization` (92%) of the node's memory and refuses to
start when less is free, so a second engine on one machine never starts. The plan here:

- wanted: every sequence at full length, `max_num_seqs * max_model_len` tokens;
- at most a quarter of the memory left after the weights. An engine that starts later sees what the earlier
  ones took, so engines started one after another never exhaust the machine (each takes a quarter of what is
  left), and two started at the same instant take half between them. The rest holds what the estimate leaves
  out: weights widened to float32, activations, the Python processes themselves, and whoever else runs here;
- at least one full-length sequence, or `KVCacheDoesNotFit`.

Available memory is the container's cgroup limit minus its usage (v2, else v1) or the machine's MemAvailable,
whichever is smaller: much what vLLM checks the size against before it allocates.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

GiB = 1 << 30
CAP_FRACTION = 4  # the KV cache takes at most 1/CAP_FRACTION of the memory left after the weights
UNLIMITED = 1 << 62  # cgroup v1 reports "no limit" as a number near 2**63
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")
_DTYPE_BYTES = {"float32": 4, "float": 4, "bfloat16": 2, "float16": 2, "half": 2}


class KVCacheDoesNotFit(ValueError):
    """Not even one sequence of `max_model_len` tokens fits in the memory the plan may take."""


@dataclass(frozen=True)
class ModelFacts:
    """What the KV cache's size depends on in the model: its attention shape, dtype and weights."""

    num_layers: int
    num_kv_heads: int
    head_size: int
    dtype_bytes: int
    weight_bytes: int
    max_position_embeddings: int | None

    @property
    def bytes_per_token(self) -> int:
        return 2 * self.num_layers * self.num_kv_heads * self.head_size * self.dtype_bytes  # a key and a value


@dataclass(frozen=True)
class AvailableMemory:
    """Bytes this process may still use, and where that figure came from (for the log)."""

    bytes: int
    source: str


@dataclass(frozen=True)
class KVCachePlan:
    """The chosen KV cache size in bytes and tokens, and why."""

    bytes: int
    tokens: int
    reason: str

    def describe(self) -> str:
        return f"{gib(self.bytes)} GiB, {self.tokens} tokens ({self.reason})"


def gib(n: int) -> str:
    return f"{n / GiB:.2f}"


def kv_dtype_bytes(dtype: str, kv_cache_dtype: str) -> int:
    """Bytes per cached element: the KV cache dtype, else the model's dtype in effect."""
    if kv_cache_dtype.startswith("fp8"):
        return 1
    if kv_cache_dtype in _DTYPE_BYTES:
        return _DTYPE_BYTES[kv_cache_dtype]
    # dtype "auto" on CPU is always a 16-bit type: vLLM downcasts float32 checkpoints.
    return _DTYPE_BYTES.get(dtype.removeprefix("torch."), 2)


def read_model_facts(model_dir: Path, dtype: str, kv_cache_dtype: str) -> ModelFacts:
    """From the model directory's config.json (its `text_config` for multimodal models) and weight files."""
    config = json.loads((model_dir / "config.json").read_text())
    config = config.get("text_config", config)
    heads = int(config["num_attention_heads"])
    head_size = config.get("head_dim") or int(config["hidden_size"]) // heads
    weights = sum(p.stat().st_size for p in model_dir.iterdir() if p.name.endswith(WEIGHT_SUFFIXES))
    max_positions = config.get("max_position_embeddings")
    return ModelFacts(
        num_layers=int(config["num_hidden_layers"]),
        num_kv_heads=int(config.get("num_key_value_heads") or heads),
        head_size=int(head_size),
        dtype_bytes=kv_dtype_bytes(dtype, kv_cache_dtype),
        weight_bytes=weights,
        max_position_embeddings=int(max_positions) if max_positions else None,
    )


def plan_kv_cache(facts: ModelFacts, max_model_len: int, max_num_seqs: int, available: int) -> KVCachePlan:
    """The whole model's KV cache: enough for every sequence, capped, never below one full-length sequence."""
    per_token = facts.bytes_per_token
    budget = max(available - facts.weight_bytes, 0)
    cap = budget // CAP_FRACTION
    one_sequence = max_model_len * per_token
    if one_sequence > cap:
        raise KVCacheDoesNotFit(
            f"the KV cache for one {max_model_len}-token sequence needs {gib(one_sequence)} GiB, more than "
            f"1/{CAP_FRACTION} of the {gib(budget)} GiB left after the weights; lower max_model_len, give the "
            "process more memory, or set VLLM_CPU_KVCACHE_SPACE (GiB)"
        )
    wanted = max_num_seqs * one_sequence
    if wanted <= cap:
        return KVCachePlan(wanted, wanted // per_token, f"{max_num_seqs} sequences x {max_model_len} tokens")
    return KVCachePlan(
        cap,
        cap // per_token,
        f"1/{CAP_FRACTION} of {gib(budget)} GiB left after {gib(facts.weight_bytes)} GiB of weights; "
        f"{max_num_seqs} sequences x {max_model_len} tokens would need {gib(wanted)} GiB",
    )


def read_int(path: Path) -> int | None:
    """An integer file such as `memory.max`; None when absent or not a number (cgroup v2 writes "max")."""
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def read_cgroup_free(root: Path) -> AvailableMemory | None:
    """The container's memory cgroup (v2, else v1) limit minus its usage; None without a limit."""
    for limit_file, usage_file in (
        ("memory.max", "memory.current"),
        ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes"),
    ):
        limit = read_int(root / limit_file)
        if limit is None:
            continue
        if limit >= UNLIMITED:
            return None
        usage = read_int(root / usage_file) or 0
        return AvailableMemory(max(limit - usage, 0), f"cgroup limit {gib(limit)} GiB - usage {gib(usage)} GiB")
    return None


def read_meminfo_available(meminfo: Path) -> AvailableMemory | None:
    """The machine's MemAvailable (free memory plus what the kernel can reclaim); None when unreadable."""
    try:
        lines = meminfo.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        name, _, value = line.partition(":")
        if name == "MemAvailable":
            available = int(value.split()[0]) * 1024  # kB
            return AvailableMemory(available, f"MemAvailable {gib(available)} GiB")
    return None


def available_memory(
    cgroup_root: Path = Path("/sys/fs/cgroup"), meminfo: Path = Path("/proc/meminfo")
) -> AvailableMemory | None:
    """The smaller of the cgroup's free memory and the machine's MemAvailable; None when neither is readable."""
    readings = [r for r in (read_cgroup_free(cgroup_root), read_meminfo_available(meminfo)) if r is not None]
    return min(readings, key=lambda r: r.bytes, default=None)
