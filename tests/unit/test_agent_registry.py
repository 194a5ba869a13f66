"""AgentRegistry: static and deployed agents, lazy loading, LRU eviction, deploy/remove, hot reload."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from duragent.agents.catalog import AgentNotFound, InvalidAgent
from duragent.agents.registry import AgentRegistry, StaticAgentConflict
from duragent.config import DuragentConfig, load_config
from duragent.errors import ConfigError
from duragent.stores.base import Change


def agent_yaml(name: str, description: str = "test agent", model: str = "gpt-4o-mini") -> str:
    """A valid shorthand agent.yaml."""
    return (
        f"name: {name}\n"
        f"description: {description}\n"
        "model:\n"
        "  provider: openai\n"
        f"  name: {model}\n"
        "system_prompt: SYSTEM_PROMPT.md\n"
    )


def write_agent(folder: Path, name: str, description: str = "test agent") -> Path:
    """Create `folder/name` with agent.yaml and SYSTEM_PROMPT.md."""
    directory = folder / name
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "agent.yaml").write_text(agent_yaml(name, description))
    (directory / "SYSTEM_PROMPT.md").write_text(f"You are {name}.\n")
    return directory


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A data directory with an empty agents folder, as the working directory."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".duragent" / "agents").mkdir(parents=True)
    return tmp_path


def make_config(workspace: Path, agents_section: str = "") -> DuragentConfig:
    """duragent.yaml in `workspace` with an optional `agents:` section body (indented two spaces)."""
    text = "data_dir: .duragent\n"
    if agents_section:
        text += "agents:\n" + "".join(f"  {line}\n" for line in agents_section.splitlines())
    (workspace / "duragent.yaml").write_text(text)
    return load_config(workspace / "duragent.yaml")


def static_dir(workspace: Path) -> Path:
    return workspace / ".duragent" / "agents"


def dynamic_dir(workspace: Path) -> Path:
    return workspace / ".duragent" / "sys" / "dyn_agents"


def test_eager_registry_loads_every_agent_at_start(workspace: Path) -> None:
    write_agent(static_dir(workspace), "alpha")
    write_agent(static_dir(workspace), "beta")

    registry = AgentRegistry(make_config(workspace), env={})

    assert registry.stats.loaded == 2
    assert registry.get("alpha").system_prompt == "You are alpha."
    assert registry.stats.hits == 1
    assert registry.stats.misses == 0


def test_lazy_registry_reads_an_agent_only_on_first_use(workspace: Path) -> None:
    write_agent(static_dir(workspace), "alpha")
    write_agent(static_dir(workspace), "beta")

    registry = AgentRegistry(make_config(workspace, "lazy_load: true"), env={})

    assert registry.names() == ["alpha", "beta"]
    assert registry.stats.loaded == 0
    assert registry.get("beta").name == "beta"
    assert registry.get("beta").name == "beta"
    stats = registry.stats
    assert (stats.loaded, stats.misses, stats.hits) == (1, 1, 1)


def test_lru_cache_of_two_evicts_the_least_recently_used_and_reloads_it_on_next_use(workspace: Path) -> None:
    for name in ("one", "two", "three"):
        write_agent(static_dir(workspace), name)
    registry = AgentRegistry(make_config(workspace, "lazy_load: true\ncache_size: 2"), env={})

    registry.get("one")
    registry.get("two")
    registry.get("one")  # "two" is now the least recently used
    registry.get("three")

    stats = registry.stats
    assert (stats.loaded, stats.evictions, stats.misses, stats.hits) == (2, 1, 3, 1)
    registry.get("one")
    assert registry.stats.hits == 2
    assert registry.get("two").name == "two"
    assert registry.stats.misses == 4
    assert registry.stats.evictions == 2


def test_unknown_agent_error_lists_the_known_names(workspace: Path) -> None:
    write_agent(static_dir(workspace), "alpha")
    registry = AgentRegistry(make_config(workspace), env={})

    with pytest.raises(AgentNotFound, match="known agents: alpha"):
        registry.get("nobody")


def test_agent_folder_created_after_start_is_found_on_first_use(workspace: Path) -> None:
    registry = AgentRegistry(make_config(workspace), env={})
    write_agent(static_dir(workspace), "late")

    assert registry.get("late").name == "late"
    assert registry.names() == ["late"]


def test_broken_agent_is_listed_invalid_with_file_line_error(workspace: Path) -> None:
    write_agent(static_dir(workspace), "good")
    broken = write_agent(static_dir(workspace), "broken")
    (broken / "agent.yaml").write_text("name: broken\nmodel:\n  provider: nobody\n  name: x\n")

    registry = AgentRegistry(make_config(workspace), env={})

    errors = registry.errors()
    assert len(errors) == 1
    assert errors[0].startswith(".duragent/agents/broken/agent.yaml:3:13: ")
    rows = {row.name: row for row in registry.summaries()}
    assert rows["good"].valid
    assert rows["good"].provider == "openai"
    assert rows["good"].source == "static"
    assert not rows["broken"].valid
    assert rows["broken"].error is not None
    assert "agent.yaml:3:13" in rows["broken"].error
    with pytest.raises(InvalidAgent):
        registry.get("broken")


def test_reload_counts_valid_agents_and_picks_up_new_and_removed_folders(workspace: Path) -> None:
    write_agent(static_dir(workspace), "alpha")
    registry = AgentRegistry(make_config(workspace), env={})
    write_agent(static_dir(workspace), "beta")
    (static_dir(workspace) / "alpha" / "agent.yaml").unlink()

    assert registry.reload() == 1
    assert registry.names() == ["beta"]
    with pytest.raises(AgentNotFound):
        registry.get("alpha")


def test_deployed_agent_is_usable_at_once_and_reported_as_a_change(workspace: Path) -> None:
    changes: list[Change] = []
    registry = AgentRegistry(make_config(workspace), env={}, on_change=changes.append)

    agent = registry.deploy(
        "helper",
        {
            "agent.yaml": agent_yaml("helper", "deployed"),
            "SYSTEM_PROMPT.md": "Deployed prompt.",
            "skills/a.md": "x",
        },
    )

    target = dynamic_dir(workspace) / "helper"
    assert agent.directory == target.resolve()
    assert (target / "skills" / "a.md").read_text() == "x"
    assert registry.get("helper").system_prompt == "Deployed prompt."
    assert registry.source("helper") == "dynamic"
    assert registry.files("helper")["SYSTEM_PROMPT.md"] == "Deployed prompt."
    written = (target / "SYSTEM_PROMPT.md", target / "agent.yaml", target / "skills" / "a.md")
    assert changes == [Change((target, *written), "agent", "helper", "deployed")]
    assert [p.name for p in dynamic_dir(workspace).iterdir()] == ["helper"]  # no staging left behind


def test_redeploy_replaces_the_whole_folder(workspace: Path) -> None:
    registry = AgentRegistry(make_config(workspace), env={})
    registry.deploy("helper", {"agent.yaml": agent_yaml("helper"), "SYSTEM_PROMPT.md": "v1", "OLD.md": "old"})

    registry.deploy("helper", {"agent.yaml": agent_yaml("helper", "second"), "SYSTEM_PROMPT.md": "v2"})

    assert registry.get("helper").system_prompt == "v2"
    assert registry.get("helper").description == "second"
    assert sorted(registry.files("helper")) == ["SYSTEM_PROMPT.md", "agent.yaml"]


def test_invalid_deploy_reports_every_problem_located_in_its_file_and_writes_nothing(workspace: Path) -> None:
    registry = AgentRegistry(make_config(workspace), env={})
    registry.deploy("helper", {"agent.yaml": agent_yaml("helper"), "SYSTEM_PROMPT.md": "v1"})
    bad = "name: helper\nmodel:\n  provider: nobody\n  name: x\nsystem_prompt: MISSING.md\n"

    with pytest.raises(ConfigError) as caught:
        registry.deploy("helper", {"agent.yaml": bad})

    shown = [str(problem) for problem in caught.value.problems]
    assert len(shown) == 2
    assert shown[0].startswith("agent.yaml:3:13: ")
    assert shown[1].startswith("agent.yaml:5:16: ")
    assert "MISSING.md" in shown[1]
    assert ".staging" not in "\n".join(shown)
    assert registry.get("helper").system_prompt == "v1"
    assert (dynamic_dir(workspace) / "helper" / "SYSTEM_PROMPT.md").read_text() == "v1"
    assert [p.name for p in dynamic_dir(workspace).iterdir()] == ["helper"]


@pytest.mark.parametrize(
    "file_name", ["../escape.md", "/etc/passwd", "skills/../../x.md", ".env", "a\\b.md", "skills//a.md"]
)
def test_deploy_refuses_file_names_that_could_leave_the_agent_folder(workspace: Path, file_name: str) -> None:
    registry = AgentRegistry(make_config(workspace), env={})

    with pytest.raises(ConfigError, match="invalid file name"):
        registry.deploy("helper", {"agent.yaml": agent_yaml("helper"), file_name: "x"})

    assert not dynamic_dir(workspace).exists() or list(dynamic_dir(workspace).iterdir()) == []


def test_deploy_without_agent_yaml_is_refused(workspace: Path) -> None:
    registry = AgentRegistry(make_config(workspace), env={})

    with pytest.raises(ConfigError, match=r"must include agent\.yaml"):
        registry.deploy("helper", {"SYSTEM_PROMPT.md": "x"})


def test_remove_deletes_a_deployed_agent_and_reports_it(workspace: Path) -> None:
    changes: list[Change] = []
    registry = AgentRegistry(make_config(workspace), env={}, on_change=changes.append)
    registry.deploy("helper", {"agent.yaml": agent_yaml("helper"), "SYSTEM_PROMPT.md": "v1"})

    registry.remove("helper")

    assert not (dynamic_dir(workspace) / "helper").exists()
    assert changes[-1] == Change((dynamic_dir(workspace) / "helper",), "agent", "helper", "removed")
    with pytest.raises(AgentNotFound):
        registry.get("helper")
    with pytest.raises(AgentNotFound):
        registry.remove("helper")


def test_static_agents_cannot_be_removed_or_overwritten_through_the_registry(workspace: Path) -> None:
    write_agent(static_dir(workspace), "alpha")
    registry = AgentRegistry(make_config(workspace), env={})

    with pytest.raises(StaticAgentConflict, match="delet"):
        registry.remove("alpha")
    with pytest.raises(StaticAgentConflict):
        registry.deploy("alpha", {"agent.yaml": agent_yaml("alpha")})
    assert (static_dir(workspace) / "alpha" / "agent.yaml").is_file()


def test_static_agent_wins_over_a_deployed_one_of_the_same_name_with_a_warning(workspace: Path) -> None:
    write_agent(static_dir(workspace), "alpha", "the static one")
    write_agent(dynamic_dir(workspace), "alpha", "the deployed one")
    write_agent(dynamic_dir(workspace), "beta", "only deployed")

    registry = AgentRegistry(make_config(workspace), env={})

    assert registry.get("alpha").description == "the static one"
    assert registry.source("beta") == "dynamic"
    errors = registry.errors()
    assert len(errors) == 1
    assert "sys/dyn_agents/alpha/agent.yaml" in errors[0]
    assert "static agents win" in errors[0]


def test_leftover_staging_folders_are_removed_at_start(workspace: Path) -> None:
    leftover = dynamic_dir(workspace) / ".staging-01ABC" / "helper"
    leftover.mkdir(parents=True)

    AgentRegistry(make_config(workspace), env={})

    assert not leftover.parent.exists()


# --- watching ---------------------------------------------------------------------------------


@pytest.fixture
async def watched(workspace: Path) -> AsyncIterator[AgentRegistry]:
    """A registry watching the static folder, which holds agent "alpha"."""
    write_agent(static_dir(workspace), "alpha", "first")
    registry = AgentRegistry(make_config(workspace, "static:\n  watch: true"), env={})
    await registry.start_watching()
    yield registry
    await registry.stop()


async def wait_until(condition: Callable[[], bool], within: float = 3.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if condition():
            return True
        await asyncio.sleep(0.05)
    return condition()


def save_atomically(file: Path, text: str) -> None:
    """Save the way vim and VS Code do: write a temp file beside it, then rename over it."""
    temp = file.with_name(file.name + ".swp~")
    temp.write_text(text)
    os.replace(temp, file)


async def test_atomic_rename_save_is_picked_up_within_two_seconds(
    watched: AgentRegistry, workspace: Path
) -> None:
    save_atomically(static_dir(workspace) / "alpha" / "agent.yaml", agent_yaml("alpha", "second"))

    assert await wait_until(lambda: watched.get("alpha").description == "second", within=2.0)


async def test_edited_prompt_file_is_reloaded(watched: AgentRegistry, workspace: Path) -> None:
    (static_dir(workspace) / "alpha" / "SYSTEM_PROMPT.md").write_text("Edited prompt.")

    assert await wait_until(lambda: watched.get("alpha").system_prompt == "Edited prompt.")


async def test_broken_edit_keeps_the_old_version_and_fixing_it_clears_the_error(
    watched: AgentRegistry, workspace: Path
) -> None:
    source = static_dir(workspace) / "alpha" / "agent.yaml"
    save_atomically(source, "name: alpha\nmodel:\n  provider: nobody\n  name: x\n")

    assert await wait_until(lambda: bool(watched.errors()))
    assert watched.errors()[0].startswith(".duragent/agents/alpha/agent.yaml:3:13: ")
    assert watched.get("alpha").description == "first"

    save_atomically(source, agent_yaml("alpha", "fixed"))

    assert await wait_until(lambda: not watched.errors())
    assert watched.get("alpha").description == "fixed"


async def test_new_agent_folder_appears_while_watching(watched: AgentRegistry, workspace: Path) -> None:
    write_agent(static_dir(workspace), "newcomer")

    assert await wait_until(lambda: watched.stats.loaded == 2)
    assert watched.names() == ["alpha", "newcomer"]


async def test_agents_folder_replaced_by_a_restored_copy_is_still_watched(
    watched: AgentRegistry, workspace: Path
) -> None:
    # Restoring a backup (or a deploy script) swaps the whole folder: the old one's watch is gone.
    folder = static_dir(workspace)
    folder.rename(workspace / "agents.old")
    assert await wait_until(lambda: watched.names() == [])
    shutil.copytree(workspace / "agents.old", folder)
    assert await wait_until(lambda: watched.names() == ["alpha"])

    save_atomically(folder / "alpha" / "agent.yaml", agent_yaml("alpha", "edited after the restore"))

    assert await wait_until(lambda: watched.get("alpha").description == "edited after the restore")


async def test_agents_folder_created_after_start_is_watched(workspace: Path) -> None:
    folder = static_dir(workspace)
    folder.rmdir()
    registry = AgentRegistry(make_config(workspace, "static:\n  watch: true"), env={})
    await registry.start_watching()
    try:
        write_agent(folder, "late")
        assert await wait_until(lambda: registry.names() == ["late"])

        (folder / "late" / "SYSTEM_PROMPT.md").write_text("Edited prompt.")

        assert await wait_until(lambda: registry.get("late").system_prompt == "Edited prompt.")
    finally:
        await registry.stop()


@pytest.mark.parametrize("linked", ["at start", "while watching"])
async def test_agent_folder_linked_from_elsewhere_is_watched_where_it_points(
    workspace: Path, linked: str
) -> None:
    # Agents kept in a repository of their own and linked into the workspace.
    elsewhere = write_agent(workspace / "my-agents", "alpha", "first")
    link = static_dir(workspace) / "alpha"
    if linked == "at start":
        link.symlink_to(elsewhere, target_is_directory=True)
    registry = AgentRegistry(make_config(workspace, "static:\n  watch: true"), env={})
    await registry.start_watching()
    try:
        if linked == "while watching":
            link.symlink_to(elsewhere, target_is_directory=True)
        assert await wait_until(lambda: registry.names() == ["alpha"])

        save_atomically(elsewhere / "agent.yaml", agent_yaml("alpha", "edited where it lives"))

        assert await wait_until(lambda: registry.get("alpha").description == "edited where it lives")
    finally:
        await registry.stop()


async def test_reading_agent_files_and_the_data_folder_reaches_no_watch(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A turn reads agent files and opens folders of `.duragent/`; events for those would each
    # cost watchdog's threads CPU and the GIL, only to be dropped.
    from duragent.agents import registry as registry_module

    seen: list[str] = []
    for handler in ("_StaticFolderHandler", "_FolderReplacedHandler"):
        handler_class = getattr(registry_module, handler)
        original = handler_class.dispatch
        monkeypatch.setattr(
            handler_class,
            "dispatch",
            lambda self, event, original=original: (seen.append(event.event_type), original(self, event))[1],
        )
    write_agent(static_dir(workspace), "alpha", "first")
    registry = AgentRegistry(make_config(workspace, "static:\n  watch: true"), env={})
    await registry.start_watching()
    try:
        folder = static_dir(workspace) / "alpha"
        for _ in range(20):
            (folder / "agent.yaml").read_text()
            (folder / "SYSTEM_PROMPT.md").read_bytes()
            os.listdir(workspace / ".duragent")
            os.listdir(folder)
        # an edit afterwards: its events come after any of the reads', in order
        (folder / "SYSTEM_PROMPT.md").write_text("Edited prompt.")
        assert await wait_until(lambda: registry.get("alpha").system_prompt == "Edited prompt.")
    finally:
        await registry.stop()

    assert seen
    assert set(seen) <= {"modified", "closed"}, seen


async def test_an_edit_whose_events_an_inotify_overflow_lost_is_read_all_the_same(
    watched: AgentRegistry, workspace: Path
) -> None:
    from watchdog.events import EventsLostEvent

    assert watched._observer is not None
    emitters = list(watched._observer.emitters)
    # the kernel's queue overflows: the events of what happens now never reach the registry
    lost: list[str] = []
    for emitter in emitters:
        emitter.queue_event = lambda event: lost.extend(  # type: ignore[method-assign]
            os.fsdecode(path) for path in (event.src_path, getattr(event, "dest_path", ""))
        )
    source = static_dir(workspace) / "alpha" / "agent.yaml"
    save_atomically(source, agent_yaml("alpha", "saved during the overflow"))
    assert await wait_until(lambda: str(source) in lost)
    for emitter in emitters:
        del emitter.queue_event
        # what watchdog queues once it has rebuilt its watches, one per watched folder
        emitter.queue_event(EventsLostEvent(emitter.watch.path, is_directory=True))

    assert await wait_until(lambda: watched.get("alpha").description == "saved during the overflow")


async def test_without_watch_enabled_start_watching_does_nothing(workspace: Path) -> None:
    write_agent(static_dir(workspace), "alpha", "first")
    registry = AgentRegistry(make_config(workspace, "static:\n  watch: false"), env={})
    await registry.start_watching()
    (static_dir(workspace) / "alpha" / "agent.yaml").write_text(agent_yaml("alpha", "second"))
    await asyncio.sleep(0.6)

    assert registry.get("alpha").description == "first"
    await registry.stop()


def test_the_key_an_agent_names_in_api_key_env_is_redacted_once_the_agent_is_loaded(workspace: Path) -> None:
    """`model.api_key_env` may name any variable (LLM_CREDENTIAL): its value is a secret all the
    same, and a provider's error that quotes it must not reach a session's log or git."""
    from duragent.secrets import SecretGuard

    directory = write_agent(static_dir(workspace), "alpha")
    model = "  name: gpt-4o-mini\n"
    named = agent_yaml("alpha").replace(model, model + "  api_key_env: LLM_CREDENTIAL\n")
    (directory / "agent.yaml").write_text(named)
    guard = SecretGuard()
    registry = AgentRegistry(
        make_config(workspace), env={"LLM_CREDENTIAL": "llm-key-value-9f8e7d6c"}, guard=guard
    )

    registry.get("alpha")

    assert guard.redact("Invalid key: llm-key-value-9f8e7d6c") == "Invalid key: [REDACTED:LLM_CREDENTIAL]"


def test_variables_agent_yaml_reads_are_redacted_once_the_agent_is_loaded(workspace: Path) -> None:
    """`${SOME_AUTH}` in an MCP server's args (a name that does not look secret) was expanded
    into the agent's definition but protected nowhere: a server's error quoting its command line
    reached the log, the admin API and a tool result in the clear."""
    from duragent.secrets import SecretGuard

    directory = write_agent(static_dir(workspace), "alpha")
    server = "mcp_servers:\n  - name: atlas\n    command: atlas-mcp\n    args: [--auth, '${SOME_AUTH}']\n"
    (directory / "agent.yaml").write_text(agent_yaml("alpha") + server)
    guard = SecretGuard()
    registry = AgentRegistry(
        make_config(workspace), env={"SOME_AUTH": "verysecretvalue99", "HOME": "/home/someone"}, guard=guard
    )

    registry.get("alpha")

    assert guard.redact("atlas-mcp --auth verysecretvalue99") == "atlas-mcp --auth [REDACTED:SOME_AUTH]"


def test_credentials_an_mcp_server_is_handed_by_name_are_redacted_and_plain_values_are_not(
    workspace: Path,
) -> None:
    """`env: [NOTION_AUTH]` hands a server a credential under a name that does not look secret:
    a tool result that echoed it reached the session and git. A value like a key is protected
    once the agent loads; a plain one (`GIT_AUTHOR_NAME`) is not, or every name would be."""
    from duragent.secrets import SecretGuard

    directory = write_agent(static_dir(workspace), "alpha")
    server = (
        "mcp_servers:\n  - name: notes\n    command: notes-mcp\n    env: [NOTION_AUTH, GIT_AUTHOR_NAME]\n"
    )
    (directory / "agent.yaml").write_text(agent_yaml("alpha") + server)
    guard = SecretGuard()
    env = {"NOTION_AUTH": "ntn_4f8a9b2c7d1e6f3a", "GIT_AUTHOR_NAME": "Alice Example"}
    registry = AgentRegistry(make_config(workspace), env=env, guard=guard)

    registry.get("alpha")

    assert guard.redact("auth is ntn_4f8a9b2c7d1e6f3a") == "auth is [REDACTED:NOTION_AUTH]"
    assert guard.redact("committed by Alice Example") == "committed by Alice Example"
