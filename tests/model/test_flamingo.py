"""Behaviour of our Flamingo beyond reference parity: masks, modes, threads, precisions, checkpointing, saving."""

from __future__ import annotations

import json
import threading

import pytest
import torch

from mmgpt.model.checkpoints import load_model
from mmgpt.model.cross_attention import GatedCrossAttentionBlock, text_time_for_chunk
from mmgpt.model.lora import LoraSettings, apply_lora, has_lora

MEDIA = 9


def test_text_time_immediate_and_v1_by_hand():
    ids = torch.tensor([[1, 2, MEDIA, 3, 4, MEDIA, 5]])
    assert text_time_for_chunk(ids, MEDIA).tolist() == [[0, 0, 1, 1, 1, 2, 2]]
    # v1: text shifted to the next image, tokens after the last image see none.
    assert text_time_for_chunk(ids, MEDIA, mode="openflamingo_v1").tolist() == [[1, 1, 1, 2, 2, 2, 0]]
    one = torch.tensor([[1, MEDIA, 3, 4]])
    assert text_time_for_chunk(one, MEDIA, mode="openflamingo_v1").tolist() == [[1, 1, 0, 0]]
    # A continuation chunk after one cached image.
    cont = torch.tensor([[5, 6]])
    assert text_time_for_chunk(cont, MEDIA, torch.tensor([1])).tolist() == [[1, 1]]


def test_tokens_without_image_get_exactly_zero_cross_attention():
    torch.manual_seed(0)
    block = GatedCrossAttentionBlock(dim=16, dim_visual=8, dim_head=4, heads=2, gate_init=1.0)
    x = torch.randn(1, 5, 16)
    media = torch.randn(1, 2, 3, 8)
    kv = block.media_kv(media)
    out = block.attn(x, kv, torch.tensor([[0, 0, 1, 2, 0]]), latents_per_image=3)
    assert not torch.isnan(out).any()
    assert torch.equal(out[0, [0, 1, 4]], torch.zeros(3, 16))
    assert out[0, 2].abs().sum() > 0


def test_language_only_skips_cross_attention(make_tiny_model):
    model = make_tiny_model()
    ids = torch.tensor([[1, 20, 21, 22]])
    calls = []
    for block in model.cross_attn_blocks().values():
        block.register_forward_hook(lambda *a: calls.append(1))
    with torch.no_grad():
        model(None, ids)
    assert calls == []
    with torch.no_grad():
        model(torch.zeros(1, 1, 1, 3, 32, 32), torch.tensor([[1, model.config.media_token_id, 20]]))
    assert calls


def _vision(seed, n=1, size=32):
    return torch.randn(n, 1, 1, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_threads_do_not_interfere(make_tiny_model):
    model = make_tiny_model(gate_init=1.0)
    prompt = torch.tensor([[1, model.config.media_token_id, 30, 31, 32]])
    images = [_vision(s) for s in range(4)]

    def run(vision):
        with torch.no_grad():
            logits = model(vision, prompt).logits
        return logits, model.generate(vision, prompt, max_new_tokens=6, eos_token_id=[])

    sequential = [run(v) for v in images]
    assert not torch.equal(sequential[0][0], sequential[1][0]), "images must change the logits for this test"
    results: dict[int, list] = {}
    barrier = threading.Barrier(len(images))

    def worker(i):
        barrier.wait(timeout=30)
        results[i] = [run(images[i]) for _ in range(3)]

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(images))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    for i, (logits, tokens) in enumerate(sequential):
        assert len(results[i]) == 3
        for got_logits, got_tokens in results[i]:
            assert torch.equal(got_logits, logits)
            assert torch.equal(got_tokens, tokens)


def test_left_padded_batch_generates_like_single_rows(make_tiny_model, tiny_tokenizer):
    model = make_tiny_model(gate_init=1.0)
    tiny_tokenizer.padding_side = "left"
    texts = ["<image>a red circle", "hello there <image>one small star in the top"]
    enc = tiny_tokenizer(texts, return_tensors="pt", padding=True)
    vision = torch.cat([_vision(1), _vision(2)])
    batch = model.generate(vision, enc.input_ids, enc.attention_mask, max_new_tokens=5, eos_token_id=[])
    for row, text in enumerate(texts):
        single = tiny_tokenizer([text], return_tensors="pt").input_ids
        alone = model.generate(vision[row : row + 1], single, max_new_tokens=5, eos_token_id=[])
        assert batch[row, -5:].tolist() == alone[0, -5:].tolist()


def test_generation_encodes_images_once_and_kv_once(make_tiny_model, monkeypatch):
    model = make_tiny_model(gate_init=1.0)
    counts = {"vision": 0, "kv": 0}
    original_encode, original_kv = model.encode_vision, model.media_kv

    def encode(x):
        counts["vision"] += 1
        return original_encode(x)

    def kv(latents):
        counts["kv"] += 1
        return original_kv(latents)

    monkeypatch.setattr(model, "encode_vision", encode)
    monkeypatch.setattr(model, "media_kv", kv)
    prompt = torch.tensor([[1, model.config.media_token_id, 30, 31]])
    out = model.generate(_vision(0), prompt, max_new_tokens=6, num_beams=3, eos_token_id=[])
    assert out.shape == (1, 10)
    assert counts == {"vision": 1, "kv": 1}


def test_beam_search_finds_at_least_greedy_likelihood(make_tiny_model):
    model = make_tiny_model(gate_init=1.0)
    prompt = torch.tensor([[1, model.config.media_token_id, 30, 31]])
    vision = _vision(0)

    def logprob(seq):
        with torch.no_grad():
            logits = model(vision, seq).logits[0, prompt.shape[1] - 1 : -1].log_softmax(-1)
        return logits.gather(-1, seq[0, prompt.shape[1] :, None]).sum().item()

    greedy = model.generate(vision, prompt, max_new_tokens=4, eos_token_id=[])
    beam = model.generate(vision, prompt, max_new_tokens=4, num_beams=4, eos_token_id=[], length_penalty=0.0)
    one_beam = model.generate(vision, prompt, max_new_tokens=4, num_beams=1, eos_token_id=[])
    assert torch.equal(one_beam, greedy)
    assert logprob(beam) >= logprob(greedy) - 1e-5


def test_presence_and_frequency_penalties_lower_the_reply_s_own_tokens_only():
    from mmgpt.model.generation import GenerationOptions, OpenAIPenaltyLogitsProcessor

    ids = torch.tensor([[5, 7, 7, 7, 8]])  # a two-token prompt (5, 7), then the reply 7, 7, 8
    penalised = OpenAIPenaltyLogitsProcessor(2, presence=0.5, frequency=0.25)(ids, torch.zeros(1, 10))
    expected = torch.zeros(1, 10)
    expected[0, 7] = -0.5 - 2 * 0.25  # in the reply twice; its prompt occurrence does not count
    expected[0, 8] = -0.5 - 0.25
    assert torch.equal(penalised, expected)
    assert torch.equal(OpenAIPenaltyLogitsProcessor(5, 0.5, 0.25)(ids, torch.ones(1, 10)), torch.ones(1, 10))
    with pytest.raises(ValueError, match="presence_penalty must be in"):
        GenerationOptions(presence_penalty=2.5)


def test_a_strong_presence_penalty_stops_greedy_decoding_repeating_itself(make_tiny_model):
    model = make_tiny_model()
    prompt = torch.tensor([[1, 30, 31]])
    plain = model.generate(None, prompt, max_new_tokens=12, eos_token_id=[])[0, 3:].tolist()
    assert len(set(plain)) < len(plain)  # a random tiny model repeats itself
    # greater than the spread of a random tiny model's logits, so no token can be chosen twice
    varied = model.generate(None, prompt, max_new_tokens=12, eos_token_id=[], presence_penalty=2.0)
    assert len(set(varied[0, 3:].tolist())) == 12


def test_sampling_is_reproducible_with_seed(make_tiny_model):
    model = make_tiny_model()
    prompt = torch.tensor([[1, 30, 31]])
    a = model.generate(
        None, prompt, max_new_tokens=8, do_sample=True, temperature=1.5, top_k=20, top_p=0.95, seed=7
    )
    b = model.generate(
        None, prompt, max_new_tokens=8, do_sample=True, temperature=1.5, top_k=20, top_p=0.95, seed=7
    )
    assert torch.equal(a, b)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precisions_run_close_to_fp32(make_tiny_model, dtype):
    model = make_tiny_model(gate_init=1.0)
    ids = torch.tensor([[1, model.config.media_token_id, 30, 31, 32]])
    vision = _vision(0)
    with torch.no_grad():
        ref = model(vision, ids).logits
        half = model.to(dtype)(vision.to(dtype), ids).logits.float()
    assert torch.isfinite(half).all()
    assert (half - ref).abs().max() < 0.15
    out = model.generate(vision.to(dtype), ids, max_new_tokens=3)
    assert out.shape == (1, 8)


def test_gradient_checkpointing_gives_same_gradients(make_tiny_model):
    model = make_tiny_model(gate_init=1.0)
    apply_lora(model, LoraSettings(r=4))
    model.train()
    ids = torch.tensor(
        [[1, model.config.media_token_id, 30, 31, 32, 33], [0, 1, model.config.media_token_id, 30, 31, 32]]
    )
    mask = torch.tensor(
        [[1] * 6, [0] + [1] * 5]
    )  # left padding: an explicit mask, as the training loop passes
    vision = torch.cat([_vision(0), _vision(1)])

    def grads():
        model.zero_grad()
        model(vision, ids, attention_mask=mask, labels=ids).loss.backward()
        return {
            n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad and p.grad is not None
        }

    plain = grads()
    model.gradient_checkpointing_enable()
    checkpointed = grads()
    assert plain.keys() == checkpointed.keys() and plain
    for name in plain:
        torch.testing.assert_close(checkpointed[name], plain[name], atol=1e-6, rtol=1e-5)


def test_save_and_load_round_trip_with_adapters(tmp_path, make_tiny_model):
    model = make_tiny_model(gate_init=1.0)
    apply_lora(model, LoraSettings(r=4))
    for name, p in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.1)
    model.save_pretrained(tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    ids = torch.tensor([[1, model.config.media_token_id, 30, 31]])
    with torch.no_grad():
        torch.testing.assert_close(loaded(_vision(0), ids).logits, model(_vision(0), ids).logits)
    assert loaded.tokenizer is not None and loaded.image_processor is not None
    assert loaded.config.lora["r"] == 4
    # peft keeps the targets in a set; written sorted, two identical runs write identical files
    targets = json.loads((tmp_path / "m" / "adapter" / "adapter_config.json").read_text())["target_modules"]
    assert len(targets) > 2 and targets == sorted(targets)


def test_adapters_merged_on_load_give_the_same_model(tmp_path, make_tiny_model):
    model = make_tiny_model(gate_init=1.0)
    apply_lora(model, LoraSettings(r=4, preset="release+ffn"))
    for name, p in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.1)
    model.save_pretrained(tmp_path / "m")
    merged = load_model(tmp_path / "m", merge_adapters=True)
    assert not has_lora(merged) and merged.config.lora is None
    assert not any("lora" in name for name in merged.state_dict())
    ids = torch.tensor([[1, model.config.media_token_id, 30, 31]])
    with torch.no_grad():
        want = model(_vision(0), ids).logits
        assert (want - load_model(tmp_path / "m")(_vision(0), ids).logits).abs().max() == 0
        # the adapters move the logits, so agreeing with them is not agreeing with the base alone
        assert (want - make_tiny_model(gate_init=1.0)(_vision(0), ids).logits).abs().max() > 1e-3
        torch.testing.assert_close(merged(_vision(0), ids).logits, want, atol=1e-5, rtol=1e-4)
    plain = make_tiny_model(gate_init=1.0)
    plain.save_pretrained(tmp_path / "plain")
    assert not has_lora(load_model(tmp_path / "plain", merge_adapters=True))


def test_sharded_save_and_bf16_load(tmp_path, make_tiny_model):
    model = make_tiny_model(gate_init=1.0)
    model.save_pretrained(tmp_path / "m", safe_max_shard_size="200KB")
    assert (tmp_path / "m" / "model.safetensors.index.json").exists()
    assert len(list((tmp_path / "m").glob("model-*.safetensors"))) > 1
    loaded = load_model(tmp_path / "m", dtype="bfloat16")
    assert {p.dtype for p in loaded.parameters()} == {torch.bfloat16}
    ids = torch.tensor([[1, model.config.media_token_id, 30, 31]])
    with torch.no_grad():
        got = loaded(_vision(0).bfloat16(), ids).logits.float()
        want = model(_vision(0), ids).logits
    assert (got - want).abs().max() < 0.15


def test_missing_weight_in_model_dir_is_named(tmp_path, make_tiny_model):
    from safetensors.torch import load_file, save_file

    from mmgpt.errors import CheckpointError

    model = make_tiny_model()
    model.save_pretrained(tmp_path / "m")
    state = load_file(str(tmp_path / "m" / "model.safetensors"))
    del state["perceiver.norm.weight"]
    save_file(state, str(tmp_path / "m" / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"perceiver\.norm\.weight"):
        load_model(tmp_path / "m")


def test_tokenizer_special_tokens_follow_openflamingo_order():
    from mmgpt.model.tokenizer import add_flamingo_special_tokens, train_bpe_tokenizer

    tok = train_bpe_tokenizer(["a b c d e f"] * 5, vocab_size=280)
    base = len(tok)
    assert tok.pad_token is None
    ids = add_flamingo_special_tokens(tok)
    assert (ids.endofchunk, ids.media, ids.pad) == (base, base + 1, base + 2)
    assert add_flamingo_special_tokens(tok) == ids and len(tok) == base + 3


def test_tiny_tokenizer_gives_every_digit_a_token_like_llama():
    from mmgpt.model.tokenizer import train_bpe_tokenizer

    # numbers frequent enough that BPE merges them into single tokens when left to itself
    texts = [f"{a} plus {b} equals {a + b}." for a in range(21) for b in range(21)] * 3
    text = "13 plus 17 equals 30."
    split = train_bpe_tokenizer(texts, vocab_size=300, split_digits=True)
    merged = train_bpe_tokenizer(texts, vocab_size=300)
    for tok in (split, merged):
        assert tok.decode(tok(text, add_special_tokens=False)["input_ids"]) == text
    split_tokens = split.tokenize(text)
    assert [t for t in split_tokens if any(c.isdigit() for c in t)] == list("131730")
    assert any(sum(c.isdigit() for c in t) > 1 for t in merged.tokenize(text))


def test_lora_input_casts_left_to_autocast_change_nothing(make_tiny_model):
    """bf16 frozen weights + fp32 adapters under autocast: same loss and adapter gradients without peft's casts."""
    from mmgpt.model.precision import cast_frozen_parameters, skip_lora_input_casts

    model = make_tiny_model(gate_init=1.0)
    apply_lora(model, LoraSettings(r=4))
    cast_frozen_parameters(model, torch.bfloat16)
    model.train()
    ids = torch.tensor([[1, model.config.media_token_id, 30, 31, 32, 33]])

    def loss_and_grads():
        model.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model(_vision(0), ids, labels=ids).loss
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    loss, grads = loss_and_grads()
    assert skip_lora_input_casts(model) > 0
    loss2, grads2 = loss_and_grads()
    assert torch.equal(loss, loss2) and grads.keys() == grads2.keys() and grads
    for name in grads:
        assert torch.equal(grads[name], grads2[name]), name


def test_more_layers_between_cross_attention_than_the_model_has_is_refused(make_tiny_model):
    from mmgpt.errors import ConfigError

    with pytest.raises(ConfigError, match="cross_attn_every_n_layers=3 gives none of the language model's 2"):
        make_tiny_model(num_layers=2, cross_attn_every_n_layers=3)
    model = make_tiny_model(num_layers=2, cross_attn_every_n_layers=2)
    assert [layer.gated_cross_attn_layer is not None for layer in model.flamingo_layers()] == [False, True]
