"""The fairness check of the synthetic sets: a linear model on channel statistics.

The synthetic classes are meant to show in morphology only, so a linear
model on each channel's mean and standard deviation (2 C features of a
C-channel field, as the uint8 records store it) should stay far from what
a CNN reaches: multinomial logistic regression trained on fields of one
seed and tested on another. tests/test_synthetic*.py assert it stays below
50 % (chance 1/13 = 7.7 %).

Usage:

    accuracy = linear_probe_accuracy(60, 20, 128, 128)                 # BBBC021-like
    accuracy = linear_probe_accuracy(40, 20, 64, 64, stains="cell_painting")
"""

import numpy as np

from mcnn_keras.data import classes
from mcnn_keras.data.synthetic import difficulty as synthetic_difficulty
from mcnn_keras.data.synthetic.generator import render_field, to_uint8


def channel_statistics(num_per_class, seed, height, width, difficulty=None,
                       stains="bbbc021"):
    """(features, labels): per-channel mean and std of `num_per_class` fields per class.

        x, y = channel_statistics(2, 0, 64, 64)      # x: (26, 6), y: (26,)
    """
    rng = np.random.default_rng(seed)
    plates = (synthetic_difficulty.make_plates(seed, difficulty.plate_effects)
              if difficulty and difficulty.plate_effects else None)
    features, labels = [], []
    for _ in range(num_per_class):
        for label in range(classes.NUM_CLASSES):
            plate = plates[int(rng.integers(len(plates)))] if plates else None
            image = to_uint8(render_field(label, height, width, rng, difficulty, plate,
                                          stains=stains))
            image = image.astype(np.float32) / 255
            features.append(np.concatenate([image.mean((0, 1)), image.std((0, 1))]))
            labels.append(label)
    return np.array(features), np.array(labels)


def softmax_regression(x, y, steps=3000, learning_rate=0.5):
    """Multinomial logistic regression by full-batch gradient descent -> (weights, bias).

        weights, bias = softmax_regression(x, y)
        predicted = (x @ weights + bias).argmax(1)
    """
    weights = np.zeros((x.shape[1], classes.NUM_CLASSES))
    bias = np.zeros(classes.NUM_CLASSES)
    onehot = np.eye(classes.NUM_CLASSES)[y]
    for _ in range(steps):
        logits = x @ weights + bias
        p = np.exp(logits - logits.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        grad = (p - onehot) / len(y)
        weights -= learning_rate * x.T @ grad
        bias -= learning_rate * grad.sum(0)
    return weights, bias


def linear_probe_accuracy(train_per_class=60, test_per_class=20, height=128, width=128,
                          difficulty=None, stains="bbbc021"):
    """Test top-1 of logistic regression on per-channel mean and std of fields.

    Trains on `train_per_class` fields per class (seed 1), tests on
    `test_per_class` others (seed 2); features standardised on the training set.
    """
    x_train, y_train = channel_statistics(train_per_class, 1, height, width, difficulty,
                                          stains)
    x_test, y_test = channel_statistics(test_per_class, 2, height, width, difficulty, stains)
    mean, std = x_train.mean(0), x_train.std(0)
    weights, bias = softmax_regression((x_train - mean) / std, y_train)
    return float(np.mean(((x_test - mean) / std @ weights + bias).argmax(1) == y_test))
