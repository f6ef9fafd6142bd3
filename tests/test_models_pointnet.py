"""PointNet models: published parameter counts, permutation equivariance, padding invariance
(eval and train-mode batch norm), bf16 autocast, and overfitting one synthetic room's blocks.

The input builder (``room_blocks``) and the training helpers live in ``pcseg.testing``.
"""

import time

import pytest
import torch
import torch.nn.functional as F

from pcseg.data.synthetic import NUM_CLASSES
from pcseg.losses import feature_transform_regularizer
from pcseg.models import FEATURE_TRANSFORM_WEIGHT, MODELS, PointNetCls, PointNetSeg, PointNetSemSeg, build_model
from pcseg.models.layers import SharedMLP, masked_max, max_over
from pcseg.testing import memorise_classes, overfit, room_blocks, warm_up_batch_norm

pytestmark = pytest.mark.usefixtures("single_torch_thread")


def _conv_bn(cin, cout):
    """Parameters of a 1x1 conv (or FC) with bias followed by batch norm (gamma, beta)."""
    return cin * cout + cout + 2 * cout


def _tnet(k):
    return (
        _conv_bn(k, 64)
        + _conv_bn(64, 128)
        + _conv_bn(128, 1024)
        + _conv_bn(1024, 512)
        + _conv_bn(512, 256)
        + 256 * k * k
        + k * k
    )


def _count(model):
    return sum(p.numel() for p in model.parameters())


def test_parameter_counts_match_published_architectures():
    encoder = (
        _tnet(3)
        + _conv_bn(3, 64)
        + _conv_bn(64, 64)
        + _tnet(64)
        + _conv_bn(64, 64)
        + _conv_bn(64, 128)
        + _conv_bn(128, 1024)
    )
    cls_expected = encoder + _conv_bn(1024, 512) + _conv_bn(512, 256) + 256 * 40 + 40
    seg_expected = (
        encoder + _conv_bn(1088, 512) + _conv_bn(512, 256) + _conv_bn(256, 128) + _conv_bn(128, 128) + 128 * 50 + 50
    )
    sem_expected = (
        _conv_bn(9, 64)
        + _conv_bn(64, 64)
        + _conv_bn(64, 64)
        + _conv_bn(64, 128)
        + _conv_bn(128, 1024)
        + _conv_bn(1024, 256)
        + _conv_bn(256, 128)
        + _conv_bn(1152, 512)
        + _conv_bn(512, 256)
        + 256 * 13
        + 13
    )
    counts = {
        "PointNetCls(40)": (_count(PointNetCls(40)), cls_expected),
        "PointNetSeg(50)": (_count(PointNetSeg(50)), seg_expected),
        "PointNetSemSeg(13, in_channels=6)": (_count(PointNetSemSeg(13, in_channels=6)), sem_expected),
    }
    for name, (got, expected) in counts.items():
        print(f"{name}: {got:,} parameters")
        assert got == expected, name
    # the paper: 3.5 M parameters for the classification network
    assert abs(counts["PointNetCls(40)"][0] - 3.5e6) / 3.5e6 < 0.01


def test_pointnet_seg_permutation_equivariant_in_eval():
    torch.manual_seed(0)
    model = PointNetSeg(NUM_CLASSES, in_channels=6)
    points, features, _, _ = room_blocks(2, 128)
    warm_up_batch_norm(model, points, features)
    perm = torch.randperm(points.shape[1])
    with torch.no_grad():
        logits = model(points, features)
        permuted = model(points[:, perm], features[:, perm])
    assert (permuted - logits[:, :, perm]).abs().max() < 1e-5


@pytest.mark.parametrize("name", ["pointnet", "pointnet_sem_seg", "pointnet_cls"])
def test_padding_invariance_eval(name):
    torch.manual_seed(0)
    model = build_model(name, num_classes=NUM_CLASSES, in_channels=6)
    points, features, _, _ = room_blocks(2, 96)
    warm_up_batch_norm(model, points, features)
    short = 60
    # cloud 0 cut to 60 points and padded with garbage, next to a full cloud
    padded_points, padded_features = points.clone(), features.clone()
    padded_points[0, short:] = 1e3
    padded_features[0, short:] = -7.0
    with torch.no_grad():
        alone = model(points[:1, :short], features[:1, :short])
        batched = model(padded_points, padded_features, lengths=torch.tensor([short, 96]))
        other = model(points[1:], features[1:])
    if name == "pointnet_cls":
        torch.testing.assert_close(batched[:1], alone, atol=1e-5, rtol=0)
        torch.testing.assert_close(batched[1:], other, atol=1e-5, rtol=0)
    else:
        torch.testing.assert_close(batched[:1, :, :short], alone, atol=1e-5, rtol=0)
        torch.testing.assert_close(batched[1:], other, atol=1e-5, rtol=0)


def _masked_max_reference(x, mask, dim, channels_last):
    fill = ~(mask.unsqueeze(-1) if channels_last else mask.unsqueeze(1))
    return x.masked_fill(fill, float("-inf")).amax(dim=dim)


@pytest.mark.parametrize("channels_last", [True, False])
@pytest.mark.parametrize(
    "counts",
    [
        [7, 7, 7],  # no padding
        [7, 3, 1, 5],  # padded clouds, sliced one by one
        [0, 4, 7],  # an empty cloud: its max is -inf
        list(range(1, 8)) * 6,  # more padded clouds than are sliced: one masked copy
    ],
)
def test_masked_max_equals_the_masked_copy_values_and_gradients(channels_last, counts):
    torch.manual_seed(0)
    b, n, c = len(counts), 7, 5
    x = torch.randn(b, n, c) if channels_last else torch.randn(b, c, n)
    mask = torch.arange(n) < torch.tensor(counts)[:, None]
    dim = 1 if channels_last else 2
    a = x.clone().requires_grad_()
    r = x.clone().requires_grad_()
    pooled, expected = masked_max(a, mask, dim, channels_last), _masked_max_reference(r, mask, dim, channels_last)
    assert torch.equal(pooled, expected)
    finite = expected.isfinite()
    pooled[finite].sum().backward()
    expected[finite].sum().backward()
    assert torch.equal(a.grad, r.grad)
    # a mask that is not real-points-first
    scattered = torch.rand(b, n) < 0.6
    scattered[:, 0] = True
    assert torch.equal(
        masked_max(x, scattered, dim, channels_last), _masked_max_reference(x, scattered, dim, channels_last)
    )


@pytest.mark.parametrize("shape, dim", [((4, 9, 6), 1), ((2, 5, 8, 3), 2), ((3, 1, 4), 1)])
def test_max_over_is_amax_with_the_gradient_on_one_maximum(shape, dim):
    torch.manual_seed(0)
    x = torch.randn(*shape, dtype=torch.float64)
    a, r = x.clone().requires_grad_(), x.clone().requires_grad_()
    grad = torch.randn(x.amax(dim).shape, dtype=torch.float64)
    pooled = max_over(a, dim)
    assert torch.equal(pooled, x.amax(dim))
    pooled.backward(grad)
    r.amax(dim).backward(grad)
    assert torch.equal(a.grad, r.grad)  # no ties: the same gradient as amax
    with torch.no_grad():
        assert torch.equal(max_over(a, dim), x.amax(dim))
    # ties (a neighbourhood padded by repeating a neighbour, a dead ReLU channel): the whole
    # gradient reaches one of the tied entries, as it reaches the maximum once without ties
    tied = torch.zeros(shape, dtype=torch.float64, requires_grad=True)
    max_over(tied, dim).backward(grad)
    torch.testing.assert_close(tied.grad.sum(dim), grad)
    assert int((tied.grad != 0).sum()) <= grad.numel()
    torch.autograd.gradcheck(lambda t: max_over(t, dim), (x.clone().requires_grad_(),))


def test_eval_mode_folds_batch_norm_into_the_layers():
    torch.manual_seed(0)
    mlp = SharedMLP(6, [16, 32, 5], last_plain=True)
    for norm in mlp.norms:  # statistics and affine maps far from the identity
        norm.running_mean.uniform_(-2, 2)
        norm.running_var.uniform_(0.1, 4)
        norm.weight.data.uniform_(0.5, 2)
        norm.bias.data.uniform_(-1, 1)
    x = torch.randn(3, 40, 6)
    with torch.no_grad():
        mlp.eval()
        folded = mlp.forward_channels_last(x.contiguous())
        unfolded = mlp(x.transpose(1, 2)).transpose(1, 2)  # convolutions then batch norms
        torch.testing.assert_close(folded, unfolded, atol=1e-5, rtol=1e-5)
        weight, bias = mlp.linear_weights(0)
        assert not torch.equal(weight, mlp.convs[0].weight.squeeze(-1))
        mlp.train()
        assert torch.equal(mlp.linear_weights(0)[0], mlp.convs[0].weight.squeeze(-1))
        torch.testing.assert_close(mlp.forward_channels_last(x.contiguous()), mlp(x.transpose(1, 2)).transpose(1, 2))

    # PointNetSemSeg's head: the global feature's product once per cloud, folded weights
    model = PointNetSemSeg(NUM_CLASSES, in_channels=6, width_multiplier=0.25)
    points, features, _, _ = room_blocks(2, 64)
    warm_up_batch_norm(model, points, features)
    with torch.no_grad():
        x = torch.cat([points, features], -1)
        point_features = model.mlp(x.transpose(1, 2))  # (B, C, N)
        glob = model.fc(point_features.amax(2))
        joined = torch.cat([point_features, glob[:, :, None].expand(-1, -1, 64)], 1)
        torch.testing.assert_close(model(points, features), model.head(joined), atol=1e-5, rtol=1e-5)


def test_train_mode_batch_norm_ignores_padding():
    torch.manual_seed(0)
    points, features, _, _ = room_blocks(2, 64)
    clean = PointNetSeg(NUM_CLASSES, in_channels=6, width_multiplier=0.25).train()
    padded = PointNetSeg(NUM_CLASSES, in_channels=6, width_multiplier=0.25).train()
    padded.load_state_dict(clean.state_dict())
    extra_points = torch.cat([points, torch.full((2, 16, 3), 50.0)], 1)
    extra_features = torch.cat([features, torch.full((2, 16, 6), -3.0)], 1)
    a = clean(points, features)
    b = padded(extra_points, extra_features, lengths=torch.tensor([64, 64]))
    # same statistics up to float summation order (masked path vs F.batch_norm)
    torch.testing.assert_close(b[:, :, :64], a, atol=1e-4, rtol=1e-4)
    for (key, x), y in zip(clean.state_dict().items(), padded.state_dict().values()):
        torch.testing.assert_close(y, x, atol=1e-5, rtol=1e-4, msg=key)


@pytest.mark.parametrize("name", ["pointnet", "pointnet_sem_seg"])
def test_bf16_autocast_on_cpu(name):
    torch.manual_seed(0)
    model = build_model(name, num_classes=NUM_CLASSES, in_channels=6, width_multiplier=0.5)
    points, features, labels, _ = room_blocks(2, 128)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(points, features)
        loss = F.cross_entropy(logits.float(), labels)
    loss.backward()
    assert logits.shape == (2, NUM_CLASSES, 128)
    assert torch.isfinite(loss) and all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    model.eval()
    with torch.no_grad():
        ref = model(points, features)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(points, features).float()
    # bf16 has 8 mantissa bits: predictions agree on nearly every point
    assert (low.argmax(1) == ref.argmax(1)).float().mean() > 0.9


# The published widths. The paper's PointNetSeg (two T-Nets, 1024-wide global feature) needs
# a smaller step than the T-Net-free S3DIS network: at lr 1e-3 it took 190 steps, at 5e-4 70.
@pytest.mark.parametrize("name, lr", [("pointnet", 5e-4), ("pointnet_sem_seg", 2e-3)])
def test_overfits_one_rooms_blocks(name, lr):
    # 8 blocks, not 2: the T-Nets' fully connected batch norm needs a few clouds per batch
    # for its running statistics (used in eval mode) to match the batch statistics.
    torch.manual_seed(0)
    points, features, labels, _ = room_blocks(8, 64)
    model = build_model(name, num_classes=NUM_CLASSES, in_channels=6)
    extra = None
    if name == "pointnet":
        extra = lambda aux: FEATURE_TRANSFORM_WEIGHT * feature_transform_regularizer(aux["feature_transform"])  # noqa: E731
    accuracy, steps, seconds = overfit(model, points, features, labels, max_steps=300, lr=lr, extra_loss=extra)
    print(f"{name}: {accuracy:.4f} eval point accuracy after {steps} steps, {seconds:.1f} s")
    assert accuracy >= 0.99
    assert seconds < 60


def test_pointnet_cls_overfits_labels():
    torch.manual_seed(0)
    points, features, _, _ = room_blocks(8, 64)
    targets = torch.arange(8) % 4  # arbitrary classes: pure memorisation
    model = PointNetCls(4, in_channels=6)
    start = time.perf_counter()
    # 100 steps: after 60 the eval-mode batch-norm running statistics still lag the batch ones
    # on some CPUs (7 of 8 right), which says nothing about what the network can fit.
    predictions = memorise_classes(model, points, features, targets, steps=100)
    seconds = time.perf_counter() - start
    print(f"pointnet_cls: {(predictions == targets).float().mean():.4f} accuracy, {seconds:.1f} s")
    assert torch.equal(predictions, targets)  # 100 % of the 8 clouds
    assert seconds < 60


def test_build_model_and_errors():
    assert set(MODELS) == {"pointnet", "pointnet_sem_seg", "pointnet_cls", "acnn", "acnn_cls"}
    assert isinstance(build_model("pointnet", num_classes=3), PointNetSeg)
    with pytest.raises(KeyError, match="unknown model 'pointnet2'"):
        build_model("pointnet2", num_classes=3)
    model = PointNetSeg(3, in_channels=2)
    with pytest.raises(ValueError, match="features"):
        model(torch.zeros(2, 10, 3))
    with pytest.raises(ValueError, match="points must be"):
        model(torch.zeros(2, 10, 4), torch.zeros(2, 10, 2))
    with pytest.raises(ValueError, match="lengths must lie"):
        model(torch.zeros(2, 10, 3), torch.zeros(2, 10, 2), lengths=torch.tensor([0, 10]))


def test_feature_transform_regulariser_has_the_official_scale():
    # tf.nn.l2_loss summed over the batch: half the squared norm of I - A A^T per cloud, summed.
    a = 2 * torch.eye(3, dtype=torch.float64).expand(4, 3, 3)  # I - 4I = -3I: squared norm 27 per cloud
    assert feature_transform_regularizer(a).item() == pytest.approx(0.5 * 4 * 27)
    assert feature_transform_regularizer(a, reduction="mean").item() == pytest.approx(27)


@pytest.mark.parametrize("p", [0.3, 0.4, 0.5, 0.7])
def test_dropout_mask_has_the_right_statistics(p):
    """pcseg's Dropout (four 16-bit uniforms per 64-bit draw) drops a fraction p, scales the rest
    by 1 / (1 - p), keeps the mean, is reproducible under manual_seed and leaves eval mode alone."""
    from pcseg.models.layers import Dropout, dropout_scale

    x = torch.ones(3, 1001, 67)  # numel not a multiple of 4
    scale = dropout_scale(x, p)
    assert scale.shape == x.shape and scale.dtype == x.dtype
    values = torch.unique(scale).tolist()
    assert values == [0.0, pytest.approx(1 / (1 - p))]
    n = x.numel()
    dropped = int((scale == 0).sum())
    assert abs(dropped - p * n) < 5 * (n * p * (1 - p)) ** 0.5  # five binomial standard deviations
    # no lane of the 64-bit words is biased: each of the 4 interleaved lanes drops a fraction p
    lanes = (scale.reshape(-1)[: n // 4 * 4] == 0).reshape(-1, 4).float().mean(0)
    assert torch.all((lanes - p).abs() < 5 * (p * (1 - p) / (n // 4)) ** 0.5), lanes
    layer = Dropout(p).train()
    torch.manual_seed(3)
    a = layer(x)
    torch.manual_seed(3)
    assert torch.equal(layer(x), a)
    assert abs(float(a.mean()) - 1.0) < 0.02
    assert torch.equal(layer.eval()(x), x)
    x.requires_grad_(True)
    layer.train()
    torch.manual_seed(4)
    layer(x).sum().backward()
    torch.manual_seed(4)
    assert torch.equal(x.grad, dropout_scale(x, p))
