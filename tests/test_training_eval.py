"""Evaluation during training: its zero-shot and retrieval numbers equal zeroshot_eval.py's and retrieval_eval.py's on
the same checkpoint, on one process and on two gloo ranks (sizes not divisible by ranks x batch); its validation loss
equals a direct computation, also with batches of unreadable images left out (one process, two gloo ranks); it
leaves the training bit-identical; a task with a missing folder fails at start-up."""
import json
from pathlib import Path

import open_clip
import pytest
import torch
import torch.multiprocessing as mp
from PIL import Image

import retrieval_eval
import train
import zeroshot_eval
from dataloader.coco import CaptionedImages, read_coco_captions
from dataloader.eval.eval_datasets import read_eval_set
from dataloader.train.synthetic import SyntheticDataConfig, write_eval_set, write_train_set
from evaluation.during_training import build_evaluator
from evaluation.eval_config import EvalConfig, LossTask, RetrievalTask, ZeroShotTask
from evaluation.retrieval import caption_image_features
from evaluation.shard import process_shard
from evaluation.validation_loss import validation_loss
from evaluation.zeroshot import zero_shot_scores
from gloo_ranks import free_port, gloo_process_group
from jobs.training import ROOT
from model import build_model, load_model, model_config_by_name
from trainer.checkpointing import list_checkpoints
from trainer.run_log import read_log
from trainer.trainer import evaluation_mode
from training_runs import assert_bit_identical, coco_dataset, final_weights, run, train_command  # noqa: F401
from utils.checkpoint import load_checkpoint, save_checkpoint_atomic
from utils.distributed import DistributedContext
from utils.errors import UserError
from utils.seeding import seed_everything
from utils.tokenizer import tokenize

TEMPLATE = "a photo of a {}."
EVAL_BATCH, LOSS_BATCH = 5, 4  # 35 class images and 13 captioned images: neither divides into 2 ranks x 5 (or 4)


@pytest.fixture(scope="module")
def eval_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval_data")
    shapes = SyntheticDataConfig(root=str(root / "shapes"), eval_images_per_class=3, seed=1)
    write_eval_set(shapes)
    (shapes.eval_dir / "red_circle" / "0000.jpg").unlink()  # 35 images
    captions = SyntheticDataConfig(root=str(root / "captions"), train_images=13, seed=2)
    write_train_set(captions)
    seed_everything(5)
    model = build_model(model_config_by_name("tiny-vit"))  # no batch norm: the scripts' inference folding is moot
    checkpoint = root / "model.pt"
    save_checkpoint_atomic({"model": model.state_dict(), "model_config": vars(model.config)}, checkpoint)
    return {"class_dir": str(shapes.eval_dir), "annotation_file": str(captions.train_annotation_file),
            "image_dir": str(captions.train_img_dir), "checkpoint": str(checkpoint)}


def eval_config(data) -> EvalConfig:
    return EvalConfig(every_steps=1, batch_size=EVAL_BATCH, tasks=[
        ZeroShotTask(kind="zeroshot", name="shapes", data_dir=data["class_dir"], templates=TEMPLATE),
        RetrievalTask(kind="retrieval", name="val", annotation_file=data["annotation_file"],
                      image_dir=data["image_dir"]),
        LossTask(kind="loss", name="val_loss", annotation_file=data["annotation_file"], image_dir=data["image_dir"])])


def score_in_training(data, rank=0, world_size=1) -> dict:
    torch.set_num_threads(1)
    model, _ = load_model(data["checkpoint"])
    model.train()
    ctx = DistributedContext(rank, rank, world_size, torch.device("cpu"))
    evaluator = build_evaluator(eval_config(data), model.config, ctx, global_batch=LOSS_BATCH, channels_last=False)
    with evaluation_mode(model):
        return evaluator(model, 7, "fp32")


def images_scored(data, shard) -> dict:
    """What the ranks scored together: every image once (a percentage alone would not show double counting)."""
    model, preprocess = load_model(data["checkpoint"])
    eval_set = read_eval_set("folder", data["class_dir"], preprocess)
    (result,), _ = zero_shot_scores(model, eval_set, [[TEMPLATE]], "cpu", batch_size=EVAL_BATCH, shard=shard)
    captioned = read_coco_captions(data["annotation_file"], data["image_dir"])
    features = caption_image_features(model, captioned, preprocess, "cpu", batch_size=EVAL_BATCH, shard=shard)
    return {"class_images": result.num_images, "captioned_images": features.labels.tolist()}


def score_on_rank(rank, world_size, port, data, out_path):
    with gloo_process_group(rank, world_size, port):
        metrics = score_in_training(data, rank, world_size)
        counts = images_scored(data, process_shard(DistributedContext(rank, rank, world_size, torch.device("cpu"))))
        if rank == 0:
            out_path.write_text(json.dumps({"metrics": metrics, "counts": counts}))


@pytest.fixture(scope="module")
def script_results(eval_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("script_output")
    common = ["--checkpoint_path", eval_data["checkpoint"], "--batch_size", str(EVAL_BATCH), "--num_workers", "0",
              "--device", "cpu", "--precision", "fp32", "--output_dir", str(out)]
    assert zeroshot_eval.main(common + ["--dataset_type", "folder", "--data_dir", eval_data["class_dir"],
                                        "--dataset", "shapes", "--templates", TEMPLATE, "--no-channels_last"]) == 0
    assert retrieval_eval.main(common + ["--annotation_file", eval_data["annotation_file"], "--img_dir",
                                         eval_data["image_dir"], "--name", "val", "--cache_dir", str(out)]) == 0
    zero_shot = json.loads((out / "shapes.json").read_text())
    retrieval = json.loads((out / "val_retrieval.json").read_text())
    assert zero_shot["num_images"] == 35 and retrieval["num_images"] == 13
    expected = {f"shapes/{key}": zero_shot[key] for key in ("top1", "top5", "mean_per_class_recall")}
    expected.update({f"val/{direction}_r{k}": retrieval[f"{direction}_R@{k}"]
                     for direction in ("image_to_text", "text_to_image") for k in (1, 5, 10)})
    return expected


def reference_validation_loss(data) -> float:
    """Consecutive batches of LOSS_BATCH images in id order, each with its first caption, through open_clip's
    loss; the partial last batch left out."""
    model, preprocess = load_model(data["checkpoint"])
    captioned = read_coco_captions(data["annotation_file"], data["image_dir"])
    losses = [open_clip_loss(model, preprocess, captioned, range(start, start + LOSS_BATCH))
              for start in range(0, len(captioned.image_paths) - LOSS_BATCH + 1, LOSS_BATCH)]
    assert len(losses) == 3
    return sum(losses) / len(losses)


def open_clip_loss(model, preprocess, captioned, indices) -> float:
    """open_clip's loss on these images, each with its first caption."""
    images = torch.stack([preprocess(Image.open(captioned.image_paths[index]).convert("RGB")) for index in indices])
    tokens = tokenize([captioned.captions[index][0] for index in indices], model.config.context_length)
    with torch.no_grad():
        return open_clip.ClipLoss()(*model(images, tokens)).item()


def test_in_training_scores_equal_the_evaluation_scripts_on_one_process(eval_data, script_results):
    metrics = score_in_training(eval_data)
    assert {key: metrics[key] for key in script_results} == script_results
    assert metrics["val_loss/loss"] == pytest.approx(reference_validation_loss(eval_data), rel=1e-5)


def test_in_training_scores_equal_the_evaluation_scripts_on_two_gloo_ranks(eval_data, script_results, tmp_path):
    out_path = tmp_path / "rank0.json"
    mp.spawn(score_on_rank, args=(2, free_port(), eval_data, out_path), nprocs=2, join=True)
    metrics, counts = json.loads(out_path.read_text()).values()
    assert counts == {"class_images": 35, "captioned_images": list(range(13))}
    assert {key: metrics[key] for key in script_results} == script_results
    assert metrics["val_loss/loss"] == pytest.approx(reference_validation_loss(eval_data), rel=1e-5)


UNREADABLE = [0, 1, 4, 5]  # batches 0 and 2 at a batch of 2: on two ranks, every batch of rank 0


@pytest.fixture(scope="module")
def partly_unreadable(tmp_path_factory) -> CaptionedImages:
    """8 captioned images, the JPEGs of UNREADABLE cut to half their bytes."""
    config = SyntheticDataConfig(root=str(tmp_path_factory.mktemp("partly_unreadable")), train_images=8, seed=3)
    write_train_set(config)
    captioned = read_coco_captions(config.train_annotation_file, config.train_img_dir)
    for index in UNREADABLE:
        path = Path(captioned.image_paths[index])
        path.write_bytes(path.read_bytes()[:path.stat().st_size // 2])
    return captioned


def validation_loss_on_rank(rank, world_size, port, checkpoint, captioned, out_path):
    with gloo_process_group(rank, world_size, port):
        torch.set_num_threads(1)
        model, preprocess = load_model(checkpoint)
        shard = process_shard(DistributedContext(rank, rank, world_size, torch.device("cpu")))
        loss = validation_loss(model, captioned, preprocess, "cpu", batch_size=2, shard=shard)
        if rank == 0:
            out_path.write_text(json.dumps(loss))


def test_validation_loss_leaves_out_batches_with_no_readable_image_on_one_process_and_two_gloo_ranks(
        eval_data, partly_unreadable, tmp_path):
    model, preprocess = load_model(eval_data["checkpoint"])
    expected = (open_clip_loss(model, preprocess, partly_unreadable, [2, 3]) +
                open_clip_loss(model, preprocess, partly_unreadable, [6, 7])) / 2
    assert validation_loss(model, partly_unreadable, preprocess, "cpu", batch_size=2) == pytest.approx(expected,
                                                                                                       rel=1e-5)
    out_path = tmp_path / "rank0.json"
    mp.spawn(validation_loss_on_rank, args=(2, free_port(), eval_data["checkpoint"], partly_unreadable, out_path),
             nprocs=2, join=True)
    assert json.loads(out_path.read_text()) == pytest.approx(expected, rel=1e-5)


def test_validation_loss_with_no_readable_image_is_one_line(eval_data, partly_unreadable):
    unreadable = CaptionedImages([partly_unreadable.image_paths[index] for index in UNREADABLE],
                                 [partly_unreadable.captions[index] for index in UNREADABLE], [])
    model, preprocess = load_model(eval_data["checkpoint"])
    with pytest.raises(UserError, match=r"^validation loss: none of the 4 images scored can be read \(the first: "
                                        rf"{unreadable.image_paths[0]}\)$"):
        validation_loss(model, unreadable, preprocess, "cpu", batch_size=2)


@pytest.fixture(scope="module")
def eval_experiment(eval_data, tmp_path_factory):
    """An experiment YAML: every task every 2 steps and at the start (the written form the README shows)."""
    path = tmp_path_factory.mktemp("experiment") / "eval.yaml"
    path.write_text(f"""eval:
  every_steps: 2
  at_start: true
  batch_size: {EVAL_BATCH}
  tasks:
    - {{kind: zeroshot, name: shapes, dataset_type: folder, data_dir: {eval_data['class_dir']}, templates: "{TEMPLATE}"}}
    - {{kind: retrieval, name: val, annotation_file: {eval_data['annotation_file']}, image_dir: {eval_data['image_dir']}}}
    - {{kind: loss, name: val_loss, annotation_file: {eval_data['annotation_file']}, image_dir: {eval_data['image_dir']}}}
""")
    return path


def test_eval_during_training_leaves_weights_rng_and_losses_bit_identical(coco_dataset, eval_experiment, tmp_path):
    plain = run(train_command(coco_dataset, tmp_path / "plain"))
    evaluated = run(train_command(coco_dataset, tmp_path / "evaluated", "--config", str(eval_experiment)))
    assert plain.returncode == 0, plain.stderr
    assert evaluated.returncode == 0, evaluated.stderr
    assert_bit_identical(final_weights(tmp_path / "evaluated"), final_weights(tmp_path / "plain"))  # incl. BN stats
    for with_eval, without in zip(list_checkpoints(tmp_path / "evaluated"), list_checkpoints(tmp_path / "plain")):
        rng, reference = load_checkpoint(with_eval)["rng"][0], load_checkpoint(without)["rng"][0]
        assert torch.equal(rng["torch"], reference["torch"]) and rng["python"] == reference["python"]
        assert torch.equal(rng["numpy"]["keys"], reference["numpy"]["keys"])
    records = read_log(tmp_path / "evaluated")
    training = [record for record in records if "loss" in record]
    assert training == [{**record, "samples_per_s": training[index]["samples_per_s"]}
                        for index, record in enumerate(read_log(tmp_path / "plain"))]
    evaluations = [record for record in records if "shapes/top1" in record]
    assert [record["step"] for record in evaluations] == [0, 2, 4, 6, 8, 10, 12]
    assert {"val/image_to_text_r1", "val/text_to_image_r10", "val_loss/loss", "shapes/top5"} <= evaluations[0].keys()
    summary = json.loads((tmp_path / "evaluated" / "summary.json").read_text())
    assert summary["final_eval"] == evaluations[-1]


def test_eval_task_with_a_missing_folder_fails_before_training(coco_dataset, tmp_path, capsys):
    missing = tmp_path / "no_such_folder"
    argv = train_command(coco_dataset, tmp_path / "run", "eval.every_steps=1",
                         f"eval.tasks=[{{kind: zeroshot, name: gone, data_dir: {missing}}}]")[2:]
    assert train.main(argv) == 2
    stderr = capsys.readouterr().err.strip()
    assert stderr.startswith("error: ") and len(stderr.splitlines()) == 1 and str(missing) in stderr
    assert not (tmp_path / "run").exists()  # nothing was trained or written


def test_eval_task_key_typo_names_the_tasks_keys(coco_dataset, tmp_path, capsys):
    argv = train_command(coco_dataset, tmp_path / "run", "eval.every_steps=1",
                         "eval.tasks=[{kind: retrieval, name: val, annotation_fle: x.json, image_dir: y}]")[2:]
    assert train.main(argv) == 2
    stderr = capsys.readouterr().err.strip()
    assert "unknown key 'eval.tasks[0].annotation_fle'" in stderr and "did you mean" in stderr


def test_eval_section_as_written_in_the_readme_and_the_quickstart_loads(tmp_path):
    experiment = tmp_path / "experiment.yaml"
    experiment.write_text("""eval:
  every_steps: 50
  at_start: true
  tasks:
    - {kind: zeroshot, name: cifar10, dataset_type: folder, data_dir: data/cifar10/test, templates: "a photo of a {}."}
    - {kind: retrieval, name: coco_val, annotation_file: data/coco/annotations/captions_val2017.json, image_dir: data/coco/val2017}
    - {kind: loss, name: coco_val_loss, annotation_file: data/coco/annotations/captions_val2017.json, image_dir: data/coco/val2017}
""")
    config = train.load_run_config(train.parse_args(["--config", str(experiment)]))
    assert config.eval.every_steps == 50 and config.eval.at_start
    assert [type(task) for task in config.eval.tasks] == [ZeroShotTask, RetrievalTask, LossTask]
    assert config.eval.tasks[0].templates == "a photo of a {}." and config.eval.tasks[2].name == "coco_val_loss"
    quickstart = train.load_run_config(train.parse_args(["--config", str(ROOT / "configs" / "quickstart.yaml")]))
    assert quickstart.eval.every_epochs == 1 and quickstart.eval.tasks[0].report_dir == "zero_shot_eval_output"
