"""Line-based data files (class names, prompt templates)."""
from pathlib import Path

from utils.errors import UserError


def read_text_lines(path: str | Path) -> list[str]:
    """The non-empty lines of a UTF-8 text file, stripped, without '#' comment lines."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"cannot read {path}: {error}") from None
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
