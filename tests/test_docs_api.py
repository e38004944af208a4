"""The API reference covers every public name (docs/_apigen.py), and every
FASTRL_* environment switch of the package is documented with ``.. envvar::``.

These checks need no Sphinx: the full build (``.ci/docs``) runs them again on
its output."""
from __future__ import annotations

import importlib.util
import sys
import textwrap
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"


@pytest.fixture(scope="module")
def apigen():
    spec = importlib.util.spec_from_file_location("_apigen", DOCS / "_apigen.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("_apigen", mod)  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def test_every_public_all_name_gets_a_page(apigen, tmp_path):
    pages = apigen.write_api_pages(tmp_path)
    listed = {p.module for p in pages}
    # every public module with __all__ is documented, and every name in it maps to a page
    for modname in apigen.discover_modules():
        assert modname in listed
    expected = apigen.expected_pages(pages)
    for page in pages:
        mod = importlib.import_module(page.module)
        for name in getattr(mod, "__all__", []):
            assert f"{page.module}.{name}" in expected, f"{page.module}.{name} has no page"
        text = (tmp_path / f"{page.module}.rst").read_text()
        for name in page.own:
            assert f"   {name}\n" in text
    # the backend switches named in the guide are in the reference
    for name in ("fastrl.use_backend", "fastrl.backend_info", "fastrl.losses.NTXentLoss",
                 "fastrl.opentsne.affinity.PerplexityBasedNN", "fastrl.manifold.SpectralEmbedding"):
        assert name in expected


def _fake_package(tmp_path, body):
    pkg = tmp_path / "fakepkg_docs"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(textwrap.dedent(body))
    sys.path.insert(0, str(tmp_path))
    return "fakepkg_docs"


def test_missing_page_is_reported(apigen, tmp_path, monkeypatch):
    name = _fake_package(tmp_path, '''
        """A fake package."""
        __all__ = ["f", "g"]
        def f():
            """f."""
        def g():
            """g."""
        ''')
    try:
        sections = [(name, "Fake")]
        api = tmp_path / "api"
        pages = apigen.write_api_pages(api, package=name, sections=sections, faces=())
        assert [p.own for p in pages] == [["f", "g"]]
        gen = api / "generated"
        gen.mkdir()
        (gen / f"{name}.f.rst").write_text("f\n=\n")
        problems = apigen.api_problems(api, package=name, sections=sections, faces=())
        assert problems == [f"{name}.g: no API source page generated/{name}.g.rst"]
        (gen / f"{name}.g.rst").write_text("g\n=\n")
        assert apigen.api_problems(api, package=name, sections=sections, faces=()) == []
        html = tmp_path / "html"
        (html / "generated").mkdir(parents=True)
        (html / "generated" / f"{name}.f.html").write_text("")
        assert apigen.api_problems(api, html, package=name, sections=sections, faces=()) == [
            f"{name}.g: no built API page generated/{name}.g.html"]
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop(name, None)


def test_unresolvable_all_name_fails(apigen, tmp_path):
    name = _fake_package(tmp_path, '''
        __all__ = ["missing"]
        ''')
    try:
        with pytest.raises(RuntimeError, match="missing"):
            apigen.write_api_pages(tmp_path / "api", package=name, sections=[(name, "Fake")], faces=())
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop(name, None)


def test_every_env_switch_is_documented(apigen, tmp_path):
    found = apigen.package_envvars()
    assert {"FASTRL_BACKEND", "FASTRL_CPU_KERNEL", "FASTRL_AUTOTUNE", "FASTRL_FP32_PRECISION",
            "FASTRL_LOGITS_BUDGET_MB"} <= found
    assert apigen.envvar_problems(DOCS) == []
    # and the check can fail: a docs tree without the entries
    (tmp_path / "index.rst").write_text(".. envvar:: FASTRL_BACKEND\n\n   x\n")
    missing = apigen.envvar_problems(tmp_path)
    assert len(missing) == len(found) - 1 and all("FASTRL_BACKEND " not in m for m in missing)
