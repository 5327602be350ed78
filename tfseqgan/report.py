"""End-of-run report: a table of the MLE, best and final adversarial figures,
and a plot against training progress like the paper's Figure 2.

Synthetic runs are judged by NLL-oracle (lower is better); text runs by BLEU-2
against the held-out references (higher is better) beside Self-BLEU-2 (lower
is more diverse), with the real-data ceiling as the last row.
"""

import math
import os

# (key, column title, format) of each kind of run.
SYNTHETIC_COLUMNS = (("nll_oracle", "NLL-oracle", "{:10.4f}"), ("nll_test", "NLL-test", "{:8.4f}"))
TEXT_COLUMNS = (
    ("bleu_2", "BLEU-2", "{:6.4f}"),
    ("bleu_3", "BLEU-3", "{:6.4f}"),
    ("bleu_4", "BLEU-4", "{:6.4f}"),
    ("bleu_5", "BLEU-5", "{:6.4f}"),
    ("self_bleu_2", "Self-BLEU-2", "{:11.4f}"),
    ("self_bleu_3", "Self-BLEU-3", "{:11.4f}"),
    ("self_bleu_4", "Self-BLEU-4", "{:11.4f}"),
    ("self_bleu_5", "Self-BLEU-5", "{:11.4f}"),
    ("distinct_share", "distinct", "{:8.3f}"),
    ("nll_test", "NLL-test", "{:8.4f}"),
)


def is_text(history):
    """A text run's history: BLEU and no NLL-oracle (synthetic runs record both)."""
    return any("bleu_2" in record for record in history) and not any("nll_oracle" in record for record in history)


def summarize(history, real=None, method="SeqGAN"):
    """(name, record) rows: end of MLE, best and final adversarial (named
    after the adversarial `method`), and the real-data ceiling when given.
    "Best" is the lowest NLL-oracle, or for text the highest BLEU-2."""
    text = is_text(history)
    mle = [r for r in history if r["phase"] == "mle"]
    adversarial = [r for r in history if r["phase"] == "adversarial" and r["step"] > 0]
    rows = []
    if mle:
        rows.append(("MLE (end of pre-training)", mle[-1]))
    if adversarial:
        if text:
            best = max(adversarial, key=lambda r: r["bleu_2"])
        else:
            best = min(adversarial, key=lambda r: r["nll_oracle"])
        rows.append((f"{method} best (iteration {best['step']})", best))
        rows.append((f"{method} final (iteration {adversarial[-1]['step']})", adversarial[-1]))
    if real is not None:
        rows.append(("real data (ceiling)", real))
    return rows


def format_table(history, real=None, method="SeqGAN"):
    rows = summarize(history, real, method)
    if not rows:
        return "no evaluations recorded"
    columns = TEXT_COLUMNS if is_text(history) else SYNTHETIC_COLUMNS
    columns = [c for c in columns if any(c[0] in record for _, record in rows)]
    width = max(len(name) for name, _ in rows)
    cells = [[fmt.format(record[key]) if key in record else "" for key, _, fmt in columns] for _, record in rows]
    widths = [max(len(title), *(len(row[i]) for row in cells)) for i, (_, title, _) in enumerate(columns)]
    lines = [
        f"{'':{width}}  " + "  ".join(f"{title:>{w}}" for (_, title, _), w in zip(columns, widths)),
        f"{'-' * width}  " + "  ".join("-" * w for w in widths),
    ]
    for (name, _), row in zip(rows, cells):
        lines.append(f"{name:{width}}  " + "  ".join(f"{cell:>{w}}" for cell, w in zip(row, widths)))
    return "\n".join(lines)


def plot_name(history):
    return "bleu.png" if is_text(history) else "nll_oracle.png"


def write_plot(history, path, real=None, method="SeqGAN"):
    """Plots NLL-oracle and NLL-test (synthetic) or BLEU-2 and Self-BLEU-2
    (text, with the real data's as horizontal lines) against MLE epochs,
    then adversarial iterations after a dashed line (the paper's Figure 2)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    text = is_text(history)
    if text:
        curves = (("bleu_2", "BLEU-2", "-"), ("self_bleu_2", "Self-BLEU-2", ":"))
        title, ylabel, margin = "BLEU-2 against the held-out text", "score", 0.02
    else:
        curves = (("nll_oracle", "NLL-oracle", "-"), ("nll_test", "NLL-test", ":"))
        title, ylabel, margin = "NLL-oracle during training", "mean NLL per token (nats)", 0.1
    mle = [r for r in history if r["phase"] == "mle"]
    adversarial = [r for r in history if r["phase"] == "adversarial"]
    offset = mle[-1]["step"] if mle else 0
    figure, axis = plt.subplots(figsize=(7, 4.5))
    values = []
    for key, label, style in curves:
        if mle:
            axis.plot([r["step"] for r in mle], [r[key] for r in mle], "b" + style, marker=".", label=f"MLE {label}")
        if adversarial:
            axis.plot(
                [offset + r["step"] for r in adversarial],
                [r[key] for r in adversarial],
                "r" + style,
                marker=".",
                label=f"{method} {label}",
            )
        if real is not None and key in real and math.isfinite(real[key]):
            axis.axhline(real[key], color="g", linestyle=style, linewidth=1, label=f"real data {label}")
            values.append(real[key])
        values += [r[key] for r in mle + adversarial if key in r and math.isfinite(r[key])]
    if mle and adversarial:
        axis.axvline(offset, color="gray", linestyle="--", linewidth=1)
    axis.set_xlabel("MLE epochs, then adversarial iterations")
    axis.set_ylabel(ylabel)
    axis.set_title(title)
    if values:
        axis.set_ylim(min(values) - margin, max(values) + margin)
    axis.legend()
    axis.grid(alpha=0.3)
    figure.tight_layout()
    tmp = path + ".tmp.png"
    figure.savefig(tmp, dpi=120)
    plt.close(figure)
    os.replace(tmp, path)
    return path
