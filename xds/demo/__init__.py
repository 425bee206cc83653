"""`make demo`: ZooKeeper, kafka-xds, a real Envoy and stand-in mTLS brokers, all on loopback."""
