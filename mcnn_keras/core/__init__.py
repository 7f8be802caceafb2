"""The ground floor: what every other floor may use, with no TensorFlow.

`options` (options as dataclass fields: the one flag mechanism of every
binary), `cluster` (TF_CONFIG, Slurm and Kubernetes environments, local
ports), `repo` (where this source tree and its bundled data are),
`processes` (local worker processes), `image_size` (which image sizes the
M-CNN takes, checked by every option class with --height/--width). Imports
nothing from the rest of the package.
"""
