"""Kafka, Redis and MongoDB credentials in the settings: mapped into each client's configuration in
one place (recstream.kafka.config), and never printed; where local data lives in a checkout and in an
installed package."""

from __future__ import annotations

import logging
import ssl
from pathlib import Path

import pytest
from pydantic import ValidationError

from recstream.kafka import config as kafka_config
from recstream.settings import Settings, default_local_dir, redact_url, source_checkout

SASL = {"kafka_security_protocol": "SASL_PLAINTEXT", "kafka_username": "svc", "kafka_password": 'pa"ss\\word'}
ROOT = Path(__file__).resolve().parents[2]


def test_plaintext_is_the_default() -> None:
    s = Settings(kafka_bootstrap="k1:9092,k2:9092")
    assert kafka_config.client_kwargs(s) == {
        "bootstrap_servers": "k1:9092,k2:9092",
        "security_protocol": "PLAINTEXT",
    }
    assert kafka_config.client_kwargs(s, "other:1") == {
        "bootstrap_servers": "other:1",
        "security_protocol": "PLAINTEXT",
    }
    assert kafka_config.faust_credentials(s) is None
    assert kafka_config.spark_options(s) == {
        "kafka.bootstrap.servers": "k1:9092,k2:9092",
        "kafka.security.protocol": "PLAINTEXT",
    }


def test_sasl_scram_reaches_every_kind_of_client(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECSTREAM_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("RECSTREAM_KAFKA_SASL_MECHANISM", "SCRAM-SHA-256")
    monkeypatch.setenv("RECSTREAM_KAFKA_USERNAME", "svc")
    monkeypatch.setenv("RECSTREAM_KAFKA_PASSWORD", "s3cret")
    s = Settings(kafka_bootstrap="kafka:9092")
    assert kafka_config.client_kwargs(s) == {
        "bootstrap_servers": "kafka:9092",
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-256",
        "sasl_plain_username": "svc",
        "sasl_plain_password": "s3cret",
    }
    creds = kafka_config.faust_credentials(s)
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    assert credentials_to_aiokafka_auth(creds) == {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-256",
        "sasl_plain_username": "svc",
        "sasl_plain_password": "s3cret",
        "ssl_context": None,
    }
    assert "s3cret" not in repr(creds)
    opts = kafka_config.spark_options(s)
    assert opts["kafka.sasl.mechanism"] == "SCRAM-SHA-256"
    assert opts["kafka.sasl.jaas.config"] == (
        'org.apache.kafka.common.security.scram.ScramLoginModule required username="svc" password="s3cret";'
    )


def test_jaas_quoting_and_plain_mechanism() -> None:
    s = Settings(**SASL, kafka_sasl_mechanism="PLAIN")
    jaas = kafka_config.spark_options(s)["kafka.sasl.jaas.config"]
    assert jaas == (
        "org.apache.kafka.common.security.plain.PlainLoginModule required "
        'username="svc" password="pa\\"ss\\\\word";'
    )


def test_sasl_ssl_uses_a_context(tmp_path: Path) -> None:
    s = Settings(**{**SASL, "kafka_security_protocol": "SASL_SSL"})
    kwargs = kafka_config.client_kwargs(s)
    assert isinstance(kwargs["ssl_context"], ssl.SSLContext) and kwargs["security_protocol"] == "SASL_SSL"
    assert kafka_config.faust_credentials(s).protocol.value == "SASL_SSL"
    ca = tmp_path / "ca.pem"
    opts = kafka_config.spark_options(
        Settings(**{**SASL, "kafka_security_protocol": "SASL_SSL", "kafka_ssl_cafile": ca})
    )
    assert opts["kafka.ssl.truststore.location"] == str(ca) and opts["kafka.ssl.truststore.type"] == "PEM"


def test_half_configured_credentials_are_refused() -> None:
    with pytest.raises(ValidationError, match="RECSTREAM_KAFKA_USERNAME and RECSTREAM_KAFKA_PASSWORD"):
        Settings(kafka_security_protocol="SASL_PLAINTEXT", kafka_username="svc")
    with pytest.raises(ValidationError, match="set it to SASL_PLAINTEXT or SASL_SSL"):
        Settings(kafka_username="svc", kafka_password="x")


def test_secrets_are_never_printed(caplog: pytest.LogCaptureFixture) -> None:
    s = Settings(
        **{**SASL, "kafka_password": "kafka-pw-1"},
        redis_url="redis://:redis-pw-2@cache:6379/0",
        mongo_url="mongodb://root:mongo-pw-3@db:27017/?authSource=admin",
        write_api_key="write-key-4",
        read_api_key="read-key-5",
    )
    secrets = ("kafka-pw-1", "redis-pw-2", "mongo-pw-3", "write-key-4", "read-key-5")
    with caplog.at_level(logging.INFO):
        logging.getLogger("recstream.test").info("settings: %s / %r", s, s)
    printed = repr(s) + str(s) + caplog.text
    assert not [x for x in secrets if x in printed]
    assert (
        "redis://:***@cache:6379/0" in printed and "mongodb://root:***@db:27017/?authSource=admin" in printed
    )
    # `recstream services up|status` print external addresses: redacted.
    from recstream.devtools.services.manager import status

    rows = status(s)
    assert not [x for x in secrets if x in str(rows)]
    assert {r["service"]: r["address"] for r in rows if not r["managed"]}[
        "redis"
    ] == "redis://:***@cache:6379/0"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:pw@h:6379/0", "redis://:***@h:6379/0"),
        ("redis://user:pw@h:6379/0", "redis://user:***@h:6379/0"),
        ("redis://h:6379/0", "redis://h:6379/0"),
        ("mongodb://u:p@a:1,b:2/?authSource=admin", "mongodb://u:***@a:1,b:2/?authSource=admin"),
        ("kafka-1:9092,kafka-2:9092", "kafka-1:9092,kafka-2:9092"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_local_data_in_a_checkout_and_in_an_installed_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # This checkout: .local and .local/data, as `make clean-data` and the README say.
    assert source_checkout() == ROOT
    monkeypatch.delenv("RECSTREAM_LOCAL_DIR", raising=False)
    monkeypatch.delenv("RECSTREAM_DATA_DIR", raising=False)
    s = Settings()
    assert (s.local_dir, s.data_dir) == (ROOT / ".local", ROOT / ".local" / "data")
    # An installed package: recstream/ sits in site-packages, whose parent is no recstream checkout.
    site = tmp_path / "lib" / "python3.11" / "site-packages"
    (site / "recstream").mkdir(parents=True)
    (site / "pyproject.toml").write_text('[project]\nname = "something-else"\n')
    assert source_checkout(site) is None
    assert default_local_dir(site, {"HOME": "/home/u"}) == Path("/home/u/.local/share/recstream")
    assert default_local_dir(site, {"HOME": "/home/u", "XDG_DATA_HOME": "/xdg"}) == Path("/xdg/recstream")
    assert not str(default_local_dir(site, {"HOME": str(tmp_path)})).startswith(str(site))
    # A checkout found by its pyproject.toml; the settings' defaults follow whichever applies.
    checkout = tmp_path / "src"
    checkout.mkdir()
    (checkout / "pyproject.toml").write_text('[project]\nname = "recstream"\n')
    assert default_local_dir(checkout, {}) == checkout / ".local"
    monkeypatch.setattr("recstream.settings._PACKAGE_PARENT", site)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    installed = Settings()
    assert installed.local_dir == tmp_path / "xdg" / "recstream"
    assert installed.data_dir == tmp_path / "xdg" / "recstream" / "data"
    assert Settings(local_dir="/opt/r").data_dir == Path("/opt/r/data")
    assert Settings(local_dir="/opt/r", data_dir="/data").data_dir == Path("/data")
