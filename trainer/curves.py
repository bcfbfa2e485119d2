"""The training curves of a run as one PNG: loss, learning rate, the objective's logged values (CLIP: the logit
scale), throughput and each evaluation task's metrics against the step."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen before pyplot is imported)

from trainer.optim import MAX_LOGIT_SCALE  # noqa: E402
from utils.atomic_files import write_atomically  # noqa: E402

PANELS = (("loss", None), ("lr", "learning rate"), ("logit_scale", "logit scale (1 / temperature)"),
          ("logit_bias", "logit bias (SigLIP)"),
          ("samples_per_s", "throughput (samples/s)"))


def plot_training_curves(records: list[dict], path, loss_name: str, title: str = "") -> None:
    """One panel per logged training value (the loss panel titled `loss_name`), then one per evaluation task
    (its `<task>/<metric>` values as lines), all on the training's step axis."""
    training = [record for record in records if "loss" in record]
    evaluations = [record for record in records if any("/" in key for key in record)]
    if not training and not evaluations:
        return
    panels = [(key, label or loss_name) for key, label in PANELS if training and key in training[-1]]
    tasks = list(dict.fromkeys(key.split("/")[0] for record in evaluations for key in record if "/" in key))
    count = len(panels) + len(tasks)
    columns = count if count <= 5 else 4
    rows = -(-count // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4 * columns, 3.3 * rows), constrained_layout=True,
                                sharex=True, squeeze=False)  # one step axis for training and evaluation
    axes = list(axes.flat)
    for axis, (key, label) in zip(axes, panels):
        plot_training_panel(axis, training, key, label)
    for axis, task in zip(axes[len(panels):], tasks):
        plot_evaluation_panel(axis, evaluations, task)
    for axis in axes[count:]:
        axis.set_visible(False)
    if title:
        figure.suptitle(title)
    write_atomically(path, lambda file: figure.savefig(file, format="png", dpi=120))
    plt.close(figure)


def plot_training_panel(axis, records: list[dict], key: str, label: str) -> None:
    steps, values = [record["step"] for record in records], [record[key] for record in records]
    axis.plot(steps, values, color="tab:blue", linewidth=1.5, marker="." if len(steps) < 30 else None)
    style_axis(axis, label)
    if key == "lr":
        axis.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
    if key == "logit_scale" and max(values) > 0.5 * 2.718281828 ** MAX_LOGIT_SCALE:
        axis.axhline(2.718281828 ** MAX_LOGIT_SCALE, color="tab:red", linestyle="--", linewidth=1, label="cap")
        axis.legend(loc="lower right")
    if key == "samples_per_s":
        axis.set_ylim(bottom=0)


def plot_evaluation_panel(axis, records: list[dict], task: str) -> None:
    """Every metric of one evaluation task, one line each, marked at the steps it was scored."""
    metrics = list(dict.fromkeys(key for record in records for key in record if key.startswith(f"{task}/")))
    for index, metric in enumerate(metrics):
        scored = [record for record in records if metric in record]
        # line styles tell apart metrics that coincide (top-1 and mean per-class recall on a balanced set)
        axis.plot([record["step"] for record in scored], [record[metric] for record in scored], marker=".",
                  linewidth=1.5, linestyle=("-", "--", ":", "-.")[index % 4], label=metric.split("/", 1)[1])
    style_axis(axis, f"{task} (evaluation)")
    axis.legend(fontsize="small")


def style_axis(axis, label: str) -> None:
    axis.set_title(label)
    axis.tick_params(labelbottom=True)
    axis.set_xlabel("step")
    axis.grid(alpha=0.3)
