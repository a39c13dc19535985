"""Offline evaluation (`recstream evaluate`) and the pieces the closed-loop online evaluation shares.

    data        a dataset as arrays: one row per input row (a view plus its actions), events kept
    protocols   recommenders (stratified 75/25), leave-one-out (MicroLens), temporal (global cut)
    metrics     NDCG/HR/recall/precision/MAP per user, coverage, confidence intervals
    models/     popularity, trending, item-CF, Spark ALS, implicit ALS, the served hybrid blend
    runner      split -> tune on validation -> refit -> one candidate set for every model -> metrics
    report      JSON and a self-contained HTML report (inline SVG charts)

The closed-loop online evaluation is recstream.producers.closed_loop.
"""
