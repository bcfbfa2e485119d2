"""The training curves of a run as one PNG: loss, learning rate, the objective's logged values (CLIP: the logit
scale) and throughput against the step."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen before pyplot is imported)

from trainer.optim import MAX_LOGIT_SCALE  # noqa: E402
from utils.atomic_files import write_atomically  # noqa: E402

PANELS = (("loss", None), ("lr", "learning rate"), ("logit_scale", "logit scale (1 / temperature)"),
          ("samples_per_s", "throughput (samples/s)"))


def plot_training_curves(records: list[dict], path, loss_name: str, title: str = "") -> None:
    """One panel per logged value; the loss panel is titled `loss_name`."""
    if not records:
        return
    steps = [record["step"] for record in records]
    panels = [(key, label or loss_name) for key, label in PANELS if key in records[-1]]
    figure, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.3), constrained_layout=True)
    for axis, (key, label) in zip(axes, panels):
        values = [record[key] for record in records]
        axis.plot(steps, values, color="tab:blue", linewidth=1.5, marker="." if len(steps) < 30 else None)
        axis.set_title(label)
        axis.set_xlabel("step")
        axis.grid(alpha=0.3)
        if key == "lr":
            axis.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
        if key == "logit_scale" and max(values) > 0.5 * 2.718281828 ** MAX_LOGIT_SCALE:
            axis.axhline(2.718281828 ** MAX_LOGIT_SCALE, color="tab:red", linestyle="--", linewidth=1, label="cap")
            axis.legend(loc="lower right")
        if key == "samples_per_s":
            axis.set_ylim(bottom=0)
    if title:
        figure.suptitle(title)
    write_atomically(path, lambda file: figure.savefig(file, format="png", dpi=120))
    plt.close(figure)
