"""Integer list specs as typed on the command line: ``0-7``, ``0,3,5``, ``1-3,9``."""
from __future__ import annotations

import re

from ..errors import UserError

_ITEM = re.compile(r"^(\d+)(?:-(\d+))?$")


class SpecError(UserError):
    """A seed or layer spec that does not parse or names something that does not exist."""


def parse_int_list(spec: str, what: str = "seed") -> list[int]:
    """Comma-separated non-negative integers and inclusive ranges ``A-B`` (A <= B), in order;
    ``"1-3,9"`` -> [1, 2, 3, 9]."""
    if not isinstance(spec, str) or not spec.strip():
        raise SpecError(f"empty {what} spec: expected e.g. '0-7', '0,3,5' or '1-3,9'")
    values = []
    for item in spec.split(","):
        match = _ITEM.match(item.strip())
        if match is None:
            raise SpecError(f"bad {what} spec {spec!r}: {item.strip()!r} is not a non-negative "
                            f"integer or a range A-B (e.g. '0-7', '0,3,5', '1-3,9')")
        first = int(match.group(1))
        last = int(match.group(2)) if match.group(2) is not None else first
        if last < first:
            raise SpecError(f"bad {what} spec {spec!r}: range {item.strip()!r} runs backwards")
        values.extend(range(first, last + 1))
    return values


def parse_seeds(spec) -> list[int]:
    """Seeds from a spec string (see :func:`parse_int_list`), or an int / iterable of ints."""
    if isinstance(spec, str):
        seeds = parse_int_list(spec, "seed")
    else:
        seeds = [spec] if isinstance(spec, int) else list(spec)
        if not seeds:
            raise SpecError("no seeds given")
    if any(isinstance(s, bool) or not isinstance(s, int) or not 0 <= s < 2 ** 63 for s in seeds):
        raise SpecError(f"seeds must be integers in [0, 2**63), got {seeds!r}")
    return seeds
