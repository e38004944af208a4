"""Every number in README.md's result tables comes from benchmarks/results/*.json
(issue 24): each marked table equals its rendering by benchmarks/readme_tables.py,
a table with timings or ratios cannot stay unmarked, and the check fails on an
edited copy of the README. Reads text and JSON only (no benchmark runs)."""
from __future__ import annotations

import importlib.util
import json
import random
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("readme_tables", ROOT / "benchmarks" / "readme_tables.py")
rt = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(rt)

README_TEXT = (ROOT / "README.md").read_text()


@pytest.mark.parametrize("name", sorted(rt.TABLES))
def test_marked_table_equals_its_results_file(name):
    assert name in rt.marked_tables(README_TEXT), f"README.md has no <!-- table:{name} --> block"
    have = rt.table_text(README_TEXT, name)
    want = rt.TABLES[name][1](rt.RESULTS)
    assert have == want, "\n" + "\n".join(rt.check_text(README_TEXT))


def test_readme_check_is_clean_and_every_measurement_table_is_marked():
    assert rt.unmarked_measurement_tables(README_TEXT) == []
    assert rt.check_text(README_TEXT) == []


def test_an_unmarked_table_with_timings_is_reported():
    extra = ("\n\n| case | time |\n|---|---|\n| new | 1.5 s |\n"
             "\nand a ratio table:\n\n| a | b |\n|---|---|\n| x | 0.5× |\n")
    text = README_TEXT + extra
    first_lines = rt.unmarked_measurement_tables(text)
    n = README_TEXT.count("\n")
    assert first_lines == [n + 3, n + 9]
    assert sum("has no <!-- table:NAME --> marker" in p for p in rt.check_text(text)) == 2
    # a table of words only (the API overview has "N×N") is not a measurement table
    assert rt.unmarked_measurement_tables("| a |\n|---|\n| no N×N matrix |\n") == []


def _first_number_span(table: str) -> tuple[int, int]:
    """Offsets of the first decimal number (a measurement, not the "50" of
    "pca50") in the table's data rows."""
    header_len = len("\n".join(table.split("\n")[:2])) + 1
    m = re.search(r"\d+\.\d+", table[header_len:])
    return header_len + m.start(), header_len + m.end()


@pytest.mark.parametrize("name", sorted(rt.TABLES))
def test_editing_one_number_fails_the_check(name):
    first, last = rt.marked_tables(README_TEXT)[name]
    lines = README_TEXT.split("\n")
    block = "\n".join(lines[first:last])
    table = block.strip("\n")
    a, b = _first_number_span(table)
    old = table[a:b]
    digit = next(i for i in range(len(old) - 1, -1, -1) if old[i].isdigit())
    new = old[:digit] + str((int(old[digit]) + 1) % 10) + old[digit + 1:]
    edited_table = table[:a] + new + table[b:]
    text = "\n".join(lines[:first] + block.replace(table, edited_table).split("\n") + lines[last:])
    problems = rt.check_text(text)
    assert len(problems) == 1 and f"README.md [{name}]" in problems[0], problems
    edited_line = edited_table.split("\n")[edited_table[:a].count("\n")]
    assert "\n-" + edited_line + "\n" in problems[0]
    # --write restores the README's table from the results file
    assert rt.write_text(text) == README_TEXT
    assert rt.check_text(rt.write_text(text)) == []


def test_cli_check_and_write(tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text(README_TEXT)
    assert rt.main(["--check", "--readme", str(readme)]) == 0
    knn = rt.table_text(README_TEXT, "knn")
    readme.write_text(README_TEXT.replace(knn, knn.replace("| 1 |", "| 2 |", 1)))
    assert rt.main(["--check", "--readme", str(readme)]) == 1
    assert "README.md [knn]" in capsys.readouterr().out
    assert rt.main(["--write", "--readme", str(readme)]) == 0
    assert readme.read_text() == README_TEXT


def test_marker_errors():
    with pytest.raises(ValueError, match="no closing"):
        rt.marked_tables("<!-- table:knn -->\n| a |\n")
    with pytest.raises(ValueError, match="without an opening"):
        rt.marked_tables("| a |\n<!-- /table -->\n")
    with pytest.raises(ValueError, match="marked twice"):
        rt.marked_tables("<!-- table:knn -->\n<!-- /table -->\n<!-- table:knn -->\n<!-- /table -->\n")
    text = README_TEXT.replace("<!-- table:ssl -->", "<!-- table:sssl -->")
    problems = rt.check_text(text)
    assert any("unknown table 'sssl'" in p for p in problems)
    assert any("no <!-- table:ssl -->" in p for p in problems)


def test_rounding_is_half_up_on_the_decimal_value():
    assert rt.fixed(0.9821 - 0.8576, 3) == "0.125"   # binary 0.12449999...
    assert rt.fixed(-0.0001, 3) == "0.000"
    assert rt.sig(0.0310496) == "0.0310"
    assert rt.sig(9.996) == "10.0"
    assert rt.sig(1234.5) == "1235"
    assert rt.sig(0.000684697) == "0.000685"
    assert rt.sig(0.0992, max_decimals=3) == "0.099"
    assert rt.sig(0.000684697, max_decimals=3) == "0.001"


# ------------------------------------------------ the schemas of the reworked loss benchmarks

def _rounds(rng):
    ts = sorted(rng.uniform(0.001, 20) for _ in range(5))
    return {"min_s": ts[0], "median_s": ts[2], "times_s": ts}


def _write(tmp_path, name, payload):
    (tmp_path / name).write_text(json.dumps(payload))
    return tmp_path


def test_contrastive_new_schema_renders_every_grid_row(tmp_path):
    """losses_contrastive.py's interleaved schema: one line per fastrl row of
    the grid, small N included, min / median of both and both ratios."""
    rng = random.Random(1)
    rows, cells = [], [(1024, 128), (4096, 256), (8192, 256)]
    for loss, peer in (("nt_xent", "lightly"), ("clip", "open_clip"), ("siglip", "open_clip")):
        for n, d in cells:
            ours, theirs = _rounds(rng), _rounds(rng)
            rows.append({"loss": loss, "impl": "fastrl", "N": n, "D": d, "dtype": "float32", **ours, "vs": peer,
                         "ratio_min": ours["min_s"] / theirs["min_s"],
                         "ratio_median": ours["median_s"] / theirs["median_s"]})
            rows.append({"loss": loss, "impl": peer, "N": n, "D": d, "dtype": "float32", **theirs})
    text = rt.render_contrastive(_write(tmp_path, "losses_contrastive.json", {"repeat": 5, "rows": rows}))
    lines = text.split("\n")
    assert len(lines) == 2 + len(rows) // 2
    for ours, theirs in zip(rows[::2], rows[1::2]):
        line = next(l for l in lines if l.startswith(f"| {rt._contrastive_label(ours['loss'], ours['vs'])} | "
                                                     f"{ours['N']}, {ours['D']} |"))
        cells_ = [c.strip() for c in line.strip("|").split("|")]
        assert cells_[2] == f"{rt.sig(ours['min_s'])} s / {rt.sig(ours['median_s'])} s"
        assert cells_[3] == f"{rt.sig(theirs['min_s'])} s / {rt.sig(theirs['median_s'])} s"
        for part, r in zip(cells_[4].split(" / "), (ours["ratio_min"], ours["ratio_median"])):
            assert part == (f"**{rt.fixed(r, 2)}×**" if r > 1 else f"{rt.fixed(r, 2)}×")


def test_decorrelation_new_schema_renders_min_median_and_ratios(tmp_path):
    rng = random.Random(2)
    rows = []
    for fam in ("barlow", "vicreg"):
        for n, d in ((2048, 2048), (256, 8192)):
            ours, theirs = _rounds(rng), _rounds(rng)
            rows.append({"family": fam, "N": n, "D": d, "method": "fastrl", "peak_mib": rng.uniform(1, 500), **ours,
                         "vs": "lightly", "ratio_min": ours["min_s"] / theirs["min_s"],
                         "ratio_median": ours["median_s"] / theirs["median_s"]})
            rows.append({"family": fam, "N": n, "D": d, "method": "official", "peak_mib": 1.0, "note": "not timed"})
            rows.append({"family": fam, "N": n, "D": d, "method": "lightly", "peak_mib": rng.uniform(1, 500), **theirs})
    text = rt.render_decorrelation(_write(tmp_path, "losses_decorrelation.json", {"repeat": 5, "rows": rows}))
    lines = text.split("\n")[2:]
    assert [l.split(" | ")[1] for l in lines] == ["256 × 8192", "2048 × 2048"] * 2   # sorted by (N, D) per loss
    for ours, theirs in zip(rows[::3], rows[2::3]):
        line = next(l for l in lines if l.startswith(f"| {rt._DECORRELATION[ours['family']]} | {ours['N']} × "))
        cells_ = [c.strip() for c in line.strip("|").split("|")]
        assert cells_[2] == f"{rt.sig(ours['min_s'])} s / {rt.sig(ours['median_s'])} s"
        assert cells_[3] == f"{rt.sig(theirs['min_s'])} s / {rt.sig(theirs['median_s'])} s"
        assert rt.fixed(ours["ratio_min"], 2) in cells_[4] and rt.fixed(ours["ratio_median"], 2) in cells_[4]
        assert cells_[5] == f"{rt.mib(ours['peak_mib'])} / {rt.mib(theirs['peak_mib'])}"


def test_classical_interleaved_schema_renders_pairs_and_fastrl_only_rows(tmp_path):
    """bench_classical.py's interleaved schema: a line per comparison (speed-up
    = peer / fastrl of minima and medians), then the fastrl cases with no peer."""
    rng = random.Random(3)

    def case(group, key, impl, method, n):
        return {"group": group, "case": key, "impl": impl, "method": method, "N": n, **_rounds(rng),
                "trust@10": rng.random(), "knn_acc@10": rng.random()}

    rows = [case("PCA", "fastrl", "fastrl", "PCA", 10000), case("PCA", "sklearn", "sklearn", "PCA", 10000),
            case("MDS", "fastrl cMDS", "fastrl", "classical MDS", 2000),
            case("MDS", "sklearn SMACOF", "sklearn", "metric MDS (SMACOF)", 2000),
            case("SNE", "fastrl", "fastrl", "symmetric SNE, exact", 2000)]
    comps = [{"group": g, "fastrl": a, "peer": b, "same_method": same}
             for g, a, b, same in (("PCA", "fastrl", "sklearn", True), ("MDS", "fastrl cMDS", "sklearn SMACOF", False))]
    by = {(r["group"], r["case"]): r for r in rows}
    for c in comps:
        ours, peer = by[(c["group"], c["fastrl"])], by[(c["group"], c["peer"])]
        c.update(speedup_min=peer["min_s"] / ours["min_s"], speedup_median=peer["median_s"] / ours["median_s"])
    text = rt.render_classical(_write(tmp_path, "classical.json", {"N": 10000, "rows": rows, "comparisons": comps}))
    lines = [[c.strip() for c in l.strip("|").split("|")] for l in text.split("\n")[2:]]
    assert [l[0] for l in lines] == ["PCA", "MDS", "SNE"]
    for line, c in zip(lines, comps):
        ours, peer = by[(c["group"], c["fastrl"])], by[(c["group"], c["peer"])]
        assert line[4] == f"{rt.sig(ours['min_s'])} s / {rt.sig(ours['median_s'])} s"
        assert line[5] == f"{rt.sig(peer['min_s'])} s / {rt.sig(peer['median_s'])} s"
        assert line[6].replace("*", "") == f"{rt.sig(c['speedup_min'])}× / {rt.sig(c['speedup_median'])}×"
        assert line[7] == f"{rt.fixed(ours['trust@10'], 3)} / {rt.fixed(peer['trust@10'], 3)}"
    assert lines[1][3].endswith("(other method)") and not lines[0][3].endswith("(other method)")
    assert lines[2][3] == lines[2][5] == lines[2][6] == "–"
