"""Shards of one run (--shard, --zone, --run-id) and `opsproof seal-run`, against real servers.

The Kubernetes Indexed Job is simulated on this machine: N pytest processes started with
JOB_COMPLETION_INDEX=0..N-1 (what the Job controller sets in each pod), one of them
SIGKILLed while it waits on a slow endpoint (a pod lost with its node, an OOM kill).
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
from helpers.backup_servers import S3Server, s3_server
from helpers.redis_servers import redis_main

from conftest import SECRET, HttpServer, Runner, TlsServer, http_profile, wait_for
from opsproof.cli import main as opsproof
from opsproof.model.shards import Shard, ShardError, parse_run_id, parse_shard, shard_of

__all__ = ["redis_main", "s3_server"]  # session fixtures, imported to be found

N = 3


# -- which items a shard owns -------------------------------------------------------------


def test_every_item_is_on_exactly_one_shard_and_stays_there_when_others_are_added() -> None:
    names = [f"svc-{i}" for i in range(2000)]
    before = {name: shard_of("http", name, 4) for name in names}
    assert Counter(before.values()).keys() == {0, 1, 2, 3}
    assert min(Counter(before.values()).values()) > 400  # roughly a quarter each (500 expected)
    for index in range(4):
        owned = [n for n in names if Shard(index, 4).owns("http", n, None)]
        assert owned == [n for n in names if before[n] == index]
    # More items: the old ones stay where they were. The kind is part of the key.
    after = {name: shard_of("http", name, 4) for name in [*names, *(f"new-{i}" for i in range(500))]}
    assert all(after[n] == before[n] for n in names)
    assert [shard_of("tls", n, 4) for n in names] != [before[n] for n in names]


def test_zone_selects_labelled_items_and_splits_them_with_shard() -> None:
    assert Shard(zone="vpc-a").owns("postgres", "primary", "vpc-a")
    assert not Shard(zone="vpc-a").owns("postgres", "primary", "vpc-b")
    assert not Shard(zone="vpc-a").owns("postgres", "primary", None)
    in_zone = [n for n in (f"db-{i}" for i in range(100)) if Shard(1, 2, "vpc-a").owns("postgres", n, "vpc-a")]
    assert in_zone and len(in_zone) < 100
    assert Shard(1, 2, "vpc-a").label == "zone vpc-a shard 1 of 2"


@pytest.mark.parametrize(
    ("shard", "zone", "environ", "message"),
    [
        ("1/1", None, {}, "--shard '1/1': the index must be 0 to 0 (shards are numbered from 0)"),
        ("-1/4", None, {}, "the index must be 0 to 3"),
        ("4/4", None, {}, "the index must be 0 to 3"),
        ("0/0", None, {}, "the number of shards must be 1 to 10000"),
        ("a/4", None, {}, "--shard's I 'a' is not a whole number"),
        ("2", None, {}, "--shard '2': expected I/N (0-based, e.g. 0/4) or auto"),
        ("auto", None, {}, "--shard auto: $JOB_COMPLETION_INDEX is not set"),
        ("auto", None, {"JOB_COMPLETION_INDEX": "1"}, "--shard auto: $OPSPROOF_SHARDS is not set"),
        ("auto", None, {"JOB_COMPLETION_INDEX": "x", "OPSPROOF_SHARDS": "4"}, "$JOB_COMPLETION_INDEX 'x' is not a"),
        (
            "auto",
            None,
            {"JOB_COMPLETION_INDEX": "4", "OPSPROOF_SHARDS": "4"},
            "--shard auto ($JOB_COMPLETION_INDEX=4, $OPSPROOF_SHARDS=4): the index must be 0 to 3",
        ),
        (None, "eu west", {}, "--zone 'eu west': expected a zone name"),
    ],
)
def test_bad_shard_values_are_refused(
    shard: str | None, zone: str | None, environ: dict[str, str], message: str
) -> None:
    with pytest.raises(ShardError) as caught:
        parse_shard(shard, zone, environ)
    assert message in str(caught.value)


def test_shard_auto_and_run_id_come_from_the_environment() -> None:
    assert parse_shard("auto", None, {"JOB_COMPLETION_INDEX": "2", "OPSPROOF_SHARDS": "5"}) == Shard(2, 5)
    assert parse_shard(" 1 / 3 ", "vpc-a", {}) == Shard(1, 3, "vpc-a")
    assert parse_run_id(None, {"OPSPROOF_RUN_ID": "5f0c2a7e-1b2c-4d3e-8f90-123456789abc"}).startswith("5f0c2a7e")
    assert parse_run_id("given", {"OPSPROOF_RUN_ID": "env"}) == "given"
    with pytest.raises(ShardError, match=r"\$OPSPROOF_RUN_ID 'a b': expected letters"):
        parse_run_id(None, {"OPSPROOF_RUN_ID": "a b"})


@pytest.mark.parametrize(
    ("args", "environ", "message"),
    [
        (["--shard", "0/2"], {}, "shard 0 of 2: a shard needs the id its run's shards share: --run-id ID"),
        (["--shard", "5/2", "--run-id", "r1"], {}, "--shard '5/2': the index must be 0 to 1"),
        (["--shard", "auto", "--run-id", "r1"], {}, "--shard auto: $JOB_COMPLETION_INDEX is not set"),
        (["--shard", "0/2"], {"OPSPROOF_RUN_ID": "../etc"}, "$OPSPROOF_RUN_ID '../etc': expected letters"),
        (["--zone", "a zone", "--run-id", "r1"], {}, "--zone 'a zone': expected a zone name"),
    ],
)
def test_a_bad_shard_option_is_a_usage_error(
    runner: Runner,
    http_server: HttpServer,
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    environ: dict[str, str],
    message: str,
) -> None:
    for name in ("JOB_COMPLETION_INDEX", "OPSPROOF_SHARDS", "OPSPROOF_RUN_ID"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    runner.profile(http_profile(f"{{name: api, url: '{http_server.base}/health'}}"))
    run = runner.run("-m", "daily", *args)
    assert run.ret == 4, run.output
    assert message in run.output
    assert not runner.report_dir.exists() or not run.bundles


def test_a_bad_zone_in_the_profile_is_a_usage_error(runner: Runner, http_server: HttpServer) -> None:
    runner.profile(http_profile(f"{{name: api, url: '{http_server.base}/health', zone: 'eu west'}}"))
    run = runner.run("-m", "daily")
    assert run.ret == 4
    assert "test.yaml:4: http[0].zone" in run.output


def test_a_zone_shard_probes_only_its_zone_and_writes_a_shard_bundle(runner: Runner, http_server: HttpServer) -> None:
    base = http_server.base
    runner.profile(
        http_profile(
            f"{{name: a1, url: '{base}/status/500', zone: vpc-a}}",
            f"{{name: a2, url: '{base}/health', zone: vpc-a}}",
            f"{{name: b1, url: '{base}/health?b1', zone: vpc-b}}",
            f"{{name: open, url: '{base}/health?open'}}",
        )
    )
    before = len(http_server.requests)
    run = runner.run("-m", "daily", "--zone", "vpc-a", "--run-id", "run-zone-1")
    assert run.ret == 1, run.output  # a1 answers 500: the shard's own exit status still says so
    assert sorted(c["target"] for c in run.results["checks"]) == ["a1", "a2"]
    asked = [path for _, path, _ in http_server.requests[before:]]
    assert "/status/500" in asked and "/health" in asked
    shard = run.results["run"]["shard"]
    assert shard == {"run": "run-zone-1", "index": 0, "count": 1, "zone": "vpc-a", "items": {"http": ["a1", "a2"]}}
    assert run.results["run"]["id"] == "run-zone-1"
    manifest = json.loads((run.bundle / "manifest.json").read_text())
    assert manifest["shard"] == {"run": "run-zone-1", "index": 0, "count": 1, "zone": "vpc-a"}
    assert manifest["previous"] is None
    assert run.bundle.name.endswith("-run-zone-zone-vpc-a-shard0of1")
    # A shard joins no chain and no history: only the sealed run will.
    assert not (runner.report_dir / ".chain").exists()
    assert opsproof(["verify", str(run.bundle)]) == 0


# -- an Indexed Job on this machine ---------------------------------------------------------


def _job_profile(http: HttpServer, tls: TlsServer, redis_address: str) -> tuple[str, str]:
    """A profile mixing http, tls and redis items, and the name of the http item that hangs (30 s)."""
    slow = next(f"slow-{i}" for i in range(100) if shard_of("http", f"slow-{i}", N) == 1)
    # 20 s timeouts: every shard, the servers and other work share two cores; only the slow item may hang.
    items = [f"{{name: svc-{i}, url: '{http.base}/health?{i}', timeout: 20s}}" for i in range(8)]
    items.append(f"{{name: {slow}, url: '{http.base}/slow/30000', timeout: 60s}}")
    host, port = tls.base.removeprefix("https://").split(":")
    tls_items = "\n".join(
        f"  - {{name: edge-{i}, host: {host}, port: {port}, server_name: localhost, ca_file: '{tls.ca_file}', timeout: 20s}}"
        for i in range(3)
    )
    extra = f"tls:\n{tls_items}\nredis:\n  - {{name: cache, url: 'redis://:${{REDIS_PASSWORD}}@{redis_address}/0', timeout: 20s}}\n"
    return http_profile(*items, environment="prod", extra=extra), slow


def _start_shard(root: Path, index: int, run_id: str, *extra: str) -> subprocess.Popen[str]:
    env = dict(os.environ, JOB_COMPLETION_INDEX=str(index), OPSPROOF_SHARDS=str(N), OPSPROOF_RUN_ID=run_id)
    command = [sys.executable, "-m", "pytest", "-m", "daily", "--profile", "test", "--report-dir", "reports"]
    return subprocess.Popen(
        [*command, "--shard", "auto", "--fail-on", "never", *extra],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _collected(root: Path) -> set[str]:
    """The node ids of the whole (unsharded) run of the profile: what the run bundle must hold."""
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-m", "daily", "--profile", "test", "--collect-only", "-q"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return {line for line in done.stdout.splitlines() if "::" in line}


def test_an_indexed_job_with_a_killed_shard_seals_into_one_run(
    runner: Runner,
    http_server: HttpServer,
    tls_server: TlsServer,
    redis_main: object,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("REDIS_PASSWORD", SECRET)
    root = runner.pytester.path
    text, slow = _job_profile(http_server, tls_server, redis_main.address)  # type: ignore[attr-defined]
    runner.profile(text)
    run_id = str(uuid.uuid4())  # what the manifests take from the Job's uid
    shards = {index: _start_shard(root, index, run_id) for index in range(N)}
    try:
        wait_for(lambda: any(path == "/slow/30000" for _, path, _ in http_server.requests), "shard 1 to probe", 60)
    except AssertionError:
        for process in shards.values():
            process.kill()
        raise AssertionError({i: p.communicate()[0][-3000:] for i, p in shards.items()}) from None
    shards[1].send_signal(signal.SIGKILL)  # the pod is lost mid-run: no bundle, no goodbye
    outputs = {index: process.communicate(timeout=120)[0] for index, process in shards.items()}
    assert shards[1].returncode == -signal.SIGKILL
    assert shards[0].returncode == 0 and shards[2].returncode == 0, outputs
    reports = root / "reports"
    assert len([p for p in reports.iterdir() if "-shard" in p.name]) == N - 1

    monkeypatch.chdir(root)
    capsys.readouterr()
    code = opsproof(["seal-run", str(reports), "--profile", "test"])
    out = capsys.readouterr().out
    assert code == 1, out  # the killed shard's critical checks are errors: the run is blocked
    assert f"shard 1 of {N}: DID NOT REPORT: no bundle arrived" in out
    bundles = [p for p in reports.iterdir() if p.is_dir() and "-shard" not in p.name and not p.name.startswith(".")]
    assert len(bundles) == 1
    run_bundle = bundles[0]
    results = json.loads((run_bundle / "results.json").read_text())
    assert results["run"]["id"] == run_id and results["run"]["exit_code"] == 1
    # Exactly the profile's checks, each once: what an unsharded run would have recorded.
    ids = [c["id"] for c in results["checks"]]
    assert len(ids) == len(set(ids))
    assert set(ids) == _collected(root)
    assert {c["kind"] for c in results["checks"]} == {"http", "tls", "redis"}
    lost = {(c["kind"], c["target"]) for c in results["checks"] if c["outcome"] == "error"}
    owned = {("http", n) for n in [*(f"svc-{i}" for i in range(8)), slow] if shard_of("http", n, N) == 1}
    owned |= {("tls", f"edge-{i}") for i in range(3) if shard_of("tls", f"edge-{i}", N) == 1}
    owned |= {("redis", "cache")} if shard_of("redis", "cache", N) == 1 else set()
    assert lost == owned
    for record in results["checks"]:
        if (record["kind"], record["target"]) in owned:
            assert record["message"].startswith("shard 1 did not report"), record
        else:
            assert record["outcome"] == "passed", record
    shard_rows = {s["index"]: s for s in results["run"]["shards"]}
    assert shard_rows[1]["reported"] is False and "bundle" not in shard_rows[1]
    assert shard_rows[0]["reported"] and shard_rows[2]["reported"]
    manifest = json.loads((run_bundle / "manifest.json").read_text())
    assert sorted(s["index"] for s in manifest["shards"] if "manifest_sha256" in s) == [0, 2]
    for row in manifest["shards"]:
        if "bundle" in row:
            assert row["manifest_sha256"] == _sha256(reports / row["bundle"] / "manifest.json")

    assert opsproof(["verify", str(run_bundle)]) == 0
    assert opsproof(["verify", "--chain", str(reports)]) == 0
    chain_out = capsys.readouterr().out
    assert "OK chain prod (1 bundle," in chain_out  # the run is one link; its shards are none
    with sqlite3.connect(reports / "history.sqlite") as db:
        assert db.execute("SELECT run_id, bundle FROM runs").fetchall() == [(run_id, run_bundle.name)]
        assert db.execute("SELECT count(*) FROM records").fetchone() == (len(ids),)
    # Sealing the same run twice would fork the chain: refused.
    assert opsproof(["seal-run", str(reports), "--run-id", run_id, "--profile", "test"]) == 4
    assert f"run {run_id} is already sealed" in capsys.readouterr().err


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_seal_run_over_complete_shards_and_a_tampered_one(
    runner: Runner, http_server: HttpServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """In-process shards (pytester) of an all-http profile; one shard's results.json edited after sealing."""
    runner.profile(http_profile(*(f"{{name: svc-{i}, url: '{http_server.base}/health?{i}'}}" for i in range(6))))
    for index in range(2):
        assert runner.run("-m", "daily", "--shard", f"{index}/2", "--run-id", "r-tamper").ret == 0
    shard1 = next(p for p in runner.report_dir.iterdir() if p.name.endswith("-shard1of2"))
    data = json.loads((shard1 / "results.json").read_text())
    for record in data["checks"]:
        record["outcome"] = "passed"  # a forger hides nothing here, but any edit breaks the seal
    (shard1 / "results.json").write_text(json.dumps(data))
    monkeypatch.chdir(runner.pytester.path)
    capsys.readouterr()
    code = opsproof(["seal-run", str(runner.report_dir), "--profile", "test"])
    out = capsys.readouterr().out
    assert code == 1, out
    assert "shard 1 of 2: DID NOT REPORT: its bundle" in out and "does not verify (changed: results.json)" in out
    sealed = next(p for p in runner.report_dir.iterdir() if p.is_dir() and "-shard" not in p.name and p.name[0] != ".")
    records = json.loads((sealed / "results.json").read_text())["checks"]
    assert len(records) == 6
    for record in records:
        mine = shard_of("http", record["target"], 2) == 1
        assert record["outcome"] == ("error" if mine else "passed")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["seal-run", "nowhere"], "seal-run 'nowhere': not a folder of shard bundles"),
        (["seal-run", "reports", "--profile", "test"], "no shard bundles of an unsealed run here; give --run-id ID"),
        (["seal-run", "reports", "--run-id", "a b", "--profile", "test"], "--run-id 'a b': expected letters"),
        (["seal-run", "reports", "--profile", "nope"], "nope.yaml: profile not found"),
        (["seal-run", "reports", "--profile", "test", "--wait", "soon"], "--wait 'soon': invalid duration"),
        (["seal-run", "reports", "--profile", "test", "--shards", "0"], "--shards 0: expected 1 to 10000"),
    ],
)
def test_bad_seal_run_input_is_a_usage_error(
    runner: Runner,
    http_server: HttpServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    runner.profile(http_profile(f"{{name: api, url: '{http_server.base}/health'}}"))
    (runner.pytester.path / "reports").mkdir()
    monkeypatch.chdir(runner.pytester.path)
    monkeypatch.delenv("OPSPROOF_RUN_ID", raising=False)
    assert opsproof(args) == 4
    assert message in capsys.readouterr().err


def test_seal_run_refuses_shards_of_another_profile_or_another_count(
    runner: Runner, http_server: HttpServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    runner.profile(http_profile(*(f"{{name: svc-{i}, url: '{http_server.base}/health'}}" for i in range(4))))
    assert runner.run("-m", "daily", "--shard", "0/2", "--run-id", "r-mixed").ret == 0
    monkeypatch.chdir(runner.pytester.path)
    assert opsproof(["seal-run", "reports", "--profile", "test", "--shards", "3"]) == 4
    assert "shard 0 of 2, but the run has 3 shards" in capsys.readouterr().err
    runner.profile(http_profile(f"{{name: other, url: '{http_server.base}/health'}}"), name="other")
    assert opsproof(["seal-run", "reports", "--profile", "other"]) == 4
    assert "is not the profile" in capsys.readouterr().err


def test_seal_run_waits_for_a_late_shard(
    runner: Runner, http_server: HttpServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """--wait: the seal step (the Job's last index) starts with the shards and seals once all have reported."""
    runner.profile(http_profile(*(f"{{name: svc-{i}, url: '{http_server.base}/health'}}" for i in range(4))))
    root = runner.pytester.path
    (root / "reports").mkdir()
    env = dict(os.environ, OPSPROOF_SHARDS="2", OPSPROOF_RUN_ID="r-late")
    seal = subprocess.Popen(
        [str(Path(sys.executable).parent / "opsproof"), "seal-run", "reports", "--profile", "test", "--wait", "90s"],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    for index in range(2):
        time.sleep(1)
        assert runner.run("-m", "daily", "--shard", f"{index}/2", "--run-id", "r-late").ret == 0
    out = seal.communicate(timeout=120)[0]
    assert seal.returncode == 0, out
    assert "shard 0 of 2: reported" in out and "shard 1 of 2: reported" in out


def test_seal_run_from_s3_with_an_object_overwritten_after_upload(
    runner: Runner,
    http_server: HttpServer,
    s3_server: S3Server,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Shards upload under Object Lock; seal-run reads them back from S3 (first versions) and ships the run."""
    bucket = f"evidence-{uuid.uuid4().hex[:10]}"
    s3_server.client.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    endpoint = ["--s3-endpoint", s3_server.url]
    runner.profile(http_profile(*(f"{{name: svc-{i}, url: '{http_server.base}/health'}}" for i in range(6))))
    for index in range(2):
        upload = ["--upload", f"s3://{bucket}/shards", "--retain", "1d", *endpoint]
        assert runner.run("-m", "daily", "--shard", f"{index}/2", "--run-id", "r-s3", *upload).ret == 0
    shard1 = next(p.name for p in runner.report_dir.iterdir() if p.name.endswith("-shard1of2"))
    # Anyone allowed to write can put a newer version on top of a locked one: that shard is not evidence.
    s3_server.client.put_object(Bucket=bucket, Key=f"shards/{shard1}/results.json", Body=b"{}")
    monkeypatch.chdir(runner.pytester.path)
    capsys.readouterr()
    sealed_dir = runner.pytester.path / "sealed"
    ship = ["--upload", f"s3://{bucket}/runs", "--retain", "1d", *endpoint]
    code = opsproof(["seal-run", f"s3://{bucket}/shards", "--profile", "test", "--report-dir", str(sealed_dir), *ship])
    out = capsys.readouterr().out
    assert code == 1, out
    assert "shard 1 of 2: DID NOT REPORT" in out and "overwritten after upload" in out
    assert "shard 0 of 2: reported" in out and f"uploaded to s3://{bucket}/runs/" in out
    results = json.loads(
        next(p for p in sealed_dir.iterdir() if p.is_dir() and p.name[0] != ".").joinpath("results.json").read_text()
    )
    assert len(results["checks"]) == 6
    assert {c["outcome"] for c in results["checks"] if shard_of("http", c["target"], 2) == 1} == {"error"}
    assert opsproof(["verify", "--chain", f"s3://{bucket}/runs", *endpoint]) == 0
    assert "OK chain test (1 bundle" in capsys.readouterr().out


def test_zone_runners_seal_into_one_run_and_an_unvisited_zone_is_a_finding(
    runner: Runner, http_server: HttpServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    base = http_server.base
    runner.profile(
        http_profile(
            f"{{name: a1, url: '{base}/health', zone: vpc-a}}",
            f"{{name: a2, url: '{base}/health', zone: vpc-a}}",
            f"{{name: b1, url: '{base}/health', zone: vpc-b}}",
            f"{{name: open, url: '{base}/health'}}",
        )
    )
    assert runner.run("-m", "daily", "--zone", "vpc-a", "--shard", "0/1", "--run-id", "r-zones").ret == 0
    monkeypatch.chdir(runner.pytester.path)
    capsys.readouterr()
    assert opsproof(["seal-run", "reports", "--profile", "test"]) == 1
    sealed = next(p for p in runner.report_dir.iterdir() if p.is_dir() and "-shard" not in p.name and p.name[0] != ".")
    records = {c["target"]: c for c in json.loads((sealed / "results.json").read_text())["checks"]}
    assert {t: r["outcome"] for t, r in records.items()} == {
        "a1": "passed",
        "a2": "passed",
        "b1": "error",
        "open": "error",
    }
    assert records["b1"]["message"].startswith("no shard of zone vpc-b reported")
    assert records["open"]["message"].startswith("no shard of zone (none) reported")


def test_seal_run_refuses_zone_shards_mixed_with_shards_of_every_zone(
    runner: Runner, http_server: HttpServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    runner.profile(http_profile(f"{{name: a1, url: '{http_server.base}/health', zone: vpc-a}}"))
    assert runner.run("-m", "daily", "--zone", "vpc-a", "--run-id", "r-mix").ret == 0
    assert runner.run("-m", "daily", "--shard", "0/1", "--run-id", "r-mix").ret == 0
    monkeypatch.chdir(runner.pytester.path)
    assert opsproof(["seal-run", "reports", "--profile", "test"]) == 4
    assert "the run mixes zone shards (vpc-a) with shards of every zone" in capsys.readouterr().err


def test_seal_run_waits_on_s3_listing_until_every_shard_uploaded(
    runner: Runner, http_server: HttpServer, s3_server: S3Server
) -> None:
    """The Job's seal index: started with the shards, it lists the prefix until both manifests are there."""
    bucket = f"evidence-{uuid.uuid4().hex[:10]}"
    s3_server.client.create_bucket(Bucket=bucket)
    runner.profile(http_profile(*(f"{{name: svc-{i}, url: '{http_server.base}/health'}}" for i in range(4))))
    root = runner.pytester.path
    env = dict(os.environ, OPSPROOF_SHARDS="2", OPSPROOF_RUN_ID="5f0c2a7e-1b2c-4d3e-8f90-123456789abc")
    opsproof_bin = str(Path(sys.executable).parent / "opsproof")
    source = [f"s3://{bucket}/shards", "--s3-endpoint", s3_server.url]
    seal = subprocess.Popen(
        [opsproof_bin, "seal-run", *source, "--profile", "test", "--wait", "90s", "--report-dir", "sealed"],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    upload = ["--upload", f"s3://{bucket}/shards", "--s3-endpoint", s3_server.url]
    for index in range(2):
        time.sleep(1)
        run_id = env["OPSPROOF_RUN_ID"]
        assert runner.run("-m", "daily", "--shard", f"{index}/2", "--run-id", run_id, *upload).ret == 0
        assert seal.poll() is None or index == 1  # it waits for the last shard
    out = seal.communicate(timeout=120)[0]
    assert seal.returncode == 0, out
    assert "shard 0 of 2: reported" in out and "shard 1 of 2: reported" in out
