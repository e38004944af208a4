"""Loss benchmarks: fastrl against its peers, side by side in one process.

    python benchmarks/bench_losses.py [--family contrastive|decorrelation|all] [--device cuda]

Each family lives in ``benchmarks/losses_<family>.py`` exposing
``run(args) -> dict`` and writes ``benchmarks/results/losses_<family>.json``.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

FAMILIES = ("contrastive", "decorrelation")


def _ints(text: str) -> list[int]:
    return [int(float(x)) for x in text.split(",") if x.strip()]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--family", choices=FAMILIES + ("all",), default="all")
    p.add_argument("--sizes", type=_ints, default=None, help="batch sizes N (comma list; family default if unset)")
    p.add_argument("--dims", type=_ints, default=None, help="feature dims D (comma list; family default if unset)")
    p.add_argument("--repeat", type=int, default=5,
                   help="interleaved rounds per cell (fastrl and its peers once each per round; min and median)")
    p.add_argument("--max-n-cpu", type=int, default=16384, help="largest N run on the CPU")
    p.add_argument("--no-peers", action="store_true", help="skip the peer libraries")
    p.add_argument("--allow-missing-peers", action="store_true",
                   help="go on when a peer does not load (a banner, and missing_peers in the JSON); default: stop")
    p.add_argument("--out", default=None,
                   help="results file stem (default: losses_<family>[_gpu], _partial for a subset of the grid)")
    p.add_argument("--no-acceptance", action="store_true", help="skip the fixed acceptance measurements")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="auto: CUDA when available; cuda: require it (GPU grid); cpu: the CPU grid")
    p.add_argument("--only", type=lambda t: tuple(x.strip() for x in t.split(",") if x.strip()), default=None,
                   help="comma list of losses of the family to run (e.g. siglip); default all")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.out and args.family == "all":
        raise SystemExit("--out names one results file: give --family too")
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    families = FAMILIES if args.family == "all" else (args.family,)
    status = 0
    for family in families:
        name = f"losses_{family}"
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            print(f"[{family}] benchmarks/{name}.py is not present: skipping the {family} family")
            status = status if args.family == "all" else 1
            continue
        print(f"\n##### {family} #####")
        module.run(args)
    return status


if __name__ == "__main__":
    raise SystemExit(main())
