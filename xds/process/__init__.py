"""The process boundary: the supervisor of the serving workers, how they are spawned, the worker's
entry point, and the typed messages that cross between them."""
