"""The web app: readers' pages (subscribe, confirm, unsubscribe, archive) and the editors' pages.

`create_app` in `briefing.web.app` builds it from Settings; `briefing serve` runs it with uvicorn.
"""
