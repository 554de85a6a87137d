"""The routes besides inference: liveness, readiness, the model list, Prometheus metrics, the OpenAPI document."""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from vif.runtime.app.lifecycle import Lifecycle
from vif.runtime.app.openapi import build_openapi
from vif.runtime.serving.context import ServedModel
from vif.runtime.serving.metrics import RuntimeMetrics
from vif.runtime.shared.asgi import json_response


def info_routes(
    state: Lifecycle,
    model: ServedModel,
    metrics: RuntimeMetrics,
    live_status: Callable[[], dict[str, Any]],
    metrics_here: bool = True,
) -> list[Route]:
    """`/health` is liveness (it asks the engine too), `/ready` readiness; the model list names adapters too;
    `/live-config` the live configuration's version in force and its last refusal (docs/live-config.md).
    `/metrics` only if `metrics_here` (else it is on a port of its own: `--metrics-port`)."""

    async def health(request: Request) -> Response:
        ok = state.alive
        if ok and state.engine is not None:
            try:
                await state.engine.check_health()
            except Exception as exc:
                state.failed(str(exc) or type(exc).__name__)
                ok = False
        return json_response({"status": "ok" if ok else "unhealthy"}, 200 if ok else 503)

    async def ready(request: Request) -> Response:
        ok = state.ready
        return json_response({"status": "ready" if ok else "not ready"}, 200 if ok else 503)

    async def models(request: Request) -> Response:
        max_len = state.engine.info.max_model_len if state.engine else None
        # As vLLM lists them: an adapter's parent (and every card's root) is the base model.
        cards = [
            {"id": name, "object": "model", "created": 0, "owned_by": "vif", "root": model.name,
             "parent": None if name == model.name else model.name, "max_model_len": max_len}
            for name in (model.name, *model.adapters)
        ]  # fmt: skip
        return json_response({"object": "list", "data": cards})

    async def metrics_route(request: Request) -> Response:
        return Response(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    async def live_config(request: Request) -> Response:
        return json_response(live_status())

    openapi = build_openapi(_version())

    async def openapi_route(request: Request) -> Response:
        return json_response(openapi)

    return [
        Route("/v1/models", models),
        Route("/health", health),
        Route("/ready", ready),
        *([Route("/metrics", metrics_route)] if metrics_here else []),
        Route("/openapi.json", openapi_route),
        Route("/live-config", live_config),
    ]


def _version() -> str:
    try:
        return version("vllm-inference-framework")
    except PackageNotFoundError:
        return "0+unknown"
