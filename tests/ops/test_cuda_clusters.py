"""The cuda backend's sm_90 thread-block-cluster kernels (``STYLEGAN_FAST_CUDA_CLUSTERS=1``).

They replace the two-sweep kernels for planes that one CTA cannot hold: each plane (NCHW) or narrow
channel tile (channels_last) is spread over a cluster whose CTAs keep their slice on chip. These
tests need a GPU of compute capability 9.x and the cuda backend, so they skip elsewhere; without a
GPU, tests/ops/test_cuda_sass.py checks that the kernels compile as cluster kernels. Each case
checks that a cluster kernel really ran (a fallback to the two-sweep kernels would pass the math
unnoticed) and that output and gradients match the definition, as every backend must.
"""
import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from stylegan_fast import ops
from stylegan_fast.ops import adain, adain_reference

from .helpers import assert_close_to_reference
from .test_style_epilogue import epilogue, epilogue_reference, make_args


def _cluster_capable() -> str:
    """Why these tests cannot run here, or '' when they can."""
    if not torch.cuda.is_available():
        return "needs a CUDA GPU"
    if torch.cuda.get_device_capability()[0] != 9:
        return "thread-block clusters are used on sm_90 only"
    status = ops.available_backends("cuda")["cuda"]
    return "" if status.available else f"the cuda backend is unavailable: {status.reason}"


pytestmark = pytest.mark.skipif(bool(_cluster_capable()), reason=_cluster_capable() or "ok")

# (shape, dtype, channels_last): whole planes stashed (256, 512, bf16 1024), a partial stash
# (fp32 1024x1024), scalar fallbacks (odd H*W: V = 1 along rows; C % 4 != 0: V = 1 along C).
CASES = [
    ((2, 3, 256, 256), torch.float32, False),
    ((2, 3, 256, 256), torch.float32, True),
    ((1, 2, 512, 512), torch.bfloat16, False),
    ((1, 4, 512, 512), torch.bfloat16, True),
    ((1, 2, 1024, 1024), torch.float32, False),
    ((1, 2, 1024, 1024), torch.bfloat16, False),
    ((1, 3, 181, 183), torch.float32, False),
    ((2, 5, 200, 200), torch.float16, True),
]


def _ran_cluster_kernel(fn) -> bool:
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    return any("cluster_kernel" in event.key for event in prof.key_averages())


@pytest.mark.parametrize("shape,dtype,channels_last", CASES,
                         ids=lambda v: "x".join(map(str, v)) if isinstance(v, tuple) else str(v))
def test_style_epilogue_on_clusters_matches_reference(monkeypatch, shape, dtype, channels_last):
    monkeypatch.setenv("STYLEGAN_FAST_CUDA_CLUSTERS", "1")
    args = make_args(shape, dtype, "cuda", channels_last)
    dy = torch.randn_like(args[0])
    with ops.use_backend("cuda"):
        assert _ran_cluster_kernel(lambda: epilogue(*args).backward(dy))
    assert_close_to_reference(epilogue, epilogue_reference, args, "cuda", dy)


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
def test_adain_on_clusters_matches_reference(monkeypatch, channels_last):
    monkeypatch.setenv("STYLEGAN_FAST_CUDA_CLUSTERS", "1")
    x, _, scale, bias, _, _ = make_args((2, 3, 256, 256), torch.float32, "cuda", channels_last)
    with ops.use_backend("cuda"):
        assert _ran_cluster_kernel(lambda: adain(x, scale, bias).sum().backward())
    assert_close_to_reference(adain, adain_reference, [x, scale, bias], "cuda")


def test_clusters_are_off_unless_requested(monkeypatch):
    monkeypatch.setenv("STYLEGAN_FAST_CUDA_CLUSTERS", "0")
    args = make_args((1, 2, 512, 512), torch.float32, "cuda")
    with ops.use_backend("cuda"):
        assert not _ran_cluster_kernel(lambda: epilogue(*args).sum().backward())
