"""Cosine similarity between images and captions, as the CLIP paper's figures show it."""
import torch
import torch.nn.functional as F
from PIL import Image

from evaluation.features import extract_text_features
from utils.precision import autocast


@torch.inference_mode()
def image_text_similarity(model, images: list[Image.Image], captions: list[str], preprocess, device,
                          precision: str = "fp32") -> torch.Tensor:
    """[len(captions), len(images)]: the cosine similarity of each caption with each image."""
    pixels = torch.stack([preprocess(image) for image in images]).to(device)
    with autocast(device, precision):
        image_features = model.encode_image(pixels)
    text_features = extract_text_features(model, captions, device, precision, progress=False)
    return F.normalize(text_features.float(), dim=-1) @ F.normalize(image_features.float().cpu(), dim=-1).T
