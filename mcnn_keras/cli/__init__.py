"""absl binaries: thin `main`s over the library (see setup.cfg and BUILD)."""
