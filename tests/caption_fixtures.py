"""Captioned images written by the tests in real formats: JPEG/PNG files with CSV/TSV, JSONL and COCO tables that
list them, and webdataset shards. Image n has red level red_level(n) under a grey checkerboard, so a batch's
images are identified from their pixels, and captions "image n caption k"."""
import csv
import io
import json

import numpy as np
import torch
import webdataset as wds
from PIL import Image

from utils.tokenizer import tokenize

RED_STEP = 9


def red_level(n):
    return 20 + n * RED_STEP


def image_pixels(n, size=32):
    height, width = (size, size + size // 4) if n % 2 else (size + size // 4, size)
    y, x = np.mgrid[:height, :width]
    checker = (y // 4 + x // 4) % 2 * 24 - 12
    return np.clip(np.array([red_level(n), 120, 90]) + checker[..., None], 0, 255).astype(np.uint8)


def image_name(n):
    return f"{n:05d}." + ("png" if n % 3 == 2 else "jpg")


def write_images(folder, count, size=32):
    """Images 0..count-1 in `folder`; returns their file names."""
    folder.mkdir(parents=True, exist_ok=True)
    for n in range(count):
        Image.fromarray(image_pixels(n, size)).save(folder / image_name(n), quality=95)
    return [image_name(n) for n in range(count)]


def caption(n, k):
    return f"image {n} caption {k}"


def caption_rows(count, captions_per_image, prefix=""):
    """(image path, caption) rows, each image's captions spread over the table rather than adjacent."""
    return [(prefix + image_name(n), caption(n, k)) for k in range(captions_per_image) for n in range(count)]


def write_csv(path, rows, delimiter=",", header=("filepath", "caption")):
    with open(path, "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file, delimiter=delimiter)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def write_jsonl(path, rows, keys=("filepath", "caption")):
    path.write_text("".join(json.dumps(dict(zip(keys, row))) + "\n" for row in rows))
    return path


def write_coco(path, count, captions_per_image):
    images = [{"id": n, "file_name": image_name(n)} for n in range(count)]
    annotations = [{"id": n * captions_per_image + k, "image_id": n, "caption": caption(n, k)}
                   for n in range(count) for k in range(captions_per_image)]
    path.write_text(json.dumps({"images": images, "annotations": annotations}))
    return path


def image_numbers(images, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0)):
    """Which fixture image each normalised tensor shows, from its mean red level (the checkerboard averages out)."""
    red = (images[:, 0].mean(dim=(1, 2)) * std[0] + mean[0]) * 255
    return ((red - 20) / RED_STEP).round().long().tolist()


def caption_number(tokens, n, captions_per_image, context_length):
    """Which of image n's captions `tokens` are (padding aside: the loader cuts it), or None."""
    for k in range(captions_per_image):
        expected = tokenize(caption(n, k), context_length)[0]
        if torch.equal(tokens, expected[:len(tokens)]) and not expected[len(tokens):].any():
            return k
    return None


def encoded_image(n, size=32):
    """Image n as the bytes of its file (PNG for every third image, JPEG otherwise), and the extension."""
    buffer = io.BytesIO()
    extension = image_name(n).rsplit(".", 1)[1]
    Image.fromarray(image_pixels(n, size)).save(buffer, format="PNG" if extension == "png" else "JPEG", quality=95)
    return buffer.getvalue(), extension


def write_shards(folder, count, per_shard, sizes=True):
    """Images 0..count-1, `per_shard` to a shard, written by webdataset's ShardWriter as img2dataset lays them out:
    KEY.jpg or KEY.png, with the caption in KEY.txt (even n) or in KEY.json (odd n, as img2dataset's metadata).
    With `sizes`, a sizes.json of the shards' counts. Returns the shard paths."""
    folder.mkdir(parents=True, exist_ok=True)
    with wds.ShardWriter(str(folder / "%05d.tar"), maxcount=per_shard, verbose=0) as writer:
        for n in range(count):
            data, extension = encoded_image(n)
            caption_field = {"txt": caption(n, 0)} if n % 2 == 0 else {"json": {"caption": caption(n, 0), "key": n}}
            writer.write({"__key__": f"{n:06d}", extension: data, **caption_field})
    shards = sorted(folder.glob("*.tar"))
    if sizes:
        counts = [min(per_shard, count - index * per_shard) for index in range(len(shards))]
        (folder / "sizes.json").write_text(json.dumps({shard.name: size for shard, size in zip(shards, counts)}))
    return shards
