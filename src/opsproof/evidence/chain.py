"""`opsproof verify --chain DIR`: every bundle of each environment, linked and unchanged.

Each manifest names the previous bundle of its environment and the sha256 of that
bundle's manifest.json; `.chain/<environment>.json` names the newest. Walking the
links from the first bundle to the head proves that no bundle was changed, removed
or slipped in since the next one was sealed. The walk reports the *first* broken
link in sealing order, because everything sealed after it is only as trustworthy as
what it vouches for::

    BROKEN chain prod (30 bundles): first broken link at prod-20260714T060000Z-1a2b3c4d:
      its manifest.json has sha256 9f2c..., but prod-20260715T060000Z-... records 41aa...
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opsproof.evidence.manifest import MANIFEST, REPORT_SCHEMA, manifest_sha256
from opsproof.evidence.verify import verify_bundle

# <environment>-<UTC start, 20261124T104500Z>-<the run id's first 8 hex digits>, as write_bundle names it.
BUNDLE_NAME = re.compile(r"(?P<environment>.+)-\d{8}T\d{6}Z-[0-9a-f]+")

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


@dataclass
class Link:
    """One bundle in sealing order and what was found wrong with it (or its link to the previous one)."""

    bundle: str
    manifest_sha256: str | None
    sealed_at: str
    problems: list[str] = field(default_factory=list)


@dataclass
class ChainReport:
    environment: str
    links: list[Link]
    head_problems: list[str] = field(default_factory=list)

    @property
    def first_break(self) -> tuple[str, str] | None:
        """(bundle, problem) of the earliest broken link, in sealing order."""
        for link in self.links:
            if link.problems:
                return link.bundle, link.problems[0]
        if self.head_problems:
            return ".chain head", self.head_problems[0]
        return None

    @property
    def problems(self) -> list[str]:
        found = [f"{link.bundle}: {p}" for link in self.links for p in link.problems]
        return found + [f".chain/{self.environment}.json: {p}" for p in self.head_problems]


@dataclass
class _Bundle:
    path: Path
    manifest: dict[str, Any]
    sha256: str

    @property
    def previous(self) -> dict[str, Any] | None:
        previous = self.manifest.get("previous")
        return previous if isinstance(previous, dict) else None

    @property
    def sealed_at(self) -> str:
        run = self.manifest.get("run")
        if not isinstance(run, dict):
            return ""
        return str(run.get("finished_at") or run.get("started_at") or "")


def find_environments(report_dir: Path) -> dict[str, list[Path]]:
    """Bundle folders under `report_dir` by the environment their manifest names (period reports are in no chain)."""
    found: dict[str, list[Path]] = {}
    for path in sorted(report_dir.iterdir()):
        if path.is_dir() and not path.name.startswith(".") and (path / MANIFEST).is_file():
            try:
                manifest = json.loads((path / MANIFEST).read_text())
            except ValueError:
                manifest = None
            if isinstance(manifest, dict) and manifest.get("schema") == REPORT_SCHEMA:
                continue
            found.setdefault(_environment_of(path, manifest), []).append(path)
    return found


def find_unsealed(report_dir: Path) -> dict[str, list[Path]]:
    """Folders named like bundles that hold no manifest.json, by environment.

    A run that died while writing (a full disk, SIGKILL) leaves one: its evidence is
    incomplete, and whoever reads the folder must hear of it rather than find the chain
    whole without it. A folder whose manifest was deleted looks the same.
    """
    found: dict[str, list[Path]] = {}
    for path in sorted(report_dir.iterdir()):
        named = BUNDLE_NAME.fullmatch(path.name)
        if named and path.is_dir() and not (path / MANIFEST).exists():
            found.setdefault(named.group("environment"), []).append(path)
    return found


def _environment_of(path: Path, manifest: Any) -> str:
    try:
        return str(manifest["run"]["environment"])
    except (KeyError, TypeError):
        # An unreadable manifest still belongs to a chain: the folder name starts with the environment.
        named = BUNDLE_NAME.fullmatch(path.name)
        return named.group("environment") if named else path.name


def verify_chain(
    report_dir: Path, bundles: list[Path], environment: str, public_key: Ed25519PublicKey | None = None
) -> ChainReport:
    """Walk one environment's bundles in sealing order; every link and every file is checked."""
    loaded = {}
    for path in bundles:
        try:
            manifest = json.loads((path / MANIFEST).read_text())
        except ValueError:
            manifest = {}
        loaded[path.name] = _Bundle(path, manifest if isinstance(manifest, dict) else {}, manifest_sha256(path))
    ordered = _sealing_order(loaded)
    links: list[Link] = []
    for index, bundle in enumerate(ordered):
        link = Link(bundle.path.name, bundle.sha256, bundle.sealed_at)
        link.problems.extend(_link_problems(bundle, ordered[index - 1] if index else None, loaded))
        link.problems.extend(verify_bundle(bundle.path, public_key))
        links.append(link)
    _mark_forks(loaded, links)
    report = ChainReport(environment, links)
    report.head_problems = _head_problems(report_dir, environment, ordered[-1] if ordered else None)
    return report


def _sealing_order(loaded: dict[str, _Bundle]) -> list[_Bundle]:
    """Bundles from the first to the newest: whole segments by their links, segments by time.

    A removed bundle splits the chain in two segments; each is still walked, so every
    bundle is checked and the break is reported where it is.
    """
    named_as_previous = {b.previous["bundle"] for b in loaded.values() if b.previous and "bundle" in b.previous}
    tips = [b for b in loaded.values() if b.path.name not in named_as_previous]
    segments: list[list[_Bundle]] = []
    seen: set[str] = set()
    for tip in tips:
        segment: list[_Bundle] = []
        current: _Bundle | None = tip
        while current is not None and current.path.name not in seen:
            seen.add(current.path.name)
            segment.append(current)
            previous = current.previous
            current = loaded.get(str(previous.get("bundle"))) if previous else None
        segments.append(segment[::-1])
    # A cycle (only a forged manifest can make one) has no tip: its bundles still get checked.
    rest = sorted((b for name, b in loaded.items() if name not in seen), key=lambda b: b.sealed_at)
    if rest:
        segments.append(rest)
    segments.sort(key=lambda s: (s[0].sealed_at, s[0].path.name))
    return [bundle for segment in segments for bundle in segment]


def _link_problems(bundle: _Bundle, before: _Bundle | None, loaded: dict[str, _Bundle]) -> list[str]:
    previous = bundle.previous
    if not bundle.manifest:
        return [f"{MANIFEST} is not readable JSON"]
    if previous is None:
        if before is None:
            return []  # the first bundle of the environment
        return [f"starts a new chain although {before.path.name} was sealed before it"]
    name = str(previous.get("bundle"))
    if name not in loaded:
        digest = str(previous.get("manifest_sha256"))[:16]
        return [f"names previous bundle {name} (manifest sha256 {digest}...), which is missing"]
    if before is None or before.path.name != name:
        return [f"names previous bundle {name}, but it follows {before.path.name if before else 'nothing'}"]
    if previous.get("manifest_sha256") != before.sha256:
        return [
            f"records manifest sha256 {str(previous.get('manifest_sha256'))[:16]}... for {name}, "
            f"whose {MANIFEST} now has {before.sha256[:16]}...: {name}'s manifest was changed"
        ]
    return []


def _mark_forks(loaded: dict[str, _Bundle], links: list[Link]) -> None:
    """Two bundles naming the same previous one: a bundle was slipped in (or two chains merged)."""
    by_previous: dict[str, list[str]] = {}
    for bundle in loaded.values():
        if bundle.previous and bundle.previous.get("bundle"):
            by_previous.setdefault(str(bundle.previous["bundle"]), []).append(bundle.path.name)
    position = {link.bundle: link for link in links}
    for previous, followers in by_previous.items():
        if len(followers) > 1:
            for follower in followers:
                others = ", ".join(sorted(set(followers) - {follower}))
                position[follower].problems.insert(0, f"names previous bundle {previous}, as {others} also does")


def _head_problems(report_dir: Path, environment: str, newest: _Bundle | None) -> list[str]:
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", environment)
    head_file = report_dir / ".chain" / f"{safe}.json"
    if not head_file.exists():
        return []  # a copy of the bundles alone (an S3 download): the newest bundle is the head
    try:
        head = json.loads(head_file.read_text())
        named, digest = head["bundle"], head["manifest_sha256"]
    except (ValueError, KeyError, TypeError):
        return ["not a readable chain head"]
    if newest is None or named != newest.path.name:
        ends = newest.path.name if newest else "nothing"
        return [f"names {named} as the newest bundle, but the chain ends at {ends}: bundles after it were removed"]
    if digest != newest.sha256:
        return [
            f"records manifest sha256 {str(digest)[:16]}... for {named}, "
            f"whose {MANIFEST} now has {newest.sha256[:16]}...: {named}'s manifest was changed"
        ]
    return []
