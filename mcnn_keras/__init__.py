"""mcnn_keras: the multi-scale CNN for high-content screening, in Keras 3.

`build_model` and `model_cost` are loaded on first use, so that importing a
light module (the config, the cluster description, a binary's `--help`) does
not import TensorFlow.
"""

__all__ = ["build_model", "model_cost"]
__version__ = "0.1.0"


def __getattr__(name):
    if name == "build_model":
        from mcnn_keras.model import network  # pylint: disable=import-outside-toplevel
        return network.build_model
    if name == "model_cost":
        from mcnn_keras.model import topology  # pylint: disable=import-outside-toplevel
        return topology.model_cost
    raise AttributeError(f"module 'mcnn_keras' has no attribute {name!r}")
