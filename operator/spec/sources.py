"""Where a model's weights and its LoRA adapters come from: a path in the image, a PVC, Hugging Face or S3, and
the cache a download goes into (docs/models.md)."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field

from vif.operator.spec.schema import NO_DOTDOT, APIModel, DNSLabel, DNSSubdomain, Quantity, SecretKeyRef, cel


class PVCSource(APIModel):
    claim_name: DNSLabel
    path: str = Field("", pattern=NO_DOTDOT, description="Folder of the model inside the volume (no `..`).")


class HuggingFaceSource(APIModel):
    id: str = Field(pattern=r"^[\w.-]+/[\w.-]+$", description="A Hugging Face repository id, org/name.")
    revision: str | None = Field(
        None,
        max_length=128,
        pattern=r"^[A-Za-z0-9][-_A-Za-z0-9/]*(\.[-_A-Za-z0-9/]+)*$",
        description="A branch, tag or commit (default main); no `..`.",
    )
    token_secret: SecretKeyRef | None = Field(
        None, description="Secret holding HF_TOKEN for gated models (with `cache`, only the download sees it)."
    )


class S3ModelSource(APIModel):
    """A model under an S3 prefix, on AWS or any S3-compatible store; downloaded into `model.cache`."""

    uri: str = Field(
        pattern=r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/([^.]|\.[^.])*)?$",
        max_length=1024,
        description="s3://bucket/prefix: every object under the prefix (no `..`).",
    )
    endpoint: str | None = Field(
        None,
        pattern=r"^https?://[^\s/]+(/[^\s]*)?$",
        max_length=512,
        description="The store's URL (default AWS's for the region); path-style requests.",
    )
    region: str | None = Field(None, pattern=r"^[a-z0-9-]{1,32}$", description="Default us-east-1.")
    credentials_secret: DNSLabel | None = Field(
        None,
        description="A Secret with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN, optional),"
        " given to the download only; none for a public bucket.",
    )


class ModelCache(APIModel):
    """A volume the model is downloaded into once, by the first replica's init container (`vif-runtime fetch`),
    and that every replica mounts read-only: a new replica, a restart or a scale from zero loads from it. Either a
    claim of the model's own (`size`), or an existing claim that several models share (`claimName`): the cache is
    laid out by source and commit, so a second model of the same source and revision downloads nothing."""

    model_config = ConfigDict(json_schema_extra=cel(
        "has(self.size) != has(self.claimName)",
        "model.cache takes size (a claim of the model's own) or claimName (a claim models share), not both",
    ))  # fmt: skip

    size: Quantity | None = Field(
        None, description="A claim `<name>-model-cache` of this size, made and deleted with the model."
    )
    storage_class_name: DNSSubdomain | None = Field(None, description="That claim's class (default: the cluster's).")
    access_mode: Literal["ReadWriteMany", "ReadWriteOnce"] = Field(
        "ReadWriteMany",
        description="That claim's access: ReadWriteMany lets replicas on every node share one download;"
        " ReadWriteOnce keeps the model's pods on the claim's node.",
    )
    claim_name: DNSLabel | None = Field(
        None, description="Instead: an existing claim of the namespace that models share; never deleted by vif."
    )


class ModelSource(APIModel):
    """Where the weights are: exactly one of a path in the image, a PVC, a Hugging Face id or an S3 prefix."""

    model_config = ConfigDict(json_schema_extra=cel(
        "[has(self.path), has(self.pvc), has(self.huggingFace), has(self.s3)].filter(x, x).size() == 1",
        "set exactly one of model.path, model.pvc, model.huggingFace and model.s3",
        ("!has(self.cache) || has(self.huggingFace) || has(self.s3)",
         "model.cache holds a download: only with model.huggingFace or model.s3"),
        ("!has(self.s3) || has(self.cache)", "model.s3 is downloaded into model.cache: set it"),
    ))  # fmt: skip

    path: str | None = Field(
        None, pattern=r"^/([^.]|\.[^.])*\.?$", description="An absolute path inside the runtime image (no `..`)."
    )
    pvc: PVCSource | None = None
    hugging_face: HuggingFaceSource | None = None
    s3: S3ModelSource | None = None
    cache: ModelCache | None = Field(
        None,
        description="Download a huggingFace or s3 model once into a shared volume (docs/models.md); without it"
        " each pod downloads a huggingFace model itself into an emptyDir.",
    )


class AdapterHuggingFace(APIModel):
    id: str = Field(
        pattern=r"^[A-Za-z0-9][-_.A-Za-z0-9]*/[A-Za-z0-9][-_.A-Za-z0-9]*$",
        description="A Hugging Face repository id, org/name; downloaded at start (a gated one needs the model's"
        " huggingFace.tokenSecret).",
    )


class Adapter(APIModel):
    """A LoRA adapter served beside the model under its name: exactly one of a path, a PVC or a Hugging Face id."""

    model_config = ConfigDict(json_schema_extra=cel(
        "[has(self.path), has(self.pvc), has(self.huggingFace)].filter(x, x).size() == 1",
        "set exactly one of path, pvc and huggingFace in each of adapters",
    ))  # fmt: skip

    name: str = Field(
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9_][-_.:/A-Za-z0-9]*$",
        description="The name clients send as `model` to use the adapter.",
    )
    path: str | None = Field(
        None,
        pattern=r"^/([^.]|\.[^.])*\.?$",
        description="An absolute path in the pod (no `..`): in the image, or in the model's own PVC under /models/pvc.",
    )
    pvc: PVCSource | None = Field(None, description="A PVC (mounted read-only) and the adapter's folder in it.")
    hugging_face: AdapterHuggingFace | None = None
