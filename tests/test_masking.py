"""Dynamic masking against an independent oracle (transformers' MLM collator), plus span masking."""
import pytest
import torch
from transformers import DataCollatorForLanguageModeling

from data_gen.config import world_config
from data_gen.corpus import corpus_lines
from data_gen.world import build_world
from relcourse.masking import IGNORE_INDEX, MAX_SPAN, REPLACEMENTS, mask_tokens, span_lengths
from relcourse.tokenizer import FIRST_REGULAR_ID, encode_pairs, special_tokens_mask, train_tokenizer

MODES = [(replacement, span) for replacement in REPLACEMENTS for span in (False, True)]


@pytest.fixture(scope="module")
def tok_and_ids():
    """4000 rows of 32 real segment pairs (with [CLS], [SEP] and [PAD]): ~100k regular tokens."""
    texts = list(corpus_lines(build_world(world_config("smoke"), 0), "domain", 1000, seed=0, shard=0)["text"])
    tok = train_tokenizer(texts, vocab_size=800)
    ids = encode_pairs(tok, texts[:500], texts[500:], max_query_len=12, max_len=32)["input_ids"]
    return tok, ids.repeat(8, 1)


def shares(ids, masked, labels, special, mask_id):
    """Selection rate among regular tokens; shares of [MASK], random and unchanged among selected."""
    selected = labels != IGNORE_INDEX
    chosen, original = masked[selected], ids[selected]
    to_mask = chosen == mask_id
    unchanged = chosen == original
    return (selected.sum() / (~special).sum()).item(), to_mask.float().mean().item(), \
        (~to_mask & ~unchanged).float().mean().item(), unchanged.float().mean().item()


@pytest.mark.parametrize("replacement", REPLACEMENTS)
def test_rates_match_transformers_collator(tok_and_ids, replacement):
    tok, ids = tok_and_ids
    special = special_tokens_mask(ids, tok)
    ours = mask_tokens(ids, special, tok.mask_token_id, len(tok), replacement=replacement,
                       generator=torch.Generator().manual_seed(0))
    to_mask, to_random = REPLACEMENTS[replacement]
    collator = DataCollatorForLanguageModeling(tok, mlm_probability=0.15, mask_replace_prob=to_mask,
                                               random_replace_prob=to_random, seed=0)
    theirs = collator.torch_mask_tokens(ids.clone(), special_tokens_mask=special)
    ours_shares, their_shares = shares(ids, *ours, special, 4), shares(ids, *theirs, special, 4)
    assert (theirs[1][special] == IGNORE_INDEX).all()
    nominal = (0.15, to_mask, to_random, 1 - to_mask - to_random)
    for mine, oracle, nominal in zip(ours_shares, their_shares, nominal):
        assert abs(mine - oracle) < 0.01 and abs(mine - nominal) < 0.01, (ours_shares, their_shares)


@pytest.mark.parametrize("replacement, span", MODES)
def test_special_tokens_are_never_touched_and_replacements_are_regular(tok_and_ids, replacement, span):
    tok, ids = tok_and_ids
    special = special_tokens_mask(ids, tok)
    masked, labels = mask_tokens(ids, special, tok.mask_token_id, len(tok), replacement=replacement, span=span,
                                 generator=torch.Generator().manual_seed(1))
    assert masked.shape == labels.shape == ids.shape and masked.dtype == labels.dtype == torch.int64
    assert torch.equal(masked[special], ids[special]) and (labels[special] == IGNORE_INDEX).all()
    selected = labels != IGNORE_INDEX
    assert torch.equal(labels[selected], ids[selected])                  # labels are the originals
    assert torch.equal(masked[~selected], ids[~selected])                # nothing else changes
    replaced = selected & (masked != ids) & (masked != tok.mask_token_id)
    assert (masked[replaced] >= FIRST_REGULAR_ID).all() and (masked[replaced] < len(tok)).all()
    if REPLACEMENTS[replacement][1]:
        assert replaced.sum() > 0
    else:                                                                # no random words
        assert not replaced.any()
    if REPLACEMENTS[replacement][0] == 1.0:                              # all [MASK]
        assert (masked[selected] == tok.mask_token_id).all()


def runs_of(row: list[bool]) -> list[int]:
    """Lengths of the runs of True in a row."""
    runs, current = [], 0
    for value in row + [False]:
        if value:
            current += 1
        elif current:
            runs, current = runs + [current], 0
    return runs


def test_span_masking_covers_mask_prob_in_contiguous_spans(tok_and_ids):
    tok, ids = tok_and_ids
    special = special_tokens_mask(ids, tok)
    masked, labels = mask_tokens(ids, special, tok.mask_token_id, len(tok), span=True,
                                 generator=torch.Generator().manual_seed(2))
    selected = labels != IGNORE_INDEX
    assert abs(selected.sum() / (~special).sum() - 0.15) < 0.02
    # Each row covers its budget: 0.15 of its regular tokens, rounded up or down.
    budget = 0.15 * (~special).sum(dim=1)
    assert ((selected.sum(dim=1) - budget).abs() < 1).all()
    runs = [n for row in selected.tolist() for n in runs_of(row)]
    assert sum(runs) / len(runs) > 1.5
    # A span is replaced as a whole (with 80/10/10), so [MASK] comes in runs too.
    mask_runs = [n for row in (masked == tok.mask_token_id).tolist() for n in runs_of(row)]
    assert sum(mask_runs) / len(mask_runs) > 1.5


def test_span_lengths_are_truncated_geometric():
    lengths = span_lengths(torch.rand(200_000, generator=torch.Generator().manual_seed(0)))
    assert lengths.min() == 1 and lengths.max() == MAX_SPAN
    assert abs(lengths.float().mean() - 3.80) < 0.03                    # SpanBERT's mean span length
    assert abs((lengths == 1).float().mean() - 0.2 / (1 - 0.8 ** 10)) < 0.005


@pytest.mark.parametrize("replacement, span", MODES)
def test_same_seed_same_masks(tok_and_ids, replacement, span):
    tok, ids = tok_and_ids
    special = special_tokens_mask(ids[:200], tok)

    def draw(seed):
        return mask_tokens(ids[:200], special, tok.mask_token_id, len(tok), replacement=replacement, span=span,
                           generator=torch.Generator().manual_seed(seed))
    (a, la), (b, lb), (c, lc) = draw(5), draw(5), draw(6)
    assert torch.equal(a, b) and torch.equal(la, lb)
    assert not torch.equal(la, lc)


def test_bad_arguments_say_what_is_wrong():
    ids = torch.tensor([[2, 10, 11, 3]])
    special = (ids == 2) | (ids == 3)
    for prob in (0, 1, 1.5):
        with pytest.raises(ValueError, match="mask_prob"):
            mask_tokens(ids, special, 4, 30, mask_prob=prob)
    with pytest.raises(ValueError, match="unknown; choose from 80/10/10, all_mask, 90/0/10"):
        mask_tokens(ids, special, 4, 30, replacement="90/5/5")
    with pytest.raises(ValueError, match="bool tensor of the same shape"):
        mask_tokens(ids, special[:, :2], 4, 30)
    with pytest.raises(ValueError, match="bool tensor"):
        mask_tokens(ids, special.long(), 4, 30)
    with pytest.raises(ValueError, match="no regular token"):
        mask_tokens(ids, special, 4, 5)


def test_focused_masking_aims_its_share_at_the_shared_words(tok_and_ids):
    """TAPT's match masking: about focus_share of the selections fall on the focus tokens, the
    overall rate stays mask_prob, and focus_share=0 is the plain draw, token for token."""
    from relcourse.tokenizer import shared_tokens
    tok, ids = tok_and_ids
    special = special_tokens_mask(ids, tok)
    types = (torch.arange(ids.shape[1]) >= 14).long().expand_as(ids)   # any split into two segments
    focus = shared_tokens(ids, types, ~special)
    assert 0.02 < focus.sum() / (~special).sum() < 0.5          # the focus is a minority of tokens
    plain = mask_tokens(ids, special, tok.mask_token_id, len(tok), generator=torch.Generator().manual_seed(3))
    zero = mask_tokens(ids, special, tok.mask_token_id, len(tok), generator=torch.Generator().manual_seed(3),
                       focus=focus, focus_share=0.0)
    assert all(torch.equal(a, b) for a, b in zip(plain, zero))
    _, labels = mask_tokens(ids, special, tok.mask_token_id, len(tok), generator=torch.Generator().manual_seed(3),
                            focus=focus, focus_share=0.5)
    selected = labels != IGNORE_INDEX
    rows = focus.sum(1) >= 2          # rows with enough shared words to carry half the selections
    assert (selected[rows] & focus[rows]).sum() / selected[rows].sum() == pytest.approx(0.5, abs=0.05)
    assert selected.sum() / (~special).sum() == pytest.approx(0.15, abs=0.01)
    with pytest.raises(ValueError, match="single tokens"):
        mask_tokens(ids, special, tok.mask_token_id, len(tok), span=True, focus=focus, focus_share=0.5)
