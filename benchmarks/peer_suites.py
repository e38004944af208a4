"""Run the peers' own test suites against fastrl, with only their imports swapped.

    PYTHONPATH=. python benchmarks/peer_suites.py [--suite sklearn opentsne lightly]
        [--lightly-tests DIR] [--reference] [--timeout 1800]

Pinned versions: scikit-learn 1.9.1 (``sklearn/manifold/tests`` of the installed
package when it is 1.9.1, else of its wheel), openTSNE 1.0.4 (the ``tests/``
of its sdist) and lightly 1.6.0 (its sdist ships no tests: pass a checkout of
lightly's ``tests/`` at v1.6.0 with ``--lightly-tests``). The peers' files are
downloaded with pip into a temporary directory at run time, rewritten there
and never copied into this repository.

The rewrite changes imports only:

* scikit-learn: after the module's imports, ``TSNE``, ``SpectralEmbedding``,
  ``spectral_embedding``, ``ClassicalMDS`` (``fastrl.manifold``) and
  ``trustworthiness`` (``fastrl.metrics``) are re-imported from fastrl when the
  module imported them; tests of scikit-learn's private helpers still run on
  scikit-learn, so each module's counts are also given for the tests that use
  a swapped name (``swapped``);
* openTSNE: ``openTSNE`` -> ``fastrl.opentsne`` in imports and in the dotted
  names given to ``unittest.mock.patch``;
* lightly: names that ``fastrl.losses`` has are re-imported from it after the
  module's imports (``from lightly.loss... import NTXentLoss`` and the memory bank).

Each suite runs in a pytest subprocess (``--junitxml``); the per-module
pass / fail / skip counts, every failure with a one-line reason and the machine
go to ``benchmarks/results/peer_suites.json``. ``--reference`` also runs the
unmodified suites on the peer itself (failures there are the peer's own).
"""
from __future__ import annotations

import argparse
import ast
import glob
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

from _common import write_results

PINS = {"sklearn": ("scikit-learn", "1.9.1"), "opentsne": ("openTSNE", "1.0.4"), "lightly": ("lightly", "1.6.0")}
SKLEARN_SWAP = {"TSNE": "fastrl.manifold", "SpectralEmbedding": "fastrl.manifold",
                "spectral_embedding": "fastrl.manifold", "ClassicalMDS": "fastrl.manifold",
                "trustworthiness": "fastrl.metrics"}
LIGHTLY_MODULES = ("lightly.loss", "lightly.models.modules.memory_bank")


# ----------------------------------------------------------------------------- fetching
def _pip_download(spec: str, dest: Path, sdist: bool) -> Path:
    name = spec.split("==")[0]
    fmt = ["--no-binary", name] if sdist else ["--only-binary", ":all:"]
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", *fmt, spec, "-d", str(dest)]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    files = sorted(dest.glob("*.tar.gz" if sdist else "*.whl"), key=os.path.getmtime)
    if not files:
        raise RuntimeError(f"pip download {spec} left no {'sdist' if sdist else 'wheel'} in {dest}")
    return files[-1]


def _unpack(archive: Path, dest: Path) -> Path:
    if archive.suffix == ".whl":
        with zipfile.ZipFile(archive) as z:
            z.extractall(dest)
        return dest
    with tarfile.open(archive) as t:
        t.extractall(dest, filter="data")
    return next(p for p in dest.iterdir() if p.is_dir())


def fetch_sklearn(work: Path) -> tuple[Path, str]:
    import sklearn
    version = PINS["sklearn"][1]
    if sklearn.__version__ == version:
        src, origin = Path(sklearn.__file__).parent / "manifold" / "tests", "installed package"
    else:
        whl = _pip_download(f"scikit-learn=={version}", work / "dl", sdist=False)
        src, origin = _unpack(whl, work / "sk") / "sklearn" / "manifold" / "tests", whl.name
    out = work / "sklearn_tests"
    shutil.copytree(src, out, ignore=shutil.ignore_patterns("__pycache__"))
    return out, origin


def fetch_opentsne(work: Path) -> tuple[Path, str]:
    sdist = _pip_download(f"openTSNE=={PINS['opentsne'][1]}", work / "dl", sdist=True)
    root = _unpack(sdist, work / "ot")
    tests = root / "tests"
    if not tests.is_dir():
        raise RuntimeError(f"{sdist.name} has no tests/")
    out = work / "ot_suite" / "tests"
    shutil.copytree(tests, out, ignore=shutil.ignore_patterns("__pycache__"))
    (out / "__init__.py").touch()  # the modules import each other as `tests.test_tsne` / `.test_tsne`
    return out, sdist.name


def fetch_lightly(work: Path, given: str | None) -> tuple[Path | None, str]:
    if given:
        out = work / "lightly_suite" / "tests"
        shutil.copytree(given, out, ignore=shutil.ignore_patterns("__pycache__"))
        return out, f"local copy of lightly's tests ({given})"
    sdist = _pip_download(f"lightly=={PINS['lightly'][1]}", work / "dl", sdist=True)
    root = _unpack(sdist, work / "lt")
    if (root / "tests").is_dir():
        out = work / "lightly_suite" / "tests"
        shutil.copytree(root / "tests", out)
        return out, sdist.name
    return None, f"{sdist.name} ships no tests/ (pass --lightly-tests DIR: lightly's tests/ at v1.6.0)"


# ----------------------------------------------------------------------------- rewriting
def _imports_end(tree: ast.Module) -> int:
    """Line after the last top-level import (the overrides go there)."""
    last = 0
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            last = node.end_lineno
        elif isinstance(node, ast.Try) and any(isinstance(n, (ast.Import, ast.ImportFrom)) for n in node.body):
            last = node.end_lineno
    return last


def _override(path: Path, wanted) -> set[str]:
    """Insert ``from fastrl... import name`` lines after the imports of ``path``
    for each name ``wanted(module, name)`` maps to a fastrl module; returns the names."""
    src = path.read_text()
    tree = ast.parse(src)
    lines: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module:
            for a in node.names:
                target = wanted(node.module, a.name)
                if target:
                    lines[a.asname or a.name] = f"from {target} import {a.name}" + (
                        f" as {a.asname}" if a.asname else "")
    if lines:
        body = src.splitlines(keepends=True)
        at = _imports_end(tree)
        body.insert(at, "".join(f"{ln}  # peer_suites: swapped to fastrl\n" for ln in lines.values()))
        path.write_text("".join(body))
    return set(lines)


def swap_sklearn(path: Path) -> set[str]:
    return _override(path, lambda mod, name: SKLEARN_SWAP.get(name) if mod.startswith("sklearn.manifold") else None)


def swap_lightly(path: Path) -> set[str]:
    import fastrl.losses as fl
    return _override(path, lambda mod, name: "fastrl.losses" if mod.startswith(LIGHTLY_MODULES) and hasattr(fl, name)
                     else None)


def swap_opentsne(path: Path) -> set[str]:
    src = path.read_text()
    new = re.sub(r"^(\s*)import openTSNE\s*$", r"\1import fastrl.opentsne as openTSNE", src, flags=re.M)
    # `import openTSNE.affinity` would bind `openTSNE` to the peer itself: import fastrl's submodule instead
    new = re.sub(r"^(\s*)import openTSNE((?:\.\w+)+)\s*$",
                 r"\1import fastrl.opentsne\2, fastrl.opentsne as openTSNE", new, flags=re.M)
    new = re.sub(r"^(\s*)from openTSNE(\.| )", r"\1from fastrl.opentsne\2", new, flags=re.M)
    new = re.sub(r"""(["'])openTSNE\.""", r"\1fastrl.opentsne.", new)  # mock.patch targets
    left = re.findall(r"^\s*(?:import|from) openTSNE\b.*$", new, flags=re.M)
    if left:
        raise RuntimeError(f"{path.name}: imports of openTSNE left after the swap: {left}")
    path.write_text(new)
    return {"openTSNE"} if new != src else set()


def _tests_using(path: Path, names: set[str]) -> set[str]:
    """Names of the test functions (``Class::test`` for methods) whose code uses one of ``names``."""
    tree = ast.parse(path.read_text())
    out = set()

    def uses(node):
        return any(isinstance(n, ast.Name) and n.id in names for n in ast.walk(node))

    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test") and uses(node):
            out.add(node.name)
        elif isinstance(node, ast.ClassDef):
            for m in node.body:
                if isinstance(m, ast.FunctionDef) and m.name.startswith("test") and (uses(m) or uses(node)):
                    out.add(f"{node.name}::{m.name}")
    return out


# ----------------------------------------------------------------------------- running
def _reason(el) -> str:
    msg = (el.get("message") or el.text or "").strip().splitlines()
    return (msg[0] if msg else el.tag)[:300]


def run_pytest(cwd: Path, files: list[str], plugins: list[str], timeout: int, env_extra=None) -> dict:
    xml = cwd / f"junit_{int(time.time() * 1000)}.xml"
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--continue-on-collection-errors",
           f"--junitxml={xml}", "-o", "junit_family=xunit2", "--rootdir", str(cwd),
           *sum((["-p", p] for p in plugins), []), *files]
    env = {**os.environ, **(env_extra or {})}
    env.pop("PYTHONPATH", None)  # fastrl as installed, not this checkout's tests/
    t0 = time.time()
    try:
        proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
        tail = (proc.stdout + proc.stderr)[-3000:]
        rc = proc.returncode
    except subprocess.TimeoutExpired as exc:
        tail, rc = f"timed out after {timeout} s: {(exc.stdout or b'')[-2000:]!r}", None
    wall = round(time.time() - t0, 1)
    cases = []
    if xml.exists():
        for tc in ET.parse(xml).getroot().iter("testcase"):
            outcome, reason = "passed", None
            for child in tc:
                if child.tag in ("failure", "error", "skipped"):
                    outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[child.tag]
                    reason = _reason(child)
                    break
            cases.append({"classname": tc.get("classname", ""), "name": tc.get("name", ""),
                          "file": tc.get("file"), "outcome": outcome, "reason": reason})
    return {"rc": rc, "wall_s": wall, "cases": cases, "tail": tail if rc not in (0, 1) else None}


def _module_of(case) -> str:
    cls = case["classname"] or case["name"]  # a collection error names the module only
    parts = cls.split(".")
    mod = next((p for p in parts if p.startswith("test_")), parts[-1] if parts else "?")
    return mod


def _base_name(case) -> str:
    """``Class::test`` or ``test`` (parametrisation stripped) for the swapped-test lookup."""
    name = case["name"].split("[")[0]
    cls = case["classname"].split(".")[-1]
    return f"{cls}::{name}" if cls and not cls.startswith("test_") else name


def summarise(result: dict, swapped: dict[str, set[str]] | None) -> dict:
    modules: dict[str, dict] = {}
    failures = []
    for c in result["cases"]:
        mod = _module_of(c)
        m = modules.setdefault(mod, {"passed": 0, "failed": 0, "error": 0, "skipped": 0})
        m[c["outcome"]] += 1
        if swapped is not None:
            s = m.setdefault("swapped", {"passed": 0, "failed": 0, "error": 0, "skipped": 0})
            if _base_name(c) in swapped.get(mod, set()):
                s[c["outcome"]] += 1
        if c["outcome"] in ("failed", "error"):
            failures.append({"test": f"{mod}::{_base_name(c)}" + (c["name"][len(c['name'].split('[')[0]):]),
                             "outcome": c["outcome"], "reason": c["reason"]})
    skips = sorted({f"{_module_of(c)}: {c['reason']}" for c in result["cases"] if c["outcome"] == "skipped"})
    totals = {k: sum(m[k] for m in modules.values()) for k in ("passed", "failed", "error", "skipped")}
    out = {"totals": totals, "modules": modules, "failures": failures, "skip_reasons": skips,
           "wall_s": result["wall_s"], "pytest_rc": result["rc"]}
    if result["tail"]:
        out["pytest_output_tail"] = result["tail"]
    return out


def suite_sklearn(work: Path, args) -> dict:
    tests, origin = fetch_sklearn(work)
    files, swapped = [], {}
    for f in sorted(tests.glob("test_*.py")):
        names = swap_sklearn(f)
        if names:  # modules with no fastrl counterpart (isomap, LLE, ...) are left out
            files.append(f.name)
            swapped[f.stem] = _tests_using(f, names)
    res = summarise(run_pytest(tests, files, ["sklearn.conftest"], args.timeout), swapped)
    res.update(source=origin, version=PINS["sklearn"][1], files=files,
               swap="TSNE, SpectralEmbedding, spectral_embedding, ClassicalMDS -> fastrl.manifold; "
                    "trustworthiness -> fastrl.metrics")
    if args.reference:
        ref = work / "sklearn_ref"
        import sklearn
        shutil.copytree(Path(sklearn.__file__).parent / "manifold" / "tests", ref,
                        ignore=shutil.ignore_patterns("__pycache__"))
        res["reference_on_peer"] = summarise(run_pytest(ref, files, ["sklearn.conftest"], args.timeout), None)
    return res


def suite_opentsne(work: Path, args) -> dict:
    tests, origin = fetch_opentsne(work)
    ref = work / "ot_ref" / "tests"
    if args.reference:
        shutil.copytree(tests, ref)
    files = sorted(p.name for p in tests.glob("test_*.py"))
    for f in files:
        swap_opentsne(tests / f)
    res = summarise(run_pytest(tests.parent, [f"tests/{f}" for f in files], [], args.timeout), None)
    res.update(source=origin, version=PINS["opentsne"][1], files=files,
               swap="openTSNE -> fastrl.opentsne (imports and mock.patch targets)")
    if args.reference:
        res["reference_on_peer"] = summarise(run_pytest(ref.parent, [f"tests/{f}" for f in files], [],
                                                        args.timeout), None)
    return res


def suite_lightly(work: Path, args) -> dict:
    tests, origin = fetch_lightly(work, args.lightly_tests)
    if tests is None:
        return {"version": PINS["lightly"][1], "source": origin, "skipped": True}
    files, swapped = [], {}
    for f in sorted(glob.glob(str(tests / "**" / "test_*.py"), recursive=True)):
        names = swap_lightly(Path(f))
        if names:
            files.append(os.path.relpath(f, tests.parent))
            swapped[Path(f).stem] = _tests_using(Path(f), names)
    res = summarise(run_pytest(tests.parent, files, [], args.timeout), swapped)
    res.update(source=origin, version=PINS["lightly"][1], files=files,
               swap="names fastrl.losses has, imported from lightly.loss* / lightly.models.modules.memory_bank")
    return res


SUITES = {"sklearn": suite_sklearn, "opentsne": suite_opentsne, "lightly": suite_lightly}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--suite", nargs="+", choices=list(SUITES), default=list(SUITES))
    ap.add_argument("--lightly-tests", help="directory holding lightly's tests/ at v1.6.0")
    ap.add_argument("--reference", action="store_true", help="also run the unmodified suites on the peer")
    ap.add_argument("--timeout", type=int, default=1800, help="seconds per pytest run")
    ap.add_argument("--out", default="peer_suites", help="results/<out>.json")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (printed)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="fastrl_peer_suites_"))
    payload = {"suites": {}}
    try:
        for name in args.suite:
            print(f"== {name}", flush=True)
            try:
                payload["suites"][name] = SUITES[name](work, args)
            except Exception as exc:  # a fetch that failed is reported, the other suites still run
                payload["suites"][name] = {"error": f"{type(exc).__name__}: {exc}"}
            s = payload["suites"][name]
            print({k: s[k] for k in ("totals", "source", "error") if k in s}, flush=True)
            for mod, counts in s.get("modules", {}).items():
                print(f"   {mod}: {counts}")
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    write_results(args.out, payload)


if __name__ == "__main__":
    main()
