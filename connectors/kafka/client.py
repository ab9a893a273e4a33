"""aiokafka client settings from the connection config (TLS and SASL)."""

from __future__ import annotations

from typing import Any

from aiokafka.helpers import create_ssl_context

from connectors.kafka.config import KafkaConnectionConfig


def client_settings(config: KafkaConnectionConfig) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "bootstrap_servers": config.bootstrap_servers,
        "client_id": config.client_id,
        "security_protocol": config.security_protocol,
    }
    if config.security_protocol in ("SSL", "SASL_SSL"):
        context = create_ssl_context(
            cafile=config.ssl_ca_file,
            certfile=config.ssl_cert_file,
            keyfile=config.ssl_key_file,
            password=config.ssl_key_password.get_secret_value()
            if config.ssl_key_password
            else None,
        )
        context.check_hostname = config.ssl_check_hostname
        settings["ssl_context"] = context
    if config.security_protocol.startswith("SASL_"):
        settings["sasl_mechanism"] = config.sasl_mechanism
        settings["sasl_plain_username"] = config.sasl_username
        settings["sasl_plain_password"] = (
            config.sasl_password.get_secret_value() if config.sasl_password else None
        )
    return settings
