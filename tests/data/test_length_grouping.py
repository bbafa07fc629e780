"""Length grouping: less padding, still a permutation, shards still add up to one process's batches."""

from __future__ import annotations

import numpy as np

from mmgpt.data.mixture import GROUP_WINDOW_BATCHES, SampleStream, group_by_length


class _Builder:
    """Returns the sample itself; with `skip`, every 13th sample is unusable (as a corrupt record would be)."""

    tokenizer = None

    def __init__(self, skip: bool = False):
        self.skip = skip

    def build(self, sample):
        return None if self.skip and sample % 13 == 12 else sample


def _spread(order: np.ndarray, lengths: np.ndarray, batch: int) -> float:
    """Mean over batches of (longest - mean length): the padding a batch carries per sample."""
    spans = [lengths[order[i : i + batch]] for i in range(0, len(order), batch)]
    return float(np.mean([s.max() - s.mean() for s in spans]))


def test_grouping_is_a_permutation_with_far_less_padding():
    rng = np.random.default_rng(0)
    lengths = rng.integers(10, 400, size=1000)
    order = rng.permutation(1000)
    grouped = group_by_length(order, lengths, 16, np.random.default_rng(1))
    assert sorted(grouped.tolist()) == list(range(1000))
    assert _spread(grouped, lengths, 16) < 0.2 * _spread(order, lengths, 16)
    # grouping stays within windows: a sample moves at most one window away from its shuffled position
    window = 16 * GROUP_WINDOW_BATCHES
    where = {int(s): i // window for i, s in enumerate(order)}
    assert all(where[int(s)] == i // window for i, s in enumerate(grouped))
    # the partial last batch stays last
    assert set(grouped[-(1000 % 16) :].tolist()) <= set(order[-(1000 % window) :].tolist())


def test_grouped_shards_make_up_the_single_process_batches():
    samples = list(range(300))
    lengths = [(s * 37) % 101 for s in samples]
    single = SampleStream(samples, _Builder(), 8, seed=5, lengths=lengths)
    shards = [
        SampleStream(samples, _Builder(), 4, seed=5, rank=r, world_size=2, lengths=lengths) for r in range(2)
    ]
    for _ in range(80):  # several passes
        assert sorted(single.next_examples()) == sorted(shards[0].next_examples() + shards[1].next_examples())


def test_grouped_stream_resumes_exactly():
    samples = list(range(100))
    lengths = [(s * 7) % 23 for s in samples]
    stream = SampleStream(samples, _Builder(skip=True), 6, seed=2, lengths=lengths)
    for _ in range(20):  # crosses an epoch boundary
        stream.next_examples()
    state = stream.state_dict()
    expected = [stream.next_examples() for _ in range(8)]
    resumed = SampleStream(samples, _Builder(skip=True), 6, seed=2, lengths=lengths)
    resumed.load_state_dict(state)
    assert [resumed.next_examples() for _ in range(8)] == expected
