"""The tokenizer: BERT's pair layout, query-first truncation, padding, save/load and its guards."""
import json

import pytest
import torch

from data_gen.config import world_config
from data_gen.corpus import corpus_lines
from data_gen.world import build_world
from relcourse.tokenizer import (FIRST_REGULAR_ID, INFO_FILE, SPECIAL_TOKENS, TokenizerError, corpus_fingerprint,
                                 encode_pairs, load_tokenizer, save_tokenizer, special_tokens_mask, train_tokenizer)


@pytest.fixture(scope="module")
def texts():
    return list(corpus_lines(build_world(world_config("smoke"), 0), "domain", 500, seed=0, shard=0)["text"])


@pytest.fixture(scope="module")
def tok(texts):
    return train_tokenizer(texts, vocab_size=800)


def pieces(tok, text):
    return tok(text, add_special_tokens=False)["input_ids"]


def test_special_tokens_come_first(tok):
    assert tok.convert_tokens_to_ids(list(SPECIAL_TOKENS)) == list(range(FIRST_REGULAR_ID))
    assert tok.pad_token_id == 0 and 100 < len(tok) <= 800


def test_pairs_match_transformers_own_pair_encoding(tok, texts):
    # The post-processor's template is an independent oracle for short queries.
    queries, docs = [t[:20] for t in texts[:50]], texts[50:100]
    assert max(len(pieces(tok, q)) for q in queries) <= 12
    ours = encode_pairs(tok, queries, docs, max_query_len=12, max_len=32)
    theirs = tok(queries, docs, truncation="only_second", max_length=32, padding="max_length", return_tensors="pt")
    for key in ("input_ids", "token_type_ids", "attention_mask"):
        assert ours[key].dtype == torch.int64 and ours[key].shape == (50, 32)
        assert torch.equal(ours[key], theirs[key]), key


def test_query_keeps_its_budget_and_the_document_fills_the_rest(tok, texts):
    long_query, short_query, doc = texts[0], "quiet", texts[1]
    cls, sep = tok.cls_token_id, tok.sep_token_id
    for query, kept in ((long_query, 6), (short_query, len(pieces(tok, short_query)))):
        ids = encode_pairs(tok, [query], [doc], max_query_len=6, max_len=24)["input_ids"][0].tolist()
        doc_room = 24 - 3 - kept
        assert ids == [cls] + pieces(tok, query)[:kept] + [sep] + pieces(tok, doc)[:doc_room] + [sep]


def test_every_row_is_the_query_then_the_document_cut_to_their_budgets(tok, texts):
    """Row by row against transformers' own tokenizer call: long and short texts, an empty
    query and an empty document (the Rust tokenizer encodes the batch, Python only lays it out)."""
    queries, docs = ["", *texts[:99]], [*texts[100:199], ""]
    cls, sep, pad = tok.cls_token_id, tok.sep_token_id, tok.pad_token_id
    out = encode_pairs(tok, queries, docs, max_query_len=6, max_len=24)["input_ids"].tolist()
    for query, doc, ids in zip(queries, docs, out):
        q = pieces(tok, query)[:6]
        d = pieces(tok, doc)[:24 - 3 - len(q)]
        expected = [cls, *q, sep, *d, sep]
        assert ids == expected + [pad] * (24 - len(expected))


def test_token_types_and_padding(tok):
    batch = encode_pairs(tok, ["quiet kettle", ""], ["rated at 32 volt", "large"], max_query_len=4, max_len=16)
    for row in range(2):
        ids, types, attention = (batch[k][row] for k in ("input_ids", "token_type_ids", "attention_mask"))
        first_sep, last_sep = (ids == tok.sep_token_id).nonzero().flatten().tolist()
        assert (types[:first_sep + 1] == 0).all() and (types[first_sep + 1:last_sep + 1] == 1).all()
        assert (ids[last_sep + 1:] == tok.pad_token_id).all() and (types[last_sep + 1:] == 0).all()
        assert attention.tolist() == [1] * (last_sep + 1) + [0] * (15 - last_sep)
    assert batch["input_ids"][1, :3].tolist() == [tok.cls_token_id, tok.sep_token_id, pieces(tok, "large")[0]]
    assert {k: v.shape for k, v in encode_pairs(tok, [], [], 4, 16).items()} == {
        "input_ids": (0, 16), "token_type_ids": (0, 16), "attention_mask": (0, 16)}


def test_exact_match_marks_the_document_tokens_found_in_the_query(tok):
    query, doc = "quiet kettle", "a kettle that is quiet and large"
    plain = encode_pairs(tok, [query], [doc], max_query_len=6, max_len=24)
    marked = encode_pairs(tok, [query], [doc], max_query_len=6, max_len=24, exact_match=True)
    assert torch.equal(plain["input_ids"], marked["input_ids"])
    ids, types = plain["input_ids"][0].tolist(), marked["token_type_ids"][0].tolist()
    first_sep = ids.index(tok.sep_token_id)
    in_query = set(ids[1:first_sep])
    for position, (token, kind, old) in enumerate(zip(ids, types, plain["token_type_ids"][0].tolist())):
        is_doc_word = old == 1 and token not in (tok.sep_token_id, tok.pad_token_id)
        assert kind == (2 if is_doc_word and token in in_query else old), position
    assert 2 in types


def test_special_tokens_mask(tok):
    ids = encode_pairs(tok, ["quiet"], ["large kettle"], max_query_len=4, max_len=12)["input_ids"]
    expected = (ids == tok.cls_token_id) | (ids == tok.sep_token_id) | (ids == tok.pad_token_id)
    words = len(pieces(tok, "quiet")) + len(pieces(tok, "large kettle"))
    assert torch.equal(special_tokens_mask(ids, tok), expected) and expected.sum() == 12 - words


def test_save_and_load_round_trip(tok, texts, tmp_path):
    fingerprint = corpus_fingerprint(texts)
    save_tokenizer(tok, tmp_path / "tok", fingerprint)
    save_tokenizer(tok, tmp_path / "tok", fingerprint)   # replacing an existing folder works too
    loaded = load_tokenizer(tmp_path / "tok", fingerprint)
    assert loaded.get_vocab() == tok.get_vocab() and loaded.all_special_ids == tok.all_special_ids
    a, b = (encode_pairs(t, texts[:20], texts[20:40], 8, 32) for t in (tok, loaded))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert loaded(["quiet"], ["large"])["token_type_ids"] == [[0] * (len(pieces(tok, "quiet")) + 2)
                                                              + [1] * (len(pieces(tok, "large")) + 1)]
    info = json.loads((tmp_path / "tok" / INFO_FILE).read_text())
    assert info == {"vocab_size": len(tok), "corpus_fingerprint": fingerprint}
    assert [p.name for p in tmp_path.iterdir()] == ["tok"]   # no temp folder left behind


def test_fingerprint_is_stable_and_order_sensitive():
    assert corpus_fingerprint(["ab", "c"]) == corpus_fingerprint(iter(["ab", "c"]))
    assert len({corpus_fingerprint(t) for t in (["ab", "c"], ["a", "bc"], ["c", "ab"], [])}) == 4


def test_errors_say_what_to_do(tok, tmp_path):
    with pytest.raises(TokenizerError, match="no saved tokenizer.*run tokenizer --profile"):
        load_tokenizer(tmp_path / "missing")
    save_tokenizer(tok, tmp_path / "tok", "aaaa")
    assert load_tokenizer(tmp_path / "tok").get_vocab() == tok.get_vocab()   # no fingerprint given: no check
    with pytest.raises(TokenizerError, match="another corpus.*delete .*tok"):
        load_tokenizer(tmp_path / "tok", "bbbb")
    with pytest.raises(ValueError, match="2 queries but 1 documents"):
        encode_pairs(tok, ["a", "b"], ["c"], 4, 16)
    for max_query_len in (0, 13):
        with pytest.raises(ValueError, match="no room for the document"):
            encode_pairs(tok, ["a"], ["b"], max_query_len, 16)
    with pytest.raises(ValueError, match="vocab_size"):
        train_tokenizer(["a b"], vocab_size=5)


def test_training_is_deterministic(texts):
    """tokenizers' WordPieceTrainer is not (huggingface/tokenizers#1794); ours must be, or one seed
    would give two models."""
    vocabularies = {tuple(sorted(train_tokenizer(texts, vocab_size=800).get_vocab().items())) for _ in range(5)}
    assert len(vocabularies) == 1
