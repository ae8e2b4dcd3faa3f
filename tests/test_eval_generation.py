"""Sharding and batching helpers shared by the evaluation runners."""

import pytest

from llava.eval.generation import batched, get_chunk, resolve_shard


def test_chunks_are_contiguous_and_cover_every_item_once():
    items = list(range(10))
    chunks = [get_chunk(items, 3, k) for k in range(3)]
    assert chunks == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def test_more_chunks_than_items_leaves_empty_chunks():
    assert [get_chunk([1, 2], 4, k) for k in range(4)] == [[1], [2], [], []]


def test_chunk_index_out_of_range_names_the_flags():
    with pytest.raises(ValueError, match="--chunk-idx 2 must lie in \\[0, --num-chunks 2\\)"):
        get_chunk([1, 2, 3], 2, 2)


def test_torchrun_world_size_and_rank_choose_the_shard(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    assert resolve_shard(None, None) == (4, 3)


def test_explicit_flags_win_over_torchrun(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    assert resolve_shard(2, 0) == (2, 0)


def test_single_process_is_one_chunk(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("RANK", raising=False)
    assert resolve_shard(None, None) == (1, 0)


def test_batches_keep_order_and_the_last_may_be_short():
    assert list(batched([1, 2, 3, 4, 5], 2)) == [[1, 2], [3, 4], [5]]


def test_batch_size_below_one_is_rejected_naming_the_flag():
    with pytest.raises(ValueError, match="--batch-size"):
        list(batched([1], 0))
