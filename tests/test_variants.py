"""The variant zoo against its formulas: placements × norm types × residual forms, ReZero, DeepNorm, inits."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import nn

from resbench import models
from resbench.config import check, check_config
from resbench.models.init import resolve_init
from resbench.models.norms import DyT, ScaleNorm, make_norm
from resbench.models.placements import deepnorm_alpha, deepnorm_beta
from resbench.tasks import TaskSpec
from resbench.validate import ConfigError

BATCH, TOKENS, FEATURES, WIDTH, HEADS = 4, 5, 3, 8, 2
SEQUENCE = TaskSpec(n_outputs=6, seq_len=TOKENS, vocab_size=6, causal=False, per_token=True, accuracy=True)
ROWS = TaskSpec(n_outputs=4, seq_len=TOKENS, in_features=FEATURES, per_token=False, accuracy=True)
PAIRS = TaskSpec(n_outputs=6, seq_len=TOKENS, vocab_size=7, per_token=True, accuracy=True, pairs=True,
                 source_len=TOKENS)  # teacher-forced: source, then a start token (6) and the shifted target
TASK_OF = {"transformer": SEQUENCE, "mlp": ROWS, "seq2seq": PAIRS}


def model_cfg(name: str, norm: str = "pre", norm_type: str = "layernorm", residual: str = "true",
              depth: int = 2, width: int = WIDTH, init: str = "auto") -> dict:
    return {"name": name, "depth": depth, "width": width, "heads": HEADS, "ffn_mult": 1 if name == "mlp" else 4,
            "decoder_depth": None, "norm": norm, "norm_type": norm_type, "residual": residual, "residual_scale": 1.0, "init": init}


def mlp_config(**keys: object) -> dict:
    """A whole resolved config (model=mlp task=digits) with `keys` set at the root, as config.check_config reads it."""
    return {**check(["model=mlp", "task=digits"]), **keys}


def batch(name: str, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    if name == "transformer":
        x = torch.randint(SEQUENCE.vocab_size, (BATCH, TOKENS), generator=generator)
        return x, x.flip(1)  # (B, T), (B, T)
    if name == "seq2seq":
        source = torch.randint(PAIRS.n_outputs, (BATCH, TOKENS), generator=generator)
        target = source.flip(1)
        start = torch.full((BATCH, 1), PAIRS.n_outputs)
        return torch.cat([source, start, target[:, :-1]], dim=1), target  # (B, 2T), (B, T)
    x = torch.randn(BATCH, TOKENS, FEATURES, generator=generator)  # (B, T, F): rows of an image
    return x, torch.randint(ROWS.n_outputs, (BATCH,), generator=generator)


def loss_of(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    logits = model(x)
    return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))


# ---- every placement × norm type × residual form builds and trains ---------------------------------------

GRID = list(itertools.product(["transformer", "mlp", "seq2seq"], models.PLACEMENTS, models.NORMS, models.RESIDUALS))


@pytest.mark.parametrize("name, norm, norm_type, residual", GRID, ids=["-".join(case) for case in GRID])
def test_variant_builds_and_trains_two_steps(name: str, norm: str, norm_type: str, residual: str) -> None:
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    model = models.build(model_cfg(name, norm, norm_type, residual), TASK_OF[name])
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(2):
        loss = loss_of(model, *batch(name, generator))
        optimizer.zero_grad()
        loss.backward()
        assert math.isfinite(loss.item())
        for param_name, param in model.named_parameters():
            assert param.grad is not None, f"{param_name} gets no gradient"
            assert torch.isfinite(param.grad).all(), f"{param_name} has a non-finite gradient"
        optimizer.step()
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters()))


# ---- norm types equal their formulas ----------------------------------------------------------------------


def randomised(norm: nn.Module) -> nn.Module:
    with torch.no_grad():
        for param in norm.parameters():
            param.normal_(0.5, 0.3)
    return norm


def test_rmsnorm_is_torch_rmsnorm() -> None:
    torch.manual_seed(0)
    x = torch.randn(BATCH, TOKENS, WIDTH) * 3
    norm = randomised(make_norm("rmsnorm", WIDTH))
    reference = nn.RMSNorm(WIDTH)
    reference.load_state_dict(norm.state_dict())
    torch.testing.assert_close(norm(x), reference(x))
    eps = torch.finfo(x.dtype).eps  # torch.nn.RMSNorm's default ε
    torch.testing.assert_close(norm(x), x / x.pow(2).mean(-1, keepdim=True).add(eps).sqrt() * norm.weight)


def test_layernorm_formula() -> None:
    torch.manual_seed(0)
    x = torch.randn(BATCH, TOKENS, WIDTH) * 3 + 1
    norm = randomised(make_norm("layernorm", WIDTH))
    mean, var = x.mean(-1, keepdim=True), x.var(-1, unbiased=False, keepdim=True)
    torch.testing.assert_close(norm(x), (x - mean) / (var + 1e-5).sqrt() * norm.weight + norm.bias)


def test_scalenorm_formula_and_init() -> None:
    torch.manual_seed(0)
    norm = make_norm("scalenorm", WIDTH)
    assert isinstance(norm, ScaleNorm)
    assert [p.shape for p in norm.parameters()] == [torch.Size([])]  # one learned scalar g
    assert norm.weight.item() == pytest.approx(math.sqrt(WIDTH))
    x = torch.randn(BATCH, TOKENS, WIDTH) * 3
    torch.testing.assert_close(norm(x), math.sqrt(WIDTH) * x / x.norm(dim=-1, keepdim=True))
    with torch.no_grad():
        norm.weight.fill_(1.7)
    torch.testing.assert_close(norm(x), 1.7 * x / x.norm(dim=-1, keepdim=True))


def test_dyt_formula_and_init() -> None:
    torch.manual_seed(0)
    norm = make_norm("dyt", WIDTH)
    assert isinstance(norm, DyT)
    assert norm.alpha.shape == torch.Size([]) and norm.alpha.item() == 0.5
    assert torch.equal(norm.weight, torch.ones(WIDTH)) and torch.equal(norm.bias, torch.zeros(WIDTH))
    x = torch.randn(BATCH, TOKENS, WIDTH) * 3
    torch.testing.assert_close(norm(x), torch.tanh(0.5 * x))
    randomised(norm)
    torch.testing.assert_close(norm(x), norm.weight * torch.tanh(norm.alpha * x) + norm.bias)


# ---- ReZero: branches silent at step 0, every α learns --------------------------------------------------

# Norms inside the branch (their output is multiplied by α) under these placements.
NORM_IN_BRANCH = {"pre", "sandwich", "branch"}
REZERO_CASES = list(itertools.product(["transformer", "mlp"], models.PLACEMENTS))


@pytest.mark.parametrize("name, norm", REZERO_CASES, ids=["-".join(case) for case in REZERO_CASES])
def test_rezero_branches_get_zero_gradient_and_alphas_do_not(name: str, norm: str) -> None:
    torch.manual_seed(0)
    model = models.build(model_cfg(name, norm, residual="rezero", depth=3), TASK_OF[name])
    loss_of(model, *batch(name, torch.Generator().manual_seed(0))).backward()
    alphas, branch = 0, 0
    for block in model.blocks:
        for param_name, param in block.named_parameters():
            if param_name.endswith(".alpha") and param_name.startswith("res"):
                alphas += 1
                assert param.item() == 0.0
                assert param.grad.item() != 0.0, f"{param_name}: zero gradient"
            elif param_name.startswith(("attn.", "ffn.")) or (norm in NORM_IN_BRANCH and param_name.startswith("norm")):
                branch += 1
                assert torch.count_nonzero(param.grad) == 0, f"{param_name}: gradient not exactly zero"
    sublayers = 2 if name == "transformer" else 1
    assert alphas == 3 * sublayers and branch > 0


def test_rezero_is_identity_at_init() -> None:
    """x + α·f(x) with α = 0: every block passes its input through unchanged (norm=none)."""
    torch.manual_seed(0)
    model = models.build(model_cfg("transformer", "none", residual="rezero"), SEQUENCE)
    h = torch.randn(BATCH, TOKENS, WIDTH)
    for block in model.blocks:
        torch.testing.assert_close(block(h), h)


# ---- DeepNorm: the paper's constants and init -----------------------------------------------------------

# Wang et al. 2022, Table 1, encoder-only: α = (2N)^(1/4), β = (8N)^(-1/4); the values written out.
DEEPNORM_CONSTANTS = {6: (1.861210, 0.379918), 12: (2.213364, 0.319471), 24: (2.632148, 0.268642)}


@pytest.mark.parametrize("depth", list(DEEPNORM_CONSTANTS), ids=[f"L{d}" for d in DEEPNORM_CONSTANTS])
def test_deepnorm_constants(depth: int) -> None:
    alpha, beta = DEEPNORM_CONSTANTS[depth]
    assert deepnorm_alpha(depth) == pytest.approx(alpha, abs=1e-6)
    assert deepnorm_beta(depth) == pytest.approx(beta, abs=1e-6)


def xavier_std(weight: torch.Tensor, gain: float = 1.0) -> float:
    fan_out, fan_in = weight.shape
    return gain * math.sqrt(2.0 / (fan_in + fan_out))


def assert_std(values: list[torch.Tensor], expected: float, what: str) -> None:
    flat = torch.cat([v.flatten() for v in values])
    # the sample std of n normal draws is within ~2.5% of σ for n ≥ 10⁴ (relative s.e. 1/√(2n))
    assert flat.numel() >= 10_000
    assert flat.std().item() == pytest.approx(expected, rel=0.05), what
    assert abs(flat.mean().item()) < 0.05 * expected, what


@pytest.mark.parametrize("depth", list(DEEPNORM_CONSTANTS), ids=[f"L{d}" for d in DEEPNORM_CONSTANTS])
def test_deepnorm_transformer_init_and_skip(depth: int) -> None:
    torch.manual_seed(0)
    alpha, beta = DEEPNORM_CONSTANTS[depth]
    model = models.build(model_cfg("transformer", "deepnorm", depth=depth, width=64), SEQUENCE)
    blocks = list(model.blocks)
    qkv = [b.attn.qkv.weight.detach().chunk(3) for b in blocks]
    roles = {
        "q": ([w[0] for w in qkv], 1.0),
        "k": ([w[1] for w in qkv], 1.0),
        "v": ([w[2] for w in qkv], beta),
        "out": ([b.attn.out.weight.detach() for b in blocks], beta),
        "fc1": ([b.ffn.fc1.weight.detach() for b in blocks], beta),
        "fc2": ([b.ffn.fc2.weight.detach() for b in blocks], beta),
    }
    for role, (weights, gain) in roles.items():
        assert_std(weights, xavier_std(weights[0], gain), f"{role} (L={depth})")
    for block in blocks:
        assert block.res1.scale == pytest.approx(alpha, abs=1e-6)
        assert block.res2.scale == pytest.approx(alpha, abs=1e-6)
        assert not any(torch.count_nonzero(b) for n, b in block.named_parameters() if n.endswith("fc1.bias"))


@pytest.mark.parametrize("depth", list(DEEPNORM_CONSTANTS), ids=[f"L{d}" for d in DEEPNORM_CONSTANTS])
def test_deepnorm_mlp_init_and_skip(depth: int) -> None:
    torch.manual_seed(0)
    alpha, beta = DEEPNORM_CONSTANTS[depth]
    model = models.build(model_cfg("mlp", "deepnorm", depth=depth, width=100), ROWS)
    for role in ("fc1", "fc2"):
        weights = [getattr(b.ffn, role).weight.detach() for b in model.blocks]
        assert_std(weights, xavier_std(weights[0], beta), f"{role} (L={depth})")
    assert all(block.res1.scale == pytest.approx(alpha, abs=1e-6) for block in model.blocks)


def test_deepnorm_block_is_its_equation() -> None:
    """x = N(α·x + f(x)) for one MLP block."""
    torch.manual_seed(0)
    model = models.build(model_cfg("mlp", "deepnorm", depth=6), ROWS)
    block, x = model.blocks[0], torch.randn(BATCH, WIDTH)
    expected = block.norm1(deepnorm_alpha(6) * x + block.ffn(x))
    torch.testing.assert_close(block(x), expected)


def layer_norm(x: torch.Tensor, norm: nn.Module) -> torch.Tensor:
    mean, var = x.mean(-1, keepdim=True), x.var(-1, unbiased=False, keepdim=True)
    return (x - mean) / (var + 1e-5).sqrt() * norm.weight + norm.bias


def test_branch_transformer_block_is_its_equation() -> None:
    """Attention sublayer x + N(attn(x)), FFN sublayer x + N2(fc2(N1(GELU(fc1(x))))); no final norm."""
    torch.manual_seed(0)
    model = models.build(model_cfg("transformer", "branch"), SEQUENCE)
    with torch.no_grad():
        for param in model.parameters():
            param.normal_(0.3, 0.4)
    block, x = model.blocks[0], torch.randn(BATCH, TOKENS, WIDTH)
    ffn = block.ffn
    h = x + layer_norm(block.attn(x), block.norm1_out)
    hidden = layer_norm(nn.functional.gelu(h @ ffn.fc1.weight.T + ffn.fc1.bias), ffn.norm)
    expected = h + layer_norm(hidden @ ffn.fc2.weight.T + ffn.fc2.bias, block.norm2_out)
    torch.testing.assert_close(block(x), expected)
    assert isinstance(model.norm_f, nn.Identity)
    assert not any(p.numel() for p in block.norm1.parameters()) and not any(p.numel() for p in block.norm2.parameters())


@pytest.mark.parametrize("norm_type", list(models.NORMS))
def test_branch_uses_the_chosen_norm_type_in_every_slot(norm_type: str) -> None:
    model = models.build(model_cfg("mlp", "branch", norm_type=norm_type), ROWS)
    norm_class = type(make_norm(norm_type, WIDTH))
    block = model.blocks[0]
    assert isinstance(block.ffn.norm, norm_class) and isinstance(block.norm1_out, norm_class)


@pytest.mark.parametrize(
    "init, norm, resolved",
    [("auto", "deepnorm", "deepnorm"), ("deepnorm", "deepnorm", "deepnorm"), ("auto", "pre", "pytorch"),
     ("xavier", "post", "xavier"), ("small", "pre", "small")],
)
def test_init_resolution(init: str, norm: str, resolved: str) -> None:
    assert resolve_init(init, norm) == resolved


@pytest.mark.parametrize("init, norm", [("xavier", "deepnorm"), ("pytorch", "deepnorm"), ("deepnorm", "pre")])
def test_contradictory_init_and_norm_are_refused(init: str, norm: str) -> None:
    with pytest.raises(ValueError, match="contradicts"):
        models.build(model_cfg("mlp", norm, init=init), ROWS)
    with pytest.raises(ConfigError, match=f"init={init} contradicts norm={norm}"):
        check_config(mlp_config(norm=norm, init=init))


# ---- the other inits --------------------------------------------------------------------------------------


def test_small_init_is_gpt2() -> None:
    torch.manual_seed(0)
    depth = 4
    model = models.build(model_cfg("transformer", depth=depth, width=64, init="small"), SEQUENCE)
    scaled = 0.02 / math.sqrt(2 * depth)
    out = [w for n, w in model.named_parameters() if n.endswith(("attn.out.weight", "ffn.fc2.weight"))]
    other = [w for n, w in model.named_parameters() if n.endswith(("attn.qkv.weight", "ffn.fc1.weight"))]
    assert_std([w.detach() for w in out], scaled, "output projections")
    assert_std([w.detach() for w in other], 0.02, "other weights")
    assert model.tok_emb.weight.std().item() == pytest.approx(0.02, rel=0.2)
    assert all(torch.count_nonzero(b) == 0 for n, b in model.named_parameters() if n.endswith("fc1.bias"))


def test_xavier_init() -> None:
    torch.manual_seed(0)
    model = models.build(model_cfg("transformer", depth=4, width=64, init="xavier"), SEQUENCE)
    fc1 = [b.ffn.fc1.weight.detach() for b in model.blocks]
    # xavier-uniform: U(−a, a) with a = √(6/(fan_in+fan_out)), std a/√3 = √(2/(fan_in+fan_out))
    assert_std(fc1, xavier_std(fc1[0]), "fc1")
    assert all(torch.count_nonzero(b.ffn.fc1.bias) == 0 for b in model.blocks)


def test_residual_scale_multiplies_the_skip() -> None:
    torch.manual_seed(0)
    config = model_cfg("mlp", "none") | {"residual_scale": 0.5}
    block = models.build(config, ROWS).blocks[0]
    x = torch.randn(BATCH, WIDTH)
    torch.testing.assert_close(block(x), 0.5 * x + block.ffn(x))


@pytest.mark.parametrize("key, bad", [("norm", "peri"), ("norm_type", "batchnorm"), ("residual", "maybe"),
                                      ("init", "orthogonal")])
def test_unknown_names_list_the_valid_choices(key: str, bad: str) -> None:
    config = model_cfg("mlp") | {key: bad}
    with pytest.raises(ValueError, match="valid choices: "):
        models.build(config, ROWS)
    with pytest.raises(ConfigError, match=f"^{key}: bad choice .*; valid choices: "):
        check_config(mlp_config(**{key: bad}))


def test_attention_refuses_width_not_divisible_by_heads() -> None:
    with pytest.raises(ValueError, match=r"width \(50\) must be divisible by heads \(4\)"):
        models.build(model_cfg("transformer", width=50) | {"heads": 4}, SEQUENCE)
