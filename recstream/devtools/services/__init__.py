"""Real local services (Apache Kafka, Redis, a MongoDB-protocol server) for development, tests and demos."""

from recstream.devtools.services.manager import ServiceError, down, local_services, status, up

__all__ = ["ServiceError", "down", "local_services", "status", "up"]
