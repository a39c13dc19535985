"""HTTP: the shared handlers (`handlers`), the worker's Faust views (`api`, `dashboard`: importing them
registers them on the Faust app, which `recstream.streaming.app` does) and the web role (`server`)."""
