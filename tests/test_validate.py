"""msgen.validate: every bound in one place, at its edges, and every front end reading it."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import msgen
from msgen import validate as V
from msgen.models import families


def test_seed_bounds_hold_at_both_edges():
    assert V.SEED_MAX == 2**32 - 1 == msgen.SEED_MAX
    assert V.seed(0) == 0 and V.seed(V.SEED_MAX) == V.SEED_MAX and V.seed("7") == 7 and V.seed(None, default=3) == 3
    for bad in (-1, V.SEED_MAX + 1, 1.5, "x", True, None, [1], float("nan"), float("inf")):
        with pytest.raises(ValueError, match="seed"):
            V.seed(bad)
    assert V.check_seed(V.SEED_MAX) == V.SEED_MAX and V.check_seed(np.int64(5)) == 5 and V.check_seed(4.0) == 4
    for bad in (-1, V.SEED_MAX + 1, 2.7, "3", True, None):
        with pytest.raises(ValueError, match=f"seed must be a whole number from 0 to {V.SEED_MAX}"):
            V.check_seed(bad)


def test_consecutive_seeds_wrap_past_the_bound():
    assert [V.seed_at(V.SEED_MAX - 1, i) for i in range(4)] == [V.SEED_MAX - 1, V.SEED_MAX, 0, 1]


def test_whole_and_real_refuse_what_a_stranger_may_send():
    assert V.whole(np.int64(3), "x", 0, 5) == 3 and V.whole("4.0", "x", 0, 5) == 4 and V.whole(5, "x", 0, 5) == 5
    for bad in (6, -1, 3.5, "x", "", True, [1], {"a": 1}, float("nan"), 2**2000):
        with pytest.raises(ValueError, match="x (must be|is required)"):
            V.whole(bad, "x", 0, 5)
    assert V.real("0.5", "t", 0, 1) == 0.5 and V.real(None, "t", 0, 1, default=0.25) == 0.25
    for bad in (1.01, -0.1, float("nan"), float("inf"), "nope", False, [0.5]):
        with pytest.raises(ValueError, match="t (must be|is required)"):
            V.real(bad, "t", 0, 1)
    assert "20,000" in str(pytest.raises(ValueError, V.whole, 20_001, "steps", 1, 20_000).value)


def test_counts_and_sizes():
    assert V.samples(1) == 1 and V.samples(V.MAX_SAMPLES) == V.MAX_SAMPLES
    for bad in (0, V.MAX_SAMPLES + 1, 2.0, "3", True):
        with pytest.raises(ValueError, match=f"n must be a whole number from 1 to {V.MAX_SAMPLES}"):
            V.samples(bad)
    assert [V.resolution(r) for r in V.RESOLUTIONS] == list(V.RESOLUTIONS) and V.resolution(None) == 32
    for bad in (24, 256, 0, 10**9, "big"):
        with pytest.raises(ValueError, match="resolution"):
            V.resolution(bad)
    assert V.text(None, "name") == "" and V.text("a" * V.NAME_MAX, "name")
    with pytest.raises(ValueError, match=f"at most {V.NAME_MAX} characters"):
        V.text("a" * (V.NAME_MAX + 1), "name")
    with pytest.raises(ValueError, match="must be text"):
        V.text(["a"], "name")


def test_truncation_ranges_and_starts_are_each_familys_own():
    for name, fam in families().items():
        lo, hi = V.truncation_range(name)
        assert (lo, hi) == tuple(fam.ui.truncation_range) and lo <= V.default_truncation(name) <= hi
        assert V.default_truncation(name) == fam.ui.default_truncation
        assert V.truncation(hi, name) == hi
        with pytest.raises(ValueError, match="temperature must be a number"):
            V.truncation(hi + 0.01, name, "temperature")
    assert V.truncation_range("no-such-family") == V.truncation_range(None)


def test_every_tab_reads_a_familys_temperatures_from_its_record():
    from msgen.models import get_family
    from msgen.ui import decompose_handlers as DH
    from msgen.ui import generate as G

    for name in families():
        hints = get_family(name).ui
        assert G.truncation_of(name)[0] == V.default_truncation(name) == hints.default_truncation
        resample = hints.default_truncation if hints.resample_temperature is None else hints.resample_temperature
        assert DH.default_temperature(name) == V.resample_temperature(name) == resample
    assert V.resample_temperature("hvae") == 0.8 and V.default_truncation("hvae") == 0.7  # two uses, one record


def test_the_api_docs_and_the_python_api_read_the_bounds():
    from msgen.ui import apidocs

    assert str(V.SEED_MAX) in apidocs.PARAMS["seed"] and str(V.SEED_MAX) in apidocs.PARAMS["mix_seed"]
    assert str(V.WALK_FRAMES[1]) in apidocs.PARAMS["frames"]
    assert all(str(r) in apidocs.PARAMS["resolution"] for r in V.RESOLUTIONS)
    gen = torch.nn.Linear(1, 1)  # refused before the model is touched
    with pytest.raises(ValueError, match=f"n must be a whole number from 1 to {V.MAX_SAMPLES}"):
        msgen.generate(gen, n=V.MAX_SAMPLES + 1)
    with pytest.raises(ValueError, match="seed must be a whole number"):
        msgen.generate(gen, seed=V.SEED_MAX + 1)


def test_the_cli_refuses_out_of_range_seeds_and_counts(capsys):
    from msgen.__main__ import main

    for argv in (["generate", "--seed", str(V.SEED_MAX + 1)], ["generate", "--n", "0"],
                 ["generate", "--n", str(V.MAX_SAMPLES + 1)]):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"0 to {V.SEED_MAX}" in err and f"1 to {V.MAX_SAMPLES}" in err and "Traceback" not in err
    assert not math.isnan(V.default_truncation())
