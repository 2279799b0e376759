"""Build step for the two native helpers; everything else is in pyproject.toml.

modelkeep/store/_planes.c groups float bytes by significance (the PLANES codec's
hot loop, ~10x numpy's strided copies); modelkeep/store/_lanes.c hashes a block
of equal-length chunks with BLAKE3 in one call (sixteen at a time with AVX-512).
Both are optional: without a C compiler the install still succeeds, and
modelkeep/store/planes.py and digest.py fall back to numpy and the blake3 module.
"""

import os

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "modelkeep.store._planes",
            ["modelkeep/store/_planes.c"],
            extra_compile_args=[] if os.name == "nt" else ["-O3"],
            optional=True,
        ),
        Extension(
            "modelkeep.store._lanes",
            ["modelkeep/store/_lanes.c"],
            extra_compile_args=[] if os.name == "nt" else ["-O3"],
            optional=True,
        ),
    ]
)
