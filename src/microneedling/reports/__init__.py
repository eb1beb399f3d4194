"""Everything that renders: figures and HTML reports for runs, plans, trials, absorption,
sensitivity and credibility. Reports take the data a study or the engine returned; they never run
the model."""
