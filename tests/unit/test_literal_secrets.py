"""Which lines of an agent's YAML write a secret in the clear (`duragent.secrets.literal_secrets`)."""

from __future__ import annotations

from duragent.secrets import in_the_clear, literal_secrets

AGENT = """\
spec:
  model:
    api_key: "mysecretvalue-1234"
    api_key_env: OPENAI_API_KEY
    password: hunter2hunter  # the old one
  mcp:
    - token: 'abcdefghijk'
      client_secret: abcdefgh12
      apikey: abcdefghijklmnop
"""

NOT_SECRETS = """\
spec:
  model:
    api_key_env: OPENAI_API_KEY
    token: ${BOT_TOKEN}
    api_key: ${OPENAI_API_KEY:-}
    password_env: PASS
    password: short
    secret: true
    max_tokens: 4096
    token_budget: 10000000
    key: notakeyatall
    token: |
    description: my token is here
  system_prompt: "You are a test agent. Never print an api_key: value."
"""


def test_values_under_secret_keys_written_out_are_found_by_line() -> None:
    assert literal_secrets(AGENT) == [
        (3, "api_key"),
        (5, "password"),
        (7, "token"),
        (8, "client_secret"),
        (9, "apikey"),
    ]


def test_references_variable_names_and_plain_settings_are_not_secrets() -> None:
    assert literal_secrets(NOT_SECRETS) == []


def test_only_an_agents_yaml_files_are_screened() -> None:
    line = 'api_key: "mysecretvalue-1234"\n'
    assert in_the_clear("agents/helper/agent.yaml", line) == ["`api_key:` written in the clear"]
    assert in_the_clear("sys/agents/x/policy.yml", line)
    # a session's snapshot quotes the conversation: its events were screened as they were written
    assert in_the_clear("sessions/s_1/state.yaml", line) == []
    assert in_the_clear("agents/helper/prompt.md", line) == []
