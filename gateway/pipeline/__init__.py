"""The governance pipeline: one ordered list of hooks around every model call."""
