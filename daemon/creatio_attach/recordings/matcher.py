"""The matching chain: which Creatio record a call recording belongs to.

Steps, in the configured order (any subset):

``call_by_id``         ``Call.IntegrationId`` = the unique id / call id -> ``CallFile``
``call_by_number``     a ``Call`` whose ``StartDate`` is within ``time_window`` of the
                       recording's start and whose numbers match (compared normalised in
                       Python) -> ``CallFile``
``contact_by_number``  the external party's number in ``ContactCommunication`` or the
                       ``Contact.Phone``/``MobilePhone`` columns -> ``ContactFile``, or an
                       ``Activity`` of type Call created for that contact -> ``ActivityFile``

Nothing found -> ``Unmatched`` naming every step and what it looked for. Several equally good
candidates -> ``errors.ParentAmbiguous`` (never a guess). While a Call step may still find the
call (the CTI can write the Call row after the recording), the contact step waits ``call_wait``
after the call's start before it takes the contact.

Talks to Creatio only through the ``RecordsClient`` Protocol (``CreatioClient`` fits it); must
not import requests, sqlite3, watchdog or magic.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from creatio_attach.errors import ConfigError, ParentAmbiguous

from .phones import digits, likeness, search_fragment
from .presets import CallInfo, name_fields

STEPS = ("call_by_id", "call_by_number", "contact_by_number")
CALL_STEPS = frozenset({"call_by_id", "call_by_number"})

ACTIVITY_TYPE_CALL = "e1831dec-cfc0-df11-b00f-001d60e938c6"
ACTIVITY_CATEGORY_CALL = "e52bd583-7825-e011-8165-00155d043204"
ACTIVITY_STATUS_DONE = "4bdbb88f-58e6-df11-971b-001d60e938c6"
COMMUNICATION_TYPE_EMAIL = "ee1c85c3-cfcb-df11-9b2a-001d60e938c6"
#: the namespace of the Ids of Activities created for recordings (uuid5 of the recording's key)
ACTIVITY_NAMESPACE = uuid.UUID("5d3c9a52-7f0e-4d57-9a4b-2f61c0a1e7b3")

#: candidate rows read per query (a time window holding more Calls than this is cut)
MAX_CANDIDATES = 500


class RecordsClient(Protocol):
    """The part of ``creatio.CreatioClient`` the matcher uses."""

    def find_records(
        self,
        schema: str,
        where: Mapping[str, Any],
        *,
        select: Sequence[str] = ...,
        top: int = ...,
        order_by: Sequence[str] = ...,
    ) -> list[dict[str, Any]]: ...

    def create_record(
        self, schema: str, values: Mapping[str, Any], *, record_id: str | None = ...
    ) -> dict[str, Any]: ...


class MatchSettingsLike(Protocol):
    """``[inbox.match]``: ``config.MatchSettings`` has these attributes."""

    @property
    def steps(self) -> Sequence[str]: ...
    @property
    def time_window(self) -> float: ...
    @property
    def timezone(self) -> str: ...
    @property
    def country_code(self) -> str | None: ...
    @property
    def last_digits(self) -> int: ...
    @property
    def contact_target(self) -> str: ...
    @property
    def call_wait(self) -> float:
        """Seconds the contact step waits for a Call row after the call's start (after a Call
        step missed); 0 takes the contact at once."""
        ...


#: builds a filter comparison, e.g. ``creatio.Condition("ge", when)``
ConditionFactory = Callable[[str, Any], Any]


@dataclass(frozen=True)
class Match:
    """Where the recording goes."""

    file_object: str  # "CallFile", "ContactFile", "ActivityFile"
    parent_schema: str  # "Call", "Contact", "Activity"
    parent_id: str
    matched_by: str  # the step's name
    record_name_fields: dict[str, str]  # presets.NAME_FIELDS plus matched_by
    detail: str = ""  # what matched, for the log and status


@dataclass(frozen=True)
class Unmatched:
    """No record yet: ``tried`` has one line per step; retry on the inbox's schedule."""

    tried: list[str]
    reason: str
    retry_after: float | None = None  # seconds until a retry can change the answer, if known
    waiting_for_call: bool = field(default=False)


def check_steps(steps: Sequence[str]) -> list[str]:
    """Problems with a configured ``steps`` list (for config validation)."""
    problems = [f"unknown step {s!r}; known: {', '.join(STEPS)}" for s in steps if s not in STEPS]
    if len(set(steps)) != len(steps):
        problems.append("a step is listed twice")
    if not steps:
        problems.append("needs at least one step")
    return problems


def _default_condition() -> ConditionFactory:
    # only when the caller passes none: the service passes creatio.Condition explicitly
    from creatio_attach.creatio.literals import Condition

    return Condition


def _parse_when(value: Any) -> dt.datetime | None:
    if not value:
        return None
    try:
        when = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def _utc(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


class _StepMiss(Exception):
    """A step found nothing; its message goes to ``Unmatched.tried``."""


class RecordingMatcher:
    """Runs the matching chain for one inbox (thread-safe: holds no mutable state)."""

    def __init__(
        self,
        client: RecordsClient,
        settings: MatchSettingsLike,
        *,
        condition: ConditionFactory | None = None,
        clock: Callable[[], dt.datetime] | None = None,
    ) -> None:
        problems = check_steps(list(settings.steps))
        if settings.contact_target not in ("ContactFile", "activity"):
            problems.append(f"contact_target {settings.contact_target!r}: ContactFile or activity")
        if problems:
            raise ConfigError("bad [inbox.match] settings", problems=problems)
        self.client = client
        self.settings = settings
        self.condition = condition or _default_condition()
        self.clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self.call_wait = float(settings.call_wait)

    # ------------------------------------------------------------------------- the chain
    def match(
        self,
        info: CallInfo,
        *,
        file_name: str,
        seen_at: dt.datetime | None = None,
        key: str | None = None,
    ) -> Match | Unmatched:
        """Run the steps in order; the first that finds a record wins.

        ``file_name``: the path relative to the inbox (part of the recording's identity);
        ``seen_at``: when the file appeared (the reference for ``call_wait`` when the name
        has no start time); ``key``: a stable identity of the recording for the Activity's Id
        (default: file name, call ids and start).
        """
        tried: list[str] = []
        call_pending = False
        for step in self.settings.steps:
            try:
                if step == "call_by_id":
                    return self._call_by_id(info)
                if step == "call_by_number":
                    return self._call_by_number(info)
                reference = info.start or seen_at
                if call_pending and reference is not None:
                    ready_at = reference + dt.timedelta(seconds=self.call_wait)
                    now = self.clock()
                    if now < ready_at:
                        tried.append(
                            f"{step}: waiting until {_utc(ready_at)} for the Call record "
                            "before falling back to the contact"
                        )
                        return Unmatched(
                            tried,
                            "no Call record yet; " + "; ".join(tried),
                            retry_after=(ready_at - now).total_seconds(),
                            waiting_for_call=True,
                        )
                return self._contact_by_number(info, file_name=file_name, key=key)
            except _StepMiss as miss:
                tried.append(f"{step}: {miss}")
                if step in CALL_STEPS and not str(miss).startswith("skipped"):
                    call_pending = True
        return Unmatched(tried, "no matching record: " + "; ".join(tried))

    def _found(self, info: CallInfo, schema: str, record_id: str, step: str, detail: str) -> Match:
        fields = name_fields(info)
        fields["matched_by"] = step
        return Match(
            file_object=f"{schema}File",
            parent_schema=schema,
            parent_id=str(record_id).lower(),
            matched_by=step,
            record_name_fields=fields,
            detail=detail,
        )

    # ------------------------------------------------------------------------ call_by_id
    def _call_by_id(self, info: CallInfo) -> Match:
        ids = info.call_ids
        if not ids:
            raise _StepMiss("skipped (no unique id in the file name or --set uniqueid=)")
        rows = self.client.find_records(
            "Call", {"IntegrationId": list(ids)}, select=("Id", "IntegrationId"), top=20
        )
        shown = " or ".join(repr(i) for i in ids)
        if not rows:
            raise _StepMiss(f"no Call with IntegrationId {shown}")
        for call_id in ids:  # the most specific id decides
            found = [r for r in rows if r.get("IntegrationId") == call_id]
            if len(found) > 1:
                raise ParentAmbiguous(
                    f"{len(found)} Call records have IntegrationId {call_id!r}",
                    candidates=[str(r["Id"]) for r in found],
                    hint="a PBX call id should be on one Call only",
                )
            if found:
                return self._found(
                    info, "Call", found[0]["Id"], "call_by_id", f"IntegrationId={call_id}"
                )
        # the server matched case-insensitively or trimmed: still one record per id is the rule
        if len(rows) > 1:
            raise ParentAmbiguous(
                f"{len(rows)} Call records have IntegrationId {shown}",
                candidates=[str(r["Id"]) for r in rows],
            )
        return self._found(info, "Call", rows[0]["Id"], "call_by_id", f"IntegrationId={ids[0]}")

    # -------------------------------------------------------------------- call_by_number
    def _call_by_number(self, info: CallInfo) -> Match:
        if info.start is None:
            raise _StepMiss("skipped (no start time in the file name)")
        if not (info.caller_e164 or info.callee_e164):
            raise _StepMiss("skipped (no phone number in the file name)")
        window = dt.timedelta(seconds=self.settings.time_window)
        low, high = info.start - window, info.start + window
        rows = self.client.find_records(
            "Call",
            {"StartDate": self.condition("ge", low.astimezone(dt.UTC))},
            select=("Id", "CallerId", "CalledId", "StartDate"),
            order_by=("StartDate",),
            top=MAX_CANDIDATES,
        )
        required = self._required_parties(info)
        scored: list[tuple[int, float, str]] = []
        for row in rows:
            when = _parse_when(row.get("StartDate"))
            if when is None or when > high:
                continue
            ok = {
                "caller": self._alike(info.caller, row.get("CallerId")),
                "callee": self._alike(info.callee, row.get("CalledId")),
            }
            if not all(ok[p] for p in required):
                continue
            both = sum(1 for v in ok.values() if v)
            scored.append((-both, abs((when - info.start).total_seconds()), str(row["Id"])))
        parties = f"{info.caller or '?'} to {info.callee or '?'}"
        if not scored:
            raise _StepMiss(f"no Call from {parties} starting between {_utc(low)} and {_utc(high)}")
        scored.sort()
        best = scored[0]
        ties = [s for s in scored if s[:2] == best[:2]]
        if len(ties) > 1:
            raise ParentAmbiguous(
                f"{len(ties)} Call records from {parties} start equally close to "
                f"{_utc(info.start)}",
                candidates=[s[2] for s in ties],
                hint="give the recording its unique id (submit --set uniqueid=...)",
            )
        return self._found(
            info, "Call", best[2], "call_by_number", f"{parties} at {_utc(info.start)}"
        )

    @staticmethod
    def _required_parties(info: CallInfo) -> tuple[str, ...]:
        """The parties that must match a Call: the external one when the direction says
        which it is, otherwise every party the name gives."""
        if info.direction == "inbound" and info.caller_e164:
            return ("caller",)
        if info.direction == "outbound" and info.callee_e164:
            return ("callee",)
        return tuple(p for p, n in (("caller", info.caller), ("callee", info.callee)) if n)

    def _alike(self, ours: str, theirs: Any) -> bool:
        if not ours or not theirs:
            return False
        return (
            likeness(
                ours,
                str(theirs),
                country_code=self.settings.country_code,
                last_n=self.settings.last_digits,
            )
            is not None
        )

    # ----------------------------------------------------------------- contact_by_number
    def _contact_by_number(self, info: CallInfo, *, file_name: str, key: str | None) -> Match:
        parties = info.external()
        if not parties:
            raise _StepMiss("skipped (no phone number in the file name)")
        misses = []
        for role, number in parties:
            contact_id, how = self._contact_for(number)
            if contact_id is not None:
                detail = f"{role} {number} ({how})"
                if self.settings.contact_target == "activity":
                    activity_id = self._ensure_activity(info, contact_id, file_name, key)
                    return self._found(
                        info,
                        "Activity",
                        activity_id,
                        "contact_by_number",
                        f"{detail}, contact {contact_id}",
                    )
                return self._found(info, "Contact", contact_id, "contact_by_number", detail)
            misses.append(f"no contact with the {role}'s number {number}")
        raise _StepMiss(
            "; ".join(misses) + f" (also compared by the last {self.settings.last_digits} digits)"
        )

    def _contact_for(self, number: str) -> tuple[str | None, str]:
        """(contact Id, "exact" | "last N digits") or (None, ""); ParentAmbiguous when
        several contacts share the best kind of match."""
        found: dict[str, dict[str, set[str]]] = {"exact": {}, "last_digits": {}}
        for contact_id, candidate in self._candidates(number):
            kind = likeness(
                number,
                candidate,
                country_code=self.settings.country_code,
                last_n=self.settings.last_digits,
            )
            if kind is not None:
                found[kind].setdefault(contact_id, set()).add(candidate)
        for level in ("exact", "last_digits"):
            contacts = found[level]
            if len(contacts) == 1:
                how = "exact" if level == "exact" else f"last {self.settings.last_digits} digits"
                return next(iter(contacts)), how
            if len(contacts) > 1:
                ids = sorted(contacts)
                raise ParentAmbiguous(
                    f"{len(ids)} contacts have the number {number} "
                    f"({'exactly' if level == 'exact' else 'by its last digits'}): "
                    + ", ".join(ids),
                    candidates=ids,
                    hint="several contacts share this number; attach the recording by hand",
                )
        return None, ""

    def _candidates(self, number: str) -> list[tuple[str, str]]:
        """(contact Id, a number as stored) for every stored number ending like ``number``:
        ``contains`` on the last four digits, the final comparison is done by the caller."""
        fragment = search_fragment(number)
        if not fragment:
            return []
        contains = self.condition("contains", fragment)
        out: list[tuple[str, str]] = []
        comm_select = ("Id", "ContactId", "CommunicationTypeId", "Number", "SearchNumber")
        by_number = self.client.find_records(
            "ContactCommunication", {"Number": contains}, select=comm_select, top=MAX_CANDIDATES
        )
        # SearchNumber's form is not documented (digits only, maybe reversed): try both
        by_search = self.client.find_records(
            "ContactCommunication",
            {"SearchNumber": [contains, self.condition("contains", fragment[::-1])]},
            select=comm_select,
            top=MAX_CANDIDATES,
        )
        for row in [*by_number, *by_search]:
            contact = row.get("ContactId")
            if not contact or str(row.get("CommunicationTypeId")) == COMMUNICATION_TYPE_EMAIL:
                continue
            stored = str(row.get("Number") or "")
            if stored and "@" not in stored:
                out.append((str(contact), stored))
            search = digits(str(row.get("SearchNumber") or ""))
            if search:
                out.append((str(contact), search))
                out.append((str(contact), search[::-1]))
        for column in ("Phone", "MobilePhone"):
            rows = self.client.find_records(
                "Contact", {column: contains}, select=("Id", column), top=MAX_CANDIDATES
            )
            out += [(str(r["Id"]), str(r[column])) for r in rows if r.get(column)]
        return out

    # ------------------------------------------------------------------------- activity
    def activity_id(self, info: CallInfo, file_name: str, key: str | None = None) -> str:
        """The Activity Id for a recording: the same recording always gets the same Id, so a
        retry finds the Activity it created instead of making a second one."""
        identity = key or "|".join(
            [file_name, *info.call_ids, info.start.isoformat() if info.start else ""]
        )
        return str(uuid.uuid5(ACTIVITY_NAMESPACE, identity))

    def _ensure_activity(
        self, info: CallInfo, contact_id: str, file_name: str, key: str | None
    ) -> str:
        activity_id = self.activity_id(info, file_name, key)
        if self.client.find_records("Activity", {"Id": activity_id}, top=1):
            return activity_id
        start = (info.start or self.clock()).astimezone(dt.UTC)
        self.client.create_record(
            "Activity",
            {
                "Title": _activity_title(info),
                "StartDate": start,
                "DueDate": start,
                "TypeId": ACTIVITY_TYPE_CALL,
                "ActivityCategoryId": ACTIVITY_CATEGORY_CALL,
                "StatusId": ACTIVITY_STATUS_DONE,
                "ContactId": contact_id,
            },
            record_id=activity_id,
        )
        return activity_id


def _activity_title(info: CallInfo) -> str:
    caller, callee = info.caller or "unknown", info.callee or "unknown"
    if info.direction == "inbound":
        return f"Incoming call from {caller}"
    if info.direction == "outbound":
        return f"Outgoing call to {callee}"
    return f"Call {caller} -> {callee}"
