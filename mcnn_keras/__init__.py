"""mcnn_keras: the multi-scale CNN for high-content screening, in Keras 3."""

from mcnn_keras.model import build_model, model_cost

__all__ = ["build_model", "model_cost"]
__version__ = "0.1.0"
