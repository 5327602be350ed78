"""tf.distribute plumbing: choosing a strategy, splitting a global batch
across replicas, and applying gradients reduced over all of them.

The trainer's steps are written once, as replica functions: each replica
holds `global_batch / num_replicas` rows, divides its loss sums by global
counts, and gradients are summed across replicas before clipping, so any
number of replicas applies the update a single device would.
"""

import os
import shutil
import tempfile

import tensorflow as tf

STRATEGIES = ("auto", "mirrored", "multi_worker", "tpu")


def make_strategy(name="auto", devices=(), tpu=""):
    """A `tf.distribute.Strategy` by name.

    Args:
        name: `auto` (one GPU if there is one, else the CPU), `mirrored` (all
            local GPUs, or `devices`), `multi_worker`
            (MultiWorkerMirroredStrategy; the cluster comes from TF_CONFIG),
            `tpu` (TPUStrategy on the TPU at `tpu`; empty: the local TPU VM).
        devices: device names for `mirrored`, e.g. ("/gpu:0", "/gpu:1").
        tpu: the TPU name or grpc:// address for `tpu`.

    Must run before any other TensorFlow op in the process (multi-worker and
    TPU set up the runtime).
    """
    if name == "auto":
        gpus = tf.config.list_logical_devices("GPU")
        return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
    if name == "mirrored":
        return tf.distribute.MirroredStrategy(devices=list(devices) or None)
    if name == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            raise ValueError("the cluster must be given in the TF_CONFIG environment variable")
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or "")
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    raise ValueError(f"unknown strategy {name!r}; expected one of {', '.join(STRATEGIES)}")


# /proc/cpuinfo flags of x86 CPUs whose matrix units multiply bfloat16 (oneDNN uses them).
_CPU_BFLOAT16_FLAGS = ("amx_bf16", "avx512_bf16")


def cpu_has_bfloat16_matrix_units(cpuinfo="/proc/cpuinfo"):
    """True when the CPU lists AMX-BF16 or AVX512-BF16 among its flags."""
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as stream:
            flags = {word for line in stream if line.startswith("flags") for word in line.split(":", 1)[1].split()}
    except OSError:
        return False
    return any(flag in flags for flag in _CPU_BFLOAT16_FLAGS)


def has_bfloat16_matrix_units(strategy):
    """Whether the strategy's devices multiply bfloat16 matrices natively, so
    bfloat16 MatMuls run faster than float32 ones: TPUs, NVIDIA GPUs of
    compute capability 8.0 or later, CPUs with AMX-BF16 or AVX512-BF16."""
    try:
        devices = strategy.extended.worker_devices
    except RuntimeError:  # the default strategy: TensorFlow's own placement, a GPU when there is one
        devices = [device.name for device in tf.config.list_logical_devices("GPU")[:1]] or ["/cpu:0"]
    kinds = {(tf.DeviceSpec.from_string(device).device_type or "CPU").upper() for device in devices}
    if "TPU" in kinds:
        return True
    if "GPU" in kinds:
        gpus = tf.config.list_physical_devices("GPU")
        capabilities = [tf.config.experimental.get_device_details(gpu).get("compute_capability") for gpu in gpus]
        return bool(capabilities) and all(c is not None and tuple(c) >= (8, 0) for c in capabilities)
    return cpu_has_bfloat16_matrix_units()


def is_chief(strategy):
    """True on the worker that writes checkpoints, metrics and exports."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    if task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return task_type in (None, "worker") and task_id == 0 and not has_chief


def num_workers(strategy):
    """Processes taking part in the run (1 unless multi-worker)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or isinstance(strategy, tf.distribute.TPUStrategy):
        return 1
    jobs = resolver.cluster_spec().as_dict()
    return max(1, sum(len(jobs.get(job, ())) for job in ("chief", "worker")))


def worker_name(strategy):
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or resolver.task_type is None:
        return "worker_0"
    return f"{resolver.task_type}_{resolver.task_id}"


def replica_rows(local_batch):
    """(offset, global rows) of this replica's `local_batch` rows, in replica context."""
    context = tf.distribute.get_replica_context()
    replica = tf.cast(context.replica_id_in_sync_group, tf.int32)
    return replica * local_batch, local_batch * context.num_replicas_in_sync


def all_sum(value):
    """Sum over all replicas (the value itself on one device)."""
    return tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, value)


def sum_gradients(loss, gradients, clip_norm=0.0, loss_scale=None):
    """The gradient summed over replicas, unscaled and clipped by global
    norm, and whether it (and the loss) is finite. In replica context; every
    replica gets the same result.

    Keras optimizers sum gradients across replicas themselves, but clip each
    replica's share before that sum (clipping partial gradients), so the sum
    is taken here and the update applied in cross-replica context
    (`apply_if_finite`).

    Args:
        loss: the global loss (identical on every replica).
        gradients: this replica's gradients of its share of the loss.
        clip_norm: global-norm clip (0: none).
        loss_scale: a float16 `LossScale`, or None.

    Returns:
        (list of gradients, bool tensor).
    """
    context = tf.distribute.get_replica_context()
    gradients = context.all_reduce(tf.distribute.ReduceOp.SUM, [tf.convert_to_tensor(g) for g in gradients])
    if loss_scale is not None:
        gradients = [g / loss_scale.scale for g in gradients]
    finite = tf.math.is_finite(loss)
    for gradient in gradients:
        finite = tf.logical_and(finite, tf.reduce_all(tf.math.is_finite(gradient)))
    if clip_norm:
        gradients, _ = tf.clip_by_global_norm(gradients, clip_norm)
    return gradients, finite


def apply_if_finite(optimizer, gradients, variables, finite, loss_scale=None):
    """Applies the summed `gradients` (from `sum_gradients`) to every copy
    of `variables`, or nothing when `finite` is false (weights and optimizer
    state stay as they were). In cross-replica context, inside a
    tf.function; updates the loss scale.

    Returns:
        bool tensor: whether the update was applied.
    """

    def apply():
        optimizer.apply_gradients(zip(gradients, variables))
        return tf.constant(True)

    applied = tf.cond(finite, apply, lambda: tf.constant(False))
    if loss_scale is not None:
        loss_scale.update(finite)
    return applied


class LossScale(tf.Module):
    """Dynamic loss scaling for float16: the loss is multiplied by `scale`
    before differentiation; the scale halves after a non-finite gradient and
    doubles after `growth_interval` finite steps in a row.

    Hand-written rather than `keras.optimizers.LossScaleOptimizer` because
    that wrapper unscales and tests each replica's partial gradient before
    the cross-replica sum; here the summed gradient is tested once.
    """

    def __init__(self, initial_scale=2.0**15, growth_interval=2000, name="loss_scale"):
        super().__init__(name=name)
        with tf.init_scope():
            self.scale = tf.Variable(
                initial_scale,
                dtype=tf.float32,
                trainable=False,
                synchronization=tf.VariableSynchronization.ON_WRITE,
                aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
                name="scale",
            )
            self.good_steps = tf.Variable(
                0,
                dtype=tf.int64,
                trainable=False,
                synchronization=tf.VariableSynchronization.ON_WRITE,
                aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
                name="good_steps",
            )
        self.growth_interval = growth_interval

    def update(self, finite):
        grow = tf.logical_and(finite, self.good_steps + 1 >= self.growth_interval)
        new_scale = tf.where(finite, tf.where(grow, self.scale * 2.0, self.scale), tf.maximum(self.scale / 2.0, 1.0))
        counting = tf.logical_and(finite, tf.logical_not(grow))
        new_steps = tf.where(counting, self.good_steps + 1, tf.zeros_like(self.good_steps))
        self.scale.assign(new_scale)
        self.good_steps.assign(new_steps)


class _SlicedBatches:
    """Global batches as distributed values, sliced from tensors already in
    memory: batch i gives replica r rows [r * per_replica, (r + 1) *
    per_replica) of it, placed on that replica's device. Iterable any number
    of times."""

    def __init__(self, strategy, batched, per_replica):
        self._strategy = strategy
        self._batched = batched
        self._per_replica = per_replica
        try:
            self._devices = tuple(strategy.extended.worker_devices)
        except RuntimeError:  # the default strategy: TensorFlow's own placement
            self._devices = ()

    def __len__(self):
        return int(self._batched[0].shape[0])

    def _replica_rows(self, index):
        def value_fn(context):
            replica = context.replica_id_in_sync_group
            first = replica * self._per_replica
            if not self._devices:
                return tuple(t[index, first : first + self._per_replica] for t in self._batched)
            # Every worker holds the same number of replicas; this one's are its devices in order.
            with tf.device(self._devices[replica % len(self._devices)]):
                return tuple(tf.identity(t[index, first : first + self._per_replica]) for t in self._batched)

        return self._strategy.experimental_distribute_values_from_function(value_fn)

    def __iter__(self):
        for index in range(len(self)):
            yield self._replica_rows(index)


def distributed_batches(strategy, tensors, global_batch):
    """The rows of `tensors` (in order) as distributed global batches of
    `global_batch` rows (the remainder dropped): replica r of the N in sync
    gets rows [r * global_batch / N, (r + 1) * global_batch / N) of each
    batch, whatever the number of workers.

    The rows are already in memory, so CPU and GPU strategies slice them
    directly (`experimental_distribute_values_from_function`): a tf.data
    pipeline here cost an idle stall of about 2 s at the start of most
    epochs (its iterator's creation) and nothing in return. TPUs, which take
    their input from the host's pipeline, keep a tf.data pipeline built with
    `distribute_datasets_from_function` that prefetches."""
    replicas = strategy.num_replicas_in_sync
    per_replica = global_batch // replicas
    tensors = tuple(tf.convert_to_tensor(t) for t in tensors)

    num_batches = int(tensors[0].shape[0]) // global_batch
    # Whole batches, (num_batches, global_batch, ...): batches are sliced, never single rows.
    batched = tuple(
        tf.reshape(t[: num_batches * global_batch], [num_batches, global_batch, *t.shape[1:]]) for t in tensors
    )
    if not isinstance(strategy, tf.distribute.TPUStrategy):
        return _SlicedBatches(strategy, batched, per_replica)

    def dataset_fn(context):
        local_replicas = replicas // context.num_input_pipelines
        first = context.input_pipeline_id * local_replicas * per_replica
        # This worker's rows of every batch, one (per_replica, ...) slice per local replica, in replica order.
        mine = tuple(
            tf.reshape(
                t[:, first : first + local_replicas * per_replica],
                [num_batches * local_replicas, per_replica, *t.shape[2:]],
            )
            for t in batched
        )
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
        options.deterministic = True
        return tf.data.Dataset.from_tensor_slices(mine).with_options(options).prefetch(tf.data.AUTOTUNE)

    return strategy.distribute_datasets_from_function(dataset_fn)


def first_local(strategy, value):
    """A value (or nest of values) every replica holds alike, e.g. an
    all-reduced loss, as plain tensors."""
    return tf.nest.map_structure(lambda v: strategy.experimental_local_results(v)[0], value)


class ScratchDir:
    """A temporary folder removed on exit: where a non-chief worker writes the
    checkpoints every worker must take part in."""

    def __enter__(self):
        self.path = tempfile.mkdtemp(prefix="tfseqgan-worker-")
        return self.path

    def __exit__(self, *exc):
        shutil.rmtree(self.path, ignore_errors=True)
        return False
