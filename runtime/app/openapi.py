"""The OpenAPI document, generated from the request models so it cannot drift from what is validated."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from vif.runtime.protocols.chat import ChatCompletionRequest
from vif.runtime.protocols.completion import CompletionRequest
from vif.runtime.protocols.generate import GenerateRequest

ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type", "param", "code"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": ["string", "null"]},
                "code": {"type": ["string", "null"]},
            },
        }
    },
}

INFERENCE_ROUTES: list[tuple[str, type[BaseModel], str]] = [
    ("/v1/chat/completions", ChatCompletionRequest, "OpenAI Chat Completions"),
    ("/v1/completions", CompletionRequest, "OpenAI Completions"),
    ("/generate", GenerateRequest, "Prompt with system info and history"),
]
PROBES = {
    "/health": "200 while the process is alive (the engine loading or serving)",
    "/ready": "200 once the engine is loaded and healthy, else 503",
    "/metrics": "Prometheus metrics",
    "/v1/models": "The served model",
}


def build_openapi(version: str) -> dict[str, Any]:
    models = [(model, "validation") for _, model, _ in INFERENCE_ROUTES]
    refs, defs = models_json_schema(models, ref_template="#/components/schemas/{model}")
    schemas = {**defs.get("$defs", {}), "Error": ERROR_SCHEMA}
    error_ref = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    paths: dict[str, Any] = {}
    for path, model, summary in INFERENCE_ROUTES:
        paths[path] = {
            "post": {
                "summary": summary,
                "operationId": path.strip("/").replace("/", "_"),
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": refs[(model, "validation")]}},
                },
                "responses": {
                    "200": {"description": "The completion, or server-sent events when `stream` is true."},
                    "400": {"description": "Invalid request", "content": error_ref},
                    "404": {"description": "Unknown model", "content": error_ref},
                },
            }
        }
    for path, summary in PROBES.items():
        paths[path] = {"get": {"summary": summary, "responses": {"200": {"description": "OK"}}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "vif runtime", "version": version},
        "paths": paths,
        "components": {"schemas": schemas},
    }
