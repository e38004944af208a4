"""README tables rendered from the results files (issue 24).

    python benchmarks/readme_tables.py --check   # exit 1 and print a diff if a table differs
    python benchmarks/readme_tables.py --write   # rewrite the marked tables in README.md

Each results-backed table in README.md sits between marker comments
(invisible on GitHub)::

    <!-- table:knn -->

    | case | library | ... |
    ...

    <!-- /table -->

(a blank line on either side of the table keeps GitHub from reading a
marker as part of it), and :data:`TABLES` maps its name to the results file(s) under
``benchmarks/results/`` and the function that renders it. Only the JSON files
are read; no benchmark runs and neither torch nor fastrl is imported. Every
function that checks takes the README text as a string, so the test suite can
check edited copies (``tests/test_readme_numbers.py``).

Rounding: :func:`fixed` (a fixed number of decimals) and :func:`sig`
(significant digits) both round half up on the decimal
value (0.9821 - 0.8576 = 0.1245 shows as 0.125, not as the binary 0.12449...).
"""
from __future__ import annotations

import argparse
import difflib
import json
import math
import re
import sys
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
RESULTS = ROOT / "benchmarks" / "results"

_START = re.compile(r"^<!-- table:([\w-]+) -->\s*$")
_END = "<!-- /table -->"
# a cell that holds a timing, a ratio or a memory size: "1.06 s", "7.0 min", "0.24×", "245 MiB"
MEASUREMENT = re.compile(r"\d\s?(?:s|ms|µs|min|h)\b|\d\s?×|\d\s?(?:KiB|MiB|GiB)\b|GFLOP/s")


# ---------------------------------------------------------------- formatting

def fixed(x: float, decimals: int) -> str:
    """``x`` with ``decimals`` decimals, rounded half up on its decimal value."""
    q = Decimal(repr(round(float(x), 10))).quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_UP)
    return str(q + 0)  # + 0 turns -0.000 into 0.000


def sig(x: float, digits: int = 3, max_decimals: int | None = None) -> str:
    """``x`` to ``digits`` significant digits, at most ``max_decimals``
    decimals: 0.031049 -> 0.0310, 9.996 -> 10.0, 1234.5 -> 1235."""
    x = float(x)
    if x == 0 or not math.isfinite(x):
        return fixed(x, 0) if x == 0 else str(x)
    natural = max(0, digits - 1 - math.floor(math.log10(abs(x))))
    decimals = natural if max_decimals is None else min(natural, max_decimals)
    text = fixed(x, decimals)
    if decimals == natural and decimals and math.floor(math.log10(abs(float(text)))) > math.floor(math.log10(abs(x))):
        text = fixed(x, decimals - 1)  # 9.996 -> 10.00 -> 10.0 (`digits` digits again)
    return text


def secs(x: float, **kw) -> str:
    return f"{sig(x, **kw)} s"


def times(x: float, decimals: int = 2, bold_above_one: bool = False) -> str:
    """A ratio as ``0.58×`` (bold when above 1 and asked: fastrl slower)."""
    text = f"{fixed(x, decimals)}×"
    return f"**{text}**" if bold_above_one and x > 1 else text


def mib(x: float) -> str:
    return fixed(x, 0)


def table(header: list[str], rows: list[list[str]]) -> str:
    """Markdown table text (no trailing newline)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _load(results: Path, name: str) -> dict:
    path = Path(results) / name
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"results file {path} (behind a README table) is missing") from exc


def _min_med(row: dict, min_key: str = "min_s", med_key: str = "median_s") -> str:
    return f"{secs(row[min_key])} / {secs(row[med_key])}"


def _ratio_pair(rmin: float, rmed: float) -> str:
    return f"{times(rmin, bold_above_one=True)} / {times(rmed, bold_above_one=True)}"


# ---------------------------------------------------------------- kNN

def render_knn(results: Path = RESULTS) -> str:
    """``knn.json`` (bench_knn.py): one row per (case, library)."""
    rows = []
    for r in _load(results, "knn.json")["rows"]:
        base = not r["library"].startswith("fastrl") and r["ratio_min"] == 1 and r["ratio_median"] == 1
        ratio = "1" if base else f"{times(r['ratio_min'])} / {times(r['ratio_median'])} {r['vs']}"
        rows.append([r["case"], r["library"], f"{fixed(r['min_s'], 2)} s", f"{fixed(r['median_s'], 2)} s",
                     ratio, fixed(r["recall"], 4)])
    return table(["case", "library", "min time", "median time", "ratio (min / median)", "recall@k"], rows)


def render_knn_large(results: Path = RESULTS) -> str:
    """``knn_large.json`` (bench_knn.py --large): NN-descent at scale, with peak memory."""
    rows = []
    for r in _load(results, "knn_large.json")["rows"]:
        base = r["library"] == r["vs"]
        ratio = "1" if base else f"{times(r['ratio_min'])} / {times(r['ratio_median'])}"
        rows.append([f"{r['n']:,}", r["library"], str(len(r["times_s"])), f"{fixed(r['min_s'], 1)} s",
                     f"{fixed(r['median_s'], 1)} s", ratio, f"{mib(r['peak_extra_mib'])} MiB", fixed(r["recall"], 5)])
    return table(["N", "library", "rounds", "min time", "median time", "ratio to pynndescent (min / median)",
                  "peak extra RSS", "recall@90"], rows)


# ---------------------------------------------------------------- t-SNE

_TSNE_LABELS = {"fastrl": "**fastrl** (FFT)", "openTSNE-fft": "openTSNE FFT", "openTSNE-bh": "openTSNE Barnes-Hut",
                "sklearn": "scikit-learn"}
_TSNE_BASE = "openTSNE-fft"


def render_tsne_mnist(results: Path = RESULTS) -> str:
    """``tsne.json`` (bench_tsne.py): the MNIST 70k rows, ratios to openTSNE FFT."""
    data = _load(results, "tsne.json")
    runs = data["mnist70k"]
    base = next(r for r in runs if r["library"] == _TSNE_BASE)
    rows = []
    for r in runs:
        lib = r["library"]
        if lib == _TSNE_BASE:
            ratio = "1"
        else:
            stored = data.get("mnist70k_ratios", {}).get(f"{lib}_over_{_TSNE_BASE}", {})
            rmin = stored.get("wall", r["wall_s"] / base["wall_s"])
            rmed = stored.get("wall_median", r["wall_median_s"] / base["wall_median_s"])
            ratio = f"{times(rmin)} / {times(rmed)}"
            ratio = f"**{ratio}**" if lib == "fastrl" else ratio
        rows.append([_TSNE_LABELS.get(lib, lib), f"{fixed(r['wall_s'], 1)} s / {fixed(r['wall_median_s'], 1)} s",
                     ratio, f"{mib(r['peak_rss_mib'])} MiB", f"{fixed(r['kl_own'], 3)} / {fixed(r['kl_common'], 3)}",
                     fixed(r["knn10_acc"], 4), fixed(r["trust10"], 4)])
    return table(["MNIST 70k", "wall (min / median)", "ratio to openTSNE FFT (min / median)", "peak extra RSS",
                  "KL (own / common)", "10-NN accuracy", "trustworthiness@10"], rows)


# ---------------------------------------------------------------- classical embeddings

_CLASSICAL_LABELS = {
    "PCA": "PCA (single run; interleaved timing below)",
    "cMDS": "classical MDS vs SMACOF MDS",
    "Laplacian": "Laplacian eigenmaps vs `SpectralEmbedding`",
    "SNE": "symmetric SNE, exact",
    "t-SNE": "t-SNE vs `TSNE`",
}


def _classical_pairs(rows: list[dict]) -> list[tuple[dict, dict | None]]:
    """(fastrl row, the scikit-learn row after it or None), in file order."""
    pairs = []
    for r in rows:
        if r["impl"] == "fastrl":
            pairs.append([r, None])
        elif pairs and pairs[-1][1] is None:
            pairs[-1][1] = r
    return [tuple(p) for p in pairs]


def _quality(ours: dict, peer: dict | None, key: str) -> str:
    return fixed(ours[key], 3) + (f" / {fixed(peer[key], 3)}" if peer else "")


def render_classical(results: Path = RESULTS) -> str:
    """``classical.json`` (bench_classical.py, MNIST 10k). Interleaved schema
    (``comparisons``): one line per compared pair, then the fastrl cases no
    pair holds; speed-up = peer / fastrl (min / median; bold below 1: fastrl
    slower). Earlier schema (one ``time_s`` per row): fastrl against the
    scikit-learn row after it, a subset size as "(2k subset)"."""
    data = _load(results, "classical.json")
    if "comparisons" in data:
        return _render_classical_v2(data)
    full_n = max(r["N"] for r in data["rows"])
    rows = []
    for ours, peer in _classical_pairs(data["rows"]):
        label = _CLASSICAL_LABELS.get(ours["method"], ours["method"])
        if ours["N"] < full_n:
            label += f" ({ours['N'] / 1000:g}k subset)"
        speed = f"{sig(peer['time_s'] / ours['time_s'])}×" if peer else "–"
        peer_s = secs(peer["time_s"], max_decimals=3) if peer else "–"
        rows.append([label, secs(ours["time_s"], max_decimals=3), peer_s, speed,
                     _quality(ours, peer, "trust@10"), _quality(ours, peer, "knn_acc@10")])
    return table(["method", "fastrl", "scikit-learn", "speed-up", "trustworthiness@10 fastrl / sklearn",
                  "5-fold 10-NN accuracy fastrl / sklearn"], rows)


def _render_classical_v2(data: dict) -> str:
    cases = {(r["group"], r["case"]): r for r in data["rows"]}
    paired = {(c["group"], c["fastrl"]) for c in data["comparisons"]}
    triples = []  # (fastrl row, peer row or None, comparison or None), grouped as in the file
    for group in dict.fromkeys(r["group"] for r in data["rows"]):
        triples += [(cases[(group, c["fastrl"])], cases[(group, c["peer"])], c)
                    for c in data["comparisons"] if c["group"] == group]
        triples += [(r, None, None) for r in data["rows"]
                    if r["group"] == group and r["impl"] == "fastrl" and (group, r["case"]) not in paired]
    lines = []
    for ours, peer, comp in triples:
        speed, other = "–", "–"
        if comp is not None:
            speed = " / ".join(f"**{sig(v)}×**" if v < 1 else f"{sig(v)}×"
                               for v in (comp["speedup_min"], comp["speedup_median"]))
            other = peer["method"] + ("" if comp.get("same_method", True) else " (other method)")
        lines.append([ours["group"], str(ours["N"]), ours["method"], other, _min_med(ours),
                      _min_med(peer) if peer else "–", speed,
                      _quality(ours, peer, "trust@10"), _quality(ours, peer, "knn_acc@10")])
    return table(["group", "N", "fastrl", "scikit-learn", "fastrl min / median", "scikit-learn min / median",
                  "speed-up (min / median)", "trustworthiness@10 fastrl / sklearn",
                  "5-fold 10-NN accuracy fastrl / sklearn"], lines)


# ---------------------------------------------------------------- contrastive losses

_CONTRASTIVE = {"nt_xent": ("`nt_xent`", "`NTXentLoss`"), "clip": ("`clip_loss`", "`ClipLoss`"),
                "siglip": ("`siglip_loss`", "`SigLipLoss`")}


def _contrastive_label(loss: str, peer: str | None) -> str:
    ours, cls = _CONTRASTIVE.get(loss, (f"`{loss}`", ""))
    return f"{ours} vs {peer} {cls}".rstrip() if peer else ours


def _peer_row(rows: list[dict], ours: dict, key: str, name: str) -> dict | None:
    same = ("N", "D", "dtype", key)
    for r in rows:
        if r.get(name) == ours.get("vs") and all(r.get(k) == ours.get(k) for k in same) and "min_s" in r:
            return r
    return None


def _cell(r: dict, dtypes: set) -> str:
    return f"{r['N']}, {r['D']}" + (f", {r['dtype']}" if len(dtypes) > 1 else "")


def render_contrastive(results: Path = RESULTS) -> str:
    """``losses_contrastive.json``: every fastrl row of the grid (small N too)
    with its peer, min / median of the interleaved rounds and both ratios;
    ratios above 1 (fastrl slower) in bold. A file of the earlier schema (one
    time per row, ``acceptance.speed``) renders its acceptance table."""
    data = _load(results, "losses_contrastive.json")
    if "acceptance" in data and not any("min_s" in r for r in data["rows"]):
        return _render_contrastive_v1(data)
    rows = data["rows"]
    dtypes = {r.get("dtype") for r in rows}
    order = {loss: i for i, loss in enumerate(_CONTRASTIVE)}
    ours = sorted((r for r in rows if r["impl"] == "fastrl" and "min_s" in r),
                  key=lambda r: (order.get(r["loss"], len(order)), r["N"], r["D"], str(r.get("dtype"))))
    out = []
    for r in ours:
        peer = _peer_row(rows, r, "loss", "impl") if "vs" in r else None
        out.append([_contrastive_label(r["loss"], r.get("vs")), _cell(r, dtypes), _min_med(r),
                    _min_med(peer) if peer else "–",
                    _ratio_pair(r["ratio_min"], r["ratio_median"]) if peer else "–"])
    return table(["fastrl vs peer", "N, D", "fastrl min / median", "peer min / median",
                  "ratio (min / median)"], out)


def _render_contrastive_v1(data: dict) -> str:
    rows = [[_contrastive_label(s["loss"], s["peer"]), f"{s['N']}, {s['D']}", secs(s["fastrl_s"]),
             secs(s["peer_s"]), times(s["ratio"])] for s in data["acceptance"]["speed"]]
    return table(["fastrl vs peer", "N, D", "fastrl", "peer", "ratio"], rows)


# ---------------------------------------------------------------- decorrelation losses

_DECORRELATION = {"barlow": "Barlow Twins", "vicreg": "VICReg", "negcos": "negative cosine"}


def render_decorrelation(results: Path = RESULTS) -> str:
    """``losses_decorrelation.json``: one row per (loss, N × D): fastrl and
    lightly min / median, both ratios (bold above 1), peak extra MiB. A file of
    the earlier schema (``time_s`` rows) renders the earlier wide table."""
    data = _load(results, "losses_decorrelation.json")
    rows = data["rows"]
    if not any("min_s" in r for r in rows):
        return _render_decorrelation_v1(rows)
    order = {f: i for i, f in enumerate(_DECORRELATION)}
    ours = sorted((r for r in rows if r["method"] == "fastrl" and "min_s" in r),
                  key=lambda r: (order.get(r["family"], len(order)), r["N"], r["D"]))
    out = []
    for r in ours:
        peer = _peer_row(rows, r, "family", "method") if "vs" in r else None
        peer = peer if peer is None or peer["method"] == "lightly" else None
        out.append([_DECORRELATION.get(r["family"], r["family"]), f"{r['N']} × {r['D']}", _min_med(r),
                    _min_med(peer) if peer else "–",
                    _ratio_pair(r["ratio_min"], r["ratio_median"]) if peer else "–",
                    f"{mib(r['peak_mib'])} / {mib(peer['peak_mib'])}" if peer else mib(r["peak_mib"])])
    return table(["loss", "N × D", "fastrl min / median", "lightly min / median", "ratio (min / median)",
                  "peak MiB fastrl / lightly"], out)


def _render_decorrelation_v1(rows: list[dict]) -> str:
    by = {(r["family"], r["N"], r["D"], r["method"]): r for r in rows}
    out = []
    for n, d in sorted({(r["N"], r["D"]) for r in rows}):
        line = [f"{n} × {d}"]
        for fam in ("barlow", "vicreg"):
            ours, peer = by[(fam, n, d, "fastrl")], by[(fam, n, d, "lightly")]
            ratio = times(ours["time_s"] / peer["time_s"], bold_above_one=True)
            line += [f"{secs(ours['time_s'], max_decimals=3)} / {secs(peer['time_s'], max_decimals=3)} ({ratio})",
                     f"{mib(ours['peak_mib'])} / {mib(peer['peak_mib'])}"]
        out.append(line)
    return table(["N × D", "Barlow Twins: fastrl / lightly", "peak MiB fastrl / lightly", "VICReg: fastrl / lightly",
                  "peak MiB fastrl / lightly"], out)


# ---------------------------------------------------------------- masked modelling

def _masking_label(op: str, sizes: dict) -> str:
    labels = {
        "patchify_and_mask": "`patchify_and_mask` vs MAE patchify + random_masking",
        "mae_loss fwd+bwd": "`mae_loss` forward + backward vs MAE forward_loss + autograd",
        "block_mask": "`block_mask` vs BEiT's generator (numpy mask, Python loop, as its authors run it)",
    }
    if op == "bert_mask" and "bert" in sizes:
        return "`bert_mask` vs HF-style collator ({} × {} tokens)".format(*sizes["bert"])
    if op == "vq_nearest" and "vq" in sizes:
        return "`vq_nearest` vs brute force (N = {}, K = {}, D = {})".format(*sizes["vq"])
    return labels.get(op, f"`{op}`")


def render_masking(results: Path = RESULTS) -> str:
    """``masking.json`` (bench_masking.py): minima, ratios of minima and of
    medians, peak MiB ("–" where the reference's rounds to 0)."""
    data = _load(results, "masking.json")
    out = []
    for r in data["rows"]:
        ref, ours = mib(r["ref_peak_mib"]), mib(r["fastrl_peak_mib"])
        peak = "–" if float(ref) == 0 else f"{ref} → {ours}"
        out.append([_masking_label(r["op"], data.get("sizes", {})), secs(r["ref_s"]), secs(r["fastrl_s"]),
                    times(r["time_ratio"], 3), times(r["time_ratio_median"], 3), peak])
    return table(["op", "reference", "fastrl", "ratio (min)", "ratio (median)", "peak MiB reference → fastrl"], out)


# ---------------------------------------------------------------- SSL results

_SSL = {"simclr": ("SimCLR", "`nt_xent`"), "moco": ("MoCo v2", "`moco_loss`, `MoCoQueue`, `momentum_update`"),
        "clip": ("CLIP (digit ↔ edge map)", "`clip_loss`"), "barlow": ("Barlow Twins", "`barlow_twins_loss`"),
        "vicreg": ("VICReg", "`vicreg_loss`"), "simsiam": ("SimSiam", "`simsiam_loss`"),
        "mae": ("MAE (ViT)", "`patchify_and_mask`, `mae_loss`")}


def render_ssl(results: Path = RESULTS) -> str:
    """``ssl_mnist.json`` (train_ssl.py): one row per trained method."""
    out = []
    for r in _load(results, "ssl_mnist.json")["runs"]:
        label, ops = _SSL.get(r["method"], (r["method"], "–"))
        epochs = r["epochs"]
        epochs = str(int(epochs)) if float(epochs).is_integer() else fixed(epochs, 1)
        gain = fixed(r["probe_gain"], 3)
        out.append([label, ops, epochs, f"{fixed(r['train_seconds'] / 60, 1)} min",
                    f"**{fixed(r['linear_probe'], 3)}**", fixed(r["random_encoder_probe"], 3),
                    gain if gain.startswith("-") else f"+{gain}", fixed(r["knn_accuracy"], 3)])
    return table(["method", "fastrl ops", "epochs", "training", "linear probe", "random encoder", "gain", "20-NN"],
                 out)


def render_tsne_scaling(results: Path = RESULTS) -> str:
    """``tsne_scaling.json`` (bench_tsne.py --scaling): one row per (library, N)."""
    out = []
    for r in _load(results, "tsne_scaling.json")["runs"]:
        if "error" in r:
            out.append([r["library"], f"{r['n']:,}", "failed: " + str(r["error"])[:60], "–", "–", "–", "–", "–", "–",
                        "–"])
            continue
        ph = r.get("phases", {})
        cell = (lambda k: secs(ph[k]) if k in ph else "–")
        out.append([r["library"], f"{r['n']:,}", secs(r["total_s"]), secs(r["per_iter_s"]), cell("knn"),
                    cell("attractive"), cell("repulsion"), f"{fixed(r['peak_rss_gib'], 2)} GiB", fixed(r["kl"], 3),
                    r.get("cpu", "–").split(" (")[0]])
    return table(["library", "N", "total", "per iteration", "kNN graph", "attractive (all iterations)",
                  "repulsion (all iterations)", "peak RSS", "KL", "CPU"], out)


# ---------------------------------------------------------------- README plumbing

TABLES = {  # marker name -> (results files it reads, renderer)
    "knn": (("knn.json",), render_knn),
    "knn-large": (("knn_large.json",), render_knn_large),
    "tsne-mnist": (("tsne.json",), render_tsne_mnist),
    "classical": (("classical.json",), render_classical),
    "contrastive": (("losses_contrastive.json",), render_contrastive),
    "decorrelation": (("losses_decorrelation.json",), render_decorrelation),
    "masking": (("masking.json",), render_masking),
    "ssl": (("ssl_mnist.json",), render_ssl),
    "tsne-scaling": (("tsne_scaling.json",), render_tsne_scaling),
}


def marked_tables(text: str) -> dict[str, tuple[int, int]]:
    """{name: (first, last) line index of the table between its markers}
    (``last`` exclusive). Raises ``ValueError`` on a marker left open or repeated."""
    lines, found, start = text.split("\n"), {}, None
    for i, line in enumerate(lines):
        m = _START.match(line)
        if m:
            if start is not None:
                raise ValueError(f"README line {i + 1}: table marker {m.group(1)!r} inside {start[0]!r}")
            start = (m.group(1), i + 1)
        elif line.strip() == _END:
            if start is None:
                raise ValueError(f"README line {i + 1}: {_END} without an opening marker")
            if start[0] in found:
                raise ValueError(f"README: table {start[0]!r} is marked twice")
            found[start[0]] = (start[1], i)
            start = None
    if start is not None:
        raise ValueError(f"README: table {start[0]!r} has no closing {_END}")
    return found


def table_text(text: str, name: str) -> str:
    """The table between the markers of ``name`` (blank lines around it dropped)."""
    first, last = marked_tables(text)[name]
    return "\n".join(text.split("\n")[first:last]).strip("\n")


def markdown_tables(text: str) -> list[tuple[int, list[str]]]:
    """Every markdown table outside code fences: (first line index, its lines)."""
    out, block, fence = [], None, False
    for i, line in enumerate(text.split("\n")):
        if line.lstrip().startswith("```"):
            fence = not fence
        is_row = not fence and line.startswith("|")
        if is_row and block is None:
            block = (i, [])
        if is_row:
            block[1].append(line)
        elif block is not None:
            out.append(block)
            block = None
    if block is not None:
        out.append(block)
    return out


def unmarked_measurement_tables(text: str) -> list[int]:
    """1-based first lines of tables holding a timing / ratio / memory cell
    that sit outside every table marker."""
    spans = list(marked_tables(text).values())
    out = []
    for first, lines in markdown_tables(text):
        inside = any(a <= first < b for a, b in spans)
        cells = [c for row in lines[2:] for c in row.strip().strip("|").split("|")]
        if not inside and any(MEASUREMENT.search(c) for c in cells):
            out.append(first + 1)
    return out


def check_text(text: str, results: Path = RESULTS) -> list[str]:
    """Problems with the README ``text``: a unified diff per table that differs
    from its rendering, a table missing its markers, an unknown marker, a
    measurement table left unmarked. Empty when all agree."""
    problems, found = [], marked_tables(text)
    for name in sorted(set(found) - set(TABLES)):
        problems.append(f"README marks an unknown table {name!r} (known: {', '.join(TABLES)})")
    for name, (_, render) in TABLES.items():
        if name not in found:
            problems.append(f"README has no <!-- table:{name} --> ... {_END} block")
            continue
        have, want = table_text(text, name), render(results)
        if have != want:
            diff = difflib.unified_diff(have.split("\n"), want.split("\n"), f"README.md [{name}]",
                                        f"rendered from {', '.join(TABLES[name][0])}", lineterm="")
            problems.append("\n".join(diff))
    for line in unmarked_measurement_tables(text):
        problems.append(f"README line {line}: a table with timings or ratios has no <!-- table:NAME --> marker")
    return problems


def write_text(text: str, results: Path = RESULTS) -> str:
    """``text`` with every marked table replaced by its rendering."""
    lines = text.split("\n")
    for name, (first, last) in sorted(marked_tables(text).items(), key=lambda kv: -kv[1][0]):
        if name in TABLES:
            lines[first:last] = ["", *TABLES[name][1](results).split("\n"), ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="exit 1 and print a diff if a table differs (default)")
    mode.add_argument("--write", action="store_true", help="rewrite the marked tables of the README in place")
    p.add_argument("--readme", type=Path, default=README)
    p.add_argument("--results", type=Path, default=RESULTS, help="folder of the results files")
    args = p.parse_args(argv)
    text = args.readme.read_text()
    if args.write:
        new = write_text(text, args.results)
        if new != text:
            args.readme.write_text(new)
        problems = [q for q in check_text(new, args.results)]
        print(f"{'rewrote' if new != text else 'unchanged:'} {args.readme}")
    else:
        problems = check_text(text, args.results)
    for q in problems:
        print(q)
    if not args.write and not problems:
        print(f"{len(TABLES)} README tables agree with {args.results}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
