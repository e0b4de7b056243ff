from collections import Counter

from apps.core.ids import _ALPHABET, new_public_id, random_token


def test_tokens_have_the_length_asked_and_only_url_safe_characters():
    for length in (1, 24, 32, 64):
        token = random_token(length)
        assert len(token) == length and set(token) <= set(_ALPHABET)
    assert new_public_id("ch").startswith("ch_") and len(new_public_id("ch")) == 27


def test_every_character_is_about_equally_likely():
    counts = Counter("".join(random_token(62) for _ in range(2000)))  # 2,000 expected per character
    assert set(counts) == set(_ALPHABET)
    assert max(counts.values()) < 2300 and min(counts.values()) > 1700  # bias of b % 62 would show


def test_tokens_do_not_repeat():
    assert len({random_token() for _ in range(10_000)}) == 10_000
