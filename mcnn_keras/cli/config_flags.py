"""absl flags generated from a config dataclass: one flag per field.

The flag has the field's name, type, default and help (`core.options.option`
metadata; `choices` make an enum flag; `auto` lets an int or float flag also
take the literal `auto`, e.g. `--batch_size=auto` -> 0; a `tuple` field is a
comma-list flag, its value a tuple of strings; a None default is an unset flag). Nothing is declared
twice, so the flags cannot drift from the configuration.

Usage (in a binary's module):

    SECTIONS = config_flags.define_sections(config.SECTIONS)   # at import
    ...
    cfg = config.TrainConfig.from_flat(config_flags.values(SECTIONS))
"""

import dataclasses
import sys

from absl import flags

_DEFINE = {str: flags.DEFINE_string, int: flags.DEFINE_integer,
           float: flags.DEFINE_float, bool: flags.DEFINE_boolean}
_PARSER = {int: flags.IntegerParser, float: flags.FloatParser}


def _auto_parser(kind, auto):
    """A `kind` parser that also reads the literal `auto` as the value `auto`."""
    class AutoParser(_PARSER[kind]):
        syntactic_help = f"{_PARSER[kind].syntactic_help} or 'auto'"

        def parse(self, argument):
            if isinstance(argument, str) and argument.strip().lower() == "auto":
                return auto
            return super().parse(argument)
    return AutoParser()


def _define(field, module_name, flag_values):
    help_text = field.metadata.get("help") or field.name
    choices = field.metadata.get("choices")
    required = field.metadata.get("required", False)
    default = None if required else field.default
    kind = field.type if isinstance(field.type, type) else type(field.default)
    if kind in (tuple, list):
        flags.DEFINE_list(field.name, None if default is None else list(default), help_text,
                          flag_values=flag_values, module_name=module_name)
    elif choices is not None and kind is str and field.metadata.get("enum", True):
        flags.DEFINE_enum(field.name, default, list(choices), help_text,
                          flag_values=flag_values, module_name=module_name)
    elif field.metadata.get("auto") is not None:
        flags.DEFINE(_auto_parser(kind, field.metadata["auto"]), field.name, default,
                     help_text, flag_values=flag_values, serializer=flags.ArgumentSerializer(),
                     module_name=module_name)
    else:
        _DEFINE[kind](field.name, default, help_text, flag_values=flag_values,
                      module_name=module_name)
    if required:
        flags.mark_flag_as_required(field.name, flag_values=flag_values)


def define_sections(sections, flag_values=flags.FLAGS, module_name=None):
    """Defines a flag per field of each dataclass in `sections` ({title: class}).

    The flags belong to the calling module (or `module_name`), so absl's
    module help lists them. Returns [(title, [flag names])] for the help.
    """
    module_name = module_name or sys._getframe(1).f_globals["__name__"]  # pylint: disable=protected-access
    groups = []
    for title, section in sections.items():
        names = []
        for field in dataclasses.fields(section):
            _define(field, module_name, flag_values)
            names.append(field.name)
        groups.append((title, names))
    return groups


def values(groups, flag_values=flags.FLAGS):
    """{flag name: parsed value} of the flags defined by `define_sections`."""
    return {name: tuple(value) if isinstance(value, list) else value
            for _, names in groups for name in names
            for value in (flag_values[name].value,)}


def given(groups, flag_values=flags.FLAGS):
    """The names of the flags of `groups` given on the command line."""
    return {name for _, names in groups for name in names if flag_values[name].present}
