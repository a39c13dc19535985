"""How every Kafka client of recstream connects, built in one place from the settings.

Three kinds of client read it: aiokafka's producers, consumers and admin clients (`client_kwargs`),
the Faust app (`faust_credentials`, its `broker_credentials`), and Spark's Kafka source in training
(`spark_options`, the `kafka.*` options of `spark.read.format("kafka")`). The password is read out of
its SecretStr only here, into the client's own configuration: nothing here is logged.
"""

from __future__ import annotations

import json
import ssl
from typing import Any

from recstream.settings import Settings


def _ssl_context(settings: Settings) -> ssl.SSLContext | None:
    if not settings.kafka_security_protocol.endswith("SSL"):
        return None
    from aiokafka.helpers import create_ssl_context

    return create_ssl_context(cafile=str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile else None)


def client_kwargs(settings: Settings, bootstrap: str | None = None) -> dict[str, Any]:
    """Keyword arguments for AIOKafkaProducer / AIOKafkaConsumer / AIOKafkaAdminClient: the bootstrap
    servers (`bootstrap` overrides the settings' ones) and the security settings."""
    kwargs: dict[str, Any] = {
        "bootstrap_servers": bootstrap or settings.kafka_bootstrap,
        "security_protocol": settings.kafka_security_protocol,
    }
    if settings.kafka_security_protocol.startswith("SASL_"):
        assert settings.kafka_password is not None  # Settings refuses SASL without one
        kwargs.update(
            sasl_mechanism=settings.kafka_sasl_mechanism,
            sasl_plain_username=settings.kafka_username,
            sasl_plain_password=settings.kafka_password.get_secret_value(),
        )
    context = _ssl_context(settings)
    if context is not None:
        kwargs["ssl_context"] = context
    return kwargs


def faust_credentials(settings: Settings) -> Any:
    """The Faust app's `broker_credentials`: None for PLAINTEXT."""
    import faust

    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    if protocol == "SSL":
        return faust.SSLCredentials(_ssl_context(settings))
    assert settings.kafka_password is not None
    return faust.SASLCredentials(
        username=settings.kafka_username,
        password=settings.kafka_password.get_secret_value(),
        mechanism=settings.kafka_sasl_mechanism,
        ssl_context=_ssl_context(settings),  # SASL_SSL when set
    )


_LOGIN_MODULES = {
    "PLAIN": "org.apache.kafka.common.security.plain.PlainLoginModule",
    "SCRAM-SHA-256": "org.apache.kafka.common.security.scram.ScramLoginModule",
    "SCRAM-SHA-512": "org.apache.kafka.common.security.scram.ScramLoginModule",
}


def spark_options(settings: Settings, bootstrap: str | None = None) -> dict[str, str]:
    """Options of Spark's Kafka source (`kafka.` + the Java client's properties). Spark redacts the JAAS
    line in its logs and plans (its value names a password)."""
    options = {
        "kafka.bootstrap.servers": bootstrap or settings.kafka_bootstrap,
        "kafka.security.protocol": settings.kafka_security_protocol,
    }
    if settings.kafka_security_protocol.startswith("SASL_"):
        assert settings.kafka_password is not None
        # JAAS string literals: JSON's escaping of quotes and backslashes is what JAAS reads.
        options["kafka.sasl.mechanism"] = settings.kafka_sasl_mechanism
        options["kafka.sasl.jaas.config"] = (
            f"{_LOGIN_MODULES[settings.kafka_sasl_mechanism]} required "
            f"username={json.dumps(settings.kafka_username)} "
            f"password={json.dumps(settings.kafka_password.get_secret_value())};"
        )
    if settings.kafka_security_protocol.endswith("SSL") and settings.kafka_ssl_cafile:
        options["kafka.ssl.truststore.type"] = "PEM"
        options["kafka.ssl.truststore.location"] = str(settings.kafka_ssl_cafile)
    return options
