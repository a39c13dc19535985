"""HTTP: the shared handlers (`handlers`), who may call what (`access`, `cors`), the OpenAPI document
(`openapi`, `schemas`), the worker's Faust views (`api`, `dashboard`: importing them registers them on
the Faust app; a worker's start imports them, as `recstream.streaming.app.PARTS` names), the dashboard's
figures (`dashboard_data`) and dead-letter feed (`dashboard_dead_letters`), and the web role (`server`)."""
