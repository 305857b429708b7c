"""The SQLite journal: the durable record of every file's fate; the only code that imports sqlite3.

Imports only ``errors`` from the project. It never reads the clock: every time is passed in by
the caller (epoch seconds as ``float``), so tests control time.

One row per file *instance* (an inbox, a path relative to it, and the size, mtime and inode seen
there). A rescan that meets the same instance finds its row again; a new file under an old name
is a new row. The row carries the target (file object, parent, record Name), the record Id, the
state, the retry bookkeeping and the last error.

States and transitions: the table in ``states.py`` (``TRANSITIONS`` enforces it; anything else
raises JournalError).

``uploading -> seen`` and ``uploaded -> seen`` mean the file changed while it was being uploaded:
it settles again and is uploaded onto the SAME record (the record Id is kept).

Crash safety: ``claim_upload``/``claim_record_id``/``target_and_claim`` generate the record Id
(uuid4), store it and commit with ``synchronous=FULL`` before returning, so the Id survives even
a power cut; the caller only then asks Creatio to create the record with that Id. After any crash
``in_flight()`` lists the rows in ``uploading``/``uploaded``: the daemon completes an existing
record or creates the missing one with the same Id. Every other commit uses ``synchronous=NORMAL``
(WAL): durable against a killed process, and at worst the last transitions are lost on power
loss, which only repeats idempotent steps (verify, dispose) on the next start.

``submissions`` (schema v2) is the channel of ``creatio-attach submit``: the command inserts a
row (path, inbox, metadata) from its own process; the daemon takes pending rows and merges the
metadata into the file's row. Being in the journal, a submission is neither lost nor raced.

Threads: one connection guarded by a lock. SQLite has a single writer anyway, so a connection per
thread would only add SQLITE_BUSY waits between our own threads; every method is short.
Other processes (``status``, ``retry``) use their own connection; ``busy_timeout`` covers them.

The package, one job per module (sqlite3 is imported by ``schema``, ``store``, ``lifecycle`` and
``submissions`` only; nothing here imports from the project but ``errors``)::

    states       State, TRANSITIONS, WAITING_STATES: the table above, as data
    rows         FileRow, ErrorNote, Submission, Claim, RetryResult: what callers get back
    backoff      next_retry_delay: exponential backoff with full jitter
    schema       the tables, MIGRATIONS, user_version/application_id checks
    codec        SQL values <-> rows (paths as fsencoded bytes, JSON columns)
    store        the connection, its lock and pragmas, write transactions, error translation
    lifecycle    add, set_target, claim_upload, target_and_claim, mark_*, requeue, prune
    queries      due, in_flight, by_state, counts, recent, failures, matched_by_counts
    submissions  submit, pending_submissions, take_submission, set_metadata
    journal      Journal = Lifecycle + Queries + Submissions over Store
"""

from __future__ import annotations

from .backoff import next_retry_delay
from .journal import Journal
from .rows import Claim, Disposition, ErrorNote, FileRow, RetryResult, Submission
from .schema import APPLICATION_ID, MIGRATIONS, SCHEMA_VERSION
from .states import TRANSITIONS, WAITING_STATES, State
from .store import BUSY_TIMEOUT_MS, JOURNAL_FILE

__all__ = [
    "APPLICATION_ID",
    "BUSY_TIMEOUT_MS",
    "JOURNAL_FILE",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "TRANSITIONS",
    "WAITING_STATES",
    "Claim",
    "Disposition",
    "ErrorNote",
    "FileRow",
    "Journal",
    "RetryResult",
    "State",
    "Submission",
    "next_retry_delay",
]
