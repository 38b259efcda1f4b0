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

from scrapy_resume.lifecycle.stage import HowTo

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

    def rerun(self, spider_name: str, *settings: str) -> str:
        """How the user runs this crawl again with ``settings`` ("CHECKPOINT_RESUME=1"),
        quoted by messages: the command they typed, or their script."""
        if self.command == "":  # a script passes its settings to Scrapy itself
            script = f"python {sys.argv[0]}" if sys.argv and sys.argv[0] else "your script"
            names = " and ".join(f"{setting.split('=')[0]}=True" for setting in settings)
            return f"{script} with {names} in the settings it gives Scrapy"
        if self.command == "runspider" and self.spider_file:
            command = f"scrapy runspider {self.spider_file}"
        else:
            command = f"scrapy crawl {spider_name}"
        return " ".join([command, *(f"-s {setting}" for setting in settings)])

    def option(self, setting: str) -> str:
        """``-s CHECKPOINT_RESET=1``, or for a script the setting to give Scrapy."""
        return f"{setting.split('=')[0]}=True" if self.command == "" else f"-s {setting}"

    def how_to(self, spider_name: str) -> HowTo:
        """What the user types for each mode, quoted by the stage's messages."""
        return HowTo(
            resume=self.rerun(spider_name, "CHECKPOINT_RESUME=1"),
            reset=self.rerun(spider_name, "CHECKPOINT_RESET=1"),
            reset_option=self.option("CHECKPOINT_RESET=1"),
            retry=self.rerun(spider_name, "CHECKPOINT_RESUME=1", "CHECKPOINT_RETRY_FAILED=1"),
        )


def running_command() -> Launcher:
    """The Scrapy command this crawler runs under, found on the call stack.

    Scrapy records nowhere public which command is running (``cmdline`` even
    pops its name from ``sys.argv``), but every command builds its crawlers
    from its ``run()`` method, synchronously down to the add-on and component
    constructors where this is called. So the nearest ``self`` on the stack
    that is a ``ScrapyCommand`` is the command. Commands are matched by their
    module, ``scrapy.commands.NAME``, walking the class's bases so that a
    project's subclass of a command counts as that command.
    ``tests/integration/test_debug_commands.py`` runs every debugging command and fails
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
