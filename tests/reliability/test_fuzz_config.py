"""Fuzzing the config files: duragent.yaml, agent.yaml and policy.yaml give a valid result or a
clear located error (ConfigError), never a traceback or a hang.

Hypothesis builds documents three ways: random YAML-ish text (syntax the parser must survive),
structurally valid YAML with random values in the right places (types the validators must
survive), and known-hostile shapes mixed in (aliases, deep nesting, control characters, huge
keys). Each case is time-boxed by running it under a deadline.
"""

from __future__ import annotations

import json
import string
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from duragent.agents.loader import load_agent
from duragent.config import load_config
from duragent.errors import ConfigError, DuragentError
from duragent.runtime.policy import read_policy_file

EXAMPLES = 40
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=10_000,  # one case: 10 s at most (ms in practice), even on a loaded machine
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,
)

YAML_PIECES = st.sampled_from(
    [
        ":",
        "- ",
        "? ",
        "&a ",
        "*a",
        "*b",
        "&b ",
        "<<: ",
        "[",
        "]",
        "{",
        "}",
        ",",
        "'",
        '"',
        "|",
        ">",
        "#",
        "!!python/object:os.system ",
        "!!binary ",
        "%YAML 1.1\n",
        "---\n",
        "...\n",
        "\t",
        "\n",
        "  ",
        "${HOME}",
        "${NOPE}",
        "${A:-b}",
        "$$",
        "\x00",
        "\x1b",
        "\ufeff",
        "\ud800",
        "~",
        "null",
        "1e999",
        "0x1F",
        "2024-01-01",
        "yes",
        "on",
        "=",
        "\\",
        "\u2028",
        "model",
        "name",
        "provider",
        "mode",
        "allow",
        "deny",
        "ask",
        "server",
        "port",
        "tools",
        "spec",
        "data_dir",
    ]
)
TEXTY = st.text(st.sampled_from(string.printable + "\x00\x07\u00e9\u2028\U0001f600"), max_size=40)
RAW_YAML = st.lists(st.one_of(YAML_PIECES, TEXTY), max_size=60).map("".join)

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
)


def values(depth: int = 3) -> st.SearchStrategy[Any]:
    """Any value a YAML mapping could hold, a few levels deep."""
    return st.recursive(
        SCALARS,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)
        ),
        max_leaves=12,
    )


def shaped(keys: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """Mappings with the file's real keys (each present or not) holding random values."""
    return st.fixed_dictionaries({}, optional={key: strategy for key, strategy in keys.items()})


DURAGENT_YAML = shaped(
    {
        "server": shaped(
            {"host": values(), "port": values(), "api_token": values(), "allowed_hosts": values()}
        ),
        "data_dir": st.one_of(values(), st.sampled_from(["", ".", "./", "data", "/"])),
        "services": shaped({"session": shaped({"backend": values(), "path": values(), "url": values()})}),
        "gateways": shaped(
            {"external": st.lists(shaped({"name": values(), "command": values()}), max_size=2)}
        ),
        "routes": values(),
        "session": shaped({"on_disconnect": values(), "snapshot_every": values(), "fsync": values()}),
        "agents": shaped({"static": shaped({"path": values(), "watch": values()}), "cache_size": values()}),
        "admin": shaped({"enabled": values(), "token": values()}),
        "git": shaped({"enabled": values(), "author": values(), "commit_debounce": values()}),
    }
)
AGENT_YAML = shaped(
    {
        "apiVersion": st.one_of(values(), st.just("duragent/v1alpha1")),
        "kind": st.one_of(values(), st.just("Agent")),
        "metadata": shaped({"name": st.one_of(values(), st.just("helper")), "labels": values()}),
        "spec": shaped(
            {
                "model": shaped({"provider": values(), "name": values(), "temperature": values()}),
                "system_prompt": values(),
                "tools": st.one_of(
                    values(), shaped({"builtin": values(), "policy": values(), "env": values()})
                ),
                "session": values(),
                "context": values(),
                "memory": values(),
                "access": values(),
            }
        ),
        "name": values(),
        "model": values(),
    }
)
POLICY_YAML = shaped({"mode": values(), "allow": values(), "ask": values(), "deny": values()})


def dump(data: Any) -> str:
    """YAML text for generated data (JSON is YAML; sort_keys keeps it deterministic)."""
    return json.dumps(data, allow_nan=True, sort_keys=True)


def hostile(text: str, trick: int) -> str:
    """`text` with one hostile shape mixed in."""
    tricks = [
        lambda t: t,
        lambda t: "x: &x [*x]\n" + t,
        lambda t: (
            "a: &a [1,1,1,1,1,1,1,1]\n"
            + "".join(
                f"l{i}: &l{i} [*{'a' if i == 0 else f'l{i - 1}'}"
                + f", *{'a' if i == 0 else f'l{i - 1}'}" * 7
                + "]\n"
                for i in range(6)
            )
            + t
        ),
        lambda t: "deep: " + "[" * 200 + "]" * 200 + "\n" + t,
        lambda t: t.replace(":", ":\x00", 1),
        lambda t: "k" * 5000 + ": 1\n" + t,
    ]
    return tricks[trick % len(tricks)](text)


def write_config(folder: Path, text: str) -> None:
    (folder / "duragent.yaml").write_text(text, encoding="utf-8", errors="surrogatepass")
    load_config(folder / "duragent.yaml", env={"HOME": "/home/x", "A": "1"})


def write_agent(folder: Path, text: str) -> None:
    agent = folder / "helper"
    agent.mkdir(exist_ok=True)
    (agent / "agent.yaml").write_text(text, encoding="utf-8", errors="surrogatepass")
    load_agent(agent, env={"HOME": "/home/x"})


def write_policy(folder: Path, text: str) -> None:
    (folder / "policy.yaml").write_text(text, encoding="utf-8", errors="surrogatepass")
    read_policy_file(folder / "policy.yaml")


LOADERS: dict[str, Callable[[Path, str], None]] = {
    "duragent.yaml": write_config,
    "agent.yaml": write_agent,
    "policy.yaml": write_policy,
}


def only_clear_errors(loader: Callable[[Path, str], None], folder: Path, text: str) -> None:
    """Loading either succeeds or raises a user-facing error; a ConfigError names the file."""
    error: DuragentError | None = None
    try:
        loader(folder, text)
    except DuragentError as exc:
        error = exc
    if error is None:
        return
    assert str(error).strip()
    assert "Traceback" not in str(error)
    if isinstance(error, ConfigError):
        assert error.problems
        for problem in error.problems:
            assert problem.message.strip()
            assert any(name in str(problem) for name in LOADERS), str(problem)


@pytest.mark.parametrize("file", list(LOADERS))
@FUZZ
@given(text=RAW_YAML, trick=st.integers(0, 5))
def test_random_yaml_text_gives_a_result_or_a_clear_error(
    tmp_path: Path, file: str, text: str, trick: int
) -> None:
    only_clear_errors(LOADERS[file], tmp_path, hostile(text, trick))


@FUZZ
@given(data=DURAGENT_YAML, trick=st.integers(0, 5))
def test_random_values_in_duragent_yaml_give_a_result_or_a_clear_error(
    tmp_path: Path, data: dict[str, Any], trick: int
) -> None:
    only_clear_errors(write_config, tmp_path, hostile(dump(data), trick))


@FUZZ
@given(data=AGENT_YAML, trick=st.integers(0, 5))
def test_random_values_in_agent_yaml_give_a_result_or_a_clear_error(
    tmp_path: Path, data: dict[str, Any], trick: int
) -> None:
    only_clear_errors(write_agent, tmp_path, hostile(dump(data), trick))


@FUZZ
@given(data=POLICY_YAML, trick=st.integers(0, 5))
def test_random_values_in_policy_yaml_give_a_result_or_a_clear_error(
    tmp_path: Path, data: dict[str, Any], trick: int
) -> None:
    only_clear_errors(write_policy, tmp_path, hostile(dump(data), trick))


@FUZZ
@given(data=st.one_of(DURAGENT_YAML, values()))
def test_block_style_yaml_of_random_values_gives_a_result_or_a_clear_error(tmp_path: Path, data: Any) -> None:
    text = yaml.safe_dump(data, allow_unicode=True, default_flow_style=False)
    only_clear_errors(write_config, tmp_path, text)
