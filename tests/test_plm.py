"""Reading the model's answers: rank classification (--eval rank) picks the most likely class, and
agrees with generation wherever generation produces one of the task's labels."""
import pytest
import torch

import data
import ipt
import plm
import train
from test_train import WORDS, args


class Tokens:
    """The two calls `rank` makes of a tokenizer."""
    pad_token_id = 0

    def decode(self, ids, skip_special_tokens):
        return " ".join(map(str, ids))


def test_rank_picks_the_option_of_highest_log_likelihood(monkeypatch):
    """Known answer: per-token losses fixed by hand; the summed log-likelihood decides, per row."""
    per_option = {(5, 1): [0.2, 0.1], (6, 6, 1): [0.1, 0.1, 0.05], (7, 1): [1.0, 0.0]}    # sums .3, .25, 1.0

    def token_losses(model, prompt, input_ids, attention_mask, labels):
        rows = [tuple(r[r != ipt.IGNORE].tolist()) for r in labels]
        out = torch.zeros(labels.shape)
        for b, r in enumerate(rows):
            out[b, :len(r)] = torch.tensor(per_option[r]) + (0.5 if input_ids[b, 0] == 2 and r == (6, 6, 1) else 0)
        return out
    monkeypatch.setattr(ipt, "token_losses", token_losses)
    model = type("Model", (), {"device": torch.device("cpu")})()
    cfg = train.Config(eval_batch_size=2)
    prepared = [{"options": [[5, 1], [6, 6, 1], [7, 1]]}]
    got = plm.rank(cfg, model, Tokens(), lambda idx: None, [(0, [3, 4]), (0, [2, 4])], prepared)
    assert got == ["6 6 1", "5 1"]                                   # row 2: option 2 made less likely


@pytest.mark.slow
def test_rank_classification_agrees_with_generation_where_generation_is_a_label(world):
    """The tiny T5 of the end-to-end tests, fine-tuned by hand on first-word (the answer: one of ten
    words) until it answers with words; the ten words as the options; no prompt."""
    cfg = train.parse_args(args(world, "rank", "--stage", "untuned", "--task", "first-word"))
    model, tokenizer = plm.load(cfg, torch.device("cpu"))
    prepared = data.prepare(cfg, ["first-word"], data.load_tasks(cfg.tasks_file), tokenizer)
    prepared[0]["options"] = data.tokenize(tokenizer, WORDS, cfg.max_target_len)
    batch = data.collate([(0, x, y) for x, y in prepared[0]["train"]], tokenizer.pad_token_id)
    model.requires_grad_(True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    torch.manual_seed(0)
    for _ in range(300):
        ipt.token_losses(model, None, batch.input_ids, batch.attention_mask, batch.labels).mean().backward()
        optimizer.step()
        optimizer.zero_grad()
    ipt.freeze(model)
    no_prompt = lambda idx: None
    rows = [(0, ids) for ids, _ in prepared[0]["test"] + prepared[0]["dev"]]
    generated = plm.predict(cfg, model, tokenizer, no_prompt, rows)
    ranked = plm.rank(cfg, model, tokenizer, no_prompt, rows, prepared)
    labels = set(WORDS)
    valid = [i for i, g in enumerate(generated) if g in labels]
    assert len(valid) >= len(rows) // 2 and len({generated[i] for i in valid}) >= 3      # not vacuous
    assert [ranked[i] for i in valid] == [generated[i] for i in valid]
    assert set(ranked) <= labels
    cfg.eval = "rank"                                                  # and score_tasks takes that path
    test = prepared[0]["test"]
    assert plm.score_tasks(cfg, model, tokenizer, no_prompt, prepared, [0], "test")[0] == pytest.approx(
        sum(r in refs for r, (_, refs) in zip(ranked, test)) / len(test))
