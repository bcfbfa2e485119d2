"""Settings and fixtures every test shares: the training tests' dataset and their uninterrupted reference run are
built once per session."""
import pytest

from training_runs import coco_dataset, uninterrupted_run  # noqa: F401  (shared by every module that uses them)


@pytest.fixture(scope="session", autouse=True)
def private_precision_cache(tmp_path_factory):
    """Precision measurements go to a folder of the test session's (inherited by the training runs it starts),
    never to the user's cache."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CLIP_TOOLKIT_CACHE", str(tmp_path_factory.mktemp("precision-cache")))
        yield
