"""The filter and scrubber: what gets into the dataset, and in what shape."""

from __future__ import annotations

from hivemind_common.jobs import LearningSample
from hivemind_common.redaction import ScrubReport, scrub_text
from hivemind_trainer.data.sample_filter import Accepted, Rejected, SampleFilter


def chat(user: str, reply: str, **kw: object) -> LearningSample:
    return LearningSample(
        tenant="acme",
        messages=[{"role": "user", "content": user}, {"role": "assistant", "content": reply}],
        **kw,
    )


def test_secrets_of_every_kind_are_scrubbed() -> None:
    text = (
        "key sk-proj-abcdefghijklmnopqrstuvwx and ghp_abcdefghijklmnopqrstuvwxyz0123456789 "
        "db postgres://admin:hunter2secret@db.local/app AKIAABCDEFGHIJKLMNOP "
        "password=CorrectHorse99 Authorization: Bearer abcdefghijklmnopqrstuv\n"
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\nIBAAK\n-----END RSA PRIVATE KEY-----"
    )
    report = ScrubReport()
    out = scrub_text(text, report)
    for secret in (
        "abcdefghijklmnopqrstuvwx",
        "ghp_",
        "hunter2secret",
        "AKIAABCDEF",
        "CorrectHorse99",
        "MIIEow",
    ):
        assert secret not in out
    assert "postgres://[REDACTED:url_password]@db.local/app" in out
    assert report.total >= 7


def test_a_plain_chat_is_accepted_and_scrubbed_before_storage() -> None:
    result = SampleFilter().check(chat("how do I connect?", "use postgres://u:pw12345@h/db please"))
    assert isinstance(result, Accepted)
    assert "pw12345" not in result.messages[-1]["content"]
    assert result.secrets_scrubbed == 1


def test_a_correction_replaces_the_reply_and_rescues_a_low_rating() -> None:
    result = SampleFilter().check(chat("2+2?", "5", rating=0.0, correction="4, because 2+2=4"))
    assert isinstance(result, Accepted)
    assert result.messages[-1]["content"] == "4, because 2+2=4"


def test_rejections_carry_their_reason() -> None:
    f = SampleFilter(min_tokens=4, max_tokens=50)
    assert isinstance(r := f.check(chat("q", "a bad answer", rating=0.1)), Rejected)
    assert r.reason == "negative_rating"
    no_reply = LearningSample(tenant="acme", messages=[{"role": "user", "content": "hello"}])
    assert isinstance(r := f.check(no_reply), Rejected) and r.reason == "no_assistant_reply"
    odd_role = LearningSample(tenant="acme", messages=[{"role": "robot", "content": "x"}])
    assert isinstance(r := f.check(odd_role), Rejected) and r.reason == "malformed"
    long = chat("explain", "word " * 400)
    assert isinstance(r := f.check(long), Rejected) and r.reason == "too_long"


def test_near_duplicates_are_caught_but_different_chats_are_not() -> None:
    f = SampleFilter()
    base = (
        "To reverse a list in Python you can call the reverse method or use slicing"
        " with a step of minus one, which makes a copy."
    )
    first = f.check(chat("reverse a list in python", base))
    assert isinstance(first, Accepted)
    f.remember(first)
    near = f.check(chat("reverse a list in python", base + " Done."))
    other = f.check(
        chat(
            "sort a dict by value",
            "Use sorted(d.items(), key=lambda kv: kv[1]) to get pairs ordered by value.",
        )
    )
    assert isinstance(near, Accepted) and f.near_duplicate(near)
    assert isinstance(other, Accepted) and not f.near_duplicate(other)


def test_a_hundred_synthetic_chats_all_pass_the_filter_as_distinct_samples() -> None:
    from hivemind_trainer.data.synthetic import make_chats

    f = SampleFilter()
    accepted = 0
    for conv in make_chats(100):
        result = f.check(LearningSample(tenant="acme", messages=conv, rating=1.0))
        assert isinstance(result, Accepted), result
        assert not f.near_duplicate(result)
        f.remember(result)
        accepted += 1
    assert accepted == 100
