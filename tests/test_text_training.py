"""Training on text: the trainer on a tiny corpus, and main.py's handling of text runs and bad corpora."""

import dataclasses

import numpy as np
import pytest
from conftest import tiny_configs
from test_algorithm import numpy_generator_log_probs
from test_main import PARALLEL_PROCESSES, RUN_TIMEOUT_S, TINY_FLAGS, message_lines, run_main, start_main

from tfseqgan import bleu, text
from tfseqgan.config import TextConfig
from tfseqgan.training.loop import Trainer

LENGTH = 6


def write_corpus(folder, lines, name):
    path = folder / name
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return str(path)


@pytest.fixture(scope="module")
def text_run(tmp_path_factory):
    """A tiny run on a corpus whose every line is 'the cat sat .' (4 tokens, then </s>, then <pad>)."""
    folder = tmp_path_factory.mktemp("text_run")
    train = write_corpus(folder, ["The cat sat."] * 96 + ["a dog ran home ."] * 32, "train.txt")
    test = write_corpus(folder, ["the cat sat .", "a dog ran ."], "test.txt")
    corpus = text.load_corpus(train, test, "word", LENGTH, batch_size=16)
    model, oracle, train_config, run = tiny_configs(
        folder / "run", mle_epochs=12, generator_learning_rate=0.05, adversarial_iterations=1
    )
    model = dataclasses.replace(model, vocabulary_size=len(corpus.vocabulary), start_token=text.START_ID)
    text_config = TextConfig(dataset="text", num_bleu_samples=40, bleu_max_order=3)
    trainer = Trainer(model, oracle, train_config, run, log=lambda *a: None, corpus=corpus, text_config=text_config)
    history = trainer.run()
    return trainer, corpus, folder / "run", history


def test_generator_learns_to_end_its_sequences(text_run):
    trainer, corpus, _, _ = text_run
    samples = trainer.sample(64, seed=[3, 4]).numpy()
    the, cat, sat, stop = (corpus.vocabulary.ids[t] for t in ("the", "cat", "sat", "."))
    expected = [the, cat, sat, stop, text.END_ID, text.PAD_ID]
    assert np.mean([list(row) == expected for row in samples]) > 0.5
    # Whatever was sampled, nothing but padding follows an end token.
    np.testing.assert_array_equal(samples, text.pad_after_end(samples).numpy())
    assert not np.isin(samples[:, 0], [text.PAD_ID, text.START_ID]).any()


def test_text_nll_test_counts_the_positions_up_to_the_end_token(text_run):
    """NLL-test of a text run against NumPy: the mean over each row's tokens up
    to and including its end token, the padding after it left out."""
    trainer, _, _, history = text_run
    tokens = trainer.test_data.numpy()
    has_end = (tokens == text.END_ID).any(axis=1)
    assert has_end.all()
    ends = np.argmax(tokens == text.END_ID, axis=1)
    mask = np.arange(tokens.shape[1])[np.newaxis] <= ends[:, np.newaxis]
    assert not mask.all()  # there is padding to leave out
    log_probs = numpy_generator_log_probs(trainer.generator, tokens)
    assert history[-1]["nll_test"] == pytest.approx(-(log_probs * mask).sum() / mask.sum(), rel=1e-5)


def test_text_evaluation_records_bleu_and_writes_decoded_samples(text_run):
    trainer, _, run_dir, history = text_run
    final = history[-1]
    assert final["phase"] == "adversarial"
    for key in ("bleu_2", "bleu_3", "self_bleu_2", "self_bleu_3", "nll_test", "distinct_share"):
        assert key in final, key
    assert "nll_oracle" not in final and "bleu_4" not in final
    assert final["bleu_2"] > 0.5  # mostly 'the cat sat .', a reference
    real = trainer.real_text_record
    # The real-data ceiling leaves out training lines that are references: only 'a dog ran home .' remains.
    expected = bleu.bleu([["a", "dog", "ran", "home", "."]], [["the", "cat", "sat", "."], ["a", "dog", "ran", "."]], 3)
    assert real["phase"] == "real" and real["bleu_2"] == pytest.approx(expected[2], abs=1e-12)
    assert real["self_bleu_2"] == pytest.approx(1.0) and real["distinct_samples"] == 1
    lines = (run_dir / "samples" / "adversarial_0001.txt").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 40 and "the cat sat ." in lines


def test_rewards_see_completions_in_padded_form(text_run):
    trainer, _, _, _ = text_run
    seen = []
    original = trainer.discriminator.real_probability

    def spy(tokens):
        seen.append(tokens)
        return original(tokens)

    import tensorflow as tf

    samples = trainer.sample(4, seed=[5, 6])
    from tfseqgan import rollout

    rollout.compute_rewards(
        trainer.objective.rollout_policy,
        spy,
        samples,
        2,
        tf.constant([1, 1], tf.int64),
        postprocess=trainer.postprocess,
    )
    scored = tf.concat(seen, axis=0).numpy()
    np.testing.assert_array_equal(scored, text.pad_after_end(scored).numpy())


# ------------------------------------------------------------------ CLI
TEXT_FLAGS = [f for f in TINY_FLAGS if not f.startswith(("--vocabulary_size", "--num_real_samples", "--num_test"))]


def test_cli_text_run_writes_vocabulary_samples_and_report(tmp_path):
    lines = ["The cat sat."] * 50 + ["a cat ran ."] * 10 + ["a dog ran home fast today ."] * 4
    train = write_corpus(tmp_path, lines, "train.txt")
    test = write_corpus(tmp_path, ["the cat sat .", "a dog ran ."], "test.txt")
    run_dir = tmp_path / "run"
    result = run_main(
        *TEXT_FLAGS,
        "--dataset=text",
        f"--train_file={train}",
        f"--test_file={test}",
        "--num_bleu_samples=20",
        f"--run_dir={run_dir}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "4 of 64 lines longer than 6 tokens, skipped" in result.stdout
    vocabulary = text.Vocabulary.load(str(run_dir / "vocab.txt"))
    assert vocabulary.tokens[:7] == ["<pad>", "<s>", "</s>", "<unk>", ".", "cat", "sat"]
    assert (run_dir / "bleu.png").read_bytes()[:4] == b"\x89PNG"
    report = (run_dir / "report.txt").read_text()
    assert "BLEU-2" in report and "Self-BLEU-2" in report and "real data (ceiling)" in report
    assert "--dataset=text" in (run_dir / "flags.cfg").read_text()
    samples = sorted((run_dir / "samples").iterdir())
    assert samples and all(p.read_text(encoding="utf-8").strip() for p in samples)


def bad_corpora(folder):
    """name: (extra flags, words every message line must contain)."""
    good = write_corpus(folder, ["a b c"] * 40, "good.txt")
    empty = write_corpus(folder, [], "empty.txt")
    (folder / "latin1.txt").write_bytes(b"a b c\ncaf\xe9 au lait\n")
    (folder / "garbage.bin").write_bytes(bytes(range(256)) * 4)
    small = write_corpus(folder, ["a b c"] * 10, "small.txt")
    (folder / "no_poems").mkdir()

    def text_flags(train, test=good):
        return ["--dataset=text", f"--train_file={train}", f"--test_file={test}"]

    return {
        "missing_file": (text_flags(str(folder / "nope.txt")), ["nope.txt", "no such file"]),
        "empty_file": (text_flags(empty), ["empty.txt", "empty file"]),
        "not_utf8": (text_flags(good, str(folder / "latin1.txt")), ["latin1.txt:2:", "not UTF-8"]),
        "binary": (text_flags(str(folder / "garbage.bin")), ["garbage.bin:1:", "binary data"]),
        "smaller_than_a_batch": (text_flags(small), ["small.txt", "fewer than one batch", "--batch_size=16"]),
        "vocabulary_too_small": (text_flags(good) + ["--max_vocab_size=3"], ["--max_vocab_size=3", "reserves 4 ids"]),
        "data_dir_without_files": (
            ["--dataset=poems", f"--data_dir={folder / 'no_poems'}"],
            ["--data_dir=", "poems/train.txt", "poems/valid.txt"],
        ),
        "text_without_files": (["--dataset=text"], ["--dataset=text needs --train_file and --test_file"]),
    }


@pytest.fixture(scope="module")
def bad_corpus_results(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad_corpora")
    cases = bad_corpora(folder)
    pending = [(name, args + TEXT_FLAGS + [f"--run_dir={folder / 'runs' / name}"]) for name, (args, _) in cases.items()]
    running, results = {}, {}
    while pending or running:
        while pending and len(running) < PARALLEL_PROCESSES:
            name, args = pending.pop(0)
            running[name] = start_main(*args)
        name, process = next(iter(running.items()))
        stdout, stderr = process.communicate(timeout=RUN_TIMEOUT_S)
        results[name] = (process.returncode, stdout, stderr)
        del running[name]
    return folder, cases, results


@pytest.mark.parametrize(
    "case",
    [
        "missing_file",
        "empty_file",
        "not_utf8",
        "binary",
        "smaller_than_a_batch",
        "vocabulary_too_small",
        "data_dir_without_files",
        "text_without_files",
    ],
)
def test_bad_corpus_gives_one_line_error_and_leaves_no_run_directory(bad_corpus_results, case):
    folder, cases, results = bad_corpus_results
    returncode, stdout, stderr = results[case]
    assert returncode not in (0, None)
    errors = [line for line in message_lines(stdout, stderr) if line.startswith("error:")]
    assert len(errors) == 1, stderr[-2000:]
    assert all(needle in errors[0] for needle in cases[case][1]), errors[0]
    assert "Traceback" not in stderr
    assert not (folder / "runs" / case).exists()


def test_trainer_rewards_fast_path_equals_plain_scoring_of_padded_completions(text_run):
    import tensorflow as tf

    from tfseqgan import rollout

    trainer, _, _, _ = text_run
    samples = trainer.sample(8, seed=[7, 8])
    seed = tf.constant([2, 3], tf.int64)
    fast = trainer.objective.rewards(samples, seed, trainer.objective.real_batch())
    plain = rollout.compute_rewards(
        trainer.objective.rollout_policy,
        trainer.discriminator.real_probability,
        samples,
        trainer.train_config.num_rollouts,
        seed,
        postprocess=trainer.postprocess,
    )
    np.testing.assert_allclose(fast.numpy(), plain.numpy(), rtol=1e-5, atol=1e-6)
