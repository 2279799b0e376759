"""Build step for the one native helper; everything else is in pyproject.toml.

modelkeep/store/_planes.c groups float bytes by significance (the PLANES codec's
hot loop, ~10x numpy's strided copies). It is optional: without a C compiler the
install still succeeds and modelkeep/store/planes.py uses numpy instead.
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
        )
    ]
)
