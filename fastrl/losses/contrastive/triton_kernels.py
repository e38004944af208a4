"""Triton kernels of the contrastive LSE core (see ``cpu.py`` for the math).

Two kernels serve every softmax-cross-entropy loss in this package:

* ``_lse_fwd_kernel``: one program per block of rows of A streams the rows
  of B in tiles and keeps a running (max, sum) per row (flash-attention
  style online log-sum-exp); only the LSE vector is written. With
  ``WANT_COL`` the same pass also merges each tile's column (max, sum) into
  a per-program partial row ``[G, N]`` (program p owns row p and handles row
  blocks p, p + G, ...), reduced by a tiny torch combine: CLIP's row and
  column LSE cost one pass over the logits, not two.
* ``_lse_bwd_kernel``: one program per block of rows of A recomputes the
  logit tiles, ``P = exp(S - lse_row) g_row + exp(S - lse_col) g_col``, and
  accumulates ``dA = P B`` in registers; with ``GRAD_B`` it also adds
  ``dB[cols] += P^T A`` through fp32 atomics, so dQ and dK share one
  recompute of S.

Passes over the N x N x D volume (one per ``tl.dot``/GEMM over it; the floor
is what autograd needs with the logits stored: one forward GEMM, one per
input gradient)::

    loss      recompute (default)          stored logits       floor   before
    CLIP      fwd 1 + bwd 3 (S, PK, P^TQ) = 4   1 + 2 = 3           3       6
    InfoNCE   fwd 1 + bwd 3              = 4   1 + 2 = 3           3       5
    NT-Xent   fwd 1 + bwd 2 (S, (P+P^T)Z) = 3  1 + 1 = 2           2       3
    MoCo      fwd 1 + bwd 2 (queue: no dK) = 3 1 + 1 = 2           2       3

(stored logits: :mod:`.stored`, when the M x N fp32 logits fit the budget.)

Logits accumulate in fp32. fp32 operands use ``tl.dot`` with TF32x3 by
default (:func:`fastrl._dispatch.fp32_precision`). The backward's P is cast
to the operand dtype for the second product; for fp16 it is first scaled by
``2^14 / max|g|`` (undone in fp32 afterwards) so that it cannot underflow
(the mean reduction makes g = 1/(2N)). D is padded to a power of two.
"""
from __future__ import annotations

import contextlib
import functools
import threading

import torch
import triton
import triton.language as tl

from fastrl._dispatch import autotune_enabled, fp32_precision, interpreting, upcast_bf16_dot

# globals read inside @triton.jit must be tl.constexpr (a compile error on a GPU otherwise)
_NEG_INF = tl.constexpr(float("-inf"))
_P_SCALE = tl.constexpr(16384.0)  # fp16 P is stored as P * 2^14 / max|g| (<= 2^15 < 65504)


# a block of rows [BLOCK_M, BLOCK_D] of X (zero padded), upcast for the interpreter's bf16 dot
@triton.jit
def _load_rows(X, rows, dims, n_rows, D, stride, UPCAST: tl.constexpr):
    # 64-bit offsets: rows * stride passes 2^31 at N = 2M, D = 1024
    x = tl.load(X + rows.to(tl.int64)[:, None] * stride + dims[None, :],
                mask=(rows[:, None] < n_rows) & (dims[None, :] < D), other=0.0)
    if UPCAST:
        x = x.to(tl.float32)
    return x


# one logit tile S = scale * a b^T of the columns n0.. (b returned for the dQ product);
# invalid (padded or masked j == i + mask_off) entries are -inf
@triton.jit
def _logit_tile(a, B, n0, rows, dims, M, N, D, stride_b, scale, mask_off,
                HAS_MASK: tl.constexpr, UPCAST: tl.constexpr, PREC: tl.constexpr, BLOCK_N: tl.constexpr):
    cols = n0 + tl.arange(0, BLOCK_N)
    b = _load_rows(B, cols, dims, N, D, stride_b, UPCAST)
    s = tl.dot(a, tl.trans(b), input_precision=PREC) * scale
    valid = (cols[None, :] < N) & (rows[:, None] < M)
    if HAS_MASK:
        valid = valid & (cols[None, :] != rows[:, None] + mask_off)
    return tl.where(valid, s, _NEG_INF), b, cols, valid


# S[i, j] = scale * <a_i, b_j>, masked where j == i + mask_off;
# rows: lse[i] = m_i + log(l_i), m the running max, l the sum rescaled at each new max;
# columns (WANT_COL): the same merge per column into the program's partial row CM/CL[p, :].
@triton.jit
def _lse_fwd_kernel(A, B, OUT, CM, CL, M, N, D, stride_a, stride_b, scale, mask_off, N_BUCKET,
                    HAS_MASK: tl.constexpr, WANT_COL: tl.constexpr, UPCAST: tl.constexpr, PREC: tl.constexpr,
                    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    pid = tl.program_id(0)
    n_prog = tl.num_programs(0)
    dims = tl.arange(0, BLOCK_D)
    part = pid.to(tl.int64) * N
    for rb in range(pid, tl.cdiv(M, BLOCK_M), n_prog):
        rows = rb * BLOCK_M + tl.arange(0, BLOCK_M)
        a = _load_rows(A, rows, dims, M, D, stride_a, UPCAST)
        m_i = tl.full([BLOCK_M], _NEG_INF, tl.float32)
        l_i = tl.zeros([BLOCK_M], tl.float32)
        for n0 in range(0, N, BLOCK_N):
            s, b, cols, valid = _logit_tile(a, B, n0, rows, dims, M, N, D, stride_b, scale, mask_off,
                                            HAS_MASK, UPCAST, PREC, BLOCK_N)
            m_new = tl.maximum(m_i, tl.max(s, 1))
            m_safe = tl.where(m_new == _NEG_INF, 0.0, m_new)
            l_i = l_i * tl.exp(m_i - m_safe) + tl.sum(tl.exp(s - m_safe[:, None]), 1)
            m_i = m_new
            if WANT_COL:
                cmask = cols < N
                if rb == pid:  # this program's first row block starts the partial
                    cm = tl.full([BLOCK_N], _NEG_INF, tl.float32)
                    cl = tl.zeros([BLOCK_N], tl.float32)
                else:
                    cm = tl.load(CM + part + cols, mask=cmask, other=_NEG_INF)
                    cl = tl.load(CL + part + cols, mask=cmask, other=0.0)
                c_new = tl.maximum(cm, tl.max(s, 0))
                c_safe = tl.where(c_new == _NEG_INF, 0.0, c_new)
                cl = cl * tl.exp(cm - c_safe) + tl.sum(tl.exp(s - c_safe[None, :]), 0)
                tl.store(CM + part + cols, c_new, mask=cmask)
                tl.store(CL + part + cols, cl, mask=cmask)
        tl.store(OUT + rows, m_i + tl.log(tl.where(l_i > 0, l_i, 1.0)), mask=rows < M)
        if WANT_COL:
            tl.debug_barrier()  # the partial row is re-read (by other threads) for the next row block


# dA[i] = sum_j P[i, j] b_j (and, GRAD_B, dB[j] += sum_i P[i, j] a_i by atomics) with
# P[i, j] = exp(S[i, j] - lse_r[i]) g_r[i] + exp(S[i, j] - lse_c[j]) g_c[j];
# SCALE_P: the products use P * 2^14 / max|g| in the operand dtype (no fp16 underflow)
@triton.jit
def _lse_bwd_kernel(A, B, OUT, OUT_B, LSE_R, G_R, LSE_C, G_C, GMAX, M, N, D, stride_a, stride_b, stride_o,
                    scale, mask_off, N_BUCKET,
                    HAS_ROW: tl.constexpr, HAS_COL: tl.constexpr, HAS_MASK: tl.constexpr, GRAD_B: tl.constexpr,
                    SCALE_P: tl.constexpr, UPCAST: tl.constexpr, PREC: tl.constexpr,
                    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    dims = tl.arange(0, BLOCK_D)
    dmask = dims < D
    rmask = rows < M
    a = _load_rows(A, rows, dims, M, D, stride_a, UPCAST)
    p_mul = 1.0
    if SCALE_P:
        gmax = tl.load(GMAX)
        p_mul = tl.where(gmax > 0, _P_SCALE / gmax, 1.0)
    if HAS_ROW:
        lr = tl.load(LSE_R + rows, mask=rmask, other=0.0)
        lr = tl.where(lr == _NEG_INF, 0.0, lr)
        gr = tl.load(G_R + rows, mask=rmask, other=0.0) * p_mul
    acc = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
    for n0 in range(0, N, BLOCK_N):
        s, b, cols, valid = _logit_tile(a, B, n0, rows, dims, M, N, D, stride_b, scale, mask_off,
                                        HAS_MASK, UPCAST, PREC, BLOCK_N)
        cmask = cols < N
        p = tl.zeros([BLOCK_M, BLOCK_N], tl.float32)
        if HAS_ROW:
            p += tl.exp(s - lr[:, None]) * gr[:, None]
        if HAS_COL:
            lc = tl.load(LSE_C + cols, mask=cmask, other=0.0)
            lc = tl.where(lc == _NEG_INF, 0.0, lc)
            gc = tl.load(G_C + cols, mask=cmask, other=0.0) * p_mul
            p += tl.exp(s - lc[None, :]) * gc[None, :]
        # rounded to the operand dtype (then back to fp32 when the interpreter upcasts)
        p = tl.where(valid, p, 0.0).to(A.dtype.element_ty).to(b.dtype)
        acc += tl.dot(p, b, input_precision=PREC)
        if GRAD_B:
            db = tl.dot(tl.trans(p), a, input_precision=PREC)
            if SCALE_P:
                db = db / p_mul
            tl.atomic_add(OUT_B + cols.to(tl.int64)[:, None] * stride_o + dims[None, :], db,
                          mask=cmask[:, None] & dmask[None, :])
    if SCALE_P:
        acc = acc / p_mul
    tl.store(OUT + rows.to(tl.int64)[:, None] * stride_o + dims[None, :], acc, mask=rmask[:, None] & dmask[None, :])


# ------------------------------------------------------------------ tiles and tuning
# At most 6 configs per kernel, in order of preference: the first one that survives the
# pruner (for the device's shared memory, see smem_budget) is the fixed config used with
# FASTRL_AUTOTUNE=0. BLOCK_M 64/128 keeps Hopper's wgmma (M a multiple of 64) and lets the
# row block live in shared memory.
CONFIGS = (
    dict(BLOCK_M=128, BLOCK_N=64, num_warps=8, num_stages=3),
    dict(BLOCK_M=128, BLOCK_N=128, num_warps=8, num_stages=2),
    dict(BLOCK_M=128, BLOCK_N=32, num_warps=8, num_stages=2),  # forward at D = 512
    dict(BLOCK_M=64, BLOCK_N=64, num_warps=4, num_stages=3),
    dict(BLOCK_M=64, BLOCK_N=32, num_warps=8, num_stages=2),  # backward at D = 512
    dict(BLOCK_M=16, BLOCK_N=32, num_warps=4, num_stages=1),  # fallback for wide D (fp32 D = 512: 192 KiB smem)
)
# Shared memory per block (opt-in maximum) of some GPUs, for tests and ahead-of-time builds;
# at run time smem_budget reads the device's own limit.
SMEM_LIMITS = {"sm_90": 227 * 1024, "sm_80": 163 * 1024, "sm_86": 99 * 1024, "sm_89": 99 * 1024}
SMEM_MARGIN = 27 * 1024  # left for the epilogue and the estimate's error (Hopper: 200 of 227 KiB)
SMEM_FALLBACK = SMEM_LIMITS["sm_89"]  # no device to ask (CPU, interpreter): the smallest limit above


def smem_budget_for(limit: int) -> int:
    """Bytes of shared memory a tile config may take on a GPU whose per-block limit is ``limit``."""
    return max(int(limit) - SMEM_MARGIN, 16 * 1024)


@functools.lru_cache(maxsize=None)
def _device_smem_limit(index: int) -> int:
    try:
        return int(triton.runtime.driver.active.utils.get_device_properties(index)["max_shared_mem"])
    except Exception:  # no CUDA driver (interpreter) or another backend: ask torch
        props = torch.cuda.get_device_properties(index)
        return int(getattr(props, "shared_memory_per_block_optin", 0) or SMEM_FALLBACK)


def smem_budget(device=None) -> int:
    """Shared-memory budget (bytes) of the tile configs on ``device``.

    Parameters
    ----------
    device : torch.device, str, int or None
        A CUDA device (None: the current one when CUDA is available).

    Returns
    -------
    int
        The device's per-block limit (triton's ``max_shared_mem``, else torch's
        ``shared_memory_per_block_optin``) minus ``SMEM_MARGIN``; on CPU tensors
        or without CUDA, :func:`smem_budget_for` of ``SMEM_FALLBACK`` (99 KiB, the
        sm_86/sm_89 limit), which every supported GPU has.
    """
    if device is None:
        if not torch.cuda.is_available():
            return smem_budget_for(SMEM_FALLBACK)
        device = torch.cuda.current_device()
    if not isinstance(device, int):
        device = torch.device(device)
        if device.type != "cuda":
            return smem_budget_for(SMEM_FALLBACK)
        device = device.index if device.index is not None else torch.cuda.current_device()
    return smem_budget_for(_device_smem_limit(device))


def _cost(cfg: dict, block_d: int, elem_bytes: int, backward: bool):
    """(shared bytes, fp32 register values per thread) estimated for a config.

    Fitted to ptxas on sm_90 (Triton 3.9): the forward holds the A block (fp32 operands
    three times: tf32x3 splits them) and the S tile; the backward also the [BLOCK_M, D]
    accumulator, the [BLOCK_N, D] dK tile and P. fp32 operands take twice the shared
    memory (the tf32x3 hi/lo split), the backward ~1.4x the forward's.
    """
    bm, bn, st, w = cfg["BLOCK_M"], cfg["BLOCK_N"], cfg["num_stages"], cfg["num_warps"]
    threads = 32 * w
    smem = (bm + st * bn) * block_d * elem_bytes * (2 if elem_bytes == 4 else 1) * (1.4 if backward else 1.0)
    if backward:
        regs = (2 * bm * bn + bm * block_d + bn * block_d) / threads
    else:
        regs = bm * bn / threads + bm * block_d * elem_bytes * (3 if elem_bytes == 4 else 1) / (4 * threads)
    return smem, regs


def admissible(cfg: dict, block_d: int, elem_bytes: int = 2, backward: bool = False,
               smem_bytes: int | None = None) -> bool:
    """Whether a tile config fits without register spills (see :func:`_cost`): shared
    memory <= ``smem_bytes`` (default :func:`smem_budget` of the current device; Hopper:
    200 KiB of the 227), and a register estimate that ptxas compiled without spilling
    (backward <= 64, forward <= 210 values per thread)."""
    smem, regs = _cost(cfg, block_d, elem_bytes, backward)
    budget = smem_budget() if smem_bytes is None else smem_bytes
    return smem <= budget and regs <= (64 if backward else 210)


def kept_configs(block_d: int, elem_bytes: int = 2, backward: bool = False,
                 smem_bytes: int | None = None) -> list[dict]:
    """The configs the pruner keeps for this BLOCK_D, in order of preference. Never empty.

    ``smem_bytes``: the shared-memory budget (default :func:`smem_budget` of the current
    device; the launches pass their tensors' device).

    When none is spill-free (the backward at D = 512, whose accumulator alone is
    BLOCK_M x 512 fp32), it keeps the wide-row tiles (BLOCK_M >= 64: B is re-read every
    64 rows, at the cost of spills) that fit shared memory, then the one with the fewest
    registers (fewer spills, B re-read every 16 rows): autotuning, or the GPU check's
    per-config timings, decide between them.
    """
    budget = smem_budget() if smem_bytes is None else smem_bytes
    kept = [c for c in CONFIGS if admissible(c, block_d, elem_bytes, backward, budget)]
    if kept:
        return kept
    fit = [c for c in CONFIGS if _cost(c, block_d, elem_bytes, backward)[0] <= budget] or [CONFIGS[-1]]
    lean = min(fit, key=lambda c: _cost(c, block_d, elem_bytes, backward)[1])
    return [c for c in fit if c["BLOCK_M"] >= 64 and c is not lean] + [lean]


def _prune(configs, named_args, **kwargs):
    bd = kwargs.get("BLOCK_D", named_args.get("BLOCK_D", 64))
    a = named_args.get("A")
    eb = a.element_size() if hasattr(a, "element_size") else 2
    names = [dict(c.kwargs, num_warps=c.num_warps, num_stages=c.num_stages) for c in configs]
    keep = kept_configs(bd, eb, backward="OUT_B" in named_args,
                        smem_bytes=smem_budget(a.device) if hasattr(a, "device") else None)
    return [c for c, n in zip(configs, names) if n in keep] or configs[-1:]


def _triton_configs():
    return [triton.Config({"BLOCK_M": c["BLOCK_M"], "BLOCK_N": c["BLOCK_N"]}, num_warps=c["num_warps"],
                          num_stages=c["num_stages"]) for c in CONFIGS]


def n_bucket(n: int) -> int:
    """Autotuning key for N: powers of 4 from 1024 to 65536 (tiles tuned per regime)."""
    b = 1024
    while b < n and b < 65536:
        b *= 4
    return b


_PRUNE = {"early_config_prune": _prune}
_fwd_tuned = triton.autotune(_triton_configs(), key=["BLOCK_D", "N_BUCKET", "HAS_MASK", "WANT_COL"],
                             prune_configs_by=_PRUNE)(_lse_fwd_kernel)
_bwd_tuned = triton.autotune(_triton_configs(),
                             key=["BLOCK_D", "N_BUCKET", "HAS_ROW", "HAS_COL", "HAS_MASK", "GRAD_B"],
                             prune_configs_by=_PRUNE, reset_to_zero=["OUT_B"])(_lse_bwd_kernel)

_INTERP_TILES = dict(BLOCK_M=32, BLOCK_N=32)  # the interpreter: small fixed tiles (tuning only costs time)
_tiles = threading.local()  # .override: the tile_config of this thread (like use_backend)


def _override() -> dict:
    return getattr(_tiles, "override", None) or {}


@contextlib.contextmanager
def tile_config(cfg: dict | None = None, col_groups: int | None = None):
    """Force the tiles of every launch in the block (tests, benchmarks of one config).

    ``cfg``: ``BLOCK_M``, ``BLOCK_N`` (+ optional ``num_warps``, ``num_stages``);
    ``col_groups``: number of programs of the fused row+column forward (each then
    handles several row blocks). Like :func:`fastrl.use_backend`, the override is
    thread-local, nests (an inner block keeps what it does not set) and is undone on exit.
    """
    previous = getattr(_tiles, "override", None)
    current = dict(previous or {})
    if cfg is not None:
        current["cfg"] = dict(cfg)
    if col_groups is not None:
        current["groups"] = int(col_groups)
    _tiles.override = current
    try:
        yield
    finally:
        _tiles.override = previous


def _fixed(block_d: int, elem_bytes: int, backward: bool = False, device=None) -> dict | None:
    """The launch config when not autotuning, or None to autotune."""
    override = _override()
    if "cfg" in override:
        return override["cfg"]
    if interpreting():
        return _INTERP_TILES
    if not autotune_enabled():
        return kept_configs(block_d, elem_bytes, backward, smem_budget(device))[0]
    return None


LAST_LAUNCH: dict = {}  # "fwd"/"bwd" -> (compiled kernel or None, config): registers, spills, smem for benchmarks


def _launch(kernel, tuned, grid_of, args, flags, block_d: int, elem_bytes: int) -> None:
    cfg = _fixed(block_d, elem_bytes, backward="GRAD_B" in flags, device=args[0].device)
    if cfg is None:
        ret = tuned[lambda meta: grid_of(meta["BLOCK_M"])](*args, **flags)
        cfg = getattr(tuned, "best_config", None)
    else:
        ret = kernel[grid_of(cfg["BLOCK_M"])](*args, **flags, **cfg)
    LAST_LAUNCH["bwd" if "GRAD_B" in flags else "fwd"] = (ret, cfg)


def _common(a: torch.Tensor, precision: str | None):
    d = a.shape[1]
    block_d = max(16, triton.next_power_of_2(d))
    prec = fp32_precision(precision) if a.dtype == torch.float32 else "tf32"
    # the interpreter's half dots are wrong (bf16) or very slow (fp16, no BLAS): upcast the
    # operands there; products of half values are exact in fp32, so the numerics match
    upcast = upcast_bf16_dot(a.dtype) or (interpreting() and a.dtype == torch.float16)
    return d, block_d, upcast, prec


def _col_groups(n_cols: int, device) -> int:
    """Programs of the fused forward: partial column rows [G, N] of <= 256 MiB, and at
    least 2 per SM so the GPU stays busy whatever N."""
    override = _override()
    if "groups" in override:
        return max(1, override["groups"])
    budget = max(1, (256 << 20) // (8 * max(n_cols, 1)))
    if device.type == "cuda":
        budget = max(budget, 2 * torch.cuda.get_device_properties(device).multi_processor_count)
    return budget


def lse_fwd(a: torch.Tensor, b: torch.Tensor, scale: float, mask_offset, want_col: bool = False,
            precision: str | None = None):
    """Row LSE [M] (and column LSE [N] when ``want_col``) of ``scale * a b^T`` (fp32),
    masked where j == i + mask_offset; one pass over the logits."""
    a, b = a.contiguous(), b.contiguous()
    m, n = a.shape[0], b.shape[0]
    d, block_d, upcast, prec = _common(a, precision)
    out = torch.empty(m, dtype=torch.float32, device=a.device)
    cfg = _fixed(block_d, a.element_size(), device=a.device)
    bm_min = cfg["BLOCK_M"] if cfg is not None else min(c["BLOCK_M"] for c in CONFIGS)
    groups = min(_col_groups(n, a.device), triton.cdiv(m, bm_min)) if want_col else 1
    shape = (groups, n) if want_col else (1,)
    cm = torch.full(shape, float("-inf"), dtype=torch.float32, device=a.device)
    cl = torch.zeros(shape, dtype=torch.float32, device=a.device)
    args = (a, b, out, cm, cl, m, n, d, a.stride(0), b.stride(0), scale,
            0 if mask_offset is None else int(mask_offset), n_bucket(n))
    flags = dict(HAS_MASK=mask_offset is not None, WANT_COL=bool(want_col), UPCAST=upcast, PREC=prec,
                 BLOCK_D=block_d)

    def grid(bm):
        nb = triton.cdiv(m, bm)
        return (min(nb, groups) if want_col else nb,)

    _launch(_lse_fwd_kernel, _fwd_tuned, grid, args, flags, block_d, a.element_size())
    if not want_col:
        return out, None
    # merge the partial rows: lse_j = M_j + log sum_p l_pj exp(m_pj - M_j)
    cmax = cm.amax(0)
    safe = cmax.masked_fill(torch.isinf(cmax), 0.0)
    total = (cl * torch.exp(cm - safe)).sum(0)
    clse = cmax + torch.log(torch.where(total > 0, total, torch.ones_like(total)))
    return out, clse


def lse_rows(a: torch.Tensor, b: torch.Tensor, scale: float, mask_offset, precision: str | None = None):
    """Row LSE [M] of ``scale * a b^T`` (fp32), masked where j == i + mask_offset."""
    return lse_fwd(a, b, scale, mask_offset, False, precision)[0]


def grad_rows(a, b, scale: float, mask_offset, lse_r, g_r, lse_c, g_c, *, grad_b: bool = False,
              precision: str | None = None, scale_fp16_p: bool = True):
    """Unscaled gradient rows ``P b`` [M, D] (fp32) and, with ``grad_b``, ``P^T a`` [N, D]
    from the same recompute (else None); ``lse_r``/``lse_c`` may be None.
    ``scale_fp16_p=False`` skips the fp16 P scaling (reproduces the old underflow: tests)."""
    a, b = a.contiguous(), b.contiguous()
    m, n = a.shape[0], b.shape[0]
    d, block_d, upcast, prec = _common(a, precision)
    out = torch.empty((m, d), dtype=torch.float32, device=a.device)
    out_b = torch.zeros((n, d), dtype=torch.float32, device=a.device) if grad_b else out.new_zeros(1)
    dummy = out.new_zeros(1)
    has_row, has_col = lse_r is not None, lse_c is not None
    g_r = g_r.float().contiguous() if has_row else dummy
    g_c = g_c.float().contiguous() if has_col else dummy
    scale_p = a.dtype == torch.float16 and bool(scale_fp16_p)
    if scale_p:
        gs = [g.abs().amax() for g, has in ((g_r, has_row), (g_c, has_col)) if has and g.numel()]
        gmax = torch.stack(gs).amax().reshape(1) if gs else dummy
    else:
        gmax = dummy
    args = (a, b, out, out_b,
            lse_r.float().contiguous() if has_row else dummy, g_r,
            lse_c.float().contiguous() if has_col else dummy, g_c, gmax,
            m, n, d, a.stride(0), b.stride(0), out.stride(0), scale,
            0 if mask_offset is None else int(mask_offset), n_bucket(n))
    flags = dict(HAS_ROW=has_row, HAS_COL=has_col, HAS_MASK=mask_offset is not None, GRAD_B=bool(grad_b),
                 SCALE_P=scale_p, UPCAST=upcast, PREC=prec, BLOCK_D=block_d)
    _launch(_lse_bwd_kernel, _bwd_tuned, lambda bm: (triton.cdiv(m, bm),), args, flags, block_d,
            a.element_size())
    return out, (out_b if grad_b else None)


class TritonLSE(torch.autograd.Function):
    """Same contract as :class:`fastrl.losses.contrastive.cpu.ChunkedLSE`,
    computed by the Triton kernels (fp16/bf16/fp32 inputs, fp32 LSE)."""

    @staticmethod
    def forward(ctx, q, k, scale, mask_offset, want_col, symmetric, precision=None):
        s = float(scale)
        rlse, clse = lse_fwd(q, k, s, mask_offset, want_col, precision)
        if clse is None:
            clse = rlse.new_empty(0)
        ctx.save_for_backward(q, k, scale, rlse, clse)
        ctx.mask_offset, ctx.want_col, ctx.symmetric, ctx.precision = mask_offset, want_col, symmetric, precision
        # the backward may run on autograd's device thread: carry this thread's tile_config there
        ctx.tiles = _override()
        return rlse, clse

    @staticmethod
    def backward(ctx, grad_rlse, grad_clse):
        q, k, scale, rlse, clse = ctx.saved_tensors
        s = float(scale)
        off, prec = ctx.mask_offset, ctx.precision
        gr = grad_rlse if grad_rlse is not None else torch.zeros_like(rlse)
        gc = None
        if ctx.want_col:
            gc = grad_clse if grad_clse is not None else torch.zeros_like(clse)
        dk = None
        with tile_config(ctx.tiles.get("cfg"), ctx.tiles.get("groups")):
            if ctx.symmetric:
                # K is Q: dZ = (P + P^T) Z in one launch, P^T's rows use the row LSE of the columns
                dq, _ = grad_rows(q, q, s, off, rlse, gr, rlse, gr, precision=prec)
            else:
                # dQ = P K and dK = P^T Q from one recompute of S (dK through atomics)
                dq, dk = grad_rows(q, k, s, off, rlse, gr, clse if ctx.want_col else None, gc,
                                   grad_b=ctx.needs_input_grad[1], precision=prec)
        dscale = None
        if ctx.needs_input_grad[2]:
            total = torch.dot(q.float().reshape(-1), dq.reshape(-1))
            dscale = (0.5 * total if ctx.symmetric else total).to(scale.dtype).reshape(scale.shape)
        dq = dq.mul_(s).to(q.dtype)
        dk = dk.mul_(s).to(k.dtype) if dk is not None else None
        return dq, dk, dscale, None, None, None, None
