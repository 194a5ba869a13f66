"""aiogram imported without building a validator for every Telegram type at once.

`import aiogram` ends (in `aiogram.types`) with a loop that calls `model_rebuild` on each of its
~300 Telegram types, giving each the namespace that resolves its forward references: that
builds every pydantic validator, about 2 s of CPU on a small machine at each start of the
plugin, though a bot meets a few dozen of those types. The types are declared `defer_build`;
only that loop builds them. While aiogram is imported here, the loop's rebuild keeps the
namespace on the type instead (`__pydantic_parent_namespace__`, where pydantic looks when it
builds a deferred model, and in the type's module, where it looks when it builds the type
inside another's validator), and each type is built the first time it validates or sends
something.

Where pydantic's API is not the one this was written against, aiogram is imported as it is.
"""

from __future__ import annotations

import inspect
import sys
from typing import Any


def import_aiogram() -> None:
    """Import aiogram (once), its types left to be built on first use."""
    if "aiogram" in sys.modules:
        return
    from pydantic import BaseModel

    rebuild = BaseModel.__dict__.get("model_rebuild")
    function = getattr(rebuild, "__func__", None)
    if function is None or "_types_namespace" not in inspect.signature(function).parameters:
        import aiogram  # (as it is: the rebuild below may not fit this pydantic)

        return

    def keep_namespace(cls: type[BaseModel], **options: Any) -> bool | None:
        namespace = options.get("_types_namespace")
        if namespace is not None and cls.__module__.startswith("aiogram.types."):
            cls.__pydantic_parent_namespace__ = dict(namespace)
            # (a type built inside another's validator resolves its names in its module)
            module = vars(sys.modules[cls.__module__])
            for name, value in namespace.items():
                module.setdefault(name, value)
            return None
        return function(cls, **options)  # type: ignore[no-any-return]

    BaseModel.model_rebuild = classmethod(keep_namespace)  # type: ignore[arg-type,assignment,method-assign]
    try:
        import aiogram.types  # noqa: F401
    finally:
        BaseModel.model_rebuild = rebuild  # type: ignore[assignment,method-assign]
