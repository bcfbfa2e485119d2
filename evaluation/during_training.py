"""Evaluation during training: the tasks of an `eval:` section, read at start-up (so a wrong path fails before
any training) and scored when due, with the same functions as zeroshot_eval.py and retrieval_eval.py."""
import dataclasses
import time
from pathlib import Path

from dataloader.eval.caption_sets import read_caption_set
from dataloader.eval.eval_datasets import read_eval_set
from evaluation.eval_config import EvalConfig, LossTask, RetrievalTask, ZeroShotTask
from evaluation.report import write_zero_shot_report
from evaluation.retrieval import caption_image_features, captioned_retrieval, text_features
from evaluation.shard import Shard, process_shard
from evaluation.template_sets import load_templates
from evaluation.validation_loss import validation_loss
from evaluation.zeroshot import zero_shot_scores
from model.config import ModelConfig
from model.preprocess import image_transform
from utils.distributed import DistributedContext
from utils.errors import UserError


@dataclasses.dataclass(frozen=True)
class Scoring:
    """How every task is scored: where, in which batches, and this process's share; the precision is the
    training's, given with each call."""
    device: object
    batch_size: int
    num_workers: int
    channels_last: bool
    loss_batch_size: int  # the training's global batch: the contrastive loss depends on the batch size
    shard: Shard


class ZeroShotScorer:
    def __init__(self, task: ZeroShotTask, model_config: ModelConfig, preprocess, scoring: Scoring):
        self.task = task
        self.eval_set = read_eval_set(task.dataset_type, task.data_dir, preprocess, dataset_name=task.dataset,
                                      min_side=model_config.image_size, class_names_file=task.classnames)
        self.template_name, self.templates = load_templates(task.templates or self.eval_set.default_templates)

    def __call__(self, model, step: int, scoring: Scoring, precision: str) -> dict[str, float]:
        (result,), unreadable = zero_shot_scores(
            model, self.eval_set, [self.templates], scoring.device, precision, batch_size=scoring.batch_size,
            num_workers=scoring.num_workers, channels_last=scoring.channels_last, shard=scoring.shard, progress=False)
        if self.task.report_dir and scoring.shard.rank == 0:
            run_info = {"step": step, "dataset": self.eval_set.name, "data_dir": self.task.data_dir,
                        "templates": {"name": self.template_name, "count": len(self.templates)},
                        "num_classes": len(self.eval_set.class_names), "num_unreadable_images": len(unreadable),
                        "precision": precision}
            write_zero_shot_report(result, self.task.report_dir, self.task.name, run_info,
                                   f"Zero-shot {self.eval_set.name}, templates '{self.template_name}': step {step}")
        return {"top1": result.top1, "top5": result.top5, "mean_per_class_recall": result.mean_per_class_recall}


def read_captioned(task: RetrievalTask | LossTask):
    captioned = read_caption_set(task.annotation_file, task.image_dir, data_format=task.format,
                                 image_key=task.image_key, caption_key=task.caption_key,
                                 format_setting=f"eval task {task.name}'s format")
    if not captioned.image_paths:
        raise UserError(f"eval task {task.name}: none of the images of {task.annotation_file} is in "
                        f"{task.image_dir or Path(task.annotation_file).parent}")
    return captioned


class RetrievalScorer:
    def __init__(self, task: RetrievalTask, model_config: ModelConfig, preprocess, scoring: Scoring):
        self.captioned, self.preprocess = read_captioned(task), preprocess

    def __call__(self, model, step: int, scoring: Scoring, precision: str) -> dict[str, float]:
        features = caption_image_features(model, self.captioned, self.preprocess, scoring.device, precision,
                                          batch_size=scoring.batch_size, num_workers=scoring.num_workers,
                                          shard=scoring.shard, progress=False)
        result = captioned_retrieval(features, self.captioned.captions, lambda texts: text_features(
            model, texts, scoring.device, precision, batch_size=scoring.batch_size, shard=scoring.shard,
            progress=False))
        # "image_to_text_R@1" -> "image_to_text_r1"
        return {key.replace("_R@", "_r"): value for key, value in result.recalls.items()}


class LossScorer:
    def __init__(self, task: LossTask, model_config: ModelConfig, preprocess, scoring: Scoring):
        self.captioned, self.preprocess = read_captioned(task), preprocess
        if len(self.captioned.image_paths) < scoring.loss_batch_size:
            raise UserError(f"eval task {task.name}: {task.annotation_file} has {len(self.captioned.image_paths)} "
                            f"images, fewer than one global training batch ({scoring.loss_batch_size})")

    def __call__(self, model, step: int, scoring: Scoring, precision: str) -> dict[str, float]:
        return {"loss": validation_loss(model, self.captioned, self.preprocess, scoring.device, precision,
                                        batch_size=scoring.loss_batch_size, num_workers=scoring.num_workers,
                                        shard=scoring.shard)}


class TrainingEvaluator:
    """Called by the trainer (trainer.trainer.Evaluator) in eval mode, without gradients, with its random
    generators saved and restored around the call."""

    def __init__(self, config: EvalConfig, scorers: dict, scoring: Scoring):
        self.config, self.scorers, self.scoring = config, scorers, scoring

    def due(self, step: int, steps_per_epoch: int, total_steps: int) -> bool:
        """At step 0 if at_start; after every every_steps-th step, at the end of every every_epochs-th epoch, and
        after the last step (so the summary describes the final weights)."""
        if step == 0:
            return self.config.at_start
        every_steps, every_epochs = self.config.every_steps, self.config.every_epochs
        return (step == total_steps or (every_steps is not None and step % every_steps == 0)
                or (every_epochs is not None and step % (every_epochs * steps_per_epoch) == 0))

    def __call__(self, model, step: int, precision: str) -> dict[str, float]:
        started, metrics = time.perf_counter(), {}
        for name, scorer in self.scorers.items():
            scores = scorer(model, step, self.scoring, precision)
            metrics.update({f"{name}/{key}": value for key, value in scores.items()})
        if self.scoring.shard.rank == 0:
            print(f"evaluation at step {step} took {time.perf_counter() - started:.1f} s")
        return metrics


SCORERS = {"zeroshot": ZeroShotScorer, "retrieval": RetrievalScorer, "loss": LossScorer}


def build_evaluator(config: EvalConfig, model_config: ModelConfig, ctx: DistributedContext, *, global_batch: int,
                    channels_last: bool) -> TrainingEvaluator | None:
    """The evaluator of the `eval:` section, its data read now; None without tasks. `global_batch` is the
    training's (the loss tasks score batches of that size)."""
    if not config.tasks:
        return None
    preprocess = image_transform(model_config.image_size, model_config.image_mean, model_config.image_std)
    scoring = Scoring(ctx.device, config.batch_size, config.num_workers, channels_last, global_batch,
                      process_shard(ctx))
    scorers = {task.name: SCORERS[task.kind](task, model_config, preprocess, scoring) for task in config.tasks}
    return TrainingEvaluator(config, scorers, scoring)
