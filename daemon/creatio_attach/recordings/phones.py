"""Phone numbers: normalisation to E.164 and comparison; pure, standard library only.

Must not import anything from the project nor any I/O library. The rules:

* only digits count; a leading ``+``, or an international prefix (``00`` everywhere, ``011``
  where the default country code is ``1``, i.e. North America) makes a number international;
* ``+44 (0)20 ...``: a trunk ``(0)`` in brackets after the country code is dropped;
* SIP/TEL URIs (``sip:+15550102030@pbx;user=phone``) are reduced to their user part;
* with a default country code, a national number (trunk prefix ``0``, ``1`` in North
  America, ``8`` for ``7``; none for Italy, San Marino and the Vatican, whose numbers keep
  their ``0``) becomes E.164 (``+<country><national>``); a number shorter than
  ``MIN_NATIONAL`` digits (an extension) stays as its digits;
* withheld callers (``anonymous``, ``unknown``, ...) are no number at all (``""``);
* two numbers are the *same* when their normalised forms are equal, and *alike* when their
  last N digits are equal (both having at least N digits).
"""

from __future__ import annotations

import re
from typing import Literal

#: a national number (after its trunk prefix) shorter than this is an extension
MIN_NATIONAL = 6
#: how many digits a number written with its country code but without ``+``/``00`` must have
#: after the country code before it is taken as international
MIN_SUBSCRIBER_AFTER_CC = 8
#: trunk prefixes that differ from ``0`` ("" = none: the leading 0 belongs to the number)
TRUNK_PREFIX: dict[str, str] = {"1": "1", "7": "8", "39": "", "378": "", "379": ""}
#: what PBXs write for a caller that has no number
WITHHELD = frozenset(
    {"anonymous", "unknown", "private", "restricted", "withheld", "unavailable", "none", "null"}
)

_NON_DIGIT = re.compile(r"\D+")
_COUNTRY_CODE = re.compile(r"\+?\d{1,3}")
_TRUNK_IN_BRACKETS = re.compile(r"\(\s*0\s*\)")

Likeness = Literal["exact", "last_digits"]


def digits(raw: str | None) -> str:
    """The digits of ``raw`` and nothing else (``"+1 (555) 010-2030"`` -> ``"15550102030"``)."""
    return _NON_DIGIT.sub("", raw or "")


def check_country_code(value: str | None) -> str | None:
    """A problem with a configured country code, or None (``"1"``, ``"44"``, ``"+49"`` are fine)."""
    if value is None or _COUNTRY_CODE.fullmatch(value.strip()):
        return None
    return f'{value!r} is not a country calling code (1 to 3 digits, e.g. "1" or "44")'


def _user_part(text: str) -> str:
    lower = text.lower()
    for scheme in ("sips:", "sip:", "tel:"):
        if lower.startswith(scheme):
            text = text[len(scheme) :]
            break
    return text.split("@", 1)[0].split(";", 1)[0]


def normalise(raw: str | None, country_code: str | None = None) -> str:
    """The comparable form of a phone number.

    ``"+15550102030"`` when the number is (or can be made) international, the bare digits for
    an extension or a national number without a default country code, ``""`` for none.
    """
    text = _user_part((raw or "").strip())
    if not text or text.strip().lower() in WITHHELD:
        return ""
    d = digits(text)
    if not d:
        return ""
    cc = digits(country_code) if country_code else ""
    if text.lstrip(" (").startswith("+"):
        # "+44 (0)20 7946 0958": the bracketed trunk 0 is not dialled from abroad
        return "+" + digits(_TRUNK_IN_BRACKETS.sub("", text))
    if d.startswith("00") and len(d) > 2 + MIN_NATIONAL:
        return "+" + d[2:]
    if cc == "1" and d.startswith("011") and len(d) > 3 + MIN_NATIONAL:
        return "+" + d[3:]
    if not cc:
        return d
    return _national_to_e164(d, cc)


def _national_to_e164(d: str, cc: str) -> str:
    if cc == "1":  # North America: 10-digit national numbers, optional trunk 1
        if len(d) == 10:
            return "+1" + d
        if len(d) == 11 and d.startswith("1"):
            return "+" + d
        return d
    trunk = TRUNK_PREFIX.get(cc, "0")
    if trunk and d.startswith(trunk):
        national = d[len(trunk) :]
    elif d.startswith(cc) and len(d) >= len(cc) + MIN_SUBSCRIBER_AFTER_CC:
        return "+" + d  # written with its country code, without "+" or "00"
    else:
        national = d
    if len(national) < MIN_NATIONAL:
        return d
    return "+" + cc + national


def last_digits(number: str, n: int) -> str:
    """The last ``n`` digits of a (normalised or raw) number; "" when it has fewer."""
    d = digits(number)
    return d[-n:] if n > 0 and len(d) >= n else ""


def likeness(
    a: str | None, b: str | None, *, country_code: str | None, last_n: int
) -> Likeness | None:
    """``"exact"`` when both normalise to the same number, ``"last_digits"`` when only their
    last ``last_n`` digits agree, ``None`` otherwise (or when either is no number)."""
    na, nb = normalise(a, country_code), normalise(b, country_code)
    if not na or not nb:
        return None
    if na == nb:
        return "exact"
    tail_a = last_digits(na, last_n)
    if tail_a and tail_a == last_digits(nb, last_n):
        return "last_digits"
    return None


def search_fragment(number: str, size: int = 4) -> str:
    """The last ``size`` digits: a fragment that is contiguous in nearly every way people
    write a number (``555-010-2030``, ``(555) 0102030``), used for ``contains`` queries."""
    d = digits(number)
    return d[-size:]
