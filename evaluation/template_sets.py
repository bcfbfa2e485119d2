"""Prompt templates: the named sets in evaluation/templates/, a user file, or a single template."""
from pathlib import Path

from utils.errors import UserError
from utils.text_files import read_text_lines

TEMPLATES_DIR = Path(__file__).parent / "templates"


def template_set_names() -> list[str]:
    return sorted(path.stem for path in TEMPLATES_DIR.glob("*.txt"))


def load_templates(spec: str) -> tuple[str, list[str]]:
    """Return (name, templates) for `spec`: a set name (e.g. "imagenet"), a file with one template per line,
    or one template such as "a photo of a {}." ("{}", or CLIP_benchmark's "{c}", stands for the class name)."""
    if (TEMPLATES_DIR / f"{spec}.txt").is_file():
        name, templates = spec, read_text_lines(TEMPLATES_DIR / f"{spec}.txt")
    elif Path(spec).is_file():
        name, templates = Path(spec).name, read_text_lines(spec)
    elif "{}" in spec:
        name, templates = spec, [spec]
    else:
        raise UserError(f"templates {spec!r}: not a template set ({', '.join(template_set_names())}), "
                        f"not a file, and not a template with {{}} for the class name")
    if not templates:
        raise UserError(f"templates {spec!r}: no templates found")
    # CLIP_benchmark's template files (zeroshot_classification_templates.txt) mark the class name with {c}.
    templates = [template.replace("{c}", "{}") for template in templates]
    missing = [template for template in templates if "{}" not in template]
    if missing:
        raise UserError(f"templates {spec!r}: {missing[0]!r} has no {{}} (or {{c}}) where the class name goes")
    return name, templates


def fill_template(template: str, class_name: str) -> str:
    # replace, not str.format: a template may hold other braces
    return template.replace("{}", class_name)
