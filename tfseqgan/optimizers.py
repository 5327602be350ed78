"""Adam with TensorFlow's fused update kernel.

Keras 3's Adam updates each variable with about ten separate element-wise
ops (each a full pass over the variable and its two slots). For the
discriminator's 7 million weights (the highway layer's two 1,720 x 1,720
kernels dominate) those passes are memory-bound and cost a large share of a
CPU training step. TensorFlow's `ResourceApplyAdam` kernel does the same
update in one multi-threaded pass, as the original SeqGAN code's TF1 Adam
did. The arithmetic is the same: m += (g - m)(1 - b1); v += (g^2 - v)(1 - b2);
w -= lr sqrt(1 - b2^t) / (1 - b1^t) m / (sqrt(v) + eps).
"""

import keras
import tensorflow as tf


def _handle(variable):
    """The resource handle of a Keras or TensorFlow variable (in a
    tf.distribute update, the current replica's copy)."""
    if isinstance(variable, keras.Variable):
        variable = variable.value
    return variable.handle


@keras.saving.register_keras_serializable(package="tfseqgan")
class FusedAdam(keras.optimizers.Adam):
    """keras.optimizers.Adam whose update runs as one `ResourceApplyAdam`.

    Same constructor, slots, checkpoint layout and results (up to float
    rounding) as Keras' Adam; AMSGrad falls back to Keras' own update. A
    sparse (IndexedSlices) gradient is applied densely, as Keras' Adam does.
    """

    def update_step(self, gradient, variable, learning_rate):
        if self.amsgrad:
            return super().update_step(gradient, variable, learning_rate)
        dtype = variable.dtype
        if isinstance(gradient, tf.IndexedSlices):
            gradient = tf.convert_to_tensor(gradient)
        local_step = tf.cast(self.iterations + 1, dtype)
        beta_1 = tf.cast(self.beta_1, dtype)
        beta_2 = tf.cast(self.beta_2, dtype)
        index = self._get_variable_index(variable)
        tf.raw_ops.ResourceApplyAdam(
            var=_handle(variable),
            m=_handle(self._momentums[index]),
            v=_handle(self._velocities[index]),
            beta1_power=tf.pow(beta_1, local_step),
            beta2_power=tf.pow(beta_2, local_step),
            lr=tf.cast(learning_rate, dtype),
            beta1=beta_1,
            beta2=beta_2,
            epsilon=tf.cast(self.epsilon, dtype),
            grad=tf.cast(gradient, dtype),
        )
