"""Entity schemas of the emulated Creatio: columns, their types, lookups and schema UIds.

One job: describe which objects exist (built-ins plus ``UsrXxx``/``UsrXxxFile`` custom ones)
and how each column is typed, so that storage, ``$metadata`` and ``$filter`` agree.
Must not import anything from the rest of ``creatio_attach`` nor any web or SQL library.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum

# Stable UIds for schemas whose real UId is not in the contract (uuid5 of the name).
_UID_NAMESPACE = uuid.UUID("9b2f1c8e-5a43-4f3e-9d0c-1e6f0a7c2b11")

# Real UIds from creatio-api.md (sections 2.1, 3, 4.2, 6).
KNOWN_UIDS = {
    "File": "556c5867-60a7-4456-aae1-a57a122bef70",
    "SysFile": "70ec5d9f-a55e-4f5c-8f59-30d2c5149c4a",
    "ActivityFile": "080c9917-7ec9-42e5-86ff-75a683d4f124",
    "CallFile": "5956808f-648a-428e-be89-f2dd71f98166",
    "Call": "2f81fa05-11ae-400d-8e07-5ef6a620d1ad",
}

FILE_TYPE_FILE = "529bc2f8-0ee0-df11-971b-001d60e938c6"
FILE_TYPE_LINK = "539bc2f8-0ee0-df11-971b-001d60e938c6"
FILE_TYPE_ENTITY_LINK = "549bc2f8-0ee0-df11-971b-001d60e938c6"
FILE_GROUP_DEFAULT = "efbf3a0d-d780-465a-8e4b-8c0765197cfb"
CALL_DIRECTION_DEFAULT = "c072be2c-3d82-4468-9d4a-6db47d1f4cca"
CALL_DIRECTION_INCOMING = "1d96a65f-2131-4916-8825-2d142b1000b2"
CALL_DIRECTION_OUTGOING = "53f71b5f-7e17-4cf5-bf14-6a59212db422"

CUSTOM_NAME = re.compile(r"^Usr[A-Z][A-Za-z0-9]{0,40}$")


class ColumnType(Enum):
    """Column data types; ``edm`` is the OData type name used in ``$metadata`` and errors."""

    GUID = "Edm.Guid"
    STRING = "Edm.String"
    INTEGER = "Edm.Int32"
    FLOAT = "Edm.Decimal"
    DATETIME = "Edm.DateTimeOffset"
    BOOLEAN = "Edm.Boolean"
    LOOKUP = "lookup"  # stored as a flat ``<Name>Id`` Edm.Guid column
    BINARY = "Edm.Stream"  # the ``Data`` column: content lives on disk, never inline

    @property
    def edm(self) -> str:
        return ColumnType.GUID.value if self is ColumnType.LOOKUP else self.value


@dataclass(frozen=True)
class Column:
    """One column. A lookup named ``Case`` is stored and written as ``CaseId``."""

    name: str
    type: ColumnType
    reference: str | None = None  # lookups: the referenced schema's name
    default: object = None

    @property
    def flat_name(self) -> str:
        """The name in JSON bodies and in SQL (``CaseId`` for the lookup ``Case``)."""
        return f"{self.name}Id" if self.type is ColumnType.LOOKUP else self.name

    @property
    def stored(self) -> bool:
        return self.type is not ColumnType.BINARY


@dataclass(frozen=True)
class Schema:
    """One entity schema (an OData entity set of the same name)."""

    name: str
    uid: str
    columns: tuple[Column, ...]
    is_file: bool = False
    parent_column: str | None = None  # file objects: the parent lookup's name ("Case")
    _by_flat: dict[str, Column] = field(default_factory=dict, repr=False, compare=False)
    _by_name: dict[str, Column] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        for c in self.columns:
            self._by_flat[c.flat_name] = c
            self._by_name[c.name] = c

    def by_flat(self, flat_name: str) -> Column | None:
        """Column by its body/SQL name (``CaseId``, ``Name``)."""
        return self._by_flat.get(flat_name)

    def lookup(self, name: str) -> Column | None:
        """Lookup column by its navigation name (``Case``)."""
        col = self._by_name.get(name)
        return col if col is not None and col.type is ColumnType.LOOKUP else None

    def stored_columns(self) -> list[Column]:
        return [c for c in self.columns if c.stored]

    def lookups(self) -> list[Column]:
        return [c for c in self.columns if c.type is ColumnType.LOOKUP]


class Schemas(Mapping[str, Schema]):
    """All schemas by name; mapping-like, plus file-object and UId lookups."""

    def __init__(self, schemas: Sequence[Schema]) -> None:
        self._schemas = {s.name: s for s in schemas}
        self._by_uid = {s.uid.lower(): s for s in schemas}

    def __getitem__(self, name: str) -> Schema:
        return self._schemas[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._schemas)

    def __len__(self) -> int:
        return len(self._schemas)

    def file_objects(self) -> list[Schema]:
        return [s for s in self._schemas.values() if s.is_file]

    def by_uid(self, uid: str) -> Schema | None:
        return self._by_uid.get(uid.strip("{}").lower())

    def collections_of(self, name: str) -> list[tuple[Schema, Column]]:
        """Schemas with a lookup to ``name`` (Creatio's ``XxxCollectionByYyy`` navigation)."""
        return [(s, c) for s in self._schemas.values() for c in s.lookups() if c.reference == name]


def schema_uid(name: str) -> str:
    return KNOWN_UIDS.get(name) or str(uuid.uuid5(_UID_NAMESPACE, name))


G, S, N, F, D, B = (
    ColumnType.GUID,
    ColumnType.STRING,
    ColumnType.INTEGER,
    ColumnType.FLOAT,
    ColumnType.DATETIME,
    ColumnType.BOOLEAN,
)


def _lk(name: str, reference: str, default: str | None = None) -> Column:
    return Column(name, ColumnType.LOOKUP, reference, default)


def _base() -> list[Column]:
    """BaseEntity columns every Creatio object has."""
    return [
        Column("Id", G),
        Column("CreatedOn", D),
        _lk("CreatedBy", "Contact"),
        Column("ModifiedOn", D),
        _lk("ModifiedBy", "Contact"),
        Column("ProcessListeners", N, default=0),
    ]


def _file_columns() -> list[Column]:
    """Base ``File`` schema columns (contract section 2.1) plus ``TotalSize``."""
    return [
        *_base(),
        Column("Name", S),
        Column("Notes", S),
        _lk("LockedBy", "Contact"),
        Column("LockedOn", D),
        Column("Data", ColumnType.BINARY),
        _lk("Type", "FileType", FILE_TYPE_FILE),
        Column("Version", N, default=1),
        Column("Size", N, default=0),
        Column("TotalSize", N),
        _lk("SysFileStorage", "SysFileContentStorage"),
        _lk("FileGroup", "FileGroup", FILE_GROUP_DEFAULT),
        Column("Tag", S),
    ]


def _schema(name: str, columns: list[Column], **kw: object) -> Schema:
    return Schema(name, schema_uid(name), tuple(columns), **kw)  # type: ignore[arg-type]


def _lookup_schema(name: str) -> Schema:
    return _schema(name, [*_base(), Column("Name", S), Column("Description", S)])


def _file_object(name: str, parent: str, extra: Sequence[Column] = ()) -> Schema:
    return _schema(
        name,
        [*_file_columns(), _lk(parent, parent), *extra],
        is_file=True,
        parent_column=parent,
    )


LOOKUP_SCHEMAS = (
    "FileType",
    "FileGroup",
    "SysFileContentStorage",
    "CallDirection",
    "ActivityType",
    "ActivityCategory",
    "ActivityStatus",
    "CommunicationType",
    "CasePriority",
    "CaseStatus",
    "OpportunityStage",
    "AccountType",
    "CallResult",
)

# Lookup values seeded into a fresh store (contract sections 2.1, 6).
SEED_ROWS: dict[str, list[dict[str, object]]] = {
    "FileType": [
        {"Id": FILE_TYPE_FILE, "Name": "File"},
        {"Id": FILE_TYPE_LINK, "Name": "Link"},
        {"Id": FILE_TYPE_ENTITY_LINK, "Name": "Link to object"},
    ],
    "FileGroup": [{"Id": FILE_GROUP_DEFAULT, "Name": "Default"}],
    "CallDirection": [
        {"Id": CALL_DIRECTION_DEFAULT, "Name": "Not defined"},
        # From Creatio's configuration source (CallDirectionId enums), not in the contract.
        {"Id": CALL_DIRECTION_INCOMING, "Name": "Incoming"},
        {"Id": CALL_DIRECTION_OUTGOING, "Name": "Outgoing"},
    ],
    "ActivityType": [
        {"Id": "fbe0acdc-cfc0-df11-b00f-001d60e938c6", "Name": "Task"},
        {"Id": "e1831dec-cfc0-df11-b00f-001d60e938c6", "Name": "Call"},
        {"Id": "e2831dec-cfc0-df11-b00f-001d60e938c6", "Name": "Email"},
        {"Id": "e3831dec-cfc0-df11-b00f-001d60e938c6", "Name": "Visit"},
    ],
    "ActivityCategory": [{"Id": "e52bd583-7825-e011-8165-00155d043204", "Name": "Call"}],
    "ActivityStatus": [
        {"Id": "384d4b84-58e6-df11-971b-001d60e938c6", "Name": "Not started"},
        {"Id": "394d4b84-58e6-df11-971b-001d60e938c6", "Name": "In progress"},
        {"Id": "4bdbb88f-58e6-df11-971b-001d60e938c6", "Name": "Completed"},
        {"Id": "201cfba8-58e6-df11-971b-001d60e938c6", "Name": "Canceled"},
    ],
    "CommunicationType": [
        {"Id": "3dddb3cc-53ee-49c4-a71f-e9e257f59e49", "Name": "Business phone"},
        {"Id": "d4a2dc80-30ca-df11-9b2a-001d60e938c6", "Name": "Mobile phone"},
        {"Id": "0da6a26b-d7bc-df11-b00f-001d60e938c6", "Name": "Home phone"},
        {"Id": "6a3fb10c-67cc-df11-9b2a-001d60e938c6", "Name": "Primary phone"},
        {"Id": "2b387201-67cc-df11-9b2a-001d60e938c6", "Name": "Additional phone"},
        {"Id": "9a7ab41b-67cc-df11-9b2a-001d60e938c6", "Name": "Fax"},
        {"Id": "ee1c85c3-cfcb-df11-9b2a-001d60e938c6", "Name": "Email"},
    ],
}


def _builtins() -> list[Schema]:
    out = [_lookup_schema(n) for n in LOOKUP_SCHEMAS]
    out.append(
        _schema(
            "Contact",
            [
                *_base(),
                Column("Name", S),
                Column("Surname", S),
                Column("GivenName", S),
                Column("Phone", S),
                Column("MobilePhone", S),
                Column("HomePhone", S),
                Column("Email", S),
                _lk("Account", "Account"),
                Column("Notes", S),
            ],
        )
    )
    out.append(
        _schema(
            "Account",
            [
                *_base(),
                Column("Name", S),
                Column("Code", S),
                Column("Phone", S),
                Column("Web", S),
                _lk("Type", "AccountType"),
                _lk("PrimaryContact", "Contact"),
                _lk("Owner", "Contact"),
                Column("Notes", S),
            ],
        )
    )
    out.append(
        _schema(
            "Case",
            [
                *_base(),
                Column("Number", S),
                Column("Subject", S),
                Column("Symptoms", S),
                Column("RegisteredOn", D),
                _lk("Status", "CaseStatus"),
                _lk("Priority", "CasePriority"),
                _lk("Contact", "Contact"),
                _lk("Account", "Account"),
                _lk("Owner", "Contact"),
            ],
        )
    )
    out.append(
        _schema(
            "Activity",
            [
                *_base(),
                Column("Title", S),
                Column("StartDate", D),
                Column("DueDate", D),
                _lk("Type", "ActivityType"),
                _lk("ActivityCategory", "ActivityCategory"),
                _lk("Status", "ActivityStatus"),
                _lk("Owner", "Contact"),
                _lk("Contact", "Contact"),
                _lk("Account", "Account"),
                _lk("Case", "Case"),
                _lk("Opportunity", "Opportunity"),
                Column("DetailedResult", S),
                Column("Notes", S),
            ],
        )
    )
    out.append(
        _schema(
            "Call",
            [
                *_base(),
                Column("IntegrationId", S),
                Column("ParentCallId", S),
                Column("CallerId", S),
                Column("CalledId", S),
                Column("RedirectingId", S),
                Column("RedirectionId", S),
                Column("StartDate", D),
                Column("EndDate", D),
                Column("Duration", N),
                Column("BeforeConnectionTime", N),
                Column("TalkTime", N),
                Column("HoldTime", N),
                _lk("Direction", "CallDirection", CALL_DIRECTION_DEFAULT),
                Column("Caption", S),
                _lk("Contact", "Contact"),
                _lk("Account", "Account"),
                _lk("Result", "CallResult"),
                Column("Comment", S),
                Column("Notes", S),
                _lk("Activity", "Activity"),
                _lk("Opportunity", "Opportunity"),
                Column("GloballyUniqueCallLinkageId", S),
            ],
        )
    )
    out.append(
        _schema(
            "ContactCommunication",
            [
                *_base(),
                _lk("Contact", "Contact"),
                _lk("CommunicationType", "CommunicationType"),
                Column("Number", S),
                Column("SearchNumber", S),
                Column("Position", N, default=0),
                Column("Primary", B, default=False),
                Column("NonActual", B, default=False),
                Column("Description", S),
            ],
        )
    )
    out.append(
        _schema(
            "Opportunity",
            [
                *_base(),
                Column("Title", S),
                _lk("Account", "Account"),
                _lk("Contact", "Contact"),
                _lk("Owner", "Contact"),
                _lk("Stage", "OpportunityStage"),
                Column("Amount", F),
                Column("DueDate", D),
            ],
        )
    )
    for parent in ("Case", "Contact", "Account", "Activity", "Call", "Opportunity"):
        out.append(_file_object(f"{parent}File", parent))
    out.append(
        _schema(
            "SysFile",
            [
                *_file_columns(),
                Column("RecordSchemaName", S),
                Column("RecordId", G),
                Column("ToDelete", B, default=False),
                Column("LastError", S),
            ],
            is_file=True,
        )
    )
    return out


def _custom(name: str) -> list[Schema]:
    if not CUSTOM_NAME.match(name) or name.endswith("File"):
        raise ValueError(f"custom schema name must look like UsrXxx: {name!r}")
    section = _schema(
        name,
        [*_base(), Column("Name", S), Column("Notes", S), _lk("Owner", "Contact")],
    )
    return [section, _file_object(f"{name}File", name)]


def build_schemas(custom: Sequence[str] = ()) -> Schemas:
    """Built-in schemas plus ``UsrXxx`` and ``UsrXxxFile`` for each custom name."""
    schemas = _builtins()
    seen = {s.name for s in schemas}
    for name in custom:
        if name in seen:
            continue
        extra = _custom(name)
        schemas.extend(extra)
        seen.update(s.name for s in extra)
    return Schemas(schemas)
