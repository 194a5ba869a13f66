"""`duragent show` lists a memory file's text outside entries (a front matter) in file order."""

from __future__ import annotations

from pathlib import Path

from duragent.vcs.repo import GitRepo
from duragent.vcs.revisions import render_diff, show_revision


def test_a_front_matter_added_by_hand_is_shown_as_written(tmp_path: Path) -> None:
    repo = GitRepo.open_or_init(tmp_path / "data")
    daily = tmp_path / "data" / "memory" / "assistant" / "2026-12-01.md"
    daily.parent.mkdir(parents=True)
    daily.write_text(
        "---\ntags: [travel]\nmood: good\n---\n# 2026-12-01\n\n## Facts Stored\n- Flies Monday\n"
    )
    repo.commit_paths([daily], "edit: memory/assistant/2026-12-01.md", "Test Person <person@example.test>")

    shown = render_diff(show_revision(repo, "HEAD").diffs)

    # (was: "+ ---", "+ ---", "+ tags: [travel]", "+ mood: good": equal lines grouped together)
    assert shown.splitlines()[-4:] == ["  + ---", "  + tags: [travel]", "  + mood: good", "  + ---"]
