"""Topic-level producers and the online experiment: the event simulator, dataset replay, the closed loop."""
