"""The Train tab's family options: controls built from the chosen family's options dataclass.

Each family's training-options dataclass (``Family.options_cls``) marks the fields the page
shows with a ``label`` (``msgen.models.option``); this module builds one control per such field,
grouped per family, shows only the group of the family the chosen base trains, and turns the
submitted values back into that family's options (its own ``__post_init__`` checks them).
Values of other families' controls are dropped: they do not apply to this run.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import gradio as gr

from ..models import families, get_family

AUGMENT = "augment"  # the option the API's ``augment`` parameter sets, in a family that has it


def shown_fields(family: str) -> list[dataclasses.Field]:
    """The fields of ``family``'s options the page shows (those with a ``label``)."""
    return [f for f in dataclasses.fields(get_family(family).options_cls) if f.metadata.get("label")]


def family_of(ctx, choice: str | None, owner: str | None) -> str:
    """The family the base choice ("model:NAME" or "scratch:FAMILY") trains; "" when unknown."""
    kind, _, value = str(choice or "").partition(":")
    if kind == "scratch":
        return value if value in families() else ""
    try:
        return ctx.find(value, owner).family if kind == "model" else ""
    except (KeyError, ValueError):
        return ""


def options(family: str, augment: Any, values: dict[str, Any] | None) -> Any:
    """``family``'s options from the form: ``values`` maps "family.field" to a control's value.
    None when the form sets none of them: the Trainer then takes the family's defaults (or those
    a base exported when they were config fields carries), as ``python -m msgen train`` does."""
    cls = get_family(family).options_cls
    names = {f.name for f in dataclasses.fields(cls)}
    own = {k.split(".", 1)[1]: v for k, v in (values or {}).items() if k.startswith(family + ".")}
    if AUGMENT in names:
        own[AUGMENT] = augment
    own = {k: tuple(v) if isinstance(v, list) else v for k, v in own.items() if k in names and v is not None}
    if not own:
        return None
    try:
        return cls(**own)
    except TypeError as exc:
        raise ValueError(f"{family} options: {exc}") from None


def flags(options: Any) -> list[str]:
    """The ``python -m msgen train`` flags that repeat the page's family options."""
    from ..familyflags import _shown

    words = []
    for f in dataclasses.fields(options):
        if f.metadata.get("label"):
            words += [f"--{f.name.replace('_', '-')}", _shown(getattr(options, f.name))]
    return words


def layout(chosen: str) -> tuple[dict[str, Any], dict[str, Any], Any]:
    """(family -> its group, "family.field" -> control, the augment control) for every family;
    only ``chosen``'s group is visible."""
    groups, controls, augment = {}, {}, None
    for name in families():
        fields = shown_fields(name)
        if not fields:
            continue
        with gr.Group(visible=name == chosen) as group:
            for f in fields:
                label, choices = f.metadata["label"], f.metadata.get("choices")
                if isinstance(f.default, tuple):
                    control = gr.CheckboxGroup(list(choices or f.default), value=list(f.default), label=label)
                elif choices:
                    control = gr.Dropdown(list(choices), value=f.default, label=label)
                elif isinstance(f.default, bool):
                    control = gr.Checkbox(f.default, label=label)
                else:
                    control = gr.Number(f.default, label=label, precision=0 if isinstance(f.default, int) else None)
                if f.name == AUGMENT and augment is None:
                    augment = control
                else:
                    controls[f"{name}.{f.name}"] = control
        groups[name] = group
    if augment is None:  # no family has the option: the API's parameter still needs a component
        augment = gr.CheckboxGroup([], value=[], visible=False)
    return groups, controls, augment


def wire(controls: dict[str, Any], state: Any) -> None:
    """Every control's value kept in ``state`` ("family.field" -> value), which start reads."""
    for key, control in controls.items():
        control.change(lambda value, values, key=key: {**(values or {}), key: value}, [control, state], [state],
                       api_visibility="private", show_progress="hidden", queue=False)


def visibility(family: str, groups: dict[str, Any]) -> list[Any]:
    return [gr.update(visible=name == family) for name in groups]
