"""`vif-operator`'s flags: each of OperatorSettings' strings has one, defaulted from the env var the chart sets."""

from __future__ import annotations

import pytest

from vif.operator.cli import SETTINGS_FLAGS, build_parser, setting_of, settings_from
from vif.operator.settings import OperatorSettings


def test_every_setting_comes_from_its_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    for _, env, _ in SETTINGS_FLAGS:
        monkeypatch.delenv(env, raising=False)
    given = [arg for flag, _, _ in SETTINGS_FLAGS for arg in (flag, f"value of {flag}")]
    settings = settings_from(
        build_parser().parse_args([*given, "--network-policy", "--allowed-s3-endpoint", "http://s3"])
    )
    for flag, _, _ in SETTINGS_FLAGS:
        assert getattr(settings, setting_of(flag)) == f"value of {flag}"
    assert settings.network_policy is True
    assert settings.policy.allowed_s3_endpoints == ("http://s3",)


def test_the_env_sets_the_defaults_and_unset_means_the_settings_own(monkeypatch: pytest.MonkeyPatch) -> None:
    for _, env, _ in SETTINGS_FLAGS:
        monkeypatch.delenv(env, raising=False)
    monkeypatch.setenv("VIF_HUB_ENDPOINT", "http://mirror")
    monkeypatch.setenv("VIF_NETWORK_POLICY", "true")
    settings = settings_from(build_parser().parse_args([]))
    assert settings.hub_endpoint == "http://mirror" and settings.network_policy is True
    assert settings.runtime_image == OperatorSettings.runtime_image and settings.prometheus_address == ""
