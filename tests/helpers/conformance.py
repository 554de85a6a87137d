"""Checks a response of the runtime against its OpenAPI document, read the way schemathesis reads it, and against
the response models (strict pydantic): a response passes only if both describe it."""

from __future__ import annotations

from functools import cache
from typing import Any

import httpx
import requests
import schemathesis
from pydantic import BaseModel, ValidationError
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from vif.runtime.app.openapi import INFERENCE_ROUTES, SSE_DONE, build_openapi
from vif.runtime.protocols.responses import ErrorResponse

ROUTES = {route.path: route for route in INFERENCE_ROUTES}
CHECKS = [status_code_conformance, content_type_conformance, response_schema_conformance, response_headers_conformance]


@cache
def document() -> schemathesis.BaseSchema:
    schema = schemathesis.openapi.from_dict(build_openapi("test"))
    schema.validate()
    return schema


def sse_data(text: str) -> list[str]:
    """The `data` of every server-sent event, in order."""
    return [event[len("data: ") :] for event in text.split("\n\n") if event.startswith("data: ")]


def check_against_document(method: str, path: str, response: httpx.Response, body: Any = None) -> None:
    """Raise schemathesis's failure group if the document does not describe this response."""
    operation = document()[path][method]
    case = operation.Case() if body is None else operation.Case(body=body)
    case.validate_response(_as_schemathesis(response), checks=CHECKS)


def check_against_models(path: str, response: httpx.Response) -> list[BaseModel]:
    """Parse an inference route's response into its models (each SSE chunk into the chunk model); return them."""
    if response.status_code >= 400:
        return [ErrorResponse.model_validate_json(response.content, strict=True)]
    route = ROUTES[path]
    if not response.headers["content-type"].startswith("text/event-stream"):
        return [route.response.model_validate_json(response.content, strict=True)]
    events = sse_data(response.text)
    assert events and events[-1] == SSE_DONE, f"the stream must end with [DONE]: {response.text[-200:]!r}"
    parsed: list[BaseModel] = []
    for index, data in enumerate(events[:-1]):
        try:
            parsed.append(route.chunk.model_validate_json(data, strict=True))
        except ValidationError:
            if index != len(events) - 2:  # an error event may only end the stream
                raise
            parsed.append(ErrorResponse.model_validate_json(data, strict=True))
    return parsed


def check_inference_response(path: str, response: httpx.Response, body: Any = None) -> list[BaseModel]:
    """Both checks, for a POST to an inference route."""
    check_against_document("POST", path, response, body)
    return check_against_models(path, response)


def _as_schemathesis(response: httpx.Response) -> schemathesis.Response:
    request = requests.Request(
        response.request.method,
        str(response.request.url),
        headers=dict(response.request.headers),
        data=response.request.content,
    ).prepare()
    headers: dict[str, list[str]] = {}
    for key, value in response.headers.multi_items():
        headers.setdefault(key, []).append(value)
    return schemathesis.Response(response.status_code, headers, response.content, request, 0.0, True)
