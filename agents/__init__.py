"""Faust agents: thin loops over recstream.scoring's pure functions. Importing this registers them."""

from recstream.agents import catalog, covisit, engagement, history, persist  # noqa: F401
