"""The engine-flag allow-list against the pinned vLLM's own parser: every flag `vif-runtime serve` reads is reviewed.

A vLLM upgrade that adds a flag fails here until someone puts it on the allowed list (a plain value) or on a
refused list with its reason (operator/engine_flags.py); a flag the engine dropped fails here too.
"""

from __future__ import annotations

import argparse

import pytest

from vif.operator.engine_flags import ALLOWED_EXTRA_ARGS, REFUSED_EXTRA_ARGS
from vif.operator.policy import Policy
from vif.runtime.cli import engine_parser, own_parser

REFUSED = [flag for flags in REFUSED_EXTRA_ARGS.values() for flag in flags]

# Allowed flags whose value is a name vLLM looks up in its own registries (attention backends, quantization methods,
# reasoning parsers, ...), not in argparse's choices: still a name, never a path or code.
REGISTRY_NAMES = {
    "--tokenizer-mode",
    "--config-format",
    "--model-impl",
    "--quantization",
    "--reasoning-parser",
    "--load-format",
    "--attention-backend",
    "--mamba-backend",
    "--optimization-level",
}
NUMBERS = {"int", "float", "human_readable_int", "human_readable_int_or_auto"}


def actions() -> dict[str, argparse.Action]:
    """Every long option vif-runtime serve reads (vif's own first: they shadow vLLM's of the same name)."""
    found: dict[str, argparse.Action] = {}
    for parser in (own_parser(), engine_parser()):
        for action in parser._actions:
            for option in action.option_strings:
                if option.startswith("--"):
                    found.setdefault(option, action)
    return found


ACTIONS = actions()


def test_every_flag_of_the_pinned_engine_is_reviewed() -> None:
    unreviewed = [
        option
        for option in ACTIONS
        if option not in ALLOWED_EXTRA_ARGS and option not in REFUSED and not option.startswith("--no-")
    ]  # a `--no-X` is X's negation: refused unless allowed by name
    assert unreviewed == [], "new flags: put each on ALLOWED_EXTRA_ARGS or REFUSED_EXTRA_ARGS"


def test_the_lists_name_only_flags_the_engine_has_once() -> None:
    listed = [*ALLOWED_EXTRA_ARGS, *REFUSED]
    assert sorted(f for f in listed if f not in ACTIONS) == []
    assert len(listed) == len(set(listed)), "a flag is on two lists or twice on one"


def value_type(action: argparse.Action) -> str:
    """The name of the type an action parses its value with, through vLLM's `_optional_type` wrapper."""
    kind = action.type
    if getattr(kind, "__name__", "") == "_optional_type":
        kind = next(c.cell_contents for c in kind.__closure__ or () if callable(c.cell_contents))  # type: ignore[attr-defined]
    return getattr(kind, "__name__", "")


POSITIVE = [flag for flag in ALLOWED_EXTRA_ARGS if not flag.startswith("--no-")]
NEGATIVE = [flag for flag in ALLOWED_EXTRA_ARGS if flag.startswith("--no-")]


@pytest.mark.parametrize("flag", POSITIVE)
def test_allowed_flags_take_a_plain_value(flag: str) -> None:
    action = ACTIONS[flag]
    boolean = action.nargs == 0
    assert boolean or action.choices or value_type(action) in NUMBERS or flag in REGISTRY_NAMES, flag


@pytest.mark.parametrize("flag", NEGATIVE)
def test_an_allowed_negative_flag_negates_an_allowed_flag(flag: str) -> None:
    positive = "--" + flag.removeprefix("--no-")
    assert positive in ALLOWED_EXTRA_ARGS and ACTIONS[flag] is ACTIONS[positive]


@pytest.mark.parametrize(
    "arg",
    [
        # the attacks of issue 24: each makes the engine run code, import a class or trust another host
        "--structured-outputs-config.reasoning_parser_plugin=/etc/vif-chat-template/p.py",
        '--structured-outputs-config={"reasoning_parser_plugin": "/etc/vif-chat-template/p.py"}',
        "--speculative-config.model=evil.Model",
        "--ec-manager-config",
        "--nnodes",
        "--node-rank=1",
        "--master-addr=10.0.0.9",
        "--data-parallel-address",
        "--tool-parser-plugin=/p.py",
        "--reasoning-parser-plugin",
        "--trust_remote_code",
        "--no-trust-remote-code",
        # spellings that name an allowed flag other than by its long name
        "--max-num-seqs.key=1",
        "--max-num-seq",
        "--no-long-prefill-token-threshold",  # argparse would expand it to another flag
        "-O3",
        "-tp",
        "--",
    ],
)
def test_refused_by_the_default_policy(arg: str) -> None:
    assert Policy().extra_arg_problem(arg) is not None


@pytest.mark.parametrize(
    "args",
    [
        ["--max-num-seqs", "8", "--enable-prefix-caching", "--no-enforce-eager"],
        ["--max_num_batched_tokens=4096", "--seed", "-1", "--kv-cache-dtype", "fp8"],
        ["--reasoning-parser", "deepseek_r1", "--max-lora-rank", "64", "--log-format", "json"],
    ],
)
def test_allowed_by_the_default_policy(args: list[str]) -> None:
    assert [Policy().extra_arg_problem(a) for a in args] == [None] * len(args)
