"""Learned model selection (issue 14): quality profiles (prompt embedding → each model's expected
score), the offline build from outcome tables, the selectors' pure logic, and their evaluation.
Runtime modules (profile, selectors, curve) are numpy only; build/evaluation need Triton."""
