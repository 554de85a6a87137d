"""What the operator reports on an `InferenceModel`: its conditions, replicas, endpoint and download."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field

from vif.operator.spec.schema import APIModel


class Condition(APIModel):
    type: Literal["Ready", "Progressing", "Degraded"]
    status: Literal["True", "False", "Unknown"]
    reason: str
    message: str = ""
    last_transition_time: str | None = None
    observed_generation: int | None = None


class DownloadStatus(APIModel):
    """A `model.cache` download as its replicas' `fetch` last reported it (operator/download_status.py)."""

    phase: Literal["Pending", "Downloading", "Verifying", "Ready", "Failed"]
    bytes_done: int = 0
    bytes_total: int = 0
    bytes_per_second: int = Field(0, description="0 while unknown.")
    seconds_left: int = Field(0, description="0 while unknown.")
    message: str = Field("", description="Why it failed.")
    source: str = Field("", description="What was downloaded: ORG/NAME@REVISION.")
    summary: str = Field("", description="One line, as `kubectl get im` shows it.")


class LiveConfigStatus(APIModel):
    """Whether the replicas took the newest version of the model's keys and chat template (docs/live-config.md)."""

    refused: str = Field("", description="The version a replica refused (it serves the previous one); empty if none.")
    message: str = Field("", description="Which replica, and why.")


class InferenceModelStatus(APIModel):
    model_config = ConfigDict(extra="allow")  # kopf keeps its own bookkeeping under status

    observed_generation: int | None = None
    served_name: str | None = Field(None, description="The model name clients send.")
    replicas: int = 0
    ready_replicas: int = 0
    selector: str | None = Field(None, description="The pods' label selector, for the scale subresource.")
    endpoint: str | None = Field(None, description="In-cluster URL of the OpenAI-compatible API.")
    conditions: list[Condition] = Field(default_factory=list)
    download: DownloadStatus | None = Field(None, description="The download into `model.cache`, while and once it ran.")
    live_config: LiveConfigStatus | None = Field(
        None, description="A replica's refusal of a new API key or chat template, while it lasts."
    )
