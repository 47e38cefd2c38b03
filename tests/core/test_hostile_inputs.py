"""Profiles and files that crashed, hung or exhausted memory (issue 13 item 13) are usage errors: exit 4, named.

Each input is the real thing: the YAML bombs written out, a real FIFO, /dev/zero. The runs
that could hang or grow are run in a subprocess with a memory limit and a timeout, so a
regression fails the test instead of taking the machine down.
"""

from __future__ import annotations

import os
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import Runner, profile_error
from opsproof.cli import main as opsproof
from opsproof.model.yaml_limits import _bracket_depth

LAUGHS = "environment: test\na: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{name}: &{name} [{', '.join([f'*{previous}'] * 9)}]\n"
    for previous, name in zip("abcdefgh", "bcdefghi", strict=True)
)


def _bounded(args: list[str], cwd: Path, seconds: float = 60) -> tuple[int, str, float]:
    """Run a command with 1 GiB of address space at most; (exit status, output, seconds taken)."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))

    started = time.monotonic()
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=seconds, preexec_fn=limit)
    return done.returncode, done.stdout + done.stderr, time.monotonic() - started


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (LAUGHS, "bad.yaml:8: aliases expand to more than 1,000,000 values"),
        (
            "environment: test\nx: " + "[" * 100_000 + "]" * 100_000 + "\n",
            "bad.yaml:2: nested more than 100 levels deep",
        ),
        ("environment: test\nx: " + "[" * 3_000 + "]" * 3_000 + "\n", "bad.yaml:2: nested more than 100 levels deep"),
        ("environment: test\nx:\n  " + "- " * 5_000 + "x\n", "bad.yaml:3: nested more than 100 levels deep"),
        (
            "environment: test\n" + "".join(f"{' ' * n}k{n}:\n" for n in range(150)) + " " * 150 + "v: 1\n",
            "nested more than 100 levels deep",
        ),
        (
            "environment: test\nhttp:\n  - <<: 5\n    name: a\n    url: http://x/\n",
            "bad.yaml:3: http[0]: not valid YAML: expected a mapping or list of mappings for merging, but found scalar",
        ),
        (
            "environment: test\ndefaults: {timeout: !!int xyz}\n",
            "bad.yaml:2: defaults.timeout: not valid YAML: tag:yaml.org,2002:int 'xyz'",
        ),
        (
            "environment: test\ntls:\n  - {name: a, host: h, port: 1:30}\n",
            "bad.yaml:3: tls[0].port: invalid port '1:30'",
        ),
        ("environment: " + "e" * 300 + "\n", "bad.yaml:1: environment: string should have at most 64 characters"),
    ],
    ids=[
        "billion-laughs",
        "100k-brackets",
        "3k-brackets",
        "compact-sequences",
        "deep-blocks",
        "merge-5",
        "int-xyz",
        "sexagesimal-port",
        "long-environment",
    ],
)
def test_a_hostile_profile_is_refused_naming_file_line_and_key(tmp_path: Path, text: str, message: str) -> None:
    assert message in profile_error(tmp_path, text)


def _walked_depth(text: str) -> int:
    depth = deepest = 0
    for char in text:
        if char in "[{":
            depth += 1
        elif char in "]}":
            depth = max(depth - 1, 0)
        deepest = max(deepest, depth)
    return deepest


def test_the_bracket_depth_is_the_clamped_walk_over_every_kind_of_text() -> None:
    """`_bracket_depth` works the depth out by running sums: it must agree with the walk it stands for."""
    chooser = random.Random(18)
    texts = ["", "]]]", "[[[", "}{", "é[€{]]", "x: " + "[" * 3_000 + "]" * 3_000, "a: {b: [1, {c: 2}]}\n" * 500]
    texts += ["".join(chooser.choice("[]{}aé€\n ") for _ in range(chooser.randint(0, 80))) for _ in range(5_000)]
    for text in texts:
        assert _bracket_depth(text) == _walked_depth(text), text


def test_sexagesimal_numbers_stay_text(tmp_path: Path) -> None:
    # `timeout: 1:30` is no duration either: it is refused as text, never read as 90 seconds.
    assert "defaults.timeout: invalid duration '1:30'" in profile_error(
        tmp_path, "environment: t\ndefaults: {timeout: 1:30}\n"
    )


def test_billion_laughs_run_exits_4_quickly_in_bounded_memory(runner: Runner) -> None:
    path = runner.profile(LAUGHS)
    code, output, seconds = _bounded(
        [sys.executable, "-m", "pytest", "-m", "daily", f"--profile={path}", "-p", "no:cacheprovider"],
        runner.pytester.path,
    )
    assert code == 4, output
    assert "aliases expand to more than 1,000,000 values" in output
    assert seconds < 30


@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "folder"])
def test_a_profile_that_is_not_a_regular_file_exits_4_without_reading_it(runner: Runner, kind: str) -> None:
    if kind == "fifo":
        path = runner.pytester.path / "profiles" / "pipe.yaml"
        os.mkfifo(path)  # nobody ever writes to it: opening it for reading would wait forever
        expected = "not a regular file (a FIFO)"
    elif kind == "dev-zero":
        path = Path("/dev/zero")  # endless: reading it whole is an OOM kill
        expected = "not a regular file (a character device)"
    else:
        path = runner.pytester.path / "profiles" / "dir.yaml"
        path.mkdir()
        expected = "not a regular file (a folder)"
    code, output, _ = _bounded(
        [sys.executable, "-m", "pytest", "-m", "daily", f"--profile={path}", "-p", "no:cacheprovider"],
        runner.pytester.path,
        seconds=60,
    )
    assert code == 4, output
    assert f"{path.name}: cannot read profile: {expected}" in output
    assert not (runner.pytester.path / "reports").exists()


def test_a_profile_over_the_size_cap_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    with open(path, "wb") as out:
        out.write(b"environment: test\n")
        out.truncate(17 * 1024 * 1024)  # sparse: 17 MiB on paper, nothing on disk
    from opsproof import ProfileError, load_profile

    with pytest.raises(ProfileError, match=r"huge\.yaml: cannot read profile: 17\.0 MiB, more than the 16\.0 MiB"):
        load_profile(path)


def test_verify_public_key_dev_zero_exits_4(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "bundle").mkdir()
    code = opsproof(["verify", str(tmp_path / "bundle"), "--public-key", "/dev/zero"])
    output = capsys.readouterr().err
    assert code == 4, output
    assert "--public-key '/dev/zero': not a regular file (a character device)" in output


def test_sign_key_fifo_exits_4(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fifo = tmp_path / "key.pem"
    os.mkfifo(fifo)
    code = opsproof(["verify", str(tmp_path), "--public-key", str(fifo)])
    assert code == 4
    assert "not a regular file (a FIFO)" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("first", "last", "message"),
    [
        ("0001-01-01", "9999-12-31", "--from 0001-01-01: expected a date from 1970-01-01 to 2999-12-31"),
        ("2026-01-01", "9999-12-31", "--to 9999-12-31: expected a date from 1970-01-01 to 2999-12-31"),
        ("1980-01-01", "2026-12-31", "--from 1980-01-01 --to 2026-12-31: 17,167 days; a report covers at most 3,660"),
    ],
)
def test_report_dates_out_of_range_exit_4(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], first: str, last: str, message: str
) -> None:
    code = opsproof(
        [
            "report",
            "--report-dir",
            str(tmp_path / "reports"),
            "--environment",
            "prod",
            "--from",
            first,
            "--to",
            last,
            "--out",
            str(tmp_path / "out"),
        ]
    )
    output = capsys.readouterr().err
    assert code == 4, output
    assert message in output
    assert "Traceback" not in output


@pytest.mark.parametrize("kind", ["dev-zero", "fifo", "billion-laughs"])
def test_a_hostile_kubeconfig_is_refused_naming_it(tmp_path: Path, kind: str) -> None:
    if kind == "dev-zero":
        path, expected = Path("/dev/zero"), "is not a regular file"
    elif kind == "fifo":
        path, expected = tmp_path / "kube.fifo", "is not a regular file"
        os.mkfifo(path)
    else:
        path, expected = tmp_path / "kube.yaml", ":8: aliases expand to more than 1,000,000 values"
        path.write_text(LAUGHS)
    message = profile_error(tmp_path, f"environment: test\nkubernetes:\n  - {{name: k, kubeconfig: '{path}'}}\n")
    assert f"kubeconfig file '{path}'" in message and expected in message, message


def test_output_piped_into_a_reader_that_leaves_ends_quietly() -> None:
    """`opsproof schema | head -1`: the reader closes the pipe after one line. No traceback, no
    "Exception ignored" at exit: the status a shell gives a process its SIGPIPE ended (141)."""
    reader = subprocess.Popen(
        [sys.executable, "-m", "opsproof.cli", "schema"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert reader.stdout is not None and reader.stderr is not None
    assert reader.stdout.readline().strip() == b"{"
    reader.stdout.close()  # the output (~200 KB) is far larger than the pipe's buffer: the next write fails
    errors = reader.stderr.read()
    assert reader.wait(timeout=60) == 141, errors
    assert errors == b""
