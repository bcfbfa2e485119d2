"""finetune.py's configuration and what it builds: the training and test images, the classifier started from a
CLIP model, and its test scores."""
import dataclasses
import json
import typing
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset, Subset

from dataloader.config import LabelledDataConfig
from dataloader.eval.eval_datasets import collate_readable, read_eval_set
from dataloader.eval.splits import plan_splits, stratified_split
from dataloader.train.labelled_train_set import build_labelled_train_loader, decoded
from dataloader.train.transforms import TrainImageTransform
from evaluation.inference_model import load_for_inference
from evaluation.metrics import ClassificationResult, summarise
from evaluation.report import run_info, summary_lines, warn_unreadable, write_reports
from evaluation.shard import process_shard
from evaluation.template_sets import load_templates
from evaluation.zeroshot import classify, zero_shot_head
from model.classifier import ClassifierConfig, ImageClassifier
from model.grad_checkpointing import set_grad_checkpointing
from trainer.config import TrainerConfig
from trainer.objectives import ClassificationObjective, CosineSimilarityObjective
from trainer.run_lock import run_folder_lock
from trainer.trainer import TrainingJob, train
from utils.config import as_dict, read_yaml
from utils.distributed import (DistributedContext, all_gather_object, decided_on_main, distributed_session,
                               rank)
from utils.errors import UserError
from utils.seeding import seed_everything

ROOT = Path(__file__).resolve().parents[1]
DEFAULTS = (ROOT / "trainer" / "train_config.yaml", ROOT / "trainer" / "finetune_config.yaml")


def finetune_defaults() -> dict[str, dict]:
    return {str(path): read_yaml(path) for path in DEFAULTS}


@dataclasses.dataclass
class FinetuneConfig(TrainerConfig):
    checkpoint_path: str | None = None  # required: the CLIP model to start from
    head: typing.Literal["zeroshot", "linear"] = "zeroshot"
    templates: str | None = None
    freeze_backbone: bool = False
    objective: typing.Literal["classification", "cosine"] = "classification"
    data: LabelledDataConfig = dataclasses.field(default_factory=LabelledDataConfig)

    def __post_init__(self):
        if not self.checkpoint_path:
            raise ValueError("checkpoint_path is required: the CLIP model to fine-tune (--checkpoint_path)")
        if self.objective == "cosine" and (self.freeze_backbone or self.head != "zeroshot"):
            raise ValueError("objective cosine trains the image tower and tests with the zero-shot head: it needs "
                             "head zeroshot and freeze_backbone false")


OBJECTIVES = {"classification": ClassificationObjective, "cosine": CosineSimilarityObjective}


@dataclasses.dataclass
class Splits:
    name: str
    class_names: list[str]
    default_templates: str  # the set's prompt templates (evaluation/templates/)
    train: Dataset  # (decoded PIL image, label) or UnreadableImage
    test: Dataset  # (preprocessed tensor, label) or UnreadableImage


def read_splits(data: LabelledDataConfig, train_side: int, preprocess, test_side: int) -> Splits:
    """Training images decoded for the training transform, test images preprocessed for evaluation: the test
    folder, CIFAR's test split, or a seeded stratified share of the training folder."""
    def read(folder, transform, min_side, split=None):
        return read_eval_set(data.dataset_type, folder, transform, dataset_name=data.dataset, min_side=min_side,
                             class_names_file=data.classnames, split=split)

    plan = plan_splits(data.dataset_type, data.data_dir, data.test_dir)
    train_set = read(data.data_dir, decoded, train_side, plan.train_split)
    if not plan.held_out:
        test_set = read(plan.test_dir, preprocess, test_side, plan.test_split)
        if test_set.class_names != train_set.class_names:
            raise UserError(f"the test images ({plan.test_dir}) have classes {test_set.class_names[:5]}..., the "
                            f"training images ({data.data_dir}) {train_set.class_names[:5]}...: they must match")
        return Splits(train_set.name, train_set.class_names, train_set.default_templates, train_set.dataset,
                      test_set.dataset)
    test_set = read(data.data_dir, preprocess, test_side)
    kept, held_out = stratified_split(torch.tensor(train_set.dataset.labels), data.test_fraction, data.split_seed)
    return Splits(train_set.name, train_set.class_names, train_set.default_templates,
                  Subset(train_set.dataset, kept.tolist()), Subset(test_set.dataset, held_out.tolist()))


def build_classifier(clip_model, splits: Splits, config: FinetuneConfig, device, precision) -> ImageClassifier:
    class_names, head_weight = splits.class_names, None
    if config.head == "zeroshot":
        template_set, templates = load_templates(config.templates or splits.default_templates)
        if rank() == 0:
            print(f"head: the zero-shot classifier of {len(class_names)} classes, templates {template_set}")
        text_head = zero_shot_head(clip_model.to(device), class_names, templates, device, precision)
        # scaled as in CLIP's logits, so the softmax starts as sharp as the zero-shot model's
        head_weight = clip_model.logit_scale.exp().item() * text_head.T.cpu()
    classifier_config = ClassifierConfig(clip_model.config, class_names, config.freeze_backbone)
    classifier = ImageClassifier(clip_model.visual, classifier_config, head_weight)
    if config.objective == "cosine":
        classifier.head.requires_grad_(False)  # the objective compares features; the head only tests them
    return classifier


def test_accuracy(classifier: ImageClassifier, splits: Splits, config: FinetuneConfig, ctx: DistributedContext,
                  precision: str) -> ClassificationResult:
    """The classifier's scores on the test images. Under torchrun each rank scores its block and the counts meet in
    one collective: no rank waits for another in a collective while it scores (NCCL's timeout on a large set)."""
    shard = process_shard(ctx)
    images = Subset(splits.test, shard.block(len(splits.test)))
    loader = DataLoader(images, batch_size=config.train.batch_size, num_workers=config.data.num_workers,
                        collate_fn=collate_readable, pin_memory=ctx.device.type == "cuda")
    classifier.to(ctx.device).eval()
    tally, unreadable = classify(classifier, loader, classifier.head.weight.detach().float().T, ctx.device, precision,
                                 channels_last=config.train.channels_last, progress=ctx.is_main)
    unreadable = [image for part in shard.gather(unreadable) for image in part]
    if ctx.is_main:
        warn_unreadable(unreadable)
    return summarise(tally.summed_over(shard.sum), splits.class_names)


def report(result: ClassificationResult, splits: Splits, config: FinetuneConfig, name: str, precision: str) -> None:
    """<dataset>_<name>.txt/.json in the run folder."""
    info = run_info(config.checkpoint_path, splits.name, precision, head=config.head,
                    freeze_backbone=config.freeze_backbone, num_train_images=len(splits.train),
                    epochs=config.train.epochs, run_dir=config.output_dir)
    text_path, json_path = write_reports(result, config.output_dir, f"{splits.name}_{name}", info)
    print(f"{name}: " + ", ".join(summary_lines(result)) + f" (wrote {text_path}, {json_path})")


def fine_tune(config: FinetuneConfig, resume: str | None) -> int:
    """Fine-tune through the trainer; score the zero-shot start (a zeroshot head) and the result on the test images."""
    if config.train.num_threads:
        torch.set_num_threads(config.train.num_threads)
    with distributed_session() as ctx, run_folder_lock(config.output_dir, ctx.is_main):
        seed_everything(config.train.seed)
        # the zero-shot head and the test scores: inference, at the precision rank 0 finds fastest for it
        clip_model, preprocess, decision = load_for_inference(config.checkpoint_path, ctx.device,
                                                              config.train.precision, config.train.batch_size)
        precision = all_gather_object(decision.precision)[0]
        image_config = clip_model.config
        transform = TrainImageTransform.from_config(config.data, image_config.image_size, image_config.image_mean,
                                                    image_config.image_std)
        splits = read_splits(config.data, transform.decode_side, preprocess, image_config.image_size)
        classifier = build_classifier(clip_model, splits, config, ctx.device, precision)
        del clip_model  # the text tower is not needed any more: free its memory
        loader = build_labelled_train_loader(splits.train, transform, config.data, batch_size=config.train.batch_size,
                                             rank=ctx.rank, world_size=ctx.world_size, seed=config.train.seed,
                                             pin_memory=ctx.device.type == "cuda")
        start_report = Path(config.output_dir) / f"{splits.name}_zeroshot_start.json"
        if config.head == "zeroshot" and decided_on_main(lambda: not start_report.is_file(), ctx.is_main):
            # the starting classifier is the zero-shot one: its accuracy is the baseline fine-tuning must beat
            baseline = test_accuracy(classifier, splits, config, ctx, precision)
            if ctx.is_main:
                report(baseline, splits, config, "zeroshot_start", precision)
        set_grad_checkpointing(classifier, config.train.grad_checkpointing)
        job = TrainingJob(config, classifier, loader, OBJECTIVES[config.objective](), as_dict(config))
        exit_code = train(job, ctx, resume=resume)
        if exit_code == 0:
            tuned = test_accuracy(classifier, splits, config, ctx, precision)
            if ctx.is_main:
                report(tuned, splits, config, "finetune", precision)
                if start_report.is_file():
                    start = json.loads(start_report.read_text())
                    print(f"top-1: {start['top1']:.2f} % zero-shot, {tuned.top1:.2f} % fine-tuned")
        return exit_code
