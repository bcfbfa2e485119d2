"""What every entry script does around its work: user errors become one line on stderr and exit code 2."""
import argparse
import difflib
import os
import sys

import torch

from utils.config import read_yaml
from utils.errors import UserError
from utils.precision import PRECISIONS


def run_command(command, args) -> int:
    """`command(args)`'s exit code (None counts as 0); a UserError is one line on stderr and exit code 2."""
    try:
        return command(args) or 0
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


class ScriptArgumentParser(argparse.ArgumentParser):
    """A script's parser: its docstring as the help text, and a bad option as one line on stderr with exit code 2,
    like every other user error (argparse's own error prints the whole usage first)."""

    def __init__(self, doc: str | None, **kwargs):
        super().__init__(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter, **kwargs)

    def error(self, message: str):
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def add_checkpoint_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint_path", required=True,
                        help="our checkpoint, an OpenAI or open_clip weights file, or a model config name")


def add_inference_arguments(parser: argparse.ArgumentParser, batch_size: int, loader_workers: bool = True) -> None:
    """The options every evaluation script shares: --batch_size, --num_workers (image decoding processes, when the
    script uses a DataLoader), --device and --precision."""
    parser.add_argument("--batch_size", type=int, default=batch_size)
    if loader_workers:
        parser.add_argument("--num_workers", type=int, default=min(8, os.cpu_count() or 1))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precision", default="auto", choices=PRECISIONS)


def add_experiment_configs(parser: argparse.ArgumentParser) -> None:
    """--config for the training scripts: experiment YAMLs (utils.config.load_layered's layers), repeatable."""
    parser.add_argument("--config", action="append", help="experiment YAML holding only its changes to the defaults; "
                        "repeat it to layer several, later ones winning (e.g. data, then a recipe)")


def parse_with_config(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Parse `argv`, taking defaults from the YAML file named by `--config` (keys are the options' names without
    dashes); options given on the command line win over the file. An unknown key names the nearest option."""
    parser.add_argument("--config", default=None, help="YAML file of option values (command-line options win)")
    config_only = argparse.ArgumentParser(add_help=False)  # finds --config before the required options are checked
    config_only.add_argument("--config", default=None)
    config_path = config_only.parse_known_args(argv)[0].config
    if config_path is None:
        return parser.parse_args(argv)
    values = read_yaml(config_path)
    options = {action.dest: action for action in parser._actions if action.dest not in ("help", "config")}
    for key in values:
        if key not in options:
            nearest = difflib.get_close_matches(str(key), options, n=1)
            hint = f"; did you mean '{nearest[0]}'?" if nearest else ""
            raise UserError(f"{config_path}: unknown key '{key}'{hint}")
        values[key] = _as_given_on_command_line(options[key], values[key], f"{config_path}: '{key}'")
        options[key].required = False  # given by the file
    for group in parser._mutually_exclusive_groups:
        given = [action for action in group._group_actions if action.dest in values]
        if len(given) > 1:
            raise UserError(f"{config_path}: {' and '.join(a.dest for a in given)} exclude each other: keep one")
        if given:
            group.required = False  # one of them is given by the file
    # An option that accumulates (action="extend") would add the command line's values to the file's: the
    # command line must replace them, so the file's list is filled in only when the option was not given.
    accumulating = {key for key in values if isinstance(options[key], (argparse._ExtendAction, argparse._AppendAction))}
    parser.set_defaults(**{key: value for key, value in values.items() if key not in accumulating})
    args = parser.parse_args(argv)
    for key in accumulating:
        if getattr(args, key) is None:
            setattr(args, key, values[key])
    return args


def _as_given_on_command_line(action: argparse.Action, value, where: str):
    """Convert and check a file value as argparse would the same text on the command line."""
    if action.nargs == 0:  # a flag
        if not isinstance(value, bool):
            raise UserError(f"{where} must be true or false, got {value!r}")
        return value
    items = value if isinstance(value, list) else [value]
    if isinstance(value, list) and action.nargs in (None, "?"):
        raise UserError(f"{where} takes one value, got a list")
    convert = action.type or str
    try:
        converted = [convert(str(item)) for item in items]
    except (TypeError, ValueError, argparse.ArgumentTypeError):
        raise UserError(f"{where}: {value!r} is not a valid value") from None
    if action.choices is not None and any(item not in action.choices for item in converted):
        raise UserError(f"{where} must be one of {', '.join(map(str, action.choices))}, got {value!r}")
    return converted if isinstance(value, list) or action.nargs in ("+", "*") else converted[0]
