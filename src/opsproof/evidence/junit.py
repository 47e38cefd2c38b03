"""junit.xml for CI systems. JUnit has no "warned" or "waived", so both are said plainly.

- warned: a passing testcase with an `opsproof.outcome=warned` property and the
  warning in system-out (CI dashboards show it; it never fails the build)
- waived: a skipped testcase whose message names the waiver's ticket
- failed or error inside a maintenance window: a skipped testcase (type `maintenance`)
  whose message names the window; the `opsproof.outcome` property keeps the outcome
- error: <error>, failed: <failure>, as JUnit intends

Written as text rather than through ElementTree: building, indenting and serialising
a tree of 1,000 testcases took ~80 ms, most of a bundle's time; this takes ~10 ms.
The layout is ElementTree's `indent()` (two spaces a level). Made in pieces
(`junit_chunks`: the head, then one piece per testcase), so the bundle writes it
without holding the whole file.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

from opsproof.model.results import CheckRecord, Results

if TYPE_CHECKING:
    from opsproof.evidence.premade import Premade

# Characters XML 1.0 cannot carry at all (a body excerpt may hold them): shown as U+FFFD,
# so a CI system's parser never rejects the whole file over one check's message.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")
_TEXT = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})
_ATTR = str.maketrans(
    {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "\n": "&#10;", "\r": "&#13;", "\t": "&#09;"}
)


# Any character that `_text` or `_attr` would change: most values have none, and are written as
# they are without the translation (a str.translate through a dict, a lookup per character, was
# a third of the file's time).
_TEXT_CHANGED = re.compile(f"{_NOT_XML.pattern[:-1]}&<>]")
_ATTR_CHANGED = re.compile(f"{_NOT_XML.pattern[:-1]}&<>\"\n\r\t]")


def _xml_chars(value: object) -> str:
    return _NOT_XML.sub("\ufffd", str(value))


def _escaped(value: object, changed: re.Pattern[str], table: dict[int, str]) -> str:
    text = str(value)
    return _xml_chars(text).translate(table) if changed.search(text) else text


def _text(value: object) -> str:
    return _escaped(value, _TEXT_CHANGED, _TEXT)


def _attr(value: object) -> str:
    return _escaped(value, _ATTR_CHANGED, _ATTR)


def _attrs(pairs: Mapping[str, object]) -> str:
    return "".join(f' {key}="{_attr(value)}"' for key, value in pairs.items())


def render_junit(results: Results) -> str:
    return "".join(junit_chunks(results))


def junit_chunks(results: Results, premade: Premade | None = None) -> Iterator[str]:
    """junit.xml in pieces, each ending with a newline; joined, they are `render_junit`'s text.

    `premade`: the checks' testcases made ahead (`evidence.premade`), used for the records they were made of.
    """
    checks = results.checks
    run = results.run
    counts = results.summary.by_outcome
    held = {o: sum(1 for c in checks if c.maintenance is not None and c.outcome == o) for o in ("failed", "error")}
    suite = {
        "name": f"opsproof.{run.environment}",
        "tests": len(checks),
        "failures": counts["failed"] - held["failed"],
        "errors": counts["error"] - held["error"],
        "skipped": counts["skipped"] + counts["waived"] + held["failed"] + held["error"],
        "warnings": counts["warned"],
        "timestamp": run.started_at,
        "hostname": run.host,
        "time": f"{sum(c.duration_s or 0 for c in checks):.3f}",
    }
    out = ['<?xml version="1.0" encoding="utf-8"?>', f"<testsuite{_attrs(suite)}>", "  <properties>"]
    props: dict[str, object] = {
        "opsproof.run.id": run.id,
        "opsproof.run.environment": run.environment,
        "opsproof.run.status": run.status,
        "opsproof.run.exit_code": run.exit_code,
        "opsproof.run.fail_on": run.fail_on,
    }
    change = run.change or {}
    # The change this run validated, for CI dashboards.
    props.update({f"opsproof.change.{k}": change[k] for k in ("ticket", "commit", "image_digest") if change.get(k)})
    out.extend(f"    <property{_attrs({'name': name, 'value': value})} />" for name, value in props.items())
    out.append("  </properties>")
    yield "\n".join(out) + "\n"
    for check in checks:
        piece = premade.get(check) if premade is not None else None
        yield piece.junit if piece is not None else testcase(check)
    yield "</testsuite>\n"


def testcase(check: CheckRecord) -> str:
    """One check's `<testcase>` element, its lines ending with a newline (a piece of `junit_chunks`)."""
    module, _, name = check.id.partition("::")
    message = check.message
    outcome = check.outcome
    # As `_attrs` writes them; the properties' names need no escaping.
    out = [
        f'  <testcase classname="{_attr(module.removesuffix(".py").replace("/", "."))}" name="{_attr(name)}"'
        f' time="{check.duration_s or 0:.3f}">',
        "    <properties>",
        f'      <property name="opsproof.check" value="{_attr(check.check)}" />',
        f'      <property name="opsproof.outcome" value="{_attr(outcome)}" />',
        f'      <property name="opsproof.severity" value="{_attr(check.severity)}" />',
        f'      <property name="opsproof.target" value="{_attr(check.target)}" />',
        "    </properties>",
    ]
    if check.maintenance is not None and outcome in ("failed", "error"):
        note = f"{outcome} inside maintenance window {check.maintenance.name}: {message}"
        held_case = {"type": "maintenance", "message": note}
        out.append(f"    <skipped{_attrs(held_case)} />")
    elif outcome in ("failed", "error"):
        tag = "failure" if outcome == "failed" else "error"
        out.append(f"    <{tag}{_attrs({'message': message, 'type': check.severity})}>{_text(message)}</{tag}>")
    elif outcome == "waived":
        ticket = check.waiver.ticket if check.waiver is not None else None
        waived = {"type": "waived", "message": f"waived by {ticket}: {message}"}
        out.append(f"    <skipped{_attrs(waived)} />")
    elif outcome == "skipped":
        out.append(f"    <skipped{_attrs({'message': message})} />")
    elif outcome == "warned":
        out.append(f"    <system-out>{_text(f'WARNED: {message}')}</system-out>")
    out.append("  </testcase>")
    return "\n".join(out) + "\n"
