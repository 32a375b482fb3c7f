"""`assert_close` is the comparison every lesson relies on: it must fail whenever it should."""

import pytest, torch
from hypothesis import given, settings, strategies as st
from nomic_repro.core import assert_close, get_dtype, seed_everything, sizes, show


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.integers(1, 4), min_size=1, max_size=3),
    st.lists(st.integers(1, 4), min_size=1, max_size=3),
)
def test_any_shape_mismatch_fails(s1, s2):
    a, b = torch.zeros(s1), torch.zeros(s2)
    if tuple(s1) == tuple(s2):
        assert_close(a, b)
    else:
        with pytest.raises(AssertionError, match="shape mismatch"):
            assert_close(a, b)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_tolerance_scales_with_dtype(dtype):
    x = torch.linspace(
        1000, 2000, 100, dtype=torch.float64
    )  # large enough that atol does not matter
    eps = torch.finfo(dtype).eps
    rtol = {
        torch.float16: 1e-3,
        torch.bfloat16: 1.6e-2,
        torch.float32: 1.3e-6,
        torch.float64: 1e-7,
    }[dtype]
    assert_close((x * (1 + eps / 4)).to(dtype), x.to(dtype))  # below one ulp: passes
    with pytest.raises(AssertionError, match="not close"):
        assert_close((x * (1 + 4 * rtol)).to(dtype), x.to(dtype))  # 4x the dtype's tolerance: fails


def test_integers_are_exact_and_report_errors():
    with pytest.raises(AssertionError, match="1 of 3 elements differ"):
        assert_close(torch.tensor([1, 2, 3]), torch.tensor([1, 2, 4]))
    rep = assert_close(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 2.0 + 1e-6]))
    assert 0 < rep.max_abs < 2e-6 and 0 < rep.max_rel < 1e-6


def test_inf_and_nan():
    inf = torch.tensor([float("inf")])
    assert_close(inf, inf.clone())
    with pytest.raises(AssertionError):
        assert_close(inf, -inf)
    with pytest.raises(AssertionError):
        assert_close(torch.tensor([float("nan")]), torch.tensor([0.0]))


def test_seed_and_sizes():
    seed_everything(3)
    a = torch.rand(4)
    seed_everything(3)
    assert torch.equal(a, torch.rand(4))
    with pytest.raises(TypeError):
        seed_everything("3")
    assert sizes().hidden == sizes("test").hidden  # pytest counts as "under test"
    with pytest.raises(ValueError, match="unknown dtype"):
        get_dtype("int4")


def test_show_caps_and_validates():
    import numpy as np, plotly.graph_objects as go

    fig = go.Figure(go.Scatter(x=np.arange(10_001), y=np.random.rand(10_001)))
    show(fig, max_points=1000, renderer="json")
    assert len(fig.data[0].x) <= 1000 and fig.layout.height == 420
    with pytest.raises(ValueError, match="max_points"):
        show(fig, max_points=1)
