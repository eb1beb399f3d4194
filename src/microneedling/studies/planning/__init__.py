"""Treatment planner: patient file (:mod:`microneedling.course.patient`) → screening
(:mod:`microneedling.course.screening`) → plan search (:mod:`.search`) → report
(:mod:`microneedling.reports.plan`).

>>> from microneedling.course.patient import PatientFile                  # doctest: +SKIP
>>> from microneedling.studies.planning.search import search               # doctest: +SKIP
>>> result = search(PatientFile.from_toml("examples/patients/acne-scars-two-sites.toml"))
>>> result.recommended.summary()

Every plan is a model estimate to discuss with a qualified practitioner, not medical advice.
"""
