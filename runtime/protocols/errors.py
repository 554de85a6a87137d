"""OpenAI's error shape, `{"error": {"message", "type", "param", "code"}}`, as an exception any layer can raise."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError


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
    """The first pydantic error, as a 400 naming the offending parameter (`messages[0].content`)."""
    first = exc.errors(include_url=False, include_context=False)[0]
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


def _param_path(loc: tuple[Any, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif "[" in str(part) or part in (
            "str",
            "list[str]",
            "list[int]",
            "list[list[int]]",
            "function-after",
        ):
            continue  # union branch names pydantic puts in the location, not request fields
        else:
            path += f".{part}" if path else str(part)
    return path
