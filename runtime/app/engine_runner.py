"""The engine, loaded after the server listens and watched while it serves.

The engine loads in a thread after the server starts listening, so `/health` answers (and a liveness probe passes)
while the model loads; `/ready` and the inference routes answer 503 until it is up. While serving, the engine's
health is checked every `health_interval`; when it dies the lifecycle fails (and calls its `on_fatal`).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
from collections.abc import Callable

from vif.runtime.app.lifecycle import Lifecycle
from vif.runtime.engine.types import EngineClient

log = logging.getLogger(__name__)


async def load_in_background(load_engine: Callable[[], EngineClient]) -> EngineClient:
    """Run the blocking engine start in a daemon thread. If the server stops first (this coroutine is cancelled),
    shutdown does not wait for the model to load, and the engine is shut down as soon as it exists."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[EngineClient] = loop.create_future()

    def work() -> None:
        engine: EngineClient | None = None
        error: BaseException | None = None
        try:
            engine = load_engine()
        except Exception as exc:
            error = exc

        def deliver() -> None:
            if done.cancelled():
                if engine is not None:
                    engine.shutdown()
            elif engine is not None:
                done.set_result(engine)
            else:
                done.set_exception(error or RuntimeError("the engine did not start"))

        try:
            loop.call_soon_threadsafe(deliver)
        except RuntimeError:  # the event loop is closed: the server is gone
            if engine is not None:
                engine.shutdown()

    threading.Thread(target=work, name="engine-loader", daemon=True).start()
    return await done


async def start_engine(load_engine: Callable[[], EngineClient]) -> EngineClient:
    """The engine loaded and its LoRA adapters with it; shut down again if an adapter fails."""
    engine = await load_in_background(load_engine)
    try:
        await engine.load_adapters()
    except BaseException:
        engine.shutdown()
        raise
    return engine


async def run_engine(
    load_engine: Callable[[], EngineClient],
    lifecycle: Lifecycle,
    serve: Callable[[EngineClient], None],
    health_interval: float,
) -> None:
    """Start the engine, hand it to `serve` (which puts it to work), then check its health every `health_interval`
    for as long as the lifecycle is alive. A start that fails fails the lifecycle."""
    try:
        engine = await start_engine(load_engine)
    except Exception as exc:
        log.exception("the engine failed to start")
        lifecycle.failed(f"the engine failed to start: {type(exc).__name__}: {exc}")
        return
    serve(engine)
    # The engine's millions of long-lived objects (torch, the tokenizer) out of the collector's sight: a full
    # collection, which a burst of request allocations triggers, would otherwise walk them all while holding
    # the GIL (~200 ms of stalled event loop under 16 bodies of 40,000 messages).
    gc.collect()
    gc.freeze()
    while lifecycle.alive:
        await asyncio.sleep(health_interval)
        try:
            await engine.check_health()
        except Exception as exc:
            lifecycle.failed(str(exc) or type(exc).__name__)
