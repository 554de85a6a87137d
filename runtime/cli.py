"""`vif-runtime`: `serve` a model (a directory or Hugging Face id, an entry of `model_config.json`, or the default
model), `fetch` a Hugging Face model into the cache (a pod's init container), or `prepare-model`."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vif.runtime.app.response_cache import CacheSettings
from vif.runtime.app.settings import ServerSettings

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from vif.runtime.app.lifecycle import Lifecycle
    from vif.runtime.config import ResolvedModel
    from vif.runtime.engine.types import EngineClient
    from vif.runtime.serving.base import BaseServingEngine
    from vif.runtime.serving.metrics import RuntimeMetrics

log = logging.getLogger("vif.runtime")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    top = argparse.ArgumentParser(prog="vif-runtime", description=__doc__)
    top.add_argument("command", choices=["serve", "fetch", "prepare-model"])
    ns, _ = top.parse_known_args(argv[:1] or ["--help"])
    if ns.command == "prepare-model":
        return prepare_model(argv[1:])
    if ns.command == "fetch":
        from vif.runtime.sources.cli import fetch

        return fetch(argv[1:])
    return serve(argv[1:])


def prepare_model(argv: list[str]) -> int:
    from vif.runtime.model_prep import ModelPrepError, default_model_path, prepare_default_model

    parser = argparse.ArgumentParser(prog="vif-runtime prepare-model", description="Fetch and convert SmolLM2.")
    parser.add_argument("--target", type=Path, default=None, help=f"default: {default_model_path()}")
    args = parser.parse_args(argv)
    try:
        prepared = prepare_default_model(args.target)
    except ModelPrepError as exc:
        print(f"vif-runtime prepare-model: {exc}", file=sys.stderr)
        return 1
    print(f"{'prepared' if prepared.built else 'already prepared'}: {prepared.path}")
    return 0


def own_parser() -> argparse.ArgumentParser:
    """vif's own flags. Parsed first; everything else goes to vLLM's engine-argument parser."""
    parser = argparse.ArgumentParser(
        prog="vif-runtime serve",
        usage="vif-runtime serve [MODEL] [options]",
        description="Serve one model over HTTP. MODEL: a model directory or a Hugging Face id (ORG/NAME), served"
        " under that name or --served-model-name; without it, --config's entry --model-name, else the default model.",
        add_help=False,
    )
    defaults = ServerSettings()
    parser.add_argument("-h", "--help", action="store_true")
    parser.add_argument("--model-name", default=os.environ.get("MODEL_NAME"), help="model to serve ($MODEL_NAME)")
    parser.add_argument("--config", type=Path, default=os.environ.get("VIF_CONFIG"), help="model_config.json")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("SERVICE_PORT", "8000")), help="$SERVICE_PORT")
    parser.add_argument("--api-key", action="append", default=[], help="an accepted key; repeat for several")
    parser.add_argument("--api-keys-file", type=Path, default=os.environ.get("VIF_API_KEYS_FILE"),
                        help="a key a line (or comma-separated), read again when it changes")  # fmt: skip
    parser.add_argument("--tenants-file", type=Path, default=os.environ.get("VIF_TENANTS_FILE"),
                        help="the router's tenants file: their keys are accepted too (docs/tenants.md)")  # fmt: skip
    parser.add_argument(
        "--limit-concurrency", type=int, default=None, help="sequences in flight (default: 2 x max_num_seqs)"
    )
    parser.add_argument(
        "--max-sequences-per-request",
        type=int,
        default=defaults.max_sequences_per_request,
        help="prompts x n of one request",
    )
    parser.add_argument("--max-body-bytes", type=int, default=defaults.max_body_bytes)
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=defaults.metrics_port,
        help="serve /metrics on this port alone, not on the API's (default: on the API's)",
    )
    parser.add_argument(
        "--body-timeout", type=float, default=defaults.body_timeout, help="seconds for a body to arrive (then 408)"
    )
    parser.add_argument(
        "--send-timeout",
        type=float,
        default=defaults.send_timeout,
        help="a stream nobody reads is aborted after; a whole answer nobody takes is dropped after",
    )
    parser.add_argument(
        "--max-unsent-bytes",
        type=int,
        default=defaults.max_unsent_bytes,
        help="bytes of answers read ahead of slow clients, all streams together",
    )
    parser.add_argument(
        "--drain-seconds", type=float, default=defaults.drain_seconds, help="after SIGTERM, /ready 503, still serving"
    )
    parser.add_argument("--shutdown-timeout", type=float, default=defaults.shutdown_timeout,
                        help="then in-flight requests get this long")  # fmt: skip
    cache = defaults.response_cache
    parser.add_argument("--response-cache-entries", type=int, default=cache.max_entries,
                        help="answers to deterministic requests kept for exact repeats (0: no cache)")  # fmt: skip
    parser.add_argument("--response-cache-bytes", type=int, default=cache.max_bytes, help="their bytes together")
    parser.add_argument("--response-cache-ttl", type=float, default=cache.ttl_seconds, help="seconds each is kept")
    parser.add_argument("--live-config", type=Path, default=os.environ.get("VIF_LIVE_CONFIG"),
                        help="JSON of settings read again when it changes: response_role, log_level, response_cache"
                        " (docs/live-config.md)")  # fmt: skip
    parser.add_argument("--reload-interval", type=float, default=defaults.reload_interval,
                        help="seconds between looks at the live configuration's files")  # fmt: skip
    parser.add_argument("--allowed-root", action="append", default=[], help="extra folder config paths may use")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    parser.add_argument("--log-format", choices=["text", "json"], default="text")
    parser.add_argument("--log-file", type=Path, default=None, help="rotating log file instead of the console")
    parser.add_argument("--otlp-logs-endpoint", default=None,
                        help="logs to an OTLP collector too ($OTEL_EXPORTER_OTLP_LOGS_ENDPOINT)")  # fmt: skip
    return parser


def engine_parser() -> argparse.ArgumentParser:
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    from vif.runtime.engine.args import add_engine_args

    parser = FlexibleArgumentParser(prog="vif-runtime serve", usage="vLLM engine arguments", add_help=False)
    add_engine_args(parser)
    return parser


def serve(argv: list[str]) -> int:
    import uvicorn

    from vif.runtime.app.lifecycle import Lifecycle
    from vif.runtime.app.logs import RequestIdFilter, configure_logging
    from vif.runtime.app.server import GracefulServer
    from vif.runtime.config import ConfigError
    from vif.runtime.shared.metrics_listener import metrics_port
    from vif.runtime.shared.otlp import export_logs

    ours = own_parser()
    # `vllm serve`'s order: the model first. Not an argparse positional: with unknown (engine) flags beside it,
    # argparse would take the value of `--dtype float32` for the model.
    model = argv[0] if argv and not argv[0].startswith("-") else None
    args, rest = ours.parse_known_args(argv[1:] if model else argv)
    try:
        _refuse_early(args, model)
    except (ConfigError, LookupError) as exc:
        print(f"vif-runtime serve: {exc}", file=sys.stderr)
        return 2
    from vif.runtime.engine.args import NoDevice, explicit_flags  # vLLM's own import, the slow one

    try:
        engine = engine_parser()
    except NoDevice as exc:
        print(f"vif-runtime serve: {exc}", file=sys.stderr)
        return 1
    if args.help:
        print(ours.format_help() + "\n" + engine.format_help())
        return 0
    flags = explicit_flags(engine, rest)  # also refuses unknown or malformed flags
    configure_logging(args.log_level, args.log_format, args.log_file)
    exported = export_logs("vif-runtime", args.otlp_logs_endpoint, logging.getLogger("vif"), RequestIdFilter())
    servers: list[GracefulServer] = []
    lifecycle = Lifecycle(on_fatal=lambda: servers[0].fail())  # the engine failed: exit non-zero, not linger
    try:
        app, settings, metrics = _build(args, model, flags, lifecycle)
    except (ConfigError, LookupError, OSError) as exc:
        print(f"vif-runtime serve: {exc}", file=sys.stderr)
        return 2
    config = uvicorn.Config(app, host=args.host, port=args.port, log_config=None, access_log=False)
    servers.append(GracefulServer(config, lifecycle, settings.drain_seconds, settings.shutdown_timeout))
    with metrics_port(args.host, settings.metrics_port, metrics.render):
        served = servers[0].serve_until_stopped()
    if exported is not None:
        exported.shutdown()  # what is left goes out before the process ends
    return 0 if served else 1


def _build(
    args: argparse.Namespace, named: str | None, flags: dict[str, Any], lifecycle: Lifecycle
) -> tuple[Starlette, ServerSettings, RuntimeMetrics]:
    from vif.runtime.app.factory import create_app
    from vif.runtime.app.live import LiveSources
    from vif.runtime.engine.args import build_engine_args
    from vif.runtime.serving.context import ServedModel
    from vif.runtime.serving.metrics import RuntimeMetrics
    from vif.runtime.shared.tracing import Tracing, traces_endpoint

    model = _chosen_model(args, named, flags)
    endpoint = traces_endpoint(flags.get("otlp_traces_endpoint"))
    if endpoint is not None:  # vLLM's engine spans join the runtime's only if its own tracing is on too
        flags["otlp_traces_endpoint"] = endpoint
    engine_args = build_engine_args(model, flags)
    classes = _serving_classes(model)
    live = LiveSources(
        api_keys=tuple(args.api_key), keys_file=args.api_keys_file, tenants_file=args.tenants_file,
        template_file=model.chat_template_file,
        live_file=args.live_config, response_role=model.entry.response_role, log_level=args.log_level,
        response_cache=_cache_settings(args),
    )  # fmt: skip
    served = ServedModel(model.name, model.chat_template, model.entry.response_role, tuple(model.adapters))
    settings = ServerSettings(
        limit_concurrency=args.limit_concurrency,
        max_sequences_per_request=args.max_sequences_per_request,
        max_body_bytes=args.max_body_bytes,
        body_timeout=args.body_timeout,
        send_timeout=args.send_timeout,
        max_unsent_bytes=args.max_unsent_bytes,
        drain_seconds=args.drain_seconds,
        shutdown_timeout=args.shutdown_timeout,
        reload_interval=args.reload_interval,
        metrics_port=args.metrics_port,
    )  # the keys and the response cache: `live`

    def load_engine() -> EngineClient:
        from vif.runtime.engine.vllm_client import VLLMEngineClient

        return VLLMEngineClient.from_engine_args(engine_args, model.adapters, model.entry.tool_call_parser)

    log.info("serving %s from %s (%s)", model.name, model.model, model.source)
    tracing = Tracing.start("vif-runtime", endpoint)
    metrics = RuntimeMetrics(model.name)
    app = create_app(served, load_engine, classes, metrics, settings, lifecycle, live, tracing)
    return app, settings, metrics


def _refuse_early(args: argparse.Namespace, named: str | None) -> None:
    """What can be refused before vLLM is imported (about 10 s): a MODEL that names no folder, id or S3 prefix, and a
    --config entry that does not hold. `_build` checks them again, with the engine's flags, on the way to serving."""
    from vif.runtime.config import is_hub_id, load_model, named_model

    if args.help:
        return
    if named is not None and not (is_hub_id(named) or named.startswith("s3://")):
        named_model(named, named)
    if named is None and args.config is not None:
        _serving_classes(load_model(args.config, args.model_name or "", args.allowed_root))


def _serving_classes(model: ResolvedModel) -> dict[str, type[BaseServingEngine]]:
    """The model's serving classes by protocol, from its `class_name` and the allow-list."""
    from vif.runtime.serving.registry import UnknownServingClass, serving_classes

    try:
        return serving_classes(model.entry.class_name, model.entry.allowed_classes)
    except UnknownServingClass as exc:
        raise LookupError(f"{model.source}: {model.name}.class_name: {exc}") from None


def _chosen_model(args: argparse.Namespace, named: str | None, flags: dict[str, Any]) -> ResolvedModel:
    """MODEL or vLLM's `--model` (served as --served-model-name, --model-name or itself), else --config's entry,
    else the default; both flags are taken out of the engine's `flags`, which may not redirect the model."""
    from vif.runtime.config import default_model, is_hub_id, load_model, named_model

    if named is not None and "model" in flags:
        raise LookupError(f"{named}: give the model once, as MODEL or --model")
    named = named or flags.pop("model", None)
    served_names = flags.pop("served_model_name", None)
    if served_names is not None and len(served_names) != 1:
        raise LookupError("--served-model-name: vif serves a model under one name")
    served = served_names[0] if served_names else None
    if named is not None:
        if args.config is not None:
            raise LookupError(f"{named}: give MODEL or --config, not both")
        folder = _fetched(named, flags) if is_hub_id(named) or named.startswith("s3://") else named
        return named_model(folder, served or args.model_name or named)
    if served is not None:
        raise LookupError("--served-model-name names MODEL; an entry of --config is served under its own name")
    if args.config is not None:
        return load_model(args.config, args.model_name or "", args.allowed_root)
    model = default_model()
    if args.model_name and args.model_name != model.name:
        raise LookupError(f"no --config given, and '{args.model_name}' is not the default model '{model.name}'")
    return model


def _fetched(repo: str, flags: dict[str, Any]) -> str:
    """A Hugging Face model (at vLLM's `--revision`) or an S3 prefix in the local cache (`--download-dir`, else
    `$VIF_MODEL_CACHE`, else ~/.cache/vif/models), downloaded with a progress bar if it is not there yet."""
    from tqdm import tqdm

    from vif.runtime.sources.cache import ensure_model, remote_source
    from vif.runtime.sources.fetch import DownloadError

    def bar(what: str, total: int) -> Callable[[int], object]:
        return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=f"download {what}").update

    root = flags.pop("download_dir", None)
    try:
        folder = ensure_model(remote_source(repo, flags.pop("revision", None)), Path(root) if root else None, bar)
    except DownloadError as exc:
        raise LookupError(str(exc)) from None
    return str(folder)


def _cache_settings(args: argparse.Namespace) -> CacheSettings:
    from vif.runtime.config import ConfigError

    try:
        return CacheSettings(args.response_cache_entries, args.response_cache_bytes, args.response_cache_ttl)
    except ValueError as exc:
        raise ConfigError(f"--response-cache-*: {exc}") from None
