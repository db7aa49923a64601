"""Window features updated in O(1) amortised per reading: the streaming twin of `shared.features.extract`.

The stream is cut into blocks of ``size`` readings aligned to its first reading. A window of ``size`` readings
ending inside block ``b`` is the tail of block ``b-1`` plus the head of block ``b`` (van Herk / Gil-Werman), so
each of its sums, its min and its max is one suffix value of the previous block combined with one prefix value of
the current one: prefixes grow by one reading at a time and suffixes are computed once per block, O(1) a reading.
Nothing is ever subtracted from a running total, so float error never builds up along the stream (every sum covers
at most one block, like the window's own, and needs no periodic recompute). Sums are of ``x - K``, ``K`` the first
reading of a block, so large offsets cancel exactly. A window whose spread is too small for those sums to give
``std`` or ``slope`` to float32 precision (a float64 error bound checked per window, 16x finer than float32
rounding) is recomputed with `extract` itself, and a constant sensor gets its exact features. So the features equal
`extract`'s to float32 rounding (tests/shared/test_streaming.py), and do not depend on how readings were batched
(bit for bit). A batch spanning many blocks is a handful of numpy calls whatever its length.

>>> import numpy as np
>>> state = WindowState(size=3, step=1, width=2)
>>> [state.push(np.array([v, 10.0])) is None for v in (1.0, 2.0)]
[True, True]
>>> state.push(np.array([3.0, 10.0])).astype(float).round(3).tolist()
[2.0, 0.816, 1.0, 3.0, 3.0, 1.0, 10.0, 0.0, 10.0, 10.0, 10.0, 0.0]
"""

from __future__ import annotations

import math
import sys

import numpy as np

from shared.features import STATS, extract

_EPS = float(np.finfo(np.float64).eps)
# A window is recomputed with `extract` when the float64 error bound of its variance or slope exceeds this share of
# the value: 2^-28 is 16x finer than float32 rounding (2^-24), so the float32 features agree to rounding.
_SAFE = 2.0**-28
def _frozen(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


_LITTLE = sys.byteorder == "little"  # block arrays are native float64: their bytes are already "<f8"
_ZERO = _frozen(np.zeros(1, dtype=np.intp))  # `push_one`'s Emitted.ends and block_of: shared, read-only
_N_SUMS = 3  # sum of d, of d^2 and of r * d, with d = x - anchor and r the index in the block


_Lists = tuple[list[float], list[float]]


class _Block:
    """One block: its anchor, readings and times, and its suffix accumulations once it is complete.

    Suffix arrays have ``size + 1`` rows: row r accumulates local r..size-1, the last row is the empty one
    (0, +inf, -inf), which a window lying wholly in the next block reads.
    """

    __slots__ = ("anchor", "hi", "lists", "lo", "own", "rows", "sums", "times")

    def __init__(self, anchor: np.ndarray, rows: np.ndarray, times: np.ndarray, sums: np.ndarray | None = None,
                 lo: np.ndarray | None = None, hi: np.ndarray | None = None) -> None:
        self.anchor, self.rows, self.times = anchor, rows, times
        size, width = rows.shape
        self.sums = np.zeros((_N_SUMS, size + 1, width)) if sums is None else sums
        self.lo = np.full((size + 1, width), np.inf) if lo is None else lo
        self.hi = np.full((size + 1, width), -np.inf) if hi is None else hi
        self.lists: _Lists | None = None  # anchor and times as Python floats, for `WindowState.push_one`
        self.own = False  # its arrays are its own, not views of a batch's: `WindowState._roll` may reuse them

    @classmethod
    def empty(cls, size: int, width: int) -> _Block:
        block = cls(np.zeros(width), np.zeros((size, width)), np.zeros(size))
        block.own = True
        return block


class Emitted:
    """The windows one `WindowState.push_many` call completed: which input rows end them, their features, and
    (on demand) their readings and times. Valid until the next push."""

    def __init__(self, ends: np.ndarray, features: np.ndarray, starts: np.ndarray,
                 blocks: list[tuple[np.ndarray, np.ndarray]], block_of: np.ndarray, local: np.ndarray) -> None:
        self.ends = ends  # indices into the pushed rows
        self.features = features  # (len(ends), width * 6) float32
        self.starts = starts  # time of each window's first reading (float64)
        self._blocks, self._block_of, self._local = blocks, block_of, local

    def __len__(self) -> int:
        return len(self.ends)

    def window(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Times ``(size,)`` and readings ``(size, width)`` of window `i` (fresh arrays)."""
        b, r = int(self._block_of[i]), int(self._local[i])
        (t0, x0), (t1, x1) = self._blocks[b], self._blocks[b + 1]
        return np.concatenate((t0[r + 1 :], t1[: r + 1])), np.concatenate((x0[r + 1 :], x1[: r + 1]))

    def window_bytes(self, i: int) -> tuple[bytes, bytes]:
        """`window(i)` as little-endian float64 bytes, times then readings (row-major): what the agent keeps of an
        alarm window, without building the arrays first (half the cost)."""
        if not _LITTLE:
            times, readings = self.window(i)
            return times.astype("<f8").tobytes(), readings.astype("<f8").tobytes()
        b, r = int(self._block_of[i]), int(self._local[i])
        (t0, x0), (t1, x1) = self._blocks[b], self._blocks[b + 1]
        return t0[r + 1 :].tobytes() + t1[: r + 1].tobytes(), x0[r + 1 :].tobytes() + x1[: r + 1].tobytes()


class WindowState:
    """The streaming features of one unit's readings: push readings, get the features of each window that ends.

    Windows are ``size`` readings long and due every ``step`` readings once ``max(size, step)`` have arrived (the
    agent's rule); features are `extract`'s: float32, ``width * 6`` of them, sensor-major.
    """

    def __init__(self, size: int, step: int, width: int) -> None:
        if size < 2 or step < 1 or width < 1:
            raise ValueError("a window needs size >= 2, step >= 1 and at least one sensor")
        self.size, self.step, self.width = size, step, width
        self.count = 0  # readings pushed
        self._next_due = max(size, step) - 1  # index of the reading that ends the next window
        self._prev = _Block.empty(size, width)  # the last complete block (suffixes; at first, an empty one)
        self._cur = _Block.empty(size, width)  # the block being filled (its prefixes are carried below)
        self._carry = np.zeros((_N_SUMS, width))
        self._carry_lo = np.full(width, np.inf)
        self._carry_hi = np.full(width, -np.inf)
        self._py: list[list[float]] | None = None  # the carry as lists while `push_one` feeds the state
        self._r = np.arange(size, dtype=np.float64)[:, None]
        self._terms = np.empty((_N_SUMS, size, width))  # `_suffix`'s scratch
        self._locals = [_frozen(np.array([r], dtype=np.intp)) for r in range(size)]  # `push_one`'s Emitted.local
        self._tbar = (size - 1) / 2.0
        self._tt = size * (size * size - 1) / 12.0  # sum of (t - tbar)^2 over a window

    def push(self, row: np.ndarray, ts: float = 0.0) -> np.ndarray | None:
        """Add one reading (``width`` floats); return the ``(width * 6,)`` float32 features if a window ends here."""
        out = self.push_one(row, ts)
        return out.features[0] if out is not None else None

    def push_one(self, row: np.ndarray, ts: float = 0.0, values: list[float] | None = None) -> Emitted | None:
        """Add one reading; return the window it ends (an `Emitted` of one), else None.

        What `push_many` does for one row, bit for bit, but in Python floats: a live agent gets its readings one at a
        time, and numpy's per-call overhead on ``width``-long vectors costs more than the arithmetic. The carried
        prefixes live in Python lists until the next `push_many` (see `_carried`); the previous block's suffixes are
        read a row at a time. ``min``/``max`` mirror numpy's ``minimum``/``maximum`` (which return the
        second operand on a tie, so signed zeros come out the same). `values`, when given, is `row` as a list of
        floats, and `row` a float64 array of ``width`` (the caller has both: nothing is converted or checked)."""
        if values is None:
            xs = np.asarray(row, dtype=np.float64)
            if xs.shape != (self.width,):
                raise ValueError(f"expected {self.width} readings, got shape {xs.shape}")
            x: list[float] = xs.tolist()
        else:
            xs, x = row, values
        size, local, cur = self.size, self.count % self.size, self._cur
        carried = self._py if self._py is not None else self._carried()
        c0, c1, c2, clo, chi, anchor = carried
        if local == 0:
            cur.anchor = xs.copy()
            anchor[:] = x
        cur.rows[local] = xs
        cur.times[local] = ts
        r = float(local)
        for j, v in enumerate(x):
            d = v - anchor[j]
            c0[j] += d
            c1[j] += d * d
            c2[j] += d * r
            if not clo[j] < v:
                clo[j] = v
            if not chi[j] > v:
                chi[j] = v
        out = None
        if self.count == self._next_due:
            self._next_due += self.step
            out = self._one_window(local + 1, x, c0, c1, c2, clo, chi, anchor)
        self.count += 1
        if local == size - 1:
            self._suffix(cur)
            self._roll(cur, lists=True)
        return out

    def _carried(self) -> list[list[float]]:
        """The carried prefixes and the current block's anchor as Python lists (authoritative until `push_many`)."""
        carry = self._carry.tolist()
        self._py = [carry[0], carry[1], carry[2], self._carry_lo.tolist(), self._carry_hi.tolist(),
                    self._cur.anchor.tolist()]
        return self._py

    def _one_window(self, e: int, x: list[float], c0: list[float], c1: list[float], c2: list[float],
                    clo: list[float], chi: list[float], anchor: list[float]) -> Emitted:
        """`_features` for the one window whose current-block part ends at local ``e - 1``: the same operations in
        the same order, on Python floats."""
        size, prev, cur = self.size, self._prev, self._cur
        if prev.lists is None:
            prev.lists = (prev.anchor.tolist(), prev.times.tolist())
        panchor, ptimes = prev.lists
        # this window's row of the suffixes only: converting whole blocks at once made every block's first window
        # the slowest (a latency spike once a block, not a cost a reading)
        qs0, qs1, qs2 = prev.sums[:, e].tolist()
        qlo_, qhi_ = prev.lo[e].tolist(), prev.hi[e].tolist()
        q = float(size - e)
        tbar, tt, k_err = self._tbar, self._tt, 8.0 * size * _EPS
        feats: list[float] = []
        unsure = False
        for j, last in enumerate(x):
            a = anchor[j]
            dk = panchor[j] - a
            p1, q1 = c0[j], qs0[j]
            s1 = p1 + q1 + q * dk
            s2 = c1[j] + qs1[j] + 2.0 * dk * q1 + q * dk * dk
            st = (qs2[j] - e * q1 + dk * q * (q - 1.0) / 2.0) + (q * p1 + c2[j])
            lo = qlo_[j] if qlo_[j] < clo[j] else clo[j]
            hi = qhi_[j] if qhi_[j] > chi[j] else chi[j]
            mean_d = s1 / size
            var = s2 / size - mean_d * mean_d
            slope = (st - tbar * s1) / tt
            if lo == hi:  # a constant sensor: its exact features
                feats += (lo, 0.0, lo, hi, last, 0.0)
                continue
            r_hi, r_lo = hi - a, a - lo  # |hi - a| and |lo - a| exactly: the window holds the anchor, lo <= a <= hi
            reach = (r_hi if r_hi > r_lo else r_lo) + (abs(dk) if q > 0 else 0.0)
            unsure = unsure or var * _SAFE < k_err * reach * reach or \
                abs(slope) * _SAFE < k_err * reach * size * size / tt
            feats += (a + mean_d, math.sqrt(var if var > 0.0 else 0.0), lo, hi, last, slope)
        features = np.array([feats], dtype=np.float32)  # the same rounding as astype, half the cost
        start = ptimes[e] if e < size else float(cur.times[0])
        emitted = Emitted(_ZERO, features, np.array([start]), [(prev.times, prev.rows), (cur.times, cur.rows)],
                          _ZERO, self._locals[e - 1])
        if unsure:
            features[0] = extract(emitted.window(0)[1][None])
        return emitted

    def push_many(self, rows: np.ndarray, times: np.ndarray | None = None) -> Emitted:
        """Add ``(n, width)`` readings in order (and their times); return the windows they complete.

        The same as pushing them one by one, bit for bit; O(n + windows) work plus O(size) per block completed.
        """
        if self._py is not None:  # prefixes carried by `push_one`: back into arrays
            c0, c1, c2, clo, chi, _ = self._py
            self._carry = np.array([c0, c1, c2])
            self._carry_lo, self._carry_hi = np.array(clo), np.array(chi)
            self._py = None
        x = np.asarray(rows, dtype=np.float64)
        n, size, width = len(x), self.size, self.width
        if x.ndim != 2 or width != x.shape[1]:
            raise ValueError(f"expected (n, {width}) readings, got shape {x.shape}")
        ts = np.zeros(n) if times is None else np.asarray(times, dtype=np.float64)
        start, local0 = self.count, self.count % size
        cur = self._cur
        if n == 0:
            none = np.empty(0, dtype=np.intp)
            return Emitted(none, np.empty((0, width * len(STATS)), np.float32), np.empty(0), [], none, none)
        if local0 == 0:
            cur.anchor = x[0].copy()
        head = min(n, size - local0)  # readings that go into the current block
        nb = (local0 + n - 1) // size + 1  # blocks touched; block 0 is the current one
        cur.rows[local0 : local0 + head] = x[:head]
        cur.times[local0 : local0 + head] = ts[:head]
        # prefixes of block 0 continue from the carried ones (row 0 of each scan is the carry)
        d0 = x[:head] - cur.anchor
        p0 = np.empty((_N_SUMS, head + 1, width))
        p0[:, 0] = self._carry
        p0[0, 1:], p0[1, 1:], p0[2, 1:] = d0, d0 * d0, d0 * self._r[local0 : local0 + head]
        np.cumsum(p0, axis=1, out=p0)
        lo0 = np.minimum.accumulate(np.concatenate((self._carry_lo[None], x[:head])), axis=0)
        hi0 = np.maximum.accumulate(np.concatenate((self._carry_hi[None], x[:head])), axis=0)
        done0 = local0 + head == size
        if nb > 1:  # later blocks: fresh readings, prefixes from zero, suffixes for all but the last
            rest = n - head
            flat = np.zeros(((nb - 1) * size, width))
            flat[:rest] = x[head:]
            g = flat.reshape(nb - 1, size, width)
            flat_ts = np.zeros((nb - 1) * size)
            flat_ts[:rest] = ts[head:]
            gt = flat_ts.reshape(nb - 1, size)
            anchors = g[:, 0].copy()
            dg = g - anchors[:, None]
            terms = np.stack((dg, dg * dg, dg * self._r))  # (3, nb - 1, size, width)
            pg = np.zeros((_N_SUMS, nb - 1, size + 1, width))
            pg[:, :, 1:] = terms
            np.cumsum(pg, axis=2, out=pg)
            log_ = np.minimum.accumulate(g, axis=1)
            hig = np.maximum.accumulate(g, axis=1)
        due = self._due(start, n)
        blocks_of = (local0 + due - start) // size
        local = (local0 + due - start) % size
        e = local + 1
        k0 = int(np.count_nonzero(blocks_of == 0))  # due windows are in order: those in block 0 come first
        e0, e1, b1 = e[:k0], e[k0:], blocks_of[k0:] - 1
        if nb > 1:
            self._suffix(cur)  # block 0 is complete when later blocks exist
            # the later blocks' suffixes, all at once (the last one's mean nothing unless it is complete)
            sg = np.zeros((_N_SUMS, nb - 1, size + 1, width))
            sg[:, :, :-1] = np.cumsum(terms[:, :, ::-1], axis=2)[:, :, ::-1]
            slo = np.full((nb - 1, size + 1, width), np.inf)
            slo[:, :-1] = np.minimum.accumulate(g[:, ::-1], axis=1)[:, ::-1]
            shi = np.full((nb - 1, size + 1, width), -np.inf)
            shi[:, :-1] = np.maximum.accumulate(g[:, ::-1], axis=1)[:, ::-1]
            # block b is preceded by: the state's previous block (b = 0), block 0 (b = 1), later block b - 2 (b > 1);
            # stacked once per batch that crosses a block boundary (amortised O(1) a reading)
            prev = self._prev
            qsums = np.concatenate((prev.sums[:, None], cur.sums[:, None], sg[:, : nb - 2]), axis=1)[:, blocks_of, e]
            qlo = np.concatenate((prev.lo[None], cur.lo[None], slo[: nb - 2]))[blocks_of, e]
            qhi = np.concatenate((prev.hi[None], cur.hi[None], shi[: nb - 2]))[blocks_of, e]
            pa = np.concatenate((prev.anchor[None], cur.anchor[None], anchors[: nb - 2]))[blocks_of]
            ca = np.concatenate((cur.anchor[None], anchors))[blocks_of]
            prev_times = np.concatenate((prev.times[None], cur.times[None], gt[: nb - 2]))[blocks_of,
                                                                                         np.minimum(e, size - 1)]
            first_times = np.concatenate((cur.times[:1], gt[:, 0]))[blocks_of]
            psums = np.concatenate((p0[:, e0 - local0], pg[:, b1, e1]), axis=1)
            plo = np.concatenate((lo0[e0 - local0], log_[b1, e1 - 1]))
            phi = np.concatenate((hi0[e0 - local0], hig[b1, e1 - 1]))
        else:
            p = self._prev
            qsums, qlo, qhi = p.sums[:, e], p.lo[e], p.hi[e]
            pa, ca = np.broadcast_to(p.anchor, (len(e), width)), np.broadcast_to(cur.anchor, (len(e), width))
            prev_times = p.times[np.minimum(e, size - 1)]
            first_times = np.full(len(e), cur.times[0])
            psums, plo, phi = p0[:, e - local0], lo0[e - local0], hi0[e - local0]
        starts = np.where(e < size, prev_times, first_times)
        features, unsure = self._features(e, psums, plo, phi, qsums, qlo, qhi, pa, ca, x[due - start])
        blocks = [(self._prev.times, self._prev.rows), (cur.times, cur.rows)]
        if nb > 1:
            blocks += [(gt[k], g[k]) for k in range(nb - 1)]
        emitted = Emitted(due - start, features, starts, blocks, blocks_of, local)
        redo = np.flatnonzero(unsure)
        if len(redo):
            features[redo] = extract(np.stack([emitted.window(int(j))[1] for j in redo]))
        # carry the state forward
        self.count += n
        if nb == 1:
            if done0:
                self._suffix(cur)
                self._roll(cur)
            else:
                self._carry = p0[:, -1].copy()
                self._carry_lo, self._carry_hi = lo0[-1].copy(), hi0[-1].copy()
            return emitted
        last_local = (local0 + n - 1) % size
        if last_local == size - 1:
            self._roll(_Block(anchors[-1], g[-1], gt[-1], sg[:, -1], slo[-1], shi[-1]))
            return emitted
        self._prev = cur if nb == 2 else _Block(anchors[-2], g[-2], gt[-2], sg[:, -2], slo[-2], shi[-2])
        self._cur = _Block(anchors[-1], g[-1], gt[-1])
        self._carry = pg[:, -1, last_local + 1].copy()
        self._carry_lo, self._carry_hi = log_[-1, last_local].copy(), hig[-1, last_local].copy()
        return emitted

    # -- internals -------------------------------------------------------------------------------------------
    def _due(self, start: int, count: int) -> np.ndarray:
        """Reading indices in [start, start + count) that end a window."""
        first = self._next_due
        if first >= start + count:
            return np.empty(0, dtype=np.intp)
        due = np.arange(first, start + count, self.step, dtype=np.intp)
        self._next_due = int(due[-1]) + self.step
        return due

    def _suffix(self, b: _Block) -> None:
        """Fill a complete block's suffix accumulations (row ``size`` stays empty: nothing writes it)."""
        # into preallocated arrays and straight into the block's (reversed views): a live agent pays this once a
        # block, inside one reading's latency. add.accumulate is cumsum's arithmetic without its wrapper (1.2 us)
        terms = self._terms
        d = np.subtract(b.rows, b.anchor, out=terms[0])
        np.multiply(d, d, out=terms[1])
        np.multiply(d, self._r, out=terms[2])
        np.add.accumulate(terms[:, ::-1], axis=1, out=b.sums[:, -2::-1])
        np.minimum.accumulate(b.rows[::-1], axis=0, out=b.lo[-2::-1])
        np.maximum.accumulate(b.rows[::-1], axis=0, out=b.hi[-2::-1])

    def _roll(self, done: _Block, *, lists: bool = False) -> None:
        """`done` (complete, suffixes filled) becomes the previous block; a new empty block starts, in the arrays of
        the block `done` replaces when they are its own (an `Emitted` is valid until the next push, and a block's
        rows are each written before they are read, its empty suffix row never): allocating them cost a live
        reading 10 us. With `lists` (`push_one`) the carry starts as Python lists, else as arrays."""
        old, self._prev = self._prev, done
        if old.own and old is not done:
            old.lists = None
            self._cur = old
        else:
            self._cur = _Block.empty(self.size, self.width)
        if lists:
            w = self.width
            self._py = [[0.0] * w, [0.0] * w, [0.0] * w, [math.inf] * w, [-math.inf] * w, [0.0] * w]
            return
        self._carry = np.zeros((_N_SUMS, self.width))
        self._carry_lo = np.full(self.width, np.inf)
        self._carry_hi = np.full(self.width, -np.inf)
        self._py = None

    def _features(self, e: np.ndarray, psums: np.ndarray, plo: np.ndarray, phi: np.ndarray, qsums: np.ndarray,
                  qlo: np.ndarray, qhi: np.ndarray, prev_anchor: np.ndarray, anchor: np.ndarray,
                  last: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Features of windows from their gathered prefix (current block, through local e-1) and suffix (previous
        block, from local e) accumulations, and which windows to recompute exactly."""
        size, k = self.size, len(e)
        if not k:
            return np.empty((0, self.width * len(STATS)), np.float32), np.zeros(0, dtype=bool)
        q = (size - e)[:, None].astype(np.float64)  # readings of the window in the previous block
        dk = prev_anchor - anchor
        p1, q1 = psums[0], qsums[0]
        s1 = p1 + q1 + q * dk
        s2 = psums[1] + qsums[1] + 2.0 * dk * q1 + q * dk * dk
        # sum of t * (x - anchor), t = 0..size-1 the position in the window: the previous block's part starts at
        # t = 0 (its local index minus e), the current block's at t = q
        st = (qsums[2] - e[:, None] * q1 + dk * q * (q - 1.0) / 2.0) + (q * p1 + psums[2])
        lo, hi = np.minimum(qlo, plo), np.maximum(qhi, phi)
        mean_d = s1 / size
        var = s2 / size - mean_d * mean_d
        slope = (st - self._tbar * s1) / self._tt
        # float64 error bounds of var and slope from the largest |x - anchor| the sums saw
        reach = np.maximum(np.abs(hi - anchor), np.abs(lo - anchor)) + np.where(q > 0, np.abs(dk), 0.0)
        var_err = 8.0 * size * _EPS * reach * reach
        slope_err = 8.0 * size * _EPS * reach * size * size / self._tt
        constant = lo == hi
        unsure = ~constant & ((var * _SAFE < var_err) | (np.abs(slope) * _SAFE < slope_err))
        out = np.empty((len(STATS), k, self.width))
        out[0] = np.where(constant, lo, anchor + mean_d)
        out[1] = np.where(constant, 0.0, np.sqrt(np.maximum(var, 0.0)))
        out[2], out[3], out[4] = lo, hi, last
        out[5] = np.where(constant, 0.0, slope)
        return out.transpose(1, 2, 0).astype(np.float32).reshape(k, self.width * len(STATS)), unsure.any(axis=1)
