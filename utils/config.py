"""Typed configuration: YAML files and `a.b=value` overrides into dataclasses, validated once at the door.

Every unknown key, wrong type or unreadable file is a UserError naming the file, the key and what is expected,
so the code below receives typed objects and never raw dicts.
"""
import dataclasses
import difflib
import re
import types
import typing
from pathlib import Path

import yaml

from utils.errors import UserError


class _Yaml12Loader(yaml.SafeLoader):
    """PyYAML follows YAML 1.1, which reads `5e-4` (no dot) as a string; accept YAML 1.2 floats instead."""


_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\d[\d_]*)?(?:\.[\d_]*)?(?:[eE][-+]?\d+)?$|^[-+]?\.(?:inf|Inf|INF)$|^\.(?:nan|NaN|NAN)$"),
    list("-+0123456789."),
)


def parse_yaml_text(text: str, source: str):
    try:
        return yaml.load(text, Loader=_Yaml12Loader)
    except yaml.YAMLError as error:
        raise UserError(f"{source}: not valid YAML ({str(error).splitlines()[0]})") from None


def read_yaml(path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file not found: {path}")
    data = parse_yaml_text(path.read_text(), str(path))
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping of keys to values at the top level, got {type(data).__name__}")
    return data


def merge(base: dict, override: dict) -> dict:
    """Deep-merge `override` into a copy of `base`; nested mappings merge, everything else is replaced."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def parse_override(text: str) -> dict:
    """`optimizer.lr=1e-4` -> {"optimizer": {"lr": 0.0001}}; the value is read as YAML."""
    key, sep, raw_value = text.partition("=")
    if not sep or not key or any(not part for part in key.split(".")):
        raise UserError(f"override '{text}': expected KEY=VALUE with a dotted key, e.g. optimizer.lr=1e-4")
    return dotted(key, parse_yaml_text(raw_value, f"override '{text}'"))


def dotted(key: str, value) -> dict:
    """`("data.data_dir", "x")` -> {"data": {"data_dir": "x"}}."""
    for part in reversed(key.split(".")):
        value = {part: value}
    return value


INCLUDE_KEY = "include"


def experiment_layers(path, including: tuple = ()) -> list[tuple[str, dict]]:
    """(file, settings) of an experiment YAML and, before it, of the files its `include:` list names (paths
    relative to it, themselves free to include others): a recipe built on other recipes holds only its changes."""
    path = Path(path)
    if path.resolve() in including:
        raise UserError(f"{path}: includes itself (through {' -> '.join(str(file) for file in including)})")
    settings = read_yaml(path)
    included = settings.pop(INCLUDE_KEY, [])
    if isinstance(included, str):
        included = [included]
    if not isinstance(included, list) or not all(isinstance(name, str) for name in included):
        raise UserError(f"{path}: '{INCLUDE_KEY}' must be a file name or a list of them, got {included!r}")
    layers = []
    for name in included:
        layers += experiment_layers(path.parent / name, (*including, path.resolve()))
    return layers + [(str(path), settings)]


def load_layered(cls, defaults: dict[str, dict], experiments: list[str] | None, flags: dict, overrides: list[str]):
    """Build `cls` from layers, each overriding the one before: the defaults ({source file: its settings}), the
    experiment YAMLs in order (each only its differences, e.g. a data file and then a recipe), the command-line
    flags ({dotted key: value}, None = not given), then `key=value` overrides. Errors name the layers the values
    came from."""
    layers = list(defaults.items())
    for experiment in experiments or []:
        layers += experiment_layers(experiment)
    given = {key: value for key, value in flags.items() if value is not None}
    layers += [("command line", dotted(key, value)) for key, value in given.items()]
    layers += [("command line", parse_override(override)) for override in overrides]
    settings = {}
    for source, layer in layers:
        check_keys(cls, layer, source)  # an unknown key is named with the one file it is in
        settings = merge(settings, layer)
    sources = list(dict.fromkeys(source for source, _ in layers))
    return build(cls, settings, " + ".join(sources))


def check_keys(cls, data, source: str, prefix: str = "") -> None:
    """Every key of `data` names a field of dataclass `cls` (nested dataclasses too), else one error naming the
    nearest valid key."""
    if not isinstance(data, dict):
        return
    fields = {field.name: field for field in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    for key, value in data.items():
        if key not in fields:
            nearest = difflib.get_close_matches(str(key), fields, n=1)
            hint = f"; did you mean '{prefix}{nearest[0]}'?" if nearest else f"; valid keys: {', '.join(fields)}"
            raise UserError(f"{source}: unknown key '{prefix}{key}'{hint}")
        if dataclasses.is_dataclass(hints[key]):
            check_keys(hints[key], value, source, f"{prefix}{key}.")


def build(cls, data: dict, source: str, prefix: str = ""):
    """Build dataclass `cls` from `data`, rejecting unknown keys and wrong types with the nearest valid key."""
    if not isinstance(data, dict):
        raise UserError(f"{source}: '{prefix.rstrip('.') or '<top>'}' must be a mapping, got {data!r}")
    fields = {field.name: field for field in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    check_keys(cls, data, source, prefix)
    values = {name: _check(hints[name], data[name], source, prefix + name) for name in fields if name in data}
    for name, field in fields.items():  # after the values: a typo or a wrong value is the first thing to fix
        if name not in data and field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise UserError(f"{source}: missing required key '{prefix}{name}'")
    try:
        return cls(**values)
    except ValueError as error:
        raise UserError(f"{source}: {error}") from None


def _describe(expected) -> str:
    return getattr(expected, "__name__", None) or str(expected).replace("typing.", "")


def _check(expected, value, source: str, key: str):
    origin = typing.get_origin(expected)
    if dataclasses.is_dataclass(expected):
        return build(expected, value, source, key + ".")
    if origin in (typing.Union, types.UnionType):
        kinds = _kinds(typing.get_args(expected))
        if kinds:
            return _check_kind(kinds, value, source, key)
        for option in typing.get_args(expected):
            try:
                return _check(option, value, source, key)
            except UserError:
                continue
    elif origin is typing.Literal:
        if value in typing.get_args(expected):
            return value
        choices = " | ".join(str(choice) for choice in typing.get_args(expected))
        raise UserError(f"{source}: '{key}' must be one of {choices}, got {value!r}")
    elif origin in (list, tuple):
        (item_type, *_) = typing.get_args(expected) or (typing.Any,)
        if isinstance(value, (list, tuple)):
            return [_check(item_type, item, source, f"{key}[{index}]") for index, item in enumerate(value)]
    elif expected is typing.Any:
        return value
    elif expected is type(None):
        if value is None:
            return None
    elif expected is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif expected is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(value, expected):
        return value
    raise UserError(f"{source}: '{key}' must be {_describe(expected)}, got {value!r} ({type(value).__name__})")


def _kinds(options) -> dict:
    """{kind: dataclass} when every option is a dataclass told apart by a `kind: Literal[...]` field, else {}."""
    kinds = {}
    for option in options:
        hint = typing.get_type_hints(option).get("kind") if dataclasses.is_dataclass(option) else None
        if typing.get_origin(hint) is not typing.Literal:
            return {}
        kinds.update({kind: option for kind in typing.get_args(hint)})
    return kinds


def _check_kind(kinds: dict, value, source: str, key: str):
    """A mapping whose `kind` picks its dataclass: errors then name that dataclass's keys, not every option's."""
    choices = " | ".join(kinds)
    if not isinstance(value, dict) or "kind" not in value:
        raise UserError(f"{source}: '{key}' must be a mapping with a 'kind' ({choices}), got {value!r}")
    if value["kind"] not in kinds:
        raise UserError(f"{source}: '{key}.kind' must be one of {choices}, got {value['kind']!r}")
    return build(kinds[value["kind"]], value, source, key + ".")


def as_dict(config) -> dict:
    return dataclasses.asdict(config)
