"""YAML that attacks the parser gets a clear `file:line` error, fast, in every config file.

duragent.yaml, agent.yaml and policy.yaml all go through `yaml_source`; each attack is tried
through the loader a user's command uses for that file.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from duragent.agents.loader import load_agent
from duragent.config import load_config
from duragent.errors import ConfigError
from duragent.runtime.policy import read_policy_file
from duragent.yaml_source import MAX_FILE_BYTES

AGENT = "name: helper\nmodel:\n  provider: demo\n  name: demo\n"
BILLION_LAUGHS = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{','.join([f'*{chr(97 + i)}'] * 9)}]\n" for i in range(8)
)


def load_duragent_yaml(folder: Path, text: str) -> None:
    (folder / "duragent.yaml").write_text(text)
    load_config(folder / "duragent.yaml")


def load_agent_yaml(folder: Path, text: str) -> None:
    agent = folder / "helper"
    agent.mkdir()
    (agent / "agent.yaml").write_text(AGENT + text)
    load_agent(agent)


def load_policy_yaml(folder: Path, text: str) -> None:
    (folder / "policy.yaml").write_text(text)
    read_policy_file(folder / "policy.yaml")


LOADERS: dict[str, Callable[[Path, str], None]] = {
    "duragent.yaml": load_duragent_yaml,
    "agent.yaml": load_agent_yaml,
    "policy.yaml": load_policy_yaml,
}
ATTACKS = {
    "billion laughs": (BILLION_LAUGHS, "too many aliases"),
    "self-referencing alias": ("x: &x [1, *x]\n", "self-referencing alias"),
    "self-referencing mapping": ("x: &x\n  y: *x\n", "self-referencing alias"),
    "merge of itself": ("x: &x\n  <<: *x\n", "self-referencing alias"),
    "deep flow nesting": ("x: " + "[" * 50_000 + "]" * 50_000 + "\n", "nested more than 64 levels"),
    "deep block nesting": ("".join("  " * i + f"k{i}:\n" for i in range(100)), "nested more than 64 levels"),
    "deep through aliases": (
        "".join(f"a{i}: &a{i} [{f'*a{i - 1}' if i else 1}]\n" for i in range(80)),
        "nested more than 64 levels",
    ),
    "NUL byte": ("x: 1\ny: 'a\x00b'\n", "NUL byte"),
    "control character": ("x: \x1b[31m\n", "control character"),
    "python object tag": ("x: !!python/name:os.system ''\n", "cannot read this value"),
    "unknown tag": ("x: !secret value\n", "could not determine a constructor for the tag '!secret'"),
    "tag that cannot build": ("x: !!int abc\n", "cannot read 'abc' as !!int"),
    "bad timestamp": ("x: !!timestamp nope\n", "cannot read 'nope' as !!timestamp"),
}


@pytest.mark.timeout(20)
@pytest.mark.parametrize("kind", list(ATTACKS))
@pytest.mark.parametrize("file", list(LOADERS))
def test_a_hostile_file_is_a_located_error(tmp_path: Path, file: str, kind: str) -> None:
    text, message = ATTACKS[kind]

    with pytest.raises(ConfigError) as caught:
        LOADERS[file](tmp_path, text)

    problem = caught.value.problems[0]
    assert message in problem.message
    assert problem.location is not None
    assert problem.location.line is not None
    assert str(problem.location.file).endswith(file)


@pytest.mark.parametrize("file", list(LOADERS))
def test_a_file_over_the_size_cap_is_refused_without_parsing_it(tmp_path: Path, file: str) -> None:
    with pytest.raises(ConfigError, match="larger than 1024 KiB"):
        LOADERS[file](tmp_path, "# " + "x" * MAX_FILE_BYTES + "\n")


def test_ordinary_aliases_and_merge_keys_still_work(tmp_path: Path) -> None:
    (tmp_path / "duragent.yaml").write_text(
        "x-defaults: &defaults\n  on_disconnect: pause\nsession:\n  <<: *defaults\n  snapshot_every: 5\n"
    )
    config = load_config(tmp_path / "duragent.yaml")
    assert config.session.on_disconnect == "pause"
    assert config.session.snapshot_every == 5


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("git:\n  author: nobody\n", 2, "git.author: must be `Name <email>`"),
        ("git:\n  author: '<a@b>'\n", 2, "git.author: must be `Name <email>`"),
        ("data_dir: ''\n", 1, "data_dir: must name a folder"),
        ("data_dir: '  '\n", 1, "data_dir: must name a folder"),
        ("data_dir: .\n", 1, "data_dir is the folder of duragent.yaml itself"),
        ("session:\n  fsync: turn\ndata_dir: ./\n", 3, "data_dir is the folder of duragent.yaml itself"),
    ],
)
def test_config_edge_cases_are_located_errors(tmp_path: Path, text: str, line: int, message: str) -> None:
    (tmp_path / "duragent.yaml").write_text(text)

    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "duragent.yaml")

    problem = caught.value.problems[0]
    assert message in problem.message
    assert problem.location is not None
    assert problem.location.line == line
    assert not (tmp_path / ".git").exists()


def test_a_git_author_git_accepts_is_valid(tmp_path: Path) -> None:
    (tmp_path / "duragent.yaml").write_text("git:\n  author: Night Shift Bot <bot@example.test>\n")
    assert load_config(tmp_path / "duragent.yaml").git.author == "Night Shift Bot <bot@example.test>"


def run_cli(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "duragent", "-c", str(root / "duragent.yaml"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=root,
    )


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        ("mode: alow\n", "policy.yaml:1:7: mode must be 'allow', 'ask' or 'deny'"),
        ("allow: [1]\n", "policy.yaml:1:9: allow[0] must be text"),
        ("deny: ['']\n", "policy.yaml:1:7: deny: a pattern must not be empty"),
        ("mode: [ask\n", "policy.yaml:2:1: invalid YAML"),
        ("x: &x [*x]\n", "policy.yaml:1:8: an alias refers to a node that contains it"),
    ],
)
def test_agent_validate_reads_policy_yaml(tmp_path: Path, policy: str, expected: str) -> None:
    agent = tmp_path / ".duragent" / "agents" / "helper"
    agent.mkdir(parents=True)
    (agent / "agent.yaml").write_text(AGENT)
    (tmp_path / "duragent.yaml").write_text("data_dir: .duragent\n")
    assert run_cli(tmp_path, "agent", "validate").returncode == 0
    (agent / "policy.yaml").write_text(policy)

    result = run_cli(tmp_path, "agent", "validate")

    assert result.returncode == 2
    assert expected in result.stdout
    assert "Traceback" not in result.stdout + result.stderr
