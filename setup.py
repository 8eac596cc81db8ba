"""Build of the optional C extension; everything else about the package is in pyproject.toml.

optional=True: when compiling fails (no compiler, no Python headers) the install still succeeds and the
decoders use their pure-Python path, which gives identical documents.
"""

from pathlib import Path

from setuptools import Extension, setup

NATIVE = Path("ingest/flowsink/native")

setup(
    ext_modules=[
        Extension(
            "flowsink.native._native",
            # one module from one file per concern (module.c lists them); the parts call each other directly
            sources=sorted(str(path) for path in NATIVE.glob("*.c")),
            # changing a header rebuilds the module
            depends=sorted(str(path) for path in NATIVE.glob("*.h")),
            # only PyInit__native is exported: the parts' shared functions stay inside the module
            extra_compile_args=["-O2", "-fvisibility=hidden"],
            optional=True,
        ),
    ]
)
