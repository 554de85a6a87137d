"""Session affinity (`--session-affinity`, prefix-hash): a request's X-Session-Id header, else its `user` field,
keys it instead of its prompt, so a client's session stays on one replica whatever its prompts share."""

from __future__ import annotations

import httpx

from tests.router.conftest import WAIT, StartReplica, StartRouter


def chat(question: str, **fields: object) -> dict[str, object]:
    return {"model": "m", "messages": [{"role": "user", "content": question}], **fields}


async def replicas_seen(client: httpx.AsyncClient, bodies: list[dict[str, object]], **headers: str) -> set[str]:
    seen = set()
    for body in bodies:
        r = await client.post("/v1/chat/completions", json=body, headers=headers)
        seen.add(r.json()["replica"])
    return seen


async def test_a_session_stays_on_one_replica_whatever_it_asks(
    start_replica: StartReplica, start_router: StartRouter
) -> None:
    served = [(await start_replica(name))[1] for name in "abc"]
    url, _ = await start_router([s.url for s in served], strategy="prefix-hash", session_affinity=True)
    questions = [chat(f"question {i}") for i in range(12)]
    async with httpx.AsyncClient(base_url=url, timeout=WAIT) as client:
        by_header = {s: await replicas_seen(client, questions, **{"X-Session-Id": s}) for s in ("s1", "s2", "s3")}
        by_user = await replicas_seen(client, [chat(f"question {i}", user="alice") for i in range(12)])
        unnamed = await replicas_seen(client, questions)
    assert all(len(seen) == 1 for seen in by_header.values()), by_header
    assert len(set().union(*by_header.values())) > 1, "every session on one replica: sessions are not spread"
    assert len(by_user) == 1
    assert len(unnamed) > 1, "without a session, the prompts decide"


async def test_the_header_names_the_session_before_the_user_field(
    start_replica: StartReplica, start_router: StartRouter
) -> None:
    served = [(await start_replica(name))[1] for name in "ab"]
    url, _ = await start_router([s.url for s in served], strategy="prefix-hash", session_affinity=True)
    async with httpx.AsyncClient(base_url=url, timeout=WAIT) as client:
        users = [chat("same question", user=f"user {i}") for i in range(8)]
        by_user = await replicas_seen(client, users)
        seen = await replicas_seen(client, users, **{"X-Session-Id": "one session"})
    assert len(seen) == 1
    assert len(by_user) > 1, "the users alone spread: the header decided below"


async def test_without_affinity_the_session_names_are_ignored(
    start_replica: StartReplica, start_router: StartRouter
) -> None:
    served = [(await start_replica(name))[1] for name in "abc"]
    url, _ = await start_router([s.url for s in served], strategy="prefix-hash")
    async with httpx.AsyncClient(base_url=url, timeout=WAIT) as client:
        seen = await replicas_seen(
            client, [chat(f"question {i}", user="alice") for i in range(12)], **{"X-Session-Id": "s"}
        )
    assert len(seen) > 1
