"""A-CNN: circular convolution vs Conv1d, ring-slot filling, parameter counts, padding
invariance (eval and train-mode batch norm), the normals fallback, bf16 autocast, overfitting."""

import time

import pytest
import torch
import torch.nn.functional as F

from pcseg.data.synthetic import NUM_CLASSES
from pcseg.models import (
    ACNNCls,
    ACNNSeg,
    AnnularLevelConfig,
    acnn_block_preset,
    acnn_classification_levels,
    build_model,
)
from pcseg.models.acnn import CircularConv, fill_ring_slots
from pcseg.ops import estimate_normals, ring_query
from pcseg.testing import memorise_classes, overfit, room_blocks, warm_up_batch_norm

pytestmark = pytest.mark.usefixtures("single_torch_thread")


def _small_block_model(num_points=128, in_channels=6, width_multiplier=0.5, **kwargs):
    return ACNNSeg(
        NUM_CLASSES,
        in_channels=in_channels,
        width_multiplier=width_multiplier,
        **acnn_block_preset(num_points),
        **kwargs,
    )


@pytest.mark.parametrize("in_channels,out_channels", [(5, 7), (7, 5), (6, 6)])
def test_circular_conv_is_conv1d_with_circular_padding(in_channels, out_channels):
    """Both ways of computing it (rolled inputs when C_in <= C_out, rolled taps otherwise)."""
    torch.manual_seed(0)
    conv = CircularConv(in_channels, out_channels)
    ref = torch.nn.Conv1d(in_channels, out_channels, 3, padding=1, padding_mode="circular")
    ref.weight.data.copy_(conv.weight.data)
    ref.bias.data.copy_(conv.bias.data)
    for k in (1, 2, 6):
        x = torch.randn(2, 4, k, in_channels, dtype=torch.float32, requires_grad=True)
        ours = conv(x)
        theirs = ref(x.reshape(8, k, in_channels).transpose(1, 2)).transpose(1, 2).reshape(2, 4, k, out_channels)
        torch.testing.assert_close(ours, theirs)
        g = torch.randn_like(ours)
        for mine, reference in zip(
            torch.autograd.grad(ours, (x, conv.weight, conv.bias), g),
            torch.autograd.grad(theirs, (x, ref.weight, ref.bias), g),
        ):
            torch.testing.assert_close(mine, reference)
    # shifting the ring shifts the output (the operator is circular, not zero-padded)
    x = torch.randn(1, 1, 6, in_channels)
    torch.testing.assert_close(conv(torch.roll(x, 2, dims=2)), torch.roll(conv(x), 2, dims=2))


def test_fill_ring_slots_repeats_cyclically_and_falls_back_to_centre():
    idx = torch.tensor([[[4, 9, 2, -1, -1, -1, -1], [7, -1, -1, -1, -1, -1, -1], [-1] * 7, [1, 2, 3, 4, 5, 6, 8]]])
    centres = torch.tensor([[11, 12, 13, 14]])
    expected = torch.tensor([[[4, 9, 2, 4, 9, 2, 4], [7] * 7, [13] * 7, [1, 2, 3, 4, 5, 6, 8]]])
    assert torch.equal(fill_ring_slots(idx, centres), expected)


def _conv_bn_count(cin, cout, taps=1):
    return taps * cin * cout + cout + 2 * cout  # weights, bias, batch-norm scale and shift


def _acnn_encoder_count(in_channels, levels):
    total, c = 0, in_channels
    for level in levels:
        out = 0
        for widths in level.mlps:
            cin = 3 + c
            for w in widths:
                total += _conv_bn_count(cin, w, taps=3)  # circular conv + batch norm
                cin = w
            out += widths[-1]
        c = out
    return total, c


def test_parameter_counts():
    # The authors' totals (weights, biases, batch-norm scale and shift of acnn_cls_rings.py and
    # acnn_segm_rings.py), counted layer by layer and pinned.
    enc, c = _acnn_encoder_count(0, acnn_classification_levels())
    assert c == 128 + 256
    global_level = _conv_bn_count(3 + c, 256) + _conv_bn_count(256, 512) + _conv_bn_count(512, 1024)
    cls_expected = enc + global_level + _conv_bn_count(1024, 512) + _conv_bn_count(512, 256) + 256 * 40 + 40
    seg_enc, _ = _acnn_encoder_count(3, acnn_classification_levels())  # normals as level-1 features
    seg_expected = (
        seg_enc
        + global_level
        + _conv_bn_count(1024, 64)
        + _conv_bn_count(384, 64)  # global, level 2 -> points
        + _conv_bn_count(192 + 3, 128)
        + 2 * _conv_bn_count(128, 128)  # level 1 (+ normals) -> points
        + _conv_bn_count(64 + 64 + 128 + 16 + 3, 256)
        + _conv_bn_count(256, 256)
        + _conv_bn_count(256, 128)
        + 128 * 50
        + 50
    )
    cls_count = sum(p.numel() for p in ACNNCls(40).parameters())
    seg_count = sum(p.numel() for p in ACNNSeg(50, num_categories=16).parameters())
    print(f"ACNNCls(40): {cls_count:,} parameters; ACNNSeg(50, num_categories=16): {seg_count:,} parameters")
    assert cls_count == cls_expected == 1_774_792
    assert seg_count == seg_expected == 1_434_162
    # normals as level-1 inputs of the classifier add 3 input channels to its first two convolutions
    with_normals = sum(p.numel() for p in ACNNCls(40, normals_as_features=True).parameters())
    assert with_normals - cls_count == 864


def test_category_one_hot():
    torch.manual_seed(0)
    levels = acnn_block_preset(64)["levels"][:2]
    model = ACNNSeg(5, levels=levels, global_mlp=(32,), num_categories=3, width_multiplier=0.25).eval()
    points = torch.rand(2, 64, 3)
    with torch.no_grad():
        a = model(points, categories=torch.tensor([0, 2]))
        b = model(points, categories=torch.tensor([1, 2]))
    assert a.shape == (2, 5, 64)
    assert not torch.allclose(a[0], b[0]) and torch.allclose(a[1], b[1])
    with pytest.raises(ValueError, match="pass categories"):
        model(points)
    with pytest.raises(ValueError, match="categories must be"):
        model(points, categories=torch.tensor([0, 3]))


def test_ring_neighbourhoods_come_from_ring_query_in_angular_order():
    # A centre on a flat disc of points: the level's grouped offsets must be the ring's points
    # in ring_query's counter-clockwise order, repeated cyclically.
    angles = torch.arange(6) * (2 * torch.pi / 6)
    ring = torch.stack([0.15 * angles.cos(), 0.15 * angles.sin(), torch.zeros(6)], 1)
    points = torch.cat([torch.zeros(1, 3), ring])[None]
    normals = torch.tensor([0.0, 0.0, 1.0]).expand(1, 7, 3)
    _, idx = ring_query(points[:, :1], points, normals[:, :1], 0.1, 0.2, 8)
    kept = idx[0, 0, :6]
    assert sorted(kept.tolist()) == [1, 2, 3, 4, 5, 6]
    # consecutive kept neighbours are 60 degrees apart counter-clockwise
    order = (kept - 1).tolist()
    assert all((b - a) % 6 == 1 for a, b in zip(order, order[1:]))
    filled = fill_ring_slots(idx, torch.zeros(1, 1, dtype=torch.long))
    assert filled[0, 0, 6:].tolist() == kept[:2].tolist()


@pytest.mark.parametrize("name", ["acnn", "acnn_cls"])
def test_padding_invariance_eval(name):
    torch.manual_seed(0)
    points, features, _, normals = room_blocks(2, 128)
    if name == "acnn":
        model = _small_block_model()
    else:
        levels = acnn_block_preset(128)["levels"][:2]
        model = ACNNCls(NUM_CLASSES, in_channels=6, levels=levels, width_multiplier=0.5)
    warm_up_batch_norm(model, points, features)
    short = 90
    padded_points, padded_features = points.clone(), features.clone()
    padded_points[0, short:] = 37.0
    padded_features[0, short:] = -5.0
    with torch.no_grad():
        alone = model(points[:1, :short], features[:1, :short])
        other = model(points[1:], features[1:])
        batched = model(padded_points, padded_features, lengths=torch.tensor([short, 128]))
    if name == "acnn":
        assert batched.shape == (2, NUM_CLASSES, 128)
        alone, batched0 = alone, batched[:1, :, :short]
    else:
        batched0 = batched[:1]
    torch.testing.assert_close(batched0, alone, atol=1e-5, rtol=0)
    torch.testing.assert_close(batched[1:], other, atol=1e-5, rtol=0)


def test_train_mode_batch_norm_ignores_padding():
    torch.manual_seed(0)
    points, features, _, _ = room_blocks(2, 128)
    clean = _small_block_model(dropout=0.0).train()
    padded = _small_block_model(dropout=0.0).train()
    padded.load_state_dict(clean.state_dict())
    extra_points = torch.cat([points, torch.full((2, 40, 3), 20.0)], 1)
    extra_features = torch.cat([features, torch.full((2, 40, 6), -3.0)], 1)
    a = clean(points, features)
    b = padded(extra_points, extra_features, lengths=torch.tensor([128, 128]))
    torch.testing.assert_close(b[:, :, :128], a, atol=1e-4, rtol=1e-4)
    for (key, x), y in zip(clean.state_dict().items(), padded.state_dict().values()):
        torch.testing.assert_close(y, x, atol=1e-5, rtol=1e-4, msg=key)


def test_normals_default_to_estimate_normals():
    torch.manual_seed(0)
    points, features, _, true_normals = room_blocks(2, 128)
    model = _small_block_model().eval()
    with torch.no_grad():
        implicit = model(points, features)
        explicit = model(points, features, normals=estimate_normals(points, k=16, viewpoint="interior"))
        given = model(points, features, normals=true_normals)
    torch.testing.assert_close(implicit, explicit)
    assert not torch.allclose(implicit, given)  # the input normals are really used
    with pytest.raises(ValueError, match="normals must have"):
        model(points, features, normals=true_normals[:, :10])


def test_bf16_autocast_on_cpu():
    torch.manual_seed(0)
    points, features, labels, _ = room_blocks(2, 128)
    model = _small_block_model()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(points, features)
        loss = F.cross_entropy(logits.float(), labels)
    loss.backward()
    assert logits.shape == (2, NUM_CLASSES, 128) and torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_acnn_seg_overfits_one_rooms_blocks():
    torch.manual_seed(0)
    points, features, labels, normals = room_blocks(8, 64)
    model = _small_block_model(64, width_multiplier=1.0)  # the block preset at full width
    accuracy, steps, seconds = overfit(model, points, features, labels, max_steps=300, lr=3e-3, normals=normals)
    print(f"acnn: {accuracy:.4f} eval point accuracy after {steps} steps, {seconds:.1f} s")
    assert accuracy >= 0.99
    assert seconds < 60


def test_acnn_cls_overfits_labels():
    torch.manual_seed(0)
    points, features, _, normals = room_blocks(8, 64)
    targets = torch.arange(8) % 4
    # Full width; 64-point blocks cannot hold the authors' 512 / 128 centres, so the block
    # preset's first two levels (16 and 4 centres) stand in for them.
    model = ACNNCls(4, in_channels=6, levels=acnn_block_preset(64)["levels"][:2])
    start = time.perf_counter()
    predictions = memorise_classes(model, points, features, targets, normals=normals)
    seconds = time.perf_counter() - start
    print(f"acnn_cls: {(predictions == targets).float().mean():.4f} accuracy, {seconds:.1f} s")
    assert torch.equal(predictions, targets)  # 100 % of the 8 clouds
    assert seconds < 60


def test_config_errors_and_yaml_levels():
    with pytest.raises(ValueError, match="one entry per ring"):
        AnnularLevelConfig(16, [(0.0, 0.1)], [8, 8], [[16]])
    with pytest.raises(ValueError, match="r_inner < r_outer"):
        AnnularLevelConfig(16, [(0.2, 0.1)], [8], [[16]])
    with pytest.raises(ValueError, match="up_mlps needs 3 entries"):
        ACNNSeg(13, up_mlps=[[128]])
    levels = [{"num_centers": 32, "rings": [[0.0, 0.2]], "samples": [8], "mlps": [[16, 16]]}]
    model = build_model("acnn", num_classes=4, levels=levels, global_mlp=None, up_mlps=[[16]])
    assert model(torch.rand(2, 64, 3)).shape == (2, 4, 64)


def test_demo_model_flag_builds_the_authors_decoder_with_normals_once(tmp_path):
    from pcseg.checkpoint import build_model_from_config
    from pcseg.demo.rooms import demo_config
    from pcseg.inputs import input_channels

    cfg = demo_config(tmp_path, model="acnn")
    model = build_model_from_config(cfg)
    assert isinstance(model, ACNNSeg) and cfg.data.geometric_features
    # the normals are among the geometric input features; the encoder does not add them again
    assert model.encoder.input_channels == input_channels(cfg.data)
    assert len(model.up) == 3 and model.global_mlp is None
    with pytest.raises(ValueError, match="model must be one of"):
        demo_config(tmp_path, model="pointnet2")


@pytest.mark.parametrize("level_channels,skip_channels,widths", [(32, 0, [8, 8]), (32, 5, [8]), (8, 5, [16, 8])])
def test_decoder_branch_projects_before_interpolating_with_the_same_result(level_channels, skip_channels, widths):
    """upsample_level takes the first layer's product before the interpolation when that layer is
    narrower than the level: the same function (and gradients) as interpolate, append, MLP."""
    from pcseg.models.acnn import interpolate, upsample_level
    from pcseg.models.layers import SharedMLP
    from pcseg.ops.three_nn_interpolate import _weights

    torch.manual_seed(0)
    up = SharedMLP(level_channels + skip_channels, widths).train()
    coarse = torch.randn(2, 6, level_channels, requires_grad=True)
    skip = torch.randn(2, 40, skip_channels, requires_grad=True) if skip_channels else None
    index = torch.randint(0, 6, (2, 40, 3))
    index[0, :5, 2] = -1  # fewer than 3 known points
    weight = _weights(torch.rand(2, 40, 3) + 0.1, index)
    mask = torch.ones(2, 40, dtype=torch.bool)
    mask[1, 30:] = False
    ours = upsample_level(up, coarse, index, weight, skip, mask)
    direct = interpolate(coarse, index, weight)
    if skip is not None:
        direct = torch.cat([direct, skip], dim=-1)
    reference = up.forward_channels_last(direct.contiguous(), mask)
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-5)
    g = torch.randn_like(ours)
    inputs = [coarse, *up.parameters()] + ([skip] if skip is not None else [])
    for mine, theirs in zip(torch.autograd.grad(ours, inputs, g), torch.autograd.grad(reference, inputs, g)):
        torch.testing.assert_close(mine, theirs, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("padded", [False, True])
def test_rings_side_by_side_equal_ring_after_ring(padded):
    """A level whose rings hold the same K runs them side by side (one gather, block-diagonal
    convolutions, one batch norm per layer): outputs, gradients and every ring's running
    statistics equal those of the rings run one after the other, in train and eval mode."""
    from pcseg.models.acnn import AnnularLevel

    torch.manual_seed(0)
    config = AnnularLevelConfig(32, [(0.0, 0.15), (0.15, 0.3)], [8, 8], [[8, 12], [6, 16]])
    side_by_side = AnnularLevel(5, config).train()
    assert side_by_side.side_by_side
    wide = AnnularLevelConfig(32, config.rings, config.samples, [[8, 64], [6, 16]])
    assert not AnnularLevel(5, wide).side_by_side  # wide rings run one after the other
    ring_after_ring = AnnularLevel(5, config).train()
    ring_after_ring.load_state_dict(side_by_side.state_dict())
    ring_after_ring.side_by_side = False
    points = torch.rand(2, 200, 3)
    features = torch.randn(2, 200, 5)
    lengths = torch.tensor([200, 150]) if padded else None
    normals = estimate_normals(points, k=8, lengths=lengths)
    centre_idx, rings, _, _, _ = side_by_side.neighbourhoods(points, normals, lengths)
    for mode in ("train", "eval"):
        side_by_side.train(mode == "train")
        ring_after_ring.train(mode == "train")
        x = features.clone().requires_grad_()
        ours = side_by_side.forward_from_neighbourhoods(points, x, centre_idx, rings, lengths)[1]
        x_ref = features.clone().requires_grad_()
        reference = ring_after_ring.forward_from_neighbourhoods(points, x_ref, centre_idx, rings, lengths)[1]
        torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-5)
        g = torch.randn_like(ours)
        mine = torch.autograd.grad(ours, [x, *side_by_side.parameters()], g)
        theirs = torch.autograd.grad(reference, [x_ref, *ring_after_ring.parameters()], g)
        # atol for the biases before batch norm, whose gradients are rounding noise around 0
        for a, b in zip(mine, theirs):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    for (key, a), b in zip(side_by_side.state_dict().items(), ring_after_ring.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=key)
