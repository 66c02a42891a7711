"""Keras layers of DAM-CNN."""

from dam_cnn_tf.layers.serd import SERDLayer, serd_regularizer

__all__ = ["SERDLayer", "serd_regularizer"]
