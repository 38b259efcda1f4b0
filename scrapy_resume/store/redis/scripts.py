"""The Lua scripts of the Redis backend, read from ``lua/`` once, at import."""

from __future__ import annotations

from pathlib import Path

LUA = Path(__file__).with_name("lua")
SCRIPTS = {path.stem: path.read_text() for path in LUA.glob("*.lua")}


def lua(name: str, *, with_clock: bool = False) -> str:
    """The script ``lua/NAME.lua``; ``with_clock`` puts Redis's time in ``now``
    first (``lua/now_ms.lua``)."""
    return SCRIPTS["now_ms"] + SCRIPTS[name] if with_clock else SCRIPTS[name]
