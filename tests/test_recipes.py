"""Every experiment YAML in configs/ loads as a training configuration (a typo there would be one error line for
the user who runs it), the reference recipe holds the reference run's settings, the small-data recipe only keys that
layer on any run, and the recommended COCO recipe is the reference plus it."""
from pathlib import Path

import pytest

import train
from model import model_config_by_name
from utils.config import as_dict, merge, read_yaml

CONFIGS = sorted((Path(__file__).parents[1] / "configs").rglob("*.yaml"))
REFERENCE = Path(__file__).parents[1] / "configs" / "recipes" / "coco-rn50-reference.yaml"


@pytest.mark.parametrize("path", CONFIGS, ids=lambda path: path.name)
def test_every_config_loads(path):
    config = train.load_run_config(train.parse_args(["--config", str(path)]))
    model_config_by_name(config.model.name or "RN50", config.model.overrides)


def test_the_reference_recipe_is_the_reference_run():
    config = train.load_run_config(train.parse_args(["--config", str(REFERENCE)]))
    assert (config.train.epochs, config.train.batch_size) == (35, 64)  # x 4 GPUs: global batch 256
    assert (config.optimizer.lr, config.optimizer.eps, config.optimizer.weight_decay) == (5e-4, 1e-8, 0.1)
    assert config.schedule.warmup_fraction == 0.2
    model = model_config_by_name(config.model.name, config.model.overrides)
    assert (model.vision_layers, model.text_layers, model.text_width) == ([3, 4, 6, 3], 6, 512)
    assert model.image_mean == [0.4225, 0.4012, 0.3659] and model.image_std == [0.2681, 0.2635, 0.2763]



RECIPES = Path(__file__).parents[1] / "configs" / "recipes"
# how each image and its captions are drawn: augmentation, and caption sampling
SAMPLING_KEYS = {"train_crop", "random_crop_min_area", "random_crop_max_aspect", "horizontal_flip", "sided_captions",
                 "color_jitter", "captions_per_image"}


def test_the_small_data_recipe_holds_only_optimisation_loss_and_sampling_keys():
    recipe = read_yaml(RECIPES / "small_data.yaml")
    assert set(recipe) <= {"optimizer", "schedule", "loss", "data"}
    assert set(recipe.get("data", {})) <= SAMPLING_KEYS


def test_the_small_data_recipe_layers_on_any_run_and_the_recommended_coco_recipe_is_reference_plus_it():
    quickstart = Path(__file__).parents[1] / "configs" / "quickstart.yaml"
    plain = as_dict(train.load_run_config(train.parse_args(["--config", str(quickstart)])))
    layered = as_dict(train.load_run_config(train.parse_args(
        ["--config", str(quickstart), "--config", str(RECIPES / "small_data.yaml"), "train.epochs=3"])))
    recipe = read_yaml(RECIPES / "small_data.yaml")
    assert layered == merge(merge(plain, recipe), {"train": {"epochs": 3}})
    reference = as_dict(train.load_run_config(train.parse_args(["--config", str(REFERENCE)])))
    recommended = as_dict(train.load_run_config(train.parse_args(
        ["--config", str(RECIPES / "coco-rn50-recommended.yaml")])))
    assert recommended == merge(merge(reference, recipe), {"output_dir": "runs/coco-rn50-recommended"})
