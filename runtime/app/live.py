"""The runtime's live configuration: the settings it takes without a restart (docs/live-config.md).

API keys (`--api-keys-file`), the chat template (the config entry's `chat_template` file) and `--live-config`'s JSON
(the response role, the log level, the response cache's bounds) are read at start-up and again whenever their files
change (`vif.runtime.shared.live_files`). Everything else (the model, the engine's arguments, adapters, the ports)
needs a new engine, and so a new pod.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import jinja2
import jinja2.sandbox
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from vif.runtime.app.response_cache import CacheSettings
from vif.runtime.config import ConfigError
from vif.runtime.serving.context import ServedModel
from vif.runtime.shared.api_keys import KeyCheck, load_api_keys
from vif.runtime.shared.tenants import read_tenants, watched_files

LogLevel = Literal["debug", "info", "warning", "error"]


class CacheBounds(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_entries: int = Field(ge=0, description="0: no cache")
    max_bytes: int = Field(ge=1)
    ttl_seconds: float = Field(gt=0)


class LiveFile(BaseModel):
    """`--live-config`'s JSON. A field that is present takes the place of its flag's (or the config entry's) value."""

    model_config = ConfigDict(extra="forbid")

    response_role: str | None = Field(None, min_length=1)
    log_level: LogLevel | None = None
    response_cache: CacheBounds | None = None


@dataclass(frozen=True)
class LiveSettings:
    """The live settings in force, replaced whole when their files change."""

    keys: KeyCheck
    chat_template: str | None
    response_role: str
    log_level: LogLevel
    response_cache: CacheSettings


@dataclass
class InForce:
    """What requests are served with now: each field is replaced whole when a new version applies."""

    keys: KeyCheck
    model: ServedModel


@dataclass(frozen=True)
class LiveSources:
    """Where the live settings come from: values fixed for the process (flags, the config entry, `$VIF_API_KEYS`)
    and the files read again when they change."""

    api_keys: tuple[str, ...] = ()  # --api-key values
    keys_file: Path | None = None
    tenants_file: Path | None = None  # the router's tenants (shared/tenants.py): their keys are accepted here too
    template_file: Path | None = None
    live_file: Path | None = None
    response_role: str = "assistant"
    log_level: LogLevel = "info"
    response_cache: CacheSettings = field(default_factory=CacheSettings)

    @property
    def paths(self) -> list[Path]:
        tenants = watched_files(self.tenants_file) if self.tenants_file is not None else []
        return [p for p in (self.keys_file, self.template_file, self.live_file) if p is not None] + tenants

    def read(self, check_template: Callable[[str], None] | None = None) -> LiveSettings:
        """The settings the files hold now; a `ConfigError` (one line naming the file) for any that is wrong, or a
        template that does not compile (or that `check_template`, the engine's own rendering, refuses)."""
        try:
            keys = load_api_keys(self.api_keys, self.keys_file)
            tenants = read_tenants(self.tenants_file).owners if self.tenants_file is not None else {}
        except UnicodeDecodeError:  # its message would quote the file's bytes
            raise ConfigError(f"API keys: {self.keys_file} is not UTF-8 text") from None
        except (LookupError, OSError, ValueError) as exc:
            raise ConfigError(f"API keys: {exc}") from None
        template = None
        if self.template_file is not None:
            template = _read_template(self.template_file, check_template)
        chosen = self._live_file()
        cache = self.response_cache
        if chosen.response_cache is not None:
            cache = CacheSettings(**chosen.response_cache.model_dump())
        return LiveSettings(
            keys=KeyCheck(keys, tenants),
            chat_template=template,
            response_role=chosen.response_role or self.response_role,
            log_level=chosen.log_level or self.log_level,
            response_cache=cache,
        )

    def _live_file(self) -> LiveFile:
        if self.live_file is None:
            return LiveFile()
        where = str(self.live_file)
        try:
            return LiveFile.model_validate(json.loads(self.live_file.read_text()))
        except OSError as exc:
            raise ConfigError(f"{where}: {exc.strerror or exc}") from None
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{where}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            raise ConfigError(f"{where}: {'.'.join(map(str, first['loc']))}: {first['msg']}") from None


_TEMPLATES = jinja2.sandbox.ImmutableSandboxedEnvironment(extensions=["jinja2.ext.loopcontrols"])
SAMPLE_CHAT = [{"role": "user", "content": "Hello"}]  # what every chat template must render


def _read_template(path: Path, check: Callable[[str], None] | None) -> str:
    try:
        text = path.read_text()
        _TEMPLATES.from_string(text)  # compiled: an unknown filter or test fails here, not on the first request
        if check is not None:
            check(text)
    except OSError as exc:
        raise ConfigError(f"chat template {path}: {exc.strerror or exc}") from None
    except jinja2.TemplateSyntaxError as exc:
        raise ConfigError(f"chat template {path}: line {exc.lineno}: {exc.message}") from None
    except jinja2.TemplateError as exc:
        raise ConfigError(f"chat template {path}: {exc.message}") from None
    except ValueError as exc:  # the engine's rendering refused the sample conversation
        raise ConfigError(f"chat template {path}: {exc}") from None
    return text
