"""End-of-run report: a NLL-oracle table and a plot like the paper's Figure 2."""

import math
import os


def summarize(history):
    """MLE result, best and final adversarial NLL-oracle (and NLL-test)."""
    mle = [r for r in history if r["phase"] == "mle"]
    adversarial = [r for r in history if r["phase"] == "adversarial" and r["step"] > 0]
    rows = []
    if mle:
        rows.append(("MLE (end of pre-training)", mle[-1]))
    if adversarial:
        best = min(adversarial, key=lambda r: r["nll_oracle"])
        rows.append((f"SeqGAN best (iteration {best['step']})", best))
        rows.append((f"SeqGAN final (iteration {adversarial[-1]['step']})", adversarial[-1]))
    return rows


def format_table(history):
    rows = summarize(history)
    if not rows:
        return "no evaluations recorded"
    width = max(len(name) for name, _ in rows)
    lines = [f"{'':{width}}  NLL-oracle  NLL-test", f"{'-' * width}  ----------  --------"]
    for name, record in rows:
        lines.append(f"{name:{width}}  {record['nll_oracle']:10.4f}  {record['nll_test']:8.4f}")
    return "\n".join(lines)


def write_plot(history, path, title="NLL-oracle during training"):
    """Plots NLL-oracle (and NLL-test) against MLE epochs, then adversarial
    iterations after a dashed line, as in the paper's Figure 2."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mle = [r for r in history if r["phase"] == "mle"]
    adversarial = [r for r in history if r["phase"] == "adversarial"]
    offset = mle[-1]["step"] if mle else 0
    figure, axis = plt.subplots(figsize=(7, 4.5))
    for key, style in (("nll_oracle", "-"), ("nll_test", ":")):
        label = "NLL-oracle" if key == "nll_oracle" else "NLL-test"
        if mle:
            axis.plot([r["step"] for r in mle], [r[key] for r in mle], "b" + style, marker=".", label=f"MLE {label}")
        if adversarial:
            axis.plot(
                [offset + r["step"] for r in adversarial],
                [r[key] for r in adversarial],
                "r" + style,
                marker=".",
                label=f"SeqGAN {label}",
            )
    if mle and adversarial:
        axis.axvline(offset, color="gray", linestyle="--", linewidth=1)
    axis.set_xlabel("MLE epochs, then adversarial iterations")
    axis.set_ylabel("mean NLL per token (nats)")
    axis.set_title(title)
    values = [r[k] for r in mle + adversarial for k in ("nll_oracle", "nll_test") if math.isfinite(r[k])]
    if values:
        axis.set_ylim(min(values) - 0.1, max(values) + 0.1)
    axis.legend()
    axis.grid(alpha=0.3)
    figure.tight_layout()
    tmp = path + ".tmp.png"
    figure.savefig(tmp, dpi=120)
    plt.close(figure)
    os.replace(tmp, path)
    return path
