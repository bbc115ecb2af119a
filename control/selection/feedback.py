"""Feedback folded into the quality profiles: a rated prompt's embedding joins the profile the
config's learned selectors use, scored for the profile model that stands for its backend, as a
correction near that prompt (Profile.add_feedback: the offline index stays as built).

Ratings come from the shared SQLite store (control/feedback/store.py), so every worker learns
what any of them was told: each folds the ratings it has not seen yet, at most once a second
(and at once after a rating it took itself).
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from control.selection import runtime

REFRESH_S = 1.0


class FeedbackLearner:
    def __init__(self, store, clock=time.monotonic):
        self.store, self.clock = store, clock
        self.folded: dict[Path, int] = {}  # profile directory → the last rating id folded into it
        self._checked = float("-inf")

    def refresh(self, config, now: bool = False) -> list[str]:
        """Fold new ratings into the profiles this config's selectors use; their names when any learned."""
        if not now and self.clock() - self._checked < REFRESH_S:
            return []
        self._checked = self.clock()
        model_of = {b.name: b.profile for b in config.backends if b.profile}
        learned, seen = [], set()
        for settings in (config.routing.quality, config.routing.budget):
            if settings is None or runtime.profile_dir(settings.profile) in seen:
                continue
            path = runtime.profile_dir(settings.profile)
            seen.add(path)
            if self._fold(path, runtime.load_profile(settings.profile), model_of):
                learned.append(settings.profile)
        return learned

    def _fold(self, path: Path, profile, model_of: dict[str, str]) -> bool:
        ratings = self.store.ratings_after(self.folded.get(path, 0))
        if not ratings:
            return False
        self.folded[path] = ratings[-1].id
        usable = [r for r in ratings if model_of.get(r.backend) in profile.models]
        if usable:
            profile.add_feedback(np.stack([r.embedding for r in usable]), [model_of[r.backend] for r in usable],
                                 [r.score for r in usable])
        return bool(usable)
