"""Outgoing mail: the MIME skeleton, DKIM, the SMTP transport and the local development server."""
