"""Benchmark: integrity of a 1 GiB gzip backup, streamed, against `gzip -t` on the same file.

Targets (issue): the whole file is verified streaming with peak RSS under 100 MiB; the
throughput is reported as a ratio to `gzip -t` (the floor: the tool an operator would
reach for) measured in the same session, runs alternating.

Three measured commands per round, each a child process timed with `os.wait4`:

- floor: `gzip -t FILE`
- verify: opsproof's one-pass verifier alone (`opsproof.backup.integrity.verify_stream` over
  a directory store's chunks, methods gzip + sha256), in a fresh interpreter
- run: `pytest -m daily` with one `backups` item (path store, `verify: [gzip, sha256]`):
  the whole opsproof run, bundle included

Peak RSS is each process's own (`VmHWM`, written by the process as it exits: harness.measure_own_peak),
not wait4's `ru_maxrss`, which carried this benchmark's own ~56 MiB peak into every child. The run's
figure is the pytest process's; the verification itself runs in its probe process, and the
`verify` row is that work alone.

Usage::

    /work/venv/bin/python benchmarks/bench_backups.py [--size-mib 1024] [--repeat 2] [--json out.json]

The file is made once per invocation (random base64 lines, which gzip shrinks about 25%,
so the 1 GiB compressed file holds about 1.35 GiB).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import platform
import statistics
import sys
import zlib
from pathlib import Path
from typing import Any

from harness import REPO, Measure, measure, measure_own_peak, workdir

RSS_TARGET_MIB = 100.0
VERIFY_ALONE = """\
import sys, time
from pathlib import Path
from opsproof.backup.integrity import verify_stream
from opsproof.backup.store import DirectoryStore
store = DirectoryStore(Path(sys.argv[1]))
[obj] = store.list("*.gz", 10)
verdict = verify_stream(store.chunks(obj), ["gzip", "sha256"], expected_sha256=sys.argv[2])
assert verdict.ok, verdict.methods
print(verdict.bytes_read, verdict.decompressed_bytes)
"""


def make_backup(path: Path, size_mib: int) -> str:
    """A gzip file of about `size_mib` MiB; returns its sha256 (also written as the sidecar)."""
    target = size_mib << 20
    digest = hashlib.sha256()
    deflate = zlib.compressobj(6, zlib.DEFLATED, 31)
    written = 0
    with open(path, "wb") as out:
        while written < target:
            block = deflate.compress(base64.b64encode(os.urandom(3 << 18)) + b"\n")
            out.write(block)
            digest.update(block)
            written += len(block)
        tail = deflate.flush()
        out.write(tail)
        digest.update(tail)
    checksum = digest.hexdigest()
    path.with_name(path.name + ".sha256").write_text(f"{checksum}  {path.name}\n")
    return checksum


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args(argv)
    with workdir(args.keep) as work:
        folder = work / "backups"
        folder.mkdir()
        backup = folder / "db.sql.gz"
        print(f"making a {args.size_mib} MiB gzip file ...", file=sys.stderr)
        checksum = make_backup(backup, args.size_mib)
        size = backup.stat().st_size
        profile = work / "bench.yaml"
        profile.write_text(
            "environment: bench\nbackups:\n"
            f"  - {{name: big, path: '{folder}', pattern: '*.gz', max_age: 1d, verify: [gzip, sha256], "
            "verify_timeout: 1h}\n"
        )
        script = work / "verify_alone.py"
        script.write_text(VERIFY_ALONE)
        rounds: dict[str, list[Measure]] = {"floor": [], "verify": [], "run": []}
        for index in range(args.repeat):
            floor, code = measure(["gzip", "-t", str(backup)], work, work / f"floor-{index}.log")
            assert code == 0, "gzip -t failed"
            alone, code = measure_own_peak(
                [sys.executable, str(script), str(folder), checksum], work, work / f"v-{index}.log"
            )
            assert code == 0, (work / f"v-{index}.log").read_text()
            run, code = measure_own_peak(
                [
                    sys.executable,
                    "-m",
                    "pytest",
                    "-m",
                    "daily",
                    "--profile",
                    str(profile),
                    "--report-dir",
                    str(work / "reports"),
                    "-q",
                ],
                REPO,
                work / f"run-{index}.log",
            )
            assert code == 0, (work / f"run-{index}.log").read_text()[-3000:]
            for name, m in (("floor", floor), ("verify", alone), ("run", run)):
                rounds[name].append(m)
                print(f"{name:6} {m.wall_s:7.2f}s  cpu {m.cpu_s:7.2f}s  rss {m.maxrss_mib:6.1f} MiB", file=sys.stderr)
        wall = {name: statistics.median(m.wall_s for m in ms) for name, ms in rounds.items()}
        rss = {name: max(m.maxrss_mib for m in ms) for name, ms in rounds.items()}
        figures: dict[str, Any] = {
            "benchmark": "backups integrity",
            "file_mib": round(size / 2**20, 1),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
            "repeat": args.repeat,
            "wall_s": {k: round(v, 2) for k, v in wall.items()},
            "throughput_mib_s": {k: round(size / 2**20 / v, 1) for k, v in wall.items()},
            "ratio_verify_to_gzip_t": round(wall["verify"] / wall["floor"], 2),
            "ratio_run_to_gzip_t": round(wall["run"] / wall["floor"], 2),
            "peak_rss_mib": {k: round(v, 1) for k, v in rss.items()},
            "rss_target_mib": RSS_TARGET_MIB,
            "rss_met": rss["verify"] < RSS_TARGET_MIB and rss["run"] < RSS_TARGET_MIB,
        }
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0 if figures["rss_met"] else 1


if __name__ == "__main__":
    sys.exit(main())
