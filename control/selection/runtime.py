"""What the quality and budget selectors need at run time: profiles loaded once (by shipped
name or directory), a backend's estimate from its `profile` model, and one budget pacer per
budget config that outlives single requests (a reload with the same budget keeps its λ)."""
from __future__ import annotations

import threading
from pathlib import Path

from control.selection.profile import Profile
from control.selection.selectors import BudgetPacer

SHIPPED_PROFILES = Path(__file__).resolve().parents[2] / "profiles"

_profiles: dict[Path, Profile] = {}
_pacers: dict[tuple, BudgetPacer] = {}
_lock = threading.Lock()


def profile_dir(ref: str) -> Path:
    """A shipped profile's name, or a path to a profile directory."""
    shipped = SHIPPED_PROFILES / ref
    return shipped if "/" not in ref and shipped.is_dir() else Path(ref).expanduser().resolve()


def load_profile(ref: str) -> Profile:
    path = profile_dir(ref)
    with _lock:
        if path not in _profiles:
            _profiles[path] = Profile.load(path)
        return _profiles[path]


def check_profiles(config) -> None:
    """At start and on reload: each selector's profile loads, and every backend's `profile`
    names one of its models (ValueError naming the key otherwise)."""
    routing = config.routing
    for key in ("quality", "budget"):
        settings = getattr(routing, key, None)
        if settings is None:
            continue
        try:
            profile = load_profile(settings.profile)
        except (FileNotFoundError, ValueError) as exc:
            raise ValueError(f"routing.{key}.profile: {exc}") from None
        known = {b.name for b in config.backends}
        for name in settings.backends or []:
            if name not in known:
                raise ValueError(f"routing.{key}.backends: '{name}' is not a configured backend")
        for backend in candidates(config, settings):
            if backend.profile is not None and backend.profile not in profile.models:
                raise ValueError(f"backends.{backend.name}.profile: '{backend.profile}' is not a model of profile "
                                 f"'{settings.profile}' ({', '.join(profile.models)})")


def candidates(config, settings) -> list:
    """The selector's candidate backends, in config order."""
    if settings.backends:
        return [config.backend(name) for name in settings.backends]
    return [b for b in config.backends if getattr(b, "profile", None)]


def pacer_for(settings) -> BudgetPacer | None:
    """The pacer of this budget config (None until initial λ is known: see `start_pacer`)."""
    return _pacers.get(_pacer_key(settings))


def start_pacer(settings, initial_lambda: float, clock=None) -> BudgetPacer:
    key = _pacer_key(settings)
    with _lock:
        if key not in _pacers:
            kwargs = {"clock": clock} if clock is not None else {}
            _pacers[key] = BudgetPacer(settings.usd_per_hour, settings.initial_lambda or initial_lambda,
                                       settings.window_s, **kwargs)
        return _pacers[key]


def _pacer_key(settings) -> tuple:
    return (str(profile_dir(settings.profile)), settings.usd_per_hour, settings.window_s, tuple(settings.backends or ()))
