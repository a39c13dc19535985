"""HTTP views (Faust web, aiohttp). Importing this registers them on the app."""

from recstream.web import api, dashboard  # noqa: F401
