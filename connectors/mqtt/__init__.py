"""The `mqtt` source: MQTT 5 topics through a persistent session (paho-mqtt)."""
