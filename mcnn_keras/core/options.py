"""Options as dataclass fields: the one flag mechanism of every binary.

A binary's options are a frozen dataclass whose fields are made with
`option(...)`: the default, the help text, the allowed values and bounds.
`cli/config_flags.py` turns each field into one absl flag of the same name;
`check_fields` checks every value against its field's rules, once, before any
work starts.

Usage:

    @dataclasses.dataclass(frozen=True)
    class EvaluateOptions:
        model_dir: str = option("", "the run directory", required=True)
        batch_size: int = option(8, "fields per batch", minimum=1)

    check_fields(EvaluateOptions(model_dir="runs/x", batch_size=0))
    # ValueError: --batch_size=0: must be >= 1
"""

import dataclasses
import math


def option(default, help, choices=None, minimum=None, above=None, required=False,  # pylint: disable=redefined-builtin
           auto=None, enum=True):
    """A config field with its flag's help, allowed values and lower bound.

    `minimum`: smallest allowed value; `above`: values must be greater;
    `required`: the flag must be given (it has no default); `auto`: the value
    the flag's literal `auto` stands for (e.g. 0 for `--batch_size=auto`);
    `enum=False`: a string flag with `choices` is a plain string flag, its
    value checked by `check_value` (a one-line error from the binary instead
    of absl's parse error).
    """
    return dataclasses.field(default=default, metadata={
        "help": help, "choices": choices, "minimum": minimum, "above": above,
        "required": required, "auto": auto, "enum": enum})


def same_as(field, default=dataclasses.MISSING, help=None, **rules):  # pylint: disable=redefined-builtin
    """An option with `field`'s rules (choices, bounds), another binary's.

    The default, help and rules are `field`'s unless given: a value two
    binaries share is defined once (e.g. mcnn-bench's --dtype is mcnn-train's).
    """
    unknown = set(rules) - {"choices", "minimum", "above", "required", "auto", "enum"}
    if unknown:
        raise TypeError(f"same_as: no rule named {', '.join(sorted(unknown))}")
    metadata = {**field.metadata, **rules}
    if help is not None:
        metadata["help"] = help
    return dataclasses.field(default=field.default if default is dataclasses.MISSING
                             else default, metadata=metadata)


def field_map(cls):
    """{name: dataclasses.Field} of the dataclass `cls`."""
    return {f.name: f for f in dataclasses.fields(cls)}


def check_value(name, value, metadata):
    """Raises ValueError naming `--name` when `value` breaks its field's rules.

    None (an unset optional flag) passes; a tuple (a list flag) is checked
    item by item.
    """
    if value is None:
        return
    if isinstance(value, tuple):
        choices = metadata.get("choices")
        for item in value:
            if choices is not None and item not in choices:
                raise ValueError(f"--{name}={item}: expected one of {list(choices)}")
            check_value(name, item, metadata)
        return
    choices, minimum, above = (metadata.get(k) for k in ("choices", "minimum", "above"))
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"--{name}={value}: must be a finite number")
    if choices is not None and value not in choices:
        raise ValueError(f"--{name}={value!r}: expected one of {list(choices)}")
    if minimum is not None and value < minimum:
        raise ValueError(f"--{name}={value}: must be >= {minimum}")
    if above is not None and value <= above:
        raise ValueError(f"--{name}={value}: must be > {above}")


def check_fields(options):
    """Checks every field of the dataclass instance `options` (one line naming the flag)."""
    for f in dataclasses.fields(options):
        if f.metadata and "help" in f.metadata:
            check_value(f.name, getattr(options, f.name), f.metadata)
    return options
