"""The seed's state-dict layout (network/MVRnet.py:25-49 with network/Tri_Unet.py,
network/Rednet.py, lib/involution/involution_cuda.py, network/Bisenet.py), written from
its definition, and checkpoints of that layout (imported as `from seed_layout import ...`)."""
import torch

def seed_state_shapes(parser: bool = False) -> dict:
    """Every key of the seed MVRNet's state dict with its shape, written from
    network/Tri_Unet.py and network/Rednet.py (mmcv ConvModule: conv, bn); with
    `parser`, also its frozen BiSeNet (network/Bisenet.py, 10 classes: the module tree
    of face-parsing.PyTorch, whose keys lib.preprocess.bisenet reproduces)."""
    shapes = {}

    def conv(name, cin, cout, k=1, bias=True):
        shapes[f"{name}.weight"] = (cout, cin, k, k)
        if bias:
            shapes[f"{name}.bias"] = (cout,)

    def norm(name, c):
        for p in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{name}.{p}"] = (c,)
        shapes[f"{name}.num_batches_tracked"] = ()

    def double(name, cin, cout):
        conv(f"{name}.conv.0", cin, cout, 3)
        norm(f"{name}.conv.1", cout)
        conv(f"{name}.conv.3", cout, cout, 3)
        norm(f"{name}.conv.4", cout)

    def conv_module(name, cin, cout, k, with_norm=True):
        conv(f"{name}.conv", cin, cout, k, bias=not with_norm)
        if with_norm:
            norm(f"{name}.bn", cout)

    def inv(name, c, k):
        conv_module(f"{name}.conv1", c, c // 4, 1)
        conv_module(f"{name}.conv2", c // 4, k * k * c // 16, 1, with_norm=False)

    for v in range(3):
        for i, (cin, cout) in enumerate([(4, 64), (64, 128), (128, 256), (256, 512), (512, 1024)], 1):
            double(f"uuunet.conv{i}_{v}", cin, cout)
        for i, f in enumerate((64, 128, 256, 512), 1):
            for branch, cin, cout in (("W_g", f, f // 2), ("W_x", f, f // 2), ("psi", f // 2, 1)):
                conv(f"uuunet.att{i}_{v}.{branch}.0", cin, cout)
                norm(f"uuunet.att{i}_{v}.{branch}.1", cout)
    for j, (cin, cout) in enumerate([(3072, 512), (512, 256), (256, 128), (128, 64)]):
        shapes[f"uuunet.up{6 + j}.weight"] = (cin, cout, 2, 2)
        shapes[f"uuunet.up{6 + j}.bias"] = (cout,)
    for j, (cin, cout) in enumerate([(2048, 512), (1024, 256), (512, 128), (256, 64)]):  # conv9: unused
        double(f"uuunet.conv{6 + j}", cin, cout)
    r = "rednet_fc.rednet"
    conv_module(f"{r}.stem.0", 256, 32, 3)
    inv(f"{r}.stem.1", 32, 3)
    norm(f"{r}.stem.2", 32)
    conv_module(f"{r}.stem.4", 32, 64, 3)
    cin = 64
    for i, blocks in enumerate((3, 4, 6, 3)):
        cout = 256 * 2**i
        for b in range(blocks):
            name = f"{r}.layer{i + 1}.{b}"
            conv(f"{name}.conv1", cin if b == 0 else cout, cout // 4, bias=False)
            norm(f"{name}.bn1", cout // 4)
            inv(f"{name}.conv2", cout // 4, 7)
            norm(f"{name}.bn2", cout // 4)
            conv(f"{name}.conv3", cout // 4, cout, bias=False)
            norm(f"{name}.bn3", cout)
            if b == 0:
                conv(f"{name}.downsample.0", cin, cout, bias=False)
                norm(f"{name}.downsample.1", cout)
        cin = cout
    for i, (cin, cout) in ((0, (2048, 1024)), (2, (1024, 512)), (4, (512, 318))):  # pts_net: unused
        shapes[f"{r}.pts_net.{i}.weight"] = (cout, cin)
        shapes[f"{r}.pts_net.{i}.bias"] = (cout,)
    shapes[f"{r}.pts_net.1.weight"] = shapes[f"{r}.pts_net.3.weight"] = (1,)
    for head, k in (("id", 80), ("exp", 64), ("color", 80), ("gamma", 27)):
        conv(f"rednet_fc.conv2_{head}", 2048, k)
    for view in ("lt", "ft", "rt"):
        for head, k in (("rotate", 3), ("offset_xy", 2), ("offset_z", 1)):
            conv(f"rednet_fc.conv2_{head}_{view}", 2048, k)
    if parser:
        from lib.preprocess.bisenet import BiSeNet

        shapes.update({f"mask_model.{k}": tuple(v.shape) for k, v in BiSeNet(10).state_dict().items()})
    return shapes


HEADS = {"id": 80, "exp": 64, "color": 80, "gamma": 27}
POSE_HEADS = {"rotate": 3, "offset_xy": 2, "offset_z": 1}
POOL_SIZE = 2**16


def seed_head_keys() -> list[str]:
    """The seed's 1x1 head convolutions (network/Rednet.py:501-516), without '.weight'."""
    names = [f"rednet_fc.conv2_{h}" for h in HEADS]
    return names + [f"rednet_fc.conv2_{h}_{v}" for v in ("lt", "ft", "rt") for h in POSE_HEADS]


def random_seed_state(seed: int = 0, head_biases: dict | None = None, prefix: str = "module.") -> dict:
    """A state dict in the seed's exact layout (every key and shape of
    seed_state_shapes(parser=True), DataParallel's prefix) with random weights.

    Weight tensors of 2 or more dimensions are strided views into small random pools
    (He-scaled per fan-in), so the 97M-value state costs a few MB in memory and on disk;
    BatchNorm statistics are plausible (positive variances) so the network stays finite.
    head_biases: {seed head name without '.bias' -> tensor}; the heads' weights are then
    zero, so the network outputs exactly those biases.
    """
    gen = torch.Generator().manual_seed(seed)
    pools: dict[tuple, torch.Tensor] = {}
    state = {}
    for key, shape in seed_state_shapes(parser=True).items():
        name, kind = key.rsplit(".", 1)
        if head_biases is not None and name in head_biases:
            value = head_biases[name].clone() if kind == "bias" else torch.zeros(shape)
        elif kind == "num_batches_tracked":
            value = torch.tensor(1000)
        elif kind == "running_var":
            value = 0.5 + torch.rand(shape, generator=gen)
        elif kind == "running_mean" or kind == "bias":
            value = 0.05 * torch.randn(shape, generator=gen)
        elif len(shape) == 1:  # BatchNorm scales, PReLU slopes
            value = 0.5 + 0.5 * torch.rand(shape, generator=gen)
        else:
            fan_in = shape[1] * (shape[2] * shape[3] if len(shape) == 4 else 1)
            # An involution multiplies its input by kernels computed from it: generated
            # kernels of unit scale would square the activations' scale every block.
            taps = shape[0] // (shape[1] * 4 // 16) if name.endswith("conv2.conv2.conv") or name.endswith("stem.1.conv2.conv") else 1
            pool_key = (fan_in, taps)
            if pool_key not in pools:
                pools[pool_key] = torch.randn(POOL_SIZE, generator=gen) * (2.0 / fan_in) ** 0.5 / taps
            value = pools[pool_key].as_strided(shape, (1, 3, 5, 7)[: len(shape)])
        state[prefix + key] = value
    return state
