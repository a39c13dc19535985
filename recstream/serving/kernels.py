"""The compiled inner loops of `recommend` (numba): item-CF, ALS over the candidates, the blend's selection.

One request touches a few hundred to a few thousand (video, score) entries. As numpy calls that was
~60 array operations of 1-3 µs each, most of a request's 200-300 µs, whatever the sizes (a user with
one video in the history cost as much as one with fifty). Here each step is one pass over the entries.

The arrays come from `ServingState` (see there): per video number, the neighbour list's place in one
arena (`nbr_start`, `nbr_len` into `nbr_to`, `nbr_w`), creators, the seen filter's bit positions, the
rank of the video id in id order (ties between equal scores go by video id). Scratch arrays (`flags`,
`acc`, `best`, `best_src`, `per_creator`) are the process's, one slot per video (or creator), and are
left as found (`ServingState`).

Numerics are the reference's (`recstream.scoring`): the same products, summed in the same order, so
item-CF and the blend are bit for bit those of `scoring.itemcf_scores` + `blend` + `select`; ALS dot
products are float32 summed in SIMD lanes as BLAS does, equal to float32 precision
(tests/unit/test_recommend.py).
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

# Bits of each picked video's reasons (`rank`'s last result).
REASON_ALS, REASON_TRENDING, REASON_FRESH = 1, 2, 4


@njit(cache=True, nogil=True)
def _itemcf(hist_idx, hist_w, recency, max_sources, nbr_start, nbr_len, nbr_to, nbr_w, sums, flags):
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


@njit(cache=True, nogil=True)
def _in_filter(v, seen, bloom_byte, bloom_mask):
    """Whether every bit of video `v` is set in the user's seen filter (bytes past its end are zero:
    SETBIT grows the string only as far as the highest bit set)."""
    for c in range(bloom_mask.shape[1]):
        m = bloom_mask[v, c]
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
def _nth_largest(values, nth):
    """The nth largest of `values` (0: the largest), reordering them (quickselect; numba's np.partition
    does the same but costs seconds to compile)."""
    lo, hi = 0, values.shape[0] - 1
    while lo < hi:
        pivot = values[(lo + hi) // 2]
        i, j = lo, hi
        while i <= j:
            while values[i] > pivot:
                i += 1
            while values[j] < pivot:
                j -= 1
            if i <= j:
                values[i], values[j] = values[j], values[i]
                i += 1
                j -= 1
        if nth <= j:
            hi = j
        elif nth >= i:
            lo = i
        else:
            return values[nth]
    return values[nth]


@njit(cache=True, nogil=True)
def _best(cand, scores, keep):
    """The `keep` best of (cand, scores) in their order (on a tie at the cut, the first ones)."""
    n = cand.shape[0]
    if n <= keep:
        return cand, scores
    cut = _nth_largest(scores.copy(), keep - 1)
    ties = keep
    for i in range(n):
        ties -= scores[i] > cut
    out_c, out_s = np.empty(keep, np.int64), np.empty(keep, np.float64)
    m = 0
    for i in range(n):
        if scores[i] > cut or (scores[i] == cut and ties > 0):
            if scores[i] == cut:
                ties -= 1
            out_c[m], out_s[m] = cand[i], scores[i]
            m += 1
    return out_c, out_s


@njit(cache=True, nogil=True)
def _als(
    pool,
    pool_factors,
    pool_scores,
    cf_best,
    extra_ok,
    model_rows,
    item_factors,
    vector,
    history_idx,
    keep,
    flags,
):
    """The model's best `keep` among the pools (`pool`: scored here from their rows gathered in
    `pool_factors`, or given in `pool_scores`) and the item-CF candidates `cf_best` it knows that are not
    pooled (`extra_ok`), never a video in the history: (videos, scores, the best score), or empty when
    none scores > 0."""
    for v in history_idx:
        flags[v] |= EXCLUDED
    cand = np.empty(pool.shape[0] + cf_best.shape[0], np.int64)
    scores = np.empty(cand.shape[0], np.float64)
    given = pool_scores.shape[0] == pool.shape[0]
    n = 0
    for i in range(pool.shape[0]):
        v = pool[i]
        if flags[v] & EXCLUDED == 0:
            cand[n] = v
            scores[n] = pool_scores[i] if given else _dot(pool_factors[i], vector)
            n += 1
    for v in cf_best:
        if extra_ok[v] and flags[v] & EXCLUDED == 0:
            cand[n] = v
            scores[n] = _dot(item_factors[model_rows[v]], vector)
            n += 1
    for v in history_idx:
        flags[v] &= ~EXCLUDED
    cand, scores = _best(cand[:n], scores[:n], keep)
    best = -np.inf
    for i in range(cand.shape[0]):
        best = max(best, scores[i])
    if cand.shape[0] == 0 or best <= 0:
        return cand[:0], scores[:0], 0.0
    return cand, scores, best


@njit(cache=True, nogil=True)
def _before(score_a, video_a, score_b, video_b, id_rank):
    """The ranking's order: higher score first, equal scores by video id (its rank, looked up only then)."""
    return score_a > score_b or (score_a == score_b and id_rank[video_a] < id_rank[video_b])


@njit(cache=True, nogil=True)
def _sift_down(heap, n, i, scores, videos, id_rank):
    while True:
        left = 2 * i + 1
        if left >= n:
            return
        top = left
        right = left + 1
        if right < n:
            a, b = heap[right], heap[left]
            if _before(scores[a], videos[a], scores[b], videos[b], id_rank):
                top = right
        a, b = heap[top], heap[i]
        if _before(scores[a], videos[a], scores[b], videos[b], id_rank):
            heap[i], heap[top] = a, b
            i = top
        else:
            return


@njit(cache=True, nogil=True)
def rank(
    k,
    max_per_creator,
    hist_idx,
    hist_w,
    recency,
    max_sources,
    w_itemcf,
    w_als,
    pool,
    pool_factors,
    pool_scores,
    extra_ok,
    model_rows,
    item_factors,
    vector,
    keep,
    base_score,
    order,
    excluded,
    history_idx,
    removed,
    any_removed,
    seen,
    bloom_byte,
    bloom_mask,
    creator,
    id_rank,
    in_trending,
    in_fresh,
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
    """One answer: item-CF over the history (w_itemcf > 0), ALS over `pool` (the pools and its retrieval
    set) and the best `keep` item-CF candidates (w_als > 0; `vector` the user's), each max-scaled to 1 and weighted, plus the pools' blended
    score (`base_score`), merged with the rest of the pools (`order`, best first); best first (ties by
    video id), never `excluded` / taken down / in the seen filter, at most `max_per_creator` per creator
    (creator -1: unknown, uncapped), at most k. Returns (videos, scores, per video the history position
    of the item-CF source that gave it most (-1: none; on a tie the more recent), per video its REASON_*
    bits)."""
    empty_i, empty_f = np.empty(0, np.int64), np.empty(0, np.float64)
    src_pos, src_fac = empty_i, empty_f
    cf_idx, cf_scores, cf_scale = empty_i, empty_f, 0.0
    if w_itemcf > 0 and hist_idx.shape[0] > 0:
        cf_idx, cf_scores, src_pos, src_fac = _itemcf(
            hist_idx, hist_w, recency, max_sources, nbr_start, nbr_len, nbr_to, nbr_w, acc, flags
        )
        top = -np.inf
        for x in cf_scores:
            top = max(top, x)
        if cf_scores.shape[0] > 0 and top > 0:
            cf_scale = w_itemcf / top
    als_idx, als_scores, als_scale = empty_i, empty_f, 0.0
    if w_als > 0 and vector.shape[0] > 0:
        cf_best, _ = _best(cf_idx, cf_scores, keep)
        als_idx, als_scores, als_top = _als(
            pool, pool_factors, pool_scores, cf_best, extra_ok, model_rows, item_factors, vector,
            history_idx, keep, flags,
        )  # fmt: skip
        if als_idx.shape[0] > 0:
            als_scale = w_als / als_top
    if cf_scale == 0.0:
        cf_idx = empty_i
    return _select(
        k, max_per_creator, cf_idx, cf_scores, cf_scale, als_idx, als_scores, als_scale, base_score,
        order, excluded, removed, any_removed, seen, bloom_byte, bloom_mask, creator, id_rank,
        in_trending, in_fresh, hist_idx, src_pos, src_fac, nbr_start, nbr_len, nbr_to, nbr_w, flags, acc,
        best, best_src, per_creator,
    )  # fmt: skip


@njit(cache=True, nogil=True)
def _select(
    k,
    max_per_creator,
    cf_idx,
    cf_scores,
    cf_scale,
    als_idx,
    als_scores,
    als_scale,
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
    """`rank`'s second half: the user's candidates blended (`cf_scores` * `cf_scale`, `als_scores` *
    `als_scale`, summed per video, plus the pools' score), ranked, filtered, capped, with reasons."""
    # Blend the user's own sources: cf then ALS, summed per video, plus the pools' score.
    n_dyn_max = cf_idx.shape[0] + als_idx.shape[0]
    dyn = np.empty(n_dyn_max, np.int64)
    n_dyn = 0
    for i in range(cf_idx.shape[0]):
        v = cf_idx[i]
        acc[v] += cf_scale * cf_scores[i]
        if flags[v] & IN_DYN == 0:
            flags[v] |= IN_DYN
            dyn[n_dyn] = v
            n_dyn += 1
    for i in range(als_idx.shape[0]):
        v = als_idx[i]
        acc[v] += als_scale * als_scores[i]
        flags[v] |= IN_ALS
        if flags[v] & IN_DYN == 0:
            flags[v] |= IN_DYN
            dyn[n_dyn] = v
            n_dyn += 1
    dyn = dyn[:n_dyn]
    dyn_scores = np.empty(n_dyn, np.float64)
    for i in range(n_dyn):
        v = dyn[i]
        dyn_scores[i] = acc[v] + base_score[v]
        acc[v] = 0.0
    for v in excluded:
        flags[v] |= EXCLUDED

    # A heap over the user's candidates, merged with the pools' order (already ranked).
    heap = np.arange(n_dyn)
    for i in range(n_dyn // 2 - 1, -1, -1):
        _sift_down(heap, n_dyn, i, dyn_scores, dyn, id_rank)
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
            take_heap = _before(dyn_scores[top], dyn[top], base_score[pv], pv, id_rank)
        if take_heap:
            top = heap[0]
            v, score = dyn[top], dyn_scores[top]
            n_heap -= 1
            heap[0] = heap[n_heap]
            _sift_down(heap, n_heap, 0, dyn_scores, dyn, id_rank)
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
    i0, u0 = np.zeros(0, np.int64), np.zeros(0, np.uint8)
    flags, acc = np.zeros(4, np.uint8), np.zeros(4, np.float64)
    starts, lens = np.zeros(4, np.int64), np.zeros(4, np.int32)
    to, w = np.zeros(4, np.int32), np.zeros(4, np.float32)
    byte, mask = np.zeros((4, 8), np.int32), np.zeros((4, 8), np.uint8)
    bools, ranks, creators = np.zeros(4, np.bool_), np.arange(4, dtype=np.int64), np.zeros(4, np.int32)
    factors, f32 = np.ones((4, 8), np.float32), np.zeros(0, np.float32)
    seen_among(i0, i0, bools, False, u0, byte, mask, flags)
    for pool_scores in (f32, np.ones(2, np.float32)):  # scored here, or given (the whole catalog)
        rank(
            2, 2, np.array([0], np.int64), np.array([1.0]), 0.9, 10, 1.0, 1.0, np.arange(2, dtype=np.int64),
            factors, pool_scores, np.ones(4, np.bool_), np.arange(4, dtype=np.int64), factors, factors[0],
            200, acc, np.arange(4, dtype=np.int64), i0, i0, bools, False, u0, byte, mask, creators, ranks,
            bools, bools, starts, lens, to, w, flags, acc, np.zeros(4), np.zeros(4, np.int64),
            np.zeros(4, np.int32),
        )  # fmt: skip
