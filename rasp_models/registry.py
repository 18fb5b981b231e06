"""Name -> program spec for every program we study, ordered roughly from trivial to complex."""

from rasp_models import fractok, ladder, palindrome, peak
from rasp_models.base import ProgramSpec

_SPECS = {s.name: s for s in ladder.SPECS[:6]}
_SPECS.update({"fractok": fractok.SPEC, "palindrome": palindrome.SPEC, "peak": peak.SPEC})
_SPECS.update({s.name: s for s in ladder.SPECS[6:]})


def names() -> list[str]:
    return list(_SPECS)


def get(name: str) -> ProgramSpec:
    """The spec of a registered program.

    Raises:
        KeyError: unknown name (the message lists the known ones).
    """
    if name not in _SPECS:
        raise KeyError(f"unknown program {name!r}; registered: {names()}")
    return _SPECS[name]


def descriptions() -> dict[str, str]:
    return {n: s.description for n, s in _SPECS.items()}
