"""Generate the API reference from the package's ``__all__`` lists and check that it is complete.

``write_api_pages(api_dir)`` writes ``api/index.rst`` and one page per public
module: the module's docstring and an ``autosummary`` table (``:toctree:
generated``) of the names it exports, from which autosummary makes one page per
name (templates in ``docs/_templates/autosummary``). A module's names are its
``__all__``; a module without one exports the public functions and classes
defined in it (or, for a package, in its submodules). An object exported by
several modules gets one page, under the first module that lists it (in the
order of :data:`SECTIONS`, then parents before children); the other modules
link to it.

Which modules are documented: those in :data:`SECTIONS`, every module of the
package whose dotted path has no ``_``-prefixed part and that defines
``__all__``, and every module under the face packages in :data:`FACES`
(``fastrl.opentsne``: openTSNE's module layout is its API). So a name added to
any public ``__all__``, or a module added under a face, gets its page without
editing anything here.

The checks (:func:`api_problems`, :func:`envvar_problems`) run at the end of
every Sphinx build (``docs/conf.py``) and in ``tests/test_docs_api.py``.
"""
from __future__ import annotations

import importlib
import importlib.util
import inspect
import pkgutil
import re
import types
from dataclasses import dataclass, field
from pathlib import Path

PACKAGE = "fastrl"

# the reference's sections, in order: (module, title)
SECTIONS = [
    ("fastrl", "Backend switches"),
    ("fastrl.neighbors", "kNN graphs"),
    ("fastrl.manifold", "Embeddings: t-SNE and classical methods"),
    ("fastrl.opentsne", "openTSNE's API"),
    ("fastrl.losses", "Self-supervised losses"),
    ("fastrl.masking", "Masked modelling"),
    ("fastrl.metrics", "Quality metrics"),
    ("fastrl.plot", "Plots"),
    ("fastrl.distributed", "torch.distributed helpers"),
    ("fastrl.datasets", "Datasets"),
]
# packages all of whose public submodules are API (they mirror another library's layout)
FACES = ("fastrl.opentsne",)
# public-looking modules that are not Python API
EXCLUDE = ("fastrl.cli",)

_ENV_RE = re.compile(r"\bFASTRL_[A-Z0-9_]+\b")
_ENVVAR_DIRECTIVE_RE = re.compile(r"^\s*\.\. envvar::\s*(\S+)", re.M)


@dataclass
class ModulePage:
    module: str
    title: str
    own: list = field(default_factory=list)        # names documented on this page
    aliases: dict = field(default_factory=dict)    # name -> (role, target) documented elsewhere


def _is_public(modname: str) -> bool:
    return not any(part.startswith("_") for part in modname.split("."))


def _excluded(modname: str) -> bool:
    return any(modname == e or modname.startswith(e + ".") for e in EXCLUDE)


def _defines_all(path: str | None) -> bool:
    if not path or not path.endswith(".py"):
        return False
    return re.search(r"^__all__\s*[:=]", Path(path).read_text(encoding="utf-8"), re.M) is not None


def discover_modules(package: str = PACKAGE, sections=None, faces=None) -> list[str]:
    """Dotted names of the modules to document, in page order."""
    sections = SECTIONS if sections is None else sections
    faces = FACES if faces is None else faces
    pkg = importlib.import_module(package)
    found = {m for m, _ in sections}
    for info in pkgutil.walk_packages(pkg.__path__, package + "."):
        name = info.name
        if not _is_public(name) or _excluded(name):
            continue
        spec = importlib.util.find_spec(name)
        origin = spec.origin if spec is not None else None
        if _defines_all(origin) or any(name.startswith(f + ".") for f in faces):
            found.add(name)
    top = [m for m, _ in sections]

    def key(name):
        # the section a module belongs to: its longest listed ancestor
        owners = [i for i, m in enumerate(top) if name == m or name.startswith(m + ".")]
        return (max(owners, key=lambda i: len(top[i])) if owners else len(top), name.split("."))
    return sorted(found, key=key)


def public_names(module: types.ModuleType) -> list[str]:
    """``__all__``, else the public functions and classes the module defines
    (a package: defines in itself or its submodules)."""
    if hasattr(module, "__all__"):
        return list(module.__all__)
    prefix = module.__name__
    is_pkg = hasattr(module, "__path__")
    names = []
    for name, obj in vars(module).items():
        if name.startswith("_") or not (inspect.isclass(obj) or inspect.isfunction(obj)):
            continue
        owner = getattr(obj, "__module__", "") or ""
        if owner == prefix or (is_pkg and owner.startswith(prefix + ".")):
            names.append(name)
    return sorted(names)


def _key(obj, qualified):
    if isinstance(obj, (types.FunctionType, type, types.ModuleType)) or callable(obj):
        return ("obj", id(obj))
    return ("name", qualified)


def collect(package: str = PACKAGE, sections=None, faces=None) -> tuple[list[ModulePage], list[str]]:
    """The pages to write, and the problems found (names in ``__all__`` that do not resolve)."""
    sections = SECTIONS if sections is None else sections
    titles = dict(sections)
    modules = discover_modules(package, sections, faces)
    problems, pages, canonical = [], [], {}
    mod_objs = {}
    for modname in modules:
        try:
            mod_objs[modname] = importlib.import_module(modname)
        except Exception as exc:  # a public module that does not import is a documentation error
            problems.append(f"{modname}: cannot be imported ({type(exc).__name__}: {exc})")
    documented_modules = {id(m): n for n, m in mod_objs.items()}
    for modname, mod in mod_objs.items():
        page = ModulePage(modname, titles.get(modname, modname))
        for name in public_names(mod):
            try:
                obj = getattr(mod, name)
            except AttributeError:
                problems.append(f"{modname}.__all__ lists {name!r}, which the module does not define")
                continue
            qualified = f"{modname}.{name}"
            if isinstance(obj, types.ModuleType):
                target = documented_modules.get(id(obj))
                if target is None:
                    problems.append(f"{qualified} is a module without an API page")
                else:
                    page.aliases[name] = ("mod", target)
                continue
            k = _key(obj, qualified)
            if k in canonical:
                page.aliases[name] = ("obj", canonical[k])
            else:
                canonical[k] = qualified
                page.own.append(name)
        pages.append(page)
    return pages, problems


def _first_line(mod) -> str:
    doc = inspect.getdoc(mod) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def write_api_pages(api_dir: str | Path, package: str = PACKAGE, sections=None, faces=None) -> list[ModulePage]:
    """Write ``index.rst`` and one page per module into ``api_dir``; returns the pages.

    Raises
    ------
    RuntimeError
        If a public module does not import or lists a name it does not define.
    """
    pages, problems = collect(package, sections, faces)
    if problems:
        raise RuntimeError("API reference: " + "; ".join(problems))
    api_dir = Path(api_dir)
    api_dir.mkdir(parents=True, exist_ok=True)
    for old in api_dir.glob("*.rst"):  # pages of modules that are gone
        old.unlink()
    index = ["API reference", "=" * 13, "",
             "One page per public module, generated from its ``__all__``; one page per name.", "",
             ".. toctree::", "   :maxdepth: 1", ""]
    for page in pages:
        index.append(f"   {page.module}")
        _write(api_dir / f"{page.module}.rst", _module_page(page))
    _write(api_dir / "index.rst", "\n".join(index) + "\n")
    return pages


def _module_page(page: ModulePage) -> str:
    title = f"``{page.module}``" if page.title == page.module else f"{page.title} (``{page.module}``)"
    lines = [title, "=" * len(title), "", f".. automodule:: {page.module}", "   :no-members:", ""]
    if page.own:
        lines += [".. currentmodule:: " + page.module, "", ".. autosummary::", "   :toctree: generated",
                  "   :nosignatures:", ""]
        lines += [f"   {name}" for name in page.own]
        lines.append("")
    if page.aliases:
        lines += ["Also exported here (documented under another module):", ""]
        for name, (role, target) in page.aliases.items():
            lines.append(f"* ``{name}``: :{'py:mod' if role == 'mod' else 'py:obj'}:`{target}`")
        lines.append("")
    return "\n".join(lines)


def _write(path: Path, text: str) -> None:
    if not path.exists() or path.read_text(encoding="utf-8") != text:  # unchanged pages are not rebuilt
        path.write_text(text, encoding="utf-8")


def expected_pages(pages: list[ModulePage]) -> dict[str, str]:
    """``{qualified name: page path relative to api/, without suffix}`` for every exported name."""
    out = {}
    for page in pages:
        for name in page.own:
            out[f"{page.module}.{name}"] = f"generated/{page.module}.{name}"
        for name, (role, target) in page.aliases.items():
            out[f"{page.module}.{name}"] = target if role == "mod" else f"generated/{target}"
    return out


def api_problems(api_dir: str | Path, html_api_dir: str | Path | None = None, package: str = PACKAGE,
                 sections=None, faces=None) -> list[str]:
    """Every name of every public ``__all__`` (and of the modules without one)
    that has no page: no generated ``.rst`` under ``api_dir``, or, when
    ``html_api_dir`` is given, no built ``.html`` there. Empty when complete."""
    pages, problems = collect(package, sections, faces)
    api_dir = Path(api_dir)
    for qualified, rel in sorted(expected_pages(pages).items()):
        if not (api_dir / f"{rel}.rst").is_file():
            problems.append(f"{qualified}: no API source page {rel}.rst")
        elif html_api_dir is not None and not (Path(html_api_dir) / f"{rel}.html").is_file():
            problems.append(f"{qualified}: no built API page {rel}.html")
    return problems


def package_envvars(package: str = PACKAGE) -> set[str]:
    """Every ``FASTRL_*`` name in the package's Python sources."""
    root = Path(importlib.import_module(package).__file__).parent
    found = set()
    for path in root.rglob("*.py"):
        found |= set(_ENV_RE.findall(path.read_text(encoding="utf-8")))
    return found


def documented_envvars(docs_dir: str | Path) -> set[str]:
    """Names given an ``.. envvar::`` entry in the docs' ``.rst`` sources (generated API pages excluded)."""
    docs_dir = Path(docs_dir)
    found = set()
    for path in docs_dir.rglob("*.rst"):
        rel = path.relative_to(docs_dir).parts
        if rel[0] in ("_build", "api", "auto_examples", "gen_modules"):
            continue
        found |= set(_ENVVAR_DIRECTIVE_RE.findall(path.read_text(encoding="utf-8")))
    return found


def envvar_problems(docs_dir: str | Path, package: str = PACKAGE) -> list[str]:
    """Environment switches read by the package but not documented with ``.. envvar::``."""
    missing = sorted(package_envvars(package) - documented_envvars(docs_dir))
    return [f"environment variable {v} is used in {package} but has no '.. envvar:: {v}' entry in the docs"
            for v in missing]
