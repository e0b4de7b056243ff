"""Major-unit text to minor units: exact, or rounded by a named rule; anything else refused."""

from decimal import ROUND_HALF_UP, Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from apps.core.money import exponent, minor_of_decimal_string


@pytest.mark.parametrize(
    "text, currency, expected",
    [("7.50", "CNY", 750), ("-7.50", "CNY", -750), ("0", "CNY", 0), ("7.5", "CNY", 750), ("12", "JPY", 12),
     ("1.234", "KWD", 1234), (".5", "CNY", 50), ("1.", "CNY", 100), ("+1.00", "CNY", 100), ("00012.30", "CNY", 1230)],
)  # fmt: skip
def test_a_decimal_text_is_exact_minor_units(text, currency, expected):
    assert minor_of_decimal_string(text, currency) == expected


@pytest.mark.parametrize("text", ["7.5x", "", "-", ".", "1.2.3", "NaN", "inf", "１.00", "0.001", "1" * 20, "9" * 18])
def test_anything_else_is_refused(text):
    with pytest.raises(ValueError):
        minor_of_decimal_string(text, "CNY")


def test_a_finer_value_is_rounded_only_by_a_named_rule():
    assert minor_of_decimal_string("0.04500", "CNY", rounding=ROUND_HALF_UP) == 5
    assert minor_of_decimal_string("-0.01926", "CNY", rounding=ROUND_HALF_UP) == -2
    with pytest.raises(ValueError):
        minor_of_decimal_string("0.04500", "CNY")


@given(st.decimals(min_value=-(10**12), max_value=10**12, places=3), st.sampled_from(["CNY", "JPY", "KWD"]))
def test_the_plain_path_agrees_with_decimal(value, currency):
    scaled = value.scaleb(exponent(currency))
    text = str(value)
    if scaled == scaled.to_integral_value():
        assert minor_of_decimal_string(text, currency) == int(scaled)
    else:
        with pytest.raises(ValueError):
            minor_of_decimal_string(text, currency)
    assert minor_of_decimal_string(text, currency, rounding=ROUND_HALF_UP) == int(
        Decimal(text).scaleb(exponent(currency)).to_integral_value(rounding=ROUND_HALF_UP)
    )
