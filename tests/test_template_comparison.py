"""zeroshot_eval.py --templates A B C: every template set is scored on the same images (encoded once), each with
the accuracy it has when run alone, and ranked in a comparison file."""
import json

import zeroshot_eval
from evaluation import inference_model
from evaluation.template_sets import fill_template
from utils.tokenizer import tokenize
from zeroshot_fixtures import ColourClassModel, colour, plain_transform, without_padding, write_image

NAMES = ["apple", "boat", "cloud", "daisy"]
GOOD, MISLEADING = "a photo of a {}.", "a drawing of a {}."


def prompt_sensitive_model():
    """Prompts from the misleading template name the next class, so a head built from it is always wrong."""
    model = ColourClassModel(NAMES, [GOOD, MISLEADING, "itap of a {}."])
    for index, name in enumerate(NAMES):
        model.class_of_prompt[without_padding(tokenize(fill_template(MISLEADING, name))[0])] = (index + 1) % len(NAMES)
    return model


def run(tmp_path, monkeypatch, templates, output):
    model = prompt_sensitive_model()
    monkeypatch.setattr(inference_model, "load_model", lambda path, device: (model, plain_transform()))
    code = zeroshot_eval.main(["--checkpoint_path", "stub", "--dataset_type", "folder",
                               "--data_dir", str(tmp_path / "things"), "--device", "cpu", "--precision", "fp32",
                               "--num_workers", "0", "--output_dir", str(tmp_path / output), "--templates", *templates])
    return code, model


def test_each_template_set_is_reported_on_the_same_images(tmp_path, monkeypatch):
    for label, name in enumerate(NAMES):
        for copy in range(label + 1):
            write_image(tmp_path / "things" / name / f"{copy}.png", colour(label))
    (tmp_path / "good.txt").write_text(f"{GOOD}\nitap of a {{}}.\n")
    (tmp_path / "misleading.txt").write_text(f"{MISLEADING}\n")
    # Two photo templates outvote one drawing template: right, but with a narrower margin.
    (tmp_path / "mixed.txt").write_text(f"{GOOD}\nitap of a {{}}.\n{MISLEADING}\n")
    files = [str(tmp_path / name) for name in ("misleading.txt", "good.txt", "mixed.txt")]

    code, model = run(tmp_path, monkeypatch, files, "together")
    assert code == 0 and model.images_seen == 10  # every image encoded once for the three sets
    comparison = json.loads((tmp_path / "together" / "things_templates.json").read_text())
    assert [entry["templates"] for entry in comparison][-1] == "misleading.txt"
    assert {entry["templates"]: entry["top1"] for entry in comparison} == {
        "good.txt": 100.0, "mixed.txt": 100.0, "misleading.txt": 0.0}
    text = (tmp_path / "together" / "things_templates.txt").read_text().splitlines()
    assert text[-1].startswith("0.00") and text[-1].endswith("misleading.txt")

    for file in files:  # each set's own report equals what a run with that set alone writes
        stem = file.rsplit("/", 1)[1][:-4]
        assert run(tmp_path, monkeypatch, [file], stem)[0] == 0
        alone = json.loads((tmp_path / stem / "things.json").read_text())
        together = json.loads((tmp_path / "together" / f"things_{stem}.json").read_text())
        assert {k: v for k, v in alone.items() if k != "images_per_second"} == {
            k: v for k, v in together.items() if k != "images_per_second"}


def test_the_same_template_set_twice_is_an_error(tmp_path, monkeypatch, capsys):
    write_image(tmp_path / "things" / "apple" / "0.png", colour(0))
    assert run(tmp_path, monkeypatch, ["cifar", "cifar"], "out")[0] == 2
    assert capsys.readouterr().err.strip() == "error: --templates names a template set twice: cifar, cifar"
