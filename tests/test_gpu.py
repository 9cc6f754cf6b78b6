"""The GPU paths. Tests marked `cuda` (skipped without a GPU; `bench/gpu.py` runs them
first) compare each CUDA path with the CPU one on the same input. The CPU tests check
what can be checked without a GPU: device routing ('meta' tensors stand for any
non-CPU device), the process group of a launcher with one process, and that
`bench/gpu.py --cpu-smoke` runs every row of its table."""
import re

import numpy as np
import pytest
import torch
import torch.distributed as dist
from torch import nn

from lib.errors import UserError
from lib.geometry import euler_to_matrix, rigid_transform, vertex_normals
from lib.jit import numba_suits
from lib.ops import involution
from lib.render import render_mesh
from lib.render.rasterize import resolve_backend
from lib.render.synthetic import face_like_mesh
from lib.training.distributed import (
    all_reduce_sum,
    convert_sync_batchnorm,
    free_port,
    init_distributed,
    process_group_backend,
    shutdown_distributed,
)

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def posed_mesh(batch: int, grid: int = 61):
    """Face-like meshes [batch, V, 3] turned -30..30 deg, faces [F, 3], colours [batch, V, 3]."""
    vertices, faces = face_like_mesh(grid)
    yaw = torch.deg2rad(torch.linspace(-30.0, 30.0, batch))
    angles = torch.stack([torch.zeros(batch), yaw, torch.zeros(batch)], -1)
    posed = rigid_transform(vertices.expand(batch, -1, -1), euler_to_matrix(angles), torch.zeros(batch, 3))
    colors = torch.rand(batch, vertices.shape[0], 3, generator=torch.Generator().manual_seed(0))
    return posed, faces, colors


@pytest.fixture
def launched(monkeypatch):
    """The environment torchrun --nproc_per_node=1 gives its one process."""
    for key, value in dict(WORLD_SIZE="1", RANK="0", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1",
                           MASTER_PORT=str(free_port())).items():
        monkeypatch.setenv(key, value)
    yield
    shutdown_distributed()


# ------------------------------------------------------------------------- CPU


def test_numba_is_never_chosen_for_tensors_off_the_cpu():
    """'auto' routes non-CPU (here 'meta') and bf16 tensors to the torch paths, and an
    explicit 'numba' for them is refused with one clear message."""
    meta = torch.empty(2, 10, 3, device="meta")
    assert not numba_suits(meta)
    assert resolve_backend("auto", meta) == "torch"
    assert resolve_backend("auto", torch.zeros(2, 10, 3, dtype=torch.bfloat16)) == "torch"
    with pytest.raises(UserError, match="needs float32/float64 CPU tensors"):
        resolve_backend("numba", meta)
    faces = torch.tensor([[0, 1, 2], [2, 1, 3]], device="meta")
    normals = vertex_normals(meta, faces)  # would fail in the numba path (no numpy view of 'meta')
    assert normals.device.type == "meta" and normals.shape == (2, 10, 3)


def test_a_launched_single_process_trains_in_a_process_group(launched, monkeypatch):
    """Under a launcher with WORLD_SIZE=1 (torchrun --nproc_per_node=1) a process group
    exists, so one device runs the DDP path of many; without a launcher none does."""
    info, device = init_distributed("cpu")
    assert info.enabled and info.world_size == 1 and info.is_main and device.type == "cpu"
    assert dist.is_initialized() and dist.get_backend() == "gloo"
    total = all_reduce_sum(torch.tensor([1.5, 2.0], dtype=torch.float64), info)
    assert total.tolist() == [1.5, 2.0]
    shutdown_distributed()
    monkeypatch.delenv("WORLD_SIZE")
    info, _ = init_distributed("cpu")
    assert not info.enabled and not dist.is_initialized()


def test_bfm_size_face_model_has_bfm09_layout():
    """The benchmark's stand-in for BFM09 (built through the real loader) has its
    sizes: the index sets of the real model then apply (Pixel-Face's 101 points)."""
    from bench.gpu import bfm_size_face_model
    from lib.facemodel.bfm import BFM_FRONT_VERTICES, PIXEL_FACE101_BFM

    model = bfm_size_face_model(189)
    assert (model.num_vertices, model.num_id, model.num_exp, model.num_tex) == (BFM_FRONT_VERTICES, 80, 64, 80)
    assert abs(len(model.faces) - 70789) < 200  # BFM front: 70,789 triangles
    np.testing.assert_array_equal(model.extra_landmarks["pixel_face101"], PIXEL_FACE101_BFM)
    assert len(np.unique(model.landmarks68)) == 68
    assert set(np.unique(model.region_labels)) == set(range(10))  # every parsing class is on the mesh


@pytest.mark.slow
def test_gpu_check_smoke_run_has_every_row_and_bf16_agrees():
    """bench/gpu.py --cpu-smoke, in process: every row of the rasterizer and objective
    sections runs (tiny sizes) and bf16 autocast gives the fp32 objective within the
    check's tolerance; the network section's rows are distinct and its least common
    path (bf16, channels_last, lean involution, cuDNN autotuner flag) runs. (The tests,
    data and ddp sections start processes: `bench/gpu.py --cpu-smoke` runs them.)"""
    from bench.gpu import (
        AGREEMENT_MIN_COSINE,
        AGREEMENT_RTOL,
        SMOKE_SIZES,
        cudnn_benchmark,
        format_table,
        network_step_seconds,
        network_variants,
        paper_config,
        run_check,
    )

    rows = run_check(("raster", "objective"), smoke=True, isolate=False)
    assert [r.status for r in rows] == ["ok"] * len(rows), format_table(rows)
    names = [r.name for r in rows]
    assert sum(n.startswith("rasterizer torch") for n in names) == 2
    assert sum(n.startswith("training step") for n in names) == 2
    assert sum(n.startswith("bf16 vs fp32") for n in names) == 2  # initial weights, after a step
    (agreement,) = [r for r in rows if r.name.startswith("bf16 vs fp32") and r.name.endswith("initial weights")]
    rel = float(re.search(r"\(rel ([0-9.e+-]+)\)", agreement.result).group(1))
    cosine = float(re.search(r"gradient cosine ([0-9.]+)", agreement.result).group(1))
    assert rel <= AGREEMENT_RTOL and cosine >= AGREEMENT_MIN_COSINE
    table = format_table(rows)
    assert all(name in table for name in names)

    cfg = paper_config(SMOKE_SIZES)
    variants = network_variants(cfg, SMOKE_SIZES)
    assert len(variants) == len(set(variants)) == 8  # 2 dtypes x 2 formats, 2 involutions, 2 autotuned
    with cudnn_benchmark(True):
        seconds, peak = network_step_seconds(cfg, SMOKE_SIZES, torch.device("cpu"), cfg.data.image_size, 2,
                                             amp=True, channels_last=True, involution="lean")
    assert seconds > 0 and peak is None


# ------------------------------------------------------------------------ CUDA


@pytest.mark.cuda
@needs_cuda
def test_cuda_render_forward_and_gradients_match_cpu():
    posed, faces, colors = posed_mesh(3)
    out = {}
    for device in ("cpu", "cuda"):
        verts = posed.to(device).requires_grad_()
        cols = colors.to(device).requires_grad_()
        result = render_mesh(verts, faces.to(device), {"rgb": cols}, (96, 96), backend="torch")
        (result.images["rgb"] * torch.linspace(0.5, 1.5, 96, device=device)[:, None, None]).sum().backward()
        out[device] = [t.detach().cpu() for t in (result.face_index, result.images["rgb"], verts.grad, cols.grad)]
    index_c, image_c, vgrad_c, cgrad_c = out["cpu"]
    index_g, image_g, vgrad_g, cgrad_g = out["cuda"]
    assert (index_c >= 0).float().mean() > 0.3
    same = index_c == index_g
    assert same.float().mean() > 0.9999
    torch.testing.assert_close(image_g[same], image_c[same], atol=1e-4, rtol=0)
    torch.testing.assert_close(vgrad_g, vgrad_c, atol=1e-3 * vgrad_c.abs().max().item(), rtol=0)
    torch.testing.assert_close(cgrad_g, cgrad_c, atol=1e-3 * cgrad_c.abs().max().item(), rtol=0)


@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("implementation", ["unfold", "lean"])
def test_cuda_involution_matches_cpu_also_under_bf16(implementation):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 32, 15, 15, generator=gen)
    weight = torch.randn(2, 2 * 49, 8, 8, generator=gen)
    grads = {}
    for device in ("cpu", "cuda"):
        xd, wd = x.to(device).requires_grad_(), weight.to(device).requires_grad_()
        out = involution(xd, wd, 7, stride=2, implementation=implementation)
        (out * out).sum().backward()
        grads[device] = (out.detach().cpu(), xd.grad.cpu(), wd.grad.cpu())
    for cpu, gpu in zip(grads["cpu"], grads["cuda"]):
        torch.testing.assert_close(gpu, cpu, atol=1e-4 * cpu.abs().max().item(), rtol=1e-4)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        low = involution(x.cuda().bfloat16(), weight.cuda().bfloat16(), 7, stride=2, implementation=implementation)
    assert low.dtype == torch.bfloat16
    torch.testing.assert_close(low.float().cpu(), grads["cpu"][0], atol=0.05 * grads["cpu"][0].abs().max().item(),
                               rtol=0)


@pytest.mark.cuda
@needs_cuda
def test_cuda_vertex_normals_match_cpu():
    posed, faces, _ = posed_mesh(2)
    cpu = vertex_normals(posed, faces)
    gpu = vertex_normals(posed.cuda(), faces.cuda())
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-5, rtol=0)


@pytest.mark.cuda
@needs_cuda
def test_cuda_process_group_reduces_cpu_and_cuda_tensors_and_syncs_batchnorm(launched):
    """nccl for CUDA tensors, gloo for the CPU ones the loop sums; torch's SyncBatchNorm
    over one process equals BatchNorm, forward and backward, fp32 and bf16."""
    info, device = init_distributed("cuda")
    assert info.enabled and device.type == "cuda"
    assert process_group_backend(device) == "cpu:gloo,cuda:nccl"
    assert all_reduce_sum(torch.tensor([2.5], dtype=torch.float64), info).tolist() == [2.5]
    assert all_reduce_sum(torch.tensor([1.0, 3.0], device=device), info).tolist() == [1.0, 3.0]
    torch.manual_seed(0)
    plain = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU()).to(device)
    synced = convert_sync_batchnorm(nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU()), device)
    synced.load_state_dict(plain.state_dict())
    synced = synced.to(device)
    assert isinstance(synced[1], nn.SyncBatchNorm)
    x = torch.randn(4, 3, 16, 16, device=device)
    for amp in (False, True):
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
            a, b = plain(x), synced(x)
        a.float().sum().backward()
        b.float().sum().backward()
        torch.testing.assert_close(b.float(), a.float(), atol=2e-2 if amp else 1e-5, rtol=0)
    torch.testing.assert_close(synced[0].weight.grad, plain[0].weight.grad, atol=1e-2, rtol=1e-2)


@pytest.mark.cuda
@needs_cuda
def test_cuda_training_step_matches_cpu(tmp_path):
    """The first Trainer step (tiny network, small BFM-layout model, fp32) gives the
    same loss terms on the GPU as on the CPU, and a bf16 step stays finite."""
    from bench.gpu import SMOKE_SIZES, batch_on, bfm_size_face_model, paper_config, synthetic_samples
    from lib.training import Trainer
    from models.checkpoint import build_model, load_checkpoint, save_checkpoint

    face_model = bfm_size_face_model(SMOKE_SIZES.face_grid)
    terms = {}
    for device, amp in (("cpu", False), ("cuda", False), ("cuda", True)):
        cfg = paper_config(SMOKE_SIZES, ("train.batch_size=2", f"train.amp={str(amp).lower()}"))
        samples = synthetic_samples(face_model, 2, cfg.data.image_size)
        torch.manual_seed(0)
        trainer = Trainer(build_model(cfg, face_model), face_model, samples, None, cfg,
                          str(tmp_path / f"{device}{amp}"), save_checkpoint, load_checkpoint,
                          device=torch.device(device))
        terms[(device, amp)] = trainer._train_step(batch_on(samples, torch.device(device)), use_parsing=True)
    cpu, gpu, bf16 = terms[("cpu", False)], terms[("cuda", False)], terms[("cuda", True)]
    assert cpu is not None and gpu is not None and bf16 is not None  # no step skipped as non-finite
    for key in cpu:
        assert gpu[key] == pytest.approx(cpu[key], rel=1e-3, abs=1e-6), key
    assert bf16["total"] == pytest.approx(cpu["total"], rel=0.05)
