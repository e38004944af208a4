"""The benchmark scripts run against an installed (non-editable) fastrl.

``FASTRL_INSTALLED_PYTHON`` names an interpreter whose fastrl is a wheel
install (``.ci/build-wheel`` leaves one and prints the variable). The scripts
run in place (``benchmarks/`` of this checkout; the quick modes write nothing
there) from a temporary directory outside the checkout, without PYTHONPATH, so
a benchmark that put the source tree on ``sys.path`` would import its fastrl,
which has no compiled core, and fail here. Skipped when the
variable is unset, except in CI (``CI`` set), where that is a failure.
"""
from __future__ import annotations

import ast
import json
import math
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"


@pytest.fixture(scope="module")
def installed_python():
    py = os.environ.get("FASTRL_INSTALLED_PYTHON")
    if not py:
        msg = "FASTRL_INSTALLED_PYTHON is unset (run .ci/build-wheel and export the line it prints)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    assert Path(py).is_file(), f"FASTRL_INSTALLED_PYTHON={py} does not exist"
    return py


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, installed_python):
    """The run directory, outside the checkout."""
    return tmp_path_factory.mktemp("installed")


def _env():
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "TRITON_INTERPRET", "FASTRL_BACKEND")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _run(py, workdir, *args, env=None, timeout=300):
    res = subprocess.run([py, *args], cwd=workdir, env=env or _env(), capture_output=True, text=True,
                         timeout=timeout)
    assert res.returncode == 0, f"{args[0]} exited {res.returncode}\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res.stdout


def test_fastrl_is_a_wheel_install(installed_python, workdir):
    out = _run(installed_python, workdir, "-c", (
        "import json, fastrl, fastrl._C, importlib.metadata as m; "
        "d = m.distribution('fastrl'); u = d.read_text('direct_url.json'); "
        "print(json.dumps({'file': fastrl.__file__, 'core': fastrl._C.__file__, "
        "'editable': bool(u and json.loads(u).get('dir_info', {}).get('editable'))}))"))
    info = json.loads(out.strip().splitlines()[-1])
    assert not info["editable"], "fastrl is an editable install"
    assert not Path(info["file"]).resolve().is_relative_to(ROOT / "fastrl"), info["file"]
    assert Path(info["core"]).parent == Path(info["file"]).parent, info


def test_bench_masking_quick(installed_python, workdir):
    out = _run(installed_python, workdir, str(BENCH / "bench_masking.py"), "--quick", "--repeat", "1")
    rows = [ast.literal_eval(line) for line in out.splitlines() if line.startswith("{'op'")]
    assert {r["op"] for r in rows} == {"patchify_and_mask", "mae_loss fwd+bwd", "bert_mask", "block_mask",
                                       "vq_nearest"}, out[-2000:]
    for r in rows:
        assert r["check"] is True, r  # fastrl agrees with the reference implementation
        assert r["fastrl_s"] > 0 and r["ref_s"] > 0 and math.isfinite(r["time_ratio"]), r


def _mnist():
    path = Path(os.environ.get("FASTRL_MNIST") or ROOT.parent / "shared" / "data" / "mnist.npz")
    if not path.is_file():
        pytest.skip(f"MNIST not available at {path} (set FASTRL_MNIST)")
    return path


def test_train_ssl_simclr(installed_python, workdir):
    env = _env()
    env["FASTRL_MNIST"] = str(_mnist())
    out_json = workdir / "simclr.json"
    _run(installed_python, workdir, str(BENCH / "train_ssl.py"), "--method", "simclr",
         "--epochs", "1", "--limit", "256", "--no-tsne", "--quiet", "--threads", "2", "--json", str(out_json),
         env=env)
    res = json.loads(out_json.read_text())
    assert res["machine"]["fastrl"]["compiled_core"] is True
    (run,) = res["runs"]
    assert run["method"] == "simclr" and run["train_images"] == 256 and run["epochs"] == 1.0
    (loss,) = run["loss_per_epoch"]
    # NT-Xent over 2 x 256 views at temperature 0.2 (benchmarks/_ssl_models.py): cosine logits in
    # [-5, 5], so 0 < loss <= log(511) + 10
    assert 0 < loss <= math.log(2 * 256 - 1) + 10, loss
    # a 10-class probe: far above chance (0.1) for features of MNIST digits
    assert 0.5 < run["linear_probe"] <= 1 and 0.5 < run["knn_accuracy"] <= 1, run
    assert run["feature_dim"] > 0 and run["train_seconds"] > 0
