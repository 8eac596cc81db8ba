"""Where flowsink's shipped files are: index templates, Kibana saved objects, monitoring and nginx configuration.

The repository keeps them in its top-level folders (``elasticsearch/``, ``kibana/``, ``monitoring/``,
``nginx/``), their one source of truth. Building the package (``pip install .``, a wheel) copies those folders
into this package as ``flowsink/assets/<folder>`` (setup.py's ``build_py``), so an installed flowsink carries
its own templates and dashboards with no checkout beside it. A source checkout or an editable install has no
copy: there the repository folders themselves are used. Every reader of these files goes through
:func:`path`.
"""

from __future__ import annotations

from pathlib import Path

# The repository folders shipped as package data (setup.py copies exactly these).
FOLDERS = ("elasticsearch", "kibana", "monitoring", "nginx")

_PACKAGED = Path(__file__).resolve().parent
# ingest/flowsink/assets/__init__.py -> the repository root, when this file is in a source checkout
_CHECKOUT = _PACKAGED.parents[2]


def checkout_root() -> Path | None:
    """The source checkout this flowsink runs from, or None when it runs from an installed package."""
    if (_CHECKOUT / "pyproject.toml").is_file() and all((_CHECKOUT / name).is_dir() for name in FOLDERS):
        return _CHECKOUT
    return None


def path(folder: str, *parts: str) -> Path:
    """``folder/parts...`` of the shipped files: the repository's own folder in a source checkout, else the
    packaged copy. The path may not exist (a file that is not shipped); its reader says so."""
    if folder not in FOLDERS:
        raise ValueError(f"{folder!r} is not a shipped asset folder ({', '.join(FOLDERS)})")
    root = checkout_root()
    return (root if root is not None else _PACKAGED).joinpath(folder, *parts)


def source_path(folder: str, *parts: str) -> Path:
    """The repository's own file, for the code that generates shipped files (the Kibana and Grafana dashboards):
    they are written into the checkout, never into an installed package."""
    root = checkout_root()
    if root is None:
        raise FileNotFoundError(f"{folder}/ is written in a source checkout of flowsink, and this is not one")
    return path(folder, *parts)
