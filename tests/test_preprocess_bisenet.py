"""BiSeNet (face-parsing.PyTorch) architecture and its 19 -> 10 class mapping, with
random weights (the trained file is not available here)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from lib.errors import UserError
from lib.facemodel.schema import PARSING_CLASSES
from lib.preprocess.bisenet import CELEBAMASK_CLASSES, BiSeNet, BiSeNetParser, map_to_ours

OURS = {name: i for i, name in enumerate(PARSING_CLASSES)}

# Parameter names and shapes of face-parsing.PyTorch's 79999_iter.pth (a sample that
# pins every sub-module's name and width).
EXPECTED_SHAPES = {
    "cp.resnet.conv1.weight": (64, 3, 7, 7),
    "cp.resnet.layer2.0.downsample.0.weight": (128, 64, 1, 1),
    "cp.resnet.layer4.1.bn2.running_var": (512,),
    "cp.arm16.conv.conv.weight": (128, 256, 3, 3),
    "cp.arm32.conv_atten.weight": (128, 128, 1, 1),
    "cp.arm32.bn_atten.weight": (128,),
    "cp.conv_head32.conv.weight": (128, 128, 3, 3),
    "cp.conv_avg.conv.weight": (128, 512, 1, 1),
    "ffm.convblk.conv.weight": (256, 256, 1, 1),
    "ffm.conv1.weight": (64, 256, 1, 1),
    "ffm.conv2.weight": (256, 64, 1, 1),
    "conv_out.conv.conv.weight": (256, 256, 3, 3),
    "conv_out.conv_out.weight": (19, 256, 1, 1),
    "conv_out16.conv.conv.weight": (64, 128, 3, 3),
    "conv_out32.conv_out.weight": (19, 64, 1, 1),
}


def test_state_dict_layout_matches_face_parsing_pytorch():
    state = BiSeNet().state_dict()
    for key, shape in EXPECTED_SHAPES.items():
        assert tuple(state[key].shape) == shape, key
    weights = [k for k in state if not k.endswith("num_batches_tracked")]
    # Counted by hand (conv = 1 tensor, BN = 4): ResNet-18 5 + 8 blocks x 10 + 3
    # downsamples x 5 = 100; ARMs 2 x 10, heads16/32 + conv_avg 3 x 5 -> context path
    # 135; FFM 7; three outputs 3 x 6 -> 160.
    assert sum(k.startswith("cp.resnet.") for k in weights) == 100
    assert len(weights) == 160
    assert sum(p.numel() for p in BiSeNet().parameters()) == pytest.approx(13.3e6, rel=0.02)


def test_forward_shapes_with_random_weights():
    torch.manual_seed(0)
    out, aux16, aux32 = BiSeNet().eval()(torch.randn(1, 3, 64, 96))
    for o in (out, aux16, aux32):
        assert o.shape == (1, 19, 64, 96) and torch.isfinite(o).all()


def test_mapping_19_to_10_and_sides():
    lm = np.zeros((68, 2))
    lm[36:42] = [60, 100]  # subject's right eye: image left
    lm[42:48] = [160, 100]
    labels19 = np.zeros((200, 224), np.int64)
    expected = np.zeros((200, 224), np.uint8)
    boxes = {
        "skin": ((150, 160), "skin"), "nose": ((120, 112), "nose"), "mouth": ((170, 112), "inner_mouth"),
        "u_lip": ((165, 100), "upper_lip"), "l_lip": ((175, 100), "lower_lip"), "eye_g": ((130, 30), "skin"),
        "hair": ((10, 10), "background"), "l_ear": ((100, 5), "background"), "neck": ((195, 112), "background"),
    }
    for name, ((y, x), ours) in boxes.items():
        labels19[y, x] = CELEBAMASK_CLASSES.index(name)
        expected[y, x] = OURS[ours]
    # Whatever CelebAMask-HQ calls l/r, the side comes from the landmarks.
    labels19[100, 55], expected[100, 55] = CELEBAMASK_CLASSES.index("l_eye"), OURS["right_eye"]
    labels19[100, 165], expected[100, 165] = CELEBAMASK_CLASSES.index("l_eye"), OURS["left_eye"]
    labels19[80, 170], expected[80, 170] = CELEBAMASK_CLASSES.index("r_brow"), OURS["left_brow"]
    labels19[80, 50], expected[80, 50] = CELEBAMASK_CLASSES.index("r_brow"), OURS["right_brow"]
    np.testing.assert_array_equal(map_to_ours(labels19, lm), expected)


def test_parser_loads_saved_weights_and_parses(tmp_path):
    torch.manual_seed(1)
    path = tmp_path / "79999_iter.pth"
    torch.save({f"module.{k}": v for k, v in BiSeNet().state_dict().items()}, path)  # DataParallel prefix
    parser = BiSeNetParser.from_file(str(path))
    parser.input_size = 64  # keep the random-weight run small
    crop = np.random.default_rng(0).integers(0, 255, (48, 48, 3), dtype=np.uint8)
    lm = np.tile([24.0, 24.0], (68, 1))
    lm[42:48] += 10
    labels = parser.parse(crop, lm)
    assert labels.shape == (48, 48) and labels.dtype == np.uint8 and labels.max() < len(PARSING_CLASSES)
    bad = tmp_path / "other.pth"
    torch.save({"conv.weight": torch.zeros(3)}, bad)
    with pytest.raises(UserError, match="not face-parsing.PyTorch BiSeNet"):
        BiSeNetParser.from_file(str(bad))
    with pytest.raises(UserError, match="not found"):
        BiSeNetParser.from_file(str(tmp_path / "missing.pth"))
    with pytest.raises(UserError, match="needs preprocess.bisenet_weights"):
        BiSeNetParser.from_file("")
