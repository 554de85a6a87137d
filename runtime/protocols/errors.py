"""OpenAI's error shape, `{"error": {"message", "type", "param", "code"}}`, as an exception any layer can raise."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from vif.runtime.protocols.common import ListTooLong


class APIError(Exception):
    """An error a client should see. Its message must never carry a stack trace or a file path."""

    def __init__(
        self,
        message: str,
        *,
        status: int = 400,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def model_not_found(name: str) -> APIError:
    return APIError(f"The model `{name}` does not exist.", status=404, param="model", code="model_not_found")


def from_validation_error(exc: ValidationError) -> APIError:
    """The most telling pydantic error, as a 400 naming the offending parameter (`messages[0].content`).

    For a union field pydantic reports every branch; a branch whose type did not even match says less than
    one that matched and failed a constraint (`stop: ["", "."]` is a list with an empty string, not "not a
    string"), so the first error that is not a type mismatch wins.
    """
    errors = exc.errors(include_url=False)
    first = next((e for e in errors if not e["type"].endswith("_type")), errors[0])
    cause = first.get("ctx", {}).get("error")
    if isinstance(cause, ListTooLong):  # found before item validation, so pydantic has no location for it
        return APIError(f"Invalid value for '{cause.field}': {cause}.", param=cause.field, code="too_long")
    param = _param_path(first["loc"])
    if first["type"] == "extra_forbidden":
        message = f"Unrecognized request argument supplied: {param}"
    elif first["type"] == "missing":
        message = f"Missing required parameter: '{param}'."
    elif param:
        message = f"Invalid value for '{param}': {first['msg']}."
    else:
        message = str(first["msg"])
    return APIError(message, param=param or None, code=first["type"])


_TYPE_NAMES = frozenset({"str", "int", "float", "bool", "list", "dict"})


def _param_path(loc: tuple[Any, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif "[" in str(part) or "-" in str(part) or part in _TYPE_NAMES:
            continue  # union branch names pydantic puts in the location, not request fields
        else:
            path += f".{part}" if path else str(part)
    return path
