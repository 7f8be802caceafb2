"""The M-CNN: its shape and cost, the Keras network and how it is stepped.

`topology` (the network's shape and analytic cost, no TensorFlow), `memory`
(the memory model, `--batch_size=auto`), `space_to_depth` (an opt-in
prototype), `factored_dense` (the dense layer's gradient as sufficient
factors), `network` (the functional Keras 3 model, `build_model`),
`microbatch` (a batch's step a slice at a time), `optimizer` (Nesterov SGD on
the fused kernel). May import `core`, `io` and `data`.
"""
