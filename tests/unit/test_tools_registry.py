"""The tool registry: builtin names, an agent's tool set, definitions and argument errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from duragent.agents.spec import BUILTIN_TOOLS, ToolsSpec
from duragent.errors import ConfigError
from duragent.tools.base import Tool, ToolArgs, ToolContext, ToolResult
from duragent.tools.registry import (
    BUILTINS,
    PATH_INVOCATION_TOOLS,
    builtin_class,
    builtin_tool,
    call_tool,
    definition,
    execute,
    tools_for,
)


def test_registry_names_are_exactly_the_agent_spec_builtin_names() -> None:
    assert tuple(BUILTINS) == BUILTIN_TOOLS
    assert {name: builtin_tool(name).name for name in BUILTINS} == {name: name for name in BUILTIN_TOOLS}


def test_file_and_artifact_tools_have_path_like_invocations() -> None:
    assert {"read_file", "write_file", "edit_file", "list_files", "artifact_get"} <= PATH_INVOCATION_TOOLS
    assert "bash" not in PATH_INVOCATION_TOOLS
    assert "web_fetch" not in PATH_INVOCATION_TOOLS
    # the policy reads the set without importing every tool: it must say what the classes say
    assert {name for name in BUILTINS if builtin_class(name).invocation_is_path} == PATH_INVOCATION_TOOLS


def test_tools_for_the_list_shorthand_with_a_cli_tool() -> None:
    spec = ToolsSpec.model_validate(
        [
            "bash",
            {"type": "builtin", "name": "read_file"},
            {"type": "cli", "name": "deploy", "command": "make"},
        ]
    )

    tools = tools_for(spec, include_memory=True)

    assert [tool.name for tool in tools] == ["bash", "read_file", "memory", "deploy"]


def test_tools_for_an_unknown_builtin_names_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="unknown builtin tool 'bsh'; known tools: bash, read_file"):
        tools_for(ToolsSpec(builtin=["bsh"]))


def test_cli_tool_may_not_shadow_a_builtin() -> None:
    spec = ToolsSpec.model_validate(["bash", {"type": "cli", "name": "bash", "command": "zsh"}])

    with pytest.raises(ConfigError, match="used twice"):
        tools_for(spec)


def test_definition_is_a_plain_json_schema_without_titles() -> None:
    spec = definition(builtin_tool("write_file"))

    assert spec["name"] == "write_file"
    assert spec["description"]
    parameters = spec["parameters"]
    assert parameters["type"] == "object"
    assert set(parameters["properties"]) == {"path", "content"}
    assert parameters["required"] == ["path", "content"]
    assert parameters["additionalProperties"] is False
    assert "title" not in parameters
    assert "title" not in parameters["properties"]["path"]


def test_memory_definition_lists_the_actions_as_an_enum() -> None:
    action = definition(builtin_tool("memory"))["parameters"]["properties"]["action"]

    assert action["enum"] == ["recall", "remember", "reflect", "update_world"]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"content": "x"}, "invalid arguments for write_file: path is required"),
        ({"path": "a", "content": 3}, "invalid arguments for write_file: content must be text, got 3"),
        (
            {"path": "a", "content": "x", "mode": "w"},
            "invalid arguments for write_file: unknown argument 'mode'",
        ),
        ("not an object", "invalid arguments for write_file: expected a JSON object"),
    ],
)
async def test_invalid_arguments_become_a_result_the_model_can_act_on(
    tmp_path: Path, arguments: object, message: str
) -> None:
    ctx = ToolContext(agent="helper", session_id="s", workdir=tmp_path)

    result = await call_tool(builtin_tool("write_file"), arguments, ctx)

    assert result == ToolResult(False, message)


async def test_a_check_of_the_arguments_together_reads_as_its_own_sentence(tmp_path: Path) -> None:
    ctx = ToolContext(agent="helper", session_id="s", workdir=tmp_path)

    result = await call_tool(builtin_tool("background_process"), {"action": "spawn"}, ctx)

    assert result == ToolResult(False, "invalid arguments for background_process: spawn needs command")


async def test_call_tool_validates_and_runs(tmp_path: Path) -> None:
    ctx = ToolContext(agent="helper", session_id="s", workdir=tmp_path)

    result = await call_tool(builtin_tool("write_file"), {"path": "a.txt", "content": "hi"}, ctx)

    assert result.ok
    assert (tmp_path / "a.txt").read_text() == "hi"


class _NoArgs(ToolArgs):
    pass


class _BrokenTool(Tool[_NoArgs]):
    name = "broken"
    description = "Always raises."
    Args = _NoArgs

    async def run(self, args: _NoArgs, ctx: ToolContext) -> ToolResult:
        raise RuntimeError("disk on fire")

    def invocation(self, args: _NoArgs, ctx: ToolContext) -> str:
        return ""


async def test_an_unexpected_error_in_a_tool_becomes_a_failed_result(tmp_path: Path) -> None:
    ctx = ToolContext(agent="helper", session_id="s", workdir=tmp_path)

    result = await execute(_BrokenTool(), _NoArgs(), ctx)

    assert result == ToolResult(False, "broken failed unexpectedly: RuntimeError: disk on fire")
