"""Use cases, one module per noun; the CLI, the web app and the scheduler call these and nothing deeper."""
