"""A synthetic captioned dataset that needs no download: coloured shapes on plain backgrounds.

Written once, deterministically from a seed, as a real COCO-captions dataset (JPEG images + a captions JSON with
info/images/annotations) for training, and a held-out evaluation set as class folders (`red_circle/0000.jpg` ...)
whose class names are "{colour} {shape}". A marker file written last records the parameters: a complete dataset
with the same parameters is reused, anything else is generated again.
"""
import dataclasses
import json
import random
import shutil
from pathlib import Path

from PIL import Image, ImageDraw

from utils.atomic_files import write_text_atomically

COLOURS = {"red": (215, 40, 35), "green": (40, 165, 60), "blue": (40, 75, 215), "yellow": (235, 205, 35)}
SHAPES = ("circle", "square", "triangle")
BACKGROUNDS = {"grey": (128, 128, 128), "white": (240, 240, 240), "black": (20, 20, 20)}
SIZES = {"small": (0.35, 0.5), "large": (0.6, 0.8)}  # shape extent as a share of the image side
CAPTION_TEMPLATES = (
    "a {size} {colour} {shape} on a {background} background",
    "a {colour} {shape}",
    "a picture of a {colour} {shape} on {background}",
    "there is a {size} {colour} {shape} in the image",
    "a {shape} coloured {colour}",
    "an image showing one {colour} {shape}",
    "a {colour} {shape} in front of a {background} background",
    "a drawing of a {size} {shape}, {colour} on {background}",
)
CAPTIONS_PER_IMAGE = 5
SUPERSAMPLING = 4  # draw large, then shrink: smooth edges
MARKER = "dataset.json"


@dataclasses.dataclass
class SyntheticDataConfig:
    root: str = "data/quickstart"
    train_images: int = 3000
    eval_images_per_class: int = 40
    image_size: int = 32
    seed: int = 0

    @property
    def train_img_dir(self) -> Path:
        return Path(self.root) / "train"

    @property
    def train_annotation_file(self) -> Path:
        return Path(self.root) / "captions_train.json"

    @property
    def eval_dir(self) -> Path:
        return Path(self.root) / "eval"


def class_names() -> list[str]:
    return [f"{colour} {shape}" for colour in COLOURS for shape in SHAPES]


def ensure_synthetic_dataset(config: SyntheticDataConfig) -> bool:
    """Generate the dataset unless an identical one is already there; True when it was generated."""
    marker = Path(config.root) / MARKER
    if marker.is_file() and json.loads(marker.read_text()) == dataclasses.asdict(config):
        return False
    shutil.rmtree(config.root, ignore_errors=True)
    write_train_set(config)
    write_eval_set(config)
    write_text_atomically(marker, json.dumps(dataclasses.asdict(config), indent=2) + "\n")
    return True


def write_train_set(config: SyntheticDataConfig) -> None:
    rng = random.Random(f"train-{config.seed}")
    config.train_img_dir.mkdir(parents=True)
    images, annotations = [], []
    for image_id in range(1, config.train_images + 1):
        scene = random_scene(rng)
        file_name = f"{image_id:06d}.jpg"
        draw_scene(scene, config.image_size, rng).save(config.train_img_dir / file_name, quality=95)
        images.append({"id": image_id, "file_name": file_name, "width": config.image_size,
                       "height": config.image_size})
        for template in rng.sample(CAPTION_TEMPLATES, CAPTIONS_PER_IMAGE):
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "caption": template.format(**scene)})
    captions = {"info": {"description": "synthetic coloured shapes (clip-toolkit quickstart)", "version": "1.0",
                         "year": 2026, "contributor": "generated", "date_created": "2026"},
                "licenses": [], "images": images, "annotations": annotations}
    write_text_atomically(config.train_annotation_file, json.dumps(captions))


def write_eval_set(config: SyntheticDataConfig) -> None:
    rng = random.Random(f"eval-{config.seed}")  # a different stream: no evaluation image is a training image
    for colour in COLOURS:
        for shape in SHAPES:
            folder = config.eval_dir / f"{colour}_{shape}"
            folder.mkdir(parents=True)
            for index in range(config.eval_images_per_class):
                scene = {**random_scene(rng), "colour": colour, "shape": shape}
                draw_scene(scene, config.image_size, rng).save(folder / f"{index:04d}.jpg", quality=95)


def random_scene(rng: random.Random) -> dict:
    return {"colour": rng.choice(list(COLOURS)), "shape": rng.choice(SHAPES),
            "background": rng.choice(list(BACKGROUNDS)), "size": rng.choice(list(SIZES))}


def jitter(rgb, rng: random.Random, amount: int) -> tuple:
    return tuple(min(255, max(0, channel + rng.randint(-amount, amount))) for channel in rgb)


def draw_scene(scene: dict, image_size: int, rng: random.Random) -> Image.Image:
    side = image_size * SUPERSAMPLING
    image = Image.new("RGB", (side, side), jitter(BACKGROUNDS[scene["background"]], rng, 15))
    extent = side * rng.uniform(*SIZES[scene["size"]])
    left, top = rng.uniform(0, side - extent), rng.uniform(0, side - extent)
    box = (left, top, left + extent, top + extent)
    colour = jitter(COLOURS[scene["colour"]], rng, 25)
    draw = ImageDraw.Draw(image)
    if scene["shape"] == "circle":
        draw.ellipse(box, fill=colour)
    elif scene["shape"] == "square":
        draw.rectangle(box, fill=colour)
    else:
        draw.polygon([(left + extent / 2, top), (left + extent, top + extent), (left, top + extent)], fill=colour)
    return image.resize((image_size, image_size), Image.LANCZOS)
