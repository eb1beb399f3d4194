"""The web pages of the service (issue 14): server-rendered Jinja2 on the report shell, the same
charts as the reports, a small script of our own. ``microneedling serve`` runs
:func:`microneedling.web.app.create_app` (the service app with the pages); see docs/web.md."""
