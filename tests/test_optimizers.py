"""FusedAdam: TensorFlow's one-pass Adam kernel behind Keras' Adam interface."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfseqgan.optimizers import FusedAdam


def run_steps(optimizer, gradients, steps, sparse=False):
    """Applies `steps` gradients to two variables (a matrix and a vector) inside a tf.function."""
    rng = np.random.default_rng(1)
    variables = [
        keras.Variable(rng.normal(size=(7, 5)).astype("float32"), name="w"),
        keras.Variable(rng.normal(size=(5,)).astype("float32"), name="b"),
    ]
    optimizer.build(variables)

    @tf.function
    def step(matrix_grad, vector_grad):
        if sparse:  # rows 1 and 4 of the matrix, as an embedding lookup's gradient
            matrix_grad = tf.IndexedSlices(tf.gather(matrix_grad, [1, 4]), tf.constant([1, 4]), tf.constant([7, 5]))
        optimizer.apply_gradients([(matrix_grad, variables[0]), (vector_grad, variables[1])])

    for matrix_grad, vector_grad in gradients[:steps]:
        step(tf.constant(matrix_grad), tf.constant(vector_grad))
    return [v.numpy() for v in variables], [s.numpy() for s in optimizer.variables]


@pytest.mark.parametrize("sparse", [False, True])
def test_fused_adam_matches_keras_adam(sparse):
    rng = np.random.default_rng(0)
    gradients = [(rng.normal(size=(7, 5)).astype("float32"), rng.normal(size=(5,)).astype("float32")) for _ in range(5)]
    fused_weights, fused_slots = run_steps(FusedAdam(0.05, beta_1=0.8, epsilon=1e-6), gradients, 5, sparse)
    keras_weights, keras_slots = run_steps(keras.optimizers.Adam(0.05, beta_1=0.8, epsilon=1e-6), gradients, 5, sparse)
    for fused, reference in zip(fused_weights + fused_slots, keras_weights + keras_slots):
        np.testing.assert_allclose(fused, reference, rtol=1e-5, atol=1e-6)
    # Five steps moved the weights (a no-op optimizer would match an untouched copy).
    untouched, _ = run_steps(FusedAdam(0.05), gradients, 0)
    assert np.abs(fused_weights[0] - untouched[0]).max() > 0.1
    if sparse:  # row 0 never had a gradient: zero moments, so it stays put
        assert np.abs(fused_weights[0][0] - untouched[0][0]).max() == 0.0


def test_fused_adam_resumes_a_keras_adam_checkpoint(tmp_path):
    """Runs saved before FusedAdam (plain Keras Adam) restore into it slot for slot."""
    rng = np.random.default_rng(2)
    gradients = [(rng.normal(size=(7, 5)).astype("float32"), rng.normal(size=(5,)).astype("float32"))] * 3
    old = keras.optimizers.Adam(0.01)
    _, old_slots = run_steps(old, gradients, 3)
    path = tf.train.Checkpoint(optimizer=old).save(str(tmp_path / "ckpt"))
    new = FusedAdam(0.01)
    new.build([keras.Variable(np.zeros((7, 5), "float32")), keras.Variable(np.zeros((5,), "float32"))])
    tf.train.Checkpoint(optimizer=new).restore(path).assert_existing_objects_matched()
    for restored, saved in zip(new.variables, old_slots):
        np.testing.assert_array_equal(restored.numpy(), saved)


def test_fused_adam_amsgrad_falls_back_to_keras():
    rng = np.random.default_rng(3)
    gradients = [(rng.normal(size=(7, 5)).astype("float32"), rng.normal(size=(5,)).astype("float32"))] * 3
    fused, _ = run_steps(FusedAdam(0.05, amsgrad=True), gradients, 3)
    reference, _ = run_steps(keras.optimizers.Adam(0.05, amsgrad=True), gradients, 3)
    np.testing.assert_allclose(fused[0], reference[0], rtol=1e-6)
