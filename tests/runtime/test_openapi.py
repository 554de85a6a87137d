"""`/openapi.json` is generated from the request models, and request bodies validate against it."""

from __future__ import annotations

import jsonschema

from vif.runtime.app.openapi import build_openapi


def schema_for(spec: dict, path: str) -> dict:
    ref = spec["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    name = ref.rsplit("/", 1)[-1]
    return {**spec["components"]["schemas"][name], "components": spec["components"]}


async def test_served_document(make_client) -> None:
    client = await make_client()
    spec = (await client.get("/openapi.json")).json()
    assert spec["openapi"].startswith("3.1")
    assert {"/v1/chat/completions", "/v1/completions", "/generate", "/health", "/ready", "/metrics"} <= set(
        spec["paths"]
    )


def test_seed_bodies_validate_and_bad_ones_do_not() -> None:
    spec = build_openapi("test")
    generate = schema_for(spec, "/generate")
    good = {"model": "m", "prompt": "p", "system_info": "s", "history_input": ["a"], "history_output": ["b"]}
    jsonschema.validate(good, generate)
    for bad in ({"prompt": 1}, {"prompt": "p", "unknown": True}, {"prompt": "p", "temperature": 3}):
        try:
            jsonschema.validate(bad, generate)
        except jsonschema.ValidationError:
            continue
        raise AssertionError(f"{bad} should not validate")
    chat = schema_for(spec, "/v1/chat/completions")
    jsonschema.validate({"model": "m", "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 100}, chat)
