"""Hypothesis profiles: "ci" (the default) keeps the suite inside a few minutes on 2 cores and
is derandomized, so a CI run is repeatable; FGGP_HYPOTHESIS_PROFILE=explore draws new random
examples each run and FGGP_HYPOTHESIS_PROFILE=thorough explores much more."""

import os

from hypothesis import HealthCheck, settings

quiet = [HealthCheck.too_slow, HealthCheck.data_too_large]
settings.register_profile("ci", max_examples=60, deadline=None, derandomize=True, suppress_health_check=quiet)
settings.register_profile("explore", max_examples=60, deadline=None, suppress_health_check=quiet)
settings.register_profile("thorough", max_examples=2000, deadline=None, suppress_health_check=list(HealthCheck))
settings.load_profile(os.environ.get("FGGP_HYPOTHESIS_PROFILE", "ci"))
