"""A model loaded for scoring, with the inference precision chosen for it: what every evaluation starts with."""
from model import load_model
from model.inference import prepare_for_inference
from utils.precision import PrecisionDecision, choose_inference_precision


def load_for_inference(checkpoint, device, precision: str, batch_size: int, *, fold_batch_norms: bool = False,
                       channels_last: bool = False) -> tuple[object, object, PrecisionDecision]:
    """(model in eval mode on `device`, its preprocessing, the precision decision for `precision` at
    `batch_size`). `fold_batch_norms` applies model.inference's speed-ups (the model can no longer train), with
    channels-last ResNet convolutions when `channels_last`."""
    model, preprocess = load_model(checkpoint, device=device)
    if fold_batch_norms:
        model = prepare_for_inference(model, channels_last)
    return model, preprocess, choose_inference_precision(precision, model.eval(), device, batch_size, channels_last)
