"""Compile every Triton kernel of fastrl for Hopper (sm_90) on a machine without a GPU.

    python benchmarks/aot_sm90.py [--out FILE.jsonl] [--quick]

Triton's compiler and the ptxas bundled with the triton wheel run on the CPU, so
this catches what the interpreter cannot: compile errors (non-constexpr globals,
unsupported ops), shared memory over the 227 KiB limit, and register spills
(``cuobjdump -res-usage``: REG, STACK bytes). One JSON line per kernel x config.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

os.environ["TRITON_INTERPRET"] = "0"
os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")

import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

TARGET = GPUTarget("cuda", 90, 32)
SMEM_LIMIT = 232448  # 227 KiB, opt-in maximum per block on H100/H200
CUOBJDUMP = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"


def compile_one(fn, types: dict, consts: dict, num_warps: int, num_stages: int) -> dict:
    sig = {n: ("constexpr" if n in consts else types[n]) for n in fn.arg_names}
    src = ASTSource(fn=fn, signature=sig, constexprs={(fn.arg_names.index(k),): v for k, v in consts.items()})
    t0 = time.time()
    try:
        k = triton.compile(src, target=TARGET, options=dict(num_warps=num_warps, num_stages=num_stages))
    except Exception as exc:  # noqa: BLE001
        return {"ok": False, "error": str(exc)[-600:]}
    rec = {"ok": True, "smem": k.metadata.shared, "compile_s": round(time.time() - t0, 1)}
    with tempfile.NamedTemporaryFile(suffix=".cubin", delete=False) as f:
        f.write(k.asm["cubin"])
    try:
        out = subprocess.run([str(CUOBJDUMP), "-res-usage", f.name], capture_output=True, text=True).stdout
        for tok in next((ln for ln in out.splitlines() if "REG:" in ln), "").split():
            key, _, val = tok.partition(":")
            if key in ("REG", "STACK", "LOCAL"):
                rec[key.lower()] = int(val)
    finally:
        os.unlink(f.name)
    rec["ok"] = rec["smem"] <= SMEM_LIMIT
    return rec


def cases(quick: bool):
    from fastrl.losses.contrastive import triton_kernels as ct
    from fastrl.losses.decorrelation import triton_kernels as dk
    from fastrl.manifold.tsne import triton_kernels as tt
    from fastrl.masking import triton_kernels as mk
    i32, f32 = "i32", "fp32"
    fwd_t = dict(A=None, B=None, OUT="*fp32", CM="*fp32", CL="*fp32", M=i32, N=i32, D=i32, stride_a=i32,
                 stride_b=i32, scale=f32, mask_off=i32, N_BUCKET=i32)
    bwd_t = dict(A=None, B=None, OUT="*fp32", OUT_B="*fp32", LSE_R="*fp32", G_R="*fp32", LSE_C="*fp32",
                 G_C="*fp32", GMAX="*fp32", M=i32, N=i32, D=i32, stride_a=i32, stride_b=i32, stride_o=i32,
                 scale=f32, mask_off=i32, N_BUCKET=i32)
    for dt, eb in (("bf16", 2), ("fp16", 2), ("fp32", 4)):
        prec = "tf32x3" if dt == "fp32" else "tf32"
        for bd in ((512,) if quick else (128, 512)):
            for backward in (False, True):
                cfgs = ct.kept_configs(bd, eb, backward, smem_bytes=ct.smem_budget_for(ct.SMEM_LIMITS["sm_90"]))
                cfgs = cfgs[:1 if quick else None]
                for cfg in cfgs:
                    if backward:
                        consts = dict(HAS_ROW=True, HAS_COL=True, HAS_MASK=False, GRAD_B=True,
                                      SCALE_P=dt == "fp16", UPCAST=False, PREC=prec, BLOCK_D=bd)
                        fn, types = ct._lse_bwd_kernel, dict(bwd_t, A=f"*{dt}", B=f"*{dt}")
                    else:
                        consts = dict(HAS_MASK=True, WANT_COL=True, UPCAST=False, PREC=prec, BLOCK_D=bd)
                        fn, types = ct._lse_fwd_kernel, dict(fwd_t, A=f"*{dt}", B=f"*{dt}")
                    consts.update(BLOCK_M=cfg["BLOCK_M"], BLOCK_N=cfg["BLOCK_N"])
                    yield (f"contrastive_{'bwd' if backward else 'fwd'}", dict(consts, dtype=dt, num_warps=cfg["num_warps"], num_stages=cfg["num_stages"]), fn,
                           types, consts, cfg["num_warps"], cfg["num_stages"])
    ptrs = lambda *names: {n: "*fp32" for n in names}  # noqa: E731
    yield ("decorr_col_stats", {}, dk._col_stats_kernel, dict(ptrs("X", "MEAN", "M2"), N=i32, D=i32, stride_n=i32),
           dict(BLOCK_N=64, BLOCK_D=64), 4, 2)
    cross_t = dict(ptrs("A", "B", "OUT"), N=i32, D=i32, stride_a=i32, stride_b=i32, scale=f32, w_off=f32,
                   w_diag=f32, eps=f32)
    for kind in (0, 1):
        c = dict(KIND=kind, PREC="tf32x3", BLOCK_I=64, BLOCK_J=64, BLOCK_N=32)
        yield ("decorr_cross_fwd", c, dk._cross_fwd_kernel, cross_t, c, 4, 2)
        bt = dict(ptrs("A", "B", "GA", "GRAD"), N=i32, D=i32, stride_a=i32, stride_b=i32, stride_g=i32, scale=f32,
                  w_off=f32, w_diag=f32, eps=f32)
        yield ("decorr_cross_bwd", c, dk._cross_bwd_kernel, bt, c, 4, 2)
        c16 = dict(c, BLOCK_I=16)  # the narrow column blocks of small D
        yield ("decorr_cross_bwd", c16, dk._cross_bwd_kernel, bt, c16, 4, 2)
    for d, cauchy in ((2, True), (2, False), (3, True)):
        c = dict(D=d, CAUCHY=cauchy, BLOCK_M=32, BLOCK_N=64)
        yield ("tsne_repulsive", c, tt._repulsive_kernel,
               dict(ptrs("y_ptr", "out_ptr", "z_ptr"), N=i32, dof=f32, inv_dof=f32), c, 4, 2)
    c = dict(D=2, BLOCK_D=2, BLOCK_E=64)
    yield ("tsne_attractive", c, tt._attractive_kernel,
           dict(indptr_ptr="*i64", indices_ptr="*i32", data_ptr="*fp32", y_ptr="*fp32", yref_ptr="*fp32",
                out_ptr="*fp32", exaggeration=f32, inv_dof=f32), c, 4, 2)
    for patch in (True, False):
        c = dict(P=16, C=3, GRID_W=14, PATCH=patch, BLOCK_D=1024)
        yield ("mask_gather_rows", c, mk._gather_rows_kernel,
               dict(src_ptr="*bf16", ids_ptr="*i64", out_ptr="*bf16", K=i32, D=i32, s_b=i32, s_c=i32, s_h=i32,
                    s_w=i32, s_l=i32, s_d=i32), c, 4, 2)
    for dt in ("fp32", "bf16"):
        c = dict(P=16, C=3, GRID_W=14, NORM=True, NEED_GRAD=True, BLOCK_D=1024)
        yield ("mae_loss", dict(dtype=dt, **c), mk._mae_loss_kernel,
               dict(img_ptr="*fp32", pred_ptr=f"*{dt}", w_ptr="*fp32", grad_ptr=f"*{dt}", rowloss_ptr="*fp32",
                    L=i32, D=i32, s_b=i32, s_c=i32, s_h=i32, s_w=i32, p_b=i32, p_l=i32, p_d=i32), c, 4, 2)
    c = dict(HAS_SPECIAL=True, BLOCK=1024)
    yield ("bert_mask", c, mk._bert_mask_kernel,
           dict(ids_ptr="*i64", special_ptr="*u8", out_ptr="*i64", labels_ptr="*i64", n=i32, vocab=i32,
                mask_id=i32, t_sel=i32, t_mask=i32, t_rand=i32, k0="i64", k1="i64"), c, 4, 2)
    for dt, ieee in (("fp32", True), ("bf16", False)):
        c = dict(UPCAST=False, IEEE=ieee, BLOCK_N=32, BLOCK_K=64, BLOCK_D=64)
        yield ("vq_nearest", dict(dtype=dt, **c), mk._vq_nearest_kernel,
               dict(z_ptr=f"*{dt}", c_ptr=f"*{dt}", cn_ptr="*fp32", out_ptr="*i64", N=i32, K=i32, D=i32, s_zn=i32,
                    s_zd=i32, s_ck=i32, s_cd=i32), c, 4, 2)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--quick", action="store_true", help="one config per contrastive kernel, D = 512 only")
    args = p.parse_args(argv)
    bad = 0
    for name, label, fn, types, consts, w, st in cases(args.quick):
        rec = {"kernel": name, **{k: v for k, v in label.items() if k not in ("UPCAST",)},
               **compile_one(fn, types, consts, w, st)}
        bad += not rec["ok"]
        print(json.dumps(rec), flush=True)
        if args.out:
            with open(args.out, "a") as f:
                f.write(json.dumps(rec) + "\n")
    print(f"{'FAIL' if bad else 'PASS'}: {bad} kernel configs failed to compile or exceed shared memory")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
