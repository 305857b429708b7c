"""Call-recording ingestion: PBX spool presets, phone numbers and the matching chain.

``presets`` turns a recording's file name into a ``CallInfo``; ``phones`` compares numbers;
``matcher`` finds the Call, Contact or Activity a recording belongs to. Pure policy: Creatio is
reached through the ``RecordsClient`` Protocol; nothing here imports requests, sqlite3,
watchdog or magic.
"""

from __future__ import annotations

from .matcher import (
    STEPS,
    Match,
    MatchSettingsLike,
    RecordingMatcher,
    RecordsClient,
    Unmatched,
    check_steps,
)
from .phones import check_country_code, likeness, normalise
from .presets import (
    DEFAULT_NAME,
    NAME_FIELDS,
    PRESETS,
    CallInfo,
    default_record_name,
    name_fields,
    name_template_problems,
    parse_call_info,
    pattern_problems,
    preset_names,
    preset_pattern,
    timezone_problem,
)

__all__ = [
    "DEFAULT_NAME",
    "NAME_FIELDS",
    "PRESETS",
    "STEPS",
    "CallInfo",
    "Match",
    "MatchSettingsLike",
    "RecordingMatcher",
    "RecordsClient",
    "Unmatched",
    "check_country_code",
    "check_steps",
    "default_record_name",
    "likeness",
    "name_fields",
    "name_template_problems",
    "normalise",
    "parse_call_info",
    "pattern_problems",
    "preset_names",
    "preset_pattern",
    "timezone_problem",
]
