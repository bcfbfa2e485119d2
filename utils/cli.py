"""What every entry script does around its work: one typed settings object from `--config` files, flags and
`key=value` overrides (utils.config.load_layered), and user errors as one line on stderr with exit code 2."""
import argparse
import dataclasses
import sys
import types
import typing

from utils.config import load_layered
from utils.errors import UserError

# Old spellings of one thing, kept working for one release: {old: kept}, for flags and for keys.
DEPRECATED_NAMES = {"image_dir": "img_dir", "class_file": "classnames"}


def run_command(command, *args) -> int:
    """`command(*args)`'s exit code (None counts as 0); a UserError is one line on stderr and exit code 2."""
    try:
        return command(*args) or 0
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def current_name(name: str, where: str) -> str:
    """`name`, or the kept spelling of a deprecated one, with a one-line note on stderr."""
    if name not in DEPRECATED_NAMES:
        return name
    kept = DEPRECATED_NAMES[name]
    print(f"note: {where}{name} is deprecated, use {where}{kept} (the old spelling goes in the next release)",
          file=sys.stderr)
    return kept


def renamed_arguments(argv: list[str]) -> list[str]:
    """argv with deprecated `--flag[=value]` and `key=value` spellings replaced by the kept ones."""
    renamed = []
    for argument in argv:
        name, sep, value = argument.partition("=")
        if name.startswith("--"):
            argument = "--" + current_name(name[2:], "--") + sep + value
        elif sep and not argument.startswith("-"):
            argument = current_name(name, "") + sep + value
        renamed.append(argument)
    return renamed


class ScriptArgumentParser(argparse.ArgumentParser):
    """A script's parser: its docstring as the help text, and a bad option as one line on stderr with exit code 2,
    like every other user error (argparse's own error prints the whole usage first)."""

    def __init__(self, doc: str | None, **kwargs):
        super().__init__(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter, **kwargs)

    def error(self, message: str):
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


class SettingsParser(ScriptArgumentParser):
    """One config path for every script: the defaults, then `--config` YAMLs in order (repeatable, each only its
    differences), then flags, then `key=value` overrides, into one dataclass. Unknown keys name the nearest."""

    def __init__(self, doc: str | None, settings_class, defaults: dict[str, dict] | None = None,
                 positionals: dict[str, str] | None = None, **parser_options):
        """`positionals`: settings given by position ({key: help}), before any `key=value` override;
        `parser_options`: argparse's (e.g. prog for a `python -m` command)."""
        super().__init__(doc, **parser_options)
        self.settings_class, self.defaults, self.flag_keys = settings_class, defaults or {}, {}
        self.add_argument("--config", action="append", help="YAML file holding only its changes to the defaults; "
                          "repeat it to layer several, later ones winning (e.g. data, then a recipe)")
        for key, help_text in (positionals or {}).items():
            self.flag_keys[key] = key
            self.add_argument(key, nargs="?", default=None, help=help_text)
        self.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="e.g. batch_size=64 (after the files)")

    def add_setting(self, flag: str, key: str | None = None, **options) -> None:
        """A flag that sets `key` (a dotted settings key; default the flag's name)."""
        dest = flag.lstrip("-")
        self.flag_keys[dest] = key or dest
        self.add_argument(flag, dest=dest, default=None, **options)

    def add_field_flags(self) -> None:
        """One flag per field of the settings class not yet given a flag or position: its type gives the parsing, its
        metadata["help"] the help."""
        hints, taken = typing.get_type_hints(self.settings_class), set(self.flag_keys.values())
        for field in dataclasses.fields(self.settings_class):
            if field.name in taken:
                continue
            self.add_setting(f"--{field.name}", help=field.metadata.get("help"),
                             **flag_options(hints[field.name], field.default))

    def parse(self, argv: list[str] | None) -> argparse.Namespace:
        """The flags (a bad one exits 2 at once); `load` turns them into settings."""
        return self.parse_intermixed_args(renamed_arguments(sys.argv[1:] if argv is None else argv))

    def settings(self, argv: list[str] | None):
        """The settings `argv` asks for: a bad flag exits 2 at once, a bad key or value is a UserError."""
        return self.load(self.parse(argv))

    def load(self, args: argparse.Namespace):
        flags = {key: flattened(getattr(args, dest)) for dest, key in self.flag_keys.items()}
        return load_layered(self.settings_class, self.defaults, args.config, flags, args.overrides)


def flag_options(hint, default) -> dict:
    """argparse options that read a field of type `hint` as its command-line spelling."""
    options = [option for option in typing.get_args(hint) if option is not type(None)]
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and len(options) == 1:
        hint = options[0]
    origin = typing.get_origin(hint)
    if hint is bool:
        return {"action": argparse.BooleanOptionalAction if default is True else "store_true"}
    if origin is typing.Literal:
        return {"choices": typing.get_args(hint)}
    if origin is list:
        (item,) = typing.get_args(hint)
        item_options = {"type": whole_numbers} if item is int else flag_options(item, None)
        return {"nargs": "+", "action": "extend", **item_options}
    return {"type": hint} if hint in (int, float) else {}


def flattened(value):
    """`--k_shot 1,2 4` parses to [[1, 2], [4]]: one list."""
    if not isinstance(value, list):
        return value
    return [item for part in value for item in (part if isinstance(part, list) else [part])]


def whole_numbers(text: str) -> list[int]:
    """`--k_shot 1,2,4` or `--k_shot 1 2 4`: commas and spaces both separate."""
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected whole numbers such as 1,2,4, got {text!r}") from None


def setting(default=dataclasses.MISSING, help: str | None = None, **kwargs):
    """A settings field with its command-line help."""
    return dataclasses.field(default=default, metadata={"help": help}, **kwargs)
