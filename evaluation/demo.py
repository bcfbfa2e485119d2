"""zero_shot_demo.py's two demos: the top classes of your own images, and a labelled folder's examples captioned
"Predicted (True)"."""
from pathlib import Path

import torch

from dataloader.eval.class_names import cifar100_class_names, read_class_name_file
from dataloader.eval.eval_datasets import UnreadableImage, read_eval_set
from dataloader.eval.splits import spread_over_classes
from dataloader.image_io import load_readable_images
from dataloader.train.labelled_train_set import decoded
from evaluation.figures import plot_top_predictions
from evaluation.image_figures import plot_prediction_grid
from evaluation.inference_model import load_for_inference
from evaluation.report import warn_unreadable
from evaluation.settings import DemoSettings
from evaluation.template_sets import load_templates
from evaluation.zeroshot import image_list_probabilities, zero_shot_head
from utils.errors import UserError

IMAGES_PER_FIGURE = 20  # beyond this a figure gets too tall to read: continue in the next file
DISPLAY_SIDE = 320  # decode at least this large so that the figure shows the image sharp, not at model size


def demo_class_names(config: DemoSettings) -> list[str]:
    if config.classes is not None:
        names = [name.strip() for name in config.classes.split(",") if name.strip()]
        if not names:
            raise UserError(f"--classes {config.classes!r} holds no class names (expected e.g. \"cat,dog,car\")")
        return names
    if config.classnames is not None:
        return read_class_name_file(config.classnames)
    return cifar100_class_names()


def image_paths(config: DemoSettings) -> list[Path]:
    if config.img_path is not None:
        path = Path(config.img_path)
        if not path.is_file():
            raise UserError(f"--img_path {path} is not a file")
        return [path]
    folder = Path(config.img_dir)
    if not folder.is_dir():
        raise UserError(f"--img_dir {folder} is not a directory")
    return sorted(path for path in folder.iterdir() if path.is_file() and not path.name.startswith("."))


def loaded_model(config: DemoSettings):
    """(model, preprocess, precision) for this run."""
    model, preprocess, decision = load_for_inference(config.checkpoint_path, config.torch_device, config.precision,
                                                     config.batch_size)
    return model, preprocess, decision.precision


def top_classes(config: DemoSettings) -> None:
    """The top-k classes of each image, printed, and with --show_prediction drawn beside it."""
    class_names = demo_class_names(config)
    _, templates = load_templates(config.templates)
    device = config.torch_device
    model, preprocess, precision = loaded_model(config)
    loaded, skipped = load_readable_images(image_paths(config), max(model.config.image_size, DISPLAY_SIDE))
    warn_unreadable(skipped)
    if not loaded:
        raise UserError(f"no readable images in {config.img_path or config.img_dir}")
    head = zero_shot_head(model, class_names, templates, device, precision)
    images = [image for _, image in loaded]
    probabilities = image_list_probabilities(model, images, preprocess, head, device, precision, config.batch_size)
    top = probabilities.topk(min(config.top_k, len(class_names)), dim=1)
    predictions = [[(class_names[i], float(p)) for p, i in zip(values, indices)]
                   for values, indices in zip(top.values.tolist(), top.indices.tolist())]
    for (path, _), prediction in zip(loaded, predictions):
        print(path)
        for name, probability in prediction:
            print(f"  {100 * probability:6.2f}%  {name}")
    if config.show_prediction:
        stem = Path(config.img_path).stem if config.img_path else Path(config.img_dir).resolve().name
        for page, start in enumerate(range(0, len(loaded), IMAGES_PER_FIGURE), start=1):
            chunk = slice(start, start + IMAGES_PER_FIGURE)
            suffix = "" if len(loaded) <= IMAGES_PER_FIGURE else f"_{page}"
            figure_path = plot_top_predictions(images[chunk], [path.name for path, _ in loaded[chunk]],
                                               predictions[chunk],
                                               Path(config.output_dir) / f"{stem}_predictions{suffix}.png")
            print(f"wrote {figure_path}")


def labelled_examples(config: DemoSettings) -> None:
    """Zero-shot predictions for examples of a labelled folder set, against their folder's class."""
    device = config.torch_device
    model, preprocess, precision = loaded_model(config)
    labelled = read_eval_set("folder", config.labelled_dir, decoded,
                             min_side=max(model.config.image_size, DISPLAY_SIDE), class_names_file=config.classnames)
    chosen = spread_over_classes(torch.tensor(labelled.dataset.labels), config.examples, config.seed).tolist()
    samples = [(index, labelled.dataset[index]) for index in chosen]
    warn_unreadable([sample for _, sample in samples if isinstance(sample, UnreadableImage)])
    readable = [(index, sample) for index, sample in samples if not isinstance(sample, UnreadableImage)]
    if not readable:
        raise UserError(f"none of the chosen images in {config.labelled_dir} could be read")
    _, templates = load_templates(config.templates)
    head = zero_shot_head(model, labelled.class_names, templates, device, precision)
    images = [image for _, (image, _) in readable]
    predicted = image_list_probabilities(model, images, preprocess, head, device, precision,
                                         config.batch_size).argmax(dim=1).tolist()
    predicted_names = [labelled.class_names[label] for label in predicted]
    true_names = [labelled.class_names[label] for _, (_, label) in readable]
    for (index, _), guess, truth in zip(readable, predicted_names, true_names):
        print(f"{labelled.dataset.paths[index]}: {guess} ({truth})")
    figure_path = plot_prediction_grid(images, predicted_names, true_names,
                                       Path(config.output_dir) / f"{labelled.name}_predicted_true.png",
                                       f"Zero-shot on {labelled.name}: {config.checkpoint_path}")
    print(f"{sum(g == t for g, t in zip(predicted_names, true_names))} of {len(images)} right; wrote {figure_path}")
