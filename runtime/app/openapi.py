"""The OpenAPI document, generated from the request and response models so it cannot drift from what is served.

Streamed responses are documented per event, as OpenAPI 3.2 does and schemathesis reads 3.1 documents: the
`text/event-stream` schema describes one event, whose `data` is the chunk model as JSON (or an error, when
generation fails after the stream started), and the last event's `data` is `[DONE]`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from vif.runtime.protocols.chat import ChatCompletionRequest
from vif.runtime.protocols.completion import CompletionRequest
from vif.runtime.protocols.generate import GenerateRequest
from vif.runtime.protocols.responses import (
    ChatCompletion,
    ChatCompletionChunk,
    Completion,
    CompletionChunk,
    DetokenizeResponse,
    ErrorResponse,
    GenerateChunk,
    GenerateResponse,
    HealthStatus,
    ModelList,
    ReadyStatus,
    TokenizeResponse,
)
from vif.runtime.protocols.tokenize import DetokenizeRequest, TokenizeRequest

REF = "#/components/schemas/{model}"
SSE_DONE = "[DONE]"


@dataclass(frozen=True)
class InferenceRoute:
    """A POST route: its request model, its response model, and the model of each streamed chunk."""

    path: str
    summary: str
    request: type[BaseModel]
    response: type[BaseModel]
    chunk: type[BaseModel]


INFERENCE_ROUTES = (
    InferenceRoute(
        "/v1/chat/completions", "OpenAI Chat Completions", ChatCompletionRequest, ChatCompletion, ChatCompletionChunk
    ),
    InferenceRoute("/v1/completions", "OpenAI Completions", CompletionRequest, Completion, CompletionChunk),
    InferenceRoute(
        "/generate", "Prompt with system info and history", GenerateRequest, GenerateResponse, GenerateChunk
    ),
)

# Every error an inference route answers, all with the ErrorResponse body. A client that goes away gets 499 in
# the logs, never on the wire, so it is not listed.
INFERENCE_ERRORS = {
    400: "Invalid request: not JSON, not matching the request schema, a prompt the model refuses, or one that "
    "leaves no room in the context",
    401: "Missing or wrong API key (when the server has API keys)",
    404: "The `model` named is not served here",
    408: "The request body did not arrive within the server's body timeout",
    413: "The request body is larger than the server's limit",
    429: "The server is serving its concurrency limit; retry after `Retry-After` seconds",
    500: "Internal error; the message never carries details",
    503: "The model is still loading (retry after `Retry-After` seconds), the engine failed, or the server is "
    "shutting down",
}


@dataclass(frozen=True)
class TokenizerRoute:
    """A POST route answered from the tokenizer: one JSON response, never a stream."""

    path: str
    summary: str
    request: type[BaseModel]
    response: type[BaseModel]


TOKENIZER_ROUTES = (
    TokenizerRoute("/tokenize", "vLLM's tokenizer: a prompt's or chat's token ids", TokenizeRequest, TokenizeResponse),
    TokenizerRoute("/detokenize", "vLLM's tokenizer: the text of token ids", DetokenizeRequest, DetokenizeResponse),
)
# The inference routes' errors but 429 (no concurrency slot is taken) and the shutdown's 503 (never aborted).
TOKENIZER_ERRORS = {
    **{status: text for status, text in INFERENCE_ERRORS.items() if status != 429},
    400: "Invalid request: not JSON, not matching the request schema, text far longer than the context, "
    "messages the chat template refuses, or token ids outside the vocabulary",
    503: "The model is still loading (retry after `Retry-After` seconds), or the engine failed",
}
RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before retrying", "schema": {"type": "string"}}}
# The API key is checked only when the server has keys; probes, metrics and this document are always open.
OPTIONAL_BEARER: list[dict[str, list[str]]] = [{"bearer": []}, {}]


def build_openapi(version: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document served at `/openapi.json`."""
    modes: list[tuple[type[BaseModel], JsonSchemaMode]] = [(r.request, "validation") for r in INFERENCE_ROUTES]
    modes += [(r.request, "validation") for r in TOKENIZER_ROUTES]
    responses: list[type[BaseModel]] = [ErrorResponse, HealthStatus, ReadyStatus, ModelList]
    responses += [m for r in INFERENCE_ROUTES for m in (r.response, r.chunk)]
    responses += [r.response for r in TOKENIZER_ROUTES]
    modes += [(model, "serialization") for model in responses]
    refs, defs = models_json_schema(modes, ref_template=REF)
    ref = {model: refs[(model, mode)] for model, mode in modes}
    error = {"application/json": {"schema": ref[ErrorResponse]}}

    paths: dict[str, Any] = {}
    for route in INFERENCE_ROUTES:
        errors = {
            str(status): {"description": text, "content": error, **_headers(status)}
            for status, text in INFERENCE_ERRORS.items()
        }
        paths[route.path] = {
            "post": {
                "summary": route.summary,
                "operationId": route.path.strip("/").replace("/", "_"),
                "security": OPTIONAL_BEARER,
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": ref[route.request]}},
                },
                "responses": {
                    "200": {
                        "description": f"A {route.response.__name__}, or server-sent events of "
                        f"{route.chunk.__name__} when `stream` is true.",
                        "content": {
                            "application/json": {"schema": ref[route.response]},
                            "text/event-stream": {"schema": _event_schema(ref[route.chunk], ref[ErrorResponse])},
                        },
                    },
                    **errors,
                },
            }
        }
    for tokenizer in TOKENIZER_ROUTES:
        paths[tokenizer.path] = {
            "post": {
                "summary": tokenizer.summary,
                "operationId": tokenizer.path.strip("/"),
                "security": OPTIONAL_BEARER,
                "requestBody": {"required": True, "content": {"application/json": {"schema": ref[tokenizer.request]}}},
                "responses": {
                    "200": _json(f"A {tokenizer.response.__name__}", ref[tokenizer.response]),
                    **{
                        str(status): {**_json(text, ref[ErrorResponse]), **_headers(status)}
                        for status, text in TOKENIZER_ERRORS.items()
                    },
                },
            }
        }
    paths["/v1/models"] = _get(
        "The served model and its LoRA adapters",
        {
            "200": _json("The served model, then each of its LoRA adapters", ref[ModelList]),
            "401": _json(INFERENCE_ERRORS[401], ref[ErrorResponse]),
        },
        security=OPTIONAL_BEARER,
    )
    paths["/health"] = _get(
        "Liveness: the process is alive (the engine loading or serving)",
        {"200": _json("Alive", ref[HealthStatus]), "503": _json("The engine failed", ref[HealthStatus])},
    )
    paths["/ready"] = _get(
        "Readiness: the engine is loaded and healthy",
        {"200": _json("Ready", ref[ReadyStatus]), "503": _json("Loading, or the engine failed", ref[ReadyStatus])},
    )
    paths["/metrics"] = _get(
        "Prometheus metrics",
        {"200": {"description": "Prometheus text format", "content": {"text/plain": {"schema": {"type": "string"}}}}},
    )
    paths["/openapi.json"] = _get("This document", {"200": _json("OpenAPI 3.1", {"type": "object"})})
    return {
        "openapi": "3.1.0",
        "info": {"title": "vif runtime", "version": version},
        "paths": paths,
        "components": {
            "schemas": defs.get("$defs", {}),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def _event_schema(chunk: dict[str, str], error: dict[str, str]) -> dict[str, Any]:
    """One server-sent event: `data` holds a chunk (or an error) as JSON, and the last one `[DONE]`."""
    return {
        "type": "object",
        "required": ["data"],
        "properties": {
            "data": {
                "anyOf": [
                    {"const": SSE_DONE, "description": "The last event"},
                    {
                        "type": "string",
                        "contentMediaType": "application/json",
                        "contentSchema": {"anyOf": [chunk, error]},
                    },
                ]
            }
        },
    }


def _headers(status: int) -> dict[str, Any]:
    if status in (429, 503):
        return {"headers": RETRY_AFTER}
    if status == 401:
        return {"headers": {"WWW-Authenticate": {"description": "`Bearer`", "schema": {"type": "string"}}}}
    return {}


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _get(summary: str, responses: dict[str, Any], security: list[dict[str, list[str]]] | None = None) -> dict:
    operation: dict[str, Any] = {"summary": summary, "responses": responses}
    if security is not None:
        operation["security"] = security
    return {"get": operation}
