"""Every query lives here, one module per noun. Functions take a session and return domain values."""
