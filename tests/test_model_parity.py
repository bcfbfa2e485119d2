"""Our CLIP against open_clip's implementation with identical weights (fp32, CPU)."""
import open_clip
import pytest
import torch

from model import load_model
from model_fixtures import move_off_initial_values

EOT = 49407


def reference_clip(vision_layers, vision_width, patch_size, text_layers, quick_gelu, embed_dim, image_size=224):
    torch.manual_seed(0)
    model = open_clip.CLIP(
        embed_dim=embed_dim,
        vision_cfg=dict(image_size=image_size, layers=vision_layers, width=vision_width, patch_size=patch_size),
        text_cfg=dict(context_length=77, vocab_size=49408, width=512, heads=8, layers=text_layers),
        quick_gelu=quick_gelu,
    )
    return move_off_initial_values(model).eval()


def example_inputs(image_size=224, count=3):
    generator = torch.Generator().manual_seed(1)
    images = torch.randn(count, 3, image_size, image_size, generator=generator)
    tokens = torch.zeros(count, 77, dtype=torch.long)
    for row, length in enumerate((5, 20, 76)[:count]):
        tokens[row, 0] = 49406
        tokens[row, 1:length] = torch.randint(1, 49406, (length - 1,), generator=generator)
        tokens[row, length] = EOT
    return images, tokens


def assert_features_close(ours: torch.Tensor, reference: torch.Tensor):
    relative = (ours - reference).abs().max() / reference.norm(dim=-1).max()
    assert relative <= 1e-5, f"max abs diff {relative:.2e} of the feature norm"


def assert_same_embeddings(ours, reference, image_size=224):
    images, tokens = example_inputs(image_size)
    with torch.no_grad():
        assert_features_close(ours.encode_image(images), reference.encode_image(images))
        assert_features_close(ours.encode_text(tokens), reference.encode_text(tokens))


@pytest.fixture(scope="module")
def open_clip_rn50():
    return reference_clip([3, 4, 6, 3], 64, None, text_layers=6, quick_gelu=False, embed_dim=1024)


@pytest.fixture(scope="module")
def open_clip_vit_b32():
    return reference_clip(12, 768, 32, text_layers=12, quick_gelu=False, embed_dim=512)


def test_rn50_open_clip_training_checkpoint_loads_with_inferred_config(open_clip_rn50, tmp_path):
    # the layout open_clip's trainer writes: {"epoch", "state_dict" with DDP's "module." prefix, ...}
    state_dict = {f"module.{key}": value for key, value in open_clip_rn50.state_dict().items()}
    torch.save({"epoch": 3, "name": "run", "state_dict": state_dict}, tmp_path / "epoch_3.pt")
    ours, _ = load_model(tmp_path / "epoch_3.pt")
    assert ours.config.vision_layers == [3, 4, 6, 3] and ours.config.text_layers == 6
    assert ours.config.embed_dim == 1024 and ours.config.image_size == 224
    assert_same_embeddings(ours, open_clip_rn50)


def test_vit_b32_state_dict_loads_with_inferred_config(open_clip_vit_b32, tmp_path):
    torch.save(open_clip_vit_b32.state_dict(), tmp_path / "vit.pt")
    ours, _ = load_model(tmp_path / "vit.pt")
    assert ours.config.vision_layers == 12 and ours.config.vision_patch_size == 32
    assert ours.config.vision_width == 768 and ours.config.embed_dim == 512
    assert_same_embeddings(ours, open_clip_vit_b32)


def test_forward_returns_normalised_features_and_scale(open_clip_rn50, tmp_path):
    torch.save(open_clip_rn50.state_dict(), tmp_path / "rn50.pt")
    ours, _ = load_model(tmp_path / "rn50.pt")
    images, tokens = example_inputs(count=2)
    with torch.no_grad():
        image_features, text_features, scale = ours(images, tokens)
        reference_image, reference_text, reference_scale = open_clip_rn50(images, tokens)
    assert torch.allclose(image_features.norm(dim=-1), torch.ones(2), atol=1e-6)
    assert_features_close(image_features, reference_image)
    assert_features_close(text_features, reference_text)
    assert torch.allclose(scale, reference_scale)


@pytest.mark.filterwarnings("ignore")
def test_openai_torchscript_archive_loads_without_running_it(tmp_path):
    # OpenAI releases TorchScript archives of QuickGELU models; a small one in the same format
    reference = reference_clip([1, 1, 1, 1], 64, None, text_layers=2, quick_gelu=True, embed_dim=256,
                               image_size=64)
    images, tokens = example_inputs(image_size=64)
    traced = torch.jit.trace(reference, (images, tokens), check_trace=False)
    traced.save(str(tmp_path / "openai.pt"))
    ours, preprocess = load_model(tmp_path / "openai.pt")
    assert ours.config.quick_gelu and ours.config.image_size == 64 and ours.config.vision_layers == [1, 1, 1, 1]
    assert_same_embeddings(ours, reference, image_size=64)


def test_named_config_builds_project_default():
    model, _ = load_model("RN50")
    assert model.config.text_layers == 6 and model.config.vision_layers == [3, 4, 6, 3]
    assert 82e6 < sum(p.numel() for p in model.parameters()) < 84e6
    assert torch.isclose(model.logit_scale.exp(), torch.tensor(1 / 0.07))
