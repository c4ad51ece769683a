"""The model library: code shared by model folders (features, the metallicity model,
CrabNet) and the studies that train models. Model folders import it; the core
(``harness/``) never does (tests/test_layers.py). It may use the core's helpers
(atomic writes, errors, paths, mesh)."""
