"""Build of the optional C accelerator; everything else about the package is in pyproject.toml.

optional=True: when compiling fails (no compiler, no Python headers) the install still succeeds and the
decoders use their pure-Python path, which gives identical documents.
"""

from setuptools import Extension, setup

# helpers both modules include; listed so that changing one rebuilds them
HEADERS = ["ingest/flowsink/decode/_fast_common.h", "ingest/flowsink/decode/_fast_json.h"]

setup(
    ext_modules=[
        Extension(
            "flowsink.decode._fast",
            sources=["ingest/flowsink/decode/_fast.c"],
            depends=HEADERS,
            extra_compile_args=["-O2"],
            optional=True,
        ),
        Extension(
            "flowsink.decode._fast_sflow",
            sources=["ingest/flowsink/decode/_fast_sflow.c"],
            depends=HEADERS,
            extra_compile_args=["-O2"],
            optional=True,
        ),
    ]
)
