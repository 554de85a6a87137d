"""Live configuration: API keys, the chat template, the response role, the log level and the response cache's bounds
taken from their files while the runtime serves; a broken version refused, the one in force kept."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import httpx
import pytest

from helpers.waits import eventually
from vif.runtime.app.live import LiveSources
from vif.runtime.app.response_cache import CacheSettings
from vif.runtime.app.settings import ServerSettings
from vif.runtime.config import ConfigError
from vif.runtime.shared.api_keys import KeyCheck
from vif.runtime.shared.live_files import LiveFiles

MODEL = "smollm2-135m-instruct"
FAST = ServerSettings(reload_interval=0.02)
TEMPLATE = "{% for m in messages %}[{{ m.role }}: {{ m.content }}]{% endfor %}"


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    paths = {"keys": tmp_path / "keys", "template": tmp_path / "chat.jinja", "live": tmp_path / "live.json"}
    paths["keys"].write_text("k1\n")
    paths["template"].write_text(TEMPLATE)
    paths["live"].write_text("{}")
    return paths


def sources(files: dict[str, Path], **fields: Any) -> LiveSources:
    return LiveSources(keys_file=files["keys"], template_file=files["template"], live_file=files["live"], **fields)


# --- reading the files -------------------------------------------------------------------------------------------


def test_the_live_file_overrides_what_the_flags_and_the_entry_said(files: dict[str, Path]) -> None:
    start = sources(files, response_role="assistant", log_level="info").read()
    assert (start.chat_template, start.response_role, start.log_level) == (TEMPLATE, "assistant", "info")
    assert start.keys.owners == KeyCheck(["k1"]).owners
    assert not start.response_cache.enabled
    files["live"].write_text(json.dumps({
        "response_role": "bot", "log_level": "debug",
        "response_cache": {"max_entries": 5, "max_bytes": 1000, "ttl_seconds": 9},
    }))  # fmt: skip
    now = sources(files).read()
    assert (now.response_role, now.log_level, now.response_cache) == ("bot", "debug", CacheSettings(5, 1000, 9))


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("live", "{", "live.json: invalid JSON at line 1"),
        ("live", '{"response_rol": "bot"}', "live.json: response_rol: Extra inputs are not permitted"),
        ("live", '{"log_level": "loud"}', "live.json: log_level: Input should be"),
        ("live", '{"response_cache": {"max_entries": -1, "max_bytes": 1, "ttl_seconds": 1}}', "max_entries"),
        ("keys", " \n", "API keys: --api-keys-file"),
        ("template", "{% for m in messages %}", "chat.jinja: line 1: Unexpected end of template"),
        ("template", "{{ messages | no_such_filter }}", "chat.jinja: line 1: No filter named 'no_such_filter'"),
        ("keys", "\xff", "API keys: .*keys is not UTF-8 text"),
    ],
)
def test_a_broken_file_is_one_line_naming_it(files: dict[str, Path], name: str, content: str, message: str) -> None:
    files[name].write_bytes(content.encode("latin-1") if name == "keys" else content.encode())
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")) as caught:
        sources(files).read()
    assert "\n" not in str(caught.value)


def test_the_engines_rendering_checks_the_template(files: dict[str, Path]) -> None:
    def refuse(text: str) -> None:
        raise ValueError("The chat template refused the messages: no user role")

    with pytest.raises(ConfigError, match=r"chat\.jinja: The chat template refused the messages"):
        sources(files).read(refuse)


# --- the watcher -------------------------------------------------------------------------------------------------


async def test_an_unforeseen_error_refuses_the_version_and_the_watch_goes_on(tmp_path: Path) -> None:
    """A template can fail in ways no list of exceptions foresees ({{ 1/0 }}): refused, and the watch lives on."""
    path = tmp_path / "value"
    path.write_text("1")
    applied: list[str] = []

    def read() -> str:
        text = path.read_text()
        return str(1 // int(text))  # ZeroDivisionError for "0"

    files = LiveFiles([path], read, applied.append)
    path.write_text("0")
    assert await files.poll() == "refused" and "division" in files.status()["refused"]["error"]
    path.write_text("1 ")
    assert await files.poll() == "applied" and applied == ["1"]


async def test_a_change_applies_a_broken_one_is_refused_once_and_a_return_clears_the_refusal(tmp_path: Path) -> None:
    path = tmp_path / "value"
    path.write_text("1")
    applied: list[int] = []

    def read() -> int:
        if not path.read_text().isdigit():
            raise ValueError(f"{path}: not a number")
        return int(path.read_text())

    files = LiveFiles([path], read, applied.append)
    first = files.version
    assert await files.poll() is None
    path.write_text("2")
    assert (await files.poll(), applied) == ("applied", [2])
    second = files.version
    path.write_text("two")
    assert await files.poll() == "refused"
    assert await files.poll() is None  # the same broken version: refused once, logged once
    status = files.status()
    assert status["version"] == second != first and "not a number" in status["refused"]["error"]
    path.write_text("2")  # back to the version in force
    assert await files.poll() is None and files.status()["refused"] is None and applied == [2]


# --- a serving runtime -------------------------------------------------------------------------------------------


async def chat(client: httpx.AsyncClient, key: str = "k1", **fields: Any) -> httpx.Response:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3, **fields}
    return await client.post("/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"})


async def test_a_rotated_key_works_and_the_old_one_is_refused(make_client, files: dict[str, Path]) -> None:
    client = await make_client(FAST, live=sources(files))
    assert (await chat(client, "k1")).status_code == 200
    assert (await chat(client, "k2")).status_code == 401
    files["keys"].write_text("k2\n")

    async def rotated() -> bool:
        return (await chat(client, "k2")).status_code == 200

    await eventually(rotated, "the new key accepted")
    refused = await chat(client, "k1")
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_api_key"


async def test_a_keys_file_without_keys_is_refused_and_the_keys_in_force_stay(
    make_client, files: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    client = await make_client(FAST, live=sources(files))
    before = (await client.get("/live-config")).json()
    files["keys"].write_text("\n")

    async def refused() -> Any:
        return (await client.get("/live-config")).json()["refused"]

    refusal = await eventually(refused, "the empty keys file refused")
    assert (
        "holds no key" in refusal["error"] and (await client.get("/live-config")).json()["version"] == before["version"]
    )
    assert (await chat(client, "k1")).status_code == 200  # no key at all would mean no auth: never that
    assert any("refused" in r.getMessage() and r.levelno == logging.ERROR for r in caplog.records)
    assert f'vif_live_config_refused{{model="{MODEL}"}} 1.0' in (await client.get("/metrics")).text


async def test_the_template_and_the_role_change_and_a_broken_template_keeps_the_old(
    make_client, files: dict[str, Path]
) -> None:
    client = await make_client(FAST, live=sources(files))

    async def rendered() -> str:
        answer = await client.post(
            "/tokenize", json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}]},
            headers={"Authorization": "Bearer k1"},
        )  # fmt: skip
        return "".join(map(chr, answer.json()["tokens"]))

    assert await rendered() == "[user: hi]"
    files["template"].write_text("<<{{ messages[0].content }}>>")
    files["live"].write_text('{"response_role": "bot"}')

    async def new_template() -> bool:
        return await rendered() == "<<hi>>"

    await eventually(new_template, "the new template")
    assert (await chat(client)).json()["choices"][0]["message"]["role"] == "bot"
    files["template"].write_text("{{ messages[0].content ")  # broken: refused, the last good one serves

    async def refused() -> Any:
        return (await client.get("/live-config")).json()["refused"]

    assert "chat.jinja: line 1" in (await eventually(refused, "the broken template refused"))["error"]
    assert await rendered() == "<<hi>>"


async def test_the_response_cache_turns_on_and_off_live(make_client, files: dict[str, Path]) -> None:
    client = await make_client(FAST, live=sources(files))
    assert "x-vif-cache" not in (await chat(client, temperature=0)).headers
    files["live"].write_text('{"response_cache": {"max_entries": 4, "max_bytes": 100000, "ttl_seconds": 60}}')

    async def cached() -> bool:
        return (await chat(client, temperature=0)).headers.get("x-vif-cache") == "hit"

    await eventually(cached, "answers cached once the cache is on")
    files["live"].write_text("{}")

    async def uncached() -> bool:
        return "x-vif-cache" not in (await chat(client, temperature=0)).headers

    await eventually(uncached, "no cache once it is off again")
    assert f'vif_response_cache_entries{{model="{MODEL}"}} 0.0' in (await client.get("/metrics")).text


async def test_the_log_level_changes_live(make_client, files: dict[str, Path]) -> None:
    client = await make_client(FAST, live=sources(files))
    vif = logging.getLogger("vif")
    files["live"].write_text('{"log_level": "error"}')
    try:
        await eventually(lambda: vif.level == logging.ERROR, "the vif loggers at ERROR")
    finally:
        vif.setLevel(logging.INFO)
    assert (await client.get("/live-config")).json()["refused"] is None


async def test_a_new_role_is_not_answered_from_answers_cached_with_the_old(make_client, files: dict[str, Path]) -> None:
    files["live"].write_text('{"response_cache": {"max_entries": 4, "max_bytes": 100000, "ttl_seconds": 60}}')
    client = await make_client(FAST, live=sources(files))
    await chat(client, temperature=0)
    assert (await chat(client, temperature=0)).headers["x-vif-cache"] == "hit"
    files["live"].write_text(
        '{"response_role": "bot", "response_cache": {"max_entries": 4, "max_bytes": 100000, "ttl_seconds": 60}}'
    )

    async def new_role() -> bool:
        return (await chat(client, temperature=0)).json()["choices"][0]["message"]["role"] == "bot"

    await eventually(new_role, "answers in the new role")
    assert (await chat(client, temperature=0)).headers["x-vif-cache"] == "hit"  # cached again, in the new role


def test_the_routers_tenants_file_adds_its_keys_and_a_rotated_key_is_read_again(tmp_path: Path) -> None:
    """Behind a router with tenants, the replica accepts each tenant's key too (the router forwards it)."""
    (tmp_path / "search-key").write_text("sk-search")
    tenants = tmp_path / "tenants.json"
    tenants.write_text(json.dumps({"tenants": [{"name": "search", "keyFile": "search-key", "requestsPerMinute": 5}]}))
    live = LiveSources(api_keys=("plain",), tenants_file=tenants)
    keys = live.read().keys
    assert keys.owner(b"Bearer sk-search") == "search" and keys.owner(b"Bearer plain") == "default"
    assert tmp_path / "search-key" in live.paths  # a Secret rotated in place is noticed
    (tmp_path / "search-key").write_text("sk-rotated")
    assert live.read().keys.owner(b"Bearer sk-rotated") == "search"
    tenants.write_text("{")
    with pytest.raises(ConfigError, match=r"API keys: .*tenants\.json: not JSON"):
        live.read()
