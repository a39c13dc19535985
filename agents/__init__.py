"""Faust agents: thin loops over recstream.streamstate's pure functions. Importing this registers them."""

from recstream.agents import catalog, covisit, engagement, history, pipeline, rematerialise  # noqa: F401
