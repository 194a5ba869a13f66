"""The Telegram plugin imports aiogram without building every Telegram type's validator (about
2 s of CPU at each start on a small machine); each type is built when first used, and every
one of them still builds, forward references resolved."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("aiogram")

IN_A_FRESH_PROCESS = textwrap.dedent(
    """
    from duragent.plugins.telegram.lazy_aiogram import import_aiogram

    import_aiogram()
    import pydantic
    import aiogram.methods as methods
    import aiogram.types as types

    assert not types.Message.__pydantic_complete__, "built at import"
    update = types.Update.model_validate({
        "update_id": 1,
        "message": {
            "message_id": 5, "date": 1700000000, "text": "hi",
            "chat": {"id": 3, "type": "private"},
            "from": {"id": 3, "is_bot": False, "first_name": "Ada"},
            "photo": [{"file_id": "f", "file_unique_id": "u", "width": 1, "height": 1}],
            "reply_to_message": {"message_id": 4, "date": 1700000000, "chat": {"id": 3, "type": "private"}},
        },
    })
    assert update.message.from_user.first_name == "Ada"
    assert update.message.photo[0].file_id == "f"
    assert update.message.reply_to_message.message_id == 4
    assert methods.SendMessage(chat_id=3, text="x").model_dump()["text"] == "x"
    unbuilt = []
    for module in (types, methods):
        for name in module.__all__:
            kind = getattr(module, name)
            if isinstance(kind, type) and issubclass(kind, pydantic.BaseModel):
                kind.model_rebuild(raise_errors=True)
                if not kind.__pydantic_complete__:
                    unbuilt.append(name)
    assert unbuilt == [], unbuilt
    print("ok")
    """
)


def test_the_plugin_imports_aiogram_without_building_its_types_and_each_builds_on_use() -> None:
    run = subprocess.run(
        [sys.executable, "-c", IN_A_FRESH_PROCESS], capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "ok"
