"""What a training step minimises. The loop in trainer.trainer is the same for every objective: an objective turns
a batch into a loss, does what must follow each optimiser step, and names the extra values worth logging."""
import torch
import torch.nn.functional as F

from trainer.loss import ClipLoss
from trainer.optim import clamp_logit_scale
from utils.precision import autocast


EXAMPLE_CAPTION_TOKENS = 32


class ContrastiveObjective:
    """CLIP pre-training on {"images", "tokens"} batches: the symmetric contrastive loss over the global batch."""
    loss_name = "contrastive loss"

    def __init__(self, local_loss: bool = False):
        self.loss_fn = ClipLoss(local_loss=local_loss)

    def loss(self, model, batch: dict, device, precision: str) -> torch.Tensor:
        images = batch["images"].to(device, non_blocking=True)
        tokens = batch["tokens"].to(device, non_blocking=True)  # the loader cut the padding after the longest
        with autocast(device, precision):
            image_features, text_features, logit_scale = model(images, tokens)
        # the loss in fp32: its softmax over the whole global batch is where low precision hurts most
        return self.loss_fn(image_features.float(), text_features.float(), logit_scale.float())

    def example_batch(self, model, batch_size: int, generator: torch.Generator) -> dict:
        """Random images and captions in the shape of the loader's batches, whose token columns end after the
        longest caption (COCO's are rarely longer than 32 tokens)."""
        config = model.config
        images = torch.randn(batch_size, 3, config.image_size, config.image_size, generator=generator)
        length = min(config.context_length, EXAMPLE_CAPTION_TOKENS)
        tokens = torch.randint(1, config.vocab_size - 1, (batch_size, length), generator=generator)
        tokens[:, -1] = config.vocab_size - 1  # end of text: the largest id
        return {"images": images, "tokens": tokens}

    def after_step(self, model) -> None:
        clamp_logit_scale(model)

    def logged_values(self, model) -> dict:
        return {"logit_scale": model.logit_scale.exp().item()}


class ClassificationObjective:
    """Fine-tuning on {"images", "labels"} batches: cross-entropy of the classifier's logits."""
    loss_name = "cross-entropy"

    def loss(self, model, batch: dict, device, precision: str) -> torch.Tensor:
        images = batch["images"].to(device, non_blocking=True)
        with autocast(device, precision):
            logits = model(images)
        return F.cross_entropy(logits.float(), batch["labels"].to(device, non_blocking=True))

    def example_batch(self, model, batch_size: int, generator: torch.Generator) -> dict:
        """Random images and labels in the shape of the loader's batches."""
        side = model.config.backbone.image_size
        return {"images": torch.randn(batch_size, 3, side, side, generator=generator),
                "labels": torch.randint(len(model.config.class_names), (batch_size,), generator=generator)}

    def after_step(self, model) -> None:
        pass

    def logged_values(self, model) -> dict:
        return {}
