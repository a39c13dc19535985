"""The compiled inner loops of `recommend` (numba): item-CF sums and the blend's selection.

One request touches a few hundred to a few thousand (video, score) entries. As numpy calls that was
~60 array operations of 1-3 µs each, most of a request's 200-300 µs, whatever the sizes (a user with
one video in the history cost as much as one with fifty). Here each step is one pass over the entries.

The arrays come from `ServingState` (see there): per video number, the neighbour list's place in one
arena (`nbr_start`, `nbr_len` into `nbr_to`, `nbr_w`), creators, the seen filter's bit positions, the
rank of the video id in id order (ties between equal scores go by video id). Scratch arrays (`flags`,
`acc`, `sums`, `best`, `best_src`, `per_creator`) are the process's, one slot per video (or creator),
and are left as found: all zero.

Numerics are the reference's (`recstream.scoring`): the same products, summed in the same order, so the
answers are bit for bit those of `scoring.itemcf_scores` + `blend` + `select` (tests/unit/test_recommend.py).
Compiled on first use and cached on disk beside this module (`cache=True`); a web process compiles
before it first answers (`warm_up`).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

# Bits of the per-video `flags` scratch (zero between requests).
IN_DYN = 1  # a candidate of the user's own sources (item-CF, ALS)
EXCLUDED = 2  # engaged with (history) or over-exposed
PICKED = 4
IN_ALS = 8
CF_SEEN = 16  # already listed as an item-CF candidate
HAS_BEST = 32  # a best source is recorded in `best` / `best_src`

# Bits of each picked video's reasons (`select`'s last result).
REASON_ALS, REASON_TRENDING, REASON_FRESH = 1, 2, 4


@njit(cache=True, nogil=True)
def itemcf(hist_idx, hist_w, recency, max_sources, nbr_start, nbr_len, nbr_to, nbr_w, sums, flags):
    """Item-CF candidates of a history (video numbers newest first, -1 unknown; engagement weights):
    each positive entry (at most `max_sources` of them) a source, its neighbours' weights times
    recency**step summed per candidate. Returns (candidates in first-seen order, their sums, the
    sources' history positions, their factors)."""
    n_hist = hist_idx.shape[0]
    src_pos = np.empty(n_hist, np.int64)
    src_fac = np.empty(n_hist, np.float64)
    n_src = 0
    total = 0
    step = 0
    for p in range(n_hist):
        if hist_w[p] <= 0:
            continue
        v = hist_idx[p]
        if v >= 0 and nbr_len[v] > 0:
            src_pos[n_src] = p
            src_fac[n_src] = math.pow(recency, float(step))  # what Python's recency ** step computes
            total += nbr_len[v]
            n_src += 1
        step += 1
        if step >= max_sources:
            break
    cand = np.empty(total, np.int64)
    n = 0
    for s in range(n_src):
        v = hist_idx[src_pos[s]]
        factor = src_fac[s]
        start = nbr_start[v]
        for j in range(start, start + nbr_len[v]):
            d = nbr_to[j]
            if flags[d] & CF_SEEN == 0:
                flags[d] |= CF_SEEN
                cand[n] = d
                n += 1
            sums[d] += nbr_w[j] * factor
    scores = np.empty(n, np.float64)
    for i in range(n):
        d = cand[i]
        scores[i] = sums[d]
        sums[d] = 0.0
        flags[d] &= ~CF_SEEN
    return cand[:n], scores, src_pos[:n_src], src_fac[:n_src]


@njit(cache=True, nogil=True, inline="always")
def _in_filter(v, seen, bloom_byte, bloom_mask):
    """Whether every bit of video `v` is set in the user's seen filter (bytes past its end are zero:
    SETBIT grows the string only as far as the highest bit set; mask 0 is padding)."""
    for c in range(bloom_mask.shape[1]):
        m = bloom_mask[v, c]
        if m == 0:
            continue
        b = bloom_byte[v, c]
        if b >= seen.shape[0] or seen[b] & m != m:
            return False
    return True


@njit(cache=True, nogil=True)
def seen_among(cands, excluded, removed, any_removed, seen, bloom_byte, bloom_mask, flags):
    """Per candidate: True when the user engaged with it (in `excluded`, or in the seen filter) or it
    is taken down."""
    for v in excluded:
        flags[v] |= EXCLUDED
    out = np.zeros(cands.shape[0], np.bool_)
    for i in range(cands.shape[0]):
        v = cands[i]
        out[i] = (
            flags[v] & EXCLUDED != 0
            or (any_removed and removed[v])
            or (seen.shape[0] > 0 and _in_filter(v, seen, bloom_byte, bloom_mask))
        )
    for v in excluded:
        flags[v] &= ~EXCLUDED
    return out


@njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
def _dot(row, vector):
    """A factor row times the user's vector, in float32 (the factors' precision), summed in SIMD lanes
    as BLAS does."""
    total = np.float32(0.0)
    for j in range(row.shape[0]):
        total += row[j] * vector[j]
    return total


@njit(cache=True, nogil=True)
def als(pool, pool_factors, cf_best, extra_ok, model_rows, item_factors, vector, history_idx, keep, flags):
    """The model's best `keep` among the pools (`pool`, their factor rows gathered in `pool_factors`) and
    the best item-CF candidates it knows that are not pooled (`extra_ok`), never a video in the history:
    (videos, scores, the best score), or empty when none scores > 0. On a tie at the cut, the first."""
    for v in history_idx:
        flags[v] |= EXCLUDED
    cand = np.empty(pool.shape[0] + cf_best.shape[0], np.int64)
    scores = np.empty(cand.shape[0], np.float64)
    n = 0
    for i in range(pool.shape[0]):
        v = pool[i]
        if flags[v] & EXCLUDED == 0:
            cand[n] = v
            scores[n] = _dot(pool_factors[i], vector)
            n += 1
    for v in cf_best:
        if extra_ok[v] and flags[v] & EXCLUDED == 0:
            cand[n] = v
            scores[n] = _dot(item_factors[model_rows[v]], vector)
            n += 1
    for v in history_idx:
        flags[v] &= ~EXCLUDED
    if n > keep:
        cut = -np.partition(-scores[:n], keep - 1)[keep - 1]  # the keep-th best score
        above = 0
        for i in range(n):
            above += scores[i] > cut
        ties = keep - above  # of the candidates at the cut, this many (the first ones) stay
        m = 0
        for i in range(n):
            if scores[i] > cut or (scores[i] == cut and ties > 0):
                if scores[i] == cut:
                    ties -= 1
                cand[m], scores[m] = cand[i], scores[i]
                m += 1
        n = m
    best = -np.inf
    for i in range(n):
        best = max(best, scores[i])
    if n == 0 or best <= 0:
        return cand[:0], scores[:0], 0.0
    return cand[:n], scores[:n], best


@njit(cache=True, nogil=True, inline="always")
def _before(score_a, rank_a, score_b, rank_b):
    """The ranking's order: higher score first, equal scores by video id."""
    return score_a > score_b or (score_a == score_b and rank_a < rank_b)


@njit(cache=True, nogil=True)
def _sift_down(heap, n, i, scores, ranks):
    while True:
        left = 2 * i + 1
        if left >= n:
            return
        best = left
        right = left + 1
        if right < n and _before(
            scores[heap[right]], ranks[heap[right]], scores[heap[left]], ranks[heap[left]]
        ):
            best = right
        if _before(scores[heap[best]], ranks[heap[best]], scores[heap[i]], ranks[heap[i]]):
            heap[i], heap[best] = heap[best], heap[i]
            i = best
        else:
            return


@njit(cache=True, nogil=True)
def select(
    k,
    max_per_creator,
    cf_idx,
    cf_blend,
    als_idx,
    als_blend,
    base_score,
    order,
    excluded,
    removed,
    any_removed,
    seen,
    bloom_byte,
    bloom_mask,
    creator,
    id_rank,
    in_trending,
    in_fresh,
    hist_idx,
    src_pos,
    src_fac,
    nbr_start,
    nbr_len,
    nbr_to,
    nbr_w,
    flags,
    acc,
    best,
    best_src,
    per_creator,
):
    """The answer's videos: the user's own candidates (item-CF and ALS, already weighted: `cf_blend`,
    `als_blend`) plus the pools' blended score, merged with the rest of the pools (`order`, best first),
    best first (ties by video id), never excluded / taken down / in the seen filter, at most
    `max_per_creator` per creator (creator -1: unknown, uncapped), at most k. Returns (videos, scores,
    per video the history position of the item-CF source that gave it most (-1: none; on a tie the more
    recent), per video its REASON_* bits)."""
    # Blend the user's own sources: cf then ALS, summed per video, plus the pools' score.
    n_dyn_max = cf_idx.shape[0] + als_idx.shape[0]
    dyn = np.empty(n_dyn_max, np.int64)
    n_dyn = 0
    for i in range(cf_idx.shape[0]):
        v = cf_idx[i]
        acc[v] += cf_blend[i]
        if flags[v] & IN_DYN == 0:
            flags[v] |= IN_DYN
            dyn[n_dyn] = v
            n_dyn += 1
    for i in range(als_idx.shape[0]):
        v = als_idx[i]
        acc[v] += als_blend[i]
        flags[v] |= IN_ALS
        if flags[v] & IN_DYN == 0:
            flags[v] |= IN_DYN
            dyn[n_dyn] = v
            n_dyn += 1
    dyn = dyn[:n_dyn]
    dyn_scores = np.empty(n_dyn, np.float64)
    dyn_ranks = np.empty(n_dyn, np.int64)
    for i in range(n_dyn):
        v = dyn[i]
        dyn_scores[i] = acc[v] + base_score[v]
        dyn_ranks[i] = id_rank[v]
        acc[v] = 0.0
    for v in excluded:
        flags[v] |= EXCLUDED

    # A heap over the user's candidates, merged with the pools' order (already ranked).
    heap = np.arange(n_dyn)
    for i in range(n_dyn // 2 - 1, -1, -1):
        _sift_down(heap, n_dyn, i, dyn_scores, dyn_ranks)
    n_heap = n_dyn
    picked = np.empty(k, np.int64)
    picked_scores = np.empty(k, np.float64)
    m = 0
    p = 0
    n_order = order.shape[0]
    while m < k:
        while p < n_order and flags[order[p]] & IN_DYN != 0:  # the user's own: in the heap
            p += 1
        if n_heap == 0 and p >= n_order:
            break
        take_heap = n_heap > 0
        if take_heap and p < n_order:
            top = heap[0]
            pv = order[p]
            take_heap = _before(dyn_scores[top], dyn_ranks[top], base_score[pv], id_rank[pv])
        if take_heap:
            top = heap[0]
            v, score = dyn[top], dyn_scores[top]
            n_heap -= 1
            heap[0] = heap[n_heap]
            _sift_down(heap, n_heap, 0, dyn_scores, dyn_ranks)
        else:
            v, score = order[p], base_score[order[p]]
            p += 1
        if flags[v] & EXCLUDED != 0 or (any_removed and removed[v]):
            continue
        if seen.shape[0] > 0 and _in_filter(v, seen, bloom_byte, bloom_mask):
            continue
        c = creator[v]
        if c >= 0:
            if per_creator[c] >= max_per_creator:
                continue
            per_creator[c] += 1
        flags[v] |= PICKED
        picked[m] = v
        picked_scores[m] = score
        m += 1
    picked = picked[:m]
    picked_scores = picked_scores[:m]

    # Reasons: the item-CF source that contributed most to each picked video, ALS, the pools.
    for s in range(src_pos.shape[0]):
        v = hist_idx[src_pos[s]]
        factor = src_fac[s]
        start = nbr_start[v]
        for j in range(start, start + nbr_len[v]):
            d = nbr_to[j]
            if flags[d] & PICKED != 0:
                value = nbr_w[j] * factor
                if flags[d] & HAS_BEST == 0 or value > best[d]:  # strictly: the earlier source keeps a tie
                    flags[d] |= HAS_BEST
                    best[d] = value
                    best_src[d] = src_pos[s]
    sources = np.full(m, -1, np.int64)
    reasons = np.zeros(m, np.uint8)
    for i in range(m):
        v = picked[i]
        if flags[v] & HAS_BEST != 0:
            sources[i] = best_src[v]
            best[v] = 0.0
        bits = 0
        if flags[v] & IN_ALS != 0:
            bits |= REASON_ALS
        if in_trending[v]:
            bits |= REASON_TRENDING
        if in_fresh[v]:
            bits |= REASON_FRESH
        reasons[i] = bits
        c = creator[v]
        if c >= 0:
            per_creator[c] = 0
    for v in dyn:
        flags[v] = 0
    for v in excluded:
        flags[v] = 0
    for v in picked:
        flags[v] = 0
    return picked, picked_scores, sources, reasons


def warm_up() -> None:
    """Compile (or load from the on-disk cache) every kernel with the argument types serving uses, so
    that the first request does not pay for it."""
    i0, f0, u0 = np.zeros(0, np.int64), np.zeros(0, np.float64), np.zeros(0, np.uint8)
    flags, acc = np.zeros(4, np.uint8), np.zeros(4, np.float64)
    starts, lens = np.zeros(4, np.int64), np.zeros(4, np.int32)
    to, w = np.zeros(4, np.int32), np.zeros(4, np.float32)
    cand, scores, src_pos, src_fac = itemcf(
        np.array([0], np.int64), np.array([1.0]), 0.9, 10, starts, lens, to, w, acc, flags
    )
    factors = np.ones((4, 8), np.float32)
    als(
        i0,
        factors,
        cand,
        np.ones(4, np.bool_),
        np.arange(4, dtype=np.int64),
        factors,
        factors[0],
        i0,
        2,
        flags,
    )
    byte, mask = np.zeros((4, 8), np.int32), np.zeros((4, 8), np.uint8)
    bools, ranks, creators = np.zeros(4, np.bool_), np.arange(4, dtype=np.int64), np.zeros(4, np.int32)
    seen_among(i0, i0, bools, False, u0, byte, mask, flags)
    select(
        2, 2, cand, scores, i0, f0, acc, np.arange(4, dtype=np.int64), i0, bools, False, u0, byte, mask,
        creators, ranks, bools, bools, i0, src_pos, src_fac, starts, lens, to, w, flags, np.zeros(4),
        np.zeros(4, np.float64), np.zeros(4, np.int64), np.zeros(4, np.int32),
    )  # fmt: skip
