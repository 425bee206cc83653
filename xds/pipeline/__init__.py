"""The main process's pipeline, one stage per module, each handing the next an immutable value:
sources → grace → plan → resources → snapshot → controller → publisher."""
