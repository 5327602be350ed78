"""The Python API: train from your own code or a notebook, then sample, score
and export. The command line (`tfseqgan-train`, tfseqgan/cli/train.py) is a
thin layer over `train_parsed`; both run the same session, loop, objectives
and export. See docs/api.md.

    import tfseqgan
    data = tfseqgan.TextData.from_lines(my_sentences, test_fraction=0.1)
    run = tfseqgan.train(data, run_dir="runs/mine", preset="coco_quick", progress=False)
    print(run.metrics["bleu_2"], run.sample(3))
    folder = run.export()
    print(tfseqgan.load_sampler(folder).sample(3, seed=1))

Options are the flags of `tfseqgan-train` given as keyword arguments
(`mle_epochs=5`, `window_sizes=[2, 3]`, `objective="gumbel"`), with the same
defaults, bounds and checks; a bad one raises `ValueError` with the CLI's
one-line message.
"""

import dataclasses
import os
import random
import re
import tempfile

from absl import flags

from tfseqgan import options

__all__ = ["TextData", "train", "train_parsed", "Run", "Sampler", "load_sampler", "export_run"]

DATA_FOLDER = "data"  # RUN/data/{train,test}.txt: a TextData's lines, as the run reads them
PAD_ID = 0  # text.PAD_ID, fills a scored row after its end token (scored 0)
MAX_TEXTS = 10_000  # texts per complete / greedy / score call (tokenized in Python first)


@dataclasses.dataclass(frozen=True)
class TextData:
    """Your own corpus: training lines and held-out lines (BLEU references, NLL-test).

    One sentence (or poem) per item. `train` writes them, UTF-8, to
    RUN/data/train.txt and RUN/data/test.txt and trains on them as
    `--dataset=text` does; `tokenizer=` ("word" or "char") and the other text
    options apply as on the command line.
    """

    train_lines: tuple
    test_lines: tuple

    def __post_init__(self):
        for name in ("train_lines", "test_lines"):
            lines = tuple(getattr(self, name))
            for index, line in enumerate(lines):
                if not isinstance(line, str):
                    raise ValueError(f"TextData.{name}[{index}]: expected a string, got {type(line).__name__}")
                if "\n" in line or "\r" in line:
                    raise ValueError(f"TextData.{name}[{index}]: a line break inside a line (one sentence per item)")
            if not any(line.strip() for line in lines):
                raise ValueError(f"TextData.{name}: no non-empty lines")
            object.__setattr__(self, name, lines)

    @classmethod
    def from_lines(cls, lines, test_lines=None, test_fraction=0.1, seed=0):
        """From a list of strings; without `test_lines`, a seeded `test_fraction` of them is held out."""
        lines = list(lines)
        if test_lines is not None:
            return cls(lines, list(test_lines))
        if not 0.0 < test_fraction < 1.0:
            raise ValueError(f"test_fraction: expected a number in (0, 1), got {test_fraction}")
        order = list(range(len(lines)))
        random.Random(seed).shuffle(order)
        held_out = max(1, round(len(lines) * test_fraction))
        if held_out >= len(lines):
            raise ValueError(f"TextData.from_lines: {len(lines)} lines are too few to hold {held_out} out")
        test = sorted(order[:held_out])
        train = sorted(order[held_out:])
        return cls([lines[i] for i in train], [lines[i] for i in test])

    @classmethod
    def from_files(cls, train_file, test_file):
        """From two UTF-8 text files, one sentence a line (empty lines are skipped, as the CLI skips them)."""
        from tfseqgan import text

        return cls(text.read_lines(train_file), text.read_lines(test_file))

    def write(self, folder):
        """Writes train.txt and test.txt into `folder` (made if missing); returns the paths it wrote.

        A folder that already holds other lines is refused before anything is
        written: they belong to another run, and are not replaced. The same
        lines (a resumed run) are left as they are.
        """
        files = []
        for name, lines in (("train.txt", self.train_lines), ("test.txt", self.test_lines)):
            path = os.path.join(folder, name)
            content = "".join(line + "\n" for line in lines)
            if os.path.exists(path):
                with open(path, encoding="utf-8", errors="replace") as stream:
                    if stream.read() != content:
                        raise ValueError(f"{path}: holds other lines (another run's data); choose another run_dir")
            else:
                files.append((path, content))
        os.makedirs(folder, exist_ok=True)
        for path, content in files:
            temporary = path + ".tmp"
            with open(temporary, "w", encoding="utf-8") as stream:
                stream.write(content)
            os.replace(temporary, path)
        return [path for path, _ in files]


def _argument(name, value):
    """A keyword option as a command-line flag."""
    if isinstance(value, bool):
        return f"--{name}" if value else f"--no{name}"
    if isinstance(value, (list, tuple)):
        return f"--{name}=" + ",".join(str(item) for item in value)
    return f"--{name}={value}"


def parse_options(preset=None, **values):
    """A fresh FlagValues with every training flag: the preset's flagfile, then a `flagfile=` value,
    then the other values (later ones win, as on a command line), parsed as the CLI parses them
    (raises ValueError with the CLI's one-line message)."""
    fv = flags.FlagValues()
    options.define_flags(fv)
    unknown = sorted(name for name in values if name not in fv and name != "flagfile")
    if unknown:
        raise ValueError(f"{', '.join(unknown)}: no such option (the options are the flags of tfseqgan-train)")
    argv = options.expand_presets([f"--preset={preset}"] if preset else [])
    if "flagfile" in values:
        argv.append(_argument("flagfile", values.pop("flagfile")))
    argv += [_argument(name, value) for name, value in values.items()]
    try:
        fv(["tfseqgan", *argv])
    except flags.Error as error:
        raise ValueError(" ".join(str(error).split())) from None
    return fv


def _silent(*args, **kwargs):
    pass


def train(data=None, *, run_dir, preset=None, progress=True, log=None, export=False, **values):
    """Trains (MLE, D pre-training, then the adversarial objective) and returns the `Run`.

    Args:
        data: a `TextData`, or None for the flags' data set (default: the
            synthetic oracle benchmark; `dataset="poems"` with `data_dir=...`).
        run_dir: the run directory (checkpoints, metrics.jsonl, report); an
            existing one needs `resume=True`.
        preset: a shipped flagfile by name (`tfseqgan.preset_names()`), applied
            before `values`.
        progress: False prints no progress (no bars, no lines).
        log: a print-like function for the progress lines (default print).
        export: also export and verify into RUN/export at the end (as the
            CLI does by default); or call `Run.export()` later.
        **values: the flags of tfseqgan-train, e.g. `mle_epochs=5`,
            `objective="gumbel"`, `adversarial_iterations=20`; `flagfile=`
            loads a flagfile first (run_dir, progress and export stay as given
            here).

    Raises:
        ValueError: a bad option or data (one line; `text.CorpusError` is one).
        runlock.RunDirectoryInUse: another process trains in run_dir.
        loop.TrainingError: the run cannot go on (a NaN loss); the last good checkpoint is kept.
        loop.TrainingInterrupted: Ctrl-C or SIGTERM; the run is checkpointed.
    """
    if data is not None and not isinstance(data, TextData):
        raise ValueError(f"data: expected a tfseqgan.TextData, got {type(data).__name__}")
    data_files = {}
    if data is not None:  # your lines replace the data set a preset or flagfile names
        given = sorted(name for name in ("train_file", "test_file") if name in values)
        if values.get("dataset", "text") != "text" or given:
            clash = f"dataset={values['dataset']}" if "dataset" in values else ", ".join(given)
            raise ValueError(f"data= trains on your lines: it does not go with {clash}")
        folder = os.path.join(run_dir, DATA_FOLDER)
        data_files = dict(
            dataset="text",
            train_file=os.path.join(folder, "train.txt"),
            test_file=os.path.join(folder, "test.txt"),
        )
    fv = parse_options(preset, **values, **data_files, run_dir=run_dir, progress=progress, export=export)
    options.build_configs(fv)  # a bad combination is refused before anything is written
    from tfseqgan import runlock
    from tfseqgan.training.session import Session

    session = Session()
    created = not os.path.exists(run_dir)
    written = []
    try:
        if data is not None:
            os.makedirs(run_dir, exist_ok=True)
            session.lock = runlock.acquire(run_dir)  # before the data is written; the session keeps it
            written = data.write(os.path.join(run_dir, DATA_FOLDER))
        run = train_parsed(fv, session=session, log=(log or print) if progress else _silent)
        if run is not None and export:
            run.export()
    except BaseException:
        _forget_data(run_dir, written, created)
        raise
    finally:  # the CLI holds the run directory's lock until its process ends; a notebook goes on
        if session.lock is not None:
            session.lock.release()
    return run


def _forget_data(run_dir, written, created):
    """After a failed start: the data files this call wrote are removed while the run has no
    checkpoint (nothing refers to them), and the run directory too when this call made it and
    nothing else is in it. A run that checkpointed keeps its data, for `resume=True`."""
    checkpoints = os.path.join(run_dir, "checkpoints")
    if not written or (os.path.isdir(checkpoints) and os.listdir(checkpoints)):
        return
    for path in written:
        os.remove(path)
    folder = os.path.join(run_dir, DATA_FOLDER)
    if os.path.isdir(folder) and not os.listdir(folder):
        os.rmdir(folder)
    if created and set(os.listdir(run_dir)) <= {".lock"}:
        lock = os.path.join(run_dir, ".lock")
        if os.path.exists(lock):
            os.remove(lock)
        os.rmdir(run_dir)


def train_parsed(fv, *, session=None, log=print):
    """Trains the run the parsed flags `fv` describe (the CLI's path); the `Run`,
    or None on a multi-worker process that is not the chief.

    Raises:
        options.FlagError: the flags do not work together, or --strategy cannot be made.
        And what `Session.train` raises.
    """
    configs = options.build_configs(fv)
    from tfseqgan import distribute
    from tfseqgan.training.session import Session

    try:  # first: multi-worker and TPU strategies set up the runtime before any op runs
        strategy = distribute.make_strategy(fv.strategy, fv.devices, fv.tpu)
    except (ValueError, RuntimeError) as error:
        raise options.FlagError(f"--strategy={fv.strategy}: {error}") from None
    chief = distribute.is_chief(strategy)
    if strategy.num_replicas_in_sync > 1 or not chief:
        log(
            f"strategy {fv.strategy}: {strategy.num_replicas_in_sync} replicas; this process: "
            f"{distribute.worker_name(strategy)}{' (chief)' if chief else ''}"
        )
    session = session or Session()
    history = session.train(*configs, strategy, options.resolved_flags_text(fv), log=log)
    if history is None:
        return None
    return Run(configs[3].run_dir, history)


class Run:
    """A trained run: its evaluation records, and its generator to sample, score and export.

    Attributes:
        run_dir: the run directory.
        history: every evaluation record (dicts as in RUN/metrics.jsonl), in order.
    """

    def __init__(self, run_dir, history):
        self.run_dir = run_dir
        self.history = list(history)
        self._sampler = None

    @classmethod
    def load(cls, run_dir):
        """A finished (or checkpointed) run from its directory, without training."""
        from tfseqgan import metrics

        return cls(run_dir, metrics.read_metrics(os.path.join(run_dir, metrics.METRICS_FILE)))

    @property
    def metrics(self):
        """The last evaluation record (the final generator's figures), {} if none."""
        return dict(self.history[-1]) if self.history else {}

    def sampler(self):
        """The run's generator (newest checkpoint) with the export's sample, complete, greedy and score
        functions, in memory (no export written)."""
        if self._sampler is None:
            from tfseqgan.export.restore import load_run

            self._sampler = Sampler.from_run_model(load_run(self.run_dir, log=_silent))
        return self._sampler

    def sample(self, num_samples=5, temperature=1.0, seed=0):
        return self.sampler().sample(num_samples, temperature, seed)

    def complete(self, prefixes, temperature=1.0, seed=0):
        return self.sampler().complete(prefixes, temperature, seed)

    def greedy(self, prefixes):
        return self.sampler().greedy(prefixes)

    def score(self, texts):
        return self.sampler().score(texts)

    def export(self, out=None, seed=0):
        """Exports and verifies the generator into `out` (default RUN/export); returns the manifest
        (its "out_dir" is the folder). Raises export.restore.ExportError."""
        return export_run(self.run_dir, out, seed=seed)


def export_run(run_dir, out=None, seed=0):
    """What `tfseqgan-export --run_dir=RUN --out=OUT` does; returns the manifest."""
    from tfseqgan.export.pipeline import export_run as export

    return export(run_dir, out, seed=seed)


class Sampler:
    """A generator's sample / complete / greedy / score, text in and text out.

    Made by `Run.sampler()` (in memory) or `load_sampler(export_folder)` (the
    SavedModel); both call the export's signatures (tfseqgan/export/saved_model.py),
    with their checks and limits.
    """

    def __init__(self, functions, tokens, tokenizer, end_token, sequence_length, owner=None):
        self._functions = functions
        self._owner = owner  # the module or loaded SavedModel: its functions hold it only weakly
        self.tokens = list(tokens)
        self.tokenizer = tokenizer
        self.end_token = end_token
        self.sequence_length = int(sequence_length)
        self._ids = {token: index for index, token in enumerate(self.tokens)}

    @classmethod
    def from_run_model(cls, run_model):
        from tfseqgan.export.saved_model import SamplerModule

        with tempfile.TemporaryDirectory() as folder:  # the tables read the vocabulary when they are made
            path = os.path.join(folder, "vocabulary.txt")
            with open(path, "w", encoding="utf-8") as stream:
                stream.write("\n".join(run_model.tokens) + "\n")
            module = SamplerModule(run_model, path)
        return cls(
            module.signatures(),
            run_model.tokens,
            run_model.tokenizer,
            run_model.end_token,
            run_model.sequence_length,
            owner=module,
        )

    def _call(self, name, **inputs):
        import tensorflow as tf

        dtypes = {"num_samples": tf.int32, "temperature": tf.float32, "seed": tf.int64}
        tensors = {key: tf.constant(value, dtypes.get(key, tf.int32)) for key, value in inputs.items()}
        try:
            return self._functions[name](**tensors)
        except tf.errors.InvalidArgumentError as error:  # the signature's own checks: one line naming the input
            found = re.search(r"assertion failed: \[(.*?)\](?= \[|\n|$)", error.message)
            raise ValueError(found.group(1) if found else error.message.strip().splitlines()[0]) from None

    def _texts(self, outputs):
        return [value.decode("utf-8") for value in outputs["text"].numpy().tolist()]

    def encode(self, line):
        """Text -> ids, tokenized as training tokenized its corpus (word runs: case-folded words,
        punctuation apart; char runs: characters without whitespace); a token outside the
        vocabulary becomes <unk>. Synthetic runs take space-separated ids. Raises ValueError."""
        return self._encode([line])[0]

    def _encode(self, lines):
        if self.tokenizer == "ids":
            rows = []
            for line in lines:
                try:
                    ids = [int(piece) for piece in line.split()]
                except ValueError:
                    raise ValueError(f"expected space-separated ids, got {line!r}") from None
                if any(not 0 <= i < len(self.tokens) for i in ids):
                    raise ValueError(f"ids outside [0, {len(self.tokens)}): {line!r}")
                rows.append(ids)
            return rows
        from tfseqgan import text

        unknown = self._ids.get(text.UNKNOWN)
        rows = []
        for line, pieces in zip(lines, text.tokenize(lines, self.tokenizer)):
            missing = [piece for piece in pieces if piece not in self._ids]
            if missing and unknown is None:
                raise ValueError(f"{line!r}: not in the vocabulary: {' '.join(missing)}")
            rows.append([self._ids.get(piece, unknown) for piece in pieces])
        return rows

    def _rows(self, texts, name):
        if isinstance(texts, str):
            raise ValueError(f"{name}: expected a list of strings, got one string")
        if not 1 <= len(texts) <= MAX_TEXTS:
            raise ValueError(f"{name}: expected 1 to {MAX_TEXTS} texts, got {len(texts)}")
        if not all(isinstance(line, str) for line in texts):
            raise ValueError(f"{name}: expected strings")
        return self._encode(texts)

    def _prefixes(self, prefixes):
        prefixes = prefixes if isinstance(prefixes, str) else list(prefixes)
        rows = self._rows(prefixes, "prefixes")
        width = max(1, max(len(row) for row in rows))
        if width > self.sequence_length:
            raise ValueError(f"prefixes: {width} tokens; at most {self.sequence_length}")
        padded = [row + [0] * (width - len(row)) for row in rows]
        return padded, [len(row) for row in rows]

    def sample(self, num_samples=5, temperature=1.0, seed=0):
        """`num_samples` texts drawn at `temperature` (seeded: the same seed, the same texts)."""
        return self._texts(self._call("sample", num_samples=num_samples, temperature=temperature, seed=seed))

    def complete(self, prefixes, temperature=1.0, seed=0):
        """Each prefix text continued by sampling."""
        prefix, length = self._prefixes(prefixes)
        outputs = self._call("complete", prefix=prefix, prefix_length=length, temperature=temperature, seed=seed)
        return self._texts(outputs)

    def greedy(self, prefixes):
        """Each prefix continued by argmax decoding ("" decodes greedily from the start)."""
        prefix, length = self._prefixes(prefixes)
        return self._texts(self._call("greedy", prefix=prefix, prefix_length=length))

    def score(self, texts):
        """Each text's log-probability under the generator (its tokens and the end token), in nats."""
        texts = texts if isinstance(texts, str) else list(texts)
        rows = self._rows(texts, "texts")
        padded = []
        for line, row in zip(texts, rows):
            if self.end_token is not None:
                if len(row) >= self.sequence_length:
                    raise ValueError(f"{line!r}: {len(row)} tokens; at most {self.sequence_length - 1}")
                row = row + [self.end_token] + [PAD_ID] * (self.sequence_length - len(row) - 1)
            elif len(row) != self.sequence_length:
                raise ValueError(f"{line!r}: {len(row)} ids; a synthetic run scores exactly {self.sequence_length}")
            padded.append(row)
        return [float(total) for total in self._call("score", ids=padded)["total"].numpy()]


def load_sampler(export_dir):
    """The `Sampler` of an export folder (what `tfseqgan-export` wrote), through its SavedModel.

    A SavedModel is a TensorFlow graph: load only exports you made or trust
    (docs/reliability.md). The vocabulary and sizes come from the ONNX
    sampler's checked metadata beside it.
    """
    import tensorflow as tf

    from tfseqgan.export import loader

    try:
        checked = loader.load_sampler(os.path.join(export_dir, "onnx", "sampler.onnx"))
    except loader.SamplerInputError as error:
        raise ValueError(str(error)) from None
    loaded = tf.saved_model.load(os.path.join(export_dir, "saved_model"))
    info = checked.info
    return Sampler(
        loaded.signatures,
        checked.tokens,
        info["tokenizer"],
        info["end_token"],
        info["sequence_length"],
        owner=loaded,
    )
