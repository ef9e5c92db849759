"""Core worker: ownership, submission, execution; shared by drivers and workers."""
