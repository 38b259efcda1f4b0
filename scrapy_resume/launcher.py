"""Which program started this crawl: ``scrapy crawl``, ``scrapy runspider``, a
script (``CrawlerProcess``/``CrawlerRunner``), or one of Scrapy's debugging
commands.

Only real crawls checkpoint. ``scrapy fetch``, ``view``, ``shell``, ``parse``,
``check`` and ``bench`` run a spider too, but to look at one page or one
contract: checkpointing them would mark a stage completed after one page, or
refuse the next ``fetch`` because a checkpoint exists. They run as plain Scrapy.
"""

from __future__ import annotations

import inspect
import sys
from dataclasses import dataclass
from typing import Any

#: Scrapy's commands that run a spider only to debug it (``view`` subclasses ``fetch``).
DEBUGGING_COMMANDS = frozenset({"fetch", "view", "shell", "parse", "check", "bench"})


@dataclass(frozen=True)
class Launcher:
    """``command`` is a Scrapy command's name ("crawl", "fetch"...), or "" for a script."""

    command: str
    spider_file: str = ""  # runspider's file, as the user typed it

    @property
    def checkpoints(self) -> bool:
        return self.command not in DEBUGGING_COMMANDS

    def command_line(self, spider_name: str) -> str:
        """How the user runs this crawl again, quoted by messages."""
        if self.command == "runspider" and self.spider_file:
            return f"scrapy runspider {self.spider_file}"
        if self.command == "" and sys.argv and sys.argv[0]:
            return f"python {sys.argv[0]}"  # a script: it passes the settings itself
        return f"scrapy crawl {spider_name}"


def running_command() -> Launcher:
    """The Scrapy command this crawler runs under, found on the call stack.

    Scrapy records nowhere public which command is running (``cmdline`` even
    pops its name from ``sys.argv``), but every command builds its crawlers
    from its ``run()`` method, synchronously down to the add-on and component
    constructors where this is called. So the nearest ``self`` on the stack
    that is a ``ScrapyCommand`` is the command. Commands are matched by their
    module, ``scrapy.commands.NAME``, walking the class's bases so that a
    project's subclass of a command counts as that command.
    ``tests/test_debug_commands.py`` runs every debugging command and fails
    loudly if Scrapy ever changes this.
    """
    from scrapy.commands import ScrapyCommand

    frame = inspect.currentframe()
    while frame is not None:
        candidate = frame.f_locals.get("self")
        if isinstance(candidate, ScrapyCommand):
            return Launcher(_command_name(type(candidate)), _spider_file(frame))
        frame = frame.f_back
    return Launcher("")


def _command_name(cls: type) -> str:
    for base in cls.__mro__:
        module = base.__module__
        if module.startswith("scrapy.commands.") and base.__name__ == "Command":
            return module.rsplit(".", 1)[-1]
    return cls.__module__.rsplit(".", 1)[-1]  # a project's own command


def _spider_file(frame: Any) -> str:
    """The first argument of the command's ``run(args, opts)``: runspider's file."""
    args = frame.f_locals.get("args") if frame.f_code.co_name == "run" else None
    if not args or not isinstance(args, list) or not isinstance(args[0], str):
        return ""
    return args[0]
