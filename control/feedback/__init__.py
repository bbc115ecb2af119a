"""Feedback on routed answers (POST /v1/feedback): stored in SQLite, learned by the quality profiles."""
