"""junit.xml for CI systems. JUnit has no "warned" or "waived", so both are said plainly.

- warned: a passing testcase with an `opsproof.outcome=warned` property and the
  warning in system-out (CI dashboards show it; it never fails the build)
- waived: a skipped testcase whose message names the waiver's ticket
- error: <error>, failed: <failure>, as JUnit intends
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any


def render_junit(results: dict[str, Any]) -> str:
    checks = results["checks"]
    run = results["run"]
    counts = results["summary"]["by_outcome"]
    suite = ET.Element(
        "testsuite",
        {
            "name": f"opsproof.{run['environment']}",
            "tests": str(len(checks)),
            "failures": str(counts["failed"]),
            "errors": str(counts["error"]),
            "skipped": str(counts["skipped"] + counts["waived"]),
            "warnings": str(counts["warned"]),
            "timestamp": run["started_at"],
            "hostname": run["host"],
            "time": f"{sum(c['duration_s'] or 0 for c in checks):.3f}",
        },
    )
    props = ET.SubElement(suite, "properties")
    for key in ("id", "environment", "status", "exit_code", "fail_on"):
        ET.SubElement(props, "property", {"name": f"opsproof.run.{key}", "value": str(run[key])})
    change = run.get("change") or {}
    for key in ("ticket", "commit", "image_digest"):  # the change this run validated, for CI dashboards
        if change.get(key):
            ET.SubElement(props, "property", {"name": f"opsproof.change.{key}", "value": str(change[key])})
    for check in checks:
        module, _, name = check["id"].partition("::")
        case = ET.SubElement(
            suite,
            "testcase",
            {
                "classname": module.removesuffix(".py").replace("/", "."),
                "name": name,
                "time": f"{check['duration_s'] or 0:.3f}",
            },
        )
        case_props = ET.SubElement(case, "properties")
        for key in ("check", "outcome", "severity", "target"):
            ET.SubElement(case_props, "property", {"name": f"opsproof.{key}", "value": str(check[key])})
        message = check["message"]
        outcome = check["outcome"]
        if outcome == "failed":
            ET.SubElement(case, "failure", {"message": message, "type": check["severity"]}).text = message
        elif outcome == "error":
            ET.SubElement(case, "error", {"message": message, "type": check["severity"]}).text = message
        elif outcome == "waived":
            waiver = check["waiver"]
            ET.SubElement(case, "skipped", {"type": "waived", "message": f"waived by {waiver['ticket']}: {message}"})
        elif outcome == "skipped":
            ET.SubElement(case, "skipped", {"message": message})
        elif outcome == "warned":
            ET.SubElement(case, "system-out").text = f"WARNED: {message}"
    ET.indent(suite)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(suite, encoding="unicode") + "\n"
