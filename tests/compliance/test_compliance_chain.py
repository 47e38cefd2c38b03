"""`opsproof verify --chain DIR` and Ed25519-signed manifests (`--sign-key`, `verify --public-key`)."""

from __future__ import annotations

import hashlib
import json
import shutil
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from helpers.compliance_data import daily_runs, record, results, write

from conftest import HttpServer, Runner, http_profile
from opsproof.cli import main as opsproof
from opsproof.evidence.signing import load_signer


@pytest.fixture
def chain(tmp_path: Path) -> tuple[Path, list[Path]]:
    """Five daily prod bundles and two staging ones, interleaved, in one report dir."""
    reports = tmp_path / "reports"
    prod = daily_runs(reports, "prod", date(2026, 7, 1), date(2026, 7, 3))
    daily_runs(reports, "staging", date(2026, 7, 1), date(2026, 7, 2), hour=7)
    prod += daily_runs(reports, "prod", date(2026, 7, 4), date(2026, 7, 5))
    return reports, prod


def _verify_chain(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = opsproof(["verify", *args])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_an_untouched_chain_verifies(chain: tuple[Path, list[Path]], capsys: pytest.CaptureFixture[str]) -> None:
    reports, prod = chain
    code, out = _verify_chain(capsys, "--chain", str(reports))
    assert code == 0, out
    assert f"OK chain prod (5 bundles, {prod[0].name} .. {prod[-1].name}): every link and every file verified" in out
    assert "OK chain staging (2 bundles" in out
    code, out = _verify_chain(capsys, "--chain", str(reports), "--environment", "staging")
    assert code == 0 and "prod" not in out


def test_a_changed_file_is_the_first_broken_link(
    chain: tuple[Path, list[Path]], capsys: pytest.CaptureFixture[str]
) -> None:
    reports, prod = chain
    results_file = prod[1] / "results.json"
    results_file.write_text(results_file.read_text().replace('"passed"', '"failed"', 1))
    (prod[3] / "junit.xml").write_text("<testsuite/>")
    code, out = _verify_chain(capsys, "--chain", str(reports))
    assert code == 1
    assert f"BROKEN chain prod (5 bundles): first broken link at {prod[1].name}: changed: results.json" in out
    assert f"also: {prod[3].name}: changed: junit.xml" in out
    assert "OK chain staging" in out


def test_a_consistently_rewritten_manifest_breaks_the_next_link(
    chain: tuple[Path, list[Path]], capsys: pytest.CaptureFixture[str]
) -> None:
    reports, prod = chain
    # The careful forger: change results.json AND update its hash in the manifest.
    results_file = prod[2] / "results.json"
    results_file.write_text(results_file.read_text().replace('"passed"', '"failed"', 1))
    manifest_file = prod[2] / "manifest.json"
    manifest = json.loads(manifest_file.read_text())
    manifest["files"]["results.json"]["sha256"] = hashlib.sha256(results_file.read_bytes()).hexdigest()
    manifest_file.write_text(json.dumps(manifest, indent=2) + "\n")
    assert opsproof(["verify", str(prod[2])]) == 0  # the bundle alone looks fine...
    code, out = _verify_chain(capsys, "--chain", str(reports))
    assert code == 1  # ...but the next bundle vouches for the old manifest
    assert f"first broken link at {prod[3].name}: records manifest sha256" in out
    assert f"{prod[2].name}'s manifest was changed" in out


def test_a_removed_bundle_is_named(chain: tuple[Path, list[Path]], capsys: pytest.CaptureFixture[str]) -> None:
    reports, prod = chain
    shutil.rmtree(prod[2])
    code, out = _verify_chain(capsys, "--chain", str(reports))
    assert code == 1
    assert f"first broken link at {prod[3].name}: names previous bundle {prod[2].name}" in out
    assert "which is missing" in out


def test_a_removed_newest_bundle_is_caught_by_the_chain_head(
    chain: tuple[Path, list[Path]], capsys: pytest.CaptureFixture[str]
) -> None:
    reports, prod = chain
    shutil.rmtree(prod[-1])
    code, out = _verify_chain(capsys, "--chain", str(reports), "--environment", "prod")
    assert code == 1
    assert f"names {prod[-1].name} as the newest bundle, but the chain ends at {prod[-2].name}" in out


def test_a_bundle_slipped_in_forks_the_chain(
    chain: tuple[Path, list[Path]], capsys: pytest.CaptureFixture[str]
) -> None:
    reports, prod = chain
    # A forged run sealed as if it followed prod[1] (the real prod[2] also follows it).
    forged = prod[1].parent / prod[1].name.replace("T06", "T09")
    shutil.copytree(prod[2], forged)
    manifest = json.loads((forged / "manifest.json").read_text())
    manifest["bundle"] = forged.name
    (forged / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    code, out = _verify_chain(capsys, "--chain", str(reports))
    assert code == 1
    assert f"names previous bundle {prod[1].name}, as" in out


def test_chain_usage_errors(tmp_path: Path, chain: tuple[Path, list[Path]], capsys: pytest.CaptureFixture[str]) -> None:
    reports, _ = chain
    code, out = _verify_chain(capsys, "--chain", str(reports), "--environment", "prdo")
    assert code == 4 and "--environment 'prdo': no bundles of it" in out and "prod, staging" in out
    (tmp_path / "empty").mkdir()
    code, out = _verify_chain(capsys, "--chain", str(tmp_path / "empty"))
    assert code == 4 and "no evidence bundles in it" in out
    code, out = _verify_chain(capsys)
    assert code == 4 and "give one bundle, or --chain DIR" in out


# -- signing ------------------------------------------------------------------------------


@pytest.fixture
def keys(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[Path, Path]:
    assert opsproof(["keygen", str(tmp_path / "keys" / "ops")]) == 0
    assert "key id" in capsys.readouterr().out
    private = tmp_path / "keys" / "ops.pem"
    assert private.stat().st_mode & 0o777 == 0o600
    return private, tmp_path / "keys" / "ops.pub"


def test_a_signed_run_verifies_with_its_public_key(
    runner: Runner, http_server: HttpServer, keys: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    private, public = keys
    runner.profile(http_profile(f"{{name: up, url: '{http_server.base}/health'}}"))
    run = runner.run("-m", "daily", "--sign-key", str(private))
    assert run.ret == 0, run.output
    bundle = run.bundle
    manifest = json.loads((bundle / "manifest.json").read_text())
    signature = json.loads((bundle / "manifest.sig").read_text())
    assert manifest["signing"]["key_id"] == signature["key_id"] == load_signer(private).key_id
    assert "manifest.sig" not in manifest["files"]
    code, out = _verify_chain(capsys, str(bundle), "--public-key", str(public))
    assert code == 0 and f"signed by key {signature['key_id'][:16]}" in out
    code, out = _verify_chain(capsys, str(bundle))
    assert code == 0 and "not checked against a trusted key" in out


def test_signature_problems(
    tmp_path: Path, keys: tuple[Path, Path], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    private, public = keys
    other = tmp_path / "other"
    assert opsproof(["keygen", str(other)]) == 0
    at = datetime(2026, 7, 1, 6, tzinfo=UTC)
    bundle = write(tmp_path / "r", results("prod", at, [record("http.health[api]", at=at)]), load_signer(private))

    code, out = _verify_chain(capsys, str(bundle), "--public-key", str(tmp_path / "other.pub"))
    assert code == 1 and "not by the trusted key" in out

    manifest_file = bundle / "manifest.json"
    original = manifest_file.read_text()
    manifest_file.write_text(original.replace('"exit_code": 0', '"exit_code": 0 '))
    code, out = _verify_chain(capsys, str(bundle), "--public-key", str(public))
    assert code == 1 and "the signature does not match manifest.json" in out
    manifest_file.write_text(original)

    (bundle / "manifest.sig").unlink()
    code, out = _verify_chain(capsys, str(bundle))
    assert code == 1 and "removed: manifest.sig (the manifest says it was signed" in out

    unsigned = write(tmp_path / "u", results("prod", at, [record("http.health[api]", at=at)]))
    code, out = _verify_chain(capsys, str(unsigned), "--public-key", str(public))
    assert code == 1 and "not signed (a --public-key was given)" in out
    code, out = _verify_chain(capsys, "--chain", str(tmp_path / "u"), "--public-key", str(public))
    assert code == 1 and "not signed" in out


def test_openssh_keys_work(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    private = tmp_path / "id_ed25519"
    private.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption())
    )
    public = tmp_path / "id_ed25519.pub"
    public.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    )
    at = datetime(2026, 7, 1, 6, tzinfo=UTC)
    bundle = write(tmp_path / "r", results("prod", at, [record("http.health[api]", at=at)]), load_signer(private))
    code, out = _verify_chain(capsys, str(bundle), "--public-key", str(public))
    assert code == 0, out


def _bad_keys(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN PRIVATE KEY-----\nnot base64 at all\n-----END PRIVATE KEY-----\n")
    rsa_key = tmp_path / "rsa.pem"
    rsa_key.write_bytes(
        rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    ec_key = tmp_path / "ec.pem"
    ec_key.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    encrypted = tmp_path / "encrypted.pem"
    encrypted.write_bytes(
        ed25519.Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"hunter2"),
        )
    )
    return {
        "garbage": (garbage, "not a readable private key (PEM PKCS#8 or OpenSSH)"),
        "rsa": (rsa_key, "an RSA key; manifests are signed with Ed25519"),
        "ec": (ec_key, "an ECDSA key; manifests are signed with Ed25519"),
        "encrypted": (encrypted, "the key is encrypted; set OPSPROOF_SIGN_KEY_PASSWORD"),
        "missing": (tmp_path / "nope.pem", "no such file"),
    }


@pytest.mark.parametrize("which", ["garbage", "rsa", "ec", "encrypted", "missing"])
def test_a_signing_key_that_does_not_parse_is_a_usage_error(
    runner: Runner, http_server: HttpServer, tmp_path: Path, which: str
) -> None:
    path, words = _bad_keys(tmp_path)[which]
    runner.profile(http_profile(f"{{name: up, url: '{http_server.base}/health'}}"))
    run = runner.run("-m", "daily", "--sign-key", str(path))
    assert run.ret == 4
    assert f"--sign-key '{path}': {words}" in run.output, run.output
    assert not runner.report_dir.exists() or not run.bundles


def test_an_encrypted_key_with_its_passphrase_signs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path, _ = _bad_keys(tmp_path)["encrypted"]
    monkeypatch.setenv("OPSPROOF_SIGN_KEY_PASSWORD", "hunter2")
    assert load_signer(path).key_id
    monkeypatch.setenv("OPSPROOF_SIGN_KEY_PASSWORD", "wrong")
    with pytest.raises(Exception, match="wrong passphrase or not a readable private key"):
        load_signer(path)


def test_a_public_key_that_does_not_parse_is_a_usage_error(
    tmp_path: Path, chain: tuple[Path, list[Path]], capsys: pytest.CaptureFixture[str]
) -> None:
    _, prod = chain
    bad = tmp_path / "bad.pub"
    bad.write_text("ssh-rsa AAAAnotakey\n")
    code, out = _verify_chain(capsys, str(prod[0]), "--public-key", str(bad))
    assert code == 4 and f"--public-key '{bad}': not a readable public key" in out


def _drop_newest_and_repoint_head(reports: Path, bundles: list[Path]) -> None:
    """What a local attacker does to hide the newest run: delete its bundle, point the head at the one before."""
    shutil.rmtree(bundles[-1])
    before = bundles[-2]
    head = reports / ".chain" / "prod.json"
    digest = hashlib.sha256((before / "manifest.json").read_bytes()).hexdigest()
    head.write_text(json.dumps({**json.loads(head.read_text()), "bundle": before.name, "manifest_sha256": digest}))


def test_a_deleted_newest_signed_bundle_is_found_by_the_history_witness(
    runner: Runner, http_server: HttpServer, keys: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """Real signed runs; the newest bundle removed and the chain head rewritten, as an attacker would."""
    private, public = keys
    runner.profile(http_profile(f"{{name: up, url: '{http_server.base}/health'}}", environment="prod"))
    bundles = []
    for _ in range(3):
        run = runner.run("-m", "daily", "--sign-key", str(private))
        assert run.ret == 0, run.output
        (new,) = set(run.bundles) - set(bundles)
        bundles.append(new)
    reports = runner.report_dir
    _drop_newest_and_repoint_head(reports, bundles)
    # The folder alone is a whole, shorter chain: only a witness can tell.
    code, out = _verify_chain(capsys, "--chain", str(reports), "--history-dsn", "sqlite:///" + str(reports / "x.db"))
    assert code == 0 and "OK chain prod (2 bundles" in out, out
    code, out = _verify_chain(capsys, "--chain", str(reports), "--public-key", str(public))
    assert code == 1, out
    assert (
        f"BROKEN chain prod (2 bundles): {bundles[-1].name}: the history {reports / 'history.sqlite'} knows of it"
        in out
    )
    assert f"witnesses: the history {reports / 'history.sqlite'}" in out
    assert opsproof(["history", "verify", "--report-dir", str(reports)]) == 1
    out = capsys.readouterr().out
    assert f"BROKEN run {bundles[-1].name}: recorded in the history, but its bundle is not in {reports}" in out


def test_without_a_witness_verify_chain_says_what_it_cannot_see(
    chain: tuple[Path, list[Path]], capsys: pytest.CaptureFixture[str]
) -> None:
    reports, _ = chain
    code, out = _verify_chain(capsys, "--chain", str(reports))
    assert code == 0
    assert "no witness: the newest bundles could have been removed without a trace in this folder" in out


def test_a_half_written_bundle_folder_is_named(
    chain: tuple[Path, list[Path]], capsys: pytest.CaptureFixture[str]
) -> None:
    """A run that died writing its bundle (a full disk) leaves a folder without a manifest: a finding."""
    reports, _ = chain
    half = reports / "prod-20260706T060000Z-0123abcd"
    half.mkdir()
    (half / "results.json").write_text('{"schema": "opsproof/res')
    code, out = _verify_chain(capsys, "--chain", str(reports))
    assert code == 1
    assert f"BROKEN chain prod (5 bundles): {half.name}: no manifest.json: a bundle never sealed" in out
    assert "OK chain staging" in out
