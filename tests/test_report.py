"""Report: the end-of-run NLL table and plot."""

from tfseqgan import report

HISTORY = [
    {"phase": "mle", "step": 0, "nll_oracle": 9.0, "nll_test": 8.0},
    {"phase": "mle", "step": 5, "nll_oracle": 7.0, "nll_test": 6.5},
    {"phase": "discriminator", "step": 1, "nll_oracle": 7.0, "nll_test": 6.5},
    {"phase": "adversarial", "step": 0, "nll_oracle": 7.0, "nll_test": 6.5},
    {"phase": "adversarial", "step": 1, "nll_oracle": 6.0, "nll_test": 6.4},
    {"phase": "adversarial", "step": 2, "nll_oracle": 6.5, "nll_test": 6.3},
]


def test_summarize_picks_end_of_mle_best_and_final():
    rows = report.summarize(HISTORY)
    assert [name for name, _ in rows] == [
        "MLE (end of pre-training)",
        "SeqGAN best (iteration 1)",
        "SeqGAN final (iteration 2)",
    ]
    assert [record["nll_oracle"] for _, record in rows] == [7.0, 6.0, 6.5]


def test_format_table():
    table = report.format_table(HISTORY)
    lines = table.splitlines()
    assert "NLL-oracle" in lines[0] and "NLL-test" in lines[0]
    assert lines[2].startswith("MLE (end of pre-training)") and "7.0000" in lines[2] and "6.5000" in lines[2]
    assert len(lines) == 5
    assert report.format_table([]) == "no evaluations recorded"


def test_write_plot(tmp_path):
    path = report.write_plot(HISTORY, str(tmp_path / "nll.png"))
    assert path == str(tmp_path / "nll.png")
    assert (tmp_path / "nll.png").read_bytes()[:4] == b"\x89PNG"
    assert [p.name for p in tmp_path.iterdir()] == ["nll.png"]  # no temporary file left


def test_the_adversarial_rows_and_curves_are_named_after_the_method(tmp_path):
    rows = report.summarize(HISTORY, method="WGAN-GP")
    assert [name for name, _ in rows][1:] == ["WGAN-GP best (iteration 1)", "WGAN-GP final (iteration 2)"]
    assert "Gumbel final (iteration 2)" in report.format_table(HISTORY, method="Gumbel")
