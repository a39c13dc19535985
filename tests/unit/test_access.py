import pytest
from pydantic import SecretStr

from recstream.settings import Settings
from recstream.web.access import Access, RateLimiter, Refused, is_loopback, require_keys


def _access(**kw) -> Access:
    return Access(Settings(**kw))


def test_open_without_keys_and_scoped_with_them() -> None:
    open_ = _access()
    for scope in ("write", "user", "public"):
        open_.check(scope, {})
    keyed = _access(write_api_key=SecretStr("w"), read_api_key=SecretStr("r"))
    keyed.check("public", {})  # public_reads defaults on
    with pytest.raises(Refused) as exc:
        keyed.check("write", {})
    assert exc.value.status == 401 and exc.value.headers == {"WWW-Authenticate": "Bearer"}
    with pytest.raises(Refused) as exc:
        keyed.check("write", {"X-API-Key": "r"})  # the read key does not write
    assert exc.value.status == 403
    keyed.check("write", {"Authorization": "Bearer w"})
    keyed.check("user", {"X-API-Key": "r"})
    keyed.check("user", {"X-API-Key": "w"})  # the write key reads too
    with pytest.raises(Refused):
        keyed.check("user", {})
    private = _access(read_api_key=SecretStr("r"), public_reads=False)
    with pytest.raises(Refused):
        private.check("public", {})
    private.check("public", {"X-API-Key": "r"})


def test_rate_limiter_refills_and_says_how_long_to_wait() -> None:
    limiter = RateLimiter(rate=10, burst=20)
    assert limiter.take("a", 20, now=0.0) == 0
    assert limiter.take("a", 5, now=0.0) == pytest.approx(0.5)
    assert limiter.take("b", 5, now=0.0) == 0  # per client
    assert limiter.take("a", 5, now=0.5) == 0
    assert limiter.take("a", 500, now=100.0) == 0  # larger than the burst: waits for a full bucket only
    assert RateLimiter(rate=0, burst=1).take("a", 10**9) == 0  # 0: no limit


def test_keys_are_required_beyond_loopback() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.1.2.3")
    require_keys(Settings(), "127.0.0.1")  # open on loopback (with a warning)
    with pytest.raises(SystemExit, match="RECSTREAM_WRITE_API_KEY"):
        require_keys(Settings(), "0.0.0.0")
    require_keys(Settings(write_api_key=SecretStr("w"), read_api_key=SecretStr("r")), "0.0.0.0")
    assert "w-key" not in repr(Settings(write_api_key=SecretStr("w-key")))
