"""Per-row token choice: greedy rows, temperature and top-p, and each row's own random stream."""

from __future__ import annotations

import torch

from llava.serve.request import SamplingParams
from llava.serve.sampling import draw, next_tokens, top_p_filter


class Row:
    """What `next_tokens` reads from a request: its settings and its generator."""

    def __init__(self, temperature: float = 1.0, top_p: float = 1.0, seed: int = 0):
        self.params = SamplingParams(temperature=temperature, top_p=top_p, seed=seed)
        self.generator = torch.Generator().manual_seed(seed)

    def generator_on(self, device) -> torch.Generator:
        return self.generator


def test_greedy_rows_take_the_most_likely_token():
    logits = torch.tensor([[0.1, 3.0, 0.2], [5.0, 0.0, 1.0]])
    assert next_tokens(logits, [Row(temperature=0.0), Row(temperature=0.0)]) == [1, 0]


def test_a_row_draws_the_same_tokens_whatever_rows_share_its_batch():
    logits = torch.randn(4, 1000, generator=torch.Generator().manual_seed(1))
    alone_row, batched_row = Row(seed=7), Row(seed=7)
    alone = [next_tokens(logits[2:3], [alone_row])[0] for _ in range(20)]
    others = [Row(seed=1), Row(temperature=0.0), Row(seed=3, top_p=0.5)]
    batched = [next_tokens(logits, [others[0], others[1], batched_row, others[2]])[2] for _ in range(20)]
    assert batched == alone and len(set(alone)) > 1


def test_draws_follow_the_softmax_of_the_logits_over_the_temperature():
    logits, row, draws = torch.tensor([[0.0, 1.0, 2.0]]), Row(temperature=0.5, seed=3), 20000
    counts = torch.bincount(torch.tensor([next_tokens(logits, [row])[0] for _ in range(draws)]), minlength=3)
    assert torch.allclose(counts / draws, (logits[0] / 0.5).softmax(-1), atol=0.01)


def test_top_p_keeps_the_smallest_set_of_tokens_whose_probability_reaches_it():
    logits = torch.tensor([0.5, 0.3, 0.15, 0.05]).log()
    kept = top_p_filter(logits, 0.7).isfinite()
    assert kept.tolist() == [True, True, False, False]
    assert top_p_filter(logits, 0.1).isfinite().tolist() == [True, False, False, False]


def test_rows_with_different_top_p_are_filtered_each_with_its_own():
    logits = torch.tensor([0.5, 0.3, 0.15, 0.05]).log().repeat(2, 1)
    kept = top_p_filter(logits, torch.tensor([[0.7], [0.1]])).isfinite()
    assert kept.tolist() == [[True, True, False, False], [True, False, False, False]]


def test_a_vocabulary_that_is_no_multiple_of_the_block_is_sampled_over_every_token():
    vocab = 1000 + 7  # a prime block count: blocks of one token, and the last tokens reachable
    logits = torch.full((1, vocab), -30.0)
    logits[0, -1], logits[0, 3] = 0.0, 0.0
    row = Row(temperature=1.0, seed=5)
    draws = torch.tensor([next_tokens(logits, [row])[0] for _ in range(2000)])
    assert set(draws.tolist()) == {3, vocab - 1}
    assert 0.4 < (draws == vocab - 1).float().mean() < 0.6


def test_draw_inverts_the_running_sum_across_block_boundaries():
    weights = torch.zeros(3, 512)
    weights[:, 255], weights[:, 256], weights[:, 511] = 1.0, 1.0, 2.0
    uniform = torch.tensor([0.1, 0.3, 0.9])  # targets 0.4, 1.2, 3.6 of a total of 4
    assert draw(weights, uniform).tolist() == [255, 256, 511]


class PenalisedRow(Row):
    def __init__(self, prompt_ids=(), **params):
        from llava.serve.request import PreparedChat

        super().__init__(temperature=0.0)
        self.params = SamplingParams(temperature=0.0, **params)
        self.prepared = PreparedChat("", None, len(prompt_ids), 10, tuple(prompt_ids))


def test_penalties_and_logit_bias_follow_openai_and_vllm_row_by_row():
    from llava.serve.logits_processing import TokenHistory, adjusted

    logits = torch.tensor([[2.0, -1.0, 0.5, 3.0], [2.0, -1.0, 0.5, 3.0], [2.0, -1.0, 0.5, 3.0]])
    rows = [PenalisedRow(frequency_penalty=0.5, presence_penalty=0.25), PenalisedRow(prompt_ids=(1, -200), repetition_penalty=2.0),
            PenalisedRow(logit_bias=((2, 10.0),))]
    history = TokenHistory.for_rows(rows, 4, "cpu")
    history.add(torch.tensor([0, 0, 0]))
    history.add(torch.tensor([0, 3, 1]))
    out = adjusted(logits, rows, history)
    assert out[0].tolist() == [2.0 - 2 * 0.5 - 0.25, -1.0, 0.5, 3.0]  # token 0 twice in the answer
    assert out[1].tolist() == [1.0, -2.0, 0.5, 1.5]  # answer tokens 0, 3 and prompt token 1 (the image sentinel skipped)
    assert out[2].tolist() == [2.0, -1.0, 10.5, 3.0]  # no penalty: its history is never read
