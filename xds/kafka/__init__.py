"""Talking to Kafka clusters in Kafka's own protocol: one client, shared by every part that asks a
cluster about itself (the KRaft source's Metadata today; partition state and topic configs next)."""
