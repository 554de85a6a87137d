"""Checks of a spec that the CRD schema cannot express: what makes it impossible to serve."""

from __future__ import annotations

from vif.operator.spec import InferenceModelSpec


def problems(spec: InferenceModelSpec) -> list[str]:
    found = []
    gpus, tp = spec.resources.gpu, spec.engine.tensor_parallel_size
    if gpus and tp > gpus:
        found.append(f"engine.tensorParallelSize {tp} needs at least {tp} GPUs per replica, resources.gpu is {gpus}")
    if spec.engine.gpu_memory_utilization is not None and not gpus:
        found.append("engine.gpuMemoryUtilization is set but resources.gpu is 0 (a CPU model)")
    return found
