"""The configuration file: its settings models (`model`), field types (`fields`) and source settings
(`sources`). Read only by the main process."""
