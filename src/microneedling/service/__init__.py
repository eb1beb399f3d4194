"""The service: an HTTP API (FastAPI) over the package, with accounts, a database and background jobs.

``microneedling serve`` starts it; :func:`microneedling.service.app.create_app` builds the app from
:class:`microneedling.service.config.Settings`. The layer sits between ``reports/`` and ``cli/``: it
calls the same engine, studies and reports the command line calls, and only ``cli`` imports it.

Modules: ``config`` (settings from options and the environment), ``db`` (tables, engines, Alembic
migrations), ``store`` (the content-addressed file store), ``security`` (password and token hashing,
CSRF, rate limits), ``accounts`` (organisations, users, tokens, sessions), ``audit``, ``errors``
(every refusal as a JSON body naming field, value and allowed), ``schemas`` (request and response
models), ``auth`` (who is calling), ``runs`` (what each kind of run computes and stores), ``jobs``
(background execution, progress, cancellation, resume), ``api`` (the routes) and ``app``.
See ``docs/service.md``.
"""
