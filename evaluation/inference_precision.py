"""`--precision auto` for inference: the hardware's choice, or a measurement of this model's image tower at the
evaluation batch size where the hardware leaves it open (utils.precision_calibration)."""
import torch

from utils.precision import autocast
from utils.precision_calibration import PrecisionDecision, Workload, decide_precision


def inference_workload(model, device, batch_size: int, channels_last: bool) -> Workload:
    """Image-tower forward passes on random images, as the evaluation loops run them (no gradients; the model in
    the state the caller will use, e.g. after model.inference.prepare_for_inference)."""
    side = model.config.image_size
    images = torch.randn(batch_size, 3, side, side, generator=torch.Generator().manual_seed(0)).to(device)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)

    def make_step(precision: str):
        def step():
            with torch.no_grad(), autocast(device, precision):
                model.encode_image(images)
        return step
    identity = {"task": "inference", "model": repr(model.config), "batch_size": batch_size,
                "channels_last": channels_last}
    return Workload(make_step, batch_size, identity)


def choose_inference_precision(requested: str, model, device, batch_size: int,
                               channels_last: bool = True) -> PrecisionDecision:
    return decide_precision(requested, device, inference_workload(model, device, batch_size, channels_last))
