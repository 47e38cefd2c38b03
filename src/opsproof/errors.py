"""Every exception opsproof raises, in one tree with one base: catch `OpsproofError` for all of them.

::

    OpsproofError
    ├── ProfileError          a profile that cannot be used; names the file, line and key (exit 4)
    ├── ComplianceError       bad input to a compliance command or option (exit 4)
    ├── BundleError           not an evidence bundle at all (opsproof.evidence.verify, exit 4)
    ├── HistoryError          the history store cannot be opened or written (opsproof.compliance.history)
    ├── UnreadableFile        a file a user named is not a regular file of bounded size (opsproof.model.bounded_read)
    ├── TooLarge              a YAML document nests too deep or its aliases expand too far (opsproof.model.yaml_limits)
    ├── Unsupported           a profile left to the node walk; never leaves profile.py (opsproof.model.yaml_events)
    ├── ShardError            a bad --shard, --zone or --run-id (opsproof.model.shards; also a ValueError, exit 4)
    ├── CheckFailed           the target is not as expected: a `failed` record (also an AssertionError)
    ├── CheckError            the check could not run for a reason that is not the target's: an `error` record
    │   └── NoFacts           its target's probe process died or the probes failed (opsproof.run.gather)
    ├── PathAbsent            a JSON document has no value at a path (opsproof.model.json_path)
    ├── StoreError            a backup store cannot be read (opsproof.backup.store)
    ├── CorruptBackup         a backup's bytes are not what its format says (opsproof.backup.integrity)
    ├── VerifyError           a backup's verification could not run (opsproof.backup.integrity)
    ├── UnsafeDump            a plain dump holds what pg_dump never writes (opsproof.backup.plain_dump)
    ├── DrillError            a restore drill stopped; `stage` says where (opsproof.backup.restore)
    ├── LocalPgError          a throwaway PostgreSQL did not start (opsproof.local.postgres; also a RuntimeError)
    ├── LocalRedisError       a throwaway redis-server did not start (opsproof.local.redis; also a RuntimeError)
    ├── DemoStartError        a demo service did not start or settle (opsproof.demo.startup; a RuntimeError, exit 3)
    ├── DemoUsageError        $OPSPROOF_PROMETHEUS is no program (opsproof.demo.startup; a ValueError, exit 4)
    ├── HandshakeFailed       a TLS handshake did not complete (opsproof.probes.tls)
    ├── ExchangeFailed        an HTTP request failed, in aiohttp's words (opsproof.probes.http_answer)
    │   └── Disconnected      ... its connection ended before the answer's head (sent once more)
    ├── ForAiohttp            the lean HTTP client leaves a request to aiohttp (opsproof.probes.http_wire)
    ├── ApiError              the Prometheus API answered with an error (opsproof.probes.prometheus)
    │   └── Denied            ... with 401 or 403
    ├── ConfigProblem         a kubeconfig that cannot be used (opsproof.probes.kubernetes_client)
    ├── ListFailure           a Kubernetes list request failed (opsproof.probes.kubernetes_client)
    ├── CommandTimeout        a host command outlived its item's deadline (opsproof.probes.hosts_session)
    ├── ReadDenied            a log source refused the credentials or a permission (opsproof.probes.log_reading)
    ├── ReadFailed            a log source answered that what was read is not there (opsproof.probes.log_reading)
    ├── ConfigUnusable        a log source's settings cannot be used (opsproof.probes.log_reading)
    └── ApiError              the Kubernetes emulator's error answer (opsproof.testing.kubernetes)

Exceptions a probe catches never leave it: a probe turns them into facts (`reached`,
`failure`). Usage errors (exit 4) are the ones whose message a user reads.
"""

from __future__ import annotations

from typing import Any


class OpsproofError(Exception):
    """The base of every exception opsproof raises."""


class ProfileError(OpsproofError):
    """A profile that cannot be used; the message names the file, line and key."""


class ComplianceError(OpsproofError):
    """Bad input to a compliance command or option (exit 4); the message says what was expected."""


class CheckFailed(OpsproofError, AssertionError):
    """The target is not as expected (a `failed` record, never an `error`)."""


class CheckError(OpsproofError):
    """The check could not run for a reason that is not the target's state (an `error` record).

    A rejected password or a missing permission: the operator must fix the profile or
    the grant, and the record must not blame the target.
    """


class NoFacts(CheckError, RuntimeError):
    """A target has no facts: its probe process died, or the probes failed (an `error` record per check).

    pytest shows its message alone. The frames it passes through are opsproof's plumbing (the
    modules that hand a check its facts set `__tracebackhide__ = hide_plumbing`), and pytest parses
    each frame's whole module to show it: ~12 ms a check, 20 s of a 1,000-item run whose probe
    process was killed (now well under a second).
    """


def hide_plumbing(excinfo: Any) -> bool:
    """`__tracebackhide__` of the modules a check's facts pass through: their frames are hidden for NoFacts only."""
    return excinfo is not None and isinstance(excinfo.value, NoFacts)
