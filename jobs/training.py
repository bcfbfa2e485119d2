"""train.py's configuration (trainer, data, model, evaluation in one typed tree) and what it builds from it."""
import dataclasses
from pathlib import Path

from dataloader.config import DataConfig
from dataloader.train.synthetic import SyntheticDataConfig, ensure_synthetic_dataset
from dataloader.train.train_data import build_train_loader
from evaluation.during_training import build_evaluator
from evaluation.eval_config import DEFAULTS_FILE as EVAL_DEFAULTS, EvalConfig
from model import CLIP
from model.choice import ModelChoice, chosen_model
from model.config import ModelConfig
from model.grad_checkpointing import set_grad_checkpointing
from trainer.config import TrainerConfig
from utils.config import read_yaml
from utils.distributed import DistributedContext, on_every_rank_for_all

ROOT = Path(__file__).resolve().parents[1]
TRAIN_DEFAULTS = ROOT / "trainer" / "train_config.yaml"
DATA_DEFAULTS = ROOT / "dataloader" / "data_config.yaml"


@dataclasses.dataclass
class RunConfig(TrainerConfig):
    model: ModelChoice = dataclasses.field(default_factory=ModelChoice)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    synthetic_data: SyntheticDataConfig | None = None  # generate this dataset first (the no-download quickstart)
    eval: EvalConfig = dataclasses.field(default_factory=EvalConfig)  # evaluation during training


def training_model(config: RunConfig) -> tuple[CLIP, list[str]]:
    """The model train.py hands to the trainer (the chosen architecture and weights, towers locked as asked,
    gradient checkpointing on when train.grad_checkpointing says so) and the start-up lines on its towers."""
    model, start_lines = chosen_model(config.model, config.loss.kind)
    set_grad_checkpointing(model, config.train.grad_checkpointing)
    return model, start_lines


def run_defaults() -> dict[str, dict]:
    """{file: settings} of the default layers: the trainer's, the data's (data:) and the evaluation's (eval:)."""
    return {str(TRAIN_DEFAULTS): read_yaml(TRAIN_DEFAULTS), str(DATA_DEFAULTS): {"data": read_yaml(DATA_DEFAULTS)},
            str(EVAL_DEFAULTS): {"eval": read_yaml(EVAL_DEFAULTS)}}


def ensure_synthetic_data_on_every_node(config: SyntheticDataConfig, ctx: DistributedContext) -> None:
    """Rank 0 generates the dataset unless it is there; then the first process of each node that does not see it
    (node-local storage) writes that node's own copy. Generation is deterministic, so every copy is the same, and
    on shared storage the second turn finds rank 0's copy and writes nothing."""
    for turn in (ctx.is_main, ctx.local_rank == 0 and not ctx.is_main):
        if on_every_rank_for_all(lambda: turn and ensure_synthetic_dataset(config)):
            print(f"generated the synthetic dataset in {config.root}" + (f" (rank {ctx.rank})" if ctx.rank else ""))


def read_data(config: RunConfig, model_config: ModelConfig, ctx: DistributedContext):
    """The training batches of this rank and the evaluator of the `eval:` section (None without tasks)."""
    loader = build_train_loader(config.data, image_size=model_config.image_size, mean=model_config.image_mean,
                                std=model_config.image_std, context_length=model_config.context_length,
                                batch_size=config.train.batch_size, rank=ctx.rank, world_size=ctx.world_size,
                                seed=config.train.seed, pin_memory=ctx.device.type == "cuda")
    evaluator = build_evaluator(config.eval, model_config, ctx, global_batch=config.train.batch_size * ctx.world_size,
                                channels_last=config.train.channels_last)
    return loader, evaluator
