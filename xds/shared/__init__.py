"""What every process of kafka-xds shares: the wire format, logging, resource types, listen addresses,
startup errors. Imports nothing else of kafka-xds."""
