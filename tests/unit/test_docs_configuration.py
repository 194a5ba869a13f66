"""docs/configuration.md documents every key of the configuration model."""

from __future__ import annotations

import re
import typing
from pathlib import Path

from pydantic import BaseModel

from duragent.config import DuragentConfig, parse_config_text

DOC = Path(__file__).parents[2] / "docs" / "configuration.md"


def config_keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    keys = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        args = typing.get_args(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            keys += config_keys(annotation, f"{prefix}{name}.")
        elif args and isinstance(args[0], type) and issubclass(args[0], BaseModel):
            # a list of sections (`routes[].match`) or an optional section (`web_search.url`)
            inside = "[]." if typing.get_origin(annotation) is list else "."
            keys += [f"{prefix}{name}", *config_keys(args[0], f"{prefix}{name}{inside}")]
        else:
            keys.append(prefix + name)
    return keys


def test_every_configuration_key_is_documented() -> None:
    documented = set(re.findall(r"`([a-z_.\[\]]+)`", DOC.read_text()))
    missing = [key for key in config_keys(DuragentConfig) if key not in documented]
    assert missing == []


def test_the_documented_example_is_valid_configuration() -> None:
    example = DOC.read_text().split("## A complete example")[1].split("```yaml")[1].split("```")[0]
    config = parse_config_text(example, env={"TELEGRAM_BOT_TOKEN": "123:abc"})
    assert config.warnings == []
    assert config.gateways.external[0].name == "telegram"
