"""Hosts (runbook 001: CPU, memory and disk thresholds, service endpoints; 000 and 003: certificates).

Each profile `hosts` item is a machine reached through a pytest-testinfra backend URL and
read with one sh script of read-only commands (see opsproof.probes.hosts):

- `hosts.reachable[<name>]`  the backend runs commands there; the record lists every command sent
- `hosts.filesystems[<name>]`  space used per mount (df) against {warn, fail} (001: disk > 80% / 90%)
- `hosts.filesystems_trend[<name>]`  each mount's usage fitted over the history: when does it fill? (000 monthly)
- `hosts.inodes[<name>]`  inodes used per mount, where the filesystem has a fixed number of them
- `hosts.memory[<name>]`  MemAvailable as a share of MemTotal, lower is worse (001: memory > 80% / 90%)
- `hosts.load[<name>]`  the load average per online CPU
- `hosts.service[<name>/<service>]`  running (systemd, else the init script's status; or a process by name)
- `hosts.port[<name>/<port>]`  a TCP socket listening (or a UDP socket bound) on the port
- `hosts.certificate[<name>/<file>]`  a certificate file on the host, by its earliest expiry
- `hosts.clock[<name>]`  chrony, ntpd or systemd-timesyncd says the clock is synchronised
- `hosts.package[<name>/<package>]`  installed at a version the constraint accepts (or absent)

A host that cannot be reached fails every check with the reason; one that refuses the
login or sudo, or a backend that cannot run here, is an `error`.
"""

from __future__ import annotations

from datetime import datetime
from fnmatch import fnmatchcase
from typing import Any

from opsproof import Check, CheckError, Part, Threshold, applies, each, format_duration, format_percent, format_size
from opsproof.judging.over_time import expect_trend, judge_projection, past_of, project
from opsproof.outcomes import evaluate
from opsproof.probes.hosts import HostFacts
from opsproof.targets.hosts import CertificateFile, Constraint, HostTarget, PortSpec, ServiceSpec
from opsproof.targets.tls import show_remaining

NAMED = 5


def _answered(facts: HostFacts) -> None:
    """Every check starts here: a refused login is an error, an unreachable host a failure."""
    if facts.denied:
        raise CheckError(facts.denied)
    assert facts.reached, facts.failure


def _sections(facts: HostFacts, *names: str) -> None:
    """A section that gave nothing: timed out on the host (failed, its state) or could not run (error)."""
    for name in names:
        why = facts.section_errors.get(name)
        if why is None:
            continue
        if "timed out" in why or "did not finish" in why:
            raise AssertionError(why)
        raise CheckError(why)


def _kb(value: float) -> str:
    return format_size(value * 1024)


def test_reachable(item: HostTarget, facts: HostFacts, check: Check) -> None:
    _answered(facts)
    check.observe(
        os=facts.os,
        kernel=facts.kernel,
        arch=facts.arch,
        cpus=facts.cpus,
        init=facts.init,
        systemd=facts.systemd,
        commands=facts.commands,
    )
    if facts.timed_out:
        cut = sorted(name for name, why in facts.section_errors.items() if "timed out" in why)
        check.warn(f"the timeout passed before every command ran: {', '.join(cut) or 'some sections'} gave nothing")
    described = ", ".join(part for part in (facts.os, facts.kernel, facts.arch) if part) or "an unknown system"
    cpus = f", {facts.cpus} CPUs" if facts.cpus else ""
    check.note(f"{facts.hostname or 'the host'}: {described}{cpus}; {len(facts.commands)} read-only command(s) sent")


# -- filesystems and inodes ----------------------------------------------------------------


def _judged(item: HostTarget, mount: str, fstype: str | None, default: Threshold[float] | None) -> Any:
    """The threshold of one mount, or False when it is not judged."""
    if mount in item.mounts:
        return item.mounts[mount] or False
    if any(fnmatchcase(mount, pattern) for pattern in item.ignore_mounts) or fstype in item.ignore_fstypes:
        return False
    return default or False


def _usage(
    item: HostTarget,
    facts: HostFacts,
    check: Check,
    rows: list[dict[str, Any]],
    default: Threshold[float] | None,
    what: str,
) -> None:
    """Judge every mount against its threshold; name the worst offenders."""
    judged: list[dict[str, Any]] = []
    problems: dict[str, list[tuple[float, str]]] = {"fail": [], "warn": []}
    for row in rows:
        fstype = facts.fstypes.get(row["mount"])
        threshold = _judged(item, row["mount"], fstype, default)
        if threshold is False:
            continue
        judged.append({**row, "fstype": fstype})
        verdict = evaluate(row["mount"], row["used_pct"], threshold.warn, threshold.fail, show=format_percent)
        if verdict.level != "ok":
            limit = getattr(threshold, verdict.level)
            problems[verdict.level].append(
                (row["used_pct"], f"{row['mount']} {_amount(row, what)}, over {format_percent(limit)}")
            )
    unreadable = getattr(facts, f"{what}_unreadable")
    if unreadable:
        # A mount df cannot read (a stale NFS handle, a dead FUSE mount) is the host's state: say so.
        check.warn(f"df could not read {len(unreadable)} mount(s): {'; '.join(unreadable[:NAMED])}")
    present = {row["mount"] for row in rows}
    missing = sorted(m for m in item.mounts if m not in present and item.mounts[m] is not None)
    judged.sort(key=lambda r: -r["used_pct"])
    check.observe(**{what: judged[:50], f"{what}_judged": len(judged)})
    if default is not None:
        check.expect_threshold(what, default, show=format_percent)
    if item.mounts:
        check.expect(mounts={m: _shown(t) for m, t in item.mounts.items()})
    failures = []
    if missing:
        failures.append(f"not mounted: {', '.join(missing)}")
    if problems["fail"]:
        failures.append(_offenders(problems["fail"], what, "fail"))
    assert not failures, "; ".join(failures) + (
        f"; also {_offenders(problems['warn'], what, 'warn')}" if problems["warn"] else ""
    )
    if problems["warn"]:
        check.warn(_offenders(problems["warn"], what, "warn"))
    if judged:
        fullest = judged[0]
        check.note(f"{len(judged)} filesystem(s); fullest {fullest['mount']} {_amount(fullest, what)}")
    else:
        check.note(f"no filesystem to judge ({len(rows)} mounted, all ignored)")


def _amount(row: dict[str, Any], what: str) -> str:
    if what == "inodes":
        used, size = row["used_inodes"], row["used_inodes"] + row["free_inodes"]
        return f"{format_percent(row['used_pct'])} of inodes used ({used:,} of {size:,})"
    used, size = row["used_kb"], row["used_kb"] + row["free_kb"]
    return f"{format_percent(row['used_pct'])} used ({_kb(used)} of {_kb(size)})"


def _offenders(found: list[tuple[float, str]], what: str, level: str) -> str:
    found.sort(key=lambda f: -f[0])
    named = "; ".join(text for _, text in found[:NAMED])
    more = f" and {len(found) - NAMED} more" if len(found) > NAMED else ""
    noun = "filesystem(s)" if what == "filesystems" else "filesystem(s) by inodes"
    return f"{len(found)} {noun} over the {level} threshold: {named}{more}"


def _shown(threshold: Threshold[float] | None) -> Any:
    if threshold is None:
        return "not judged"
    return {k: format_percent(v) for k, v in (("warn", threshold.warn), ("fail", threshold.fail)) if v is not None}


@applies(lambda item: item.filesystems is not None or bool(item.mounts))
def test_filesystems(item: HostTarget, facts: HostFacts, check: Check) -> None:
    _answered(facts)
    _sections(facts, "df")
    if facts.filesystems is None:
        raise CheckError("df gave no filesystems")
    _usage(item, facts, check, facts.filesystems, item.filesystems, "filesystems")


@applies(lambda item: item.filesystems_trend is not None)
def test_filesystems_trend(item: HostTarget, facts: HostFacts, check: Check) -> None:
    _answered(facts)
    _sections(facts, "df")
    trend = item.filesystems_trend
    assert trend is not None
    if facts.filesystems is None:
        raise CheckError("df gave no filesystems")
    expect_trend(check, trend, format_percent)
    past = past_of(check)
    at = check.started_at or facts.probed_at
    projected = []
    for row in facts.filesystems:
        mount = row["mount"]
        if _judged(item, mount, facts.fstypes.get(mount), item.filesystems or Threshold[float](fail=100.0)) is False:
            continue
        measure = f"used {mount}"
        check.measure(measure, row["used_pct"])
        found = project(
            past, check.check_id, measure, row["used_pct"], trend, measured_at=at, what=mount, show=format_percent
        )
        projected.append((mount, row["used_pct"], found))
    if not projected:
        check.note(f"no filesystem to judge ({len(facts.filesystems)} mounted, all ignored)")
        return
    judged = sorted((p for p in projected if p[2].left_s is not None), key=lambda p: p[2].left_s or 0.0)
    check.observe(
        trends={
            mount: {"used_pct": used, "points": f.points, "projected_full_s": f.left_s} for mount, used, f in projected
        }
    )
    if not judged:
        waiting = [f.summary for _, _, f in projected if f.per_day is None]
        fitted = len(projected) - len(waiting)
        check.note(
            f"{len(projected)} filesystem(s)"
            + (f", none of the {fitted} fitted filling" if fitted else "")
            + (f"; {len(waiting)} not judged yet: {waiting[0]}" if waiting else "")
        )
        return
    mount, used, soonest = judged[0]
    others = f"{len(judged) - 1} more filling" if len(judged) > 1 else None
    check.note(soonest.summary + (f"; {others}" if others else ""))
    judge_projection(check, mount, used, float(trend.limit), soonest, trend, format_percent, also=others)


@applies(lambda item: item.inodes is not None)
def test_inodes(item: HostTarget, facts: HostFacts, check: Check) -> None:
    _answered(facts)
    _sections(facts, "dfi")
    if facts.inodes is None:
        raise CheckError("df -i gave no filesystems")
    _usage(item, facts, check, facts.inodes, item.inodes, "inodes")


# -- memory and load -----------------------------------------------------------------------


@applies(lambda item: item.memory is not None)
def test_memory(item: HostTarget, facts: HostFacts, check: Check) -> None:
    _answered(facts)
    _sections(facts, "meminfo")
    memory = facts.memory
    if memory is None:
        raise CheckError("/proc/meminfo has no MemTotal")
    check.observe(memory=memory)
    estimated = " (estimated: the kernel has no MemAvailable)" if memory["available_estimated"] else ""
    check.note(
        f"{_kb(memory['available_kb'])} of {_kb(memory['total_kb'])} available "
        f"({format_percent(memory['available_pct'])}){estimated}"
    )
    check.threshold("available memory", memory["available_pct"], item.memory, lower_is_worse=True, show=format_percent)


@applies(lambda item: item.load is not None)
def test_load(item: HostTarget, facts: HostFacts, check: Check) -> None:
    _answered(facts)
    _sections(facts, "loadavg", "cpus")
    if facts.load is None:
        raise CheckError("/proc/loadavg gave no load averages")
    if not facts.cpus:
        raise CheckError("getconf _NPROCESSORS_ONLN gave no CPU count")
    window = item.load_window
    per_cpu = facts.load[window] / facts.cpus
    check.observe(load=facts.load, cpus=facts.cpus, load_per_cpu=round(per_cpu, 3), window=window)
    averages = ", ".join(f"{w} {facts.load[w]:g}" for w in ("1m", "5m", "15m"))
    check.note(f"{window} load {facts.load[window]:g} on {facts.cpus} CPU(s): {per_cpu:.2f} per CPU ({averages})")
    check.threshold(f"{window} load per CPU", per_cpu, item.load, show=lambda v: f"{v:.2f}")


# -- services and ports --------------------------------------------------------------------


@each("services")
def test_service(item: HostTarget, part: Part, facts: HostFacts, check: Check) -> None:
    service: ServiceSpec = part.spec
    check.expect(running=True, **({"process": service.process} if service.process else {}))
    _answered(facts)
    if service.process is not None:
        _sections(facts, "comm")
        count = (facts.processes or {}).get(service.process[:15], 0)
        check.observe(process=service.process, processes=count)
        assert count, f"no process named {service.process} is running"
        check.note(f"{count} process(es) named {service.process} running")
        return
    found = facts.services.get(service.name)
    if found is None:
        raise CheckError(f"the probe did not ask about {service.name}")
    check.observe(service=found)
    manager = _manager(found, facts)
    state, detail = found["state"], found.get("detail", "")
    if state == "unknown":
        if found.get("manager") == "none":
            raise CheckError(
                f"cannot tell whether {service.name} runs: systemd is not running (PID 1 is {facts.init}) and "
                "there is no `service` command; give it `process:` to check it by process name"
            )
        raise CheckError(f"{manager} cannot tell whether {service.name} runs: {detail}")
    assert state != "not-found", f"no service {service.name} on this host ({manager}: {detail})"
    assert state == "running", f"{service.name} is not running: {state} ({manager}: {detail})"
    check.note(f"{service.name} running ({manager}: {detail})")


def _manager(found: dict[str, Any], facts: HostFacts) -> str:
    if found.get("manager") == "systemd":
        return "systemd"
    if found.get("manager") == "service":
        why = f"systemd is not running, PID 1 is {facts.init}" if facts.init else "systemd is not running"
        return f"init script via `service`; {why}"
    return "no service manager"


def _matches(listener: dict[str, Any], port: PortSpec) -> bool:
    if listener["protocol"] != port.protocol or listener["port"] != port.port:
        return False
    if port.address is None or listener["address"] == port.address:
        return True
    # A wildcard listener takes every address of its family (and :: takes IPv4 too, unless v6only).
    return listener["address"] == "::" or (listener["address"] == "0.0.0.0" and ":" not in port.address)


@each("ports")
def test_port(item: HostTarget, part: Part, facts: HostFacts, check: Check) -> None:
    port: PortSpec = part.spec
    where = f"{port.address}:" if port.address else ""
    check.expect(listening=f"{port.protocol} {where}{port.port}")
    _answered(facts)
    _sections(facts, f"net:{port.protocol}", f"net:{port.protocol}6")
    if facts.listening is None:
        raise CheckError("/proc/net gave no socket tables")
    found = [s for s in facts.listening if _matches(s, port)]
    check.observe(listeners=found)
    if not found:
        same = {s["port"] for s in facts.listening if s["protocol"] == port.protocol}
        # The ports nearest the one expected first (a service moved from 5432 to 5433 shows at once).
        nearest = sorted(sorted(same, key=lambda p: (abs(p - port.port), p))[:30])
        shown = ", ".join(map(str, nearest)) + (" ..." if len(same) > 30 else "")
        on_port = [s["address"] for s in facts.listening if s["protocol"] == port.protocol and s["port"] == port.port]
        also = f"; port {port.port} listens on {', '.join(on_port)} only" if on_port else ""
        verb = "listens" if port.protocol == "tcp" else "is bound"
        in_use = f"{port.protocol} ports in use: {shown or 'none'}"
        raise AssertionError(f"nothing {verb} on {port.protocol} {where}{port.port}{also} ({in_use})")
    addresses = ", ".join(_bracketed(s["address"]) for s in found)
    check.note(f"{port.protocol} port {port.port} {'listening' if port.protocol == 'tcp' else 'bound'} on {addresses}")


def _bracketed(address: str) -> str:
    return f"[{address}]" if ":" in address else address


# -- certificate files ---------------------------------------------------------------------


@each("certificates")
def test_certificate(item: HostTarget, part: Part, facts: HostFacts, check: Check) -> None:
    spec: CertificateFile = part.spec
    check.expect(path=spec.path, expires=spec.expires.shown())
    _answered(facts)
    found = facts.certificates.get(str(spec.name))
    if found is None:
        raise CheckError(f"the probe did not read {spec.path}")
    if "error" in found:
        message = f"{spec.path}: {found['error']}"
        if found.get("outcome") == "error":
            raise CheckError(message)
        raise AssertionError(message)
    certificates = found["certificates"]
    earliest = certificates[0]
    check.observe(certificates=certificates[:10], certificate_count=len(certificates))
    now = _moment(facts.probed_at)
    not_before, not_after = _moment(earliest["not_before"]), _moment(earliest["not_after"])
    which = f" ({earliest['subject']}, the first to expire of {len(certificates)})" if len(certificates) > 1 else ""
    assert not_before <= now, f"certificate{which} is not valid yet: valid from {_day(not_before)}"
    left = (not_after - now).total_seconds()
    check.observe(days_left=round(left / 86400, 2), not_after=earliest["not_after"], subject=earliest["subject"])
    assert left > 0, f"certificate{which} expired {format_duration(-left)} ago, on {_day(not_after)}"
    lifetime = (not_after - not_before).total_seconds()
    share = left / lifetime * 100 if lifetime > 0 else 0.0
    said = f"expires in {format_duration(left)} ({_day(not_after)}){which}"
    for level in ("fail", "warn"):
        limit = getattr(spec.expires, level)
        if limit is None:
            continue
        unit, value = limit
        measured = left if unit == "duration" else share
        verdict = (
            f"certificate {said}, {format_percent(share)} of its lifetime left: "
            f"under the {level} threshold {show_remaining(limit)}"
        )
        if level == "fail":
            assert measured >= value, verdict
        elif measured < value:
            check.warn(verdict)
    check.note(f"{earliest['subject']} {said}, {format_percent(share)} of its lifetime left")


def _moment(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _day(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")


# -- clock ---------------------------------------------------------------------------------


@applies(lambda item: item.clock is not None)
def test_clock(item: HostTarget, facts: HostFacts, check: Check) -> None:
    spec = item.clock
    assert spec is not None
    check.expect(synchronised=True)
    check.expect_threshold("clock offset", spec.max_offset, show=format_duration)
    _answered(facts)
    clock = facts.clock or {}
    check.observe(clock=clock)
    if clock.get("synchronised") is None:
        tried = "; ".join(f"{name}: {said}" for name, said in (clock.get("tried") or {}).items())
        message = f"cannot tell whether the clock is synchronised: no time daemon answered ({tried})"
        if spec.unknown == "warn":
            check.warn(message)
            return
        raise CheckError(message)
    assert clock["synchronised"], f"the clock is not synchronised ({clock['detail']})"
    offset = clock.get("offset_s")
    if offset is None:
        check.note(f"synchronised ({clock['detail']}); the source reports no offset")
        return
    check.note(f"synchronised, offset {format_duration(abs(offset))} ({clock['detail']})")
    check.threshold("clock offset", abs(offset), spec.max_offset, show=format_duration)


# -- packages ------------------------------------------------------------------------------


@each("packages")
def test_package(item: HostTarget, part: Part, facts: HostFacts, check: Check) -> None:
    name, constraint = part.name, part.spec
    assert isinstance(constraint, Constraint)
    check.expect(version=constraint.text)
    _answered(facts)
    found = facts.packages.get(name)
    if found is None:
        raise CheckError(f"the probe did not ask about {name}")
    if "error" in found:
        if found.get("outcome") == "failed":
            raise AssertionError(found["error"])
        raise CheckError(found["error"])
    check.observe(installed=found["installed"], version=found.get("version"), manager=found.get("manager"))
    if constraint.state == "absent":
        assert not found["installed"], f"{name} {found.get('version')} is installed; expected absent"
        check.note(f"{name} is not installed ({found.get('manager')})")
        return
    assert found["installed"], f"{name} is not installed; expected {constraint.text}"
    version = str(found["version"])
    assert constraint.accepts(version), f"{name} {version} is installed; expected {constraint.text}"
    check.note(f"{name} {version} ({found.get('manager')})")
