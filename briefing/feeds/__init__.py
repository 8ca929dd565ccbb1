"""The site's feeds: fetch over HTTP with one deadline, parse entries into articles."""
