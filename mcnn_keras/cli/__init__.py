"""absl binaries: thin `main`s over the library (see setup.cfg and BUILD).

The top floor: each binary defines its flags from the library's option
dataclasses (`config_flags`), calls one library function and ends with
`common.run_main` (one-line errors, `--help`, quiet start-up); `paths`
resolves user paths under `bazel run`, `conversion` is the two converters'
shared main. Nothing below imports from here.
"""
