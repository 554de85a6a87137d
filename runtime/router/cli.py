"""`vif-router`: an HTTP front for a model's replicas, e.g.
`vif-router --port 8080 --strategy prefix-hash --endpoint http://10.0.0.1:8000 --endpoint http://10.0.0.2:8000`.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from vif.runtime.router.app import RouterSettings, read_access
from vif.runtime.router.endpoints import normalize_url
from vif.runtime.router.strategies import STRATEGIES
from vif.runtime.shared.api_keys import load_api_keys
from vif.runtime.shared.otlp import export_logs

log = logging.getLogger("vif.router")


def parser() -> argparse.ArgumentParser:
    defaults = RouterSettings()
    p = argparse.ArgumentParser(prog="vif-router", description="Route OpenAI and /generate requests across replicas.")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=int(os.environ.get("SERVICE_PORT", "8080")), help="$SERVICE_PORT")
    p.add_argument("--strategy", choices=list(STRATEGIES), default=defaults.strategy)
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--endpoint", action="append", type=_url, help="a replica's base URL; repeat for each")
    where.add_argument("--service", metavar="NS/NAME", help="the ready endpoints of a Service's EndpointSlices")
    p.add_argument("--service-port", metavar="NAME", help="with --service: the port's name (default: its only port)")
    p.add_argument("--kubeconfig", help="with --service outside a pod (default: $KUBECONFIG, ~/.kube/config)")
    p.add_argument("--model-name", default=os.environ.get("MODEL_NAME", defaults.model_name), help="metrics label")
    p.add_argument("--load-factor", type=float, default=defaults.load_factor,
                   help="prefix-hash: a replica takes at most ceil(factor x average in flight) (>= 1)")  # fmt: skip
    p.add_argument("--prefix-chars", type=int, default=defaults.prefix_chars, help="characters of prompt to hash")
    p.add_argument(
        "--session-affinity",
        action="store_true",
        help="with prefix-hash: a request's X-Session-Id header, else its `user` field, picks its replica",
    )
    p.add_argument(
        "--max-keys",
        type=int,
        default=defaults.max_keys,
        help="routing keys remembered (prompt starts, sessions); the least recently used leave first",
    )
    events = p.add_mutually_exclusive_group()
    events.add_argument("--kv-events-port", type=int, default=defaults.kv_events_port,
                        help="kv-aware: each replica's KV cache events port (vLLM's --kv-events-config)")  # fmt: skip
    events.add_argument("--kv-events-port-offset", type=int, default=defaults.kv_events_port_offset,
                        help="kv-aware: instead, a replica's HTTP port plus this (replicas on one host)")  # fmt: skip
    p.add_argument("--max-cached-blocks", type=int, default=defaults.max_cached_blocks,
                   help="kv-aware: cached blocks remembered per replica; the first learned leave first")  # fmt: skip
    p.add_argument(
        "--retries",
        type=int,
        default=defaults.retries,
        help="other replicas to try when one fails before answering: no connection, no status line, a 503",
    )
    p.add_argument("--cooldown", type=float, default=defaults.cooldown, help="seconds a failed replica stays out")
    p.add_argument("--first-byte-timeout", type=float, default=defaults.first_byte_timeout,
                   help="seconds for a replica's status line, then another replica is tried")  # fmt: skip
    p.add_argument("--idle-timeout", type=float, default=defaults.idle_timeout,
                   help="seconds a started response may go silent, then it ends with an error")  # fmt: skip
    p.add_argument("--probe-interval", type=float, default=defaults.probe_interval, help="seconds between probes")
    p.add_argument("--max-pending", type=int, default=defaults.max_pending, help="requests held while none is ready")
    p.add_argument("--max-wait", type=float, default=defaults.max_wait, help="seconds a held request waits, then 503")
    p.add_argument("--max-in-flight-per-replica", type=int, default=defaults.max_in_flight_per_replica,
                   help="past it, requests wait, leaving fairly across tenants (max_num_seqs); 0: off")  # fmt: skip
    p.add_argument("--max-body-bytes", type=int, default=defaults.max_body_bytes)
    p.add_argument(
        "--metrics-port",
        type=int,
        default=defaults.metrics_port,
        help="serve /metrics on this port alone, not on the API's (default: on the API's)",
    )
    p.add_argument("--api-key", action="append", default=[], help="an accepted key; repeat for several")
    p.add_argument("--api-keys-file", type=Path, default=os.environ.get("VIF_API_KEYS_FILE"),
                   help="a key a line (or comma-separated), read again when it changes")  # fmt: skip
    p.add_argument("--tenants-file", type=Path, default=os.environ.get("VIF_TENANTS_FILE"),
                   help="named keys and their limits, JSON, read again when it changes (docs/tenants.md)")  # fmt: skip
    p.add_argument("--redis-url", default=os.environ.get("VIF_REDIS_URL"),
                   help="the limits' state, shared by every router of the model ($VIF_REDIS_URL)")  # fmt: skip
    p.add_argument("--quota-scope", default=defaults.quota_scope,
                   help="the model's buckets in Redis, one per model (default: --model-name)")  # fmt: skip
    p.add_argument("--redis-down", choices=["open", "closed"], default=defaults.redis_down,
                   help="while Redis is away: open, each router enforces its share; closed, 503")  # fmt: skip
    p.add_argument("--router-replicas", type=int, default=defaults.router_replicas,
                   help="without Redis, each router enforces 1/N of every limit")  # fmt: skip
    p.add_argument("--reload-interval", type=float, default=defaults.reload_interval,
                   help="seconds between looks at --api-keys-file and --tenants-file")  # fmt: skip
    p.add_argument("--otlp-traces-endpoint", default=None,
                   help="spans over OTLP (default: $OTEL_EXPORTER_OTLP_TRACES_ENDPOINT; docs/tracing.md)")  # fmt: skip
    p.add_argument("--otlp-logs-endpoint", default=None,
                   help="logs to an OTLP collector too ($OTEL_EXPORTER_OTLP_LOGS_ENDPOINT)")  # fmt: skip
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    return p


def _url(value: str) -> str:
    try:
        return normalize_url(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def settings_from(args: argparse.Namespace) -> RouterSettings:
    """The settings the flags describe; the keys also from $VIF_API_KEYS, as the runtime reads them."""
    return RouterSettings(
        model_name=args.model_name, strategy=args.strategy, load_factor=args.load_factor,
        prefix_chars=args.prefix_chars, session_affinity=args.session_affinity, max_keys=args.max_keys,
        kv_events_port=args.kv_events_port, kv_events_port_offset=args.kv_events_port_offset,
        max_cached_blocks=args.max_cached_blocks,
        retries=args.retries, cooldown=args.cooldown,
        first_byte_timeout=args.first_byte_timeout, idle_timeout=args.idle_timeout,
        probe_interval=args.probe_interval, max_pending=args.max_pending, max_wait=args.max_wait,
        max_in_flight_per_replica=args.max_in_flight_per_replica,
        max_body_bytes=args.max_body_bytes, api_keys=load_api_keys(args.api_key, None),
        api_keys_file=args.api_keys_file, tenants_file=args.tenants_file, redis_url=args.redis_url,
        quota_scope=args.quota_scope,
        redis_down=args.redis_down, router_replicas=args.router_replicas, reload_interval=args.reload_interval,
        metrics_port=args.metrics_port,
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        settings = settings_from(args)
        read_access(settings)  # a keys file that holds no key stops the start (later, a version is refused)
    except (LookupError, OSError, ValueError) as exc:
        p.error(str(exc))
    if args.service is not None and args.service.count("/") != 1:
        p.error("--service is NAMESPACE/NAME")
    if args.load_factor < 1:
        p.error("--load-factor must be at least 1")
    if args.retries < 0 or args.max_pending < 0 or args.max_wait < 0 or args.prefix_chars < 1:
        p.error("--retries, --max-pending and --max-wait cannot be negative; --prefix-chars is at least 1")
    if args.session_affinity and args.strategy != "prefix-hash":
        p.error("--session-affinity needs --strategy prefix-hash: the other strategies route by load alone")
    if args.max_in_flight_per_replica < 0:
        p.error("--max-in-flight-per-replica cannot be negative (0: off)")
    if args.router_replicas < 1:
        p.error("--router-replicas must be at least 1")
    if args.max_keys < 1 or args.max_cached_blocks < 1:
        p.error("--max-keys and --max-cached-blocks must be at least 1")
    if not 0 < args.kv_events_port < 65536:
        p.error("--kv-events-port is a TCP port (1-65535)")
    if args.first_byte_timeout <= 0 or args.idle_timeout <= 0:
        p.error("--first-byte-timeout and --idle-timeout must be positive")
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    exported = export_logs("vif-router", args.otlp_logs_endpoint, logging.getLogger("vif"))
    if args.log_level != "debug":  # httpx logs every proxied request at INFO: noise, and work on the hot path
        logging.getLogger("httpx").setLevel(logging.WARNING)

    import uvicorn

    from vif.runtime.router.app import create_app
    from vif.runtime.router.endpoints import EndpointSet
    from vif.runtime.shared.metrics_listener import metrics_port
    from vif.runtime.shared.tracing import Tracing

    endpoints = EndpointSet(args.endpoint or ())
    discovery = None
    if args.service is not None:
        from vif.runtime.router.discovery import EndpointSliceWatch, api_access

        namespace, service = args.service.split("/")
        discovery = EndpointSliceWatch(
            api_access(args.kubeconfig), namespace, service, args.service_port, endpoints
        ).run
    app = create_app(endpoints, settings, discovery, Tracing.start("vif-router", args.otlp_traces_endpoint))
    log.info("routing to %s with %s", args.service or ", ".join(args.endpoint), args.strategy)
    with metrics_port(args.host, settings.metrics_port, app.state.router.metrics.exposition):
        # Replicas' Server and Date headers pass through; uvicorn would add its own beside them.
        uvicorn.run(
            app, host=args.host, port=args.port, log_level=args.log_level, access_log=False, server_header=False,
            date_header=False, lifespan="on",
        )  # fmt: skip
    if exported is not None:
        exported.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
