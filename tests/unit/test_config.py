"""duragent.yaml: defaults, interpolation, and errors that say file:line:column."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from duragent.config import DuragentConfig, load_config, parse_config_text
from duragent.durations import format_duration, parse_duration
from duragent.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "duragent.yaml"
    path.write_text(text)
    return path


def test_no_config_file_gives_filesystem_defaults_under_dot_duragent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    config = load_config()
    assert config.source is None
    assert config.data_path == tmp_path / ".duragent"
    assert config.service_path("session") == tmp_path / ".duragent" / "sessions"
    assert config.service_path("memory") == tmp_path / ".duragent" / "memory"
    assert config.service_path("artifacts") == tmp_path / ".duragent" / "artifacts"
    assert config.agents_path == tmp_path / ".duragent" / "agents"
    assert config.services.session.backend == "filesystem"
    assert config.server.host == "127.0.0.1"
    assert config.session.on_disconnect == "continue"
    assert config.git.commit_debounce == timedelta(seconds=2)


def test_relative_paths_resolve_against_the_config_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    path = write(tmp_path, "data_dir: state\nservices:\n  memory: {path: notes}\n")
    config = load_config(path)
    assert config.data_path == tmp_path / "state"
    assert config.service_path("memory") == tmp_path / "notes"


def test_the_seed_deployment_examples_load() -> None:
    config = parse_config_text(
        """
server: {host: 0.0.0.0, port: 8080}
gateways:
  http: {enabled: true, port: 8080}
  cli: {enabled: false}
  external:
    - name: telegram
      command: duragent-gateway-telegram
      config:
        bot_token: ${TELEGRAM_BOT_TOKEN}
services:
  session: {backend: postgres, url: "${DATABASE_URL}"}
  memory: {backend: filesystem}
  artifact: {backend: s3, bucket: team-artifacts}
session:
  on_disconnect: continue
  max_background_runtime: 1h
agents:
  static: {path: ./.duragent/agents, watch: true}
  dynamic: {path: ./.duragent/sys/dyn_agents}
  lazy_load: true
  cache_size: 10000
admin:
  enabled: true
  token: ${DURAGENT_ADMIN_TOKEN}
""",
        env={"TELEGRAM_BOT_TOKEN": "1:x", "DATABASE_URL": "postgresql://db/x", "DURAGENT_ADMIN_TOKEN": "t"},
    )
    assert config.services.artifacts.backend == "s3"
    assert config.services.session.url == "postgresql://db/x"
    assert config.gateways.external[0].config == {"bot_token": "1:x"}
    assert config.session.max_background_runtime == timedelta(hours=1)
    assert config.agents.cache_size == 10000
    assert config.referenced_env == {"TELEGRAM_BOT_TOKEN", "DATABASE_URL", "DURAGENT_ADMIN_TOKEN"}


def test_plain_interpolated_values_take_their_yaml_type() -> None:
    config = parse_config_text("server:\n  port: ${PORT:-9090}\n  api_token: ${TOKEN:-}\n", env={})
    assert config.server.port == 9090
    assert config.server.api_token is None


def test_quoted_interpolated_values_stay_strings() -> None:
    config = parse_config_text('server:\n  api_token: "${TOKEN:-}"\n', env={})
    assert config.server.api_token == ""


@pytest.mark.parametrize("value", ["90s", "30m", "2h", "1h30m", 45])
def test_durations_accept_seconds_minutes_hours(value: object) -> None:
    config = parse_config_text(f"session:\n  max_background_runtime: {value}\n", env={})
    expected = {"90s": 90, "30m": 1800, "2h": 7200, "1h30m": 5400, 45: 45}[value]  # type: ignore[index]
    assert config.session.max_background_runtime == timedelta(seconds=expected)


@pytest.mark.parametrize("text", ["1s500ms", "1h30m", "500ms", "2d3h", "0s"])
def test_a_duration_written_back_reads_as_the_same_duration(text: str) -> None:
    """Files the runtime writes (schedules) keep what was asked: 1.5s was once written `1s`."""
    assert format_duration(parse_duration(text)) == text
    assert format_duration(parse_duration("1.5s")) == "1s500ms"


def test_missing_variable_error_names_it_and_its_location(tmp_path: Path) -> None:
    path = write(tmp_path, "server:\n  port: 8080\n  api_token: ${API_TOKEN}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert str(info.value) == (
        f"{path}:3:14: environment variable 'API_TOKEN' is not set "
        "(use ${API_TOKEN:-default} for a default)"
    )
    assert info.value.exit_code == 2


def test_invalid_choice_says_what_was_expected_and_where(tmp_path: Path) -> None:
    path = write(tmp_path, "server:\n  port: 8080\n\n\n\nsession:\n    on_disconnect: stop\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert str(info.value) == f"{path}:7:20: session.on_disconnect must be 'continue' or 'pause', got 'stop'"


def test_an_s3_endpoint_without_its_scheme_is_a_located_error(tmp_path: Path) -> None:
    """boto3 refuses it only at the first request: serve started and /readyz said ok."""
    path = write(
        tmp_path, "services:\n  artifacts:\n    backend: s3\n    bucket: b\n    endpoint_url: minio:9000\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert str(info.value) == (
        f"{path}:5:19: services.artifacts.endpoint_url: give a URL starting with http:// or https://, "
        "got 'minio:9000'"
    )


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config_text(
            "server:\n  port: high\nservices:\n  artifacts: {backend: postgres}\n"
            "session:\n  max_background_runtime: forever\n",
            env={},
        )
    messages = [str(p) for p in info.value.problems]
    assert len(messages) == 3
    assert messages[0] == "duragent.yaml:2:9: server.port must be a whole number, got 'high'"
    assert messages[1] == (
        "duragent.yaml:4:24: services.artifacts.backend must be 'filesystem' or 's3', got 'postgres'"
    )
    assert messages[2] == (
        "duragent.yaml:6:27: session.max_background_runtime: expected a duration like 90s, 30m or 2h, "
        "got 'forever'"
    )


def test_unknown_backend_is_an_error_at_its_line() -> None:
    with pytest.raises(ConfigError, match=r"duragent.yaml:3:14: services.session.backend must be"):
        parse_config_text("services:\n  session:\n    backend: mongodb\n", env={})


def test_missing_required_field_in_a_list_item_is_located() -> None:
    with pytest.raises(ConfigError, match=r"duragent.yaml:3:7: gateways.external\[0\].command is required"):
        parse_config_text("gateways:\n  external:\n    - name: telegram\n", env={})


def test_unknown_keys_are_warnings_with_a_suggestion() -> None:
    config = parse_config_text("sesion:\n  on_disconnect: pause\nserver:\n  prot: 1\n", env={})
    assert [str(w) for w in config.warnings] == [
        "duragent.yaml:1:1: unknown key 'sesion' is ignored (did you mean 'session'?)",
        "duragent.yaml:4:3: unknown key 'server.prot' is ignored (did you mean 'port'?)",
    ]
    assert config.session.on_disconnect == "continue"


def test_tabs_get_a_located_explanation(tmp_path: Path) -> None:
    path = write(tmp_path, "server:\n\tport: 8080\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert (
        str(info.value) == f"{path}:2:1: a tab character is not allowed for indentation in YAML; use spaces"
    )


def test_bad_indentation_is_located(tmp_path: Path) -> None:
    path = write(tmp_path, "server:\n  host: 127.0.0.1\n port: 8080\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert str(info.value).startswith(f"{path}:3:2: invalid YAML")
    assert "indentation" in str(info.value)


def test_a_top_level_list_is_refused() -> None:
    with pytest.raises(ConfigError, match="must be a YAML mapping, got a list"):
        parse_config_text("- a\n- b\n", env={})


def test_duplicate_keys_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"duragent.yaml:3:1: duplicate key 'server'"):
        parse_config_text("server: {}\ndata_dir: x\nserver: {}\n", env={})


def test_config_env_var_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "server:\n  port: 7000\n")
    config = load_config(env={"DURAGENT_CONFIG": str(path)})
    assert config.server.port == 7000


def test_an_explicit_missing_config_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such configuration file"):
        load_config(tmp_path / "nope.yaml", env={})


def test_data_dir_override_wins(tmp_path: Path) -> None:
    path = write(tmp_path, "data_dir: a\n")
    config = load_config(path, data_dir=tmp_path / "b", env={})
    assert config.data_path == tmp_path / "b"
    assert config.source == path


def test_every_section_has_a_default() -> None:
    config = DuragentConfig()
    assert config.http_port is None  # send/chat start a server on a free port; serve takes 8080
    assert config.dynamic_agents_path.name == "dyn_agents"
