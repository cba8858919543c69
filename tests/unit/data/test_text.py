"""Text tasks: tokeniser, vocabulary, fixed-length padding, word -> frame mapping, loaders, GloVe."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from certnn.data import (TEXT_TASKS, Tokenizer, Vocabulary, encode_texts, glove_matrix, load_glove, load_text_task,
                         pad_ids, split_indices, word_frames)
from certnn.errors import ConfigError, DataError


# ------------------------------------------------------------------ tokeniser

def test_word_tokenizer_lowercases_and_splits_clitics_and_punctuation():
    toks = Tokenizer()("He's GREAT, isn't he? A co-writer/director's film!")
    assert toks == ["he", "'s", "great", ",", "is", "n't", "he", "?", "a", "co", "writer", "/", "director", "'s",
                    "film", "!"]
    assert Tokenizer()("wo n't") == ["wo", "n't"]
    assert Tokenizer()("") == []


def test_char_tokenizer_and_config_checks():
    assert Tokenizer(level="char")("Ab/c") == ["a", "b", "/", "c"]
    assert Tokenizer(level="char", lowercase=False)("Ab") == ["A", "b"]
    with pytest.raises(ConfigError, match="level"):
        Tokenizer(level="byte")
    with pytest.raises(ConfigError, match="unknown key"):
        Tokenizer.from_mapping({"level": "word", "stem": True})


# ------------------------------------------------------------------ vocabulary

def test_vocabulary_build_order_min_count_and_unknowns():
    v = Vocabulary.build([["b", "a", "b", "c"], ["a", "b", "d"]], min_count=2)
    assert v.to_list() == ["<pad>", "<unk>", "b", "a"]  # b (3) before a (2); c, d below min_count
    assert v.encode(["a", "zzz", "b"]) == [3, 1, 2]
    assert v.decode([0, 2]) == ["<pad>", "b"]
    assert len(Vocabulary.build([["x", "y", "z"]], max_size=3)) == 3
    assert Vocabulary(v.to_list()) == v
    with pytest.raises(DataError, match="<pad>"):
        Vocabulary(["a", "b"])
    with pytest.raises(DataError, match="repeated"):
        Vocabulary(["<pad>", "<unk>", "a", "a"])
    with pytest.raises(ConfigError):
        Vocabulary.build([["a"]], min_count=0)


# ------------------------------------------------------------------ padding

def _naive_pad(ids, T, side):
    out = []
    for s in ids:
        s = list(s[:T])
        pad = [0] * (T - len(s))
        out.append(pad + s if side == "left" else s + pad)
    return torch.tensor(out, dtype=torch.long)


@pytest.mark.parametrize("side", ["left", "right"])
def test_pad_ids_matches_naive_padding(side):
    gen = np.random.default_rng(1)
    ids = [gen.integers(2, 50, size=gen.integers(0, 9)).tolist() for _ in range(30)]
    enc = pad_ids(ids, 5, padding=side)
    assert torch.equal(enc.tokens, _naive_pad(ids, 5, side))
    assert enc.lengths.tolist() == [min(len(s), 5) for s in ids]
    assert enc.max_len == 5 and enc.padding == side


def test_padding_is_left_by_default_and_truncation_keeps_the_start():
    v = Vocabulary.build([["a", "b", "c", "d"]])
    enc = encode_texts(["a b", "a b c d"], v, 3)
    assert enc.tokens[0].tolist() == [0, v.index("a"), v.index("b")]
    assert enc.tokens[1].tolist() == [v.index(t) for t in "abc"]
    with pytest.raises(ConfigError):
        pad_ids([[1]], 0)


def test_word_frames_maps_positions_to_left_padded_frames():
    lengths = torch.tensor([2, 5, 3, 0])
    frames, valid = word_frames(lengths, 5, [0, -1])
    assert valid.tolist() == [True, True, True, False]
    assert frames[:3].tolist() == [[3, 4], [0, 4], [2, 4]]
    frames, valid = word_frames(torch.tensor([1, 4]), 5, [0, -1])
    assert valid.tolist() == [False, True]  # both positions name the only word of the first text
    frames, valid = word_frames(torch.tensor([4]), 5, [4])
    assert not valid.any()  # too short
    allf, valid = word_frames(torch.tensor([2, 0]), 4)
    assert allf.tolist() == [[-1, -1, 2, 3], [-1, -1, -1, -1]] and valid.tolist() == [True, False]
    right, _ = word_frames(torch.tensor([2]), 4, [1], padding="right")
    assert right.tolist() == [[1]]


def test_split_indices_is_seeded_and_disjoint():
    tr, te = split_indices(100, 0.1, seed=3)
    tr2, te2 = split_indices(100, 0.1, seed=3)
    assert np.array_equal(te, te2) and len(te) == 10 and len(tr) == 90
    assert set(tr) | set(te) == set(range(100)) and not set(tr) & set(te)
    assert not np.array_equal(split_indices(100, 0.1, seed=4)[1], te)
    with pytest.raises(ConfigError):
        split_indices(10, 1.0, 0)


# ------------------------------------------------------------------ loaders on the real files

@pytest.mark.shared_data
@pytest.mark.parametrize("name,n_train,n_test,level", [("mr", 9596, 1066, "word"), ("sst2", 6920, 1821, "word"),
                                                       ("toxic", 9000, 1000, "word"), ("urls", 9000, 1000, "char")])
def test_loaders_on_the_shared_files(shared_data, name, n_train, n_test, level):
    task = load_text_task(name, shared_data)
    assert (len(task.train), len(task.test), task.level, task.num_classes) == (n_train, n_test, level, 2)
    assert task.level == TEXT_TASKS[name][0]
    for split in (task.train, task.test):
        assert set(split.labels.unique().tolist()) == {0, 1}
        assert 0.4 < split.labels.double().mean().item() < 0.6
        assert all(isinstance(t, str) for t in split.texts[:50])
    again = load_text_task(name, shared_data)
    assert again.test.texts == task.test.texts  # deterministic
    small = load_text_task(name, shared_data, limit=30)
    assert len(small.train) == 30 and len(small.test) == 30
    assert set(small.test.texts) <= set(task.test.texts)


@pytest.mark.shared_data
def test_seeded_split_changes_with_the_seed_and_keeps_labels_aligned(shared_data):
    a = load_text_task("mr", shared_data, seed=0)
    b = load_text_task("mr", shared_data, seed=1)
    assert a.test.texts != b.test.texts
    pos = set((shared_data / "text/mr/rt-polarity.pos").read_text(encoding="latin-1").splitlines()[:200])
    pos = {p.strip() for p in pos}
    for t, lab in zip(a.test.texts, a.test.labels.tolist()):
        if t in pos:
            assert lab == 1


@pytest.mark.shared_data
def test_glove_on_the_shared_file(shared_data):
    words, vectors = load_glove(shared_data)
    assert vectors.shape == (len(words), 50) and words[0] == "the"
    v = Vocabulary(["<pad>", "<unk>", "the", "notawordxyz"])
    m, found = glove_matrix(v, (words, vectors))
    assert found == 1
    assert torch.equal(m[2], torch.as_tensor(vectors[0]))
    assert torch.all(m[:2] == 0) and m[3].abs().max() > 0


# ------------------------------------------------------------------ malformed / missing files

def test_missing_files_name_the_file(tmp_path):
    with pytest.raises(DataError, match="rt-polarity.pos"):
        load_text_task("mr", tmp_path)
    with pytest.raises(DataError, match="not found"):
        load_text_task("mr", tmp_path / "nowhere")
    with pytest.raises(ConfigError, match="unknown text task"):
        load_text_task("imdb", tmp_path)


def _write(root, rel, text, encoding="utf-8"):
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text, encoding=encoding)
    return p


def test_malformed_files_raise_data_error_with_file_and_reason(tmp_path):
    _write(tmp_path, "text/sst2/stsa.binary.train", "1 good film\nmaybe bad film\n", "latin-1")
    _write(tmp_path, "text/sst2/stsa.binary.test", "0 bad\n", "latin-1")
    with pytest.raises(DataError, match=r"stsa.binary.train, line 2"):
        load_text_task("sst2", tmp_path)
    _write(tmp_path, "text/toxic/civil_comments_balanced_10k.csv", "id,text,target\n1,hi,0.0\n")
    with pytest.raises(DataError, match="comment_text"):
        load_text_task("toxic", tmp_path)
    _write(tmp_path, "text/toxic/civil_comments_balanced_10k.csv", "id,comment_text,target\n1,hi,0.0\n2,yo,high\n")
    with pytest.raises(DataError, match="line 3.*not a number"):
        load_text_task("toxic", tmp_path)
    _write(tmp_path, "text/urls/phishing_urls_balanced_10k.csv", "url,label\nhttp://a.b,0\nhttp://c.d,yes\n")
    with pytest.raises(DataError, match="phishing_urls_balanced_10k.csv, line 3"):
        load_text_task("urls", tmp_path)
    p = tmp_path / "text/urls/phishing_urls_balanced_10k.csv"
    p.write_bytes(b"url,label\nhttp://\xff\xfe,0\n")
    with pytest.raises(DataError, match="not valid utf-8"):
        load_text_task("urls", tmp_path)
    _write(tmp_path, "text/mr/rt-polarity.pos", "\n\n", "latin-1")
    _write(tmp_path, "text/mr/rt-polarity.neg", "bad\n", "latin-1")
    with pytest.raises(DataError, match="rt-polarity.pos: the file holds no text"):
        load_text_task("mr", tmp_path)
    _write(tmp_path, "embeddings/glove6B_50d_subset_51652w.npz", "not an npz")
    with pytest.raises(DataError, match="glove6B"):
        load_glove(tmp_path)


def test_toxic_labels_threshold_and_urls_are_text_only(tmp_path):
    _write(tmp_path, "text/toxic/civil_comments_balanced_10k.csv",
           'id,comment_text,target\n1,"nice, really",0.2\n2,"you idiot\nreally",0.5\n3,ok,0.0\n4,meh,1.0\n')
    task = load_text_task("toxic", tmp_path, test_fraction=0.25)
    pairs = dict(zip(task.train.texts + task.test.texts, torch.cat([task.train.labels, task.test.labels]).tolist()))
    assert pairs == {"nice, really": 0, "you idiot\nreally": 1, "ok": 0, "meh": 1}


def test_glove_matrix_oov_modes(tiny_text_dir):
    glove = load_glove(tiny_text_dir)
    v = Vocabulary(["<pad>", "<unk>", "good", "unseenword"])
    m, found = glove_matrix(v, glove, oov="random", oov_std=0.1, seed=0)
    m2, _ = glove_matrix(v, glove, oov="random", oov_std=0.1, seed=0)
    assert found == 1 and torch.equal(m, m2) and m.shape == (4, 8)
    assert 0 < m[3].abs().max() < 1.0
    z, _ = glove_matrix(v, glove, oov="zero")
    assert torch.all(z[3] == 0) and torch.equal(z[2], m[2])
    with pytest.raises(ConfigError):
        glove_matrix(v, glove, oov="mean")
