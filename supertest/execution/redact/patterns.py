"""What a secret is found as: a regular expression per secret for all its forms (raw, JSON-escaped
once or twice, percent-encoded, HTML-escaped, cut by colour codes; see the package's docstring),
compiled together as a Matcher, and the replacing of what it finds."""
from __future__ import annotations

import functools
import json
import re
import urllib.parse
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

REPLACEMENT = "[secret]"
MASK = b"*"
# Up to this many colour codes (ESC[...m, raw or as \u001b) between two characters of a secret.
_ANSI = rb"(?:(?:\x1b|\\u001[bB]|\\\\u001[bB])\[[0-9;]{0,12}m){0,4}"
_ANSI_MAX = 4 * (len(r"\\u001b") + 1 + 12 + 1)
_JSON_SHORT = {'"': '\\"', "\\": "\\\\", "/": "\\/", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r",
               "\t": "\\t"}
_HTML_NAMED = {"&": ["&amp;"], "<": ["&lt;"], ">": ["&gt;"], '"': ["&quot;"], "'": ["&apos;"]}


@dataclass(frozen=True)
class Matcher:
    """Compiled patterns for a set of secrets: `any` finds where some secret may start, `each`
    tells how far each one reaches from there; `longest` bounds the bytes an occurrence can take."""

    any: re.Pattern[bytes]
    each: tuple[re.Pattern[bytes], ...]
    longest: int

    @classmethod
    def of(cls, secrets: Sequence[str]) -> Matcher | None:
        # Built once per set of secrets: a run redacts every live event and every file with the same set.
        return _matcher(frozenset(secret for secret in secrets if secret))

    def spans(self, data: bytes, stop: int | None = None) -> list[tuple[int, int]]:
        """The stretches covered by occurrences starting before `stop`, merged where they overlap.
        Every start is tried (not only the first of overlapping ones), and at each start the
        furthest-reaching secret counts."""
        stop = len(data) if stop is None else stop
        spans: list[tuple[int, int]] = []
        position = 0
        while position < stop and (found := self.any.search(data, position)) is not None:
            start = found.start()
            if start >= stop:
                break
            end = max((m.end() for pattern in self.each if (m := pattern.match(data, start))), default=start)
            if end > start:
                if spans and start <= spans[-1][1]:
                    spans[-1] = (spans[-1][0], max(spans[-1][1], end))
                else:
                    spans.append((start, end))
            position = start + 1
        return spans

    def replace(self, data: bytes, mask: bool = False) -> bytes:
        return _apply(data, self.spans(data), mask)


@functools.lru_cache(maxsize=8)
def _matcher(secrets: frozenset[str]) -> Matcher | None:
    if not secrets:
        return None
    built = [_secret_pattern(secret) for secret in sorted(secrets, key=len, reverse=True)]
    return Matcher(re.compile(b"|".join(source for source, _ in built)),
                   tuple(re.compile(source) for source, _ in built),
                   max(longest for _, longest in built))


def _apply(data: bytes, spans: Iterable[tuple[int, int]], mask: bool) -> bytes:
    out = []
    done = 0
    for start, end in spans:
        out.append(data[done:start])
        out.append(MASK * (end - start) if mask else REPLACEMENT.encode())
        done = end
    out.append(data[done:])
    return b"".join(out)


def _secret_pattern(secret: str) -> tuple[bytes, int]:
    """A regular expression for one secret in all its forms, and the most bytes it can match."""
    parts = []
    longest = 0
    for char in secret:
        forms = sorted(_char_forms(char), key=lambda form: -form[1])  # longest first: `\\\\` before `\\`
        parts.append(b"(?:" + b"|".join(source for source, _ in forms) + b")")
        longest += forms[0][1]
    longest += _ANSI_MAX * (len(secret) - 1)
    return _ANSI.join(parts), longest


def _char_forms(char: str) -> set[tuple[bytes, int]]:
    """Regex fragments for one character, with the most bytes each can match: raw; JSON-escaped
    once and twice; percent-encoded (also its JSON escapes); HTML-escaped."""
    raw = char.encode("utf-8", "surrogatepass")
    forms = {(re.escape(raw), len(raw))}
    hexes = [f"{unit:04x}" for unit in _utf16_units(char)]
    escapes = ["".join(f"\\u{h}" for h in hexes)]  # JSON escapes of the character, once
    forms.add((b"".join(rb"\\u" + _hex(h) for h in hexes), 6 * len(hexes)))
    forms.add((b"".join(rb"\\\\u" + _hex(h) for h in hexes), 7 * len(hexes)))  # and twice
    if char in _JSON_SHORT:
        escapes.append(_JSON_SHORT[char])
        for escaped in (_JSON_SHORT[char], json.dumps(_JSON_SHORT[char])[1:-1]):
            forms.add((re.escape(escaped.encode()), len(escaped)))
    forms.add((b"".join(b"%" + _hex(f"{byte:02X}") for byte in raw), 3 * len(raw)))
    if char == " ":
        forms.add((re.escape(b"+"), 1))
    for escaped in escapes:  # a URL carrying JSON
        encoded = urllib.parse.quote(escaped, safe="").encode()
        forms.add((re.escape(encoded), len(encoded)))
    for named in _HTML_NAMED.get(char, []):
        forms.add((re.escape(named.encode()), len(named)))
    if not (char.isascii() and char.isalnum()):
        forms.add((f"&#0{{0,4}}{ord(char)};".encode(), 16))
        forms.add((b"&#[xX]0{0,4}" + _hex(f"{ord(char):x}") + b";", 16))
    return forms


def _hex(digits: str) -> bytes:
    """Hex digits matching in either case."""
    return "".join(f"[{d.lower()}{d.upper()}]" if d.isalpha() else d for d in digits).encode()


def _utf16_units(char: str) -> list[int]:
    data = char.encode("utf-16-be", "surrogatepass")
    return [int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2)]
