"""Labelled images as training samples for fine-tuning: any set that dataloader.eval.eval_datasets reads, with the
training transform's seeded augmentation (a flip is plain: labels name no side), in the training loader's
(seed, epoch, batch)-determined batches."""
import torch
from PIL import Image
from torch.utils.data import Dataset

from dataloader.config import LabelledDataConfig
from dataloader.eval.eval_datasets import UnreadableImage
from dataloader.train.sampler import ShardedOrder, sample_rng
from dataloader.train.train_loader import TrainLoader, TrainSamples
from dataloader.train.transforms import TrainImageTransform
from utils.errors import UserError


def decoded(image: Image.Image) -> Image.Image:
    """The transform to read an evaluation set with here: keep the decoded image for the training transform."""
    return image


class LabelledImageDataset(TrainSamples):
    """Sample i is image i of `images` (a Dataset read with `decoded`: (PIL image, label) or UnreadableImage)."""

    def __init__(self, images: Dataset, transform: TrainImageTransform, *, seed: int, strict: bool):
        super().__init__(strict)
        self.images, self.transform, self.seed = images, transform, seed

    def __len__(self) -> int:
        return len(self.images)

    def read(self, epoch: int, index: int) -> tuple[torch.Tensor, int] | str:
        sample = self.images[index]
        if isinstance(sample, UnreadableImage):
            return sample.path
        image, label = sample
        rng = sample_rng(self.seed, epoch, index)
        return self.transform.apply(image, rng, self.transform.draw_flip(rng)), label

    def placeholder(self) -> tuple[torch.Tensor, int]:
        size = self.transform.image_size
        return torch.zeros(3, size, size), 0


def build_labelled_train_loader(images: Dataset, transform: TrainImageTransform, config: LabelledDataConfig, *,
                                batch_size: int, rank: int, world_size: int, seed: int,
                                pin_memory: bool) -> TrainLoader:
    """Batches {"images", "labels", "skipped"} of `images`, read with `decoded` and `min_side=transform.decode_side`
    so that JPEGs decode no larger than the crop needs."""
    dataset = LabelledImageDataset(images, transform, seed=seed, strict=config.strict_images)
    order = ShardedOrder(len(dataset), batch_size, rank, world_size, seed)
    if len(order) == 0:
        raise UserError(f"{config.data_dir}: {len(dataset)} training images make no full batch of {batch_size} "
                        f"on each of {world_size} ranks: lower train.batch_size")
    return TrainLoader(dataset, order, target_key="labels", num_workers=config.num_workers,
                       prefetch_factor=config.prefetch_factor, pin_memory=pin_memory, skipped_at_start=[])
