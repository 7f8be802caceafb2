"""Keras callbacks of the training loop, one concept per module."""

from mcnn_keras.callbacks.checkpoint import PeriodicCheckpoint, Preempted
from mcnn_keras.callbacks.divergence import DivergenceError, StopOnDivergence
from mcnn_keras.callbacks.lr_scheduler import StepLearningRateScheduler
from mcnn_keras.callbacks.metrics_logger import MetricsLogger
from mcnn_keras.callbacks.target_accuracy import StopAtTargetAccuracy
from mcnn_keras.callbacks.throughput import Throughput

__all__ = ["DivergenceError", "PeriodicCheckpoint", "StepLearningRateScheduler",
           "MetricsLogger", "Preempted", "StopAtTargetAccuracy", "StopOnDivergence", "Throughput"]
