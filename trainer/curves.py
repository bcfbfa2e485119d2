"""The training curves of a run as one PNG: loss, learning rate and logit scale against the step."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen before pyplot is imported)


def plot_training_curves(records: list[dict], path) -> None:
    if not records:
        return
    steps = [record["step"] for record in records]
    panels = [("loss", "contrastive loss"), ("lr", "learning rate"), ("logit_scale", "logit scale (1 / temperature)")]
    figure, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), constrained_layout=True)
    for axis, (key, title) in zip(axes, panels):
        axis.plot(steps, [record[key] for record in records], color="tab:blue", linewidth=1.5)
        axis.set_title(title)
        axis.set_xlabel("step")
        axis.grid(alpha=0.3)
    axes[1].ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
    axes[2].axhline(100, color="tab:red", linestyle="--", linewidth=1, label="cap (100)")
    axes[2].legend(loc="lower right")
    figure.savefig(path, dpi=120)
    plt.close(figure)
