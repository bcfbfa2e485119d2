"""Settings and fixtures every test shares: the training tests' dataset and their uninterrupted reference run are
built once per session."""
import pytest

from dataloader.synthetic import SyntheticDataConfig, write_train_set
from training_runs import IMAGES, run, train_command


@pytest.fixture(scope="session", autouse=True)
def private_precision_cache(tmp_path_factory):
    """Precision measurements go to a folder of the test session's (inherited by the training runs it starts),
    never to the user's cache."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CLIP_TOOLKIT_CACHE", str(tmp_path_factory.mktemp("precision-cache")))
        yield


@pytest.fixture(scope="session")
def coco_dataset(tmp_path_factory):
    config = SyntheticDataConfig(root=str(tmp_path_factory.mktemp("coco")), train_images=IMAGES, image_size=32)
    write_train_set(config)
    return config


@pytest.fixture(scope="session")
def uninterrupted_run(coco_dataset, tmp_path_factory):
    """The run every interrupted one must end like; tests copy it, never change it."""
    run_dir = tmp_path_factory.mktemp("uninterrupted")
    result = run(train_command(coco_dataset, run_dir))
    assert result.returncode == 0, result.stderr
    return run_dir
