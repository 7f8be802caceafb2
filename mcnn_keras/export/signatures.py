"""What an export serves: the `serving_default` and `features` functions of a model.

Both take uint8 `images` [N, H, W, C] (the raw pixels, as in the TFRecords;
/255 and any zero padding are inside the model); `serving_default` returns
`probabilities`, `class_ids` and `class_names`, `features` the 512-d ReLU
output of the first dense layer (`ip0`), `probabilities` and `class_ids`. The
SavedModel and the ONNX file are written from the same functions.

Usage:

    functions = serving_functions(float32_copy(model), class_names)
    out = functions[FEATURES](images)      # {"features": [N, 512], ...}
"""


SERVING, FEATURES = "serving_default", "features"


FEATURES_LAYER = "ip0"


def float32_copy(model):
    """A plain float32 copy of `model` outside any distribution strategy.

    Serving wants float32 math on any CPU; and a fresh model keeps the export
    free of distributed-variable wrappers. The weights are float32 in every
    policy, so the copy is exact.
    """
    from mcnn_keras.model.network import build_model  # pylint: disable=import-outside-toplevel
    _, height, width, channels = model.input_shape
    copy = build_model(height, width, channels, model.output_shape[-1], dtype_policy="float32")
    copy.set_weights(model.get_weights())
    return copy


def features_model(model):
    """`model` with two outputs: {"features": ip0's ReLU [N, 512], "logits": [N, C]}
    (the same layers and weights; features in the model's compute dtype)."""
    import keras  # pylint: disable=import-outside-toplevel
    return keras.Model(model.input, {"features": model.get_layer(FEATURES_LAYER).output,
                                      "logits": model.outputs[0]}, name=f"{model.name}_features")


def serving_functions(model, class_names):
    """{signature name: function of uint8 images -> dict of outputs} of the export."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    names = tf.constant(list(class_names))
    both = features_model(model)

    def outputs(images):
        out = both(images, training=False)
        probabilities = tf.nn.softmax(tf.cast(out["logits"], tf.float32), axis=-1)
        return tf.cast(out["features"], tf.float32), probabilities, tf.argmax(probabilities, -1)

    def serve(images):
        _, probabilities, class_ids = outputs(images)
        return {"probabilities": probabilities, "class_ids": class_ids,
                "class_names": tf.gather(names, class_ids)}

    def features(images):
        features_, probabilities, class_ids = outputs(images)
        return {"features": features_, "probabilities": probabilities, "class_ids": class_ids}
    return {SERVING: serve, FEATURES: features}
