"""Every evaluation script takes --config (a YAML file of its options; the command line wins), and a bad file is
one error line with exit code 2."""
import json
from pathlib import Path

import pytest

import eval_suite
import extract_features
import linear_probe
import retrieval_eval
import similarity_matrix
import zero_shot_demo
import zeroshot_eval
from zeroshot_fixtures import colour, write_image

SCRIPTS = [zeroshot_eval, zero_shot_demo, linear_probe, retrieval_eval, eval_suite, extract_features,
           similarity_matrix]
TEST_IMAGES = Path(__file__).parents[1] / "test_images"


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1 and "Traceback" not in err
    return err


@pytest.mark.parametrize("content, message", [
    ("batch_sise: 4\n", "did you mean 'batch_size'"),  # a typo names the nearest option
    ("precision: fp8\n", "'precision' must be one of"),  # a wrong value names the choices
], ids=["typo", "wrong value"])
@pytest.mark.parametrize("script", SCRIPTS, ids=lambda script: script.__name__)
def test_a_bad_config_is_one_line(script, content, message, tmp_path, capsys):
    config = tmp_path / "eval.yaml"
    config.write_text(content)
    assert script.main(["--config", str(config)]) == 2
    assert message in one_error_line(capsys)


def test_zeroshot_eval_reads_its_options_from_the_config(tmp_path, capsys):
    for label, name in enumerate(["cat", "dog"]):
        write_image(tmp_path / "pets" / name / "0.png", colour(label))
    config = tmp_path / "eval.yaml"
    config.write_text(f"checkpoint_path: tiny\ndataset_type: folder\ndata_dir: {tmp_path / 'pets'}\n"
                      f"templates: ['a photo of a {{}}.']\nprecision: fp32\nnum_workers: 0\n"
                      f"output_dir: {tmp_path / 'from_file'}\n")
    assert zeroshot_eval.main(["--config", str(config), "--output_dir", str(tmp_path / "out")]) == 0
    assert json.loads((tmp_path / "out" / "pets.json").read_text())["num_images"] == 2  # the flag wins
    assert not (tmp_path / "from_file").exists()


def test_zero_shot_demo_takes_its_image_folder_from_the_config(tmp_path, capsys):
    config = tmp_path / "demo.yaml"
    config.write_text(f"checkpoint_path: tiny\nimg_dir: {TEST_IMAGES}\nclasses: cat,dog\nprecision: fp32\n")
    assert zero_shot_demo.main(["--config", str(config)]) == 0
    assert "cat.jpg" in capsys.readouterr().out
    config.write_text(f"checkpoint_path: tiny\nimg_dir: {TEST_IMAGES}\nimg_path: {TEST_IMAGES / 'cat.jpg'}\n")
    assert zero_shot_demo.main(["--config", str(config)]) == 2
    assert "img_path and img_dir exclude each other" in one_error_line(capsys)


def test_a_list_option_on_the_command_line_replaces_the_files(tmp_path):
    config = tmp_path / "suite.yaml"
    config.write_text("checkpoints: [tiny]\ndata_dir: [data/PACS, data/VLCS]\n")
    assert eval_suite.PARSER.settings(["--config", str(config)]).data_dir == ["data/PACS", "data/VLCS"]
    assert eval_suite.PARSER.settings(["--config", str(config), "--data_dir", "data/OfficeHome", "--data_dir",
                                  "data/DomainNet"]).data_dir == ["data/OfficeHome", "data/DomainNet"]
