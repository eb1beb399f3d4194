"""In-silico trials: virtual populations (:mod:`~microneedling.studies.trial.population`) and trial
specs, chunked execution and statistics (:mod:`~microneedling.studies.trial.run`)."""
