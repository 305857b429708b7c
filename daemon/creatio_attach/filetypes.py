"""What file types are called: canonical MIME names, their extensions, and byte sniffers.

The tables and pure functions behind ``detect.py``: libmagic's legacy names mapped to the
canonical ones, the extension that belongs to each type (and its equivalent spellings), and
small sniffers that look at bytes already read for what libmagic misses (RF64 WAV, MPEG
audio frames behind padding or a misplaced ID3 tag, ASF without video, an mbox-style mail).
No I/O here, and no imports from the project or from ``magic``: only the standard library.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable

GENERIC_BINARY = "application/octet-stream"
GENERIC_TEXT = "text/plain"
#: types that say "some bytes" / "some text" and nothing more: the file name is kept as is
GENERIC_TYPES = frozenset({GENERIC_BINARY, GENERIC_TEXT})
#: what libmagic answers for a file of zero bytes (from_file / from_buffer)
EMPTY_TYPES = frozenset({"inode/x-empty", "application/x-empty"})

# libmagic's legacy, private or unregistered names -> the name a CRM should store.
# The first block is what the corpus needs; the rest are the same kind of alias for
# common types that libmagic (or older versions of it) spells the old way.
ALIASES: dict[str, str] = {
    # seen in ../shared/fixtures/real (libmagic 5.44)
    "audio/x-wav": "audio/wav",
    "audio/x-m4a": "audio/mp4",
    "audio/x-hx-aac-adts": "audio/aac",
    "text/rtf": "application/rtf",
    "text/xml": "application/xml",
    "application/x-rar": "application/vnd.rar",
    # the same kind, not in the corpus
    "audio/wave": "audio/wav",
    "audio/vnd.wave": "audio/wav",
    "audio/x-pn-wav": "audio/wav",
    "audio/x-hx-aac-adif": "audio/aac",
    "audio/x-aac": "audio/aac",
    "audio/aacp": "audio/aac",
    "audio/x-flac": "audio/flac",
    "audio/x-mp3": "audio/mpeg",
    "audio/mp3": "audio/mpeg",
    "audio/x-mpeg": "audio/mpeg",
    "audio/x-amr": "audio/amr",
    "audio/x-aiff": "audio/aiff",
    "audio/x-opus+ogg": "audio/ogg",
    "audio/x-vorbis+ogg": "audio/ogg",
    "audio/x-ogg": "audio/ogg",
    "application/x-rar-compressed": "application/vnd.rar",
    "application/x-gzip": "application/gzip",
    "application/x-zip-compressed": "application/zip",
    "application/x-zip": "application/zip",
    "application/x-pdf": "application/pdf",
    "application/x-json": "application/json",
    "text/json": "application/json",
    "application/csv": "text/csv",
    "text/x-csv": "text/csv",
    "text/x-comma-separated-values": "text/csv",
    "text/tsv": "text/tab-separated-values",
    "text/x-vcard": "text/vcard",
    "text/x-markdown": "text/markdown",
    "application/x-yaml": "application/yaml",
    "text/yaml": "application/yaml",
    "text/x-yaml": "application/yaml",
    "image/x-ms-bmp": "image/bmp",
    "image/x-bmp": "image/bmp",
    "image/x-icon": "image/vnd.microsoft.icon",
    "image/svg": "image/svg+xml",
    "image/x-png": "image/png",
    "image/pjpeg": "image/jpeg",
    "image/jpg": "image/jpeg",
    "video/x-m4v": "video/mp4",
    "application/x-sh": "text/x-shellscript",
    "application/x-shellscript": "text/x-shellscript",
    # libmagic's newer private name for a position-independent ELF program: still an executable
    "application/x-pie-executable": "application/x-executable",
    "application/x-elf": "application/x-executable",
    # libmagic's Algol 68 rule fires on ordinary prose; a real Algol 68 file is not an attachment
    "text/x-algol68": "text/plain",
}

# canonical MIME -> (canonical extension, other spellings that are right for it)
TYPES: dict[str, tuple[str, tuple[str, ...]]] = {
    # documents
    "application/pdf": ("pdf", ()),
    "application/msword": ("doc", ("dot",)),
    "application/vnd.ms-excel": ("xls", ("xlt", "xla")),
    "application/vnd.ms-powerpoint": ("ppt", ("pps", "pot")),
    "application/vnd.ms-outlook": ("msg", ()),
    "application/rtf": ("rtf", ()),
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": ("docx", ()),
    "application/vnd.openxmlformats-officedocument.wordprocessingml.template": ("dotx", ()),
    "application/vnd.ms-word.document.macroEnabled.12": ("docm", ()),
    "application/vnd.ms-word.template.macroEnabled.12": ("dotm", ()),
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": ("xlsx", ()),
    "application/vnd.openxmlformats-officedocument.spreadsheetml.template": ("xltx", ()),
    "application/vnd.ms-excel.sheet.macroEnabled.12": ("xlsm", ()),
    "application/vnd.ms-excel.template.macroEnabled.12": ("xltm", ()),
    "application/vnd.ms-excel.sheet.binary.macroEnabled.12": ("xlsb", ()),
    "application/vnd.ms-excel.addin.macroEnabled.12": ("xlam", ()),
    "application/vnd.openxmlformats-officedocument.presentationml.presentation": ("pptx", ()),
    "application/vnd.openxmlformats-officedocument.presentationml.slideshow": ("ppsx", ()),
    "application/vnd.openxmlformats-officedocument.presentationml.template": ("potx", ()),
    "application/vnd.ms-powerpoint.presentation.macroEnabled.12": ("pptm", ()),
    "application/vnd.ms-powerpoint.slideshow.macroEnabled.12": ("ppsm", ()),
    "application/vnd.ms-powerpoint.template.macroEnabled.12": ("potm", ()),
    "application/vnd.oasis.opendocument.text": ("odt", ()),
    "application/vnd.oasis.opendocument.spreadsheet": ("ods", ()),
    "application/vnd.oasis.opendocument.presentation": ("odp", ()),
    "application/vnd.oasis.opendocument.graphics": ("odg", ()),
    "application/epub+zip": ("epub", ()),
    # text with a declared structure
    "text/csv": ("csv", ("txt",)),  # Excel writes "Text (Tab/Comma delimited)" as .txt too
    "text/tab-separated-values": ("tsv", ("tab", "txt")),
    "text/html": ("html", ("htm", "xhtml", "shtml")),
    "application/xml": ("xml", ("xsd", "xsl", "xslt", "wsdl", "rss", "atom", "plist", "config")),
    "application/json": ("json", ("geojson", "jsonld", "webmanifest")),
    "application/yaml": ("yaml", ("yml",)),
    "text/markdown": ("md", ("markdown",)),
    "text/calendar": ("ics", ("ical", "ifb")),
    "text/vcard": ("vcf", ("vcard",)),
    "message/rfc822": ("eml", ("mht", "mhtml")),
    # images
    "image/png": ("png", ()),
    "image/jpeg": ("jpg", ("jpeg", "jpe", "jfif")),
    "image/gif": ("gif", ()),
    "image/tiff": ("tiff", ("tif",)),
    "image/bmp": ("bmp", ("dib",)),
    "image/webp": ("webp", ()),
    "image/heic": ("heic", ("heif",)),
    "image/heif": ("heif", ("heic",)),
    "image/avif": ("avif", ()),
    "image/svg+xml": ("svg", ("svgz",)),
    "image/vnd.microsoft.icon": ("ico", ()),
    # archives
    "application/zip": (
        "zip",
        ("jar", "war", "ear", "apk", "xpi", "kmz", "whl", "nupkg", "cbz", "ipa", "vsix"),
    ),
    "application/java-archive": ("jar", ("war", "ear")),
    "application/x-7z-compressed": ("7z", ()),
    "application/vnd.rar": ("rar", ()),
    "application/gzip": ("gz", ("tgz",)),
    "application/x-bzip2": ("bz2", ("tbz2", "tbz")),
    "application/x-xz": ("xz", ("txz",)),
    "application/zstd": ("zst", ("tzst",)),
    "application/x-tar": ("tar", ()),
    # audio
    "audio/wav": ("wav", ("wave", "bwf", "rf64")),
    "audio/mpeg": ("mp3", ("mp2", "mp1", "mpga")),
    "audio/ogg": ("ogg", ("oga", "opus", "spx")),
    "audio/mp4": ("m4a", ("m4b", "m4p", "mp4")),
    "audio/aac": ("aac", ("adts",)),
    "audio/amr": ("amr", ()),
    "audio/amr-wb": ("awb", ("amr",)),
    "audio/flac": ("flac", ()),
    "audio/x-ms-wma": ("wma", ("asf",)),
    "audio/aiff": ("aiff", ("aif", "aifc")),
    "audio/basic": ("au", ("snd",)),
    "audio/midi": ("mid", ("midi",)),
    "audio/3gpp": ("3gp", ("3gpp", "3ga")),
    "audio/webm": ("weba", ("webm",)),
    "audio/x-matroska": ("mka", ()),
    # video
    "video/mp4": ("mp4", ("m4v", "mp4v")),
    "video/3gpp": ("3gp", ("3gpp",)),
    "video/webm": ("webm", ()),
    "video/x-ms-asf": ("asf", ("wmv", "wm")),
    "video/quicktime": ("mov", ("qt",)),
    "video/x-msvideo": ("avi", ()),
    "video/x-matroska": ("mkv", ()),
    "video/mpeg": ("mpg", ("mpeg", "mpe", "m2v")),
    "video/mp2t": ("ts", ("m2ts", "mts")),
    "video/x-flv": ("flv", ()),
    # executables and scripts (usually denied; named right when they are not)
    "application/vnd.microsoft.portable-executable": ("exe", ("dll", "sys", "efi", "scr", "cpl")),
    "application/x-dosexec": ("exe", ("com",)),
    "application/x-msi": ("msi", ()),
    "application/x-sharedlib": ("so", ()),
    "text/x-shellscript": ("sh", ("bash",)),
}

#: binaries that are named without an extension: a wrong one is dropped, none is added
NO_EXTENSION_TYPES = frozenset(
    {"application/x-executable", "application/x-mach-binary", "application/x-coredump"}
)

# Extensions that name some other format, so a file carrying one of them and holding
# something else has a *wrong* extension that is replaced. Any other suffix ("report.final",
# "call.1234") is not taken for an extension: the right one is appended after it.
_OTHER_EXTENSIONS = """
    bin dat tmp txt text log ini cfg conf dmp raw img iso dmg pcm alaw ulaw gsm vox sln g722
    g729 docs xl pages numbers key odf ps eps ai psd py js c h java cs sql bat cmd ps1 vbs lnk
    url"""
OTHER_EXTENSIONS = frozenset(_OTHER_EXTENSIONS.split())

#: for text that libmagic can only call text/plain: the declared extension names the format
TEXT_BY_EXTENSION: dict[str, str] = {
    "csv": "text/csv",
    "tsv": "text/tab-separated-values",
    "tab": "text/tab-separated-values",
    "eml": "message/rfc822",
    "json": "application/json",
    "xml": "application/xml",
    "yaml": "application/yaml",
    "yml": "application/yaml",
    "md": "text/markdown",
    "markdown": "text/markdown",
    "ics": "text/calendar",
    "vcf": "text/vcard",
}

# [Content_Types].xml: the content type of an OOXML package's main part -> the file's type
_OX = "application/vnd.openxmlformats-officedocument."
_MS = "application/vnd.ms-"
OOXML_MAIN_PARTS: dict[str, str] = {
    f"{_OX}wordprocessingml.document.main+xml": f"{_OX}wordprocessingml.document",
    f"{_OX}wordprocessingml.template.main+xml": f"{_OX}wordprocessingml.template",
    f"{_MS}word.document.macroenabled.main+xml": f"{_MS}word.document.macroEnabled.12",
    f"{_MS}word.template.macroenabledtemplate.main+xml": f"{_MS}word.template.macroEnabled.12",
    f"{_OX}spreadsheetml.sheet.main+xml": f"{_OX}spreadsheetml.sheet",
    f"{_OX}spreadsheetml.template.main+xml": f"{_OX}spreadsheetml.template",
    f"{_MS}excel.sheet.macroenabled.main+xml": f"{_MS}excel.sheet.macroEnabled.12",
    f"{_MS}excel.template.macroenabled.main+xml": f"{_MS}excel.template.macroEnabled.12",
    f"{_MS}excel.sheet.binary.macroenabled.main": f"{_MS}excel.sheet.binary.macroEnabled.12",
    f"{_MS}excel.addin.macroenabled.main+xml": f"{_MS}excel.addin.macroEnabled.12",
    f"{_OX}presentationml.presentation.main+xml": f"{_OX}presentationml.presentation",
    f"{_OX}presentationml.slideshow.main+xml": f"{_OX}presentationml.slideshow",
    f"{_OX}presentationml.template.main+xml": f"{_OX}presentationml.template",
    f"{_MS}powerpoint.presentation.macroenabled.main+xml": (
        f"{_MS}powerpoint.presentation.macroEnabled.12"
    ),
    f"{_MS}powerpoint.slideshow.macroenabled.main+xml": (
        f"{_MS}powerpoint.slideshow.macroEnabled.12"
    ),
    f"{_MS}powerpoint.template.macroenabled.main+xml": f"{_MS}powerpoint.template.macroEnabled.12",
}
#: what libmagic may say for a ZIP whose [Content_Types].xml decides the real type
ZIP_FAMILY = frozenset(
    {"application/zip", *(m for m in TYPES if m.startswith("application/vnd.openxmlformats"))}
)
_CONTENT_TYPE_ATTR = re.compile(rb'ContentType\s*=\s*["\']([^"\']+)["\']', re.IGNORECASE)


def canonical(mime: str) -> str:
    """libmagic's answer with parameters dropped and legacy names mapped to canonical ones."""
    base = mime.split(";", 1)[0].strip()
    return ALIASES.get(base.lower(), base)


def extension_for(mime: str, description: str = "") -> str:
    """The canonical extension (no dot) of a canonical MIME type; "" when there is none."""
    if mime == "audio/ogg" and "Opus audio" in description:
        return "opus"
    entry = TYPES.get(mime)
    return entry[0] if entry else ""


def accepted_extensions(mime: str) -> frozenset[str]:
    entry = TYPES.get(mime)
    return frozenset((entry[0], *entry[1])) if entry else frozenset()


def known_extensions() -> frozenset[str]:
    """Every suffix that names a format (so a wrong one is replaced, not appended to)."""
    names = {ext for canonical_ext, others in TYPES.values() for ext in (canonical_ext, *others)}
    return frozenset(names | OTHER_EXTENSIONS | set(TEXT_BY_EXTENSION))


def ooxml_type(content_types_xml: bytes) -> str | None:
    """The package type named by the main part's content type in ``[Content_Types].xml``."""
    for match in _CONTENT_TYPE_ATTR.finditer(content_types_xml):
        found = OOXML_MAIN_PARTS.get(match.group(1).decode("ascii", "replace").lower())
        if found:
            return found
    return None


# --- WAV ------------------------------------------------------------------------------


def is_ogg_opus(head: bytes) -> bool:
    """An Ogg stream whose first packet is an Opus header: libmagic's own test (its
    description then says "Opus audio"), with the usual one-segment first page."""
    return len(head) >= 36 and head[:4] == b"OggS" and head[28:36] == b"OpusHead"


def is_rf64_wave(head: bytes) -> bool:
    """RF64 (EBU Tech 3306) or BW64 (ITU-R BS.2088): 64-bit WAV that libmagic 5.44 calls data."""
    return len(head) >= 12 and head[:4] in (b"RF64", b"BW64") and head[8:12] == b"WAVE"


# --- MPEG audio and ADTS AAC frames -------------------------------------------------

_MPEG_BITRATES = {  # kbit/s by (version is MPEG-1, layer) for bitrate index 1..14
    (True, 1): (32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448),
    (True, 2): (32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384),
    (True, 3): (32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    (False, 1): (32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256),
    (False, 2): (8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
    (False, 3): (8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
_MPEG_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}


def mpeg_frame(buf: bytes, pos: int) -> tuple[int, bytes] | None:
    """(frame length, key) of a valid MPEG audio frame header at ``pos``, else None.

    The key (version, layer, sample rate) must stay the same from frame to frame.
    """
    if pos + 4 > len(buf) or buf[pos] != 0xFF or buf[pos + 1] & 0xE0 != 0xE0:
        return None
    version = (buf[pos + 1] >> 3) & 3  # 3: MPEG-1, 2: MPEG-2, 0: MPEG-2.5, 1: reserved
    layer = 4 - ((buf[pos + 1] >> 1) & 3)  # 4 means the reserved value 0
    bitrate_index = buf[pos + 2] >> 4
    rate_index = (buf[pos + 2] >> 2) & 3
    if version == 1 or layer == 4 or bitrate_index in (0, 15) or rate_index == 3:
        return None
    padding = (buf[pos + 2] >> 1) & 1
    bitrate = _MPEG_BITRATES[(version == 3, layer)][bitrate_index - 1] * 1000
    rate = _MPEG_RATES[version][rate_index]
    if layer == 1:
        length = (12 * bitrate // rate + padding) * 4
    elif layer == 3 and version != 3:
        length = 72 * bitrate // rate + padding
    else:
        length = 144 * bitrate // rate + padding
    return length, bytes((version, layer, rate_index))


def adts_frame(buf: bytes, pos: int) -> tuple[int, bytes] | None:
    """(frame length, key) of a valid ADTS (AAC) frame header at ``pos``, else None."""
    if pos + 7 > len(buf) or buf[pos] != 0xFF or buf[pos + 1] & 0xF6 != 0xF0:
        return None
    rate_index = (buf[pos + 2] >> 2) & 0xF
    length = ((buf[pos + 3] & 3) << 11) | (buf[pos + 4] << 3) | (buf[pos + 5] >> 5)
    if rate_index > 12 or length < 7:
        return None
    return length, bytes((buf[pos + 1] & 0x08, buf[pos + 2] >> 6, rate_index))


def frame_chain(
    buf: bytes, pos: int, parse: Callable[[bytes, int], tuple[int, bytes] | None], frames: int = 3
) -> bool:
    """True when ``frames`` consecutive, consistent frames start at ``pos`` (may end cut)."""
    first = parse(buf, pos)
    if first is None:
        return False
    verified, length = 1, first[0]
    while verified < frames:
        pos += length
        if pos + 4 > len(buf):  # the window (or the file) ends inside a plausible stream
            return verified >= 2
        nxt = parse(buf, pos)
        if nxt is None or nxt[1] != first[1]:
            return False
        verified, length = verified + 1, nxt[0]
    return True


def audio_frames_at(buf: bytes, pos: int) -> str | None:
    """The MIME type of an MPEG audio or ADTS AAC stream starting at ``pos``, if one does."""
    if frame_chain(buf, pos, mpeg_frame):
        return "audio/mpeg"
    if frame_chain(buf, pos, adts_frame):
        return "audio/aac"
    return None


def scan_audio_frames(buf: bytes, start: int = 0) -> str | None:
    """The first MPEG/ADTS stream found from ``start`` on in ``buf`` (a bounded window)."""
    pos = buf.find(b"\xff", start)
    while pos != -1:
        found = audio_frames_at(buf, pos)
        if found:
            return found
        pos = buf.find(b"\xff", pos + 1)
    return None


def id3v2_end(head: bytes) -> int | None:
    """Where an ID3v2 tag at the start of the file says the audio begins, if there is one."""
    if len(head) < 10 or head[:3] != b"ID3" or head[3] not in (2, 3, 4) or head[4] == 0xFF:
        return None
    if any(b & 0x80 for b in head[6:10]):
        return None
    size = (head[6] << 21) | (head[7] << 14) | (head[8] << 7) | head[9]
    footer = 10 if head[5] & 0x10 else 0
    return 10 + size + footer


# --- ASF (WMA / WMV) -----------------------------------------------------------------

ASF_HEADER = uuid.UUID("75B22630-668E-11CF-A6D9-00AA0062CE6C").bytes_le
ASF_AUDIO_MEDIA = uuid.UUID("F8699E40-5B4D-11CF-A8FD-00805F5C442B").bytes_le
ASF_VIDEO_MEDIA = uuid.UUID("BC19EFC0-5B4D-11CF-A8FD-00805F5C442B").bytes_le


def asf_is_audio_only(header: bytes) -> bool:
    """True when the ASF header object declares audio streams and no video stream."""
    return ASF_AUDIO_MEDIA in header and ASF_VIDEO_MEDIA not in header


# --- mail ------------------------------------------------------------------------------

_HEADER_LINE = re.compile(rb"^[!-9;-~]+:[ \t]?")
_MAIL_HEADERS = (
    b"from:",
    b"to:",
    b"subject:",
    b"date:",
    b"message-id:",
    b"received:",
    b"return-path:",
    b"mime-version:",
)


def is_mbox_style_message(head: bytes) -> bool:
    """An RFC 822 message preceded by an mbox ``From `` separator line (libmagic: text/plain).

    Every line up to the first empty one must be a header field or a folded continuation,
    and at least two of them must be the usual mail headers.
    """
    if not head.startswith(b"From "):
        return False
    lines = head.split(b"\n")
    if len(lines) < 3:
        return False
    seen = 0
    for raw in lines[1:-1]:  # the last piece may be cut by the read window
        line = raw.rstrip(b"\r")
        if not line:
            return seen >= 2
        if line[:1] in (b" ", b"\t"):
            continue
        if not _HEADER_LINE.match(line):
            return False
        if line.lower().startswith(_MAIL_HEADERS):
            seen += 1
    return False


# --- EBML (WebM / Matroska) -----------------------------------------------------------

EBML_SEGMENT, EBML_TRACKS, EBML_TRACK_ENTRY, EBML_TRACK_TYPE = 0x18538067, 0x1654AE6B, 0xAE, 0x83
EBML_CLUSTER = 0x1F43B675
EBML_UNKNOWN_SIZE = -1


def ebml_element(buf: bytes, pos: int) -> tuple[int, int, int] | None:
    """(element id, data size or EBML_UNKNOWN_SIZE, header length) at ``pos``, else None."""
    id_len = _vint_length(buf, pos, 4)
    if id_len is None:
        return None
    size_len = _vint_length(buf, pos + id_len, 8)
    if size_len is None:
        return None
    element_id = int.from_bytes(buf[pos : pos + id_len], "big")
    raw = buf[pos + id_len : pos + id_len + size_len]
    size = int.from_bytes(raw, "big") & ((1 << (7 * size_len)) - 1)
    if size == (1 << (7 * size_len)) - 1:
        size = EBML_UNKNOWN_SIZE
    return element_id, size, id_len + size_len


def _vint_length(buf: bytes, pos: int, longest: int) -> int | None:
    if pos >= len(buf) or buf[pos] == 0:
        return None
    length = 8 - buf[pos].bit_length() + 1
    return length if length <= longest and pos + length <= len(buf) else None
