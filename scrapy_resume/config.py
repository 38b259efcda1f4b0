"""Every CHECKPOINT_* setting, parsed and checked once."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from scrapy.settings import BaseSettings
from scrapy.utils.project import data_path

STAGE_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


class CheckpointConfigError(ValueError):
    """A CHECKPOINT_* setting has a value that cannot be used."""


def _get_bool(settings: BaseSettings, name: str, default: bool) -> bool:
    try:
        return settings.getbool(name, default)
    except ValueError:
        raise CheckpointConfigError(
            f"{name}={settings.get(name)!r} is not a boolean. "
            f"Use 1/0, True/False or true/false."
        ) from None


def _get_positive_float(
    settings: BaseSettings, name: str, default: float, unit: str = "seconds"
) -> float:
    raw = settings.get(name, default)
    try:
        value = float(raw)
    except (TypeError, ValueError):
        value = -1.0
    if not value > 0:
        raise CheckpointConfigError(
            f"{name}={raw!r} is not a positive number of {unit} (for example 0.5)."
        )
    return value


def _get_positive_int(settings: BaseSettings, name: str, default: int) -> int:
    raw = settings.get(name, default)
    try:
        value = int(raw)
    except (TypeError, ValueError):
        value = 0
    if value <= 0 or str(raw).strip() != str(value):
        raise CheckpointConfigError(f"{name}={raw!r} is not a positive whole number (for "
                                    f"example {default}).")
    return value


def _get_file_list(settings: BaseSettings, name: str) -> tuple[str, ...]:
    try:
        return tuple(str(path) for path in settings.getlist(name))
    except ValueError:
        raise CheckpointConfigError(
            f"{name}={settings.get(name)!r} is not a list of file paths."
        ) from None


def _get_backend(settings: BaseSettings) -> str:
    """"" (SQLite, the default), or a Redis URL whose client is installed."""
    raw = settings.get("CHECKPOINT_BACKEND") or ""
    value = str(raw).strip()
    if value in ("", "sqlite"):
        return ""
    if not value.startswith(("redis://", "rediss://", "unix://")):
        raise CheckpointConfigError(
            f"CHECKPOINT_BACKEND={raw!r} is not a backend. Leave it unset for the SQLite file "
            f"per stage, or give a Redis URL such as redis://127.0.0.1:6379/0."
        )
    try:
        import redis  # noqa: F401
    except ImportError:
        raise CheckpointConfigError(
            "CHECKPOINT_BACKEND names a Redis server, but the redis client is not installed: "
            "pip install 'scrapy-resume[redis]'."
        ) from None
    return value


def checkpointing_wanted(settings: BaseSettings) -> bool:
    """Is CHECKPOINT_ENABLED on? A value that is not a boolean counts as on: the
    crawl then refuses, naming the value, rather than run unprotected."""
    try:
        return settings.getbool("CHECKPOINT_ENABLED", False)
    except ValueError:
        return True


def redis_retry_seconds(settings: BaseSettings) -> float:
    """CHECKPOINT_REDIS_RETRY_SECONDS, for the add-on, which runs before the config
    is parsed (a bad value is refused then)."""
    try:
        return max(float(settings.get("CHECKPOINT_REDIS_RETRY_SECONDS", 60.0)), 0.0)
    except (TypeError, ValueError):
        return 60.0


def cookies_checkpointed(settings: BaseSettings) -> bool:
    """Are the cookie jars part of the stage? CHECKPOINT_COOKIES (on unless turned
    off; a value that is not a boolean counts as on, and the extension refuses
    it), and Scrapy's COOKIES_ENABLED."""
    try:
        wanted = settings.getbool("CHECKPOINT_COOKIES", True)
    except ValueError:
        wanted = True
    return wanted and settings.getbool("COOKIES_ENABLED", True)


@dataclass(frozen=True)
class CheckpointConfig:
    """The package's settings, validated. Build it with :meth:`from_settings`."""

    enabled: bool = False
    resume: bool = False
    reset: bool = False
    directory: Path = Path(".scrapy/checkpoints")
    stage: str | None = None
    commit_interval: float = 0.5
    fsync: bool = False
    retry_failed: bool = False
    input_files: tuple[str, ...] = ()
    progress_interval: float = 60.0
    stale_days: float = 7.0
    backend: str = ""  # "" is the embedded SQLite file; "redis://HOST:PORT/DB" a shared store
    lease_seconds: float = 300.0
    redis_retry_seconds: float = 60.0  # how long a Redis restart is waited out
    # run although a local feed is written by a storage of the project's own (not exactly-once)
    unprotected_feeds: bool = False
    # the cookie jars are committed with the responses that set them (parsed here so that
    # a bad value is refused; the components read cookies_checkpointed(), as the add-on
    # and the cookies middleware run before this config exists)
    cookies: bool = True
    restore_after_start: bool = False  # the restored frontier waits for start()'s requests
    frontier_memory: int = 2_000  # scheduled requests kept in memory; the rest wait on disk
    # the live progress bar: None is "auto" (on a terminal, at LOG_LEVEL INFO or quieter)
    progress_bar: bool | None = None

    @classmethod
    def from_settings(cls, settings: BaseSettings) -> CheckpointConfig:
        stage = settings.get("CHECKPOINT_STAGE") or None
        if stage is not None and not STAGE_NAME_PATTERN.match(str(stage)):
            raise CheckpointConfigError(
                f"CHECKPOINT_STAGE={stage!r} is not a valid stage name. Use letters, digits, "
                f"'_', '-' and '.', starting with a letter or digit (at most 100 characters)."
            )
        directory = settings.get("CHECKPOINT_DIR") or data_path("checkpoints")
        return cls(
            enabled=_get_bool(settings, "CHECKPOINT_ENABLED", False),
            resume=_get_bool(settings, "CHECKPOINT_RESUME", False),
            reset=_get_bool(settings, "CHECKPOINT_RESET", False),
            directory=Path(directory),
            stage=stage,
            commit_interval=_get_positive_float(settings, "CHECKPOINT_COMMIT_INTERVAL", 0.5),
            fsync=_get_bool(settings, "CHECKPOINT_FSYNC", False),
            retry_failed=_get_bool(settings, "CHECKPOINT_RETRY_FAILED", False),
            input_files=_get_file_list(settings, "CHECKPOINT_INPUT_FILES"),
            progress_interval=_get_positive_float(settings, "CHECKPOINT_PROGRESS_INTERVAL", 60.0),
            stale_days=_get_positive_float(settings, "CHECKPOINT_STALE_DAYS", 7.0, unit="days"),
            backend=_get_backend(settings),
            lease_seconds=_get_positive_float(settings, "CHECKPOINT_LEASE_SECONDS", 300.0),
            redis_retry_seconds=_get_positive_float(settings, "CHECKPOINT_REDIS_RETRY_SECONDS",
                                                    60.0),
            unprotected_feeds=_get_bool(settings, "CHECKPOINT_UNPROTECTED_FEEDS", False),
            cookies=_get_bool(settings, "CHECKPOINT_COOKIES", True),
            restore_after_start=_get_bool(settings, "CHECKPOINT_RESTORE_AFTER_START", False),
            frontier_memory=_get_positive_int(settings, "CHECKPOINT_FRONTIER_MEMORY", 2_000),
            progress_bar=None if str(settings.get("CHECKPOINT_PROGRESS_BAR", "auto")).lower()
            == "auto" else _get_bool(settings, "CHECKPOINT_PROGRESS_BAR", False),
        )

    def stage_name(self, spider_name: str) -> str:
        name = self.stage or spider_name
        if not STAGE_NAME_PATTERN.match(name):
            raise CheckpointConfigError(
                f"The spider name {name!r} cannot be used as a stage name; "
                f"set CHECKPOINT_STAGE to a name made of letters, digits, '_', '-' and '.'."
            )
        return name

    def stage_path(self, spider_name: str) -> Path:
        return self.directory / f"{self.stage_name(spider_name)}.sqlite"

