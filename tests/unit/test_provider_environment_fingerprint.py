"""What a terminal client reads from the running server's provider environment: which variables
its shell sets to something new (a reason to restart the server), and which the server has that
the shell does not set (lost by a restart), from keyed hashes only."""

from __future__ import annotations

from duragent.client.runfile import EnvFingerprint

NAMES = ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "OPENROUTER_API_KEY")
SERVER = {"OPENAI_API_KEY": "sk-old", "ANTHROPIC_API_KEY": "sk-ant"}


def test_a_shell_setting_a_new_value_or_a_new_variable_is_a_change() -> None:
    kept = EnvFingerprint.of(NAMES, SERVER)
    assert kept.changed_in({**SERVER, "OPENAI_API_KEY": "sk-new"}) == ("OPENAI_API_KEY",)
    assert kept.changed_in({**SERVER, "OPENROUTER_API_KEY": "sk-or"}) == ("OPENROUTER_API_KEY",)
    assert kept.changed_in(SERVER) == ()


def test_a_shell_without_a_variable_the_server_has_is_no_change_but_would_lose_it() -> None:
    kept = EnvFingerprint.of(NAMES, SERVER)
    assert kept.changed_in({}) == ()
    assert kept.unset_in({"OPENAI_API_KEY": "sk-new"}) == ("ANTHROPIC_API_KEY",)


def test_the_record_keeps_hashes_never_values_and_reads_back_the_same() -> None:
    kept = EnvFingerprint.of(NAMES, SERVER)
    record = kept.as_json()
    assert "sk-old" not in str(record)
    assert "sk-ant" not in str(record)
    again = EnvFingerprint(tuple(record["names"]), record["salt"], record["digest"], tuple(record["each"]))
    assert again.changed_in({**SERVER, "OPENAI_API_KEY": "sk-new"}) == ("OPENAI_API_KEY",)


def test_a_run_file_from_before_the_per_variable_hashes_compares_the_whole() -> None:
    whole = EnvFingerprint.of(NAMES, SERVER)
    old = EnvFingerprint(whole.names, whole.salt, whole.digest)
    assert old.changed_in(SERVER) == ()
    assert old.changed_in({}) == NAMES
    assert old.unset_in({}) == ()
