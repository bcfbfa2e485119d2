"""Fine-tuning through `python finetune.py`: it resumes exactly like training (SIGKILL mid-run → bit-identical
final weights), a frozen backbone stays bit-identical, the zero-shot head starts as the zero-shot classifier (and
the starting report is the zero-shot accuracy), the test images are held out and scored (CIFAR: its own splits;
under torchrun each rank scores its share), bad input is one line."""
import dataclasses
import json
import os
import sys

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch.utils.data import DataLoader, Subset

from dataloader.eval.eval_datasets import collate_readable, read_eval_set
from dataloader.eval.splits import stratified_split
from dataloader.train.synthetic import SyntheticDataConfig, class_names, write_eval_set
from evaluation.metrics import summarise
from evaluation.zeroshot import classify, zero_shot_head
from gloo_ranks import free_port
from model import build_model, load_model, model_config_by_name
from trainer.checkpointing import list_checkpoints
from trainer.objectives import same_class_cosine_loss
from training_runs import REPO, assert_bit_identical, final_weights, run, start, wait_for
from utils.checkpoint import load_checkpoint, save_checkpoint_atomic
from utils.seeding import seed_everything
from zeroshot_fixtures import write_cifar

PER_CLASS, BATCH, EPOCHS = 5, 8, 2  # 12 classes: 48 training images (1 per class held out), 6 steps per epoch
TOTAL_STEPS = EPOCHS * (12 * (PER_CLASS - 1) // BATCH)


@pytest.fixture(scope="module")
def class_folders(tmp_path_factory):
    config = SyntheticDataConfig(root=str(tmp_path_factory.mktemp("shapes")), eval_images_per_class=PER_CLASS)
    write_eval_set(config)
    return config.eval_dir


@pytest.fixture(scope="module")
def clip_checkpoint(tmp_path_factory):
    """A small CLIP in our checkpoint format, as train.py writes it."""
    seed_everything(3)
    model = build_model(model_config_by_name("quickstart"))
    path = tmp_path_factory.mktemp("clip") / "clip.pt"
    save_checkpoint_atomic({"model": model.state_dict(), "model_config": model.config.__dict__}, path)
    return path


def finetune_command(checkpoint, data_dir, run_dir, *extra):
    return [sys.executable, str(REPO / "finetune.py"), "--checkpoint_path", str(checkpoint), "--data_dir",
            str(data_dir), "--templates", "a photo of a {}.", f"output_dir={run_dir}", f"train.epochs={EPOCHS}",
            f"train.batch_size={BATCH}", "train.precision=fp32", "train.num_threads=1", "train.log_every_steps=1",
            "checkpoint.every_steps=2", "data.num_workers=0", "data.test_fraction=0.2", "optimizer.lr=1e-3", *extra]


@pytest.fixture(scope="module")
def uninterrupted_run(clip_checkpoint, class_folders, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("finetune")
    result = run(finetune_command(clip_checkpoint, class_folders, run_dir))
    assert result.returncode == 0, result.stderr
    return run_dir


def test_run_trains_every_step_and_reports_held_out_accuracy(uninterrupted_run):
    summary = json.loads((uninterrupted_run / "summary.json").read_text())
    assert summary["steps"] == TOTAL_STEPS
    report = json.loads((uninterrupted_run / "eval_finetune.json").read_text())
    assert report["num_images"] == 12  # one held-out image per class, none of them trained on
    assert report["num_train_images"] == 12 * (PER_CLASS - 1)
    assert sum(score["images"] for score in report["per_class"]) == 12
    payload = load_checkpoint(list_checkpoints(uninterrupted_run)[-1])
    assert payload["model_config"]["class_names"] == sorted(class_names())  # folder order
    assert payload["model"]["head.weight"].shape == (12, payload["model_config"]["backbone"]["embed_dim"])


def test_starting_report_is_the_zero_shot_accuracy_of_the_held_out_images(clip_checkpoint, class_folders,
                                                                          uninterrupted_run):
    clip_model, preprocess = load_model(clip_checkpoint)
    images = read_eval_set("folder", class_folders, preprocess)
    _, held_out = stratified_split(torch.tensor(images.dataset.labels), 0.2, seed=0)
    head = zero_shot_head(clip_model, images.class_names, ["a photo of a {}."], "cpu")
    loader = DataLoader(Subset(images.dataset, held_out.tolist()), batch_size=5, collate_fn=collate_readable)
    expected = summarise(classify(clip_model, loader, head, "cpu", progress=False)[0], images.class_names)
    start = json.loads((uninterrupted_run / "eval_zeroshot_start.json").read_text())
    assert start["per_class"] == [dataclasses.asdict(score) for score in expected.per_class]


def test_resume_after_sigkill_is_bit_identical(clip_checkpoint, class_folders, uninterrupted_run, tmp_path):
    process = start(finetune_command(clip_checkpoint, class_folders, tmp_path))
    wait_for(lambda: list_checkpoints(tmp_path), process)
    process.kill()
    process.wait()
    assert 0 < load_checkpoint(list_checkpoints(tmp_path)[-1])["step"] < TOTAL_STEPS
    resumed = run(finetune_command(clip_checkpoint, class_folders, tmp_path, "--resume", "auto"))
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from" in resumed.stdout
    assert_bit_identical(final_weights(tmp_path), final_weights(uninterrupted_run))
    resumed_report, report = (json.loads((folder / "eval_finetune.json").read_text())
                              for folder in (tmp_path, uninterrupted_run))
    assert resumed_report["per_class"] == report["per_class"] and resumed_report["top1"] == report["top1"]


def test_frozen_backbone_keeps_the_tower_and_trains_the_head(clip_checkpoint, class_folders, tmp_path):
    result = run(finetune_command(clip_checkpoint, class_folders, tmp_path, "--freeze_backbone", "train.epochs=1"))
    assert result.returncode == 0, result.stderr
    start_weights = load_checkpoint(clip_checkpoint)["model"]
    tuned = final_weights(tmp_path)
    tower = [name for name in tuned if name.startswith("visual.")]
    assert tower and all(torch.equal(tuned[name], start_weights[name]) for name in tower)  # BN statistics too
    initial_head = load_checkpoint(list_checkpoints(tmp_path)[0])["model"]["head.weight"]
    assert not torch.equal(tuned["head.weight"], initial_head)


def test_zeroshot_head_starts_as_the_zero_shot_classifier(clip_checkpoint):
    import finetune
    from jobs import finetuning
    config = finetune.load_config(finetune.parse_args(["--checkpoint_path", str(clip_checkpoint), "--data_dir",
                                                       "unused", "--templates", "a photo of a {}."]))
    clip_model, _ = load_model(clip_checkpoint)
    names = ["red circle", "blue square", "green triangle"]
    splits = finetuning.Splits("shapes", names, "imagenet", train=None, test=None)
    classifier = finetuning.build_classifier(clip_model, splits, config, "cpu", "fp32").eval()
    images = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        expected = clip_model.logit_scale.exp() * F.normalize(clip_model.encode_image(images), dim=-1) @ \
            zero_shot_head(clip_model, names, ["a photo of a {}."], "cpu")
        torch.testing.assert_close(classifier(images), expected)


def test_bad_input_is_one_line(clip_checkpoint, class_folders, uninterrupted_run, tmp_path):
    missing = run([sys.executable, str(REPO / "finetune.py"), "--data_dir", str(class_folders)])
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1 and "checkpoint_path is required" in \
        missing.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    no_classes = run(finetune_command(clip_checkpoint, empty, tmp_path / "run"))
    assert no_classes.returncode == 2 and no_classes.stderr.strip() == f"error: {empty} has no class folders " \
        "(expected one sub-folder of images per class)"
    classifier = list_checkpoints(uninterrupted_run)[-1]
    as_clip = run([sys.executable, str(REPO / "zeroshot_eval.py"), "--checkpoint_path", str(classifier),
                   "--dataset_type", "folder", "--data_dir", str(class_folders)])
    assert as_clip.returncode == 2 and "a fine-tuned classifier (finetune.py), not a CLIP model" in as_clip.stderr


def test_cifar_trains_on_its_train_batches_and_tests_on_its_test_batch(clip_checkpoint, tmp_path):
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    generator = np.random.default_rng(0)
    for split, count in (("train", 40), ("test", 20)):
        labels = [index % 10 for index in range(count)]
        images = generator.integers(0, 256, (count, 32, 32, 3), dtype=np.uint8)
        write_cifar(tmp_path / "cifar", "cifar10", images, labels, names, split=split)
    result = run(finetune_command(clip_checkpoint, tmp_path / "cifar", tmp_path / "run", "--dataset_type", "cifar",
                                  "--dataset", "cifar10", "train.epochs=1"))
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["steps"] == 40 // BATCH
    report = json.loads((tmp_path / "run" / "CIFAR10_finetune.json").read_text())
    assert report["num_images"] == 20 and report["num_train_images"] == 40
    assert [score["name"] for score in report["per_class"]] == names


def test_cosine_objective_draws_each_class_together_and_leaves_the_head(clip_checkpoint, class_folders, tmp_path):
    result = run(finetune_command(clip_checkpoint, class_folders, tmp_path, "--objective", "cosine"))
    assert result.returncode == 0, result.stderr
    tuned, start_weights = final_weights(tmp_path), load_checkpoint(list_checkpoints(tmp_path)[0])["model"]
    assert torch.equal(tuned["head.weight"], start_weights["head.weight"])  # the zero-shot head tests, untrained
    assert json.loads((tmp_path / "eval_finetune.json").read_text())["num_images"] == 12

    clip_model, preprocess = load_model(clip_checkpoint)
    images = read_eval_set("folder", class_folders, preprocess)
    pixels = torch.stack([images.dataset[index][0] for index in range(len(images.dataset))])
    labels = torch.tensor(images.dataset.labels)
    with torch.no_grad():
        before = same_class_cosine_loss(clip_model.encode_image(pixels), labels, margin=0.0)
        clip_model.visual.load_state_dict({name[len("visual."):]: value for name, value in tuned.items()
                                           if name.startswith("visual.")})
        after = same_class_cosine_loss(clip_model.encode_image(pixels), labels, margin=0.0)
    assert after < before  # over all the images: each class tighter, or the classes further apart


def test_same_class_cosine_loss_by_hand():
    aligned = torch.tensor([[2.0, 0.0], [1.0, 0.0], [0.0, 3.0]])
    assert same_class_cosine_loss(aligned, torch.tensor([0, 0, 1]), margin=0.0) == 0.0  # together, orthogonal
    # one same-class pair at 90 degrees: 1 - 0; no cross-class pair
    assert same_class_cosine_loss(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 0]), 0.0) == 1.0
    # two classes at 60 degrees: pairs (0, 1) and (1, 0) each cos 0.5, over the margin 0.2 by 0.3
    sixty = torch.tensor([[1.0, 0.0], [0.5, 3 ** 0.5 / 2]])
    assert same_class_cosine_loss(sixty, torch.tensor([0, 1]), 0.2).item() == pytest.approx(0.3)


def finetune_on_rank(rank, world_size, port, argv, out_dir):
    """finetune.py's main as torchrun's process `rank` would run it, recording how many test images it scored."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    import finetune
    from jobs import finetuning
    scored, real_classify = [], finetuning.classify

    def counting_classify(model, batches, *args, **kwargs):
        batches = list(batches)
        scored.append(sum(len(batch.labels) for batch in batches))
        return real_classify(model, batches, *args, **kwargs)
    finetuning.classify = counting_classify
    exit_code = finetune.main(argv)
    (out_dir / f"rank{rank}.json").write_text(json.dumps({"exit_code": exit_code, "scored": scored}))


def test_two_ranks_share_the_test_scoring_and_report_what_one_process_does(clip_checkpoint, class_folders,
                                                                             uninterrupted_run, tmp_path):
    command = finetune_command(clip_checkpoint, class_folders, tmp_path / "run", "train.epochs=1")
    mp.spawn(finetune_on_rank, args=(2, free_port(), command[2:], tmp_path), nprocs=2, join=True)
    ranks = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    # the zero-shot baseline and the final test: 6 of the 12 held-out images each, no rank waiting for another
    assert ranks == [{"exit_code": 0, "scored": [6, 6]}] * 2
    start, one_process = (json.loads((folder / "eval_zeroshot_start.json").read_text())
                          for folder in (tmp_path / "run", uninterrupted_run))
    assert start["per_class"] == one_process["per_class"] and start["top1"] == one_process["top1"]
    assert json.loads((tmp_path / "run" / "eval_finetune.json").read_text())["num_images"] == 12
