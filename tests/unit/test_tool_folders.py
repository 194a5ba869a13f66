"""Tool folders: `tools/<name>/run` programs found, validated and run as cli tools."""

from __future__ import annotations

from pathlib import Path

from duragent.tools.base import ToolContext
from duragent.tools.bash import BashTool, CliArgs
from duragent.tools.folders import FolderTool, add_folder_tools, discover_tool_folders, scan_tool_folders

ECHO_ARGS = '#!/bin/sh\nprintf "%s|" "$@"; echo; pwd\n'


def tool_folder(
    parent: Path, name: str, program: str = ECHO_ARGS, *, run_name: str = "run", readme: str | None = None
) -> Path:
    """`parent/name/<run_name>` holding `program` (executable), with an optional README.md."""
    folder = parent / name
    folder.mkdir(parents=True, exist_ok=True)
    run = folder / run_name
    run.write_text(program)
    run.chmod(0o755)
    if readme is not None:
        (folder / "README.md").write_text(readme)
    return folder


def test_a_folder_with_an_executable_run_is_a_tool_described_by_its_readme(tmp_path: Path) -> None:
    tools_dir = tmp_path / "tools"
    tool_folder(tools_dir, "weather", readme="Current weather for a city.\n\nArguments: the city.\n")
    tool_folder(tools_dir, "py-tool", "#!/usr/bin/env python3\nprint('hi')\n", run_name="run.py")
    (tools_dir / "notes.txt").write_text("not a folder")
    (tools_dir / ".cache").mkdir()

    tools, problems = scan_tool_folders(tools_dir)

    assert problems == []
    assert [(tool.name, tool.program.name) for tool in tools] == [("py-tool", "run.py"), ("weather", "run")]
    assert tools[1].description == "Current weather for a city.\n\nArguments: the city."
    assert tools[0].description == "Run the program of the tool folder py-tool with the given arguments."


def test_folders_that_are_not_tools_are_reported_with_the_reason(tmp_path: Path) -> None:
    tools_dir = tmp_path / "tools"
    not_executable = tool_folder(tools_dir, "plain")
    (not_executable / "run").chmod(0o644)
    (tools_dir / "empty").mkdir()
    two = tool_folder(tools_dir, "two")
    tool_folder(tools_dir, "two", run_name="run.sh")
    tool_folder(tools_dir, "bad name")

    tools, problems = scan_tool_folders(tools_dir)

    assert tools == []
    messages = sorted(str(problem) for problem in problems)
    assert messages[0].endswith("bad name: a tool folder's name must be 1-64 letters, digits, '-' or '_'")
    assert messages[1].endswith(
        "empty: no `run` program in this tool folder (an executable file named run or run.*)"
    )
    assert messages[2].endswith(f"plain: run is not executable (chmod +x {not_executable / 'run'})")
    assert messages[3].endswith(
        f"{two.name}: several programs (run, run.sh): a tool folder holds one run or run.* file"
    )


def test_an_editors_backup_beside_the_program_leaves_the_tool_in_place(tmp_path: Path) -> None:
    tools_dir = tmp_path / "tools"
    folder = tool_folder(tools_dir, "weather", "#!/usr/bin/env python3\nprint('sunny')\n", run_name="run.py")
    for leftover in ("run.py~", "run.py.orig", "run.py.bak"):
        (folder / leftover).write_text("#!/usr/bin/env python3\nprint('old')\n")
        (folder / leftover).chmod(0o755)

    tools, problems = scan_tool_folders(tools_dir)

    assert problems == []
    assert [(tool.name, tool.program.name) for tool in tools] == [("weather", "run.py")]


def test_an_agents_tool_folder_wins_over_the_workspaces_and_never_over_a_configured_tool(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    agent_dir = data / "agents" / "helper"
    tool_folder(data / "tools", "shared")
    tool_folder(data / "tools", "report", readme="workspace report")
    tool_folder(agent_dir / "tools", "report", readme="agent report")
    tool_folder(agent_dir / "tools", "bash")

    found, problems = discover_tool_folders(agent_dir, data)
    tools: dict[str, object] = {"bash": BashTool()}
    clashes = add_folder_tools(tools, found)

    assert problems == []
    assert found["report"].description == "agent report"
    assert sorted(tools) == ["bash", "report", "shared"]
    assert isinstance(tools["bash"], BashTool)
    [clash] = clashes
    assert "tool folder 'bash' is skipped: the agent already has a tool of that name" in str(clash)


async def test_the_program_runs_in_the_workdir_with_args_never_given_to_a_shell(tmp_path: Path) -> None:
    folder = tool_folder(tmp_path / "tools", "show-args")
    [found] = scan_tool_folders(tmp_path / "tools")[0]
    workdir = tmp_path / "work"
    workdir.mkdir()
    tool = FolderTool(found)
    ctx = ToolContext(agent="helper", session_id="s_1", workdir=workdir)

    result = await tool.run(CliArgs(args="'two words' ; touch pwned $(id)"), ctx)

    assert result.ok, result.content
    assert result.content.splitlines() == ["two words|;|touch|pwned|$(id)|", str(workdir)]
    assert not (workdir / "pwned").exists()
    assert tool.invocation(CliArgs(args="--city Paris"), ctx) == "--city Paris"
    assert folder.name == tool.name
