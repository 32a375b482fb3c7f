"""Properties of RoPE and Dynamic NTK over random inputs, beyond the notebooks' fixed examples."""

import math, pytest, torch
from hypothesis import given, settings, strategies as st
from nomic_repro.core import assert_close
from nomic_repro.rope import RotaryEmbedding, apply_rotary, rotary_cos_sin, rotate_half
from nomic_repro.ntk import DynamicNTKRotaryEmbedding, dynamic_ntk_base, dynamic_ntk_inv_freq

dims = st.sampled_from([2, 8, 32, 64, 128])


def rot(x, pos, base=1000.0):
    c, s = rotary_cos_sin(
        len(pos), x.shape[-1], base, positions=pos, dtype=x.dtype, compute_dtype=torch.float64
    )
    return apply_rotary(x, c, s)


@settings(max_examples=40, deadline=None)
@given(
    dims,
    st.integers(0, 8191),
    st.integers(0, 8191),
    st.integers(-4000, 4000),
    st.floats(10, 1e5),
    st.integers(0, 2**31 - 1),
)
def test_score_depends_only_on_offset(d, m, n, shift, base, seed):
    g = torch.Generator().manual_seed(seed)
    q, k = (
        torch.randn(1, 1, d, generator=g, dtype=torch.float64),
        torch.randn(1, 1, d, generator=g, dtype=torch.float64),
    )
    pm, pn = torch.tensor([m]), torch.tensor([n])
    s0 = (rot(q, pm, base) * rot(k, pn, base)).sum()
    s1 = (rot(q, pm + shift, base) * rot(k, pn + shift, base)).sum()
    assert_close(s1, s0, rtol=1e-8, atol=1e-8)
    assert_close(rot(q, pm, base).norm(), q.norm(), rtol=1e-12, atol=1e-12)


@settings(max_examples=20, deadline=None)
@given(dims, st.integers(1, 300))
def test_rotate_half_is_a_quarter_turn(d, seed):
    x = torch.randn(3, 2, d, generator=torch.Generator().manual_seed(seed))
    assert_close(rotate_half(rotate_half(x)), -x)
    assert_close((x * rotate_half(x)).sum(-1), torch.zeros(3, 2), atol=1e-5, rtol=0)  # orthogonal


def test_position_zero_is_identity_and_packed_layout():
    x = torch.randn(5, 3, 64)
    c, s = rotary_cos_sin(5, 64)
    assert_close(apply_rotary(x, c, s)[0], x[0])
    batched = apply_rotary(
        x[None].expand(2, 5, 3, 64), c, s
    )  # [B, S, H, D] with a shared [S, D] table
    assert_close(batched[1], apply_rotary(x, c, s))


@settings(max_examples=60, deadline=None)
@given(
    st.integers(0, 65536),
    st.integers(1, 8192),
    st.floats(0.5, 8),
    st.sampled_from([16, 64, 128]),
    st.floats(100, 1e5),
)
def test_ntk_base_formula(L, L0, alpha, d, b):
    got = dynamic_ntk_base(L, base=b, dim=d, max_trained=L0, alpha=alpha)
    want = b if L <= L0 else b * (alpha * L / L0 - (alpha - 1)) ** (d / (d - 2))
    assert math.isclose(got, want, rel_tol=1e-12)
    if L > L0 and alpha >= 1:
        assert got >= b  # scaling only ever enlarges the base for alpha >= 1


def test_ntk_slowest_wavelength_stretch():
    for L in (2049, 3000, 4096, 8192, 16384):
        s = 2 * L / 2048 - 1
        ratio = (dynamic_ntk_inv_freq(2048)[-1] / dynamic_ntk_inv_freq(L)[-1]).item()
        assert math.isclose(ratio, s, rel_tol=1e-5), (L, ratio, s)


def test_ntk_module_is_stateless_and_matches_plain_rope_below_l0():
    ntk, plain = DynamicNTKRotaryEmbedding(64), RotaryEmbedding(64)
    for L in (8192, 100, 4096, 2048, 3000, 100):
        c, s = ntk(L)
        ref = RotaryEmbedding(64, base=dynamic_ntk_base(L))(L)
        assert_close(c, ref[0])
        assert_close(s, ref[1])
        if L <= 2048:
            assert_close(c, plain(L)[0])


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: dynamic_ntk_base(10, max_trained=0), "max_trained"),
        (lambda: dynamic_ntk_base(10, dim=7), "dim"),
        (lambda: dynamic_ntk_base(-1), "seq_len"),
        (lambda: rotary_cos_sin(4, 0), "dim=0"),
        (lambda: RotaryEmbedding(64)(-3), "seq_len"),
        (lambda: apply_rotary(torch.zeros(4, 64), *rotary_cos_sin(4, 64)), "must be"),
        # moved from the notebooks' failure-contract cells (one example per contract stays there)
        (lambda: rotary_cos_sin(8, 63), "dim=63"),
        (
            lambda: apply_rotary(torch.randn(8, 2, 64), torch.ones(8, 64), torch.ones(4, 64)),
            "differ in shape",
        ),
        (lambda: RotaryEmbedding(64, base=0), "base must be positive"),
        (lambda: dynamic_ntk_base(4096, max_trained=-5), "got -5"),
        (lambda: dynamic_ntk_base(4096, alpha=0), "alpha"),
        (lambda: DynamicNTKRotaryEmbedding(64, max_trained=0), "max_trained"),
    ],
)
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()
