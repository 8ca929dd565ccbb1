"""briefing: a newsroom's morning email, composed from a story queue and sent exactly once per reader."""

__version__ = "0.1.0"
