"""Sphinx configuration of pyfastent's documentation site.

Builds offline (nothing here reaches the network: no intersphinx, no
MathJax, no remote images), warnings as errors:

    python -m sphinx -W -b html docs docs/_build/html
"""
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("PYFASTENT_CACHE_DIR", str(ROOT / "docs" / "_build" / "cache"))  # the eigensolver plan
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "agg")

import pyfastent  # noqa: E402

project = "pyfastent"
author = "the pyfastent authors"
release = version = pyfastent.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx_gallery.gen_gallery",
]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
exclude_patterns = ["_build", "auto_examples/*.ipynb", "auto_examples/*.py", "auto_examples/*.zip",
                    "auto_examples/*.md5", "auto_examples/*.codeobj.json"]
templates_path = ["_templates"]
suppress_warnings = ["config.cache"]  # the gallery's scraper is a function: Sphinx rebuilds instead of caching

myst_heading_anchors = 3  # links such as guides/estimators.md#variables resolve
myst_enable_extensions = ["colon_fence"]

autosummary_generate = True
autodoc_member_order = "bysource"
autodoc_typehints = "none"  # the docstrings say shapes, dtypes and units
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False

sphinx_gallery_conf = {
    "examples_dirs": str(ROOT / "examples"),
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "download_all_examples": False,
    "remove_config_comments": True,
    "within_subsection_order": "FileNameSortKey",
    "show_memory": False,
    "plot_gallery": "True",
}

html_theme = "furo"
html_title = f"pyfastent {release}"
html_static_path: list = []


def _pyfastent_figures(block, block_vars, gallery_conf):
    """The gallery's scraper for the ``matplotlib.figure.Figure`` objects
    pyfastent's ``plot.*_figure`` functions return (they never touch
    pyplot, so the matplotlib scraper does not see them): each one found in
    the example's globals is drawn once, after the block that made it."""
    from matplotlib.figure import Figure
    from sphinx_gallery.scrapers import figure_rst

    seen = _SCRAPED.setdefault(block_vars["src_file"], set())
    paths = []
    for value in list(block_vars["example_globals"].values()):
        if not isinstance(value, Figure) or id(value) in seen:
            continue
        seen.add(id(value))
        if value.canvas.manager is None:  # pyplot's figures are the matplotlib scraper's (it runs after this one)
            path = next(block_vars["image_path_iterator"])
            value.savefig(path, dpi=96)
            paths.append(path)
    return figure_rst(paths, gallery_conf["src_dir"])


_SCRAPED: dict = {}
sphinx_gallery_conf["image_scrapers"] = (_pyfastent_figures, "matplotlib")
