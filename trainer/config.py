"""The trainer's settings, one dataclass per concern; defaults in trainer/train_config.yaml."""
import dataclasses
import typing


@dataclasses.dataclass
class OptimizerConfig:
    lr: float = 5e-4
    betas: list[float] = dataclasses.field(default_factory=lambda: [0.9, 0.98])
    eps: float = 1e-8
    weight_decay: float = 0.1  # not applied to biases, norms, embeddings and the logit scale
    grad_clip_norm: float | None = None
    # the temperature's (and SigLIP bias's) own peak learning rate; None: lr. At lr the temperature barely moves
    # in a short run, so the softmax stays as soft as it started
    logit_scale_lr: float | None = None

    def __post_init__(self):
        if len(self.betas) != 2:
            raise ValueError(f"optimizer.betas needs two values, got {self.betas}")
        if self.logit_scale_lr is not None and not self.logit_scale_lr > 0:
            raise ValueError(f"optimizer.logit_scale_lr must be positive (or null: optimizer.lr), "
                             f"got {self.logit_scale_lr}")


@dataclasses.dataclass
class ScheduleConfig:
    warmup_fraction: float = 0.2  # linear warmup over this share of all steps, then cosine decay to zero

    def __post_init__(self):
        if not 0 <= self.warmup_fraction <= 1:
            raise ValueError(f"schedule.warmup_fraction must be in [0, 1], got {self.warmup_fraction}")


@dataclasses.dataclass
class LoopConfig:
    epochs: int = 35
    batch_size: int = 64  # per process; the global batch is batch_size x processes x grad_accum_steps
    grad_accum_steps: int = 1
    precision: typing.Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    local_loss: bool = False  # each rank scores its own samples against the global batch (less memory)
    seed: int = 0
    log_every_steps: int = 10
    num_threads: int | None = None  # CPU threads for torch; None keeps torch's default
    channels_last: bool = True  # channels-last memory for the image tower's convolutions: faster, same result
    compile: bool = False  # torch.compile the model's forward: faster steps after a compile of seconds to minutes
    grad_checkpointing: bool = False  # recompute block activations in the backward pass: less memory, more compute
    # CUDA: deterministic kernels and no cuDNN autotuning (slower): runs repeat bit for bit and a resumed run equals
    # an uninterrupted one, as CPU runs always do
    deterministic: bool = False

    def __post_init__(self):
        for name in ("epochs", "batch_size", "grad_accum_steps", "log_every_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"train.{name} must be at least 1, got {getattr(self, name)}")


@dataclasses.dataclass
class LossConfig:
    # clip: softmax over the global batch (Radford et al. 2021); siglip: a sigmoid per image-caption pair with a
    # learnable bias (Zhai et al. 2023), which gives the model a logit bias
    kind: typing.Literal["clip", "siglip"] = "clip"
    # identical captions in the global batch (class labels, templates): negatives of each other's images as in
    # plain CLIP, or positives (soft targets for clip, z = 1 for siglip)
    duplicate_captions: typing.Literal["negative", "positive"] = "negative"


@dataclasses.dataclass
class CheckpointConfig:
    every_steps: int = 1000
    keep_last: int = 3
    resume_allow_changes: bool = False  # resume although settings that change the run differ from the checkpoint's

    def __post_init__(self):
        if self.every_steps < 1 or self.keep_last < 1:
            raise ValueError("checkpoint.every_steps and checkpoint.keep_last must be at least 1")


@dataclasses.dataclass
class WandbConfig:
    """Weights & Biases mirrors the TensorBoard scalars when a project is named (trainer.wandb_log)."""
    project: str | None = None  # None: no wandb
    entity: str | None = None  # the team or user; None: wandb's default entity
    mode: typing.Literal["online", "offline", "disabled"] = "online"  # offline: files in the run folder, synced later

    def __post_init__(self):
        if self.project is not None and not self.project.strip():
            raise ValueError(f"logging.wandb.project must name a project (or be null: no wandb), got {self.project!r}")
        if self.entity is not None and self.project is None:
            raise ValueError(f"logging.wandb.entity is {self.entity!r} but logging.wandb.project is null: name the "
                             "project too")
        if self.enabled:
            try:
                import wandb  # noqa: F401  an optional dependency: checked here, before any work is done
            except ImportError:
                raise ValueError(f"logging.wandb.project is {self.project!r} but the wandb package is not "
                                 "installed: pip install wandb") from None

    @property
    def enabled(self) -> bool:
        return self.project is not None and self.mode != "disabled"


@dataclasses.dataclass
class LoggingConfig:
    wandb: WandbConfig = dataclasses.field(default_factory=WandbConfig)


@dataclasses.dataclass
class TrainerConfig:
    output_dir: str = "runs/clip"
    optimizer: OptimizerConfig = dataclasses.field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = dataclasses.field(default_factory=ScheduleConfig)
    train: LoopConfig = dataclasses.field(default_factory=LoopConfig)
    loss: LossConfig = dataclasses.field(default_factory=LossConfig)
    checkpoint: CheckpointConfig = dataclasses.field(default_factory=CheckpointConfig)
    logging: LoggingConfig = dataclasses.field(default_factory=LoggingConfig)
