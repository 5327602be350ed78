"""Distribution plumbing shared by every step of every objective.

A step is written once, for the rows one replica holds: its loss divides
sums by global counts (so the replicas' losses add up to the global loss),
and this module does the rest. `Replicas.update` runs such a loss on every
replica under `strategy.run`, sums the loss and the gradients over replicas,
unscales them (float16 loss scaling), clips the summed gradient by global
norm, and applies it only when it is finite. Objectives never call
`strategy.run` themselves.

With --jit_compile the per-replica loss and gradient computation is
XLA-compiled; the cross-replica sums and the optimizer update stay outside
it.
"""

import tensorflow as tf

from tfseqgan import distribute


class Replicas:
    """The strategy of a run, and how its steps are compiled.

    Args:
        strategy: a `tf.distribute.Strategy`.
        jit_compile: XLA-compile the per-replica computations.
    """

    def __init__(self, strategy, jit_compile=False):
        self.strategy = strategy
        self.count = strategy.num_replicas_in_sync
        self.jit_compile = jit_compile

    def compiled(self, fn):
        """fn, XLA-compiled when --jit_compile is set (else as it is)."""
        return tf.function(fn, jit_compile=True) if self.jit_compile else fn

    def signature(self, *specs):
        """An input signature on one replica; distributed values trace by their own specs."""
        return list(specs) if self.count == 1 else None

    def local(self, value):
        """A value every replica holds alike (all-reduced), as plain tensors."""
        return distribute.first_local(self.strategy, value)

    def run(self, fn, args):
        """fn(*args) on every replica: per-replica results."""
        return self.strategy.run(fn, args=args)

    def gradients(self, loss_fn, variables, loss_scale=None):
        """A per-replica function (*args) -> (loss, gradients, aux):
        `loss_fn(*args) -> (loss, aux)` is this replica's share of the loss,
        differentiated with respect to `variables` (scaled by the float16
        loss scale when there is one). Compiled with --jit_compile."""

        @self.compiled
        def gradients(*args):
            with tf.GradientTape() as tape:
                loss, aux = loss_fn(*args)
                scaled = loss if loss_scale is None else loss * loss_scale.scale
            return loss, tape.gradient(scaled, variables), aux

        return gradients

    def update(self, replica_fn, optimizer, variables, clip_norm=0.0, loss_scale=None):
        """A cross-replica function (*args) -> (loss, aux) for use inside a
        `tf.function`: one update of `variables` by `optimizer`.

        `replica_fn(*args) -> (loss, gradients, aux)` runs on every replica
        (usually through `gradients`); it may all-reduce (`distribute.all_sum`)
        to normalise by global counts. The loss is summed over replicas, the
        gradients summed, unscaled and clipped (`distribute.sum_gradients`),
        and applied only when they and the loss are finite
        (`distribute.apply_if_finite`, which also updates the loss scale).
        `aux` comes back as the first replica's value (all-reduce it in
        `replica_fn` when it must cover every replica).
        """

        def on_replica(*args):
            loss, gradients, aux = replica_fn(*args)
            loss = distribute.all_sum(loss)
            gradients, finite = distribute.sum_gradients(loss, gradients, clip_norm, loss_scale)
            return loss, gradients, finite, aux

        def step(*args):
            loss, gradients, finite, aux = self.local(self.strategy.run(on_replica, args=args))
            distribute.apply_if_finite(optimizer, gradients, variables, finite, loss_scale)
            return loss, aux

        return step

    def summed(self, fn):
        """A tf.function (tokens, weights) -> fn summed over all replicas' rows."""

        @tf.function
        def step(tokens, weights):
            return self.local(self.strategy.run(lambda x, w: distribute.all_sum(fn(x, w)), args=(tokens, weights)))

        return step

    def mean(self):
        """A tf.function: the mean of a per-replica value over all its entries."""

        @tf.function
        def mean_over_replicas(values):
            strategy = self.strategy
            return strategy.reduce(tf.distribute.ReduceOp.MEAN, strategy.run(tf.reduce_mean, args=(values,)), axis=None)

        return mean_over_replicas

    def batches(self, tensors, global_batch):
        """The rows of `tensors` as distributed global batches (see `distribute.distributed_batches`)."""
        return distribute.distributed_batches(self.strategy, tensors, global_batch)
