"""One training run from typed configs, as `tfseqgan-train` and the API run
it: the run directory's lock and files (flags.cfg, vocabulary, model.json,
report.txt, the plot), the corpus, the trainer, stop signals and the final
report.

`tfseqgan.api.train_parsed` (which the CLI calls) turns flags into configs
and calls `train`; errors come back as exceptions (`text.CorpusError`,
`loop.TrainingError`, `ValueError`, `runlock.RunDirectoryInUse`, `OSError`),
which the CLI prints as one line.
"""

import dataclasses
import os
import signal

from tfseqgan import distribute, report, runlock, text
from tfseqgan.training.loop import Trainer


def load_corpus(text_config, model, train, run):
    """The corpus of a text run (raises text.CorpusError), and the model
    config with the vocabulary's size and <s> as the start token. A resumed
    run keeps the vocabulary saved in its run directory."""
    c = text_config
    if c.dataset == "text":
        train_path, test_path = c.train_file, c.test_file
        tokenizer = c.tokenizer or "word"
    else:
        train_path, test_path = text.dataset_paths(c.data_dir, c.dataset)
        tokenizer = c.tokenizer or text.DATASETS[c.dataset]["tokenizer"]
    saved = os.path.join(run.run_dir, text.VOCABULARY_FILE)
    vocabulary = text.Vocabulary.load(saved) if run.resume and os.path.isfile(saved) else None
    corpus = text.load_corpus(
        train_path,
        test_path,
        tokenizer,
        model.sequence_length,
        train.batch_size,
        max_vocab_size=c.max_vocab_size,
        min_count=c.min_count,
        overlong=c.overlong,
        name=c.dataset,
        vocabulary=vocabulary,
    )
    model = dataclasses.replace(model, vocabulary_size=len(corpus.vocabulary), start_token=text.START_ID)
    return corpus, model


def write_atomically(path, content):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as stream:
        stream.write(content)
    os.replace(tmp, path)


class Session:
    """A run in progress; `trainer` is None until it is built (for error messages)."""

    def __init__(self):
        self.trainer = None
        self.lock = None
        self.signals = []  # the stop signals received, in order

    def last_checkpoint(self):
        return self.trainer.checkpoint_manager.latest_checkpoint if self.trainer else None

    def train(self, model, oracle, train, run, text_config, strategy, flags_text="", log=print):
        """Trains (or resumes) the run in run.run_dir and writes its files.

        Args:
            model, oracle, train, run, text_config: the `config` dataclasses.
            strategy: the `tf.distribute.Strategy` (made before any other op).
            flags_text: the resolved flags, written to RUN/flags.cfg.
            log: a print-like function.

        Returns:
            The evaluation records, or None on a worker that is not the chief.

        Raises:
            loop.TrainingInterrupted: a SIGINT/SIGTERM stopped it (checkpoint written).
        """
        from tfseqgan.export.restore import write_model_json

        chief = distribute.is_chief(strategy)  # only the chief locks and writes the run directory
        # An existing run directory is locked at once, so a second run is refused before any work.
        if self.lock is None:  # the API may hold it already (it writes the run's data first)
            self.lock = runlock.acquire(run.run_dir) if chief and os.path.isdir(run.run_dir) else None
        corpus = None
        if text_config.dataset != "synthetic":
            corpus, model = load_corpus(text_config, model, train, run)  # before anything is written
            log(corpus.summary())
        trainer = Trainer(model, oracle, train, run, log=log, corpus=corpus, text_config=text_config, strategy=strategy)
        self.trainer = trainer
        if not run.resume:
            trainer.restore_or_start()  # raises the one-line refusal when the directory holds checkpoints
        os.makedirs(run.run_dir, exist_ok=True)
        if chief:
            self.lock = self.lock or runlock.acquire(run.run_dir)  # held until the process ends
            write_atomically(os.path.join(run.run_dir, "flags.cfg"), flags_text)
            if corpus is not None:
                corpus.vocabulary.save(os.path.join(run.run_dir, text.VOCABULARY_FILE))
            write_model_json(
                run.run_dir,
                trainer.generator,
                "ids" if corpus is None else corpus.tokenizer,
                trainer.end_token,
                text_config.dataset,
            )

        def stop(signum, frame):
            self.signals.append(signum)
            trainer.request_stop()

        previous = {signum: signal.signal(signum, stop) for signum in (signal.SIGINT, signal.SIGTERM)}
        try:
            history = trainer.run()
        finally:  # a stop request means nothing once the trainer is done: the caller's handlers again
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        if distribute.num_workers(strategy) > 1:
            log(f"weights sha256 ({distribute.worker_name(strategy)}): {trainer.weights_digest()}")
        if not chief:
            return None
        real = trainer.real_text_record
        method = trainer.objective.title
        table = report.format_table(history, real, method)
        log("\n" + table)
        write_atomically(os.path.join(run.run_dir, "report.txt"), table + "\n")
        if run.write_plot and history:
            path = report.write_plot(history, os.path.join(run.run_dir, report.plot_name(history)), real, method)
            log(f"plot: {path}")
        return history
