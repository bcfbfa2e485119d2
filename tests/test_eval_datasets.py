"""Every evaluation layout on disk gives each image the label of the right class name."""
import numpy as np
import pytest
import torch
from torchvision import datasets as tv_datasets
from torchvision.transforms import ToTensor

from dataloader.eval.class_names import imagenet_class_names
from dataloader.eval.eval_datasets import UnreadableImage, cifar_variant, collate_readable, read_eval_set
from utils.errors import UserError
from zeroshot_fixtures import colour, write_cifar, write_image

WNIDS = list(imagenet_class_names())
NAMES_IN_LABEL_ORDER = list(imagenet_class_names().values())


def cifar_images(labels: list[int]) -> np.ndarray:
    """R = 2 * label, G = row, B = column: a wrong plane order or transpose shows at once."""
    rows, columns = np.meshgrid(np.arange(32), np.arange(32), indexing="ij")
    return np.stack([np.stack([np.full((32, 32), 2 * label), rows, columns], axis=-1) for label in labels]
                    ).astype(np.uint8)


def check_cifar_samples(eval_set, labels):
    for index, label in enumerate(labels):
        image, read_label = eval_set.dataset[index]
        assert read_label == label
        pixels = (image * 255).round().long()
        assert (pixels[0] == 2 * label).all()
        assert (pixels[1] == torch.arange(32)[:, None]).all() and (pixels[2] == torch.arange(32)[None, :]).all()


def test_cifar10_batches_read_like_torchvision(tmp_path, monkeypatch):
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    labels = [3, 0, 9, 3, 5]
    write_cifar(tmp_path, "cifar10", cifar_images(labels), labels, names)
    eval_set = read_eval_set("cifar", tmp_path, ToTensor(), dataset_name="cifar10")
    assert eval_set.name == "CIFAR10" and eval_set.class_names == names and eval_set.default_templates == "cifar"
    check_cifar_samples(eval_set, labels)
    # torchvision reads the very same files the same way (its md5 check aside: these are not the real batches)
    monkeypatch.setattr(tv_datasets.CIFAR10, "_check_integrity", lambda self: True)
    monkeypatch.setattr(tv_datasets.cifar, "check_integrity", lambda path, md5=None: True)
    reference = tv_datasets.CIFAR10(str(tmp_path), train=False, transform=ToTensor())
    assert reference.classes == names and reference.targets == labels
    for index in range(len(labels)):
        assert torch.equal(reference[index][0], eval_set.dataset[index][0])


def test_cifar100_fine_names_with_spaces_and_folder_given_directly(tmp_path):
    names = ["apple", "aquarium_fish", "baby", "maple_tree"] + [f"class_{i}" for i in range(96)]
    labels = [1, 3, 99, 0]
    folder = write_cifar(tmp_path, "cifar100", cifar_images(labels), labels, names)
    eval_set = read_eval_set("cifar", folder, ToTensor(), dataset_name="CIFAR100")
    assert eval_set.name == "CIFAR100" and len(eval_set.class_names) == 100
    assert eval_set.class_names[:4] == ["apple", "aquarium fish", "baby", "maple tree"]
    check_cifar_samples(eval_set, labels)


def test_cifar_missing_and_download_failing_is_one_clear_error(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    from dataloader.eval import eval_datasets
    layout = eval_datasets.CIFAR_LAYOUTS["cifar10"]
    monkeypatch.setitem(eval_datasets.CIFAR_LAYOUTS, "cifar10",
                        eval_datasets.CifarLayout(**{**vars(layout), "torchvision_class": offline}))
    with pytest.raises(UserError, match=r"test_batch not found, and downloading CIFAR10 into .* failed"):
        read_eval_set("cifar", tmp_path / "nowhere", ToTensor(), dataset_name="cifar10")
    with pytest.raises(UserError, match="not a CIFAR set"):
        read_eval_set("cifar", tmp_path, ToTensor(), dataset_name="cifar1000")


def folder_label_names(eval_set, data_dir):
    """(class folder name, the class name of its label) for every image."""
    return [(path.relative_to(data_dir).parts[0], eval_set.class_names[label])
            for path, label in zip(eval_set.dataset.paths, eval_set.dataset.labels)]


def test_imagenet_wnid_folders_get_clip_names(tmp_path):
    chosen = [WNIDS[0], WNIDS[1], WNIDS[517], WNIDS[999]]
    for index, wnid in enumerate(chosen):
        write_image(tmp_path / "val" / wnid / f"ILSVRC2012_val_{index:08d}.JPEG", colour(index))
    eval_set = read_eval_set("imagenet", tmp_path / "val", ToTensor())
    assert eval_set.name == "val" and eval_set.default_templates == "imagenet"
    assert eval_set.class_names == ["tench", "goldfish", NAMES_IN_LABEL_ORDER[517], "toilet paper"]
    pairs = folder_label_names(eval_set, tmp_path / "val")
    assert len(pairs) == 4 and all(name == imagenet_class_names()[folder] for folder, name in pairs)


def test_imagenet_a_style_200_class_subset_classifies_among_its_classes(tmp_path):
    subset = WNIDS[3::5]  # 200 wnids, like ImageNet-A and ImageNet-R
    for wnid in subset:
        write_image(tmp_path / "imagenet-a" / wnid / f"{wnid}_0.jpg", (120, 40, 200), size=(4, 4))
    eval_set = read_eval_set("imagenet", tmp_path / "imagenet-a", ToTensor())
    assert len(eval_set.class_names) == 200 and len(eval_set.dataset) == 200
    for folder, name in folder_label_names(eval_set, tmp_path / "imagenet-a"):
        assert name == imagenet_class_names()[folder]


def test_imagenet_v2_numeric_folders_map_by_number_not_string_order(tmp_path):
    numbers = [0, 1, 2, 9, 10, 11, 99, 100, 101, 999]
    for number in numbers:
        write_image(tmp_path / "imagenetv2" / str(number) / "a.jpeg", colour(number % 216), size=(4, 4))
    eval_set = read_eval_set("imagenet", tmp_path / "imagenetv2", ToTensor())
    assert eval_set.class_names == [NAMES_IN_LABEL_ORDER[n] for n in numbers]
    for folder, name in folder_label_names(eval_set, tmp_path / "imagenetv2"):
        assert name == NAMES_IN_LABEL_ORDER[int(folder)]


def test_imagenet_folder_that_is_no_wnid_is_named(tmp_path):
    write_image(tmp_path / "val" / WNIDS[0] / "a.jpg", (0, 0, 0))
    write_image(tmp_path / "val" / "cats" / "a.jpg", (0, 0, 0))
    with pytest.raises(UserError, match="folder 'cats' is neither an ImageNet wnid"):
        read_eval_set("imagenet", tmp_path / "val", ToTensor())


def test_generic_folders_names_nested_images_and_non_images(tmp_path):
    root = tmp_path / "PACS" / "sketch"
    write_image(root / "guitar" / "1.png", colour(1))
    write_image(root / "guitar" / "nested" / "2.jpg", colour(1))
    write_image(root / "house_cat" / "1.PNG", colour(2))
    (root / "house_cat" / "readme.txt").write_text("not an image")
    write_image(root / "elephant" / "1.bmp", colour(0))
    (root / "empty_class").mkdir()
    eval_set = read_eval_set("folder", root, ToTensor(), dataset_name="pacs-sketch")
    assert eval_set.name == "pacs-sketch"
    assert eval_set.class_names == ["elephant", "empty class", "guitar", "house cat"]
    assert sorted(folder_label_names(eval_set, root)) == [
        ("elephant", "elephant"), ("guitar", "guitar"), ("guitar", "guitar"), ("house_cat", "house cat")]


def test_class_names_file_replaces_names_and_its_count_must_match(tmp_path):
    for index, folder in enumerate(["c0", "c1", "c2"]):
        write_image(tmp_path / "data" / folder / "x.png", colour(index))
    (tmp_path / "names.txt").write_text("# names in sorted folder order\nzero\none\ntwo\n")
    eval_set = read_eval_set("folder", tmp_path / "data", ToTensor(), class_names_file=tmp_path / "names.txt")
    assert eval_set.class_names == ["zero", "one", "two"]
    (tmp_path / "short.txt").write_text("zero\none\n")
    with pytest.raises(UserError, match=r"short.txt has 2 class names but .*data has 3 classes"):
        read_eval_set("folder", tmp_path / "data", ToTensor(), class_names_file=tmp_path / "short.txt")


@pytest.mark.parametrize("dataset_type", ["imagenet", "folder"])
def test_missing_or_empty_data_dir_is_one_clear_error(tmp_path, dataset_type):
    with pytest.raises(UserError, match="does not exist"):
        read_eval_set(dataset_type, tmp_path / "missing", ToTensor())
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="has no class folders"):
        read_eval_set(dataset_type, tmp_path / "empty", ToTensor())
    (tmp_path / "no_images" / WNIDS[0]).mkdir(parents=True)
    (tmp_path / "no_images" / WNIDS[0] / "notes.txt").write_text("x")
    with pytest.raises(UserError, match="no images"):
        read_eval_set(dataset_type, tmp_path / "no_images", ToTensor())
    with pytest.raises(UserError, match="not one of: cifar, imagenet, folder"):
        read_eval_set("coco", tmp_path, ToTensor())


def test_corrupt_image_is_set_aside_by_the_collate(tmp_path):
    write_image(tmp_path / "data" / "a" / "good.png", colour(3))
    (tmp_path / "data" / "a" / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    eval_set = read_eval_set("folder", tmp_path / "data", ToTensor())
    batch = collate_readable([eval_set.dataset[i] for i in range(len(eval_set.dataset))])
    assert batch.images.shape == (1, 3, 20, 24) and batch.labels.tolist() == [0]
    assert len(batch.unreadable) == 1 and isinstance(batch.unreadable[0], UnreadableImage)
    assert batch.unreadable[0].path.endswith("bad.jpg")


def test_the_reference_cifar100_command_reads_cifar100_without_dataset(tmp_path):
    """`zeroshot_eval.py --dataset_type cifar --data_dir data/CIFAR100`: the folder holds cifar-100-python."""
    names = [f"class_{i}" for i in range(100)]
    labels = [7, 99]
    write_cifar(tmp_path / "CIFAR100", "cifar100", cifar_images(labels), labels, names)
    eval_set = read_eval_set("cifar", tmp_path / "CIFAR100", ToTensor())
    assert eval_set.name == "CIFAR100" and len(eval_set.class_names) == 100
    check_cifar_samples(eval_set, labels)


def test_cifar_variant_from_contents_or_name_and_ambiguity_is_an_error(tmp_path):
    labels = [1, 2]
    write_cifar(tmp_path / "data" / "cifar", "cifar10", cifar_images(labels), labels, [f"c{i}" for i in range(10)])
    assert cifar_variant(tmp_path / "data" / "cifar") == "cifar10"
    assert cifar_variant(tmp_path / "data" / "cifar" / "cifar-10-batches-py") == "cifar10"
    assert cifar_variant(tmp_path / "downloads" / "CIFAR-100") == "cifar100"
    assert cifar_variant(tmp_path / "downloads" / "cifar10") == "cifar10"
    with pytest.raises(UserError, match=r"data/plain holds neither .* pass --dataset cifar10 or --dataset cifar100"):
        cifar_variant(tmp_path / "data" / "plain")
    write_cifar(tmp_path / "data" / "cifar", "cifar100", cifar_images(labels), labels, [f"c{i}" for i in range(100)])
    with pytest.raises(UserError, match="holds both cifar-10-batches-py and cifar-100-python"):
        read_eval_set("cifar", tmp_path / "data" / "cifar", ToTensor())
    assert read_eval_set("cifar", tmp_path / "data" / "cifar", ToTensor(), dataset_name="cifar100").name == "CIFAR100"
