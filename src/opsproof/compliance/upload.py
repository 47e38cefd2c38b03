"""Shipping evidence: bundles to S3 (`--upload s3://bucket/prefix`), under Object Lock, and back.

Each file of a sealed bundle goes to `s3://bucket/prefix/<bundle>/<file>`, manifest.json
last (a reader who sees the manifest finds every file it lists). Where the bucket has
Object Lock, each object gets compliance-mode retention until `--retain` from now
(`7y`, `400d`), or the bucket's default retention applies. What S3 answers for each
object (version id, lock mode, retain-until date) is the upload receipt: kept in
`<report-dir>/.uploads/<bundle>.json` and in the history, so a period report names the
exact object versions an auditor can fetch. Credentials come from boto3's usual chain;
`--s3-endpoint` (or AWS_ENDPOINT_URL_S3) points at an S3-compatible store.

`opsproof verify s3://bucket/prefix/<bundle>` downloads a bundle as it was uploaded (each
object's first version) and verifies it as a local one, naming every version or delete
marker added since; `opsproof verify --chain s3://bucket/prefix` walks every uploaded bundle.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from opsproof.compliance import ComplianceError
from opsproof.evidence.manifest import MANIFEST, SIGNATURE

_S3_URL = re.compile(r"s3://([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?:/(.*))?")
_RETAIN = re.compile(r"([1-9]\d{0,4})([dy])")
TIMEOUT_S = 30


@dataclass(frozen=True)
class S3Target:
    bucket: str
    prefix: str  # "" or ending in "/"
    endpoint_url: str | None = None

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"


def parse_s3_url(url: str, endpoint_url: str | None = None, option: str = "--upload") -> S3Target:
    found = _S3_URL.fullmatch(url.strip())
    if found is None:
        raise ComplianceError(f"{option} {url!r}: expected s3://bucket or s3://bucket/prefix")
    prefix = (found.group(2) or "").strip("/")
    return S3Target(found.group(1), f"{prefix}/" if prefix else "", endpoint_url)


def parse_retain(text: str) -> tuple[int, str]:
    """`7y` -> (7, "y"), `400d` -> (400, "d"); ComplianceError for anything else."""
    found = _RETAIN.fullmatch(text.strip())
    if found is None or (found.group(2) == "y" and int(found.group(1)) > 100):
        raise ComplianceError(f"--retain {text!r}: expected a number of days or years, e.g. 400d or 7y (up to 100y)")
    return int(found.group(1)), found.group(2)


def retain_until(retain: tuple[int, str], now: datetime) -> datetime:
    count, unit = retain
    if unit == "d":
        return now + timedelta(days=count)
    try:
        return now.replace(year=now.year + count)
    except ValueError:  # 29 February: the same instant a day earlier in a year without one
        return (now - timedelta(days=1)).replace(year=now.year + count)


def client(target: S3Target) -> Any:
    import boto3
    from botocore.config import Config

    config = Config(connect_timeout=TIMEOUT_S, read_timeout=TIMEOUT_S, retries={"max_attempts": 3, "mode": "standard"})
    return boto3.client("s3", endpoint_url=target.endpoint_url, config=config)


def describe_error(exc: Exception) -> str:
    """A boto3/botocore error in a line: S3's code and message, or the connection problem."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict) and "Error" in response:
        error = response["Error"]
        return f"{error.get('Code', 'error')}: {error.get('Message') or 'no message'}"
    return f"{type(exc).__name__}: {exc}"


@dataclass(frozen=True)
class BucketLock:
    """What the bucket says about Object Lock: enabled, and its default retention if any."""

    enabled: bool
    default: str | None  # "COMPLIANCE 7 years", "GOVERNANCE 30 days"
    versioning: str | None


def preflight(target: S3Target, retain: tuple[int, str] | None) -> BucketLock:
    """Check the bucket before any check runs: it exists, we may use it, and --retain can be honoured."""
    s3 = client(target)
    try:
        s3.head_bucket(Bucket=target.bucket)
    except Exception as exc:
        raise ComplianceError(f"--upload {target.url}: cannot use the bucket: {describe_error(exc)}") from None
    lock = _bucket_lock(s3, target.bucket)
    if retain is not None and not lock.enabled:
        raise ComplianceError(
            f"--retain: bucket {target.bucket} has no Object Lock, so retention cannot be set "
            "(Object Lock is chosen when a bucket is created; upload without --retain, or use a locked bucket)"
        )
    return lock


def _bucket_lock(s3: Any, bucket: str) -> BucketLock:
    try:
        config = s3.get_object_lock_configuration(Bucket=bucket).get("ObjectLockConfiguration", {})
    except Exception as exc:
        if "ObjectLockConfigurationNotFound" in describe_error(exc):
            config = {}
        else:
            raise ComplianceError(
                f"bucket {bucket}: cannot read its Object Lock setting: {describe_error(exc)}"
            ) from None
    rule = (config.get("Rule") or {}).get("DefaultRetention") or {}
    default = None
    if rule:
        amount = rule.get("Years") or rule.get("Days")
        default = f"{rule.get('Mode')} {amount} {'years' if rule.get('Years') else 'days'}"
    try:
        versioning = s3.get_bucket_versioning(Bucket=bucket).get("Status")
    except Exception:
        versioning = None
    return BucketLock(enabled=config.get("ObjectLockEnabled") == "Enabled", default=default, versioning=versioning)


def upload_bundle(
    bundle: Path, target: S3Target, retain: tuple[int, str] | None, lock: BucketLock, now: datetime | None = None
) -> dict[str, Any]:
    """Put every file of a sealed bundle; the receipt of what S3 stored (version ids, retention)."""
    s3 = client(target)
    names = sorted(p.relative_to(bundle).as_posix() for p in bundle.rglob("*") if p.is_file())
    # The manifest (and its signature) last: once it is there, everything it lists is too.
    names.sort(key=lambda name: (name in (MANIFEST, SIGNATURE), name == SIGNATURE))
    until = retain_until(retain, now or datetime.now(UTC)) if retain is not None else None
    objects: dict[str, dict[str, Any]] = {}
    for name in names:
        data = (bundle / name).read_bytes()
        digest = hashlib.sha256(data)
        key = f"{target.prefix}{bundle.name}/{name}"
        extra: dict[str, Any] = {
            # S3 checks these on arrival (and Object Lock requires one): a corrupted upload is refused.
            "ContentMD5": base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode(),
            "ChecksumAlgorithm": "SHA256",
            "ChecksumSHA256": base64.b64encode(digest.digest()).decode(),
            "Metadata": {"sha256": digest.hexdigest()},
            "ContentType": _content_type(name),
        }
        if until is not None:
            extra |= {"ObjectLockMode": "COMPLIANCE", "ObjectLockRetainUntilDate": until}
        answer = s3.put_object(Bucket=target.bucket, Key=key, Body=data, **extra)
        objects[name] = {"key": key, "version_id": answer.get("VersionId"), "sha256": digest.hexdigest()}
    if lock.enabled:  # what S3 says it holds, not what we asked for
        for found in objects.values():
            head = s3.head_object(Bucket=target.bucket, Key=found["key"], VersionId=found["version_id"])
            found["lock_mode"] = head.get("ObjectLockMode")
            retain_date = head.get("ObjectLockRetainUntilDate")
            found["retain_until"] = _iso(retain_date) if retain_date else None
    return {
        "location": f"s3://{target.bucket}/{target.prefix}{bundle.name}/",
        "bucket": target.bucket,
        "prefix": target.prefix,
        "endpoint_url": target.endpoint_url,
        "uploaded_at": _iso(datetime.now(UTC)),
        "object_lock": {
            "enabled": lock.enabled,
            "mode": "COMPLIANCE" if until is not None else (lock.default.split()[0] if lock.default else None),
            "retain": f"{retain[0]}{retain[1]}" if retain is not None else None,
            "retain_until": _iso(until) if until is not None else None,
            "bucket_default": lock.default,
        },
        "versioning": lock.versioning,
        "objects": objects,
    }


def _content_type(name: str) -> str:
    return {"json": "application/json", "html": "text/html; charset=utf-8", "xml": "application/xml"}.get(
        name.rsplit(".", 1)[-1], "application/octet-stream"
    )


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def write_receipt(report_dir: Path, bundle: str, receipt: dict[str, Any]) -> Path:
    folder = report_dir / ".uploads"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{bundle}.json"
    path.write_text(json.dumps(receipt, indent=2) + "\n")
    return path


def describe_receipt(receipt: dict[str, Any]) -> str:
    lock = receipt["object_lock"]
    versions = sum(1 for o in receipt["objects"].values() if o.get("version_id"))
    text = f"opsproof: uploaded to {receipt['location']} ({len(receipt['objects'])} objects, {versions} version ids"
    if lock["retain_until"]:
        text += f"; Object Lock {lock['mode']} until {lock['retain_until']}"
    elif lock["bucket_default"]:
        text += f"; the bucket's default retention {lock['bucket_default']}"
    return text + ")"


# -- reading back ---------------------------------------------------------------------------


def download(target: S3Target, into: Path) -> list[dict[str, Any]]:
    """Every object under the target's prefix into `into` (paths relative to the prefix), as first uploaded.

    Object Lock keeps a locked version from being deleted or overwritten, but anyone
    allowed to write may still put a newer version on top, or a delete marker that hides
    it, and a reader of the latest version would see the forgery (a results.json and a
    manifest.json forged together even verify). So each object's versions are listed:
    its first version is the evidence read and verified, and every version or delete
    marker added after it is named in the object's `problems`.
    """
    s3 = client(target)
    found: list[dict[str, Any]] = []
    try:
        for relative, history in sorted(object_versions(s3, target).items()):
            versions = [v for v in history if not v["delete_marker"]]
            if not versions:  # only delete markers: nothing left to read
                continue
            original = versions[-1]  # S3 lists each key's versions newest first
            answer = s3.get_object(Bucket=target.bucket, Key=original["key"], VersionId=original["version_id"])
            path = into / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(answer["Body"].read())
            retain = answer.get("ObjectLockRetainUntilDate")
            found.append(
                {
                    "path": relative,
                    "version_id": answer.get("VersionId"),
                    "lock_mode": answer.get("ObjectLockMode"),
                    "retain_until": _iso(retain) if retain else None,
                    "problems": [_added_after(later) for later in history if later is not original],
                }
            )
    except Exception as exc:
        raise ComplianceError(f"{target.url}: cannot read it: {describe_error(exc)}") from None
    return found


def object_versions(s3: Any, target: S3Target) -> dict[str, list[dict[str, Any]]]:
    """Each object's versions and delete markers, newest first, by path under the prefix."""
    by_path: dict[str, list[dict[str, Any]]] = {}
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=target.bucket, Prefix=target.prefix):
        entries = [(v, False) for v in page.get("Versions", [])] + [(m, True) for m in page.get("DeleteMarkers", [])]
        for entry, is_marker in entries:
            relative = entry["Key"][len(target.prefix) :]
            if not relative or relative.endswith("/") or ".." in relative.split("/"):
                continue
            by_path.setdefault(relative, []).append(
                {
                    "key": entry["Key"],
                    "version_id": entry.get("VersionId"),
                    "at": entry.get("LastModified"),
                    "delete_marker": is_marker,
                }
            )
    for history in by_path.values():
        history.sort(key=lambda v: v["at"] or datetime.min.replace(tzinfo=UTC), reverse=True)
    return by_path


def _added_after(entry: dict[str, Any]) -> str:
    when = f" at {_iso(entry['at'])}" if entry["at"] else ""
    if entry["delete_marker"]:
        return f"deleted after upload: a delete marker (version {entry['version_id']}{when}) hides the uploaded version"
    return f"overwritten after upload: a newer version {entry['version_id']}{when} lies on top of the uploaded one"


def fetch(url: str, endpoint_url: str | None, *, bundle: bool) -> tuple[Path, list[dict[str, Any]], Any]:
    """Download one uploaded bundle (`bundle=True`: s3://bucket/prefix/<bundle>) or every bundle under a prefix.

    Returns the local folder, what S3 said of each object, and the temporary directory holding them
    (removed when it is garbage collected or cleaned up).
    """
    target = parse_s3_url(url, endpoint_url, option="verify")
    if bundle and not target.prefix:
        raise ComplianceError(f"verify {url!r}: name the bundle: s3://bucket/prefix/<bundle>")
    holder = tempfile.TemporaryDirectory(prefix="opsproof-verify-")
    folder = Path(holder.name) / (target.prefix.rstrip("/").rsplit("/", 1)[-1] if bundle else "reports")
    objects = download(target, folder)
    if not objects:
        holder.cleanup()
        raise ComplianceError(f"verify {url!r}: no objects under it")
    return folder, objects, holder
