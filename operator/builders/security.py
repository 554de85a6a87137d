"""What the `restricted` Pod Security Standard asks of the model's pods, and the writable space they need.

The root filesystem is read-only, so every place vLLM, torch, Triton, numba, Hugging Face and the runtime write
at run time is an emptyDir with a size limit (an emptyDir without one can fill the node's disk, or for
`medium: Memory` its RAM), and the environment points each library's cache into it.
"""

from __future__ import annotations

from typing import Any

from vif.operator.builders.common import HF_CACHE
from vif.operator.model_ref import ModelRef

# The runtime images' user (Dockerfile.runtime: `useradd --uid 10001`, `USER 10001:10001`).
RUNTIME_UID = 10001
# The images' HOME. An emptyDir here also serves libraries that find the home from the user database, not $HOME.
HOME_DIR = "/home/vif"
CACHE_DIR = f"{HOME_DIR}/.cache"
TMP_DIR = "/tmp"  # vLLM's ZMQ sockets (VLLM_RPC_BASE_PATH defaults to it) and Python's tempfile
TMP_VOLUME = "tmp"

# Size limits. The home holds vLLM's torch.compile cache, inductor's and Triton's kernels and numba's cache:
# tens to hundreds of MB for one model. /tmp holds sockets and small files only.
HOME_SIZE = "4Gi"
TMP_SIZE = "1Gi"
# The weights of a Hugging Face model, downloaded at start: room for a 70B model in 16-bit (~140 GB).
HF_CACHE_SIZE = "200Gi"
# /dev/shm is RAM and counts against the container's memory limit, so with `resources.memory` set the limit is
# that (the most the pod could use anyway); without it 2Gi, vLLM's own Kubernetes example, is enough for torch's
# shared tensors and NCCL's buffers between tensor-parallel workers.
DEFAULT_SHM_SIZE = "2Gi"


def pod_security_context() -> dict[str, Any]:
    """Non-root as the image's user; fsGroup lets that user read a PVC's files (changed only on a mismatch,
    so a big model volume is not walked at every start)."""
    return {
        "runAsNonRoot": True,
        "runAsUser": RUNTIME_UID,
        "runAsGroup": RUNTIME_UID,
        "fsGroup": RUNTIME_UID,
        "fsGroupChangePolicy": "OnRootMismatch",
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security_context() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
    }


def cache_env() -> list[dict[str, Any]]:
    """Every cache the engine writes, under the writable home (set explicitly: an image whose user has another
    home, or none in /etc/passwd, still writes there; torch's inductor would otherwise ask the user database)."""
    paths = {
        "HOME": HOME_DIR,
        "XDG_CACHE_HOME": CACHE_DIR,
        "XDG_CONFIG_HOME": f"{HOME_DIR}/.config",
        "VLLM_CACHE_ROOT": f"{CACHE_DIR}/vllm",
        "TORCHINDUCTOR_CACHE_DIR": f"{CACHE_DIR}/torchinductor",
        "TRITON_CACHE_DIR": f"{CACHE_DIR}/triton",
        "NUMBA_CACHE_DIR": f"{CACHE_DIR}/numba",
    }
    return [{"name": name, "value": value} for name, value in paths.items()]


def writable_volumes(ref: ModelRef, downloads: bool) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The emptyDirs and their mounts: shared memory, the home, /tmp, and room for what the engine `downloads`
    from the Hugging Face Hub itself (a model without a shared cache, adapters: `model_cache.engine_downloads`)."""
    shm = ref.spec.resources.memory or DEFAULT_SHM_SIZE
    dirs = [
        ("dshm", "/dev/shm", {"medium": "Memory", "sizeLimit": shm}),  # torch workers share tensors through it
        ("home", HOME_DIR, {"sizeLimit": HOME_SIZE}),
        (TMP_VOLUME, TMP_DIR, {"sizeLimit": TMP_SIZE}),
    ]
    if downloads:
        dirs.append(("hf-cache", HF_CACHE, {"sizeLimit": HF_CACHE_SIZE}))
    volumes = [{"name": name, "emptyDir": empty_dir} for name, _, empty_dir in dirs]
    mounts = [{"name": name, "mountPath": path} for name, path, _ in dirs]
    return volumes, mounts
