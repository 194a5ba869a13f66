"""JSON Schemas of agent.yaml and duragent.yaml, generated from the pydantic models.

The generated files ship inside the package (`agent.schema.json`, `config.schema.json`) so
editors can validate and complete both files through a `# yaml-language-server: $schema=...`
modeline; `python -m duragent.cli.schema --write` regenerates them after a model changes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

SchemaName = Literal["agent", "config"]
SCHEMA_NAMES: tuple[SchemaName, ...] = ("agent", "config")
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
SCHEMAS_DIR = Path(__file__).parent


def schema_filename(name: SchemaName) -> str:
    """`agent` -> `agent.schema.json`."""
    return f"{name}.schema.json"


def shipped_schema_text(name: SchemaName) -> str:
    """The schema file shipped in the package, as text (no pydantic import needed)."""
    return (SCHEMAS_DIR / schema_filename(name)).read_text(encoding="utf-8")


def render_schema(name: SchemaName) -> str:
    """The schema generated from the current models, formatted exactly as the shipped file."""
    schema = build_agent_schema() if name == "agent" else build_config_schema()
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def write_schemas(directory: Path = SCHEMAS_DIR) -> list[Path]:
    """Write every generated schema into `directory`; return the files written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name in SCHEMA_NAMES:
        path = directory / schema_filename(name)
        path.write_text(render_schema(name), encoding="utf-8")
        written.append(path)
    return written


def build_config_schema() -> dict[str, Any]:
    """JSON Schema of duragent.yaml."""
    from duragent.config import DuragentConfig

    body = DuragentConfig.model_json_schema(by_alias=True)
    services = body["$defs"]["ServicesConfig"]["properties"]
    services["artifact"] = {**services["artifacts"], "description": "The seed's spelling of `artifacts`."}
    return {"$schema": JSON_SCHEMA_DIALECT, **body, "title": "duragent.yaml"}


def build_agent_schema() -> dict[str, Any]:
    """JSON Schema of agent.yaml: the full form or the flat shorthand (`anyOf`)."""
    from duragent.agents.spec import BUILTIN_TOOLS, AgentDocument

    full = AgentDocument.model_json_schema(by_alias=True)
    defs: dict[str, Any] = full.pop("$defs")
    _accept_model_shortcuts(defs, list(BUILTIN_TOOLS))
    model = defs["ModelSpec"]["properties"]
    model["max_tokens"] = {**model["max_output_tokens"], "description": "Same as max_output_tokens."}
    defs["AgentDocument"] = full
    defs["AgentShorthand"] = {
        "title": "AgentShorthand",
        "description": "The flat form: metadata and spec keys side by side at the top level.",
        "type": "object",
        "properties": {**defs["AgentMetadata"]["properties"], **defs["AgentSpec"]["properties"]},
        "required": ["name", "model"],
    }
    return {
        "$schema": JSON_SCHEMA_DIALECT,
        "title": "agent.yaml",
        "description": "A Duragent agent definition (apiVersion duragent/v1alpha1, kind Agent).",
        "anyOf": [{"$ref": "#/$defs/AgentDocument"}, {"$ref": "#/$defs/AgentShorthand"}],
        "$defs": defs,
    }


def _accept_model_shortcuts(defs: dict[str, Any], builtin_tools: list[str]) -> None:
    # The models accept a few shortcuts before validation (`memory: true`, `tools: [bash]`)
    # that pydantic cannot see in their types; without these the editor would flag them.
    spec = defs["AgentSpec"]["properties"]
    spec["memory"]["anyOf"].insert(1, {"type": "boolean"})
    tool_item = {
        "anyOf": [
            {"type": "string", "enum": builtin_tools},
            {
                "type": "object",
                "properties": {
                    "type": {"enum": ["builtin", "cli"]},
                    "name": {"type": "string"},
                    "command": {"type": "string"},
                    "description": {"type": "string"},
                },
                "required": ["name"],
            },
        ]
    }
    spec["tools"] = {
        "anyOf": [{"$ref": "#/$defs/ToolsSpec"}, {"type": "array", "items": tool_item}],
        "description": "Builtin tool names and CLI tools, as a mapping or a plain list.",
    }
    # Unknown builtin names are load errors, so the editor may offer exactly the known ones.
    defs["ToolsSpec"]["properties"]["builtin"]["items"] = {"type": "string", "enum": builtin_tools}
