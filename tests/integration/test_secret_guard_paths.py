"""The secret guard on the write paths it did not cover: MEMORY.md (reflect), world memory,
server logs and the admin API's gateway errors, and key shapes glued to other text.

Secrets are planted (environment values and key-shaped strings), then the data directory's
tree and `git log -p --all` are searched for them.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from duragent.config import load_config
from duragent.scaffold import ProviderChoice, init_workspace
from duragent.secrets import SecretGuard, redact_logs
from duragent.workspace import Workspace

ENV_SECRET = "env-secret-value-0123456789"
TELEGRAM = "1234567890:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw1"
SHAPES = {
    "OpenAI": "sk-abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUV0123",
    "OpenAI project": "sk-proj-abcdefghijklmnopqrstuvwx0123",
    "Anthropic": "sk-ant-api03-abcdefghijklmnopqrstuvwx0123",
    "AWS": "AKIAABCDEFGHIJKLMNOP",
    "GitHub classic": "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
    "GitHub fine-grained": "github_pat_11ABCDEFG0123456789_abcdefghijklmnop",
    "Slack": "xoxb-1234567890-abcdefghijkl",
    "Telegram": TELEGRAM,
}
#: Where a key hides in text: alone, after `=`, URL-encoded after `%3D`, glued to a word, in a URL.
CONTEXTS = ["{}", "key={}", "q=a%3D{}", "token{}", "https://api.example.test/bot{}/getMe"]


@pytest.mark.parametrize("kind", list(SHAPES))
@pytest.mark.parametrize("context", CONTEXTS)
def test_key_shapes_are_found_in_every_context(kind: str, context: str) -> None:
    secret = SHAPES[kind]
    text = f"before {context.format(secret)} after"

    redacted = SecretGuard().redact(text)

    assert secret not in redacted
    assert "[REDACTED:" in redacted


@pytest.mark.parametrize(
    "text", ["risk-assessment-framework-v2", "12:30:00", "v2:abcdefghijklmnopqrstuvwxyz0123"]
)
def test_look_alikes_stay(text: str) -> None:
    assert SecretGuard().redact(text) == text


def planted() -> str:
    lines = [
        f"- the {kind} key: {context.format(secret)}"
        for kind, secret in SHAPES.items()
        for context in CONTEXTS
    ]
    return "# Notes\n" + "\n".join(lines) + f"\n- env: {ENV_SECRET}\n"


async def test_memory_md_and_world_memory_never_store_a_secret(tmp_path: Path) -> None:
    init_workspace(tmp_path, provider=ProviderChoice("demo", "demo", "tests"))
    (tmp_path / "duragent.yaml").write_text(
        "data_dir: .duragent\ngit:\n  commit_debounce: 50ms\n  max_commit_delay: 200ms\n"
    )
    config = load_config(tmp_path / "duragent.yaml")
    workspace = Workspace(config, env={"MY_SERVICE_TOKEN": ENV_SECRET})
    try:
        await workspace.stores.memory.write_long_term("assistant", planted())
        await workspace.stores.memory.write_world("household", planted())
        committer = workspace.committer
        assert committer is not None
        await asyncio.to_thread(committer.flush, 10.0)
    finally:
        await workspace.close()
    data = tmp_path / ".duragent"
    tree = "\n".join(
        path.read_text(errors="replace")
        for path in data.rglob("*")
        if path.is_file() and ".git" not in path.parts
    )
    history = await asyncio.to_thread(
        subprocess.run, ["git", "log", "-p", "--all"], cwd=data, capture_output=True, text=True, check=True
    )
    assert "MEMORY.md" in history.stdout
    assert "world/household.md" in history.stdout
    for secret in [*SHAPES.values(), ENV_SECRET]:
        assert secret not in tree
        assert secret not in history.stdout
    assert "[REDACTED:MY_SERVICE_TOKEN]" in (data / "memory" / "assistant" / "MEMORY.md").read_text()


def test_server_logs_never_show_a_bot_token(caplog: pytest.LogCaptureFixture) -> None:
    root = logging.getLogger()
    handler = logging.StreamHandler()
    records: list[str] = []
    handler.emit = lambda record: records.append(handler.format(record))  # type: ignore[method-assign]
    root.addHandler(handler)
    undo = redact_logs(SecretGuard({"TELEGRAM_BOT_TOKEN": TELEGRAM}))
    try:
        logging.getLogger("duragent.gateways").warning(
            "plugin said: <html>404 for https://api.telegram.org/bot%s/getUpdates</html>", TELEGRAM
        )
    finally:
        undo()
        root.removeHandler(handler)
    assert records
    assert TELEGRAM not in records[-1]
    assert "[REDACTED:TELEGRAM_BOT_TOKEN]" in records[-1]


def test_an_agent_deployed_with_a_secret_in_its_prompt_is_refused_and_nothing_is_written(
    tmp_path: Path,
) -> None:
    from duragent.agents.registry import AgentRegistry
    from duragent.errors import ConfigError

    init_workspace(tmp_path, provider=ProviderChoice("demo", "demo", "tests"))
    config = load_config(tmp_path / "duragent.yaml")
    registry = AgentRegistry(config, guard=SecretGuard({"MY_SERVICE_TOKEN": ENV_SECRET}))
    scaffolded = tmp_path / ".duragent" / "agents" / "assistant"
    files = {p.name: p.read_text() for p in scaffolded.iterdir() if p.is_file()}
    files["agent.yaml"] = files["agent.yaml"].replace("name: assistant", "name: deployed")

    for secret in (SHAPES["Anthropic"], ENV_SECRET):
        with pytest.raises(ConfigError) as refused:
            registry.deploy(
                "deployed",
                {**files, "SYSTEM_PROMPT.md": f"You help.\nUse the key {secret}.\n"},
            )
        (problem,) = refused.value.problems
        assert str(problem.location) == "SYSTEM_PROMPT.md:2"
        assert "contains a secret" in problem.message
        assert secret not in str(refused.value)
    assert not (config.dynamic_agents_path / "deployed").exists()
    registry.deploy("deployed", {**files, "SYSTEM_PROMPT.md": "You help, naming no key.\n"})
    assert (config.dynamic_agents_path / "deployed" / "SYSTEM_PROMPT.md").is_file()


@pytest.mark.parametrize("kind", ["text", "binary"])
async def test_an_artifact_holding_a_secret_is_kept_on_disk_but_never_committed(
    tmp_path: Path, kind: str
) -> None:
    from duragent.stores.base import ArtifactMeta

    # a binary artifact (git sees a NUL byte and would diff it as "Binary files differ") is
    # screened as well as a text one
    wrap = (
        (lambda text: text) if kind == "text" else (lambda text: "\x89PNG\r\n\x1a\n\x00\x00" + text + "\x00")
    )

    init_workspace(tmp_path, provider=ProviderChoice("demo", "demo", "tests"))
    (tmp_path / "duragent.yaml").write_text(
        "data_dir: .duragent\ngit:\n  commit_debounce: 50ms\n  max_commit_delay: 200ms\n"
    )
    workspace = Workspace(load_config(tmp_path / "duragent.yaml"), env={"MY_SERVICE_TOKEN": ENV_SECRET})

    async def chunks(text: str) -> AsyncIterator[bytes]:
        yield text.encode()

    try:
        artifacts = workspace.stores.artifacts
        await artifacts.put("assistant", "notes.txt", chunks(wrap(planted())), ArtifactMeta("text/plain"))
        await artifacts.put(
            "assistant", "clean.txt", chunks("nothing secret here\n"), ArtifactMeta("text/plain")
        )
        committer = workspace.committer
        assert committer is not None
        await asyncio.to_thread(committer.flush, 10.0)
    finally:
        await workspace.close()
    data = tmp_path / ".duragent"
    history = await asyncio.to_thread(
        subprocess.run, ["git", "log", "-p", "--all"], cwd=data, capture_output=True, text=True, check=True
    )
    committed = await asyncio.to_thread(
        subprocess.run,
        ["git", "log", "--all", "--name-only", "--format="],
        cwd=data,
        capture_output=True,
        text=True,
    )
    assert "artifacts/assistant/clean.txt" in committed.stdout.splitlines()
    assert "artifacts/assistant/notes.txt" not in committed.stdout.splitlines()
    for secret in [*SHAPES.values(), ENV_SECRET]:
        assert secret not in history.stdout
    assert SHAPES["AWS"] in (data / "artifacts" / "assistant" / "notes.txt").read_text()
