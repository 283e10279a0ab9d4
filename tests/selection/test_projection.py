"""The blockwise Rademacher projection: reproducible, +-1/sqrt(d), inner products roughly kept (JL)."""

import pickle

import numpy as np
import pytest
import torch

from demoscope.errors import ConfigError
from demoscope.selection.projection import GENERATION_ROWS, RademacherProjection

D = 2 * GENERATION_ROWS + 123  # three generation blocks, the last one partial


def test_same_seed_same_matrix_whatever_the_chunking_and_caching():
    grads = np.random.default_rng(0).standard_normal((7, D)).astype(np.float32)
    reference = RademacherProjection(D, 32, seed=5).project(grads)
    whole = RademacherProjection(D, 32, seed=5).matrix()
    for chunk_rows in (7, 1000, GENERATION_ROWS, 3 * GENERATION_ROWS):
        uncached = RademacherProjection(D, 32, seed=5, chunk_rows=chunk_rows, cache_bytes=0)
        # Only the float32 summation order differs between chunkings.
        np.testing.assert_allclose(uncached.project(grads), reference, rtol=1e-4, atol=1e-4)
        np.testing.assert_array_equal(np.concatenate([rows for _, _, rows in uncached._chunks()]), whole)
        assert uncached._cache is None  # really went block by block
    # Rows asked for in odd slices agree with the whole matrix.
    projection = RademacherProjection(D, 32, seed=5, cache_bytes=0)
    np.testing.assert_array_equal(projection.rows(4000, 4200), whole[4000:4200])
    np.testing.assert_array_equal(projection.rows(D - 3, D), whole[D - 3:])
    # Batch boundaries do not matter either.
    np.testing.assert_allclose(np.concatenate([projection.project(grads[:3]), projection.project(grads[3:])]),
                               reference, rtol=1e-4, atol=1e-4)


def test_matrix_depends_on_seed_and_a_shorter_one_is_a_prefix():
    a = RademacherProjection(D, 16, seed=1).matrix()
    assert not np.array_equal(a, RademacherProjection(D, 16, seed=2).matrix())
    np.testing.assert_array_equal(RademacherProjection(5000, 16, seed=1).matrix(), a[:5000])


def test_entries_are_plus_minus_one_over_sqrt_d_and_balanced():
    d = 50
    matrix = RademacherProjection(D, d, seed=0).matrix()
    assert matrix.shape == (D, d) and matrix.dtype == np.float32
    np.testing.assert_allclose(np.abs(matrix), 1 / np.sqrt(d), rtol=1e-6)
    assert abs((matrix > 0).mean() - 0.5) < 0.01


def test_inner_products_and_norms_are_roughly_preserved():
    d, dim = 400, 20_000
    rng = np.random.default_rng(1)
    x = rng.standard_normal((20, dim)).astype(np.float32)
    x[10:] += x[:10]  # correlated pairs, so some inner products are large
    z = RademacherProjection(dim, d, seed=7).project(x)
    norms, norms_z = np.linalg.norm(x, axis=1), np.linalg.norm(z, axis=1)
    assert np.abs(norms_z / norms - 1).max() < 0.2
    gram, gram_z = x @ x.T, z @ z.T
    scale = np.outer(norms, norms)
    error = np.abs(gram_z - gram) / scale
    # JL: error of order 1/sqrt(d) = 0.05 relative to ||x|| ||y||.
    assert error.max() < 0.25 and error.mean() < 0.06
    # A projection that ignored the input would fail this.
    assert np.corrcoef(gram[np.triu_indices(20, 1)], gram_z[np.triu_indices(20, 1)])[0, 1] > 0.95


def test_back_projection_is_the_transpose():
    projection = RademacherProjection(D, 24, seed=3, chunk_rows=1500, cache_bytes=0)
    rng = np.random.default_rng(2)
    w, g = rng.standard_normal(24), rng.standard_normal(D)
    back = projection.back_project(w)
    np.testing.assert_allclose(back, projection.matrix() @ w, rtol=1e-4, atol=1e-5)
    # <g, P w> == <P^T g, w>
    assert float(g @ back) == pytest.approx(float(projection.project(g) @ w), rel=1e-4)


def test_torch_input_stays_torch():
    projection = RademacherProjection(300, 8, seed=0)
    grads = torch.randn(4, 300)
    out = projection.project(grads)
    assert isinstance(out, torch.Tensor) and out.shape == (4, 8)
    np.testing.assert_allclose(out.numpy(), projection.project(grads.numpy()), rtol=1e-5, atol=1e-6)


def test_identity_round_trip_pickle_and_errors():
    projection = RademacherProjection(D, 16, seed=9)
    projection.matrix()
    again = RademacherProjection.from_dict(projection.to_dict())
    np.testing.assert_array_equal(again.matrix(), projection.matrix())
    shipped = pickle.loads(pickle.dumps(projection))
    assert shipped._cache is None and np.array_equal(shipped.matrix(), projection.matrix())
    with pytest.raises(ConfigError):
        RademacherProjection.from_dict({**projection.to_dict(), "generation_rows": 7})
    with pytest.raises(ValueError, match="dim_in"):
        projection.project(np.zeros((2, D + 1)))
    with pytest.raises(ConfigError):
        RademacherProjection(0, 4)
