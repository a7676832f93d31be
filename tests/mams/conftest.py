"""The analytics fixtures (a sample session, runs played in-process) serve these tests too."""

from tests.analytics.conftest import _fast_fake_llm, played_batch, sample, user  # noqa: F401
