"""A convolutional LSTM over the years that does its heavy work outside the recurrence.

``keras.layers.ConvLSTM2D`` runs eight separate convolutions per time step (four input-to-state and four
state-to-state, one per gate) inside its loop, and lets autodiff differentiate the loop step by step.
``ConvLSTM`` computes the same function (same weight layout, same gate order i, f, c, o, same outputs) but:

* the input-to-state convolution of every year is one batched convolution with ``4·filters`` outputs,
  computed before the recurrence (it does not depend on the state);
* inside the loop only one state-to-state convolution per step remains (all four gates at once), and the
  first step skips it (the initial state is zero);
* the backward pass is written by hand (``tf.custom_gradient``): the loop only carries what must be
  sequential (the state gradients and the state-to-state input gradient); the recurrent kernel's gradient
  is one batched filter-gradient convolution over all steps after the loop, and the input-to-state
  gradients flow as one tensor into the batched input convolution's autodiff.

Inputs are either ``(batch, years, height, width, channels)`` like ``ConvLSTM2D``, or, when the layer is
built with ``years=…``, folded ``(years × batch, height, width, channels)`` with the year axis outermost,
the layout the network keeps between its per-year blocks (no transposes at all then).
"""

from __future__ import annotations

from collections.abc import Callable

import keras
import tensorflow as tf
from keras import ops

# Activation name -> (function, derivative expressed through the function's output y).
ACTIVATIONS: dict[str, tuple[Callable[[tf.Tensor], tf.Tensor], Callable[[tf.Tensor], tf.Tensor]]] = {
    "sigmoid": (tf.sigmoid, lambda y: y * (1.0 - y)),
    "tanh": (tf.tanh, lambda y: 1.0 - tf.square(y)),
    "hard_sigmoid": (lambda x: tf.nn.relu6(x + 3.0) / 6.0,
                     lambda y: tf.cast((y > 0.0) & (y < 1.0), y.dtype) / 6.0),
    "relu": (tf.nn.relu, lambda y: tf.cast(y > 0.0, y.dtype)),
    "linear": (tf.identity, tf.ones_like),
}


def _activation(name: str, role: str) -> tuple[Callable, Callable]:
    if name not in ACTIVATIONS:
        raise ValueError(
            f"ConvLSTM {role} must be one of {', '.join(ACTIVATIONS)} (the ones with a hand-written "
            f"derivative), received {name!r}")
    return ACTIVATIONS[name]


@keras.saving.register_keras_serializable(package="phenocast")
class ConvLSTM(keras.layers.Layer):
    """Convolutional LSTM over the year axis with batched input convolutions and a hand-written backward.

    Same weights as ``keras.layers.ConvLSTM2D(filters, kernel_size, padding="same")``: ``kernel``
    ``(k, k, in_channels, 4·filters)``, ``recurrent_kernel`` ``(k, k, filters, 4·filters)``, ``bias``
    ``(4·filters,)``, gates in the order input, forget, cell, output; ``set_weights(stock.get_weights())``
    reproduces a stock layer's outputs.

    Args:
      filters: state channels.
      kernel_size: odd side of both convolutions ("same" padding, stride 1).
      years: if given, inputs are folded ``(years × batch, height, width, channels)``, year-major; if None,
        inputs are ``(batch, years, height, width, channels)``.
      activation: cell activation (tanh in a standard LSTM).
      recurrent_activation: gate activation (sigmoid in a standard LSTM).
      return_sequences: return every year's state, else only the last one.
      unroll: a Python loop over the (few) years; else a ``tf.while_loop``.
      unit_forget_bias: start the forget-gate bias at 1, as ``ConvLSTM2D``.
      kernel_regularizer, recurrent_regularizer: e.g. ``keras.regularizers.L2``.

    Shapes:
      folded: ``(years·batch, H, W, C)`` -> ``(years·batch, H, W, filters)`` or ``(batch, H, W, filters)``;
      unfolded: ``(batch, years, H, W, C)`` -> ``(batch, years, H, W, filters)`` or
      ``(batch, H, W, filters)``.
    """

    def __init__(self, filters: int, kernel_size: int, years: int | None = None,
                 activation: str = "tanh", recurrent_activation: str = "sigmoid",
                 return_sequences: bool = True, unroll: bool = True, unit_forget_bias: bool = True,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal",
                 kernel_regularizer=None, recurrent_regularizer=None, **kwargs):
        super().__init__(**kwargs)
        if kernel_size % 2 != 1:
            raise ValueError(f"ConvLSTM kernel_size must be odd for 'same' padding, received {kernel_size}")
        self.filters = filters
        self.kernel_size = kernel_size
        self.years = years
        self.activation = activation
        self.recurrent_activation = recurrent_activation
        self.return_sequences = return_sequences
        self.unroll = unroll
        self.unit_forget_bias = unit_forget_bias
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.recurrent_initializer = keras.initializers.get(recurrent_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.recurrent_regularizer = keras.regularizers.get(recurrent_regularizer)
        self._cell_function, self._cell_derivative = _activation(activation, "activation")
        self._gate_function, self._gate_derivative = _activation(recurrent_activation,
                                                                 "recurrent_activation")

    def build(self, input_shape):
        channels = input_shape[-1]
        size = self.kernel_size
        self.kernel = self.add_weight(
            name="kernel", shape=(size, size, channels, 4 * self.filters),
            initializer=self.kernel_initializer, regularizer=self.kernel_regularizer)
        self.recurrent_kernel = self.add_weight(
            name="recurrent_kernel", shape=(size, size, self.filters, 4 * self.filters),
            initializer=self.recurrent_initializer, regularizer=self.recurrent_regularizer)
        self.bias = self.add_weight(name="bias", shape=(4 * self.filters,),
                                    initializer=self._bias_initializer)

    def _bias_initializer(self, shape, dtype=None):
        forget = ops.ones if self.unit_forget_bias else ops.zeros
        return ops.concatenate([ops.zeros((self.filters,), dtype), forget((self.filters,), dtype),
                                ops.zeros((2 * self.filters,), dtype)])

    def compute_output_shape(self, input_shape):
        if self.years is None:  # (batch, years, H, W, C)
            batch, years, height, width = input_shape[:4]
            if self.return_sequences:
                return (batch, years, height, width, self.filters)
            return (batch, height, width, self.filters)
        folded, height, width = input_shape[:3]  # (years × batch, H, W, C)
        if self.return_sequences:
            return (folded, height, width, self.filters)
        batch = None if folded is None else folded // self.years
        return (batch, height, width, self.filters)

    def call(self, inputs):
        kernel = ops.cast(self.kernel, self.compute_dtype)
        recurrent_kernel = ops.cast(self.recurrent_kernel, self.compute_dtype)
        bias = ops.cast(self.bias, self.compute_dtype)
        if self.years is None:  # (batch, years, H, W, C) -> (years × batch, H, W, C)
            shape = tf.shape(inputs)
            batch, years = shape[0], inputs.shape[1]
            folded = tf.reshape(tf.transpose(inputs, [1, 0, 2, 3, 4]),
                                tf.concat([[-1], shape[2:]], axis=0))
        else:
            years = self.years
            folded = inputs
            batch = tf.shape(inputs)[0] // years
        # One convolution for the input-to-state term of every year and gate.
        projections = tf.nn.bias_add(tf.nn.conv2d(folded, kernel, 1, "SAME"), bias)  # (years·batch, H, W, 4F)
        projections = tf.reshape(projections, tf.concat(
            [[years, batch], tf.shape(projections)[1:]], axis=0))  # (years, batch, H, W, 4F)
        recurrence = self._unrolled if self.unroll else self._looped
        states = recurrence(projections, recurrent_kernel)  # (years, batch, H, W, F)
        if not self.return_sequences:
            return states[-1]  # (batch, H, W, F)
        if self.years is None:
            return tf.transpose(states, [1, 0, 2, 3, 4])  # (batch, years, H, W, F)
        return tf.reshape(states, tf.concat([[-1], tf.shape(states)[2:]], axis=0))  # (years·batch, H, W, F)

    # ---- the recurrence, forward and backward ---------------------------------------------------------
    def _gates(self, preactivations: tf.Tensor) -> tuple[tf.Tensor, ...]:
        """Split ``(…, 4F)`` pre-activations into activated input, forget, cell-candidate and output gates."""
        input_gate, forget_gate, candidate, output_gate = tf.split(preactivations, 4, axis=-1)
        return (self._gate_function(input_gate), self._gate_function(forget_gate),
                self._cell_function(candidate), self._gate_function(output_gate))

    def _backward_step(self, state_gradient, cell_gradient, saved):
        """Gradients of one step: returns (pre-activation gradient (…, 4F), gradient of the previous cell)."""
        input_gate, forget_gate, candidate, output_gate, previous_cell, cell_activation = saved
        output_gradient = state_gradient * cell_activation
        cell_gradient = cell_gradient + state_gradient * output_gate * self._cell_derivative(cell_activation)
        preactivation_gradient = tf.concat([
            cell_gradient * candidate * self._gate_derivative(input_gate),
            cell_gradient * previous_cell * self._gate_derivative(forget_gate),
            cell_gradient * input_gate * self._cell_derivative(candidate),
            output_gradient * self._gate_derivative(output_gate),
        ], axis=-1)
        return preactivation_gradient, cell_gradient * forget_gate

    def _recurrent_convolution(self, state, recurrent_kernel):
        return tf.nn.conv2d(state, recurrent_kernel, 1, "SAME")

    def _unrolled(self, projections: tf.Tensor, recurrent_kernel: tf.Tensor) -> tf.Tensor:
        """Python loop over the years: projections (years, batch, H, W, 4F) -> states (…, F)."""

        @tf.custom_gradient
        def recurrence(projections, recurrent_kernel):
            steps = tf.unstack(projections)  # years × (batch, H, W, 4F)
            states, saved = [], []
            state = cell = None
            for preactivation in steps:
                if state is not None:
                    preactivation = preactivation + self._recurrent_convolution(state, recurrent_kernel)
                input_gate, forget_gate, candidate, output_gate = self._gates(preactivation)
                previous_cell = tf.zeros_like(candidate) if cell is None else cell
                cell = forget_gate * previous_cell + input_gate * candidate
                cell_activation = self._cell_function(cell)
                state = output_gate * cell_activation
                states.append(state)
                saved.append(
                    (input_gate, forget_gate, candidate, output_gate, previous_cell, cell_activation))
            stacked = tf.stack(states)  # (years, batch, H, W, F)

            def gradient(output_gradients):  # (years, batch, H, W, F)
                upstream = tf.unstack(output_gradients)
                state_gradient = cell_gradient = None
                preactivation_gradients = []
                for year in reversed(range(len(steps))):
                    total = upstream[year] if state_gradient is None else upstream[year] + state_gradient
                    if cell_gradient is None:
                        cell_gradient = tf.zeros_like(total)
                    preactivation_gradient, cell_gradient = self._backward_step(total, cell_gradient,
                                                                                saved[year])
                    preactivation_gradients.append(preactivation_gradient)
                    if year > 0:  # the state-to-state convolution's input gradient, the only conv here
                        state_gradient = tf.nn.conv2d_transpose(
                            preactivation_gradient, recurrent_kernel, tf.shape(total), 1, "SAME")
                gradients = tf.stack(preactivation_gradients[::-1])  # (years, batch, H, W, 4F)
                return gradients, self._recurrent_kernel_gradient(stacked, gradients, recurrent_kernel)

            return stacked, gradient

        return recurrence(projections, recurrent_kernel)

    def _recurrent_kernel_gradient(self, states, preactivation_gradients, recurrent_kernel):
        """One filter-gradient convolution over all steps: states[:-1] feed preactivation_gradients[1:]."""
        if states.shape[0] is not None and states.shape[0] < 2:
            return tf.zeros_like(recurrent_kernel)
        inputs = tf.reshape(states[:-1], tf.concat([[-1], tf.shape(states)[2:]], axis=0))
        outputs = tf.reshape(preactivation_gradients[1:],
                             tf.concat([[-1], tf.shape(preactivation_gradients)[2:]], axis=0))
        return tf.raw_ops.Conv2DBackpropFilter(
            input=inputs, filter_sizes=tf.shape(recurrent_kernel), out_backprop=outputs,
            strides=[1, 1, 1, 1], padding="SAME")

    def _looped(self, projections: tf.Tensor, recurrent_kernel: tf.Tensor) -> tf.Tensor:
        """``tf.while_loop`` over the years; same arithmetic as ``_unrolled``."""

        @tf.custom_gradient
        def recurrence(projections, recurrent_kernel):
            years = tf.shape(projections)[0]
            dtype = projections.dtype
            zero_state = tf.zeros_like(projections[0, ..., :self.filters])  # (batch, H, W, F)
            names = ("input", "forget", "candidate", "output", "previous_cell", "cell_activation", "state")
            arrays = {name: tf.TensorArray(dtype, size=years, element_shape=zero_state.shape)
                      for name in names}

            def forward(year, state, cell, arrays):
                preactivation = projections[year] + tf.cond(
                    year > 0, lambda: self._recurrent_convolution(state, recurrent_kernel),
                    lambda: tf.zeros_like(projections[year]))
                input_gate, forget_gate, candidate, output_gate = self._gates(preactivation)
                new_cell = forget_gate * cell + input_gate * candidate
                cell_activation = self._cell_function(new_cell)
                new_state = output_gate * cell_activation
                values = dict(input=input_gate, forget=forget_gate, candidate=candidate, output=output_gate,
                              previous_cell=cell, cell_activation=cell_activation, state=new_state)
                arrays = {name: arrays[name].write(year, values[name]) for name in arrays}
                return year + 1, new_state, new_cell, arrays

            _, _, _, arrays = tf.while_loop(lambda year, *_: year < years, forward,
                                            (0, zero_state, zero_state, arrays))
            stacked = arrays["state"].stack()  # (years, batch, H, W, F)
            saved = {name: array.stack() for name, array in arrays.items() if name != "state"}

            def gradient(output_gradients):
                order = ("input", "forget", "candidate", "output", "previous_cell", "cell_activation")
                gradients_array = tf.TensorArray(dtype, size=years,
                                                 element_shape=projections.shape[1:])

                def backward(year, state_gradient, cell_gradient, gradients_array):
                    # (The last iteration's input gradient, towards the zero initial state, goes unused.)
                    total = output_gradients[year] + state_gradient
                    preactivation_gradient, cell_gradient = self._backward_step(
                        total, cell_gradient, tuple(saved[name][year] for name in order))
                    state_gradient = tf.nn.conv2d_transpose(
                        preactivation_gradient, recurrent_kernel, tf.shape(total), 1, "SAME")
                    return (year - 1, state_gradient, cell_gradient,
                            gradients_array.write(year, preactivation_gradient))

                _, _, _, gradients_array = tf.while_loop(
                    lambda year, *_: year >= 0, backward,
                    (years - 1, zero_state, zero_state, gradients_array))
                gradients = gradients_array.stack()  # (years, batch, H, W, 4F)
                return gradients, self._recurrent_kernel_gradient(stacked, gradients, recurrent_kernel)

            return stacked, gradient

        return recurrence(projections, recurrent_kernel)

    def get_config(self):
        config = super().get_config()
        config.update(
            filters=self.filters, kernel_size=self.kernel_size, years=self.years,
            activation=self.activation, recurrent_activation=self.recurrent_activation,
            return_sequences=self.return_sequences, unroll=self.unroll,
            unit_forget_bias=self.unit_forget_bias,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
            recurrent_initializer=keras.initializers.serialize(self.recurrent_initializer),
            kernel_regularizer=keras.regularizers.serialize(self.kernel_regularizer),
            recurrent_regularizer=keras.regularizers.serialize(self.recurrent_regularizer))
        return config
