"""A run's rows written to its history while its report.html renders; the run row finished after the seal.

The bundle's writers share two cores: a forked child renders report.html (the longest of
the files: ~0.45 s of CPU at 10,000 checks) while this process writes results.json and
junit.xml (~0.3 s). Recording the run in the history (~0.14 s, reading results.json back)
used to wait for the seal; its rows need only results.json, so they are written in the
child's time, in a transaction left open until the bundle is sealed. Then the run row gets
what only the seal makes (the manifest's digest, the signer) and the transaction commits:
the history still holds exactly what the sealed bundle holds, all of a run or none of it.

Where the run had time while its checks waited, the store was opened then (`open`), and the
rows are written through it after the process's own files, child or none. Each check's rows
were made then too (`keep`), of its line of results.json as the bundle writes it: the rows
of a line the sealed file holds exactly are not read from it again (~8 ms at 1,000 checks).

Anything that goes wrong here rolls the transaction back and leaves the run to
`recorder.ship_bundle`'s usual path, which records the sealed bundle and names any error.
Not used with `--upload` (the run row carries the upload's receipt, known only after the
upload, which must not hold the history's write lock) nor for a shard (`seal-run` records).
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

from opsproof.compliance.history import History, Location
from opsproof.compliance.history_rows import CheckRows, check_rows
from opsproof.model.results import CheckRecord


class EarlyRecording:
    """One run's recording, begun before its bundle is sealed; `finish` or `abandon` ends it."""

    def __init__(self, location: Location) -> None:
        self._location = location
        self._stack = contextlib.ExitStack()
        self._store: History | None = None  # the open store while the recording is under way
        self._opened: History | None = None  # the store opened ahead (`open`), for `begin`
        self._run_id: str | None = None
        self._known: dict[str, CheckRows] = {}  # each check's rows made ahead (`keep`), by its line's text
        self._held: int | None = None  # how many records' rows the store opened ahead holds (`History.hold_records`)

    @property
    def begun(self) -> bool:
        """Its rows are written and wait for `finish` (False when `begin` failed, or once ended)."""
        return self._store is not None

    def open(self) -> None:
        """Open the store ahead (a SQLite store: its connection, WAL and tables, ~5 ms); never raises.

        The Recorder calls it while a check waits for facts; `begin` then writes into it. No
        transaction is held meanwhile. Should it fail, `begin` opens the store as it would have.
        """
        if self._opened is None and self._store is None:
            with contextlib.suppress(Exception):
                self._opened = self._stack.enter_context(History(self._location))
                self._held = 0 if self._opened.hold_records() else None

    def keep(self, line: str, record: CheckRecord) -> None:
        """Make a check's rows now, of its line of results.json (`results_json.check_line` of `record`).

        Made as the history reads the line back from the sealed file (`History.begin_run` uses
        them for a line of exactly this text); kept as `record`'s own rows when they are the same,
        so they hold no copy of its texts. Never raises: a line with no rows made is read at the end.
        """
        with contextlib.suppress(Exception):
            rows = check_rows(CheckRecord.model_validate_json(line))
            own = check_rows(record)
            rows = own if own == rows else rows
            if self._opened is not None and self._held is not None:
                # Its record's row written now, into the store's table of this connection's own.
                self._opened.hold_record(self._held, rows.record)
                rows = rows._replace(held=self._held)
                self._held += 1
            self._known[line] = rows

    def begin(self, bundle: Path) -> None:
        """Write the rows of the bundle's results.json, in an open transaction; never raises."""
        known, self._known = self._known, {}
        try:
            store = self._opened or self._stack.enter_context(History(self._location))
            self._stack.enter_context(store.transaction())
            self._run_id = store.begin_run(bundle, known)
            self._store = store
        except Exception:  # the usual path records the sealed bundle, and says what is wrong
            self.abandon()

    def finish(self, manifest_sha256: str, bundle: Path) -> bool:
        """Complete the run row with the seal and commit; False when the run was recorded already.

        Raises what the store raises (HistoryError), the transaction rolled back.
        """
        store = self._store
        assert store is not None, "finish() after a begin() that failed"
        try:
            if self._run_id is not None:
                manifest = json.loads((bundle / "manifest.json").read_text())
                store.finish_run(self._run_id, manifest_sha256, manifest)
        except BaseException as exc:
            self._close(exc)
            raise
        self._store = None
        self._stack.close()  # commits, then closes the connection
        return self._run_id is not None

    def abandon(self) -> None:
        """Roll back whatever was written (a no-op once finished)."""
        self._close(RuntimeError("the run's recording was abandoned"))

    def _close(self, exc: BaseException) -> None:
        self._store = self._opened = self._held = None
        self._known = {}
        with contextlib.suppress(Exception):  # rolling back a broken connection may fail too
            self._stack.__exit__(type(exc), exc, exc.__traceback__)
