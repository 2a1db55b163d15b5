"""Tokenizing a call's texts in chunks into flat token rows: the ids of one tokenizers call, less memory."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from forking import exit_code_within

from fastembed_rt.artifact import TokenizerInfo
from fastembed_rt.tokenizer import PROMPT_LENGTHS_CACHED, TOKENIZE_CHUNK_CHARS, TOKENIZE_CHUNK_TEXTS, Tokenizer, _chunks

MAX_SEQ_LENGTH = 256
WORDS = [
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "a",
    "lazy",
    "dog",
    "while",
    "seven",
    "wizards",
    "quietly",
    "hex",
    "Zürich",
]


def _tokenizer(minilm_dir: Path) -> Tokenizer:
    return Tokenizer(minilm_dir, TokenizerInfo("tokenizer.json", MAX_SEQ_LENGTH, 0, (0, 101, 102)))


def _texts(count: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, int(rng.integers(0, 40)))) for _ in range(count)]


def test_texts_tokenized_in_chunks_get_the_ids_of_one_tokenizers_call(minilm_dir: Path) -> None:
    from tokenizers import Tokenizer as RustTokenizer

    # Single texts first (token types all 0), pairs from the third chunk on (types 1 appear late), empty and
    # over-long texts among them.
    items: list[str | tuple[str, str]] = [*_texts(2 * TOKENIZE_CHUNK_TEXTS + 7)]
    items[5], items[TOKENIZE_CHUNK_TEXTS + 1] = "", " ".join(["wizards"] * 400)
    pairs = list(zip(_texts(300, seed=1), _texts(300, seed=2)))
    pairs[3] = (pairs[3][0], " ".join(["fox"] * 400))
    items += pairs
    reference = RustTokenizer.from_file(str(minilm_dir / "tokenizer.json"))
    reference.no_padding()
    reference.enable_truncation(max_length=MAX_SEQ_LENGTH, strategy="longest_first")
    expected = reference.encode_batch(items, add_special_tokens=True)

    encoded = _tokenizer(minilm_dir).encode(items)

    assert len(encoded) == len(items) > 2 * TOKENIZE_CHUNK_TEXTS
    assert encoded.lengths.tolist() == [len(e.ids) for e in expected]
    for row, (ids, types, e) in enumerate(zip(encoded.ids, encoded.type_ids, expected)):
        assert ids.dtype == types.dtype == np.int64
        assert ids.tolist() == e.ids, row
        assert types.tolist() == e.type_ids, row
    assert encoded.truncated.tolist() == [bool(e.overflowing) for e in expected]
    assert encoded.truncated.sum() == 2
    assert any(1 in types for types in encoded.type_ids[-300:])


def test_single_texts_share_one_zero_type_row_and_rows_are_read_only(minilm_dir: Path) -> None:
    encoded = _tokenizer(minilm_dir).encode(_texts(50))
    assert all(not types.any() and len(types) == len(ids) for ids, types in zip(encoded.ids, encoded.type_ids))
    assert encoded.type_ids.values.size == encoded.lengths.max()
    with pytest.raises(ValueError, match="read-only"):
        encoded.ids[0][0] = 7
    empty = _tokenizer(minilm_dir).encode([])
    assert len(empty) == 0 and empty.lengths.size == 0 and empty.truncated.size == 0


def test_chunks_cover_every_text_in_order_within_the_text_and_character_bounds() -> None:
    sizes = [10] * (TOKENIZE_CHUNK_TEXTS + 5) + [TOKENIZE_CHUNK_CHARS // 2] * 3 + [TOKENIZE_CHUNK_CHARS + 1, 1]
    items: list[str | tuple[str, str]] = ["x" * size for size in sizes]
    items.append(("x" * 3, "y" * 4))
    runs = _chunks(items)
    assert [i for start, stop in runs for i in range(start, stop)] == list(range(len(items)))
    for start, stop in runs:
        assert 0 < stop - start <= TOKENIZE_CHUNK_TEXTS
        chars = sum(len(item) if isinstance(item, str) else sum(map(len, item)) for item in items[start:stop])
        assert chars <= TOKENIZE_CHUNK_CHARS or stop - start == 1
    assert (TOKENIZE_CHUNK_TEXTS + 8, TOKENIZE_CHUNK_TEXTS + 9) in runs  # the over-long text alone
    assert _chunks([]) == []


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the peak resident set from /proc")
def test_a_large_call_holds_token_ids_not_every_texts_tokenizers_encoding(minilm_dir: Path) -> None:
    """Measured here on these 50,000 texts (1.3 million tokens): holding every text's tokenizers Encoding at
    once grew the peak RSS by 271 MB; chunked into flat rows by 41 MB (the ids twice while they are joined,
    21 MB, and the allocator's slack). A fresh process, so earlier tests' freed memory cannot hide growth."""
    script = textwrap.dedent(
        f"""
        import numpy as np
        from pathlib import Path
        from fastembed_rt.artifact import TokenizerInfo
        from fastembed_rt.tokenizer import Tokenizer

        def peak_mb():
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024

        words = "the quick brown fox jumps over a lazy dog while seven wizards quietly hex Zürich".split()
        rng = np.random.default_rng(0)
        texts = [" ".join(rng.choice(words, 20)) + f" {{i}}" for i in range(50_000)]
        tokenizer = Tokenizer(Path({str(minilm_dir)!r}), TokenizerInfo("tokenizer.json", 256, 0, (0, 101, 102)))
        tokenizer.encode(texts[:100])
        before = peak_mb()
        encoded = tokenizer.encode(texts)
        print(peak_mb() - before, int(encoded.lengths.sum()))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    growth, tokens = done.stdout.split()
    assert int(tokens) > 50_000 * 20
    assert float(growth) < 60, f"peak RSS grew {float(growth):.0f} MB tokenizing 50,000 texts"


def test_split_special_tokens_reads_a_typed_special_token_as_text_as_transformers(tmp_path: Path) -> None:
    """tokenizer.json cannot hold transformers' split_special_tokens: "[MASK]" in a text became the mask token."""
    import json

    from sentence_transformers import SentenceTransformer as TorchSentenceTransformer
    from tiny_models import build_tiny_model

    from fastembed_rt import SentenceTransformer
    from fastembed_rt.export import export_model

    model_dir = build_tiny_model(tmp_path, "bert", "mean")
    config_file = model_dir / "tokenizer_config.json"
    config_file.write_text(json.dumps({**json.loads(config_file.read_text()), "split_special_tokens": True}))
    export_model(model_dir, tmp_path / "artifact", stsb=False, variants="fp32")
    torch_model = TorchSentenceTransformer(str(model_dir), device="cpu")
    runtime = SentenceTransformer(tmp_path / "artifact")
    texts = ["fill the [MASK] in", "how do I use the [SEP] token?", "plain text"]
    theirs = torch_model.tokenize(texts)
    ours = runtime.tokenize(texts)
    np.testing.assert_array_equal(ours["input_ids"], theirs["input_ids"].numpy())
    mask = runtime.tokenizer.token_to_id("[MASK]")
    assert mask is not None and mask not in ours["input_ids"][0]  # the text's brackets and word instead
    cosines = runtime.encode(texts, normalize_embeddings=True) * torch_model.encode(texts, normalize_embeddings=True)
    assert cosines.sum(axis=1).min() >= 0.9999
    runtime.close()


def _byte_level_bpe(root: Path) -> Tokenizer:
    """A small byte-level BPE tokenizer (Qwen's and ModernBERT's kind) that appends an end token, as a decoder's."""
    from tokenizers import Tokenizer as RustTokenizer
    from tokenizers import decoders, models, pre_tokenizers, processors, trainers

    backend = RustTokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<eot>"], show_progress=False)
    backend.train_from_iterator([" ".join(WORDS)] * 50 + ["Query: world hello"] * 50, trainer=trainer)
    eot = backend.token_to_id("<eot>")
    backend.post_processor = processors.TemplateProcessing(single="$A <eot>", special_tokens=[("<eot>", eot)])
    backend.save(str(root / "tokenizer.json"))
    return Tokenizer(root, TokenizerInfo("tokenizer.json", 24, eot, (eot,)))


def test_a_prompted_texts_windows_tokenize_the_prompt_with_the_text_as_truncation_does(tmp_path: Path) -> None:
    """A byte-level BPE merges across the seam ("Query: " + "world": "Ġworld"): the prompt and the text tokenized
    apart gave the first window other tokens than the same text truncated (cosine 0.989 on a Qwen model)."""
    tokenizer = _byte_level_bpe(tmp_path)
    prompt, text = "Query: ", "world hello " + " ".join(WORDS * 3)
    truncated = tokenizer.encode([prompt + text]).ids[0]
    joint = tokenizer.untruncated.encode(prompt + text, add_special_tokens=False).ids
    apart = tokenizer.untruncated.encode(prompt, add_special_tokens=False).ids
    assert joint[: len(apart)] != apart  # the seam merges: the case at stake
    windows = tokenizer.encode_windows([text], prompt=prompt, overlap=3)
    rows = [row.tolist() for row in windows.encoded.ids]
    assert len(rows) > 2 and rows[0] == truncated.tolist()
    eot = tokenizer.info.pad_token_id
    head = rows[0][: len(rows[0]) - 1 - int(windows.weights[0])]  # the prompt's tokens in the joint tokenization
    body = joint[len(head) :]
    step = int(windows.weights[0]) - 3
    for w, row in enumerate(rows):  # each: the prompt, a run of the text overlapping the last by 3, the end token
        assert row[: len(head)] == head and row[-1] == eot and len(row) <= 24
        assert row[len(head) : -1] == body[w * step : w * step + int(windows.weights[w])]
    assert w * step + int(windows.weights[-1]) == len(body)  # every token of the text is in a window
    starts = [int(s) for s, _ in windows.spans]
    assert starts[0] == 0 and text[int(windows.spans[-1][1]) - 1 :] == text[-1:]


def test_a_prompted_text_that_fits_counts_the_text_tokens_of_the_joint_tokenization(tmp_path: Path) -> None:
    """The prompt's tokens were counted alone ("Query: " ends in a space token the text's first word takes in):
    a text that fits was one token short, unlike a longer one, whose windows count the joint tokenization."""
    tokenizer = _byte_level_bpe(tmp_path)
    prompt = "Query: "
    texts = ["world", "hello world fox"]
    windows = tokenizer.encode_windows(texts, prompt=prompt)
    for text, weight in zip(texts, windows.weights):
        joint = tokenizer.untruncated.encode(prompt + text, add_special_tokens=False)
        assert int(weight) == sum(end > len(prompt) for _, end in joint.offsets) > 0, text
    assert tokenizer.encode_windows(["world"]).weights.tolist() == [
        len(tokenizer.untruncated.encode("world", add_special_tokens=False).ids)
    ]


@pytest.mark.parametrize("side", ["right", "left"])
def test_a_long_text_repeated_over_pairs_is_cut_once_and_the_pairs_keep_the_uncut_tokens(
    minilm_dir: Path, side: str
) -> None:
    """A reranked 900 kB query was tokenized in full once per document (0.7 s each): it is now tokenized once and
    cut past what truncation keeps; every pair's ids equal those of the uncut pair, whatever the document's length."""
    from tokenizers import Tokenizer as RustTokenizer

    rng = np.random.default_rng(3)
    query = " ".join(rng.choice([*WORDS, "tokenization", "unbelievably"], 6000))  # ~40 k characters
    documents = ["", "fox", *[" ".join(rng.choice(WORDS, n)) for n in (60, 126, 127, 128, 200, 400, 3000)]]
    pairs: list[str | tuple[str, str]] = [(query, d) for d in documents] + [(d, query) for d in documents]
    reference = RustTokenizer.from_file(str(minilm_dir / "tokenizer.json"))
    reference.no_padding()
    reference.enable_truncation(max_length=MAX_SEQ_LENGTH, strategy="longest_first", direction=side)
    expected = reference.encode_batch(pairs, add_special_tokens=True)
    tokenizer = _tokenizer(minilm_dir)

    cut = tokenizer._cut_long_pair_texts(pairs, side, MAX_SEQ_LENGTH)
    queries = [p[0] for p in cut[: len(documents)]] + [p[1] for p in cut[len(documents) :]]
    assert all(len(q) < len(query) // 10 for q in queries), [len(q) for q in queries]  # every query cut
    kept = query.startswith if side == "right" else query.endswith
    assert all(kept(q) for q in queries)
    # a short document as it was; the 3,000-word one, long as well, cut too
    assert [p[1] for p in cut[: len(documents) - 1]] == documents[:-1] and len(cut[len(documents) - 1][1]) < 3000
    encoded = tokenizer.encode(pairs, truncation_direction=side)  # type: ignore[arg-type]
    for row, (ids, types, e) in enumerate(zip(encoded.ids, encoded.type_ids, expected)):
        assert ids.tolist() == e.ids, row
        assert types.tolist() == e.type_ids, row
    assert encoded.truncated.all()


def test_prompt_lengths_kept_are_bounded_and_each_still_counted_right(minilm_dir: Path) -> None:
    """A prompt with per-request text is a new key each call: the dict of prompt lengths grew without end."""
    tok = _tokenizer(minilm_dir)
    prompts = [f"Instruct: answer user {i} about rivers\nQuery: " for i in range(PROMPT_LENGTHS_CACHED + 200)]
    counted = [tok.prompt_length(prompt) for prompt in prompts]
    assert len(tok._prompt_lengths) <= PROMPT_LENGTHS_CACHED
    expected = [len(tok.backend.encode(prompt).ids) - 1 for prompt in prompts]  # [SEP] is not the prompt's
    assert counted == expected
    assert tok.prompt_length(prompts[0]) == expected[0]  # dropped from the cache, counted again
    import gc
    import weakref

    gc.disable()  # freed with its last reference, not left to the cycle collector (an lru_cache of a bound method)
    try:
        alive = weakref.ref(tok)
        del tok
        assert alive() is None
    finally:
        gc.enable()


def test_a_max_seq_length_set_during_calls_cuts_each_call_at_one_length_and_leaves_nothing_stale(
    minilm_dir: Path,
) -> None:
    """Threads sharing a model: a call cut its first 1,024 texts at one max_seq_length and the rest at the one set
    meanwhile (the truncating tokenizer was reconfigured in place), and a chunked call that read the old length as
    it changed cached its windows at that length: every later call cut 2 windows where 15 were due."""
    import threading
    import time

    tokenizer = _tokenizer(minilm_dir)
    tokenizer.max_seq_length = 100  # set before any call (`model.max_seq_length = n` after loading): no copy made
    assert tokenizer.encode(["wizards " * 200]).lengths.tolist() == [100] and list(tokenizer._backends) == ["right@100"]
    texts = [" ".join(["wizards"] * 300)] * (2 * TOKENIZE_CHUNK_TEXTS + 200)  # every text over both lengths
    stop = threading.Event()

    def toggle() -> None:
        while not stop.is_set():
            for length in (256, 12):
                tokenizer.max_seq_length = length
                time.sleep(0.0005)

    toggler = threading.Thread(target=toggle, daemon=True)
    toggler.start()
    try:
        for _ in range(6):
            assert len(set(tokenizer.encode(texts).lengths.tolist())) == 1, "one call cut at two lengths"
    finally:
        stop.set()
        toggler.join(timeout=30)

    document = " ".join(_texts(60, seed=3))
    tokenizer.max_seq_length = 64
    due = len(tokenizer.encode_windows([document]).owner)
    assert due > 5
    rng = np.random.default_rng(0)
    for _ in range(30):
        tokenizer.max_seq_length = 256
        racing = threading.Thread(target=tokenizer.encode_windows, args=([document],))
        racing.start()
        time.sleep(float(rng.random()) * 0.01)
        tokenizer.max_seq_length = 64
        racing.join(timeout=30)
        assert len(tokenizer.encode_windows([document]).owner) == due, "windows of a length no longer set"
    # nothing of another length is kept, and a prompt is counted at the length set: the loaded tokenizer, left at
    # 256 by a set while a call held it, counted a 300-token prompt as 255 at 64 (include_prompt=False: zero rows)
    assert all(key.endswith("@64") for key in tokenizer._backends if "@" in key)
    prompt = "wizards " * 300
    fresh = _tokenizer(minilm_dir)
    fresh.max_seq_length = 64
    assert tokenizer.prompt_length(prompt) == fresh.prompt_length(prompt) == 63
    tokenizer.encode(["x"], max_length=128)  # a call's own length (a multi-vector query length), then set
    tokenizer.max_seq_length = 128
    tokenizer.max_seq_length = 256
    assert tokenizer.prompt_length(prompt) == 255


@pytest.mark.parametrize("side", ["right", "left"])
def test_a_long_text_cut_before_tokenizing_gets_the_tokens_of_the_whole_texts_truncation(
    minilm_dir: Path, side: str
) -> None:
    """Truncation tokenized a whole 2 MB text to keep 256 of its tokens (2.4 s, ~600 MB); the part it keeps is now
    tokenized alone, where that gives the same tokens: checked here against the whole text's truncation for prose,
    CJK without spaces, emoji, one 100,000-character word (WordPiece's one [UNK]: the cut's word is not the whole
    text's) and no special tokens."""
    from tokenizers import Tokenizer as RustTokenizer

    tokenizer = _tokenizer(minilm_dir)
    reference = RustTokenizer.from_file(str(minilm_dir / "tokenizer.json"))
    reference.no_padding()
    reference.enable_truncation(max_length=MAX_SEQ_LENGTH, strategy="longest_first", direction=side)
    texts = [
        " ".join(_texts(3_000, seed=4)),
        "漢字かな交じり文の長い文章です。" * 4_000,
        "😀 emoji 👩‍👩‍👧 and ZWJ sequences, café crème. " * 3_000,
        "x" * 100_000,
        "short text",
    ]
    assert all(len(text) > 4 * 16 * MAX_SEQ_LENGTH for text in texts[:4])
    for special in (True, False):
        truth = reference.encode_batch(texts, add_special_tokens=special)
        encoded = tokenizer.encode(texts, side, add_special_tokens=special)  # type: ignore[arg-type]
        assert [row.tolist() for row in encoded.ids] == [e.ids for e in truth]
        assert encoded.truncated.tolist() == [True, True, True, False, False] == [bool(e.overflowing) for e in truth]
        cut = tokenizer.truncated_encodings(texts, side, add_special_tokens=special)  # type: ignore[arg-type]
        for (encoding, shift), kept, text in zip(cut, truth, texts):
            assert encoding.ids == kept.ids
            marks = encoding.special_tokens_mask
            content = [(a + shift, b + shift) for (a, b), mark in zip(encoding.offsets, marks) if not mark]
            # into the whole text (a left-truncated Rust encoding's own offsets are those of the first tokens)
            whole = tokenizer.untruncated.encode(text, add_special_tokens=False).offsets
            assert content == (whole[len(whole) - len(content) :] if side == "left" else whole[: len(content)])


def test_window_tokenizers_kept_are_bounded_and_each_overlap_still_cuts_right(minilm_dir: Path) -> None:
    """Each chunk_overlap asked for kept a ~6 MB copy of the tokenizer for good (200 overlaps: 1.2 GB)."""
    from itertools import pairwise

    from fastembed_rt.tokenizer import WINDOW_TOKENIZERS_KEPT

    tokenizer = _tokenizer(minilm_dir)
    document = " ".join(_texts(60, seed=5))
    for overlap in range(0, 40, 3):
        windows = tokenizer.encode_windows([document], overlap=overlap)
        ids = [row.tolist()[1:-1] for row in windows.encoded.ids]
        assert all(a[len(a) - overlap :] == b[:overlap] for a, b in pairwise(ids) if overlap)
        assert sum(name.startswith("windows:") for name in tokenizer._backends) <= WINDOW_TOKENIZERS_KEPT


def test_a_child_forked_while_a_thread_held_the_tokenizer_tokenizes(minilm_dir: Path) -> None:
    """A parent thread inside the tokenizer's lock at the fork is gone in the child: its lock stayed taken there and
    the child's first call waited forever (gunicorn --preload, Celery, multiprocessing's fork)."""
    import os
    import threading
    import warnings

    tokenizer = _tokenizer(minilm_dir)
    expected = tokenizer.encode(["hello world"]).ids[0].tolist()
    inside, leave = threading.Event(), threading.Event()

    def hold() -> None:
        with tokenizer._lock:
            inside.set()
            leave.wait(30)

    holder = threading.Thread(target=hold, daemon=True)
    holder.start()
    assert inside.wait(30)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # Python 3.12+: fork of a process with threads
        pid = os.fork()
    if pid == 0:
        code = 1
        try:
            tokenizer.max_seq_length = 100
            code = 0 if tokenizer.encode(["hello world"]).ids[0].tolist() == expected else 2
        finally:
            os._exit(code)
    leave.set()
    holder.join(timeout=30)
    code = exit_code_within(pid, 60)
    assert code is not None, "the forked child's call waited for a lock of a thread it does not have"
    assert code == 0
