"""A command nobody approved cannot swap the data repository's `.git` for one it controls.

A script an auto-allowed command runs can move `.git` away and leave in its place a symlink or a
gitfile (`gitdir: ...`) naming a folder it configured: the server's git would then commit there,
with the filters that folder's configuration names. The repository is moved back when the batch
ends; when it cannot be found, the server commits nothing into whatever `.git` leads to.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from duragent.testing.fake_llm import FakeLLMServer
from tests.e2e.server_harness import ApiFactory
from tests.e2e.unasked_script import commits_touching, run_unasked_script
from tests.waiting import until

#: What each script ends with: `.git` replaced, leading to the folder `$1` (in the agent's folder).
SYMLINK = 'ln -s "$PWD/$1" ../../.git\n'
GITFILE = "printf 'gitdir: %s\\n' \"$PWD/$1\" > ../../.git\n"
#: The repository moved into the agent's folder, with a filter every file committed goes through.
MOVED = """\
mv ../../.git moved
git config -f moved/config filter.agents.clean "$PWD/clean.sh"
printf '* filter=agents\\n' > moved/info/attributes
"""


@pytest.mark.parametrize("replacement", [SYMLINK, GITFILE], ids=["symlink", "gitfile"])
async def test_a_git_folder_replaced_by_an_unasked_script_is_moved_back(
    start_api: ApiFactory, fake_llm: FakeLLMServer, tmp_path: Path, replacement: str
) -> None:
    run = await run_unasked_script(start_api, fake_llm, tmp_path, MOVED + replacement)
    data, work, ran, session_id, result = run.data, run.work, run.filter_ran, run.session_id, run.result

    git_dir = data / ".git"
    assert git_dir.is_dir(), "the repository is back in its place"
    assert not git_dir.is_symlink()
    assert not (work / "moved").exists()
    assert "filter" not in (git_dir / "config").read_text(), "its configuration is put back too"
    assert "duragent undid this batch's change to" in result
    assert ".git" in result
    # the session's events are committed, by the repository's own configuration, in its history
    await until(lambda: bool(commits_touching(data, f"sessions/{session_id}")) or ran.exists(), within=20)
    assert not ran.exists(), "the server's git ran a filter the agent's script configured"
    assert commits_touching(data, "agents/helper/agent.yaml"), "the history is the one it was"


async def test_nothing_is_committed_where_a_git_symlink_leads_when_the_repository_cannot_be_found(
    start_api: ApiFactory,
    fake_llm: FakeLLMServer,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    # the symlink leads to a copy: the repository itself stays moved away where nothing names it
    copied = MOVED + "cp -r moved copy\n" + SYMLINK.replace("$1", "copy")
    run = await run_unasked_script(start_api, fake_llm, tmp_path, copied)
    data, work, ran, session_id, result = run.data, run.work, run.filter_ran, run.session_id, run.result

    assert ".git" in result, "the call's result says .git was changed"
    assert "could not be moved back" in caplog.text
    await until(lambda: "running no git command in it" in caplog.text or ran.exists(), within=20)
    assert not ran.exists(), "the server's git ran a filter the agent's script configured"
    assert not commits_touching(work / "copy", f"sessions/{session_id}"), "committed into the agent's copy"

    # a person puts the repository back (without the agent's filter): the commits waiting go in
    (data / ".git").unlink()
    (work / "moved").rename(data / ".git")
    (data / ".git" / "info" / "attributes").unlink()
    await until(lambda: bool(commits_touching(data, f"sessions/{session_id}")), within=90)
    assert not ran.exists()
