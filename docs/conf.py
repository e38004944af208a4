"""Sphinx configuration for fastrl's documentation.

Build (warnings are errors)::

    python -m sphinx -W --keep-going -b html docs docs/_build/html

``FASTRL_DOCS_SMALL=1`` makes the gallery examples use fewer points and
iterations (CI). The API pages are generated from the package's ``__all__``
lists by ``docs/_apigen.py`` on every build, and the build fails when a public
name or a ``FASTRL_*`` environment switch has no page.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from sphinx.errors import ExtensionError

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS))
import _apigen  # noqa: E402

import fastrl  # noqa: E402

project = "fastrl"
author = "fastrl developers"
copyright = "fastrl developers"
release = version = fastrl.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]

templates_path = ["_templates"]
exclude_patterns = ["_build", "_templates", "examples/README.rst", "**/*.ipynb", "**.py.md5"]
html_theme = "alabaster"
html_theme_options = {"description": "Fast kernels for representation learning", "fixed_sidebar": True}
html_static_path: list[str] = []
html_title = f"fastrl {release}"

# --- API reference ---------------------------------------------------------
_apigen.write_api_pages(DOCS / "api")
autosummary_generate = True
autosummary_generate_overwrite = True
autosummary_imported_members = True
autodoc_default_options = {"member-order": "bysource"}
autodoc_typehints = "none"  # the numpy docstrings give the types and shapes
autodoc_inherit_docstrings = False  # torch's nn.Module docstrings are not numpydoc
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False

# --- gallery ---------------------------------------------------------------
SMALL = os.environ.get("FASTRL_DOCS_SMALL", "0") not in ("", "0")
sphinx_gallery_conf = {
    "examples_dirs": "examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "backreferences_dir": "gen_modules/backreferences",
    "doc_module": ("fastrl",),
    "abort_on_example_error": True,
    "remove_config_comments": True,
    "download_all_examples": False,
    "within_subsection_order": "FileNameSortKey",
    "min_reported_time": 0,
}

_start = time.perf_counter()


def _check_api(app, exception):
    """Fail the build when a public name has no page or a FASTRL_* switch is undocumented."""
    if exception is not None:
        return
    html_api = Path(app.outdir) / "api" if app.builder.format == "html" else None
    problems = _apigen.api_problems(DOCS / "api", html_api) + _apigen.envvar_problems(DOCS)
    if problems:
        raise ExtensionError("documentation is incomplete:\n  " + "\n  ".join(problems))
    print(f"fastrl docs: every public name has an API page; build took {time.perf_counter() - _start:.1f} s"
          f"{' (FASTRL_DOCS_SMALL)' if SMALL else ''}")


def _skip_foreign(app, what, name, obj, skip, options):
    """Leave out members a base class from another library generates on fastrl's classes
    (scikit-learn's ``set_*_request`` metadata-routing methods)."""
    module = getattr(obj, "__module__", None) or ""
    if module.split(".")[0] in ("sklearn", "torch"):
        return True
    return None


def setup(app):
    app.connect("autodoc-skip-member", _skip_foreign)
    app.connect("build-finished", _check_api)
