"""The text task: character-level language modelling of a UTF-8 text, validation bits per
character, sampling, and one-line errors for texts it cannot train on."""

import math
from pathlib import Path

import numpy as np
import pytest

import rnnfast
from rnnfast.config import resolve
from rnnfast.grid import run_id
from rnnfast.run_setup import RunSetup

TEXT = "the quick brown fox jumps over the lazy dog. " * 120  # 5,400 characters, 28 kinds
SMALL = {"task": "text", "hidden_size": 16, "num_steps": 10, "batch_size": 8, "epochs": 2}


def test_vocabulary_streams_and_validation_split():
    s = RunSetup(resolve(SMALL), TEXT)
    vocab = sorted(set(TEXT))
    assert s.data.artifacts == {"vocabulary": "".join(vocab)}
    f = s.form
    assert (f.inputs, f.input_size, f.vocab, f.outputs) == ("onehot", 28, 28, 28)
    assert (f.mode, f.per_step, f.steps, f.batch) == ("stream", True, 10, 8)
    n_valid = int(len(TEXT) * 0.05)
    train = s.data.train(1)
    ids = np.array([vocab.index(c) for c in TEXT])
    cols = (len(TEXT) - n_valid - 1) // 8
    np.testing.assert_array_equal(train.x[1], ids[cols : 2 * cols])  # row 1: the next stretch
    np.testing.assert_array_equal(train.y[1], ids[cols + 1 : 2 * cols + 1])  # shifted by one
    assert s.updates_per_epoch == cols // 10
    ev = s.data.evaluations[0]
    assert ev.name == "valid" and ev.metrics == ("loss", "bpc")
    # the validation targets: whole windows of the last n_valid characters, ending at the last
    v = ev.split
    assert v.y.shape[1] % 10 == 0 and n_valid - 10 * 8 < v.y.size <= n_valid
    np.testing.assert_array_equal(v.y.ravel(), ids[len(ids) - v.y.size :])
    np.testing.assert_array_equal(v.x.ravel(), ids[len(ids) - v.y.size - 1 : -1])


def test_training_lowers_validation_bits_per_character():
    r = rnnfast.train({**SMALL, "epochs": 4, "lr": 0.01, "hidden_size": 32}, data=TEXT)
    bpc = r.curves[r.curves["metric"] == "valid_bpc"]["value"].to_numpy()
    loss = r.curves[r.curves["metric"] == "valid_loss"]["value"].to_numpy()
    np.testing.assert_allclose(bpc, loss / math.log(2))
    assert len(bpc) == 4 and bpc[-1] < 0.6 * math.log2(28)
    assert r.final["valid_bpc"] == bpc[-1]


@pytest.mark.parametrize("extra", [{"embedding": 6}, {"truncation": "true", "cell": "gru"}])
def test_embedding_and_true_truncation_train(extra):
    r = rnnfast.train({**SMALL, **extra}, data=TEXT)
    assert r.status == "ok"
    if "embedding" in extra:
        assert r.params["embedding.weight"].shape == (28, 6)


def test_file_and_string_give_the_same_run_and_the_id_hashes_the_text(tmp_path):
    p = tmp_path / "t.txt"
    p.write_text(TEXT, encoding="utf-8")
    a = rnnfast.train({**SMALL, "data": str(p)})
    b = rnnfast.train(SMALL, data=TEXT)
    np.testing.assert_array_equal(a.curves["value"], b.curves["value"])
    q = tmp_path / "moved.txt"
    p.rename(q)
    assert run_id(resolve({**SMALL, "data": str(q)})) == run_id(a.config | {"data": str(q)})
    before = run_id(resolve({**SMALL, "data": str(q)}))
    q.write_text(TEXT + "!", encoding="utf-8")
    assert run_id(resolve({**SMALL, "data": str(q)})) != before


def test_sample_is_deterministic_for_a_seed_and_uses_the_vocabulary():
    r = rnnfast.train({**SMALL, "epochs": 3, "lr": 0.01}, data=TEXT)
    a = rnnfast.sample(r, prime="the ", length=80, temperature=0.5, seed=3)
    assert a == rnnfast.sample(r, prime="the ", length=80, temperature=0.5, seed=3)
    assert len(a) == 80 and set(a) <= set(TEXT)
    assert a != rnnfast.sample(r, prime="the ", length=80, temperature=0.5, seed=4)
    cold = rnnfast.sample(r, prime="the quick", length=30, temperature=0.05, seed=0)
    assert cold.startswith(" brown fox")  # near-greedy: the text's own continuation
    assert len(rnnfast.sample(r, length=5)) == 5  # no prime: from the zero state
    with pytest.raises(ValueError, match=r"^prime: characters not in the run's vocabulary: 'Z'"):
        rnnfast.sample(r, prime="Z")
    with pytest.raises(ValueError, match=r"^temperature: expected a number > 0"):
        rnnfast.sample(r, temperature=0)
    other = rnnfast.train({"task": "addition", "updates": 10})
    with pytest.raises(ValueError, match=r"^result: not a text run"):
        rnnfast.sample(other)


def test_bad_texts_fail_with_one_line(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    latin = tmp_path / "latin1.txt"
    latin.write_bytes("caf\xe9 au lait".encode("latin-1"))
    cases = [
        ({"data": str(tmp_path / "none.txt")}, None, r"^data: .*none\.txt: no such file$"),
        ({"data": str(tmp_path)}, None, r"is a directory"),
        ({"data": str(empty)}, None, r"^data: .*empty\.txt: the text is empty$"),
        ({"data": str(latin)}, None, r"^data: .*latin1\.txt: not UTF-8 \(byte 3: b'\\xe9'\)$"),
        ({}, None, r"^data: the text task needs a UTF-8 file"),
        ({}, "", r"^data: data argument: the text is empty$"),
        ({}, b"bytes", r"^data: expected a str \(the text\)"),
        ({}, "short text", r"fewer than one window of num_steps=10 for each of batch_size=8"),
        ({"valid_fraction": 0.01}, "x" * 200, r"^valid_fraction: the last 2 characters"),
        ({"bidirectional": True}, TEXT, r"^bidirectional: a language model"),
    ]
    for cfg, data, message in cases:
        with pytest.raises(ValueError, match=message) as e:
            rnnfast.train({**SMALL, **cfg}, data=data)
        assert "\n" not in str(e.value)


def test_example_text_in_the_repository_is_utf8():
    p = Path(__file__).resolve().parents[1] / "experiments" / "data" / "grammar.txt"
    text = p.read_text(encoding="utf-8")
    assert len(text) > 100_000 and len(set(text)) < 40
