"""The pure stages of an edition: compose, top-up, render, preflight. No I/O, no database, no settings."""
