"""The JSON Schemas shipped for editors: current with the models, and true to what loads."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from duragent.agents.loader import load_agent
from duragent.agents.spec import AgentSpec, ModelSpec
from duragent.cli import build_app
from duragent.config import DuragentConfig, load_config
from duragent.schemas import SCHEMA_NAMES, SCHEMAS_DIR, render_schema, schema_filename, shipped_schema_text

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
REGENERATE = "run `python -m duragent.cli.schema --write` (and `--write examples/.duragent/schemas`)"


def schema(name: str) -> dict[str, Any]:
    """A shipped schema, parsed."""
    return json.loads((SCHEMAS_DIR / f"{name}.schema.json").read_text())


def jsonschema_validator(name: str) -> Any:
    """A validator for a shipped schema (jsonschema comes with the test extras through moto)."""
    jsonschema = pytest.importorskip("jsonschema")
    return jsonschema.Draft202012Validator(schema(name))


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_shipped_schema_files_match_the_models(name: str) -> None:
    assert shipped_schema_text(name) == render_schema(name), f"{schema_filename(name)} is stale: {REGENERATE}"


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_example_workspace_schema_copies_match_the_shipped_ones(name: str) -> None:
    copy = EXAMPLES / ".duragent" / "schemas" / schema_filename(name)
    assert copy.read_text() == shipped_schema_text(name), f"{copy} is stale: {REGENERATE}"


def test_agent_schema_offers_every_spec_and_model_field_in_both_forms() -> None:
    agent = schema("agent")
    defs = agent["$defs"]

    assert agent["anyOf"] == [{"$ref": "#/$defs/AgentDocument"}, {"$ref": "#/$defs/AgentShorthand"}]
    assert defs["AgentDocument"]["required"] == ["metadata", "spec"]
    assert set(defs["AgentSpec"]["properties"]) == set(AgentSpec.model_fields)
    assert set(ModelSpec.model_fields) <= set(defs["ModelSpec"]["properties"])
    assert defs["ModelSpec"]["required"] == ["provider", "name"]
    shorthand = defs["AgentShorthand"]
    assert shorthand["required"] == ["name", "model"]
    assert {"name", "description", "labels", *AgentSpec.model_fields} <= set(shorthand["properties"])


def test_config_schema_offers_every_top_level_key_and_the_artifact_alias() -> None:
    config = schema("config")

    assert set(config["properties"]) == set(DuragentConfig.model_fields)
    assert {"session", "memory", "artifacts", "artifact"} <= set(
        config["$defs"]["ServicesConfig"]["properties"]
    )


@pytest.mark.parametrize("agent", ["assistant", "code-supervisor"])
def test_example_agents_load_and_validate_against_the_agent_schema(agent: str) -> None:
    folder = EXAMPLES / ".duragent" / "agents" / agent
    loaded, warnings = load_agent(folder, env={})

    assert loaded.name == agent
    assert warnings == []
    errors = list(
        jsonschema_validator("agent").iter_errors(yaml.safe_load((folder / "agent.yaml").read_text()))
    )
    assert errors == []


def test_example_config_loads_and_validates_against_the_config_schema() -> None:
    config = load_config(EXAMPLES / "duragent.yaml", env={})

    assert config.warnings == []
    assert config.agents_path == EXAMPLES / ".duragent" / "agents"
    # The schema sees the file after ${VAR} expansion, as Duragent does.
    data = config.model_dump(mode="json", by_alias=True, exclude_unset=True)
    assert list(jsonschema_validator("config").iter_errors(data)) == []


def test_agent_written_from_the_template_validates_against_the_agent_schema(tmp_path: Path) -> None:
    from duragent.scaffold import write_agent

    write_agent(tmp_path, "helper", provider="openai", model="gpt-4o-mini")
    data = yaml.safe_load((tmp_path / "helper" / "agent.yaml").read_text())

    assert list(jsonschema_validator("agent").iter_errors(data)) == []


def test_agent_schema_accepts_the_shortcuts_the_loader_accepts_and_rejects_a_missing_model() -> None:
    validator = jsonschema_validator("agent")

    assert validator.is_valid({"name": "a", "model": {"provider": "demo", "name": "d"}, "memory": True})
    assert validator.is_valid({"name": "a", "model": {"provider": "demo", "name": "d"}, "tools": ["bash"]})
    assert not validator.is_valid({"name": "a", "description": "no model"})
    assert not validator.is_valid({"name": "a", "model": {"provider": "gpt", "name": "d"}})


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_schema_command_prints_the_shipped_schema(name: str) -> None:
    result = CliRunner().invoke(build_app(), ["schema", name])

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == schema(name)


def test_schema_generator_writes_both_schemas_into_a_folder(tmp_path: Path) -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "duragent.cli.schema", "--write", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )

    assert completed.returncode == 0, completed.stderr
    for name in SCHEMA_NAMES:
        assert (tmp_path / schema_filename(name)).read_text() == shipped_schema_text(name)


def test_config_template_validates_against_the_config_schema(tmp_path: Path) -> None:
    from duragent.scaffold import template_text

    (tmp_path / "duragent.yaml").write_text(template_text("duragent.yaml"))
    config = load_config(tmp_path / "duragent.yaml", env={})

    assert config.warnings == []
    data = config.model_dump(mode="json", by_alias=True, exclude_unset=True)
    assert list(jsonschema_validator("config").iter_errors(data)) == []


def test_example_daily_memory_file_is_in_the_seed_format() -> None:
    from datetime import date

    from duragent.memory.markdown import parse_daily

    text = (EXAMPLES / ".duragent" / "memory" / "assistant" / "2025-12-15.md").read_text()
    entries = parse_daily(text, date(2025, 12, 15))

    assert [(entry.section, entry.text) for entry in entries][::2] == [
        ("decision", "Chose Telegram as primary interface"),
        ("preference", "User prefers bullet points"),
        ("fact", "User's blog: example.com"),
    ]
    assert len(entries) == 6
