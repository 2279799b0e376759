"""What knows about ML, above the registry layer: flavors, signatures, runs, bundles, datasets, evaluation, comparison.

Modules import their heavy frameworks (scikit-learn, torch, onnx, pandas) only
inside the functions that need them; a missing one raises MissingExtra naming
the extra to install. See docs/ml.md.
"""
