"""Which image-text pairs of the global batch are positives. Each image comes with data.captions_per_image = m
captions, image-major (text t is one of image t // m's own); with loss.duplicate_captions positive, every text whose
caption is word for word one of an image's own is that image's too."""
import torch

from loss.duplicate_captions import same_caption


def captions_per_image(image_features: torch.Tensor, text_features: torch.Tensor) -> int:
    """m, from the rows of one batch's features: m texts per image."""
    images, texts = image_features.shape[0], text_features.shape[0]
    if images == 0 or texts % images:
        raise ValueError(f"{texts} text rows do not make a whole number of captions for each of {images} images")
    return texts // images


def positive_pairs(images: slice, texts: slice, per_image: int, captions=None, device=None) -> torch.Tensor:
    """[images, texts] booleans over these global indices: text t belongs to image t // per_image; given the whole
    batch's `captions` (every text's token row, padded to one width), also to every image one of whose own captions
    is identical to it."""
    if captions is None:
        text_index = torch.arange(texts.start, texts.stop, device=device)
        image_index = torch.arange(images.start, images.stop, device=device)
        return text_index[None, :] // per_image == image_index[:, None]
    own_texts = slice(images.start * per_image, images.stop * per_image)
    same = same_caption(captions, own_texts)[:, texts]
    return same.view(-1, per_image, same.shape[1]).any(dim=1)


def shares(positives: torch.Tensor) -> torch.Tensor:
    """Cross-entropy targets that split each row's probability equally among its positives."""
    positives = positives.float()
    return positives / positives.sum(dim=1, keepdim=True)
