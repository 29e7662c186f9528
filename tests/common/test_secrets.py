"""Passwords never show: every URL form is masked, settings dumps too; the Redis password file."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from hivemind_common.redaction import mask_url, scrub_text
from hivemind_common.redis import connect_redis
from hivemind_common.settings import ServiceSettings
from support.redis_servers import start_redis

PW = "s3cr3t-Pa55"


@pytest.mark.parametrize(
    "url",
    [
        f"redis://{PW}@cache.local:6379/0",
        f"redis://:{PW}@cache.local:6379/0",
        f"redis://app:{PW}@cache.local:6379/0",
        f"rediss://app:{PW}@cache.local:6380/0?ssl_cert_reqs=required",
        f"redis+cluster://app:{PW}@h1:7000,h2:7001",
        f"redis+sentinel://s1:26379,s2:26379/mymaster?sentinel_password={PW}",
        f"redis+sentinel://app:{PW}@s1:26379/mymaster?sentinel_username=u&sentinel_password={PW}",
    ],
)
def test_every_url_form_is_shown_without_its_password(url: str) -> None:
    shown = mask_url(url)
    assert PW not in shown and "***" in shown
    assert shown.split("://")[0] == url.split("://")[0]
    settings = ServiceSettings(redis_url=url, internal_token="tok-" + PW)
    dumped = json.dumps(settings.public())
    assert PW not in dumped and "tok-" not in dumped
    assert PW not in repr(settings)
    assert settings.redis_url == url  # the real value is untouched


@pytest.mark.parametrize(
    "url",
    [
        f"redis://:{PW}@127.0.0.1:6379/0",  # the form `hivemind up` writes
        f"redis://{PW}@cache.local:6379/0",
        f"rediss://app:{PW}@cache.local:6380/0",
        f"redis+sentinel://:{PW}@s1:26379,s2:26379/mymaster",
    ],
)
def test_the_scrubber_removes_a_redis_password_in_every_url_form(url: str) -> None:
    scrubbed = scrub_text(f"connect with {url} please")
    assert PW not in scrubbed and "[REDACTED:url_password]" in scrubbed
    assert scrub_text("clone https://user@example.org/repo.git") == (
        "clone https://user@example.org/repo.git"
    )


def test_a_url_without_secrets_is_shown_as_it_is() -> None:
    url = "redis://127.0.0.1:6379/0?socket_timeout=2"
    assert mask_url(url) == url
    assert "[REDACTED:url_password]" in scrub_text(f"see redis://app:{PW}@h:1 now")


def test_the_redis_password_file_is_used_and_never_shown(tmp_path: Path) -> None:
    server = start_redis(tmp_path / "redis")
    try:
        server.client().config_set("requirepass", PW)
        url = f"redis://127.0.0.1:{server.port}/0"
        data = tmp_path / "var"
        (data / "secrets").mkdir(parents=True)

        async def ping(u: str) -> object:
            r = connect_redis(u, retry_deadline=0)
            try:
                return await r.ping()
            finally:
                await r.aclose()

        with pytest.raises(Exception, match=r"(?i)auth"):
            asyncio.run(ping(ServiceSettings(redis_url=url, data_dir=data).redis_url))
        (data / "secrets" / "redis.password").write_text(PW + "\n")
        # the password belongs to the embedded Redis named in redis.conf: another port's URL
        # (a test server, a deployment) never gets it
        (data / "secrets" / "redis.conf").write_text(f"port {server.port + 1}\nrequirepass x\n")
        assert ServiceSettings(redis_url=url, data_dir=data).redis_url == url
        (data / "secrets" / "redis.conf").write_text(f"port {server.port}\nrequirepass x\n")
        settings = ServiceSettings(redis_url=url, data_dir=data)
        assert asyncio.run(ping(settings.redis_url)) is True
        assert PW not in json.dumps(settings.public())
        assert PW not in repr(settings) and PW not in str(settings)
    finally:
        server.stop()
