"""A command nobody approved cannot point the data repository's git at a configuration it wrote.

Git reads its configuration, hooks and `info/` from the folder `.git/commondir` names, not from
`.git/` itself. A script an auto-allowed command runs (`sh script.sh`) can write that file
without naming it on the command line; left in place, the server's next commit would read the
script's configuration (a filter every file it adds goes through) and run it, with the server's environment.
"""

from __future__ import annotations

from pathlib import Path

from duragent.testing.fake_llm import FakeLLMServer
from tests.e2e.server_harness import ApiFactory
from tests.e2e.unasked_script import commits_touching, run_unasked_script
from tests.waiting import until

REDIRECT = """\
cp -r ../../.git evil
git config -f evil/config filter.agents.clean "$PWD/clean.sh"
printf '* filter=agents\\n' > evil/info/attributes
printf '%s\\n' "$PWD/evil" > ../../.git/commondir
"""


async def test_a_commondir_written_by_an_unasked_script_is_undone_before_the_server_commits(
    start_api: ApiFactory, fake_llm: FakeLLMServer, tmp_path: Path
) -> None:
    run = await run_unasked_script(start_api, fake_llm, tmp_path, REDIRECT)

    assert (run.work / "evil" / "config").is_file(), "the script ran"
    assert not (run.data / ".git" / "commondir").exists()
    assert "duragent undid this batch's change to" in run.result
    # the session's events are committed by the data repository's own configuration
    await until(
        lambda: bool(commits_touching(run.data, f"sessions/{run.session_id}")) or run.filter_ran.exists(),
        within=20,
    )
    assert not run.filter_ran.exists(), "the server's git ran a program the agent's script configured"


async def test_no_commit_reads_a_git_configuration_a_running_command_wrote(
    start_api: ApiFactory, fake_llm: FakeLLMServer, tmp_path: Path
) -> None:
    """The undo comes when the batch ends: the server's commits wait for it (the session's own
    events are due to be committed while the command still runs)."""
    # a long command: it keeps running well past the harness's 500 ms max_commit_delay
    run = await run_unasked_script(start_api, fake_llm, tmp_path, REDIRECT + "sleep 2\n")

    assert not (run.data / ".git" / "commondir").exists()
    await until(
        lambda: bool(commits_touching(run.data, f"sessions/{run.session_id}")) or run.filter_ran.exists(),
        within=20,
    )
    assert not run.filter_ran.exists(), "a commit made while the command ran used the configuration it wrote"
