"""Shared fixtures: real SQLite files, real PostgreSQL when configured, real SMTP over loopback.

Each fixture group lives in its own module under tests/fixtures so that they stay small.
"""

pytest_plugins = [
    "tests.fixtures.db",
    "tests.fixtures.browser",
    "tests.fixtures.smtp",
    "tests.fixtures.newsroom",
    "tests.fixtures.web",
]
