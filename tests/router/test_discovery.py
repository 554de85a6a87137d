"""Which addresses of a Service's EndpointSlices the router routes to (pure)."""

from __future__ import annotations

from vif.runtime.router.discovery import endpoint_urls


def endpoint(*addresses: str, ready: bool | None = True, terminating: bool | None = None) -> dict:
    conditions = {k: v for k, v in (("ready", ready), ("terminating", terminating)) if v is not None}
    return {"addresses": list(addresses), "conditions": conditions}


def slice_(endpoints: list[dict], ports: list[dict] | None = None, family: str = "IPv4") -> dict:
    return {"addressType": family, "ports": ports or [{"name": "http", "port": 8000}], "endpoints": endpoints}


def test_ready_non_terminating_endpoints_of_every_slice() -> None:
    slices = [
        slice_([endpoint("10.0.0.1"), endpoint("10.0.0.2", ready=False), endpoint("10.0.0.3", ready=None)]),
        slice_([endpoint("10.0.0.4", terminating=True), endpoint("10.0.0.1")]),
    ]
    assert endpoint_urls(slices, "http") == ["http://10.0.0.1:8000", "http://10.0.0.3:8000"]


def test_the_named_port_or_the_only_one() -> None:
    two_ports = [{"name": "http", "port": 8000}, {"name": "metrics", "port": 9090}]
    assert endpoint_urls([slice_([endpoint("10.0.0.1")], two_ports)], "http") == ["http://10.0.0.1:8000"]
    assert endpoint_urls([slice_([endpoint("10.0.0.1")], two_ports)], None) == []  # ambiguous: not guessed
    assert endpoint_urls([slice_([endpoint("10.0.0.1")])], None) == ["http://10.0.0.1:8000"]
    assert endpoint_urls([slice_([endpoint("10.0.0.1")])], "grpc") == []


def test_ipv6_in_brackets_and_fqdn_slices_skipped() -> None:
    slices = [slice_([endpoint("fd00::1")], family="IPv6"), slice_([endpoint("pod.example")], family="FQDN")]
    assert endpoint_urls(slices, "http") == ["http://[fd00::1]:8000"]


def test_no_slices_no_endpoints() -> None:
    assert endpoint_urls([], "http") == []
    assert endpoint_urls([slice_([])], "http") == []
