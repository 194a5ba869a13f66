"""The secret guard: configured values and key-shaped strings never reach disk or git."""

from __future__ import annotations

import json

import pytest

from duragent.config import parse_config_text
from duragent.secrets import SecretGuard, looks_secret

OPENAI_KEY = "sk-proj-Ab3dEf6hIj9kLmNoPqRsTuVw"
ANTHROPIC_KEY = "sk-ant-api03-Zy8xWv7uTs6rQp5oNm4l"
SLACK_TOKEN = "xoxb-1234567890-abcdefABCDEF"
TELEGRAM_TOKEN = "123456789:AAEhBP0av28Zr0j3Cp-6ZxNMlq_wXyZ12345"
AWS_KEY = "AKIAIOSFODNN7EXAMPLE"
GITHUB_TOKEN = "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"


@pytest.mark.parametrize(
    ("secret", "name"),
    [
        (OPENAI_KEY, "API_KEY"),
        (ANTHROPIC_KEY, "API_KEY"),
        (SLACK_TOKEN, "SLACK_TOKEN"),
        (TELEGRAM_TOKEN, "TELEGRAM_TOKEN"),
        (AWS_KEY, "AWS_ACCESS_KEY"),
        (GITHUB_TOKEN, "GITHUB_TOKEN"),
    ],
)
def test_key_shaped_strings_are_redacted_with_their_kind(secret: str, name: str) -> None:
    guard = SecretGuard()
    text = f"my key is {secret}, please use it"
    assert guard.redact(text) == f"my key is [REDACTED:{name}], please use it"
    assert guard.find(text) == [name]


@pytest.mark.parametrize(
    "text",
    [
        "a risk-assessment-for-the-quarter document",
        "task-0123456789abcdefghij is done",
        "call me at 12:30 or at 555-123-4567",
        "AKIA is a prefix, AKIAshort is not a key",
        "timestamps like 2026-11-26T10:00:00Z and seq 123456",
    ],
)
def test_ordinary_text_is_left_alone(text: str) -> None:
    guard = SecretGuard({"OPENAI_API_KEY": OPENAI_KEY})
    assert guard.redact(text) == text
    assert guard.find(text) == []


def test_configured_values_are_redacted_with_the_variable_name() -> None:
    guard = SecretGuard({"DATABASE_PASSWORD": "correct-horse-battery", "PORT": "8080"})
    text = "connect with correct-horse-battery on 8080"
    assert guard.redact(text) == "connect with [REDACTED:DATABASE_PASSWORD] on 8080"
    assert guard.find(text) == ["DATABASE_PASSWORD"]


def test_a_value_read_from_a_file_with_its_line_break_is_found_without_it() -> None:
    """A key set from a file (`OPENAI_API_KEY=$(cat key.txt)`, a Kubernetes secret) keeps the
    line break; the provider sends the key without it, and that is how a tool prints it."""
    guard = SecretGuard({"OPENAI_API_KEY": "sk-live-0123456789abcdef\n"})
    printed = "OPENAI_API_KEY=sk-live-0123456789abcdef;"
    assert guard.redact(printed) == "OPENAI_API_KEY=[REDACTED:OPENAI_API_KEY];"


def test_values_shorter_than_eight_characters_are_not_treated_as_secrets() -> None:
    guard = SecretGuard({"SHORT_TOKEN": "abc123", "EMPTY_TOKEN": ""})
    assert guard.redact("abc123 everywhere") == "abc123 everywhere"
    assert guard.secret_names == []


def test_a_value_written_inside_a_json_string_is_found_in_its_escaped_form() -> None:
    secret = 'pa"ss\\word-with-quote'
    guard = SecretGuard({"DB_PASSWORD": secret})
    line = json.dumps({"payload": {"text": f"the password is {secret}"}})
    assert secret not in line  # JSON escaped it
    assert guard.find(line) == ["DB_PASSWORD"]
    assert "word-with-quote" not in guard.redact(line)


def test_a_value_containing_another_is_redacted_whole() -> None:
    guard = SecretGuard({"SHORT_SECRET": "abcdefgh", "LONG_SECRET": "abcdefgh-ijklmnop"})
    assert guard.redact("x abcdefgh-ijklmnop y") == "x [REDACTED:LONG_SECRET] y"


def test_redact_value_reaches_strings_inside_nested_payloads_and_keeps_other_types() -> None:
    guard = SecretGuard({"MY_TOKEN": "tok-1234567890"})
    payload = {
        "text": "use tok-1234567890",
        "args": ["--key", OPENAI_KEY, 3, None],
        "nested": {"pair": ("tok-1234567890", True)},
        "count": 7,
    }
    assert guard.redact_value(payload) == {
        "text": "use [REDACTED:MY_TOKEN]",
        "args": ["--key", "[REDACTED:API_KEY]", 3, None],
        "nested": {"pair": ("[REDACTED:MY_TOKEN]", True)},
        "count": 7,
    }
    assert payload["text"] == "use tok-1234567890"  # the original is not modified


def test_from_config_takes_credentials_the_workspaces_mcp_servers_are_handed_by_name() -> None:
    env = {"NOTION_AUTH": "ntn_4f8a9b2c7d1e6f3a", "GIT_AUTHOR_NAME": "Alice Example"}
    config = parse_config_text(
        "mcp_servers:\n  - name: notes\n    command: notes-mcp\n    env: [NOTION_AUTH, GIT_AUTHOR_NAME]\n",
        env=env,
    )
    guard = SecretGuard.from_config(config, env=env)
    assert guard.secret_names == ["NOTION_AUTH"]
    assert guard.redact("ntn_4f8a9b2c7d1e6f3a by Alice Example") == "[REDACTED:NOTION_AUTH] by Alice Example"


def test_a_variable_only_a_storage_address_reads_is_shown_but_for_its_password() -> None:
    """A presigned artifact URL carries the endpoint, bucket and region: redacted, it leads nowhere."""
    env = {
        "S3_ENDPOINT_URL": "http://minio.internal:9000",
        "S3_BUCKET": "prod-artifacts",
        "AWS_REGION": "eu-central-1",
        "DATABASE_URL": "postgresql://app:db-password-6@db.internal/duragent",
        "PG_URL_BY_QUERY": "postgresql://db.internal/duragent?user=app&password=query-password-7",
        "ALSO_ELSEWHERE": "tenant-42-artifacts",
    }
    config = parse_config_text(
        "services:\n"
        "  session:\n    backend: postgres\n    url: ${DATABASE_URL}\n"
        "  memory:\n    backend: postgres\n    url: ${PG_URL_BY_QUERY}\n"
        "  artifacts:\n    backend: s3\n    bucket: ${S3_BUCKET}\n    region: ${AWS_REGION}\n"
        "    endpoint_url: ${S3_ENDPOINT_URL}\n    prefix: ${ALSO_ELSEWHERE}\n"
        "server:\n  host: ${ALSO_ELSEWHERE}\n",
        env=env,
    )
    guard = SecretGuard.from_config(config, env=env)

    url = (
        "http://minio.internal:9000/prod-artifacts/a.md?X-Amz-Credential=AKIA%2F20261207%2Feu-central-1%2Fs3"
    )
    assert guard.redact(url) == url
    assert guard.redact(env["DATABASE_URL"]) == "postgresql://[REDACTED:DATABASE_URL]/duragent"
    assert guard.redact(env["PG_URL_BY_QUERY"]) == "[REDACTED:PG_URL_BY_QUERY]"
    # read by a setting that is not an address too: all of it stays secret
    assert guard.redact(env["ALSO_ELSEWHERE"]) == "[REDACTED:ALSO_ELSEWHERE]"


@pytest.mark.parametrize(
    ("url_setting", "value", "hidden"),
    [
        # only part of the URL: the variable may be the password itself
        ("postgresql://app:${DB_PART}@db/duragent", "hunter2-long-pw", "hunter2-long-pw"),
        # a short password: the user, password and host go together
        ("${DB_PART}", "postgresql://app:hunter2@db/duragent", "app:hunter2@db"),
        ("${DB_PART}", "https://minio-token-0123456789@minio.internal", "minio-token-0123456789"),
        ("${DB_PART}", "postgresql://db/duragent?sslpassword=abc%2Fdef%2B123", "abc%2Fdef%2B123"),
        ("${DB_PART}", "http://minio.internal:9000/?X-Amz-Security-Token=tok-0123456789", "tok-0123456789"),
    ],
)
def test_what_may_carry_a_credential_in_an_address_stays_secret(
    url_setting: str, value: str, hidden: str
) -> None:
    env = {"DB_PART": value}
    config = parse_config_text(
        f"services:\n  session:\n    backend: postgres\n    url: {url_setting}\n", env=env
    )
    guard = SecretGuard.from_config(config, env=env)

    assert hidden not in guard.redact(f"connecting to {config.services.session.url}")


def test_from_config_takes_referenced_variables_and_secret_looking_names() -> None:
    env = {
        "MODEL_ENDPOINT": "https://llm.internal.example/v1",
        "MY_SERVICE_API_KEY": "service-key-value-1",
        "SLACK_BOT_TOKEN": "slack-token-value-2",
        "AWS_SECRET_ACCESS_KEY": "aws-secret-value-3",
        "DB_PASSWORD_FILE_CONTENT": "pw-value-value-4",
        "HOME": "/home/someone",
        "EDITOR": "vim-but-long-enough",
    }
    config = parse_config_text(
        "server:\n  api_token: literal-admin-token-5\n  host: ${MODEL_ENDPOINT}\ndata_dir: ${HOME}/data\n",
        env=env,
    )
    guard = SecretGuard.from_config(config, env=env)
    assert guard.secret_names == [
        "AWS_SECRET_ACCESS_KEY",
        "DB_PASSWORD_FILE_CONTENT",
        "MODEL_ENDPOINT",
        "MY_SERVICE_API_KEY",
        "SERVER_API_TOKEN",
        "SLACK_BOT_TOKEN",
    ]
    assert guard.redact("files in /home/someone/data") == "files in /home/someone/data"
    assert guard.redact("EDITOR=vim-but-long-enough") == "EDITOR=vim-but-long-enough"


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("OPENAI_API_KEY", True),
        ("API_KEY", True),
        ("TELEGRAM_BOT_TOKEN", True),
        ("CLIENT_SECRET", True),
        ("AWS_SECRET_ACCESS_KEY", True),
        ("PGPASSWORD", True),
        ("OPENAI_KEY", True),
        ("AZURE_OPENAI_KEY", True),
        ("KEY", True),
        ("SECRETS_DIR", False),
        ("KEYBOARD", False),
        ("MONKEY_COUNT", False),
        ("TOKENIZER", False),
        ("PATH", False),
    ],
)
def test_secret_looking_variable_names(name: str, secret: bool) -> None:
    assert looks_secret(name) is secret


def test_a_value_protected_later_is_redacted_from_then_on() -> None:
    guard = SecretGuard({"SERVER_API_TOKEN": "server-token-1234"})
    assert guard.redact("key llm-key-value-9f8e7d6c") == "key llm-key-value-9f8e7d6c"

    guard.also_protect({"LLM_CREDENTIAL": "llm-key-value-9f8e7d6c", "SHORT": "abc"})

    assert guard.redact("key llm-key-value-9f8e7d6c and server-token-1234") == (
        "key [REDACTED:LLM_CREDENTIAL] and [REDACTED:SERVER_API_TOKEN]"
    )
    assert guard.secret_names == ["LLM_CREDENTIAL", "SERVER_API_TOKEN"]


def test_a_variable_named_only_like_a_key_is_secret_when_its_value_looks_like_one() -> None:
    """OPENAI_KEY holds a key; PRIMARY_KEY=created_at names a column, and redacting every
    `created_at` would garble sessions and refuse commits of files that mention it."""
    from duragent.config import DuragentConfig

    env = {
        "OPENAI_KEY": "fake-llm-key-value-9f8e7d6c",
        "PRIMARY_KEY": "created_at_column",
        "DEPLOY_TOKEN": "plain-words-only",
    }
    guard = SecretGuard.from_config(DuragentConfig.model_validate({}), env)
    assert guard.redact("key fake-llm-key-value-9f8e7d6c") == "key [REDACTED:OPENAI_KEY]"
    assert guard.redact("order by created_at_column") == "order by created_at_column"
    assert guard.redact("with plain-words-only") == "with [REDACTED:DEPLOY_TOKEN]"
