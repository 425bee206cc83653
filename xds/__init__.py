"""kafka-xds: an Envoy control plane that gives applications a stable local address per Kafka broker."""

__version__ = "0.1.0"
