"""Shipping evidence to S3 (moto's server mode): Object Lock retention, version ids, verifying from S3."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from conftest import HttpServer, Runner, http_profile
from opsproof.cli import main as opsproof
from opsproof.compliance import ComplianceError
from opsproof.compliance.history import History, locate
from opsproof.compliance.upload import parse_retain, parse_s3_url, retain_until

REGION = "us-east-1"


@pytest.fixture(scope="module")
def s3() -> Iterator[tuple[str, Any]]:
    """moto's S3 on a loopback port (its own server: the test owns every bucket on it)."""
    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")}
    os.environ.update(
        {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": REGION}
    )
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    try:
        yield url, boto3.client("s3", endpoint_url=url, region_name=REGION)
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _bucket(client: Any, *, locked: bool, default_years: int | None = None) -> str:
    name = f"evidence-{uuid.uuid4().hex[:10]}"
    client.create_bucket(Bucket=name, ObjectLockEnabledForBucket=locked)
    if default_years is not None:
        client.put_object_lock_configuration(
            Bucket=name,
            ObjectLockConfiguration={
                "ObjectLockEnabled": "Enabled",
                "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Years": default_years}},
            },
        )
    return name


def _profile(runner: Runner, base: str) -> None:
    runner.profile(http_profile(f"{{name: up, url: '{base}/health'}}", environment="prod"))


def test_upload_with_compliance_retention_and_version_ids(
    runner: Runner, http_server: HttpServer, s3: tuple[str, Any]
) -> None:
    endpoint, client = s3
    bucket = _bucket(client, locked=True)
    _profile(runner, http_server.base)
    before = datetime.now(UTC)
    run = runner.run(
        "-m", "daily", "--upload", f"s3://{bucket}/evidence/prod", "--retain", "7y", "--s3-endpoint", endpoint
    )
    assert run.ret == 0, run.output
    bundle = run.bundle
    assert (
        f"uploaded to s3://{bucket}/evidence/prod/{bundle.name}/ (4 objects, 4 version ids; Object Lock COMPLIANCE"
        in run.output
    )
    receipt = json.loads((runner.report_dir / ".uploads" / f"{bundle.name}.json").read_text())
    assert set(receipt["objects"]) == {"junit.xml", "manifest.json", "report.html", "results.json"}
    for name, found in receipt["objects"].items():
        head = client.head_object(Bucket=bucket, Key=found["key"], VersionId=found["version_id"])
        assert head["ObjectLockMode"] == "COMPLIANCE"
        until = head["ObjectLockRetainUntilDate"]
        assert (
            before.replace(year=before.year + 7) - timedelta(minutes=5)
            < until
            < datetime.now(UTC).replace(year=before.year + 7) + timedelta(minutes=5)
        )
        assert found["lock_mode"] == "COMPLIANCE" and found["retain_until"]
        assert client.get_object(Bucket=bucket, Key=found["key"])["Body"].read() == (bundle / name).read_bytes()
    # Compliance mode: nobody can delete a locked version before its date.
    manifest = receipt["objects"]["manifest.json"]
    with pytest.raises(client.exceptions.ClientError, match="AccessDenied"):
        client.delete_object(Bucket=bucket, Key=manifest["key"], VersionId=manifest["version_id"])
    # The history records where the bundle went and its versions.
    with History(locate(runner.report_dir, None)) as history:
        (row,) = history.runs("prod", "2000-01-01T00:00:00.000Z", "2999-01-01T00:00:00.000Z")
    assert row.upload is not None
    assert row.upload["objects"]["results.json"]["version_id"] == receipt["objects"]["results.json"]["version_id"]
    assert row.upload["object_lock"]["retain"] == "7y"


def test_verify_reads_a_bundle_back_from_s3_and_catches_a_new_version(
    runner: Runner, http_server: HttpServer, s3: tuple[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    endpoint, client = s3
    bucket = _bucket(client, locked=True)
    _profile(runner, http_server.base)
    run = runner.run("-m", "daily", "--upload", f"s3://{bucket}/ev", "--retain", "30d", "--s3-endpoint", endpoint)
    url = f"s3://{bucket}/ev/{run.bundle.name}"
    assert opsproof(["verify", url, "--s3-endpoint", endpoint]) == 0
    out = capsys.readouterr().out
    assert f"OK {url}: every file matches manifest.json" in out
    assert "read 4 objects, 4 under Object Lock COMPLIANCE until" in out
    # Object Lock keeps the uploaded versions, but anyone with write access may put new ones on top:
    # here a results.json and a manifest.json forged to agree, which a reader of the latest
    # versions would find consistent.
    forged_results = b'{"forged": true}'
    manifest = json.loads((run.bundle / "manifest.json").read_text())
    manifest["files"]["results.json"]["sha256"] = hashlib.sha256(forged_results).hexdigest()
    for name, body in (("results.json", forged_results), ("manifest.json", json.dumps(manifest).encode())):
        client.put_object(Bucket=bucket, Key=f"ev/{run.bundle.name}/{name}", Body=body)
    assert opsproof(["verify", url, "--s3-endpoint", endpoint]) == 1
    out = capsys.readouterr().out
    for name in ("results.json", "manifest.json"):
        assert f"TAMPERED {url}/{name}: overwritten after upload: a newer version " in out, out
    # The evidence read is what was uploaded, and it is intact.
    assert f"OK {url}: every file matches manifest.json" in out
    versions = client.list_object_versions(Bucket=bucket, Prefix=f"ev/{run.bundle.name}/results.json")["Versions"]
    assert len(versions) == 2


def test_verify_from_s3_names_a_delete_marker_and_reads_what_it_hides(
    runner: Runner, http_server: HttpServer, s3: tuple[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    endpoint, client = s3
    bucket = _bucket(client, locked=False)
    client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    _profile(runner, http_server.base)
    run = runner.run("-m", "daily", "--upload", f"s3://{bucket}/ev", "--s3-endpoint", endpoint)
    url = f"s3://{bucket}/ev/{run.bundle.name}"
    client.delete_object(
        Bucket=bucket, Key=f"ev/{run.bundle.name}/report.html"
    )  # a delete marker, in a versioned bucket
    assert opsproof(["verify", url, "--s3-endpoint", endpoint]) == 1
    out = capsys.readouterr().out
    assert f"TAMPERED {url}/report.html: deleted after upload: a delete marker (version " in out, out
    assert f"OK {url}: every file matches manifest.json" in out  # the hidden version is still the evidence
    assert opsproof(["verify", "--chain", f"s3://{bucket}/ev", "--s3-endpoint", endpoint]) == 1
    out = capsys.readouterr().out
    assert f"TAMPERED s3://{bucket}/ev/{run.bundle.name}/report.html: deleted after upload" in out, out
    assert "OK chain prod (1 bundle" in out


def test_verify_the_chain_of_uploaded_bundles(
    runner: Runner, http_server: HttpServer, s3: tuple[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    endpoint, client = s3
    bucket = _bucket(client, locked=False)
    _profile(runner, http_server.base)
    for _ in range(3):
        assert runner.run("-m", "daily", "--upload", f"s3://{bucket}/chain", "--s3-endpoint", endpoint).ret == 0
    assert opsproof(["verify", "--chain", f"s3://{bucket}/chain", "--s3-endpoint", endpoint]) == 0
    assert "OK chain prod (3 bundles" in capsys.readouterr().out
    # Without Object Lock or versioning, an object can be deleted: the chain then names the gap.
    # The middle bundle of the chain (names sort by second, so two bundles of one second may sort either way).
    manifests = [json.loads(m.read_text()) for m in runner.report_dir.glob("prod-*/manifest.json")]
    genesis = next(m["bundle"] for m in manifests if m["previous"] is None)
    first = next(m["bundle"] for m in manifests if (m["previous"] or {}).get("bundle") == genesis)
    for found in client.list_objects_v2(Bucket=bucket, Prefix=f"chain/{first}/")["Contents"]:
        client.delete_object(Bucket=bucket, Key=found["Key"])
    assert opsproof(["verify", "--chain", f"s3://{bucket}/chain", "--s3-endpoint", endpoint]) == 1
    assert f"names previous bundle {first}" in capsys.readouterr().out


def test_the_buckets_default_retention_is_recorded(
    runner: Runner, http_server: HttpServer, s3: tuple[str, Any]
) -> None:
    endpoint, client = s3
    bucket = _bucket(client, locked=True, default_years=1)
    _profile(runner, http_server.base)
    run = runner.run("-m", "daily", "--upload", f"s3://{bucket}", "--s3-endpoint", endpoint)
    assert run.ret == 0, run.output
    receipt = json.loads((runner.report_dir / ".uploads" / f"{run.bundle.name}.json").read_text())
    assert receipt["object_lock"]["bucket_default"] == "COMPLIANCE 1 years"
    assert receipt["object_lock"]["retain"] is None
    assert {o["lock_mode"] for o in receipt["objects"].values()} == {"COMPLIANCE"}
    assert "the bucket's default retention COMPLIANCE 1 years" in run.output


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--upload", "s3://Bad_Bucket!/x"], "--upload 's3://Bad_Bucket!/x': expected s3://bucket"),
        (["--upload", "https://bucket/x"], "expected s3://bucket or s3://bucket/prefix"),
        (["--upload", "s3://no-such-bucket-here/x"], "--upload s3://no-such-bucket-here/x/: cannot use the bucket"),
        (["--retain", "7y"], "--retain goes with --upload"),
        (["--upload", "s3://{unlocked}/x", "--retain", "7 years"], "--retain '7 years': expected a number of days"),
        (["--upload", "s3://{unlocked}/x", "--retain", "7y"], "has no Object Lock, so retention cannot be set"),
    ],
)
def test_bad_upload_options_are_usage_errors(
    runner: Runner, http_server: HttpServer, s3: tuple[str, Any], args: list[str], words: str
) -> None:
    endpoint, client = s3
    unlocked = _bucket(client, locked=False)
    _profile(runner, http_server.base)
    run = runner.run("-m", "daily", *[a.format(unlocked=unlocked) for a in args], "--s3-endpoint", endpoint)
    assert run.ret == 4, run.output
    assert words in run.output
    assert not runner.report_dir.exists() or not run.bundles


def test_a_failed_upload_is_an_internal_error_and_the_bundle_stays(
    runner: Runner, http_server: HttpServer, s3: tuple[str, Any]
) -> None:
    endpoint, client = s3
    bucket = _bucket(client, locked=False)
    _profile(runner, http_server.base)
    # The bucket disappears while the checks run (after the start-up check found it).
    runner.pytester.makeconftest(
        "import boto3\n"
        "def pytest_collection_finish(session):\n"
        f"    boto3.client('s3', endpoint_url='{endpoint}', region_name='{REGION}').delete_bucket(Bucket='{bucket}')\n"
    )
    run = runner.run("-m", "daily", "--upload", f"s3://{bucket}/x", "--s3-endpoint", endpoint)
    assert run.ret == 3
    assert f"the bundle was NOT uploaded to s3://{bucket}/x/ (NoSuchBucket" in run.output
    assert opsproof(["verify", str(run.bundle)]) == 0
    with History(locate(runner.report_dir, None)) as history:
        assert history.count("runs") == 1  # still in the history, without an upload


def test_url_and_retention_parsing() -> None:
    assert parse_s3_url("s3://bucket").prefix == ""
    assert parse_s3_url("s3://bucket/a/b/").prefix == "a/b/"
    assert parse_retain("7y") == (7, "y") and parse_retain("400d") == (400, "d")
    with pytest.raises(ComplianceError):
        parse_retain("0d")
    with pytest.raises(ComplianceError):
        parse_retain("500y")
    leap = datetime(2028, 2, 29, 12, tzinfo=UTC)
    assert retain_until((1, "y"), leap) == datetime(2029, 2, 28, 12, tzinfo=UTC)
    assert retain_until((10, "d"), leap) == datetime(2028, 3, 10, 12, tzinfo=UTC)


def test_verify_s3_usage_errors(s3: tuple[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    endpoint, client = s3
    bucket = _bucket(client, locked=False)
    assert opsproof(["verify", f"s3://{bucket}", "--s3-endpoint", endpoint]) == 4
    assert "name the bundle" in capsys.readouterr().err
    assert opsproof(["verify", f"s3://{bucket}/nothing-here", "--s3-endpoint", endpoint]) == 4
    assert "no objects under it" in capsys.readouterr().err


def test_uploads_witness_a_deleted_newest_bundle(
    runner: Runner, http_server: HttpServer, s3: tuple[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    """The newest bundle and its history rows deleted locally: the uploads under Object Lock still know of it."""
    endpoint, client = s3
    bucket = _bucket(client, locked=True)
    _profile(runner, http_server.base)
    bundles = []
    for _ in range(2):
        run = runner.run("-m", "daily", "--upload", f"s3://{bucket}/w", "--retain", "1d", "--s3-endpoint", endpoint)
        assert run.ret == 0, run.output
        (new,) = set(run.bundles) - set(bundles)
        bundles.append(new)
    reports = runner.report_dir
    shutil.rmtree(bundles[-1])
    head = reports / ".chain" / "prod.json"
    digest = hashlib.sha256((bundles[0] / "manifest.json").read_bytes()).hexdigest()
    head.write_text(json.dumps({**json.loads(head.read_text()), "bundle": bundles[0].name, "manifest_sha256": digest}))
    (reports / "history.sqlite").unlink()  # the local witness is gone too
    capsys.readouterr()
    assert opsproof(["verify", "--chain", str(reports)]) == 0
    code = opsproof(["verify", "--chain", str(reports), "--witness", f"s3://{bucket}/w", "--s3-endpoint", endpoint])
    out = capsys.readouterr().out
    assert code == 1, out
    assert f"{bundles[-1].name}: the uploads under s3://{bucket}/w/ knows of it, but it is not in the folder" in out
