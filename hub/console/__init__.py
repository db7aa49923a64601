"""The hub's web console at ``/console``: server-rendered pages (Jinja2) over the same services as the API.

An edge like `hub.api`: sign-in exchanges an API token for a signed session cookie (`session`), every form
carries a CSRF token, and the pages read the services the API reads (`hub.api.deps`). Templates and CSS
ship in the package: no CDN, no Node build, so it works on an air-gapped plant network. Mounted by
`hub.api.create_app` through `hub.console.app.mount_console`.
"""
