"""The Lua scripts of the Redis backend, read from ``lua/`` at import."""

from __future__ import annotations

from pathlib import Path

LUA = Path(__file__).with_name("lua")


def lua(name: str, *, with_clock: bool = False) -> str:
    """The script ``lua/NAME.lua``; ``with_clock`` puts Redis's time in ``now``
    first (``lua/now_ms.lua``)."""
    text = (LUA / f"{name}.lua").read_text()
    return (LUA / "now_ms.lua").read_text() + text if with_clock else text
