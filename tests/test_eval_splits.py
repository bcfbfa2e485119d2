"""CIFAR's training split (five batch files for CIFAR-10, one for CIFAR-100) beside its test split; folder sets
are one split each."""
import numpy as np
import pytest

from dataloader.eval.eval_datasets import read_eval_set
from dataloader.eval.splits import SplitPlan, plan_splits
from utils.errors import UserError
from zeroshot_fixtures import plain_transform, write_cifar


@pytest.mark.parametrize("variant", ["cifar10", "cifar100"])
def test_cifar_train_and_test_splits_hold_their_own_images(tmp_path, variant):
    names = [f"class {i}" for i in range(3)]
    for split, count, offset in (("train", 12, 0), ("test", 4, 100)):
        labels = [i % 3 for i in range(count)]
        images = np.stack([np.full((32, 32, 3), offset + i, dtype=np.uint8) for i in range(count)])
        write_cifar(tmp_path, variant, images, labels, names, split=split)
    train = read_eval_set("cifar", tmp_path, plain_transform(), dataset_name=variant, split="train")
    test = read_eval_set("cifar", tmp_path, plain_transform(), dataset_name=variant)
    assert len(train.dataset) == 12 and len(test.dataset) == 4
    assert [train.dataset[i][0][0, 0, 0].item() * 255 for i in range(12)] == pytest.approx(list(range(12)))
    assert [train.dataset[i][1] for i in range(12)] == [i % 3 for i in range(12)]
    assert test.dataset[0][0][0, 0, 0].item() * 255 == pytest.approx(100)


def test_a_folder_set_has_no_splits(tmp_path):
    with pytest.raises(UserError, match="has no split 'train': its folder is one split"):
        read_eval_set("folder", tmp_path, plain_transform(), split="train")
    with pytest.raises(UserError, match="has no split 'val': expected one of train, test"):
        read_eval_set("cifar", tmp_path, plain_transform(), split="val")


def test_test_images_come_from_the_test_folder_else_the_sets_test_split_else_a_held_out_share(tmp_path):
    assert plan_splits("folder", tmp_path / "train", tmp_path / "val") == SplitPlan(None, tmp_path / "val", None,
                                                                                     False)
    assert plan_splits("cifar", tmp_path / "cifar", None) == SplitPlan("train", tmp_path / "cifar", "test", False)
    assert plan_splits("cifar", tmp_path / "cifar", tmp_path / "mine") == SplitPlan("train", tmp_path / "mine",
                                                                                    None, False)
    assert plan_splits("folder", tmp_path / "photo", None) == SplitPlan(None, tmp_path / "photo", None, True)
