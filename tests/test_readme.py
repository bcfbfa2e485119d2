"""README.md keeps its promises: its Python snippet runs as printed, its test command is the one CI runs, and every
link it and docs/ make to a file of the repository leads somewhere."""
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]
README = ROOT / "README.md"
LINK = re.compile(r"\]\(([^)#\s]*)(?:#([^)\s]*))?\)")


def first_python_block(markdown: str) -> str:
    match = re.search(r"^```python\n(.*?)^```", markdown, re.S | re.M)
    assert match, "README.md has no ```python block"
    return match[1]


def test_python_snippet_prints_probabilities_of_its_classes(tmp_path):
    """Run from a fresh folder holding only the bundled test images: nothing downloaded, no checkpoint needed."""
    snippet = first_python_block(README.read_text())
    (tmp_path / "test_images").symlink_to(ROOT / "test_images")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", snippet], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    printed = [line.rsplit(": ", 1) for line in result.stdout.splitlines()]
    names = [name for name, _ in printed]
    probabilities = [float(value) for _, value in printed]
    assert len(names) >= 2 and all(f'"{name}"' in snippet for name in names), result.stdout
    assert all(0 <= p <= 1 for p in probabilities) and abs(sum(probabilities) - 1) < 0.01, result.stdout


def test_readme_gives_the_commands_ci_and_the_quickstart_run():
    text = README.read_text()
    ci_command = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert ci_command == "pip install -r requirements-test.txt && python -m pytest -q"
    assert ci_command in text.splitlines()
    assert "pip install -r requirements.txt && python train.py --config configs/quickstart.yaml" in text.splitlines()


def heading_anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives headings: lower case, punctuation dropped, spaces as hyphens."""
    return {re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
            for heading in re.findall(r"^#+ (.+)$", markdown, re.M)}


def test_links_to_repository_files_and_headings_lead_somewhere():
    broken = []
    for page in [README, *sorted((ROOT / "docs").glob("*.md"))]:
        for target, anchor in LINK.findall(page.read_text()):
            if "://" in target:
                continue
            linked = page.parent / target if target else page
            if not linked.exists() or anchor and anchor not in heading_anchors(linked.read_text()):
                broken.append(f"{page.relative_to(ROOT)}: {target}#{anchor}")
    assert not broken, broken
