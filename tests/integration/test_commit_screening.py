"""What a commit's secret screening sees and what reading it costs: the added lines, as git writes them."""

from __future__ import annotations

import io
import subprocess
import tracemalloc
from pathlib import Path

import pytest

from duragent.vcs.repo import GitRepo, _added_lines_by_file

LINE = '{"seq": 1, "type": "assistant_message", "payload": {"content": "Sure, here is a short answer."}}\n'


def test_a_commit_of_megabytes_of_new_lines_holds_about_that_much_while_screening(tmp_path: Path) -> None:
    repo = GitRepo.open_or_init(tmp_path)
    log = tmp_path / "events.jsonl"
    log.write_text("start\n")
    repo.commit_paths([log], "first")
    log.write_text("start\n" + LINE * 20_000)  # 2 MB of turns since the last commit
    screened: dict[str, str] = {}

    def screen(path: str, added: str) -> bool:
        screened[path] = added
        return True

    tracemalloc.start()
    try:
        assert repo.commit_paths([log], "second", screen=screen) is not None
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    added = LINE * 20_000
    assert screened == {"events.jsonl": added.rstrip("\n")}
    # the added text, and the pieces it is joined from (about 2.6x); not the whole diff split
    # twice over (about 5.2x): 4x leaves room for other Pythons' string and list overheads
    assert peak < 4 * len(added)


PATCH = (
    "warning: text before the first file\n"
    "diff --git a/one.txt b/one.txt\n"
    "index 0000000..1111111 100644\n"
    "--- a/one.txt\n"
    "+++ b/one.txt\n"
    "@@ -1,0 +2,5 @@\n"
    "+plain\n"
    "+\n"
    "+form\x0cfeed and +after\n"
    "+line\u2028+separated\n"
    "-removed\n"
    "++++ looks like a header\n"
    "diff --git a/two.txt b/two.txt\n"
    "new file mode 100644\n"
    "--- /dev/null\n"
    "+++ b/two.txt\n"
    "@@ -0,0 +1 @@\n"
    "+second file\n"
    "diff --git a/bin.dat b/bin.dat\n"
    "Binary files a/bin.dat and b/bin.dat differ\n"
)


def test_every_added_character_is_kept_and_nothing_of_the_headers() -> None:
    added = _added_lines_by_file(io.StringIO(PATCH))  # lines as a pipe gives them: at "\n" only
    assert added == [
        "plain\n\nform\x0cfeed and +after\nline\u2028+separated\n+++ looks like a header",
        "second file",
        "",
    ]


@pytest.mark.parametrize(
    "content",
    [
        b"old mac lines\rAPI_KEY=sk-live-0123456789abcdef\r",  # a \r inside git's line
        b"+++ API_KEY=sk-live-0123456789abcdef\n",  # an added line that looks like a header
        b"\x89PNG\r\n\x1a\n\x00\x00API_KEY=sk-live-0123456789abcdef\x00\xff",  # binary to git
        "separated\u2028API_KEY=sk-live-0123456789abcdef\n".encode(),
    ],
)
def test_a_secret_anywhere_in_what_a_file_adds_keeps_it_out_of_the_commit(
    tmp_path: Path, content: bytes
) -> None:
    repo = GitRepo.open_or_init(tmp_path)
    clean, planted = tmp_path / "clean.txt", tmp_path / "planted.dat"
    clean.write_text("nothing to see\n")
    planted.write_bytes(content)
    seen: dict[str, str] = {}

    def screen(path: str, added: str) -> bool:
        seen[path] = added
        return "sk-live-0123456789abcdef" not in added

    assert repo.commit_paths([clean, planted], "add both", screen=screen) is not None
    assert "sk-live-0123456789abcdef" in seen["planted.dat"]
    committed = subprocess.run(
        ["git", "ls-tree", "-r", "--name-only", "HEAD"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert committed.stdout.split() == ["clean.txt"]
