"""Leaving out the padding after the longest caption changes no text feature and no gradient (causal attention)."""
import torch

from model import build_model, model_config_by_name
from utils.tokenizer import tokenize, trim_padding

CAPTIONS = ["a cat", "two dogs playing with a red frisbee on a sunny beach", "a bus"]


def test_trim_keeps_every_token_up_to_the_longest_caption():
    tokens = tokenize(CAPTIONS, context_length=32)
    trimmed = trim_padding(tokens)
    longest = int(tokens.ne(0).sum(dim=1).max())
    assert trimmed.shape == (3, longest)
    assert torch.equal(trimmed, tokens[:, :longest]) and tokens[:, longest:].eq(0).all()
    assert trim_padding(torch.zeros(2, 5, dtype=torch.long)).shape == (2, 1)


def assert_close(a, b):
    assert (a - b).abs().max() <= 1e-5 * a.abs().max(), f"max difference {(a - b).abs().max():.2e}"


def test_trimmed_tokens_give_the_same_features_and_gradients():
    torch.manual_seed(0)
    model = build_model(model_config_by_name("tiny"))
    tokens = tokenize(CAPTIONS, context_length=model.config.context_length)
    results = []
    for batch in (tokens, trim_padding(tokens)):
        model.zero_grad()
        features = model.encode_text(batch)
        features.square().sum().backward()
        results.append((features.detach(), model.transformer.resblocks[0].attn.in_proj_weight.grad.clone(),
                        model.positional_embedding.grad.clone()))
    (full, full_grad, full_position_grad), (short, short_grad, short_position_grad) = results
    assert_close(full, short)
    assert_close(full_grad, short_grad)
    # positions after the longest caption get no gradient either way
    length = trim_padding(tokens).shape[1]
    assert full_position_grad[length:].abs().max() == 0
    assert_close(full_position_grad, short_position_grad)
