"""What shapes a stage's crawl, recorded at its start and compared on resume.

Resuming with other spider arguments, other crawl-shaping settings or changed
input files would mix two different crawls in one checkpoint, so the resume
refuses and names each difference.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterable

    from scrapy import Spider
    from scrapy.settings import BaseSettings

#: Settings that change which requests exist, or their keys.
CRAWL_SHAPING_SETTINGS = (
    "REQUEST_FINGERPRINTER_CLASS",
    "DUPEFILTER_CLASS",
    "DEPTH_LIMIT",
    "ROBOTSTXT_OBEY",
    "REDIRECT_ENABLED",
    "HTTPERROR_ALLOW_ALL",
    "HTTPERROR_ALLOWED_CODES",
    "CHECKPOINT_INPUT_FILES",
)

#: Values recorded as another: the add-on's dupefilters are Scrapy's, in less memory, and
#: scrapy-redis's, applied once (so a stage begun by a manual set-up resumes with the
#: add-on, and back)
RECORDED_AS = {
    "scrapy_resume.components.dupefilter.CheckpointDupeFilter": "scrapy.dupefilters.RFPDupeFilter",
    "scrapy_resume.SharedDupeFilter": "scrapy_redis.dupefilter.RFPDupeFilter",
    "scrapy_resume.components.shareddupefilter.SharedDupeFilter":
        "scrapy_redis.dupefilter.RFPDupeFilter",
}

#: Spider attributes that are Scrapy's, not arguments.
NOT_ARGUMENTS = {"name", "crawler", "settings", "custom_settings"}

#: Argument names whose values are secrets: recorded as a digest, never shown.
SECRET_NAME = re.compile(r"pass|token|secret|key|auth|http_user", re.IGNORECASE)
HIDDEN = "(hidden)"
_DIGEST = "sha256:"


def is_secret(name: str) -> bool:
    return bool(SECRET_NAME.search(name))


def _recorded(name: str, value: Any) -> Any:
    """A secret argument's value is kept as a digest: enough to tell a change."""
    if not is_secret(name) or (isinstance(value, str) and value.startswith(_DIGEST)):
        return value
    return _DIGEST + hashlib.sha256(repr(value).encode()).hexdigest()


def shown_arguments(arguments: dict[str, Any]) -> dict[str, Any]:
    """Arguments as ``scrapy checkpoint show`` prints them: secrets hidden."""
    return {name: HIDDEN if is_secret(name) else value for name, value in arguments.items()}

SIMPLE = (str, int, float, bool)


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, SIMPLE):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, type):
        return f"{value.__module__}.{value.__qualname__}"
    return str(value)


def spider_arguments(spider: Spider) -> dict[str, Any]:
    """The spider's public plain-valued attributes: its ``-a`` arguments and what it
    derived from them in ``__init__``."""
    arguments = {}
    for name, value in vars(spider).items():
        if name.startswith("_") or name in NOT_ARGUMENTS:
            continue
        if isinstance(value, SIMPLE) or (
            isinstance(value, (list, tuple)) and all(isinstance(v, SIMPLE) for v in value)
        ):
            arguments[name] = _recorded(name, _plain(value))
    return arguments


def file_digest(path: str) -> str | None:
    file = Path(path)
    if not file.is_file():
        return None
    digest = hashlib.sha256()
    with file.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def input_file_digests(paths: Iterable[str]) -> dict[str, str | None]:
    """SHA-256 of each input file, by absolute path (None: missing)."""
    return {str(Path(p).resolve()): file_digest(p) for p in paths}


def crawl_config(spider: Spider, settings: BaseSettings, input_files: tuple[str, ...]) -> dict:
    return {
        "arguments": spider_arguments(spider),
        "settings": {name: _setting(settings.get(name)) for name in CRAWL_SHAPING_SETTINGS},
        "input_files": input_file_digests(input_files),
    }


def _setting(value: Any) -> Any:
    value = _plain(value)
    return RECORDED_AS.get(value, value) if isinstance(value, str) else value


def missing_input_files(config: dict) -> list[str]:
    return [path for path, digest in config["input_files"].items() if digest is None]


def differences(recorded: dict, current: dict) -> list[str]:
    """Human-readable differences between two crawl configs; empty when they match."""
    found = []
    for section, label in (("arguments", "spider argument"), ("settings", "setting")):
        old, new = recorded.get(section, {}), current.get(section, {})
        for name in sorted(set(old) | set(new)):
            if section == "arguments" and is_secret(name):
                # (a stage recorded before secrets were digested holds the value)
                if _recorded(name, old.get(name)) != _recorded(name, new.get(name)):
                    found.append(f"{label} {name}: changed (its value is not shown)")
            elif old.get(name) != new.get(name):
                found.append(
                    f"{label} {name}: {_show(old, name)} then, {_show(new, name)} now"
                )
    old_files, new_files = recorded.get("input_files", {}), current.get("input_files", {})
    for path in sorted(set(old_files) | set(new_files)):
        if path not in old_files:
            found.append(f"input file {path}: not listed then, listed now")
        elif path not in new_files:
            found.append(f"input file {path}: listed then, not listed now")
        elif new_files[path] is None:
            found.append(f"input file {path}: missing now")
        elif old_files[path] != new_files[path]:
            found.append(
                f"input file {path}: its content changed (sha256 {str(old_files[path])[:12]} "
                f"then, {str(new_files[path])[:12]} now)"
            )
    return found


def _show(values: dict, name: str) -> str:
    return repr(values[name]) if name in values else "unset"
