"""``scrapy checkpoint``: see where each stage stands, export its ledger, tidy up.

Shipped through the ``scrapy.commands`` entry point, so it works inside a
project (CHECKPOINT_DIR and CHECKPOINT_BACKEND from its settings) and outside
one (``--dir PATH``, ``--backend redis://...``).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import IO, Any

from scrapy.commands import ScrapyCommand
from scrapy.exceptions import UsageError

from scrapy_resume.commands.htmlreport import html_report, report_data
from scrapy_resume.commands.migrate import migrate_stage, migrated_text, where
from scrapy_resume.commands.reset import confirm, reset_stage, reset_text, scrapy_redis_keys_of
from scrapy_resume.commands.stageinfo import (
    CommandError,
    open_store,
    owner_label,
    percent,
    report_line,
    shown_config,
    stage_commands,
    stage_info,
    stage_names,
    table,
    unfinished_run,
)
from scrapy_resume.commands.verify import verify_stage, verify_text
from scrapy_resume.config import CheckpointConfig
from scrapy_resume.engine.cookiejars import STATE as COOKIES
from scrapy_resume.engine.cookiejars import cookie_names, describe_jar
from scrapy_resume.lifecycle.validation import HIDDEN
from scrapy_resume.store.backends import backend_for
from scrapy_resume.store.base import StageBackend
from scrapy_resume.store.privatefiles import CheckpointUnsafe
from scrapy_resume.store.records import RequestStatus, StageStatus, format_age, format_time

SUBCOMMANDS = ("list", "show", "reset", "export", "report", "cleanup", "verify", "migrate")
LEDGER_FIELDS = ("stage", "url", "status", "http_status", "error", "attempts", "created_at",
                 "updated_at", "info")


class CheckpointCommand(ScrapyCommand):
    requires_project = False
    requires_crawler_process = False
    default_settings = {"LOG_ENABLED": False}

    def syntax(self) -> str:
        return ("<list|show STAGE|reset STAGE|all|export [STAGE]|report|cleanup --days N|"
                "verify [STAGE|all]|migrate STAGE --to URL|DIR>")

    def short_desc(self) -> str:
        return "Inspect and manage scrapy-resume checkpoints"

    def long_desc(self) -> str:
        return (
            "list: one row per stage. show STAGE: everything about a stage. reset STAGE|all: "
            "start over (a backup is kept). export [STAGE]: the ledger as JSON lines or CSV. "
            "report: progress across stages. cleanup --days N: remove completed checkpoints "
            "older than N days. verify [STAGE|all]: check a stage's file, counts, signatures "
            "and feeds, read only; exit 0 only when healthy. migrate STAGE --to redis://...|DIR: "
            "copy a stage to another backend, checked. Every subcommand takes --json."
        )

    def add_options(self, parser: argparse.ArgumentParser) -> None:
        super().add_options(parser)
        group = parser.add_argument_group("checkpoint options")
        group.add_argument("--dir", help="checkpoint directory (default: CHECKPOINT_DIR)")
        group.add_argument("--backend", help="a Redis URL (default: CHECKPOINT_BACKEND)")
        group.add_argument("--json", action="store_true", help="machine-readable output")
        group.add_argument("--force", action="store_true", help="do not ask; touch any stage")
        group.add_argument("--status", choices=[s.name.lower() for s in RequestStatus],
                           help="export: only requests with this status")
        group.add_argument("-o", "--output", help="export: write to this file (.jsonl or .csv)")
        group.add_argument("--format", choices=["jsonl", "csv"], help="export format")
        group.add_argument("--days", type=float, help="cleanup: minimum age in days")
        group.add_argument("--to", help="migrate: a Redis URL, or a directory for SQLite")
        group.add_argument("--html", action="store_true",
                           help="report: one self-contained HTML page, written to -o FILE")

    def run(self, args: list[str], opts: argparse.Namespace) -> None:
        if not args or args[0] not in SUBCOMMANDS:
            raise UsageError(f"name a subcommand: {', '.join(SUBCOMMANDS)}")
        backend = self._backend(opts)
        try:
            getattr(self, f"do_{args[0]}")(backend, args[1:], opts)
        except (CommandError, CheckpointUnsafe) as exc:
            print(f"error: {exc}", file=sys.stderr)
            self.exitcode = 1
        except BrokenPipeError:
            # `scrapy checkpoint export | head`: the reader has all it wanted
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        finally:
            backend.close()

    def _backend(self, opts: argparse.Namespace) -> StageBackend:
        return backend_for(self._config(opts))

    def _config(self, opts: argparse.Namespace) -> CheckpointConfig:
        assert self.settings is not None
        config = CheckpointConfig.from_settings(self.settings)
        if opts.dir:
            config = replace(config, directory=Path(opts.dir))
        if opts.backend is not None:
            config = replace(config, backend="" if opts.backend == "sqlite" else opts.backend)
        return config

    def _emit(self, opts: argparse.Namespace, data: Any, text: str) -> None:
        print(json.dumps(data, indent=2, default=str) if opts.json else text)

    def _stage(self, backend: StageBackend, args: list[str]) -> str:
        if len(args) != 1:
            raise UsageError("name one stage")
        if not backend.exists(args[0]):
            known = ", ".join(stage_names(backend))
            raise CommandError(f"Unknown stage {args[0]!r} in {backend.where()}; stages: {known}")
        return args[0]

    # list and report

    def do_list(self, backend: StageBackend, args: list[str], opts: argparse.Namespace) -> None:
        infos = [stage_info(backend, stage) for stage in stage_names(backend)]
        rows = [
            [i["stage"], i["status"], i.get("done"), i.get("pending"), i.get("failed"),
             percent(i.get("percent_settled")), percent(i.get("success_rate")),
             i.get("items"), format_time(i.get("updated_at")),
             format_age(i["age_seconds"]) if "age_seconds" in i else None]
            for i in infos
        ]
        # settled: how far the stage has got; ok: how many of its answers were good
        headers = ["stage", "status", "done", "pending", "failed", "settled", "ok", "items",
                   "last update", "age"]
        self._emit(opts, infos, table(headers, rows))

    def do_report(self, backend: StageBackend, args: list[str], opts: argparse.Namespace) -> None:
        if opts.html:
            self._html_report(backend, opts)
            return
        infos = [stage_info(backend, stage) for stage in stage_names(backend)]
        infos = [i for i in infos if "done" in i]
        totals = {k: sum(i[k] for i in infos) for k in ("done", "pending", "failed", "dropped",
                                                         "total", "items")}
        judged = totals["done"] + totals["failed"]
        settled = judged + totals["dropped"]
        report = {
            "stages": len(infos),
            "completed": sum(i["status"] == StageStatus.COMPLETED for i in infos),
            **totals,
            "percent_done": round(100 * totals["done"] / totals["total"], 1)
            if totals["total"] else 0.0,
            "percent_settled": round(100 * settled / totals["total"], 1)
            if totals["total"] else 0.0,
            "success_rate": round(100 * totals["done"] / judged, 1) if judged else None,
            "by_stage": {i["stage"]: i["status"] for i in infos},
            "stage_lines": [report_line(i) for i in infos],
        }
        text = (
            f"{report['stages']} stages, {report['completed']} completed: "
            f"{report['percent_settled']}% settled ({settled:,}/{totals['total']:,} requests), "
            f"{totals['pending']:,} pending, {totals['failed']:,} failed, "
            f"{totals['items']:,} items\n"
            + "\n".join(f"  {line}" for line in report["stage_lines"])
        )
        self._emit(opts, report, text)

    def _html_report(self, backend: StageBackend, opts: argparse.Namespace) -> None:
        if not opts.output:
            raise UsageError("report --html writes a file: name it with -o report.html")
        stages = report_data(backend)
        # (the ledger's URLs may hold tokens: the page is private, like the checkpoint)
        with os.fdopen(os.open(opts.output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600),
                       "w", encoding="utf-8") as out:
            out.write(html_report(stages))
        print(f"Wrote the report of {len(stages)} stage(s) to {opts.output}")

    # one stage

    def do_show(self, backend: StageBackend, args: list[str], opts: argparse.Namespace) -> None:
        stage = self._stage(backend, args)
        info = stage_info(backend, stage)
        info.update(backend.workers(stage))
        store = open_store(backend, stage)
        try:
            state = store.state()
            info.update(
                runs=store.runs(),
                counters=store.counters(),
                cursors=store.cursors(),
                config=shown_config(state.get("config", {})),
                # names only: the values are credentials
                cookies={describe_jar(jar_key): names
                         for jar_key, names in cookie_names(state.get(COOKIES, {}), time.time())},
                recent_failures=list(
                    store.ledger_rows(RequestStatus.FAILED, newest_first=True, limit=10)
                ),
            )
        finally:
            store.close()
        info.update({f"{name}_command": command
                     for name, command in stage_commands(info, state).items()})
        self._emit(opts, info, self._show_text(info))

    def _show_text(self, info: dict[str, Any]) -> str:
        lines = [
            f"Stage {info['stage']} ({owner_label(info['spider'])}): {info['status']}",
            f"  {info['done']:,} done, {info['pending']:,} pending, {info['failed']:,} failed, "
            f"{info['dropped']:,} dropped: {info['percent_settled']}% settled, "
            f"ok {percent(info['success_rate']) or '-'}, "
            f"last update {format_time(info['updated_at'])} "
            f"({format_age(info['age_seconds'])} ago)",
            "",
            table(["run", "mode", "started", "ended", "close reason"], [
                [n, r["mode"], format_time(r["started_at"]), format_time(r["ended_at"]),
                 r["close_reason"] or unfinished_run(info, n)]
                for n, r in enumerate(info["runs"], start=1)
            ]),
            "",
            "counters: " + ", ".join(f"{k} {v:,}" for k, v in sorted(info["counters"].items())),
            "cursors: " + (", ".join(f"{k}={json.dumps(v)}" for k, v in info["cursors"].items())
                           or "none"),
        ]
        lines.append("cookies: " + ("; ".join(
            f"{jar}: {', '.join(names)}" for jar, names in info["cookies"].items())
            or "none") + (" (their values are not shown)" if info["cookies"] else ""))
        config = info["config"]
        if config.get("arguments"):
            lines.append("arguments: " + ", ".join(
                f"{k}={v}" if v == HIDDEN else f"{k}={v!r}"
                for k, v in config["arguments"].items()))
        for file, digest in config.get("input_files", {}).items():
            lines.append(f"input file: {file} (sha256 {str(digest)[:12]})")
        if info["recent_failures"]:
            lines += ["", "recent failures:"] + [
                f"  {f['url']}  {f['error']} (HTTP {f['http_status'] or '-'}, "
                f"{f['attempts']} attempts)" for f in info["recent_failures"]
            ]
        if "workers" in info:  # a shared stage: who crawls it now, and what they hold
            leases = info["leases"]
            lines += ["", f"live workers: {len(info['workers'])}; leases: "
                      f"{leases['outstanding']:,} outstanding, {leases['expired']:,} expired "
                      f"(their requests go back in the queue)"]
            lines += [f"  {w['worker']}: {w['leases']:,} leases" for w in info["workers"]]
        lines += ["", f"resume: {info['resume_command']}"]
        if "retry_command" in info:
            lines.append(f"retry the failures: {info['retry_command']}")
        return "\n".join(lines)

    # export

    def do_export(self, backend: StageBackend, args: list[str], opts: argparse.Namespace) -> None:
        stages = [self._stage(backend, args)] if args else stage_names(backend)
        fmt = opts.format or ("csv" if (opts.output or "").endswith(".csv") else "jsonl")
        status = RequestStatus[opts.status.upper()] if opts.status else None
        # the ledger holds URLs with their tokens: the file is private, like the checkpoint
        out: IO[str] = (
            os.fdopen(os.open(opts.output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w",
                      newline="")
            if opts.output else sys.stdout
        )
        try:
            writer = csv.DictWriter(out, LEDGER_FIELDS) if fmt == "csv" else None
            if writer is not None:
                writer.writeheader()
            count = 0
            for stage in stages:
                store = open_store(backend, stage)
                try:
                    for row in store.ledger_rows(status):
                        row = {"stage": stage, **row}
                        if writer is not None:
                            if row["info"] is not None:
                                row["info"] = json.dumps(row["info"])
                            writer.writerow(row)
                        else:
                            out.write(json.dumps(row) + "\n")
                        count += 1
                finally:
                    store.close()
        finally:
            if opts.output:
                out.close()
        if opts.output:
            self._emit(opts, {"exported": count, "file": opts.output},
                       f"{count:,} requests exported to {opts.output}")

    def do_verify(self, backend: StageBackend, args: list[str], opts: argparse.Namespace) -> None:
        everything = not args or args == ["all"]
        stages = stage_names(backend) if everything else [self._stage(backend, args)]
        results = [verify_stage(backend, stage, str(backend.directory)) for stage in stages]
        self._emit(opts, results if everything else results[0],
                   "\n".join(verify_text(result) for result in results))
        if not all(result["healthy"] for result in results):
            self.exitcode = 1

    def do_migrate(self, backend: StageBackend, args: list[str], opts: argparse.Namespace) -> None:
        stage = self._stage(backend, args)
        if not opts.to:
            raise UsageError("name where to copy the stage: --to redis://HOST:PORT/DB or --to DIR")
        url, directory = where(opts.to)
        config = replace(self._config(opts), backend=url,
                         **({"directory": Path(directory)} if directory else {}))
        target = backend_for(config)
        try:
            result = migrate_stage(backend, stage, target)
        finally:
            target.close()
        result["resume_with"] = (f"-s CHECKPOINT_BACKEND={url}" if url
                                 else f"-s CHECKPOINT_DIR={directory} -s CHECKPOINT_BACKEND=sqlite")
        self._emit(opts, result, migrated_text(result))

    def do_reset(self, backend: StageBackend, args: list[str], opts: argparse.Namespace) -> None:
        stages = stage_names(backend) if args == ["all"] else [self._stage(backend, args)]
        names = ", ".join(stages)
        if not opts.force and not confirm(f"Reset {names}? A backup of each is kept. [y/N] "):
            raise CommandError("Nothing was reset (answer y, or pass --force).")
        results = [reset_stage(backend, stage, scrapy_redis_keys_of(self.settings, backend, stage))
                   for stage in stages]
        self._emit(opts, results, "\n".join(map(reset_text, results)))

    def do_cleanup(self, backend: StageBackend, args: list[str], opts: argparse.Namespace) -> None:
        if opts.days is None:
            raise UsageError("cleanup needs --days N")
        removed, kept, running = [], [], []
        for stage in stage_names(backend):
            info = stage_info(backend, stage)
            if info.get("age_seconds", 0) < opts.days * 86400:
                continue
            holders = backend.holders(stage)
            if holders:  # even with --force: a live crawl's checkpoint is never removed
                running.append(f"{stage} (process {', '.join(holders)})")
            elif info["status"] == StageStatus.COMPLETED or opts.force:
                backend.remove(stage)
                removed.append(stage)
            else:
                kept.append(stage)
        text = f"Removed {len(removed)} checkpoint(s): {', '.join(removed) or 'none'}"
        if kept:
            text += f"\nKept (not completed; --force removes them): {', '.join(kept)}"
        if running:
            text += f"\nKept (being crawled now): {', '.join(running)}"
        self._emit(opts, {"removed": removed, "kept": kept, "running": running}, text)
