"""Evaluation of a run, called by the loop at its cadence: NLL-oracle
(synthetic), NLL-test, D's accuracy on real and generated rows, BLEU-n
against held-out references, Self-BLEU, the distinct share, and (text) the
decoded samples written to the run directory; and at the end of a run, on
request, the same figures over sampling temperatures (`temperature_curve`).

Every figure comes from the same seeded draw of samples at each evaluation,
so curves compare like with like.
"""

import os

import numpy as np
import tensorflow as tf

from tfseqgan import bleu, text


class Evaluator:
    """Scores the generator (and D) of `trainer`.

    Args:
        trainer: the `loop.Trainer` whose models, steps, data and configs it reads.
    """

    def __init__(self, trainer):
        self.trainer = trainer
        replicas = trainer.replicas

        def nll_sums(model, temperature=1.0):
            @replicas.compiled
            def sums(tokens, weights):  # (negative log-likelihood, positions) over weighted rows
                log_probs = model.token_log_probs(tokens, training=False, temperature=temperature)  # (rows, time)
                mask = trainer.mask(tokens) * weights[:, tf.newaxis]
                return tf.stack([-tf.reduce_sum(log_probs * mask), tf.reduce_sum(mask)])

            return sums

        @replicas.compiled
        def judged_real(tokens, weights):  # (rows judged real, rows)
            real = tf.cast(trainer.discriminator.real_probability(tokens) > 0.5, tf.float32)
            return tf.stack([tf.reduce_sum(real * weights), tf.reduce_sum(weights)])

        self.nll_step = {("generator", 1.0): replicas.summed(nll_sums(trainer.generator))}
        if trainer.oracle is not None:
            self.nll_step[("oracle", 1.0)] = replicas.summed(nll_sums(trainer.oracle))
        # The generator's NLL at another temperature, compiled on first use (temperature curves).
        self._tempered_nll = lambda temperature: replicas.summed(nll_sums(trainer.generator, temperature))
        self.judged_real_step = replicas.summed(judged_real)
        self.bleu_references = None
        self.real_text_record = None

    # ------------------------------------------------------------ references
    def prepare_oracle(self, test_data):
        """BLEU of id sequences against the held-out oracle samples (as Texygen scores its oracle runs)."""
        self.bleu_references = bleu.Reference(test_data.numpy().tolist(), self.trainer.text_config.bleu_max_order)

    def prepare_text(self):
        """BLEU references (a seeded subset of the held-out split when asked)
        and the real-data ceiling: training lines that are not references,
        scored like generated text (`real_text_record`)."""
        trainer = self.trainer
        c, corpus = trainer.text_config, trainer.corpus
        picker = np.random.default_rng([trainer.train_config.seed, 11])
        references = corpus.test_tokens
        if c.num_bleu_references and c.num_bleu_references < len(references):
            chosen = np.sort(picker.choice(len(references), c.num_bleu_references, replace=False))
            references = [references[i] for i in chosen]
        self.bleu_references = bleu.Reference(references, c.bleu_max_order)
        excluded = {tuple(r) for r in references}
        candidates = [tokens for tokens in corpus.train_tokens if tuple(tokens) not in excluded]
        count = min(c.num_bleu_samples, len(candidates))
        if count < 2:
            trainer.log("real data: fewer than 2 training lines outside the references; no ceiling to report")
            return
        real = [candidates[i] for i in np.sort(picker.choice(len(candidates), count, replace=False))]
        self.real_text_record = {"phase": "real", "step": 0, **self.text_scores(real)}
        trainer.log(
            f"real data ({count} training lines vs {len(references)} references): "
            + "  ".join(f"{k} {v:.4f}" for k, v in self.real_text_record.items() if isinstance(v, float))
        )

    # ---------------------------------------------------------------- scores
    def text_scores(self, hypotheses):
        """BLEU-n against the references, Self-BLEU-n, and the distinct share."""
        order = self.trainer.text_config.bleu_max_order
        scores = {}
        per_sentence = [self.bleu_references.score(h) for h in hypotheses]
        for n in range(2, order + 1):
            scores[f"bleu_{n}"] = float(np.mean([s[n] for s in per_sentence]))
        if len(hypotheses) > 1:
            scores.update({f"self_bleu_{n}": float(v) for n, v in bleu.self_bleu(hypotheses, order).items()})
        distinct = len({tuple(h) for h in hypotheses})
        scores["distinct_samples"] = distinct
        scores["distinct_share"] = distinct / max(1, len(hypotheses))
        return scores

    def _summed_over(self, step, tokens, rows_per_replica=512):
        """Sums `step` (tokens, weights) -> vector over all rows of `tokens`,
        spread over the replicas in batches (the last one padded with
        zero-weight rows)."""
        replicas = self.trainer.replicas
        batch = rows_per_replica * replicas.count
        rows = int(tokens.shape[0])
        padded = -(-rows // batch) * batch
        weights = tf.concat([tf.ones([rows]), tf.zeros([padded - rows])], axis=0)
        tokens = tf.pad(tokens, [[0, padded - rows], [0, 0]])
        total = 0.0
        for batch_tokens, batch_weights in replicas.batches((tokens, weights), batch):
            total += step(batch_tokens, batch_weights).numpy()
        return total

    def mean_token_nll(self, tokens, model="generator", temperature=1.0):
        """Mean per-token NLL of `tokens` under the generator (at `temperature`)
        or the oracle (text: up to the end token), computed under the strategy."""
        key = (model, float(temperature))
        if key not in self.nll_step:
            if model != "generator":
                raise ValueError(f"the {model}'s NLL is only computed at temperature 1")
            self.nll_step[key] = self._tempered_nll(float(temperature))
        nll, positions = self._summed_over(self.nll_step[key], tokens)
        return float(nll / max(positions, 1.0))

    def share_judged_real(self, tokens):
        """The share of `tokens` rows with D's P(real) > 0.5."""
        real, rows = self._summed_over(self.judged_real_step, tokens)
        return float(real / max(rows, 1.0))

    def evaluate(self, phase, step, temperature=1.0):
        """The figures of one evaluation, as a record {phase, step, ...}.

        The samples are drawn, and NLL-test computed, from softmax(logits /
        temperature). The points of a temperature curve (phase "temperature")
        write no samples and do not ask D.
        """
        trainer = self.trainer
        t, c = trainer.train_config, trainer.text_config
        eval_seed = [t.seed, 7]  # the same draw each time: curves compare like with like
        record = {"phase": phase, "step": int(step)}
        curve_point = phase == "temperature"
        test_data = trainer.test_data
        if trainer.corpus is None:
            samples = trainer.sample(t.num_eval_samples, seed=eval_seed, temperature=temperature)
            record["nll_oracle"] = self.mean_token_nll(samples, model="oracle")
            record["nll_test"] = self.mean_token_nll(test_data, temperature=temperature)
            record.update(self.text_scores(samples[: c.num_bleu_samples].numpy().tolist()))
        else:
            samples = trainer.sample(c.num_bleu_samples, seed=eval_seed, temperature=temperature)
            record["nll_test"] = self.mean_token_nll(test_data, temperature=temperature)
            record.update(self.text_scores([trainer.corpus.vocabulary.decode(row) for row in samples.numpy()]))
            if not curve_point:
                self.write_samples(phase, step, samples)
        count = min(t.num_discriminator_eval_samples, int(test_data.shape[0]))
        if count and not curve_point:
            record["d_accuracy_real"] = self.share_judged_real(test_data[:count])
            record["d_accuracy_fake"] = 1.0 - self.share_judged_real(samples[:count])
        return record

    def temperature_curve(self, temperatures):
        """One record {temperature, nll_oracle (synthetic), nll_test, bleu_n,
        self_bleu_n, distinct_share} per temperature: the quality-diversity
        curve of Caccia et al. 2020 (lower temperature: higher quality, less
        diversity), from the same seeded draw as every evaluation."""
        curve = []
        for temperature in temperatures:
            record = self.evaluate("temperature", 0, temperature=temperature)
            for key in ("phase", "step", "d_accuracy_real", "d_accuracy_fake"):
                record.pop(key, None)
            curve.append({"temperature": float(temperature), **record})
        return curve

    def write_samples(self, phase, step, samples):
        """Decoded samples to run_dir/samples/<phase>_<step>.txt; a few on the terminal."""
        trainer = self.trainer
        lines = trainer.corpus.decode(samples)
        folder = os.path.join(trainer.output_dir, "samples")
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, f"{phase}_{int(step):04d}.txt")
        with open(path + ".tmp", "w", encoding="utf-8") as stream:
            stream.write("\n".join(lines) + "\n")
        os.replace(path + ".tmp", path)
        shown = lines[: trainer.text_config.num_samples_shown]
        if shown and trainer.run_config.progress:
            poems = trainer.corpus.tokenizer == "char"
            trainer.log(f"samples ({path}):")
            for line in shown:
                trainer.log(("  " + text.format_poem(line).replace("\n", "\n  ")) if poems else f"  {line}")
