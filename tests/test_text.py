import pytest

from fmnist._text import plural, signed, with_article


def test_counts_agree_with_their_nouns():
    assert [plural(n, "epoch") for n in (0, 1, 2, 1200)] == ["0 epochs", "1 epoch", "2 epochs", "1,200 epochs"]
    assert plural(1, "mistake") == "1 mistake" and plural(3, "class", "classes") == "3 classes"


def test_articles():
    assert [with_article(n) for n in ("Ankle boot", "Sandal", "T-shirt/top", "Overcoat")] == [
        "an Ankle boot", "a Sandal", "a T-shirt/top", "an Overcoat"]


@pytest.mark.parametrize("value, digits, text", [(0.018, 3, "+0.018"), (-0.004, 3, "-0.004"), (-0.0004, 3, "+0.000"),
                                                  (-0.00004, 4, "+0.0000"), (0.0, 2, "+0.00")])
def test_a_difference_that_rounds_to_nothing_has_no_minus_sign(value, digits, text):
    assert signed(value, digits) == text
