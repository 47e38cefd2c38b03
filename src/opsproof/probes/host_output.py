"""What a host's probe script printed, read into facts: mounts, df, meminfo, load, sockets,
services and time daemons. Pure text in, dicts out, so each reader is tested on the real
output formats of the programs (systemd, chrony, ntpd, timedatectl) no test machine runs.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
from typing import Any

OUTPUT_CHARS = 300

_DF_LINE = re.compile(r"^(.*?)\s+(\d+|-)\s+(\d+|-)\s+(\d+|-)\s+(\d+%|-)\s+(/.*)$")


def _unescape_mount(path: str) -> str:
    # /proc/mounts writes space, tab, newline and backslash as octal escapes.
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), path)


def parse_mounts(text: str) -> dict[str, str]:
    types: dict[str, str] = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 3:
            types[_unescape_mount(fields[1])] = fields[2]
    return types


def parse_df(text: str, *, inodes: bool) -> list[dict[str, Any]]:
    """df -P -k (or -i) rows: mount, device, size, used, available, used_pct (used / (used + available))."""
    rows = []
    for line in text.splitlines()[1:]:
        match = _DF_LINE.match(line.rstrip())
        if match is None or "-" in match.group(2, 3, 4):
            continue
        device, size, used, free, _, mount = match.groups()
        used_n, free_n = int(used), int(free)
        if used_n + free_n == 0:
            continue  # no blocks or no fixed inode table (btrfs, tmpfs without nr_inodes): nothing to judge
        unit = "inodes" if inodes else "kb"
        rows.append(
            {
                "mount": mount,
                "device": device,
                f"size_{unit}": int(size),
                f"used_{unit}": used_n,
                f"free_{unit}": free_n,
                "used_pct": round(used_n / (used_n + free_n) * 100, 2),
            }
        )
    return rows


def parse_meminfo(text: str) -> dict[str, Any]:
    values: dict[str, int] = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        number = rest.split()
        if number and number[0].isdigit():
            values[key.strip()] = int(number[0])
    total = values.get("MemTotal")
    if not total:
        raise ValueError("no MemTotal in /proc/meminfo")
    available = values.get("MemAvailable")
    estimated = available is None
    if available is None:  # kernels before 3.14
        available = values.get("MemFree", 0) + values.get("Buffers", 0) + values.get("Cached", 0)
    return {
        "total_kb": total,
        "available_kb": available,
        "available_pct": round(available / total * 100, 2),
        "available_estimated": estimated,
        "swap_total_kb": values.get("SwapTotal"),
        "swap_free_kb": values.get("SwapFree"),
    }


def parse_loadavg(text: str) -> dict[str, float]:
    fields = text.split()
    if len(fields) < 3:
        raise ValueError(f"unexpected /proc/loadavg: {text[:80]!r}")
    return {"1m": float(fields[0]), "5m": float(fields[1]), "15m": float(fields[2])}


def _address(hex_address: str, big_endian: bool) -> str:
    raw = bytes.fromhex(hex_address)
    if not big_endian:  # the kernel prints each 32-bit word in the host's byte order
        raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return str(ipaddress.ip_address(raw))


def parse_net(text: str, protocol: str, big_endian: bool) -> list[dict[str, Any]]:
    """Listening TCP sockets (state 0A) or bound, unconnected UDP sockets (state 07) of /proc/net/*."""
    wanted = "0A" if protocol == "tcp" else "07"
    found = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 4 or fields[3] != wanted:
            continue
        address, _, port = fields[1].partition(":")
        with contextlib.suppress(ValueError):
            found.append({"protocol": protocol, "address": _address(address, big_endian), "port": int(port, 16)})
    return found


def parse_systemd(text: str) -> dict[str, Any]:
    values = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    load, active, sub = values.get("LoadState"), values.get("ActiveState"), values.get("SubState")
    pid = values.get("MainPID")
    detail = f"{active} ({sub})" + (f", main PID {pid}" if pid and pid != "0" else "")
    if load in ("not-found", None) and active != "active":
        return {"state": "not-found", "detail": f"no unit of that name (LoadState={load})"}
    if load == "masked":
        return {"state": "masked", "detail": f"the unit is masked; {detail}"}
    state = "running" if active in ("active", "reloading") else ("failed" if active == "failed" else "stopped")
    return {"state": state, "detail": detail}


def parse_service_status(status: int | None, text: str) -> dict[str, Any]:
    """An LSB init script's `status`: 0 running, 1/2 dead with a pid/lock file, 3 stopped, 4 unknown."""
    first = excerpt(text) or "(no output)"
    lowered = text.lower()
    if "unrecognized service" in lowered or "not found" in lowered or "no such file" in lowered:
        return {"state": "not-found", "detail": first}
    states = {0: "running", 1: "failed", 2: "failed", 3: "stopped"}
    return {"state": states.get(status if status is not None else -1, "unknown"), "detail": first, "status": status}


def parse_chronyc(status: int | None, text: str) -> dict[str, Any] | None:
    if status != 0 or "Leap status" not in text:
        return None
    fields = {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in text.splitlines()) if v}
    leap = fields.get("Leap status", "")
    offset: float | None = None
    match = re.match(r"([0-9.]+) seconds (fast|slow)", fields.get("System time", ""))
    if match:
        offset = float(match.group(1)) * (1 if match.group(2) == "fast" else -1)
    synchronised = leap != "Not synchronised"
    source = fields.get("Reference ID", "")
    return {
        "source": "chronyc",
        "synchronised": synchronised,
        "offset_s": offset,
        "detail": f"chrony: leap status {leap}, reference {source}" if source else f"chrony: leap status {leap}",
    }


def parse_ntpq(status: int | None, text: str) -> dict[str, Any] | None:
    if status != 0 or "remote" not in text:
        return None
    for line in text.splitlines():
        if line.startswith("*"):
            fields = line[1:].split()
            offset = float(fields[8]) / 1000 if len(fields) > 8 else None
            return {
                "source": "ntpq",
                "synchronised": True,
                "offset_s": offset,
                "detail": f"ntpd: system peer {fields[0]}",
            }
    return {"source": "ntpq", "synchronised": False, "offset_s": None, "detail": "ntpd: no system peer selected (*)"}


def parse_timedatectl(status: int | None, text: str) -> dict[str, Any] | None:
    values = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    if status != 0 or "NTPSynchronized" not in values:
        return None
    synchronised = values["NTPSynchronized"] == "yes"
    return {
        "source": "timedatectl",
        "synchronised": synchronised,
        "offset_s": None,
        "detail": f"systemd: NTPSynchronized={values['NTPSynchronized']}, NTP={values.get('NTP', '?')}",
    }


def clock_facts(sections: dict[str, tuple[int | None, str]]) -> dict[str, Any]:
    """The first time source that answers (chrony, ntpd, then systemd); else what each one said."""
    tried: dict[str, str] = {}
    for name, parse in (("chronyc", parse_chronyc), ("ntpq", parse_ntpq), ("timedatectl", parse_timedatectl)):
        status, text = sections.get(f"clock:{name}", (None, "not run"))
        found = parse(status, text)
        if found is not None:
            return found | {"tried": tried}
        tried[name] = excerpt(text) or f"exit status {status}"
    return {"source": None, "synchronised": None, "offset_s": None, "tried": tried}


def excerpt(text: str) -> str:
    flat = " ".join(text.split())
    return flat[:OUTPUT_CHARS] + ("..." if len(flat) > OUTPUT_CHARS else "")
