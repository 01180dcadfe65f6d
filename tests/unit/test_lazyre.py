import re

from ctr import lazyre


def test_a_lazy_pattern_is_compiled_at_its_first_use_and_acts_as_one():
    pat = lazyre.compile(r"(\d+)([a-z]?)", re.IGNORECASE)
    assert pat._compiled is None
    assert pat.fullmatch("12K").groups() == ("12", "K")
    assert isinstance(pat._compiled, re.Pattern)
    assert pat.pattern == r"(\d+)([a-z]?)" and pat.flags & re.IGNORECASE
    assert pat.match("x") is None
    assert pat.sub("#", "a1-22") == "a#-#"


def test_the_start_path_compiles_no_pattern_at_import():
    import ctr.images.config
    import ctr.images.reference
    import ctr.spec.parse

    for mod in (ctr.spec.parse, ctr.images.reference, ctr.images.config):
        assert not [n for n, v in vars(mod).items() if isinstance(v, re.Pattern)], mod
