"""What ``ipymeet serve --redis`` takes and shows: URLs checked, passwords never printed."""

from __future__ import annotations

import pytest

from ipymeet.server import Settings
from ipymeet.server.cli import _parser
from ipymeet.server.cluster import check_url, shown_url


def test_a_password_in_the_url_is_never_shown() -> None:
    assert (
        shown_url("redis://:s3cret@db.example.org:6380/2") == "redis://:***@db.example.org:6380/2"
    )
    assert shown_url("rediss://app:s3cret@db/0") == "rediss://app:***@db/0"
    assert shown_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
    settings = Settings(redis_url="redis://:s3cret@db:6379/0")
    assert "s3cret" not in repr(settings)


@pytest.mark.parametrize("url", ["http://db/0", "db:6379", "mysql://db/0"])
def test_only_redis_urls_are_taken(url: str) -> None:
    with pytest.raises(ValueError, match="redis"):
        Settings(redis_url=url)
    with pytest.raises(ValueError, match="redis"):
        check_url(url)
    assert check_url("unix:///run/redis.sock") == "unix:///run/redis.sock"


def test_the_url_comes_from_the_environment_unless_given(monkeypatch: pytest.MonkeyPatch) -> None:
    """``IPYMEET_REDIS_URL`` (a URL with a password goes there, not in ``ps``), or ``--redis``."""
    monkeypatch.delenv("IPYMEET_REDIS_URL", raising=False)
    assert _parser().parse_args(["serve"]).redis is None
    monkeypatch.setenv("IPYMEET_REDIS_URL", "redis://:pw@db:6379/0")
    assert _parser().parse_args(["serve"]).redis == "redis://:pw@db:6379/0"
    given = _parser().parse_args(["serve", "--redis", "redis://other:6379/1"])
    assert given.redis == "redis://other:6379/1"
