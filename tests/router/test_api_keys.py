"""The router checks the model's API keys itself, before it reads a body or holds a request."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from helpers.waits import eventually
from tests.router.conftest import WAIT, StartReplica, StartRouter
from vif.runtime.app.settings import ServerSettings
from vif.runtime.router.app import RouterSettings
from vif.runtime.shared.api_keys import load_api_keys

KEY = {"Authorization": "Bearer k2"}


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic k2"}])
async def test_a_request_without_a_key_is_401_and_never_reaches_a_replica(
    start_replica: StartReplica, start_router: StartRouter, headers: dict[str, str]
) -> None:
    replica, served = await start_replica("a")
    url, _ = await start_router([served.url], api_keys=("k1", "k2"))
    async with httpx.AsyncClient(base_url=url, timeout=WAIT) as client:
        refused = await client.post("/v1/completions", json={"prompt": "hi"}, headers=headers)
        answered = await client.post("/v1/completions", json={"prompt": "hi"}, headers=KEY)
    assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
    assert refused.json()["error"] == {
        "message": "Invalid or missing API key. Send it as 'Authorization: Bearer KEY'.",
        "type": "authentication_error",
        "param": None,
        "code": "invalid_api_key",
    }
    assert answered.status_code == 200
    (seen,) = replica.seen  # only the authenticated one, with its key for the replica's own check
    assert seen["headers"]["authorization"] == "Bearer k2"


async def test_the_key_is_checked_before_the_body_is_read(start_router: StartRouter) -> None:
    """A body over the limit gets 401, not 413: the router did not read it."""
    url, _ = await start_router([], api_keys=("k1",), max_body_bytes=100)
    async with httpx.AsyncClient(base_url=url, timeout=WAIT) as client:
        response = await client.post("/v1/completions", json={"prompt": "x" * 200})
    assert response.status_code == 401


async def test_an_unauthenticated_request_is_not_held_while_no_replica_is_ready(start_router: StartRouter) -> None:
    """With a model at zero replicas, only an authenticated request waits (and wakes it); the other is 401 at once."""
    url, router = await start_router([], api_keys=("k1",), max_wait=60)
    async with httpx.AsyncClient(base_url=url, timeout=WAIT) as client:
        response = await client.post("/v1/chat/completions", json={"messages": []})
        metrics = (await client.get("/metrics")).text
    assert response.status_code == 401 and router.holding.pending == 0
    assert 'vif_router_requests_total{model="m",status="401"} 1.0' in metrics


async def test_probes_and_metrics_need_no_key(start_router: StartRouter) -> None:
    url, _ = await start_router([], api_keys=("k1",))
    async with httpx.AsyncClient(base_url=url, timeout=WAIT) as client:
        assert (await client.get("/health")).status_code == 200
        assert (await client.get("/metrics")).status_code == 200


def test_the_routers_body_limit_is_the_runtimes() -> None:
    assert RouterSettings().max_body_bytes == ServerSettings().max_body_bytes == 4 << 20


def test_keys_come_from_flags_the_environment_and_a_file(tmp_path: Path) -> None:
    keys_file = tmp_path / "keys"
    keys_file.write_text("k3\n\nk4\n")
    assert load_api_keys(["k1"], keys_file, {"VIF_API_KEYS": "k2, ,k5"}) == ("k1", "k2", "k5", "k3", "k4")
    assert load_api_keys([], None, {}) == ()


@pytest.mark.parametrize(
    ("given", "environ", "message"),
    [([" "], {}, "--api-key was given an empty key"), ([], {"VIF_API_KEYS": " , "}, "VIF_API_KEYS is set")],
)
def test_a_configured_source_without_a_key_is_an_error(given: list[str], environ: dict[str, str], message: str) -> None:
    with pytest.raises(LookupError, match=message):
        load_api_keys(given, None, environ)


async def test_a_rotated_keys_file_takes_effect_and_one_without_keys_is_refused(
    start_replica: StartReplica, start_router: StartRouter, tmp_path: Path
) -> None:
    """The router reads its keys file again when it changes, as the runtime does (docs/live-config.md)."""
    keys_file = tmp_path / "keys"
    keys_file.write_text("k1")
    _, served = await start_replica("a")
    url, router = await start_router([served.url], api_keys_file=keys_file, reload_interval=0.02)

    async def status(key: str) -> int:
        async with httpx.AsyncClient(base_url=url, timeout=WAIT) as client:
            headers = {"Authorization": f"Bearer {key}"}
            return (await client.post("/v1/completions", json={"prompt": "hi"}, headers=headers)).status_code

    assert (await status("k1"), await status("k2")) == (200, 401)
    keys_file.write_text("k2,k3")
    await eventually(lambda: router.access.keys.accepts(b"Bearer k2"), "the rotated keys read")
    assert (await status("k1"), await status("k2"), await status("k3")) == (401, 200, 200)
    keys_file.write_text("\n")
    async with httpx.AsyncClient(base_url=url, timeout=WAIT) as client:

        async def refused() -> object:
            return (await client.get("/live-config")).json()["refused"]

        assert "holds no key" in (await eventually(refused, "the empty keys file refused"))["error"]
    assert (await status("k1"), await status("k2")) == (401, 200)  # the keys in force stay
