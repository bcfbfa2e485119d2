"""Typed config: every mistake is one line naming the file, the key and the nearest valid key."""
import dataclasses

import pytest

from utils.config import build, load_layered, merge, parse_override, read_yaml
from utils.errors import UserError


@dataclasses.dataclass
class Optimizer:
    lr: float = 5e-4
    betas: list[float] = dataclasses.field(default_factory=lambda: [0.9, 0.98])
    name: str = "adamw"


@dataclasses.dataclass
class Root:
    optimizer: Optimizer = dataclasses.field(default_factory=Optimizer)
    epochs: int = 1
    precision: str = "auto"
    resume: str | None = None


def test_yaml_1_2_floats_without_a_dot_are_numbers(tmp_path):
    (tmp_path / "c.yaml").write_text("optimizer:\n  lr: 5e-4\n")
    config = build(Root, read_yaml(tmp_path / "c.yaml"), "c.yaml")
    assert config.optimizer.lr == 0.0005


def test_unknown_key_names_file_and_nearest_key(tmp_path):
    (tmp_path / "c.yaml").write_text("optimizer:\n  lrr: 0.1\n")
    with pytest.raises(UserError) as error:
        build(Root, read_yaml(tmp_path / "c.yaml"), str(tmp_path / "c.yaml"))
    assert str(error.value) == f"{tmp_path / 'c.yaml'}: unknown key 'optimizer.lrr'; did you mean 'optimizer.lr'?"


def test_wrong_type_names_key_and_expected_type():
    with pytest.raises(UserError, match=r"^cli: 'epochs' must be int, got 'ten' \(str\)$"):
        build(Root, {"epochs": "ten"}, "cli")
    with pytest.raises(UserError, match=r"'optimizer.betas\[1\]' must be float"):
        build(Root, {"optimizer": {"betas": [0.9, "x"]}}, "cli")
    with pytest.raises(UserError, match="'epochs' must be int, got True"):
        build(Root, {"epochs": True}, "cli")


def test_missing_file_is_one_line():
    with pytest.raises(UserError, match="^config file not found: nowhere.yaml$"):
        read_yaml("nowhere.yaml")


def test_invalid_yaml_is_one_line(tmp_path):
    (tmp_path / "c.yaml").write_text("optimizer: [unclosed\n")
    with pytest.raises(UserError) as error:
        read_yaml(tmp_path / "c.yaml")
    assert "not valid YAML" in str(error.value) and "\n" not in str(error.value)


def test_dotted_override_merges_and_types():
    data = merge({"optimizer": {"lr": 0.1, "name": "adamw"}}, parse_override("optimizer.lr=1e-4"))
    config = build(Root, merge(data, parse_override("resume=auto")), "cli")
    assert config.optimizer.lr == 1e-4 and config.optimizer.name == "adamw" and config.resume == "auto"


@pytest.mark.parametrize("text", ["optimizer.lr", "=3", "a..b=1"])
def test_malformed_override_is_rejected(text):
    with pytest.raises(UserError, match="expected KEY=VALUE"):
        parse_override(text)


def test_experiment_files_layer_in_order_and_include_relative_files(tmp_path):
    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "base.yaml").write_text("epochs: 3\noptimizer:\n  lr: 0.1\n  name: sgd\n")
    (tmp_path / "recipes" / "recipe.yaml").write_text("include: base.yaml\noptimizer:\n  lr: 0.2\n")
    (tmp_path / "data.yaml").write_text("precision: bf16\nepochs: 5\n")
    experiments = [str(tmp_path / "data.yaml"), str(tmp_path / "recipes" / "recipe.yaml")]
    config = load_layered(Root, {"defaults": {}}, experiments, {}, ["optimizer.name=adamw"])
    # the recipe's included base comes after data.yaml (epochs 3 wins), the recipe after its base, overrides last
    assert (config.epochs, config.precision, config.optimizer.lr, config.optimizer.name) == (3, "bf16", 0.2, "adamw")


def test_an_include_cycle_and_a_malformed_include_are_one_line(tmp_path):
    (tmp_path / "a.yaml").write_text("include: [b.yaml]\n")
    (tmp_path / "b.yaml").write_text("include: [a.yaml]\n")
    with pytest.raises(UserError, match=r"a.yaml: includes itself"):
        load_layered(Root, {}, [str(tmp_path / "a.yaml")], {}, [])
    (tmp_path / "c.yaml").write_text("include: {file: a.yaml}\n")
    with pytest.raises(UserError, match=r"c.yaml: 'include' must be a file name or a list of them"):
        load_layered(Root, {}, [str(tmp_path / "c.yaml")], {}, [])
    (tmp_path / "d.yaml").write_text("include: missing.yaml\n")
    with pytest.raises(UserError, match=r"config file not found: .*missing.yaml"):
        load_layered(Root, {}, [str(tmp_path / "d.yaml")], {}, [])
