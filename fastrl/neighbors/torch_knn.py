"""Exact kNN of torch tensors on their own device (the CUDA path of
:func:`fastrl.neighbors.knn_graph`), with the compiled exact path's contract:
rows sorted by (distance, index), ties at the k boundary by index too, and
distances computed in float64 on the data as given.

Same method as csrc/knn_exact.cpp, in blocks of query rows sized from the
device's free memory:

1. score = |x|^2 - 2 <q, x> on centred float32 rows (cosine: unit rows, the
   score is -2 <q, x>) by one matmul; the k + 4 smallest per row survive.
2. Their distances are recomputed in float64 from differences of the rows as
   given (cosine: 1 - <q, x> of the float64 unit rows) and sorted by
   (distance, index).
3. A row whose k-th exact distance is not safely below the smallest score any
   other point had (minus the float32 scan's rounding bound) could have a
   point outside the candidates tied with it or closer: those rows are
   rescanned in float64, all points.
"""
from __future__ import annotations

import torch

TIE_SLACK = 4                 # extra scan candidates per row (csrc/knn_exact.cpp kTieSlack)
CPU_BLOCK_BYTES = 256 << 20   # working memory of one block for CPU tensors
MAX_BLOCK_ROWS = 4096         # more rows per matmul gain nothing


def free_bytes(device: torch.device) -> int | None:
    """Free memory of a CUDA ``device`` (``torch.cuda.mem_get_info``); None for other devices."""
    if device.type != "cuda":
        return None
    free, _total = torch.cuda.mem_get_info(device)
    return int(free)


def query_block(n_index: int, kk: int, d: int, device: torch.device) -> int:
    """Query rows per block: the [rows, n_index] float32 scores, top-k's
    workspace (as large again) and the float64 refinement's [rows, kk, d]
    differences take at most half the free memory of a CUDA device
    (``CPU_BLOCK_BYTES`` elsewhere); at least 1, at most ``MAX_BLOCK_ROWS``.

    Parameters
    ----------
    n_index : int
        Index points (columns of the score block).
    kk : int
        Candidates kept per query row.
    d : int
        Features.
    device : torch.device

    Returns
    -------
    int
    """
    free = free_bytes(device)
    budget = CPU_BLOCK_BYTES if free is None else free // 2
    per_row = 16 * int(n_index) + 24 * int(kk) * int(d) + 64
    return int(max(1, min(MAX_BLOCK_ROWS, budget // per_row)))


def matmul_eps() -> float:
    """Relative rounding of a float32 matmul as torch is set up to run it
    (TF32 or bfloat16 products when ``torch.set_float32_matmul_precision`` or
    ``allow_tf32`` permit them), with a margin."""
    precision = torch.get_float32_matmul_precision()
    if precision == "medium":
        return 8e-3
    if precision == "high" or torch.backends.cuda.matmul.allow_tf32:
        return 1e-3
    return 6e-8


class _Rows:
    """float32 rows as given, with float64 views computed on demand (no
    float64 copy of the whole matrix: a gathered float32 row widens exactly):
    ``exact(idx)`` the rows the distances are computed on (cosine: divided by
    their float64 norm), ``centred(idx)`` those minus the float64 mean
    (Euclidean) for the float64 rescan."""

    def __init__(self, X32: torch.Tensor, cosine: bool, mu64: torch.Tensor | None):
        self.X32, self.cosine, self.mu64 = X32, cosine, mu64
        if cosine:
            norm = torch.linalg.vector_norm(X32, dim=1, dtype=torch.float64)
            self.inv = torch.where(norm > 0, 1.0 / norm.clamp_min(1e-300), torch.zeros_like(norm))

    def exact(self, idx) -> torch.Tensor:
        X = self.X32[idx].double()
        return X * self.inv[idx].unsqueeze(-1) if self.cosine else X

    def centred(self, idx) -> torch.Tensor:
        X = self.exact(idx)
        return X if self.cosine else X - self.mu64


def _exact(A: _Rows, q: torch.Tensor, cand: torch.Tensor) -> torch.Tensor:
    """float64 distances (squared Euclidean, or 1 - cos) of the float64 query
    rows q [b, d] to the index rows cand [b, c]."""
    X = A.exact(cand)
    if A.cosine:
        return 1.0 - (X * q[:, None, :]).sum(-1)
    X -= q[:, None, :]
    return (X * X).sum(-1)


def _sort_by_distance_then_index(e: torch.Tensor, idx: torch.Tensor):
    """Rows of (e, idx) sorted by e, ties by idx (two stable sorts)."""
    idx, order = torch.sort(idx, dim=1)
    e = torch.gather(e, 1, order)
    e, order = torch.sort(e, dim=1, stable=True)
    return e, torch.gather(idx, 1, order)


def _rescan(A: _Rows, Q: _Rows, rows: torch.Tensor, bound: torch.Tensor, k: int, exclude_self: bool):
    """The k nearest index points of the query rows ``rows``, exactly: float64
    scores on centred float64 rows screen the points within ``bound`` (the
    k-th candidate's exact distance) plus a float64 rounding margin; their
    exact distances are sorted by (distance, index)."""
    n, d = A.X32.shape
    dev = A.X32.device
    q = Q.centred(rows)
    q2 = (q * q).sum(1)
    S = torch.empty((rows.numel(), n), dtype=torch.float64, device=dev)  # distances, float64 expansion
    a2max = torch.ones((), dtype=torch.float64, device=dev)
    step = max(1, (64 << 20) // (8 * d))
    for j in range(0, n, step):
        Xc = A.centred(slice(j, j + step))
        if A.cosine:
            S[:, j: j + step] = 1.0 - q @ Xc.T
        else:
            a2 = (Xc * Xc).sum(1)
            a2max = torch.maximum(a2max, a2.max())
            S[:, j: j + step] = torch.addmm(a2[None, :] + q2[:, None], q, Xc.T, beta=1.0, alpha=-2.0)
    if exclude_self:
        S[torch.arange(rows.numel(), device=dev), rows] = float("inf")
    margin = 1e-12 * (d + 4) * (q2 + a2max)
    rr, jj = torch.nonzero(S <= (bound + margin)[:, None], as_tuple=True)  # row-major: by (rr, jj)
    del S
    e = torch.empty(rr.numel(), dtype=torch.float64, device=dev)
    step = max(1, (64 << 20) // (8 * d))
    for s in range(0, rr.numel(), step):
        e[s: s + step] = _exact(A, Q.exact(rows[rr[s: s + step]]), jj[s: s + step, None])[:, 0]
    keep = e <= bound[rr]
    rr, jj, e = rr[keep], jj[keep], e[keep]
    # (rr, e, jj) order: stable sorts by e, then by rr, of pairs listed by (rr, jj)
    order = torch.sort(e, stable=True).indices
    rr, jj, e = rr[order], jj[order], e[order]
    order = torch.sort(rr, stable=True).indices
    rr, jj, e = rr[order], jj[order], e[order]
    counts = torch.bincount(rr, minlength=rows.numel())
    pos = torch.arange(rr.numel(), device=dev) - (torch.cumsum(counts, 0) - counts)[rr]
    first = pos < k  # every row keeps >= k: its k candidates lie within bound
    out_i = torch.empty((rows.numel(), k), dtype=torch.int64, device=dev)
    out_e = torch.empty((rows.numel(), k), dtype=torch.float64, device=dev)
    out_i[rr[first], pos[first]] = jj[first]
    out_e[rr[first], pos[first]] = e[first]
    return out_e, out_i


def torch_knn(A: torch.Tensor, Q: torch.Tensor, k: int, metric: str, exclude_self: bool,
              block: int | None = None):
    """Exact k nearest rows of ``A`` for each row of ``Q``, on their device.

    Parameters
    ----------
    A : torch.Tensor, shape (N, D)
        Index points (any real dtype; computed from their float32 values, as
        the compiled path does).
    Q : torch.Tensor, shape (M, D)
        Queries; with ``exclude_self``, ``Q`` must be ``A``.
    k : int
        ``1 <= k <= N`` (``< N`` with ``exclude_self``).
    metric : {"euclidean", "cosine"}
    exclude_self : bool
        Row i never lists i.
    block : int, optional
        Query rows per block (default: :func:`query_block`).

    Returns
    -------
    indices : torch.Tensor of int64, shape (M, k)
    distances : torch.Tensor of float32, shape (M, k)
        Euclidean distance or ``1 - cos``; rows sorted by (distance, index).
    """
    cosine = metric == "cosine"
    A32 = A.detach().float()
    Q32 = A32 if Q is A else Q.detach().float()
    n, d = A32.shape
    m = Q32.shape[0]
    dev = A32.device
    avail = n - (1 if exclude_self else 0)
    kk = min(avail, k + TIE_SLACK)
    mu64 = None if cosine else (torch.sum(A32, 0, dtype=torch.float64) / n)[None, :]
    Ar = _Rows(A32, cosine, mu64)
    Qr = Ar if Q32 is A32 else _Rows(Q32, cosine, mu64)
    # the scan: unit rows (cosine, score -2<q, x>) or rows centred in float32
    # like the compiled path (score |x|^2 - 2<q, x>)
    if cosine:
        As = A32 * Ar.inv.float()[:, None]
        Qs = As if Qr is Ar else Q32 * Qr.inv.float()[:, None]
        an = torch.zeros(n, dtype=torch.float32, device=dev)
    else:
        mu32 = mu64.float()
        As = A32 - mu32
        Qs = As if Qr is Ar else Q32 - mu32
        an = (As * As).sum(1)
    max_norm2 = float(an.max()) if not cosine else 1.0
    eps = matmul_eps()
    block = block or query_block(n, kk, d, dev)
    idx_out, dist_out = [], []
    for s in range(0, m, block):
        q = Qs[s: s + block]
        b = q.shape[0]
        rows = torch.arange(s, s + b, device=dev)
        score = torch.addmm(an[None, :], q, As.T, beta=1.0, alpha=-2.0)
        if exclude_self:
            score[torch.arange(b, device=dev), rows] = float("inf")
        cs, ci = torch.topk(score, kk, dim=1, largest=False, sorted=False)
        del score
        top = cs.max(1).values.double()  # every non-candidate scored at least this
        e, ci = _sort_by_distance_then_index(_exact(Ar, Qr.exact(rows), ci), ci)
        e, ci = e[:, :k].contiguous(), ci[:, :k].contiguous()
        if kk < avail:
            qd = q.double()
            q2 = (qd * qd).sum(1)
            ck = e[:, k - 1]
            if cosine:
                err = 4.0 * eps * (d + 4) * (q2 + 1.0)
                floor_out = 0.5 * (top + 2.0) - err
            else:  # only an x with |x| <= |q| + (k-th distance) can displace a neighbour
                reach = q2.sqrt() + ck.clamp_min(0.0).sqrt() * (1.0 + 1e-6)
                x2 = torch.clamp(reach * reach, max=max_norm2)
                err = 4.0 * eps * (d + 4) * (q2 + x2)
                floor_out = top + q2 - err
            bad = torch.nonzero(~(ck < floor_out), as_tuple=True)[0]
            if bad.numel():
                e[bad], ci[bad] = _rescan(Ar, Qr, rows[bad], ck[bad], k, exclude_self)
        idx_out.append(ci)
        dist_out.append((e.clamp_min(0.0) if cosine else e.sqrt()).float())
    return torch.cat(idx_out), torch.cat(dist_out)
