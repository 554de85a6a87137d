"""Fuzzes the request models through the real app on the fake engine: whatever the body, the answer is never a
server error, and every answer (200, streamed or not, or an error) is what the OpenAPI document and the response
models describe.

Bodies come from three strategies: any JSON value; objects with the model's own field names holding any JSON
value (so the validators, not just the top-level type check, are reached); and bodies valid by the document with
one field replaced, removed or added.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from helpers.conformance import ROUTES, check_inference_response, document
from helpers.fake_engine import FakeEngine
from vif.runtime.app.factory import ServerSettings, create_app
from vif.runtime.serving.context import ServedModel
from vif.runtime.serving.registry import serving_classes

MODEL = "smollm2-135m-instruct"
PATHS = list(ROUTES)
# A bounded budget: the three routes together run in a few seconds. Hypothesis keeps no database in the tree.
FUZZ = settings(
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)

JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=16)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)


def field_bodies(path: str) -> st.SearchStrategy[dict[str, Any]]:
    """Objects whose keys are the request model's fields (any subset), each holding any JSON value."""
    fields = ROUTES[path].request.model_fields
    return st.fixed_dictionaries({}, optional={name: JSON_VALUES for name in fields})


@st.composite
def valid_bodies(draw: st.DrawFn, path: str) -> Any:
    """Bodies valid by the OpenAPI document, as schemathesis generates them, for the served model and streamed
    half of the time (other model names only reach the 404, which the other strategies cover)."""
    operation = document()[path]["POST"]
    body = draw(operation.as_strategy(generation_mode=schemathesis.GenerationMode.POSITIVE)).body
    if isinstance(body, dict):
        if "model" in body:
            body["model"] = MODEL
        if draw(st.booleans()):
            body["stream"] = True
    return body


@st.composite
def mutated_bodies(draw: st.DrawFn, path: str) -> Any:
    """A valid body with one field replaced by any JSON value, removed, or an unknown one added."""
    body = draw(valid_bodies(path))
    if not isinstance(body, dict):
        return body
    names = sorted(ROUTES[path].request.model_fields)
    action = draw(st.sampled_from(["replace", "remove", "add"]))
    if action == "remove" and body:
        body.pop(draw(st.sampled_from(sorted(body))))
    elif action == "replace":
        body[draw(st.sampled_from(names))] = draw(JSON_VALUES)
    else:
        body[draw(st.text(min_size=1, max_size=12))] = draw(JSON_VALUES)
    return body


def bodies(path: str) -> st.SearchStrategy[Any]:
    return st.one_of(JSON_VALUES, field_bodies(path), valid_bodies(path), mutated_bodies(path))


@pytest.fixture
def client(metrics) -> Iterator[TestClient]:
    """The app on a fake engine with a short context, so a valid body cannot ask for long generations."""
    engine = FakeEngine(max_model_len=128)
    app = create_app(
        ServedModel(MODEL), lambda: engine, serving_classes("OpenAIServingChat"), metrics, ServerSettings()
    )
    with TestClient(app, raise_server_exceptions=False) as test_client:
        for _ in range(500):  # the engine loads in a background thread
            if test_client.get("/ready").status_code == 200:
                break
        yield test_client


def post(client: TestClient, path: str, body: Any) -> Any:
    # json.dumps writes NaN and Infinity, which are not JSON: the app must refuse them with a 400, not fail.
    content = json.dumps(body).encode()
    return client.post(path, content=content, headers={"content-type": "application/json"})


@pytest.mark.parametrize("path", PATHS)
def test_any_body_gets_a_documented_answer(client: TestClient, path: str) -> None:
    @FUZZ
    @given(body=bodies(path))
    def fuzz(body: Any) -> None:
        response = post(client, path, body)
        assert response.status_code < 500, f"{path} {json.dumps(body)} -> {response.status_code} {response.text}"
        check_inference_response(path, response, body)

    fuzz()


@pytest.mark.parametrize("path", PATHS)
def test_malformed_bytes_get_a_documented_400(client: TestClient, path: str) -> None:
    @FUZZ
    @given(raw=st.binary(max_size=64) | st.text(max_size=64).map(str.encode))
    def fuzz(raw: bytes) -> None:
        response = client.post(path, content=raw, headers={"content-type": "application/json"})
        assert response.status_code < 500, f"{path} {raw!r} -> {response.status_code} {response.text}"
        check_inference_response(path, response)

    fuzz()
