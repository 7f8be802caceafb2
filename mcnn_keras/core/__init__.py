"""The ground floor: what every other floor may use, with no TensorFlow.

`options` (options as dataclass fields: the one flag mechanism of every
binary), `cluster` (TF_CONFIG, Slurm and Kubernetes environments, local
ports), `repo` (where this source tree and its bundled data are). Imports
nothing from the rest of the package.
"""
