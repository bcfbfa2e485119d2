"""What a training step minimises. The loop in trainer.trainer is the same for every objective: an objective turns
a batch into a loss, does what must follow each optimiser step, and names the extra values worth logging."""
import torch
import torch.nn.functional as F

from loss.clip import ClipLoss
from loss.duplicate_captions import padded_captions
from loss.siglip import SigLipLoss
from trainer.accumulation import average_over_micro_batches, whole_batch_contrast
from trainer.optim import clamp_logit_scale
from utils.precision import autocast


EXAMPLE_CAPTION_TOKENS = 32


class ContrastiveObjective:
    """CLIP pre-training on {"images", "tokens"} batches: a loss over every image-caption pair of the global batch,
    CLIP's softmax (kind "clip") or SigLIP's sigmoid (kind "siglip", for models with a logit bias). Identical
    captions in the batch are negatives of each other's images (duplicate_captions "negative") or positives
    ("positive"). Batches may bring several captions per image (data.captions_per_image: "tokens" then holds
    captions_per_image rows per image, image-major), all of them the image's positives."""

    def __init__(self, kind: str = "clip", local_loss: bool = False, duplicate_captions: str = "negative",
                 captions_per_image: int = 1):
        self.captions_per_image = captions_per_image
        self.loss_fn = SigLipLoss() if kind == "siglip" else ClipLoss(local_loss=local_loss)
        self.loss_name = "sigmoid loss" if kind == "siglip" else "contrastive loss"
        self.duplicates_are_positives = duplicate_captions == "positive"

    def loss(self, model, batch: dict, device, precision: str) -> torch.Tensor:
        image_features, text_features, loss_parameters, captions = self.features(model, batch, device, precision)
        return self.loss_fn(image_features, text_features, *loss_parameters, captions=captions)

    def features(self, model, batch: dict, device, precision: str):
        """Image features, text features and the loss's parameters (logit scale, and bias for SigLIP), all in
        fp32: the loss over the whole global batch is where low precision hurts most; and the captions the loss
        compares (token rows padded to the context length), None where duplicates count as negatives."""
        images = batch["images"].to(device, non_blocking=True)
        tokens = batch["tokens"]  # on the host; the loader cut the padding after the longest caption
        # each distinct caption encoded once: captions from labels or templates repeat within a batch, and so do
        # the captions of an image with fewer than captions_per_image. Found on the host: no wait for the device
        distinct, rows = torch.unique(tokens, dim=0, return_inverse=True)
        if tokens.is_pinned():  # the loader pinned its batch for an asynchronous copy to the GPU: so are these
            distinct, rows = distinct.pin_memory(), rows.pin_memory()
        distinct, rows = distinct.to(device, non_blocking=True), rows.to(device, non_blocking=True)
        with autocast(device, precision):
            image_features, distinct_features, *loss_parameters = model(images, distinct)
        text_features = distinct_features[rows]
        captions = None
        if self.duplicates_are_positives:
            context_length = getattr(model, "module", model).config.context_length  # the model, also under DDP
            captions = padded_captions(distinct[rows], context_length)
        return (image_features.float(), text_features.float(), tuple(value.float() for value in loss_parameters),
                captions)

    def accumulate_gradients(self, model, micro_batches: list[dict], scaler, device, precision: str) -> torch.Tensor:
        """The gradients of the step's whole batch: every micro-batch is contrasted with all the others."""
        if len(micro_batches) == 1:
            return average_over_micro_batches(model, micro_batches, lambda m, b: self.loss(m, b, device, precision),
                                              scaler)
        return whole_batch_contrast(model, micro_batches, lambda m, b: self.features(m, b, device, precision),
                                    self.loss_fn, scaler)

    def example_batch(self, model, batch_size: int, generator: torch.Generator) -> dict:
        """Random images and captions in the shape of the loader's batches, whose token columns end after the
        longest caption (COCO's are rarely longer than 32 tokens), captions_per_image of them per image."""
        config = model.config
        images = torch.randn(batch_size, 3, config.image_size, config.image_size, generator=generator)
        length = min(config.context_length, EXAMPLE_CAPTION_TOKENS)
        tokens = torch.randint(1, config.vocab_size - 1, (batch_size * self.captions_per_image, length),
                               generator=generator)
        tokens[:, -1] = config.vocab_size - 1  # end of text: the largest id
        return {"images": images, "tokens": tokens}

    def after_step(self, model) -> None:
        clamp_logit_scale(model)

    def logged_values(self, model) -> dict:
        logged = {"logit_scale": model.logit_scale.exp().item()}
        if model.config.sigmoid_logits:
            logged["logit_bias"] = model.logit_bias.item()
        return logged


class ClassificationObjective:
    """Fine-tuning on {"images", "labels"} batches: cross-entropy of the classifier's logits."""
    loss_name = "cross-entropy"

    def loss(self, model, batch: dict, device, precision: str) -> torch.Tensor:
        images = batch["images"].to(device, non_blocking=True)
        with autocast(device, precision):
            logits = model(images)
        return F.cross_entropy(logits.float(), batch["labels"].to(device, non_blocking=True))

    def accumulate_gradients(self, model, micro_batches: list[dict], scaler, device, precision: str) -> torch.Tensor:
        """Each image's loss is its own: the average over micro-batches is the large batch's."""
        return average_over_micro_batches(model, micro_batches, lambda m, b: self.loss(m, b, device, precision),
                                          scaler)

    def example_batch(self, model, batch_size: int, generator: torch.Generator) -> dict:
        """Random images and labels in the shape of the loader's batches."""
        side = model.config.backbone.image_size
        return {"images": torch.randn(batch_size, 3, side, side, generator=generator),
                "labels": torch.randint(len(model.config.class_names), (batch_size,), generator=generator)}

    def after_step(self, model) -> None:
        pass

    def logged_values(self, model) -> dict:
        return {}


def same_class_cosine_loss(features: torch.Tensor, labels: torch.Tensor, margin: float) -> torch.Tensor:
    """Over every pair of images in the batch: 1 - cos for pairs of one class (pulled together) plus
    max(0, cos - margin) for pairs of two classes (pushed apart), each averaged over its own pairs, so that the many
    cross-class pairs of a batch do not drown the few same-class ones. A batch without such a pair adds 0 there."""
    normalised = F.normalize(features.float(), dim=-1)
    cosine = normalised @ normalised.T
    same = labels[:, None] == labels[None, :]
    off_diagonal = ~torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    together, apart = same & off_diagonal, ~same
    pull = (1 - cosine[together]).sum() / together.sum().clamp(min=1)
    push = (cosine[apart] - margin).clamp(min=0).sum() / apart.sum().clamp(min=1)
    return pull + push


class CosineSimilarityObjective(ClassificationObjective):
    """Fine-tuning the image tower by cosine similarity on {"images", "labels"} batches (the reference's "CS"
    fine-tuning): images of one class are drawn together, images of different classes apart (same_class_cosine_loss).
    The model's head takes no part; it still classifies the test images afterwards."""
    loss_name = "cosine-similarity loss"

    def __init__(self, margin: float = 0.0):
        self.margin = margin  # different classes are pushed to a cosine of at most this

    def loss(self, model, batch: dict, device, precision: str) -> torch.Tensor:
        images = batch["images"].to(device, non_blocking=True)
        with autocast(device, precision):
            features = model(images, features=True)  # through forward, so that DDP synchronises the gradients
        return same_class_cosine_loss(features, batch["labels"].to(device, non_blocking=True), self.margin)
