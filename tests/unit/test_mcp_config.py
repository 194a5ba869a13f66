"""MCP server entries in agent.yaml and duragent.yaml: what loads, and errors at file:line."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from duragent.agents.loader import load_agent
from duragent.config import load_config
from duragent.errors import ConfigError

AGENT_HEAD = """\
apiVersion: duragent/v1alpha1
kind: Agent
metadata:
  name: bot
spec:
  model: {provider: openai, name: gpt-test}
  mcp_servers:
"""


def agent_problems(tmp_path: Path, servers: str, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "agents" / "bot"
    folder.mkdir(parents=True)
    (folder / "agent.yaml").write_text(AGENT_HEAD + textwrap.indent(textwrap.dedent(servers), "    "))
    with pytest.raises(ConfigError) as caught:
        load_agent(folder, env={})
    return [str(problem) for problem in caught.value.problems]


def test_stdio_and_http_servers_load_with_headers_interpolated(tmp_path: Path) -> None:
    folder = tmp_path / "bot"
    folder.mkdir()
    servers = """\
      - name: time
        command: uvx
        args: [mcp-server-time, --local-timezone, UTC]
        env: [TZ]
        cwd: scratch
      - name: docs
        url: https://mcp.example.com/mcp
        headers: {Authorization: "Bearer ${DOCS_TOKEN}"}
        call_timeout: 30s
"""
    (folder / "agent.yaml").write_text(AGENT_HEAD.replace("name: bot", "name: bot") + servers)

    agent, warnings = load_agent(folder, env={"DOCS_TOKEN": "t0ken"})

    time_server, docs = agent.spec.mcp_servers
    assert time_server.transport == "stdio"
    assert time_server.target == "uvx mcp-server-time --local-timezone UTC"
    assert (time_server.env, time_server.cwd) == (["TZ"], "scratch")
    assert docs.transport == "http"
    assert docs.headers == {"Authorization": "Bearer t0ken"}
    assert docs.call_timeout.total_seconds() == 30
    assert warnings == []


def test_a_server_with_both_command_and_url_is_reported_at_its_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    problems = agent_problems(
        tmp_path,
        """\
        - name: time
          command: uvx
          url: http://127.0.0.1:9/mcp
        """,
        monkeypatch,
    )

    assert problems == [
        "agents/bot/agent.yaml:8:7: spec.mcp_servers[0]: "
        "MCP server 'time' has both `command` and `url`; keep one"
    ]


def test_bad_names_variables_and_urls_are_each_reported_where_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    problems = agent_problems(
        tmp_path,
        """\
        - name: my__server
          command: srv
        - name: ok
          command: srv
          env: [GITHUB_TOKEN=abc]
        - name: web
          url: ftp://example.com
        - name: none
        """,
        monkeypatch,
    )

    assert len(problems) == 4
    assert problems[0].startswith("agents/bot/agent.yaml:8:13: spec.mcp_servers[0].name")
    assert "'__'" in problems[0]
    assert problems[1].startswith("agents/bot/agent.yaml:12:12: spec.mcp_servers[1].env: 'GITHUB_TOKEN=abc'")
    assert "not an environment variable name" in problems[1]
    assert problems[2].startswith("agents/bot/agent.yaml:14:12: spec.mcp_servers[2].url")
    assert problems[3].endswith("MCP server 'none' needs `command` (stdio) or `url` (Streamable HTTP)")


def test_a_server_name_used_twice_in_duragent_yaml_is_an_error_there(tmp_path: Path) -> None:
    path = tmp_path / "duragent.yaml"
    path.write_text(
        "data_dir: data\n"
        "mcp_servers:\n"
        "  - {name: time, command: uvx, args: [mcp-server-time]}\n"
        "  - {name: time, url: 'http://127.0.0.1:9/mcp'}\n"
    )

    with pytest.raises(ConfigError) as caught:
        load_config(path)

    [problem] = caught.value.problems
    assert str(problem) == f"{path}:3:3: mcp_servers: MCP server name 'time' is used twice"


def test_workspace_servers_load_from_duragent_yaml(tmp_path: Path) -> None:
    path = tmp_path / "duragent.yaml"
    path.write_text("mcp_servers:\n  - name: git\n    command: uvx\n    args: [mcp-server-git]\n")

    config = load_config(path)

    [server] = config.mcp_servers
    assert (server.name, server.command, server.args) == ("git", "uvx", ["mcp-server-git"])


def test_the_examples_in_docs_mcp_load(tmp_path: Path) -> None:
    from duragent.config import parse_config_text

    doc = (Path(__file__).parents[2] / "docs" / "mcp.md").read_text()
    agent_example, workspace_example = [block.split("```")[0] for block in doc.split("```yaml\n")[1:3]]
    folder = tmp_path / "helper"
    folder.mkdir()
    body = agent_example.split("spec:\n", 1)[1]
    (folder / "agent.yaml").write_text(
        AGENT_HEAD.replace("name: bot", "name: helper").split("  mcp_servers:")[0] + body
    )

    agent, warnings = load_agent(folder, env={"DOCS_MCP_TOKEN": "t"})
    config = parse_config_text(workspace_example)

    assert [s.name for s in agent.spec.mcp_servers] == ["time", "git", "docs"]
    assert warnings == []
    assert [s.name for s in config.mcp_servers] == ["fetch"]


def test_a_servers_url_is_shown_without_its_password_or_query_values() -> None:
    from duragent.mcp.spec import McpServerSpec

    server = McpServerSpec(name="docs", url="https://me:s3cret@mcp.example.com/mcp?token=qsecret&x=1")

    assert server.target == "https://mcp.example.com/mcp?token=…&x=…"


def test_header_values_never_appear_in_a_dump_of_the_agent(tmp_path: Path) -> None:
    folder = tmp_path / "bot"
    folder.mkdir()
    servers = "    - {name: docs, url: 'https://x.example/mcp', headers: {Authorization: 'Bearer ${T}'}}\n"
    (folder / "agent.yaml").write_text(AGENT_HEAD + servers)

    agent, _ = load_agent(folder, env={"T": "t0ken-value"})

    assert agent.spec.mcp_servers[0].headers == {"Authorization": "Bearer t0ken-value"}
    dumped = agent.document.model_dump_json(by_alias=True)
    assert "t0ken-value" not in dumped
    assert '"Authorization":"<hidden>"' in dumped
