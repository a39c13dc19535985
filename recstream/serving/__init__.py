"""What answers `/recommendations`: the blend (`recommend`), the in-process serving state and model cache,
and the stores (Redis, MongoDB) serving reads and the agents write."""
