"""What every entry script does around its work: user errors become one line on stderr and exit code 2."""
import sys

from utils.errors import UserError


def run_command(command, args) -> int:
    try:
        command(args)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0
