import pytest

from stylegan_fast.tools import SpecError, parse_seeds, style_layers


@pytest.mark.parametrize("spec, expected", [
    ("0-7", list(range(8))), ("0,3,5", [0, 3, 5]), ("1-3,9", [1, 2, 3, 9]), ("42", [42]),
    (" 4 - 4 , 2 ".replace(" - ", "-"), [4, 2]), (7, [7]), ([3, 1], [3, 1]),
])
def test_parse_seeds(spec, expected):
    assert parse_seeds(spec) == expected


@pytest.mark.parametrize("spec, message", [
    ("", "empty seed spec"), ("a", "'a' is not"), ("1-", "'1-' is not"), ("-1", "'-1' is not"),
    ("5-3", "runs backwards"), ("1,,2", "'' is not"), ("1.5", "'1.5' is not"),
    (-1, "non-negative|\\[0, 2\\*\\*63\\)"), ([], "no seeds"), ([1, "2"], "integers"),
])
def test_bad_seed_specs(spec, message):
    with pytest.raises(SpecError, match=message):
        parse_seeds(spec)


def test_style_layer_groups():
    assert style_layers("coarse", 18) == [0, 1, 2, 3]
    assert style_layers("middle", 18) == [4, 5, 6, 7]
    assert style_layers("fine", 18) == list(range(8, 18))
    assert style_layers("middle", 6) == [4, 5]  # clipped to the generator's layers
    assert style_layers("3,0-1", 6) == [0, 1, 3]


@pytest.mark.parametrize("spec, message", [
    ("fine", "layers 8\\+, but this generator has 6 layers"), ("0-6", "\\[6\\] do not exist"),
    ("bottom", "not a non-negative integer"), ("", "empty styles spec"),
])
def test_bad_styles(spec, message):
    with pytest.raises(SpecError, match=message):
        style_layers(spec, 6)
