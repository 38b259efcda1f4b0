"""The checkpoint directory is private, like ~/.ssh: a directory someone else
controls is refused, no file in it is opened through a symlink, its files are
0600 from their first moment, the signing secret appears whole, and secret
spider arguments are never printed."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import textwrap
import time

import pytest

from tests.crawling import REPO, Crawl, graph_crawl, kill_after, scrapy_checkpoint
from tests.faults import STRACE


def small(tmp_path, mockserver, **kwargs) -> tuple[Crawl, str]:
    ns = mockserver.namespace()
    return graph_crawl(tmp_path, mockserver, ns, 40, 3, **kwargs), ns


@pytest.mark.skipif(os.getuid() != 0, reason="giving a directory to another user needs root")
def test_a_directory_of_another_user_is_refused(tmp_path, mockserver):
    crawl, ns = small(tmp_path, mockserver)
    directory = tmp_path / "checkpoints"
    directory.mkdir(mode=0o700)
    os.chown(directory, 65534, 65534)  # nobody's
    result = crawl.run()
    assert result.finish_reason == "checkpoint_unsafe"
    assert f"{directory} belongs to another user (uid 65534)" in result.log
    assert mockserver.hits(ns) == {}
    assert list(directory.iterdir()) == []


def test_a_directory_others_can_write_is_refused(tmp_path, mockserver):
    crawl, ns = small(tmp_path, mockserver)
    directory = tmp_path / "checkpoints"
    directory.mkdir()
    os.chmod(directory, 0o777)
    planted = directory / "checkpoint.secret"
    planted.write_bytes(b"k" * 32)  # a secret the attacker knows
    result = crawl.run()
    assert result.finish_reason == "checkpoint_unsafe"
    assert "is writable by its group or by others (mode 777)" in result.log
    assert f"chmod 700 {directory}" in result.log
    assert mockserver.hits(ns) == {}
    assert sorted(p.name for p in directory.iterdir()) == ["checkpoint.secret"]
    (directory / "graph.sqlite").write_bytes(b"")  # planted too
    listed = scrapy_checkpoint("list", "--dir", str(directory), cwd=tmp_path)
    assert listed.returncode == 1 and "writable by its group or by others" in listed.stderr
    assert "Traceback" not in listed.stderr


@pytest.mark.parametrize("name", ["graph.sqlite.lock", "checkpoint.secret", "graph.sqlite"])
def test_a_planted_symlink_is_never_followed(tmp_path, mockserver, name):
    crawl, ns = small(tmp_path, mockserver)
    directory = tmp_path / "checkpoints"
    directory.mkdir(mode=0o700)
    victim = tmp_path / "victim.txt"
    victim.write_text("the victim's data")
    (directory / name).symlink_to(victim)
    result = crawl.run()
    assert result.finish_reason == "checkpoint_unsafe"
    assert "symbolic link" in result.log
    assert victim.read_text() == "the victim's data"
    assert mockserver.hits(ns) == {}


def test_a_short_secret_is_refused(tmp_path, mockserver):
    crawl, ns = small(tmp_path, mockserver)
    directory = tmp_path / "checkpoints"
    directory.mkdir(mode=0o700)
    (directory / "checkpoint.secret").write_bytes(b"")  # an older version, killed mid-write
    result = crawl.run()
    assert result.finish_reason == "checkpoint_unsafe"
    assert "holds 0 bytes, not 32" in result.log
    assert mockserver.hits(ns) == {}


def test_processes_starting_together_agree_on_one_whole_secret(tmp_path):
    directory = tmp_path / "checkpoints"
    script = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from scrapy_resume.store.signing import load_or_create_secret
        while time.time() < float(sys.argv[1]):
            pass  # all at once
        print(load_or_create_secret(Path({str(directory)!r})).hex())
    """)
    go = time.time() + 1.0
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen([sys.executable, "-c", script, str(go)], env=env,
                              stdout=subprocess.PIPE, text=True) for _ in range(16)]
    secrets = {proc.communicate(timeout=60)[0].strip() for proc in procs}
    assert all(proc.returncode == 0 for proc in procs)
    assert secrets == {(directory / "checkpoint.secret").read_bytes().hex()}
    assert len(bytes.fromhex(secrets.pop())) == 32
    assert sorted(p.name for p in directory.iterdir()) == ["checkpoint.secret"]  # no temp left


@pytest.mark.skipif(STRACE is None, reason="needs strace (.ci/run installs it)")
def test_every_checkpoint_file_is_created_0600(tmp_path, mockserver):
    crawl, ns = small(tmp_path, mockserver)
    trace = tmp_path / "trace.txt"
    # umask 0: a file created with open()'s default mode would be 0666
    umask0 = ["sh", "-c", 'umask 000; exec "$@"', "sh"]
    prefix = [*umask0, STRACE, "-f", "-qq", "-o", str(trace), "-e", "trace=openat,rename,link"]
    assert crawl.run(prefix=prefix).finish_reason == "finished"
    directory = str(tmp_path / "checkpoints")
    existing: set[str] = set()
    created = []
    for line in trace.read_text().splitlines():
        found = re.search(r'(openat|rename|link)\((?:AT_FDCWD, )?"([^"]+)"(?:, "([^"]+)")?(.*)',
                          line)
        if not found:
            continue
        call, path, target, rest = found.groups()
        path = os.path.join(str(tmp_path), path)
        if call in ("rename", "link"):
            existing.add(os.path.join(str(tmp_path), target))
            continue
        if not path.startswith(directory + "/") or "= -1 ENOENT" in rest:
            continue
        if "O_CREAT" in rest and path not in existing:
            created.append((os.path.basename(path), rest.split(")")[0].rsplit(", ", 1)[-1]))
        existing.add(path)
    assert created and {mode for _, mode in created} == {"0600"}, created
    for path in (tmp_path / "checkpoints").iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name
    export = scrapy_checkpoint("export", "graph", "-o", str(tmp_path / "ledger.jsonl"),
                               "--dir", directory, cwd=tmp_path)
    assert export.returncode == 0, export.stderr
    assert stat.S_IMODE((tmp_path / "ledger.jsonl").stat().st_mode) == 0o600


def test_secret_arguments_are_never_shown(tmp_path, mockserver):
    ns = mockserver.namespace()
    crawl = Crawl(tmp_path, "graph", args={
        "start": mockserver.url(f"{ns}/g/2000/3/0"),
        "token": "s3cr3t-token", "http_pass": "hunter2", "page_size": "10",
    })
    kill_after(crawl, mockserver, ns, 100)
    directory = str(tmp_path / "checkpoints")
    show = scrapy_checkpoint("show", "graph", "--dir", directory, cwd=tmp_path)
    shown = scrapy_checkpoint("show", "graph", "--dir", directory, "--json", cwd=tmp_path)
    for output in (show.stdout, shown.stdout):
        assert "s3cr3t-token" not in output and "hunter2" not in output
    assert "token=(hidden)" in show.stdout and "page_size='10'" in show.stdout
    arguments = json.loads(shown.stdout)["config"]["arguments"]
    assert (arguments["token"], arguments["http_pass"], arguments["page_size"]) == (
        "(hidden)", "(hidden)", "10"
    )
    crawl.args.update(token="another-token")
    refused = crawl.run(CHECKPOINT_RESUME="1")
    assert refused.finish_reason == "checkpoint_config_changed"
    assert "spider argument token: changed (its value is not shown)" in refused.log
    assert "s3cr3t-token" not in refused.log and "another-token" not in refused.log
    stage = (tmp_path / "checkpoints" / "graph.sqlite").read_bytes()
    assert b"s3cr3t-token" not in stage and b"hunter2" not in stage
