"""The operator's client for the Kubernetes API: REST calls on a fixed table of kinds, safe to share between threads.

kopf runs sync handlers in a thread pool. The Python client's dynamic client keeps a discovery cache that
those threads corrupted under load (`KeyError: 'resources'` with 200 models applied at once). The operator
manages a fixed set of kinds whose URL paths are known (`vif.operator.kinds`), so it needs no discovery at all:
it sends requests to those paths through one urllib3 pool (thread-safe), authenticated by the
client library's configuration (kubeconfig or in-cluster token, refreshed by the library's hook).
"""

from __future__ import annotations

import json
import random
from typing import Any
from urllib.parse import urlencode

from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.rest import RESTClientObject

from vif.operator.kinds import KINDS
from vif.operator.metrics import API_REQUESTS
from vif.operator.names import FIELD_MANAGER

TIMEOUT_SECONDS = 30


class APIError(Exception):
    """A refused or failed request: the HTTP status, the server's message, and Retry-After if it sent one."""

    def __init__(self, status: int, message: str, retry_after: float | None = None) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message
        self.retry_after = retry_after

    @property
    def transient(self) -> bool:
        """Worth retrying: throttled, a conflict, a timeout, the server's own failure, or no answer at all."""
        return self.status in (0, 409, 429) or self.status >= 500


def load_kube_config() -> None:
    try:
        k8s_config.load_incluster_config()
    except k8s_config.ConfigException:
        k8s_config.load_kube_config()


class KubeAPI:
    """Typed calls for the kinds in `KINDS`; every call is counted in `vif_operator_api_requests_total`."""

    def __init__(self, configuration: k8s.Configuration | None = None, pool_size: int = 16) -> None:
        self.configuration = configuration or k8s.Configuration.get_default_copy()
        self.configuration.connection_pool_maxsize = pool_size
        self.rest = RESTClientObject(self.configuration)

    def request(
        self,
        method: str,
        path: str,
        *,
        kind: str,
        query: dict[str, str] | None = None,
        body: dict[str, Any] | None = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        url = self.configuration.host + path + (f"?{urlencode(query)}" if query else "")
        headers = {"Accept": "application/json", "Content-Type": content_type}
        for auth in self.configuration.auth_settings().values():  # the bearer token, refreshed by the library
            if auth["value"]:
                headers[auth["key"]] = auth["value"]
        try:
            response = self.rest.request(method, url, headers=headers, body=body, _request_timeout=TIMEOUT_SECONDS)
        except k8s.ApiException as exc:  # TLS failures and client-side retries give up with status 0
            API_REQUESTS.labels(method, kind, str(exc.status or 0)).inc()
            raise APIError(exc.status or 0, str(exc.reason)) from None
        except OSError as exc:  # connection refused or reset: urllib3 gave up
            API_REQUESTS.labels(method, kind, "0").inc()
            raise APIError(0, str(exc)) from None
        data = response.read()
        API_REQUESTS.labels(method, kind, str(response.status)).inc()
        if response.status >= 400:
            raise _error(response.status, data, response.headers.get("Retry-After"))
        return json.loads(data) if data else {}

    def get(self, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        try:
            return self.request("GET", KINDS[kind].path(namespace, name), kind=kind)
        except APIError as exc:
            if exc.status == 404:
                return None
            raise

    def list(self, kind: str, namespace: str | None, label_selector: str) -> list[dict[str, Any]]:
        query = {"labelSelector": label_selector}
        return self.request("GET", KINDS[kind].path(namespace), kind=kind, query=query).get("items", [])

    def apply(self, obj: dict[str, Any], *, force: bool, manager: str = FIELD_MANAGER) -> dict[str, Any]:
        """Server-side apply. `force` takes fields back from other managers (reverting hand edits); without it a
        field someone else set to another value is a 409 conflict."""
        meta = obj["metadata"]
        query = {"fieldManager": manager, "force": "true" if force else "false"}
        path = KINDS[obj["kind"]].path(meta.get("namespace"), meta["name"])
        return self.request(
            "PATCH", path, kind=obj["kind"], query=query, body=obj, content_type="application/apply-patch+yaml"
        )

    def delete(self, kind: str, namespace: str, name: str, uid: str) -> None:
        """Delete exactly that object: the uid precondition keeps a newer object of the same name safe."""
        body = {"kind": "DeleteOptions", "apiVersion": "v1", "preconditions": {"uid": uid}}
        try:
            self.request("DELETE", KINDS[kind].path(namespace, name), kind=kind, body=body)
        except APIError as exc:
            if exc.status not in (404, 409):  # already gone, or replaced by another object
                raise

    def patch_status(self, kind: str, namespace: str, name: str, status: dict[str, Any]) -> dict[str, Any]:
        path = KINDS[kind].path(namespace, name) + "/status"
        patch = {"status": status}
        return self.request("PATCH", path, kind=kind, body=patch, content_type="application/merge-patch+json")


def _error(status: int, data: bytes, retry_after: str | None) -> APIError:
    try:
        message = str(json.loads(data)["message"])
    except (ValueError, KeyError, TypeError):
        message = data.decode(errors="replace")[:200] or "no message"
    try:
        wait = float(retry_after) if retry_after else None
    except ValueError:
        wait = None
    return APIError(status, message, wait)


def retry_delay(exc: APIError, attempt: int, cap: float = 60.0) -> float:
    """How long to wait before retrying: the server's Retry-After when it sent one, else exponential backoff with
    jitter (1 s, 2 s, 4 s, ... up to `cap`), so a throttled API server is not hammered by every model at once."""
    if exc.retry_after is not None:
        return min(max(exc.retry_after, 0.1), cap)
    base = min(cap, 2.0 ** min(attempt, 16))
    return base / 2 + random.uniform(0, base / 2)
