"""Broker sources: each turns one backend (a file, ZooKeeper, Kafka metadata) into Topology values."""
