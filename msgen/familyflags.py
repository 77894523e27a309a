"""Command-line flags from the families' training-options dataclasses (``python -m msgen train``).

Every field of every registered family's options dataclass (``Family.options_cls``) becomes a
flag, ``--field-name`` plus the extra spellings in its metadata (``--r1`` for ``r1_gamma``), with
the field's help and default (a name two families share is one flag, listed under the first family
and described in the other's group with that family's meaning and default). Flags default to "not given": ``chosen`` builds the options of the
family a run trains from the flags given, and refuses, by name, a flag of another family.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

PREFIX = "family_opt__"  # argparse dest of a family option: PREFIX + field name


def _shown(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value) or "none"
    return str(value)


def _parse(kind: str):
    """A parser of one flag's text for a field annotated ``kind`` (annotations are strings here)."""
    def items(text: str) -> list[str]:
        return [] if text.strip().lower() == "none" else [t.strip() for t in text.split(",") if t.strip()]

    def floats(text: str) -> tuple[float, ...]:
        try:
            return tuple(float(t) for t in items(text))
        except ValueError:
            raise argparse.ArgumentTypeError(f"a comma list of numbers, got {text!r}") from None

    def boolean(text: str) -> bool:
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise argparse.ArgumentTypeError(f"true or false, got {text!r}")

    kind = kind.replace(" ", "")
    if kind.startswith("tuple[float"):
        return floats
    if kind.startswith("tuple[str"):
        return lambda text: tuple(items(text))
    return {"int": int, "float": float, "bool": boolean}.get(kind, str)


def add_flags(parser: argparse.ArgumentParser) -> None:
    """One argument group per family, holding that family's options as flags."""
    from .models import families

    taken: dict[str, str] = {}
    for name, fam in families().items():
        group = parser.add_argument_group(f"{name} training options (only for {name} models)")
        shared = []
        for f in dataclasses.fields(fam.options_cls):
            dest = PREFIX + f.name
            if dest in taken:  # two families share an option name: one flag serves both
                shared.append(f"--{f.name.replace('_', '-')} (shared with {taken[dest]}): {f.metadata.get('help', '')} "
                              f"(default for {name}: {_shown(f.default)})")
                continue
            taken[dest] = name
            flags = [f"--{f.name.replace('_', '-')}", *f.metadata.get("flags", ())]
            choices = f.metadata.get("choices")
            text = f.metadata.get("help", "") + (f"; among {', '.join(choices)}" if choices and "tuple" in str(f.type)
                                                   else "")
            try:
                group.add_argument(*flags, dest=dest, type=_parse(str(f.type)), default=None, metavar=f.name.upper(),
                                   choices=choices if choices and "tuple" not in str(f.type) else None,
                                   help=f"{text} (default: {_shown(f.default)})".replace("%", "%%"))
            except argparse.ArgumentError:  # the name is a loop flag already: spell it with the family
                group.add_argument(f"--{name}-{f.name.replace('_', '-')}", dest=dest, type=_parse(str(f.type)),
                                   default=None, metavar=f.name.upper(), help=f"{text} (default: {_shown(f.default)})")
        if shared:  # listed in this family's group too, with this family's meaning and default
            group.description = ("also: " + "; ".join(shared)).replace("%", "%%")


def given(args: argparse.Namespace) -> dict[str, Any]:
    """Field name -> value of every family-option flag on the command line."""
    return {k[len(PREFIX):]: v for k, v in vars(args).items() if k.startswith(PREFIX) and v is not None}


def chosen(args: argparse.Namespace, family: str) -> Any:
    """``family``'s options from the flags given, or None when none was (the Trainer then uses the
    family's defaults); a flag of another family is one clear ValueError."""
    from .models import families, get_family

    values = given(args)
    if not values:
        return None
    fam = get_family(family)
    own = {f.name for f in dataclasses.fields(fam.options_cls)}
    for key in values:
        if key not in own:
            owners = [n for n, other in families().items() if key in {f.name for f in dataclasses.fields(other.options_cls)}]
            raise ValueError(f"--{key.replace('_', '-')} is a training option of {', '.join(owners)} models, "
                             f"and this run's model is {family} (its options: "
                             f"{', '.join('--' + n.replace('_', '-') for n in sorted(own))})")
    return fam.options_cls(**values)  # its own __post_init__ checks them
