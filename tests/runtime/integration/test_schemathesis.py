"""schemathesis, driven by the served `/openapi.json`, against the real engine: no server errors, and every
response (JSON or server-sent events) is what the document says, for every operation.

One test per operation of the document (known when collecting: it is generated from the models), each running
schemathesis's own positive and negative cases through hypothesis. schemathesis's lazy pytest loader
(`schemathesis.pytest.from_fixture`) is not used: it writes `Node._nodeid`, which pytest 9 no longer has.

The budget is bounded: a few dozen examples per operation, and every generated body asks for at most a few tokens
and choices, so the real model never spends minutes on one request. Those caps only lower a value the document
allows (or add `max_tokens`); they never make an invalid body valid, so negative cases stay negative.
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.config._checks import NEGATIVE_DATA_REJECTION_EXPECTED_STATUSES as NEGATIVE_DEFAULT
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from vif.runtime.app.openapi import INFERENCE_ROUTES, build_openapi
from vif.runtime.protocols.common import MAX_CHOICES as DOCUMENTED_MAX_CHOICES

from .conftest import MODEL, Server

# Examples per operation and generation mode: bodies valid by the document (most reach the model), and invalid
# ones (refused before the engine, so cheap).
EXAMPLES = {schemathesis.GenerationMode.POSITIVE: 30, schemathesis.GenerationMode.NEGATIVE: 20}
MAX_OUTPUT_TOKENS = 8
MAX_CHOICES = 2
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    negative_data_rejection,  # a body the document calls invalid must get a 4xx, never a 200
]
DOCUMENT = build_openapi("x")
GENERATING = {route.path for route in INFERENCE_ROUTES}  # the tokenizer routes take no max_tokens
# Positive cases for every operation; negative ones where there is a body to make invalid (the GET routes have no
# parameters).
CASES = [
    (method.upper(), path, mode)
    for path, item in DOCUMENT["paths"].items()
    for method, operation in item.items()
    for mode in EXAMPLES
    if mode is schemathesis.GenerationMode.POSITIVE or "requestBody" in operation
]


@pytest.fixture(scope="session")
def served_schema(server: Server) -> schemathesis.BaseSchema:
    config = schemathesis.Config.from_dict(
        {
            "base-url": server.base_url,
            "request-timeout": 120,
            # Reproducers in full: the default hides every field whose name contains "token" (max_tokens).
            "output": {"sanitization": {"enabled": False}},
            # An invalid body over the size limit is refused before it is parsed, with the documented 413: a
            # refusal too (schemathesis's own list lacks it; one generated 7 MB of messages once, and failed).
            "checks": {"negative_data_rejection": {"expected-statuses": [*NEGATIVE_DEFAULT, "413"]}},
        }
    )
    schema = schemathesis.openapi.from_url(f"{server.base_url}/openapi.json", config=config)
    schema.validate()
    return schema


@pytest.mark.parametrize(("method", "path", "mode"), CASES, ids=[f"{m} {p} {g.value}" for m, p, g in CASES])
def test_served_api_conforms_to_its_document(
    served_schema: schemathesis.BaseSchema, server: Server, method: str, path: str, mode: schemathesis.GenerationMode
) -> None:
    operation = served_schema[path][method]
    headers = {"Authorization": f"Bearer {server.api_key}"}

    @settings(max_examples=EXAMPLES[mode], deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: schemathesis.Case) -> None:
        if isinstance(case.body, dict):
            bound_generation(case.body, generates=path in GENERATING)
        case.call_and_validate(headers=headers, checks=CHECKS)

    run()


def bound_generation(body: dict[str, Any], generates: bool) -> None:
    """Name the served model (any other name only reaches the 404) and, for a route that generates, cap the output
    tokens and choices."""
    if isinstance(body.get("model"), str):
        body["model"] = MODEL
    if not generates:
        return
    if body.get("max_tokens") is None:
        body["max_tokens"] = MAX_OUTPUT_TOKENS
    for field in ("max_tokens", "max_completion_tokens"):
        value = body.get(field)
        if type(value) is int and value > MAX_OUTPUT_TOKENS:
            body[field] = MAX_OUTPUT_TOKENS
    n = body.get("n")
    if type(n) is int and MAX_CHOICES < n <= DOCUMENTED_MAX_CHOICES:
        body["n"] = MAX_CHOICES
