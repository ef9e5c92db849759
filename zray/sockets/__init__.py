"""Wire protocol (messages) and socket conventions (transport)."""
