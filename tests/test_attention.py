"""Error messages of the attention references and the padded/packed helpers, beyond the one case per contract
that `nbs/03_attention.ipynb` shows."""

import pytest, torch
from nomic_repro.attention import (
    attention_naive,
    attention_varlen_ref,
    pad,
    unpad,
    cu_seqlens_from_lengths,
)

S, H, D = 8, 2, 16
q, k, v = torch.randn(3, 3, S, H, D).unbind(0)
mask = torch.arange(S)[None] < torch.tensor([8, 4, 5])[:, None]
qp, idx, cu, _ = unpad(q, mask)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: attention_naive(q, k, v, mask.float()), "bool or 0/1 integers"),
        (lambda: attention_naive(q, k, v, mask.int() * 2), "bool or 0/1 integers"),
        (lambda: attention_naive(q[0], k[0], v[0]), r"\[batch, seq, heads, head_dim\]"),
        (lambda: attention_naive(q, k, v.double()), "share a dtype"),
        (lambda: attention_varlen_ref(qp, qp, qp, cu.flip(0)), "start at 0"),
        (
            lambda: attention_varlen_ref(
                qp, qp, qp, torch.tensor([0, 9, 4, 17], dtype=torch.int32)
            ),
            "non-decreasing",
        ),
        (lambda: attention_varlen_ref(qp, qp, qp, cu[:1]), "1-D tensor"),
        (lambda: pad(qp, idx[:-1], *mask.shape), "indices has"),
        (lambda: unpad(torch.zeros(4), torch.ones(1, 4, dtype=torch.bool)), "must be"),
        (lambda: cu_seqlens_from_lengths([3, -1]), "non-negative"),
    ],
)
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_int_mask_is_accepted():
    torch.testing.assert_close(attention_naive(q, k, v, mask.int()), attention_naive(q, k, v, mask))
