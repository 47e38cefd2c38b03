"""`buckets` checks against moto's S3 server: usage, lifecycle rules, protection; reads only."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from helpers.backup_servers import S3Server, s3_server

from conftest import Runner, listening_black_hole, profile_error

__all__ = ["s3_server"]  # fixture

KB = 1024


def buckets_profile(*items: str) -> str:
    body = "\n".join(f"  - {item}" for item in items)
    return f"environment: test\ndefaults: {{timeout: 3s}}\nbuckets:\n{body}\n"


def _item(server: S3Server, name: str, bucket: str, rest: str, prefix: str = "") -> str:
    return f"{{name: {name}, s3: {{bucket: {bucket}, prefix: '{prefix}', endpoint_url: '{server.url}'}}, {rest}}}"


def _uploads(server: S3Server, bucket: str, sizes: list[int]) -> str:
    server.bucket(bucket)
    for index, size in enumerate(sizes):
        server.put(bucket, f"blobs/file-{index:03d}.bin", b"x" * size)
    return bucket


def test_usage_against_sizes_quota_shares_and_counts(runner: Runner, s3_server: S3Server) -> None:
    bucket = _uploads(s3_server, "bu-uploads", [10 * KB, 30 * KB, 60 * KB])  # 100 KB in 3 objects
    runner.profile(
        buckets_profile(
            _item(s3_server, "fits", bucket, "size: {warn: 200KB, fail: 1MB}, objects: {fail: 10}"),
            _item(s3_server, "share", bucket, "quota: 120KB, size: {warn: 80%, fail: 95%}"),
            _item(s3_server, "full", bucket, "quota: 100KB, size: {warn: 80%, fail: 95%}"),
            _item(s3_server, "many", bucket, "objects: {warn: 2, fail: 10}"),
            _item(s3_server, "prefix", bucket, "size: {fail: 50KB}", prefix="blobs/file-000"),
        )
    )
    run = runner.run("-m", "daily")
    fits = run.record("buckets.usage[fits]")
    assert fits["outcome"] == "passed", fits["message"]
    assert fits["observed"]["bytes"] == 100 * KB and fits["observed"]["objects"] == 3
    assert fits["observed"]["largest"][0] == {"key": "blobs/file-002.bin", "size": 60 * KB}
    assert fits["message"] == f"100.0KB in 3 objects under s3://{bucket}/"
    assert fits["markers"] == ["capacity", "daily"]
    share = run.record("buckets.usage[share]")
    assert share["outcome"] == "warned"
    assert share["message"].startswith(
        "size 100.0KB (83.3% of quota 120.0KB) is over the warn threshold 96.0KB (80.0% of quota 120.0KB)"
    )
    assert "largest: blobs/file-002.bin (60.0KB)" in share["message"]
    assert share["observed"]["quota_share_percent"] == 83.33
    full = run.record("buckets.usage[full]")
    assert full["outcome"] == "failed" and "over the fail threshold 95.0KB (95.0% of quota" in full["message"]
    many = run.record("buckets.usage[many]")
    assert many["outcome"] == "warned" and "objects 3 is over the warn threshold 2" in many["message"]
    assert run.record("buckets.usage[prefix]")["observed"]["bytes"] == 10 * KB


def test_a_listing_past_its_cap_is_never_judged_as_the_whole(runner: Runner, s3_server: S3Server) -> None:
    bucket = _uploads(s3_server, "bu-capped", [10 * KB] * 5)
    runner.profile(
        buckets_profile(
            _item(s3_server, "unknown", bucket, "max_keys: 3, size: {fail: 100KB}"),
            _item(s3_server, "already-over", bucket, "max_keys: 3, size: {fail: 20KB}"),
        )
    )
    run = runner.run("-m", "daily")
    unknown = run.record("buckets.usage[unknown]")
    assert unknown["outcome"] == "error"
    assert unknown["message"] == (
        "at least 30.0KB in at least 3 objects (the listing stopped: max_keys 3 reached): "
        "the whole is not known; raise max_keys or list_timeout"
    )
    assert unknown["observed"]["complete"] is False
    over = run.record("buckets.usage[already-over]")
    assert over["outcome"] == "failed"
    assert over["message"] == (
        "size at least 30.0KB is over the fail threshold 20.0KB (the listing stopped: max_keys 3 reached)"
    )


def test_a_listing_past_its_deadline_says_so(runner: Runner, s3_server: S3Server) -> None:
    bucket = _uploads(s3_server, "bu-slow", [1] * 1001)  # two pages of ListObjectsV2
    runner.profile(buckets_profile(_item(s3_server, "deadline", bucket, "list_timeout: 1ms, size: {fail: 1MB}")))
    record = runner.run("-m", "daily").record("buckets.usage[deadline]")
    assert record["outcome"] == "error"
    assert "at least 1000B in at least 1,000 objects (the listing stopped: list_timeout reached)" in record["message"]


def test_lifecycle_rules(runner: Runner, s3_server: S3Server) -> None:
    with_rules = s3_server.bucket("bu-ilm")
    s3_server.client.put_bucket_lifecycle_configuration(
        Bucket=with_rules,
        LifecycleConfiguration={
            "Rules": [
                {"ID": "expire-old", "Status": "Enabled", "Filter": {"Prefix": "blobs/"}, "Expiration": {"Days": 90}},
                {"ID": "paused", "Status": "Disabled", "Filter": {"Prefix": "tmp/"}, "Expiration": {"Days": 1}},
            ]
        },
    )
    disabled = s3_server.bucket("bu-ilm-off")
    s3_server.client.put_bucket_lifecycle_configuration(
        Bucket=disabled,
        LifecycleConfiguration={
            "Rules": [{"ID": "paused", "Status": "Disabled", "Filter": {"Prefix": ""}, "Expiration": {"Days": 1}}]
        },
    )
    bare = s3_server.bucket("bu-ilm-none")
    runner.profile(
        buckets_profile(
            _item(s3_server, "ilm", with_rules, "lifecycle: true"),
            _item(s3_server, "ilm-off", disabled, "lifecycle: true"),
            _item(s3_server, "ilm-none", bare, "lifecycle: true"),
        )
    )
    run = runner.run("-m", "daily")
    ilm = run.record("buckets.lifecycle[ilm]")
    assert ilm["outcome"] == "passed"
    assert ilm["message"] == "1 of 2 lifecycle rule(s) enabled: expire-old"
    assert ilm["observed"]["rules"][0] == {
        "id": "expire-old",
        "status": "Enabled",
        "prefix": "blobs/",
        "expiration": {"Days": "90"},
    }
    off = run.record("buckets.lifecycle[ilm-off]")
    assert off["outcome"] == "failed" and off["message"].endswith("1 lifecycle rule(s), none enabled (paused)")
    none = run.record("buckets.lifecycle[ilm-none]")
    assert none["outcome"] == "failed" and "no lifecycle rules" in none["message"]


def test_protection_and_a_missing_bucket(runner: Runner, s3_server: S3Server) -> None:
    versioned = s3_server.bucket("bu-versioned", versioning=True)
    locked = s3_server.bucket("bu-locked", object_lock=True, encryption=True)
    runner.profile(
        buckets_profile(
            _item(s3_server, "versioned", versioned, "versioning: true"),
            _item(s3_server, "not-locked", versioned, "versioning: true, object_lock: true, encryption: true"),
            _item(s3_server, "locked", locked, "versioning: true, object_lock: true, encryption: true"),
            _item(s3_server, "missing", "bu-does-not-exist", "versioning: true, lifecycle: true, size: {fail: 1GB}"),
        )
    )
    run = runner.run("-m", "daily")
    assert run.record("buckets.protection[versioned]")["outcome"] == "passed"
    not_locked = run.record("buckets.protection[not-locked]")
    assert not_locked["outcome"] == "failed"
    assert not_locked["message"] == (
        f"bucket {versioned}: no default server-side encryption; Object Lock is not enabled"
    )
    locked_record = run.record("buckets.protection[locked]")
    assert locked_record["outcome"] == "passed"
    assert locked_record["message"] == "versioning Enabled; encryption AES256; Object Lock Enabled"
    for check in ("usage", "lifecycle", "protection"):
        missing = run.record(f"buckets.{check}[missing]")
        assert missing["outcome"] == "failed"
        assert "the bucket does not exist" in missing["message"], missing["message"]


def test_checks_only_read_and_change_nothing(runner: Runner, s3_server: S3Server) -> None:
    bucket = _uploads(s3_server, "bu-readonly", [KB, 2 * KB])
    s3_server.client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    s3_server.client.put_bucket_lifecycle_configuration(
        Bucket=bucket,
        LifecycleConfiguration={"Rules": [{"ID": "r", "Status": "Enabled", "Filter": {}, "Expiration": {"Days": 9}}]},
    )
    state = s3_server.snapshot(bucket)
    seen = len(s3_server.requests)
    runner.profile(
        buckets_profile(
            _item(s3_server, "all", bucket, "size: {fail: 1GB}, objects: {fail: 9}, lifecycle: true, versioning: true")
        )
    )
    run = runner.run("-m", "daily")
    assert run.ret == 0, run.output
    requests = [(m, p) for m, p in s3_server.requests[seen:] if bucket in p]
    assert requests, "the checks made no request"
    assert {method for method, _ in requests} <= {"GET", "HEAD"}, requests
    # The listing, the lifecycle and the versioning, the encryption and the lock: one request each.
    assert len(requests) == 5, requests
    assert s3_server.snapshot(bucket) == state


def test_an_endpoint_given_as_a_secret_is_never_shown(
    runner: Runner, s3_server: S3Server, monkeypatch: pytest.MonkeyPatch, closed_port: str
) -> None:
    bucket = _uploads(s3_server, "bu-secret", [KB])
    closed = closed_port.rsplit("/", 1)[0]
    monkeypatch.setenv("S3_ENDPOINT", s3_server.url)
    monkeypatch.setenv("CLOSED_S3", closed)
    runner.profile(
        buckets_profile(
            f"{{name: hidden, s3: {{bucket: {bucket}, endpoint_url: '${{S3_ENDPOINT}}'}}, size: {{warn: 1B}}}}",
            "{name: closed, s3: {bucket: bu-gone, endpoint_url: '${CLOSED_S3}'}, versioning: true}",
        )
    )
    run = runner.run("-m", "daily")
    assert run.record("buckets.usage[hidden]")["outcome"] == "warned"
    closed_record = run.record("buckets.protection[closed]")
    assert closed_record["outcome"] == "failed"
    assert "cannot connect to ${CLOSED_S3}/bu-gone" in closed_record["message"], closed_record["message"]
    for text in [run.output, *(p.read_text(errors="replace") for p in run.bundle.rglob("*") if p.is_file())]:
        assert s3_server.url not in text and closed not in text


def test_the_write_refusing_client_allows_the_lifecycle_read_only(s3_server: S3Server) -> None:
    from opsproof.backup.store import S3Store
    from opsproof.targets.backups import S3Location

    bucket = s3_server.bucket("bu-guard")
    store = S3Store(S3Location(bucket=bucket, endpoint_url=s3_server.url), 3.0)
    seen = len(s3_server.requests)
    assert store.lifecycle() == []
    with pytest.raises(PermissionError, match="PutBucketLifecycleConfiguration refused"):
        store.client.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": []})
    with pytest.raises(PermissionError, match="DeleteBucketLifecycle refused"):
        store.client.delete_bucket_lifecycle(Bucket=bucket)
    assert [m for m, p in s3_server.requests[seen:]] == ["GET"]


def test_a_black_hole_costs_its_timeout_once(runner: Runner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with listening_black_hole() as port:
        runner.profile(
            buckets_profile(
                f"{{name: hole, s3: {{bucket: bu-x, endpoint_url: 'http://127.0.0.1:{port}'}}, timeout: 3s, "
                "size: {fail: 1GB}, lifecycle: true, versioning: true}"
            )
        )
        started = time.monotonic()
        run = runner.run("-m", "daily")
        took = time.monotonic() - started
    for check in ("usage", "lifecycle", "protection"):
        record = run.record(f"buckets.{check}[hole]")
        assert record["outcome"] == "failed" and "timed out" in record["message"], record["message"]
    # Listing, lifecycle and protection wait side by side: about one timeout for the three, where one
    # after the other they would take three (9s); the margin is for a busy machine's client set-up.
    assert 3 <= run.record("buckets.usage[hole]")["observed"]["elapsed_s"] < 7.5
    assert took < 20, took


@pytest.mark.parametrize(
    ("rest", "message"),
    [
        ("size: {warn: 80%}", "size.warn: 80% is a share of quota: give quota:"),
        ("quota: 1GB, size: {warn: 120%}", "size.warn: invalid percentage '120%'"),
        ("size: {warn: 400}", "size.warn: invalid size 400"),
        ("size: {warn: 2GB, fail: 1GB}", "higher is worse here"),
        ("size: {}", "an empty threshold {} judges nothing: give warn, fail or both"),
        ("objects: {warn: -1}", "buckets[0].objects.warn: input should be greater than or equal to 0"),
        ("quota: 1GB", "quota is what size: {warn: 80%} is a share of"),
        ("lifecycle: false", "a buckets item needs size, objects, lifecycle"),
        ("lifecycle: yes-please", "buckets[0].lifecycle: input should be a valid boolean"),
        ("size: {fail: 1GB}, max_keys: 0", "buckets[0].max_keys: input should be greater than or equal to 1"),
        ("size: {fail: 1GB}, list_timeout: 0s", "buckets[0].list_timeout"),
        ("size: {fail: 1GB}, du: true", "buckets[0].du: unknown key"),
    ],
)
def test_bad_items_are_refused_naming_the_key(tmp_path: Path, rest: str, message: str) -> None:
    error = profile_error(tmp_path, buckets_profile(f"{{name: b, s3: {{bucket: apex-uploads}}, {rest}}}"))
    assert message in error, error


def test_bad_profile_exits_4(runner: Runner) -> None:
    runner.profile(buckets_profile("{name: b, s3: {bucket: apex-uploads}, size: {warn: 80%}}"))
    run = runner.run("-m", "daily")
    assert run.ret == 4
    assert "profiles/test.yaml:4: buckets[0]: size.warn: 80% is a share of quota" in run.output
