"""The BERT with its heads: MLM on selected tokens only, save/load across stages, bad input."""
import pytest
import torch
import torch.nn.functional as F

from relcourse.config import ModelConfig
from relcourse.models import ModelError, RelevanceBert, load_model, save_model

TINY = ModelConfig(layers=1, hidden=32, heads=2, intermediate=64)


def batch(n=4, length=12, vocab=50):
    g = torch.Generator().manual_seed(0)
    return {"input_ids": torch.randint(5, vocab, (n, length), generator=g),
            "token_type_ids": torch.zeros(n, length, dtype=torch.long),
            "attention_mask": torch.ones(n, length, dtype=torch.long)}


def test_mlm_loss_equals_full_vocabulary_loss_on_selected_positions():
    torch.manual_seed(0)
    model = RelevanceBert(TINY, vocab_size=50, max_len=12).eval()
    b = batch()
    labels = torch.full((4, 12), -100)
    labels[0, 2], labels[1, 5], labels[3, 11] = 7, 9, 30
    hidden = model.hidden_states(b)
    loss, _ = model.mlm_loss(hidden, labels)
    # The oracle: project every position onto the vocabulary, let cross_entropy ignore -100.
    logits = model.mlm_transform(hidden) @ model.encoder.embeddings.word_embeddings.weight.T + model.mlm_bias
    expected = F.cross_entropy(logits.reshape(-1, 50), labels.reshape(-1), ignore_index=-100)
    assert torch.allclose(loss, expected, atol=1e-6)


def test_mlm_projection_is_tied_to_the_input_embeddings():
    model = RelevanceBert(TINY, vocab_size=50, max_len=12)
    names = [n for n, _ in model.named_parameters()]
    assert not any("decoder" in n for n in names)   # no separate output matrix to learn


def test_a_checkpoint_moves_between_stages_and_a_four_class_head_starts_fresh(tmp_path):
    torch.manual_seed(0)
    model = RelevanceBert(TINY, vocab_size=50, max_len=12).eval()
    save_model(model, tmp_path / "m")
    again = load_model(tmp_path / "m").eval()
    assert torch.equal(model.relevance(batch()), again.relevance(batch()))
    four = load_model(tmp_path / "m", num_outputs=4)
    assert four.relevance(batch()).shape == (4, 4)
    assert torch.equal(four.encoder.embeddings.word_embeddings.weight, model.encoder.embeddings.word_embeddings.weight)


def test_bad_input_is_named():
    model = RelevanceBert(TINY, vocab_size=50, max_len=12)
    with pytest.raises(ModelError, match="12 positions"):
        model.relevance(batch(length=20))
    with pytest.raises(ModelError, match="num_outputs"):
        RelevanceBert(TINY, vocab_size=50, max_len=12, num_outputs=2)


def test_missing_or_mismatched_checkpoint(tmp_path):
    with pytest.raises(ModelError, match="no saved model"):
        load_model(tmp_path / "nothing")
    save_model(RelevanceBert(TINY, vocab_size=50, max_len=12), tmp_path / "m")
    with pytest.raises(ModelError, match="another config"):
        load_model(tmp_path / "m", expect=ModelConfig(layers=2, hidden=32, heads=2, intermediate=64))


def test_the_exact_match_input_has_a_third_token_type_that_survives_saving(tmp_path):
    model = RelevanceBert(TINY, vocab_size=50, max_len=12, token_types=3).eval()
    batch = {"input_ids": torch.randint(5, 50, (2, 12)), "attention_mask": torch.ones(2, 12, dtype=torch.long),
             "token_type_ids": torch.tensor([[0] * 4 + [1] * 8, [0] * 4 + [1, 2, 2, 1] + [1] * 4])}
    save_model(model, tmp_path / "m")
    loaded = load_model(tmp_path / "m").eval()
    assert loaded.token_types == 3 and torch.equal(loaded.relevance(batch), model.relevance(batch))
    plain = batch | {"token_type_ids": batch["token_type_ids"].clamp(max=1)}
    assert not torch.equal(model.relevance(batch)[1], model.relevance(plain)[1])   # type 2 changes the input
