"""cnn_core.zoo against the papers' figures and against the same networks built in PyTorch."""

import doctest

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from cnn_core import arith, zoo
from cnn_core.zoo import Concat, Conv, Network, PartialConv, Pool, Residual, summarize


def test_names():
    assert set(zoo.NAMES) == {"lenet5", "alexnet", "vgg16", "vgg19", "googlenet", "resnet18",
                              "resnet34", "resnet50", "resnet101", "resnet152"}


def test_module_example_runs():
    assert doctest.testmod(zoo).failed == 0


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown network 'vgg13'.*lenet5.*resnet152"):
        zoo.summary("vgg13")


# ---------------------------------------------------------------- LeNet-5 (LeCun et al. 1998)

# Section II-B: (trainable parameters, connections) per layer; the RBF output has 84 * 10 weights.
LENET5_PAPER = {
    "C1": (156, 122_304),
    "S2": (12, 5_880),
    "C3": (1_516, 151_600),
    "S4": (32, 2_000),
    "C5": (48_120, 48_120),
    "F6": (10_164, 10_164),
    "output": (840, 840),
}


def test_lenet5_layers_match_the_paper():
    s = zoo.summary("lenet5")
    assert {r.name: (r.params, r.connections) for r in s.layers} == LENET5_PAPER
    shapes = [r.output_shape for r in s.layers]
    assert shapes == [(6, 28, 28), (6, 14, 14), (16, 10, 10), (16, 5, 5), (120, 1, 1), (84,), (10,)]


def test_lenet5_totals():
    s = zoo.summary("lenet5")
    assert sum(r.connections for r in s.layers) == 340_908  # the paper's total
    assert s.total_params == 60_840  # "about 60,000 trainable parameters"


def test_lenet5_c3_table_reads_60_s2_maps():
    sizes = [len(t) for t in zoo.LENET5_C3_TABLE]
    assert sizes == [3] * 6 + [4] * 9 + [6]
    assert all(len(set(t)) == len(t) for t in zoo.LENET5_C3_TABLE)


# ---------------------------------------------------------- AlexNet (Krizhevsky et al. 2012)


def test_alexnet_shapes_and_conv1_im2col():
    s = zoo.summary("alexnet")
    assert s.row("conv1").output_shape == (96, 55, 55)
    assert s.row("pool5").output_shape == (256, 6, 6)
    assert arith.im2col_shape(zoo.alexnet().input_shape, 11, stride=4) == (363, 3025)


def test_alexnet_parameters_and_neurons():
    s = zoo.summary("alexnet")
    assert 60e6 <= s.total_params < 61e6  # "60 million parameters"
    assert s.row("conv2").params == (5 * 5 * 48 + 1) * 256  # each GPU's kernels see 48 maps
    # Section 3.5 lists the neurons after conv1 exactly: 186,624-64,896-64,896-43,264-4096-4096-1000
    neurons = [s.row(n).activations for n in ("conv2", "conv3", "conv4", "conv5", "fc6", "fc7",
                                               "fc8")]
    assert neurons == [186_624, 64_896, 64_896, 43_264, 4096, 4096, 1000]
    # ... and "650,000 neurons" in all; its conv1 figure, 253,440, is not 55 * 55 * 96 = 290,400
    total = sum(r.activations for r in s.layers if r.kind in ("conv", "linear"))
    assert total == pytest.approx(650_000, rel=0.02)


# --------------------------------------------------------------------------- VGG and ResNet


@pytest.mark.parametrize(("name", "params"), [
    ("vgg16", 138_357_544), ("vgg19", 143_667_240),
    ("resnet18", 11_689_512), ("resnet34", 21_797_672), ("resnet50", 25_557_032),
    ("resnet101", 44_549_160), ("resnet152", 60_192_808),
])
def test_parameter_totals_exact(name, params):
    assert zoo.summary(name).total_params == params


# He et al. 2016, Table 1, FLOPs (multiply-adds) in units of 10^9, given to one decimal. The
# paper's rounding is loose (3.66 is listed as 3.6, 7.57 as 7.6), so allow 0.07e9.
@pytest.mark.parametrize(("name", "gmacs"), [
    ("resnet18", 1.8), ("resnet34", 3.6), ("resnet50", 3.8), ("resnet101", 7.6),
    ("resnet152", 11.3),
])
def test_resnet_multiply_adds(name, gmacs):
    assert zoo.summary(name).total_macs == pytest.approx(gmacs * 1e9, abs=0.07e9)


def test_vgg_and_resnet_shapes():
    vgg = zoo.summary("vgg16")
    assert vgg.row("conv1_1").output_shape == (64, 224, 224)
    assert vgg.row("pool5").output_shape == (512, 7, 7)
    r50 = zoo.summary("resnet50")
    assert r50.row("conv2_1").output_shape == (256, 56, 56)
    assert r50.row("conv5_3").output_shape == (2048, 7, 7)
    assert r50.row("fc").output_shape == (1000,)


@pytest.mark.parametrize(("name", "convs"), [("resnet18", 17 + 3), ("resnet50", 49 + 4),
                                             ("resnet152", 151 + 4)])
def test_resnet_depth_counts_convs_plus_projections(name, convs):
    rows = zoo.summary(name, expand=True).layers
    assert sum(r.kind == "conv" for r in rows) == convs


# --------------------------------------------------------- GoogLeNet (Szegedy et al. 2015)

# Table 1: output shape, params in K (of 1024, as its fc row 1024 * 1000 = "1000K" shows), ops in M.
GOOGLENET_TABLE = {
    "conv1": ((64, 112, 112), 2.7, 34),
    "pool1": ((64, 56, 56), 0, 0),
    "conv2": ((192, 56, 56), 112, 360),  # conv2_reduce and conv2 together
    "pool2": ((192, 28, 28), 0, 0),
    "inception3a": ((256, 28, 28), 159, 128),
    "inception3b": ((480, 28, 28), 380, 304),
    "pool3": ((480, 14, 14), 0, 0),
    "inception4a": ((512, 14, 14), 364, 73),
    "inception4b": ((512, 14, 14), 437, 88),
    "inception4c": ((512, 14, 14), 463, 100),
    "inception4d": ((528, 14, 14), 580, 119),
    "inception4e": ((832, 14, 14), 840, 170),
    "pool4": ((832, 7, 7), 0, 0),
    "inception5a": ((832, 7, 7), 1072, 54),
    "inception5b": ((1024, 7, 7), 1388, 71),
    "pool5": ((1024, 1, 1), 0, 0),
    "fc": ((1000,), 1000, 1),
}
# Rows whose listed figures do not follow from the table's own channel columns: conv1 (7x7x3x64
# weights are 9.4K, 118M ops), 4c's params (its ops, 100M, match the channels), 5a's params and ops.
PARAMS_OFF = {"conv1", "inception4c", "inception5a"}
OPS_OFF = {"conv1", "inception5a"}


def googlenet_rows():
    """name -> (output shape, params, MACs), with conv2_reduce merged into conv2 as in Table 1."""
    rows = {r.name: (r.output_shape, r.params, r.macs) for r in zoo.summary("googlenet").layers}
    _, reduce_params, reduce_macs = rows.pop("conv2_reduce")
    shape, params, macs = rows["conv2"]
    rows["conv2"] = (shape, params + reduce_params, macs + reduce_macs)
    return rows


def test_googlenet_follows_table_1():
    rows = googlenet_rows()
    assert rows.keys() == GOOGLENET_TABLE.keys()
    for name, (shape, kparams, mops) in GOOGLENET_TABLE.items():
        out, params, macs = rows[name]
        assert out == shape, name
        if name not in PARAMS_OFF:
            assert params / 1024 == pytest.approx(kparams, rel=0.02, abs=0.5), name
        if name not in OPS_OFF:
            assert macs / 1e6 == pytest.approx(mops, abs=1), name


def test_googlenet_totals():
    s = zoo.summary("googlenet")
    assert s.total_params == 6_998_552
    # the paper's "6.8M" sums Table 1, whose K is 1024
    assert round(s.total_params / 1024 / 1000, 1) == 6.8
    # "1.5 billion multiply-adds"; the sum is 1.58e9, 84M of it the misprinted conv1 row
    assert s.total_macs == pytest.approx(1.5e9, abs=0.1e9)


def test_inception_bottleneck_saving():
    shape = (192, 28, 28)  # inception 3a's input
    reduced = summarize(Network("3a", shape, (zoo.inception("m", 64, 96, 128, 16, 32, 32),)))
    naive = summarize(Network("naive", shape, (zoo.inception("m", 64, None, 128, None, 32, None),)))
    assert naive.layers[0].output_shape == (64 + 128 + 32 + 192, 28, 28)
    assert naive.total_macs == 28 * 28 * 192 * (64 + 9 * 128 + 25 * 32)
    assert reduced.total_macs == 128_049_152
    # the reductions cut the work by more than half, and the pool branch no longer passes all
    # 192 input channels on to the next module
    assert naive.total_macs > 2 * reduced.total_macs


def test_three_3x3_convs_versus_one_7x7():
    shape = (64, 56, 56)
    three = summarize(Network("3x3", shape, tuple(Conv(f"c{i}", 64, 3, padding=1, bias=False)
                                                   for i in range(3))))
    one = summarize(Network("7x7", shape, (Conv("c", 64, 7, padding=3, bias=False),)))
    assert three.layers[-1].output_shape == one.layers[-1].output_shape
    assert (three.total_params, one.total_params) == (27 * 64 * 64, 49 * 64 * 64)


# ---------------------------------------------------------------------- summary behaviour


@pytest.mark.parametrize("name", ["googlenet", "resnet50", "vgg16"])
def test_expanded_summary_has_the_same_totals(name):
    grouped, expanded = zoo.summary(name), zoo.summary(name, expand=True)
    totals = ("total_params", "total_macs", "total_activations")
    assert [getattr(grouped, t) for t in totals] == [getattr(expanded, t) for t in totals]


def test_expanded_names_and_activations():
    s = zoo.summary("googlenet", expand=True)
    assert s.row("inception3a.3x3").output_shape == (128, 28, 28)
    assert s.row("inception3a.pool_proj").params == 192 * 32 + 32
    assert zoo.summary("googlenet").row("inception3a").activations == 28 * 28 * (
        64 + 96 + 128 + 16 + 32 + 192 + 32)  # every branch layer's output, pool included


def test_str_prints_an_aligned_table_with_totals():
    s = zoo.summary("resnet18")
    lines = str(s).splitlines()
    assert lines[0].startswith("resnet18: input 3x224x224")
    assert lines[1].split() == ["layer", "kind", "output", "params", "MACs", "activations"]
    assert len({len(line) for line in lines[1:]}) == 1  # every column padded to its width
    assert lines[-1].split() == ["total", f"{s.total_params:,}", f"{s.total_macs:,}",
                                 f"{s.total_activations:,}"]
    assert any(line.startswith("conv5_2 ") for line in lines)


def test_activation_bytes():
    s = zoo.summary("vgg16")
    assert s.activation_bytes() == 4 * s.total_activations
    assert s.activation_bytes("float64", batch_size=32) == 8 * 32 * s.total_activations


@pytest.mark.parametrize(("layers", "match"), [
    ((Residual("block", (Conv("c", 8, 3, stride=2, padding=1),)),),
     "layer 'block'.*main path gives .8, 4, 4. but the shortcut gives .4, 8, 8."),
    ((Concat("mix", ((Conv("a", 4, 1),), (Conv("b", 4, 3),))),), "differ in height or width"),
    ((Conv("big", 4, 11),), r"layer 'big' on input \(4, 8, 8\).*larger than the padded input"),
    ((PartialConv("p", ((0, 9),), 3),), r"table\[0\] = \(0, 9\) must list input maps in \[0, 4\)"),
])
def test_bad_specifications_name_the_layer(layers, match):
    with pytest.raises(ValueError, match=match):
        summarize(Network("bad", (4, 8, 8), layers))


def test_pool_kind_is_checked():
    with pytest.raises(ValueError, match="kind must be 'max' or 'avg'"):
        Pool("p", 2, kind="min")


def test_builders_reject_unknown_depths():
    with pytest.raises(ValueError, match=r"depth must be one of \[16, 19\], got 11"):
        zoo.vgg(11)
    with pytest.raises(ValueError, match=r"depth must be one of \[18, 34, 50, 101, 152\]"):
        zoo.resnet(20)


# --------------------------------------- the same networks written in PyTorch, as an oracle


def conv_relu(c_in, c_out, k, stride=1, padding=0, groups=1):
    return [nn.Conv2d(c_in, c_out, k, stride, padding, groups=groups), nn.ReLU()]


def torch_alexnet():
    return nn.Sequential(
        *conv_relu(3, 96, 11, 4), nn.MaxPool2d(3, 2),
        *conv_relu(96, 256, 5, padding=2, groups=2), nn.MaxPool2d(3, 2),
        *conv_relu(256, 384, 3, padding=1), *conv_relu(384, 384, 3, padding=1, groups=2),
        *conv_relu(384, 256, 3, padding=1, groups=2), nn.MaxPool2d(3, 2), nn.Flatten(),
        nn.Linear(256 * 6 * 6, 4096), nn.ReLU(), nn.Linear(4096, 4096), nn.ReLU(),
        nn.Linear(4096, 1000))


def torch_vgg16():
    layers, c = [], 3
    for v in (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
              512, 512, 512, "M"):
        layers += [nn.MaxPool2d(2)] if v == "M" else conv_relu(c, v, 3, padding=1)
        c = c if v == "M" else v
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(512 * 7 * 7, 4096), nn.ReLU(),
                         nn.Linear(4096, 4096), nn.ReLU(), nn.Linear(4096, 1000))


class TorchInception(nn.Module):
    def __init__(self, c_in, n1, n3r, n3, n5r, n5, proj):
        super().__init__()
        self.branches = nn.ModuleList([
            nn.Conv2d(c_in, n1, 1),
            nn.Sequential(nn.Conv2d(c_in, n3r, 1), nn.ReLU(), nn.Conv2d(n3r, n3, 3, padding=1)),
            nn.Sequential(nn.Conv2d(c_in, n5r, 1), nn.ReLU(), nn.Conv2d(n5r, n5, 5, padding=2)),
            nn.Sequential(nn.MaxPool2d(3, 1, padding=1), nn.Conv2d(c_in, proj, 1)),
        ])

    def forward(self, x):
        return torch.relu(torch.cat([b(x) for b in self.branches], 1))


def torch_googlenet():
    pool = nn.MaxPool2d(3, 2, ceil_mode=True)  # the reference model rounds up
    return nn.Sequential(
        *conv_relu(3, 64, 7, 2, 3), pool, *conv_relu(64, 64, 1), *conv_relu(64, 192, 3, padding=1),
        pool, TorchInception(192, 64, 96, 128, 16, 32, 32),
        TorchInception(256, 128, 128, 192, 32, 96, 64), pool,
        TorchInception(480, 192, 96, 208, 16, 48, 64),
        TorchInception(512, 160, 112, 224, 24, 64, 64),
        TorchInception(512, 128, 128, 256, 24, 64, 64),
        TorchInception(512, 112, 144, 288, 32, 64, 64),
        TorchInception(528, 256, 160, 320, 32, 128, 128), pool,
        TorchInception(832, 256, 160, 320, 32, 128, 128),
        TorchInception(832, 384, 192, 384, 48, 128, 128),
        nn.AvgPool2d(7), nn.Flatten(), nn.Dropout(0.4), nn.Linear(1024, 1000))


def conv_bn(c_in, c_out, k, stride=1):
    return [nn.Conv2d(c_in, c_out, k, stride, k // 2, bias=False), nn.BatchNorm2d(c_out)]


class TorchResidual(nn.Module):
    def __init__(self, c_in, width, stride, bottleneck):
        super().__init__()
        c_out = 4 * width if bottleneck else width
        if bottleneck:  # stride on the first 1x1, as in He et al.
            body = [*conv_bn(c_in, width, 1, stride), nn.ReLU(), *conv_bn(width, width, 3),
                    nn.ReLU(), *conv_bn(width, c_out, 1)]
        else:
            body = [*conv_bn(c_in, width, 3, stride), nn.ReLU(), *conv_bn(width, width, 3)]
        self.body = nn.Sequential(*body)
        same = stride == 1 and c_in == c_out
        self.shortcut = nn.Identity() if same else nn.Sequential(*conv_bn(c_in, c_out, 1, stride))

    def forward(self, x):
        return torch.relu(self.body(x) + self.shortcut(x))


def torch_resnet(counts, bottleneck):
    layers, c = [*conv_bn(3, 64, 7, 2), nn.ReLU(), nn.MaxPool2d(3, 2, 1)], 64
    for stage, (count, width) in enumerate(zip(counts, (64, 128, 256, 512), strict=True)):
        for i in range(count):
            layers.append(TorchResidual(c, width, 2 if i == 0 and stage > 0 else 1, bottleneck))
            c = 4 * width if bottleneck else width
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, 1000))


TORCH_NETS = {
    "alexnet": torch_alexnet,
    "vgg16": torch_vgg16,
    "googlenet": torch_googlenet,
    "resnet18": lambda: torch_resnet((2, 2, 2, 2), bottleneck=False),
    "resnet50": lambda: torch_resnet((3, 4, 6, 3), bottleneck=True),
}


@pytest.mark.parametrize("name", TORCH_NETS)
def test_counts_match_pytorch(name):
    net = zoo.network(name)
    with torch.device("meta"):  # shapes only: nothing is allocated or computed
        model = TORCH_NETS[name]().eval()
        x = torch.empty(1, *net.input_shape)
    with FlopCounterMode(display=False) as counter:
        out = model(x)
    s = zoo.summary(name)
    assert s.total_params == sum(p.numel() for p in model.parameters())
    assert 2 * s.total_macs == counter.get_total_flops()  # torch counts a multiply-add as 2 FLOPs
    assert s.layers[-1].output_shape == tuple(out.shape[1:])
