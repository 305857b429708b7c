"""The states of a file in the journal and the transitions between them; pure data.

Imports nothing from the project and no I/O library (no sqlite3): anyone may read the table
without opening a journal.

States and transitions (``TRANSITIONS`` enforces them; anything else raises JournalError)::

    state       meaning                                            may go to
    ---------   ------------------------------------------------   ---------------------------------
    seen        discovered; still settling (may be growing)        ready, failed, gone
    ready       settled, hashed, typed; waiting for a worker       uploading, retry_wait, unmatched,
                                                                   failed, duplicate, gone, seen
    uploading   record Id claimed and committed BEFORE the         uploaded, retry_wait, unmatched,
                create call; create/upload/verify in progress      failed, seen
    uploaded    the content in Creatio is verified; the file is    done, seen
                still to be archived, deleted or kept
    done        archived, deleted or kept (``disposition``)        (final)
    retry_wait  a retryable error; tried again at next_attempt_at  ready, or wherever ready may go
    unmatched   no parent yet; tried again at next_attempt_at      ready, or wherever ready may go
                until give_up_at, then failed
    failed      permanent: ``last_error`` says why                 ready (the ``retry`` command)
    duplicate   same content already on the same parent;           (final)
                ``duplicate_of`` names the original row
    gone        the file vanished before it was uploaded           (final)

``uploading -> seen`` and ``uploaded -> seen`` mean the file changed while it was being uploaded:
it settles again and is uploaded onto the SAME record (the record Id is kept).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum


class State(StrEnum):
    SEEN = "seen"
    READY = "ready"
    UPLOADING = "uploading"
    UPLOADED = "uploaded"
    DONE = "done"
    RETRY_WAIT = "retry_wait"
    UNMATCHED = "unmatched"
    FAILED = "failed"
    DUPLICATE = "duplicate"
    GONE = "gone"


_FROM_READY = frozenset(
    {
        State.UPLOADING,
        State.RETRY_WAIT,
        State.UNMATCHED,
        State.FAILED,
        State.DUPLICATE,
        State.GONE,
        State.SEEN,
    }
)
TRANSITIONS: Mapping[State, frozenset[State]] = {
    State.SEEN: frozenset({State.READY, State.FAILED, State.GONE}),
    State.READY: _FROM_READY,
    State.UPLOADING: frozenset(
        {State.UPLOADED, State.RETRY_WAIT, State.UNMATCHED, State.FAILED, State.SEEN}
    ),
    State.UPLOADED: frozenset({State.DONE, State.SEEN}),
    State.DONE: frozenset(),
    State.RETRY_WAIT: _FROM_READY | {State.READY},
    State.UNMATCHED: _FROM_READY | {State.READY},
    State.FAILED: frozenset({State.READY}),
    State.DUPLICATE: frozenset(),
    State.GONE: frozenset(),
}
#: the inverse of TRANSITIONS: for each state, the states that may go to it (in a stable order)
SOURCES: Mapping[State, tuple[State, ...]] = {
    to: tuple(s for s in State if to in TRANSITIONS[s]) for to in State
}
#: states a scheduler picks work from (``due``)
WAITING_STATES = (State.READY, State.RETRY_WAIT, State.UNMATCHED)
