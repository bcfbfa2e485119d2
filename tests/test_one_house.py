"""Every script parses, builds and calls: at most 80 lines, no script importing another, one config path
(--config layered, key=value overrides, nearest-key errors), old flag spellings kept for a release with a note."""
import ast
import json
from pathlib import Path

import zeroshot_eval
from zeroshot_fixtures import colour, write_image

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = sorted(REPO.glob("*.py"))
SCRIPT_NAMES = {path.stem for path in SCRIPTS}


def test_every_script_is_at_most_80_lines_and_imports_no_other_script():
    assert len(SCRIPTS) >= 9
    for path in SCRIPTS:
        assert len(path.read_text().splitlines()) <= 80, f"{path.name} is over 80 lines"
        imported = {alias.name.split(".")[0] for node in ast.walk(ast.parse(path.read_text()))
                    if isinstance(node, ast.Import) for alias in node.names}
        imported |= {node.module.split(".")[0] for node in ast.walk(ast.parse(path.read_text()))
                     if isinstance(node, ast.ImportFrom) and node.module}
        assert not imported & SCRIPT_NAMES, f"{path.name} imports {imported & SCRIPT_NAMES}"


def pets(tmp_path) -> Path:
    for label, name in enumerate(["cat", "dog"]):
        write_image(tmp_path / "pets" / name / "0.png", colour(label))
    return tmp_path / "pets"


def test_config_files_layer_on_an_evaluation_script(tmp_path):
    data = tmp_path / "data.yaml"
    data.write_text(f"checkpoint_path: tiny\ndataset_type: folder\ndata_dir: {pets(tmp_path)}\nnum_workers: 0\n"
                    f"output_dir: {tmp_path / 'first'}\nprecision: fp32\n")
    later = tmp_path / "later.yaml"
    later.write_text(f"output_dir: {tmp_path / 'second'}\ntemplates: ['a photo of a {{}}.']\n")
    assert zeroshot_eval.main(["--config", str(data), "--config", str(later), "batch_size=1"]) == 0
    assert json.loads((tmp_path / "second" / "pets.json").read_text())["num_images"] == 2  # the later file wins
    assert not (tmp_path / "first").exists()


def test_an_unknown_override_key_names_the_nearest(capsys):
    assert zeroshot_eval.main(["--checkpoint_path", "tiny", "batch_sise=4"]) == 2
    assert capsys.readouterr().err.strip() == \
        "error: command line: unknown key 'batch_sise'; did you mean 'batch_size'?"


def test_a_deprecated_flag_spelling_works_and_prints_a_note(tmp_path, capsys):
    import retrieval_eval
    settings = retrieval_eval.PARSER.settings(["--checkpoint_path", "tiny", "--annotation_file", "a.json",
                                               "--image_dir", str(tmp_path)])
    assert settings.img_dir == str(tmp_path)
    note = capsys.readouterr().err.strip()
    assert note == "note: --image_dir is deprecated, use --img_dir (the old spelling goes in the next release)"
    import zero_shot_demo
    assert zero_shot_demo.PARSER.settings(["--checkpoint_path", "tiny", "--img_dir", str(tmp_path),
                                           "--class_file", "names.txt"]).classnames == "names.txt"
    assert "--class_file is deprecated, use --classnames" in capsys.readouterr().err
