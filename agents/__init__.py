"""Faust agents: thin loops over recstream.streamstate's pure functions. Importing this registers them."""

from recstream.agents import (  # noqa: F401
    catalog,
    covisit,
    engagement,
    history,
    impressions,
    pipeline,
    rematerialise,
)
