"""A seeded Rademacher random projection, generated blockwise so the D x d matrix need never be whole.

GradEx (``reference/politune-w2s-gradex-distillation.md`` §C.1 step 2)
projects each per-sample gradient ``g_i in R^D`` to ``z_i = g_i^T P in R^d``
with ``P_jk = +-1/sqrt(d)`` (Rademacher). The reference draws the whole
matrix with ``np.random.seed(run)``; for a LoRA adapter of a 7B model, ``D``
is tens of millions, so we define ``P`` block by block instead: the rows
``[b * G, (b + 1) * G)`` come from a generator seeded with ``(seed, b)``
(``G`` = :data:`GENERATION_ROWS`, fixed). Row ``j`` therefore depends only on
``(seed, j, d)``: the same seed gives the same matrix whatever chunk size a
caller processes it in, whatever the batch boundaries, on any machine, and a
shorter ``D`` gives a prefix of a longer one. The matrix is *not* the one the
reference's ``np.random.seed`` would draw; only its distribution matches.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from demoscope.errors import ConfigError

# Rows per independently seeded block. Part of the matrix's definition: changing
# it changes every projection ever stored, so it is a constant, not an option.
GENERATION_ROWS = 4096
# Keep the whole matrix in memory when it is at most this big (float32 bytes).
DEFAULT_CACHE_BYTES = 256 * 2**20


class RademacherProjection:
    """``P in R^{dim_in x dim_out}``, entries ``+-1/sqrt(dim_out)``, defined by ``seed``.

    ``chunk_rows`` bounds memory while projecting (rows of ``P`` generated at
    a time; best a multiple of :data:`GENERATION_ROWS`, else blocks that
    straddle two chunks are generated twice); it never changes the result. Up to ``cache_bytes`` of matrix is
    kept after first use, so repeated projections of small adapters do not
    regenerate it; bigger matrices are regenerated per call, block by block.
    """

    def __init__(
        self,
        dim_in: int,
        dim_out: int = 200,
        seed: int = 0,
        chunk_rows: int = 16 * GENERATION_ROWS,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
    ):
        if dim_in < 1 or dim_out < 1:
            raise ConfigError(f"projection dims must be positive, got dim_in={dim_in}, dim_out={dim_out}")
        if seed < 0:
            raise ConfigError(f"projection seed must be >= 0, got {seed}")
        if chunk_rows < 1:
            raise ConfigError(f"chunk_rows must be positive, got {chunk_rows}")
        self.dim_in, self.dim_out, self.seed = int(dim_in), int(dim_out), int(seed)
        self.chunk_rows = int(chunk_rows)
        self.cache_bytes = int(cache_bytes)
        self._cache: np.ndarray | None = None

    # -- definition of the matrix -------------------------------------------------
    def generation_block(self, index: int) -> np.ndarray:
        """Rows ``[index*G, (index+1)*G)`` of the (unbounded) matrix, float32 ``[G, dim_out]``."""
        # One bit per entry from PCG64's raw 64-bit stream, which NumPy keeps stable
        # across versions (Generator methods such as integers() may change), so
        # projections stored today can be regenerated later.
        count = GENERATION_ROWS * self.dim_out
        bit_generator = np.random.PCG64(np.random.SeedSequence([self.seed, int(index)]))
        raw = bit_generator.random_raw((count + 63) // 64).astype("<u8")
        bits = np.unpackbits(raw.view(np.uint8))[:count]
        signs = bits.astype(np.float32).reshape(GENERATION_ROWS, self.dim_out) * 2.0 - 1.0
        return signs * np.float32(1.0 / np.sqrt(self.dim_out))

    def rows(self, start: int, stop: int) -> np.ndarray:
        """Rows ``[start, stop)`` of ``P`` as float32 ``[stop - start, dim_out]``."""
        if not 0 <= start <= stop <= self.dim_in:
            raise ValueError(f"rows [{start}, {stop}) outside [0, {self.dim_in})")
        if self._cache is not None:
            return self._cache[start:stop]
        if stop == start:
            return np.zeros((0, self.dim_out), np.float32)
        first, last = start // GENERATION_ROWS, (stop - 1) // GENERATION_ROWS
        blocks = np.concatenate([self.generation_block(b) for b in range(first, last + 1)])
        offset = first * GENERATION_ROWS
        return blocks[start - offset: stop - offset]

    def matrix(self) -> np.ndarray:
        """The whole ``[dim_in, dim_out]`` matrix (for small ``dim_in``; cached when it fits ``cache_bytes``)."""
        if self._cache is not None:
            return self._cache
        full = self.rows(0, self.dim_in)
        if full.nbytes <= self.cache_bytes:
            self._cache = full
        return full

    def _chunks(self):
        """``(start, stop, rows)`` over ``P`` in chunks of ``chunk_rows`` (or the cached whole)."""
        if self._cache is None and self.dim_in * self.dim_out * 4 <= self.cache_bytes:
            self.matrix()
        if self._cache is not None:
            yield 0, self.dim_in, self._cache
            return
        for start in range(0, self.dim_in, self.chunk_rows):
            stop = min(start + self.chunk_rows, self.dim_in)
            yield start, stop, self.rows(start, stop)

    # -- use ----------------------------------------------------------------------
    def project(self, grads):
        """``grads @ P``: ``[n, dim_in] -> [n, dim_out]`` (a 1-D ``[dim_in]`` gives ``[dim_out]``).

        Accepts a NumPy array (returns float32 NumPy) or a torch tensor
        (returns a float32 tensor on the same device). Computed chunk by chunk
        over the rows of ``P``, in torch either way: mixing OpenBLAS's thread
        pool with torch's makes both crawl on a busy CPU.
        """
        import torch

        numpy_in = not _is_torch(grads)
        x = torch.from_numpy(np.asarray(grads, dtype=np.float32)) if numpy_in else grads.detach().float()
        single = x.ndim == 1
        x = x[None] if single else x
        if x.shape[-1] != self.dim_in:
            raise ValueError(f"gradients have {x.shape[-1]} columns, projection expects dim_in={self.dim_in}")
        out = torch.zeros(x.shape[0], self.dim_out, dtype=torch.float32, device=x.device)
        for start, stop, p in self._chunks():
            out += x[:, start:stop] @ torch.from_numpy(p).to(x.device)
        out = out[0] if single else out
        return out.numpy() if numpy_in else out

    def back_project(self, coef):
        """``P @ coef``: ``[dim_out] -> [dim_in]`` (or ``[k, dim_out] -> [k, dim_in]``), chunk by chunk.

        This maps a solution found in projected space back to parameter space
        (the reference's ``project_matrix @ clf.coef_``). NumPy in, float32 NumPy out.
        """
        import torch

        w = torch.from_numpy(np.asarray(coef, dtype=np.float32))
        single = w.ndim == 1
        w = w[None] if single else w
        if w.shape[-1] != self.dim_out:
            raise ValueError(f"coefficients have {w.shape[-1]} entries, projection has dim_out={self.dim_out}")
        out = torch.empty(w.shape[0], self.dim_in, dtype=torch.float32)
        for start, stop, p in self._chunks():
            out[:, start:stop] = w @ torch.from_numpy(p).T
        out = out.numpy()
        return out[0] if single else out

    # -- identity -----------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """What defines the matrix (stored beside projected gradients)."""
        return {"kind": "rademacher", "dim_in": self.dim_in, "dim_out": self.dim_out, "seed": self.seed,
                "generation_rows": GENERATION_ROWS}

    @classmethod
    def from_dict(cls, data: dict[str, Any], **kwargs) -> RademacherProjection:
        """Rebuild from :meth:`to_dict`; refuses a matrix generated with another block layout."""
        if data.get("kind") != "rademacher" or data.get("generation_rows") != GENERATION_ROWS:
            raise ConfigError(f"projection {data} was not made by this RademacherProjection "
                              f"(generation_rows={GENERATION_ROWS})")
        return cls(data["dim_in"], data["dim_out"], data["seed"], **kwargs)

    def __getstate__(self):
        # Ray ships this object to workers: send the definition, not a cached matrix.
        state = self.__dict__.copy()
        state["_cache"] = None
        return state

    def __repr__(self) -> str:
        return f"RademacherProjection(dim_in={self.dim_in}, dim_out={self.dim_out}, seed={self.seed})"


def _is_torch(x) -> bool:
    return type(x).__module__.startswith("torch")
