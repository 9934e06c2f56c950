"""Text any message may hold, made safe for the formats that cannot hold it. A model's exception text
reaches reports verbatim: NUL, ANSI escapes, lone surrogates (from `surrogateescape` file names) and
`]]>`. JSON escapes control characters itself but a lone surrogate is not interchangeable (strict
parsers reject it); XML 1.0 cannot hold C0 controls, surrogates or U+FFFE/U+FFFF at all, escaped or
not. Each such character becomes a visible escape (`\\x1b`, `\\udc80`), so nothing is lost silently."""

from __future__ import annotations

import re
from typing import Any

_SURROGATE = re.compile("[\ud800-\udfff]")
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _visible(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def json_text(text: str) -> str:
    """`text` with lone surrogates written out; everything else JSON escapes by itself."""
    return _SURROGATE.sub(_visible, text)


def xml_text(text: str) -> str:
    """`text` with every character XML 1.0 cannot represent written out; ElementTree escapes the rest."""
    return _NOT_XML.sub(_visible, text)


def json_safe(value: Any) -> Any:
    """A JSON-ready document with every string (keys too) passed through `json_text`."""
    if isinstance(value, str):
        return json_text(value)
    if isinstance(value, dict):
        return {json_text(k) if isinstance(k, str) else k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value
