"""Moved to xds.demo.brokers (the demo uses the same stand-in brokers); kept as an alias for tests."""

from xds.demo.brokers import Certs, TlsUpstream, exchange, make_certs

__all__ = ["Certs", "TlsUpstream", "exchange", "make_certs"]
