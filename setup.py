"""Build of the optional C extension and of the package data; everything else is in pyproject.toml.

optional=True: when compiling fails (no compiler, no Python headers) the install still succeeds and the
decoders use their pure-Python path, which gives identical documents.
"""

import runpy
import shutil
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
# flowsink.assets names the folders; read from its file, since the package is not importable while it builds
ASSET_FOLDERS = runpy.run_path(str(ROOT / "ingest" / "flowsink" / "assets" / "__init__.py"))["FOLDERS"]


class BuildWithAssets(build_py):
    """Copies the repository's asset folders into the built package as ``flowsink/assets/<folder>``.

    The folders stay where the project layout wants them (one source of truth, no copy in git); an installed
    flowsink finds them through flowsink.assets. An editable install reads the repository folders directly,
    so nothing is copied there.
    """

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        for name in ASSET_FOLDERS:
            target = Path(self.build_lib) / "flowsink" / "assets" / name
            shutil.rmtree(target, ignore_errors=True)  # a file deleted since the last build must not linger
            shutil.copytree(ROOT / name, target, ignore=shutil.ignore_patterns("__pycache__", "*.py[co]"))


NATIVE = Path("ingest/flowsink/native")

setup(
    cmdclass={"build_py": BuildWithAssets},
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
    ],
)
