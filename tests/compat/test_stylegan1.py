"""Converting NVIDIA's StyleGAN1 pickles: the restricted reader, the variable mapping, exactness
against an independent implementation of the official networks, and bad input."""
import pickle

import numpy as np
import pytest
import torch

from stylegan_fast.compat import stylegan1
from stylegan_fast.compat.stylegan1.networks import discriminator_rules, generator_rules
from stylegan_fast.ops import use_backend
from stylegan_fast.train import checkpoint
from tests.compat.stylegan1_official import (
    OFFICIAL_GLOBALS,
    official_discriminator,
    official_generator,
    official_globals,
    official_networks,
    write_official_pickle,
)

# Small official-format networks: 32 px (upsample-then-conv everywhere) and 128 px (the fused
# transposed up-conv and stride-2 down-conv at 128 px), non-default latent and channel sizes.
SMALL = dict(fmap_base=128, fmap_max=16, latent_size=12, dlatent_size=12, mapping_layers=3)


@pytest.fixture(scope="module", params=[32, 128])
def official(request, tmp_path_factory):
    """(resolution, the official stand-in networks, their pickle)."""
    nets = official_networks(request.param, seed=request.param, **SMALL)
    path = write_official_pickle(tmp_path_factory.mktemp("pkl") / "official.pkl", nets)
    return request.param, nets, path


def test_fixture_pickles_hold_only_the_official_globals(official):
    assert official_globals(official[2]) == OFFICIAL_GLOBALS


def test_reader_returns_plain_networks(official):
    res, nets, path = official
    read = stylegan1.read_official_pickle(path)
    assert [read[k].name for k in ("G", "D", "Gs")] == ["G", "D", "Gs"]
    assert read["Gs"].components["synthesis"].build_func_name == "G_synthesis"
    for name, value in nets["Gs"].components["synthesis"].variables:
        np.testing.assert_array_equal(read["Gs"].components["synthesis"].variables[name], value)
    assert isinstance(read["G"].variables["lod"], np.floating)


def test_every_variable_is_mapped_with_its_layout(official):
    """Each of our parameters and buffers equals its official variable, transposed (dense,
    conv) and, for the fused up-conv at >= 128 px, flipped."""
    res, nets, path = official
    state = stylegan1.converted_state(path)
    read = stylegan1.read_official_pickle(path)
    arch = stylegan1.architecture(read["G"], read["D"])
    G = stylegan1.convert_generator(read["Gs"], arch)
    D = stylegan1.convert_discriminator(read["D"], arch)
    rules = {**{f"G_ema.{k}": v for k, v in generator_rules(read["Gs"], G).items()},
             **{f"D.{k}": v for k, v in discriminator_rules(read["D"], D).items()}}
    assert len(rules) == len(state["G_ema"]) + len(state["D"])
    for key, (net, name, layout) in rules.items():
        role, ours = key.split(".", 1)
        np.testing.assert_array_equal(state[role][ours].numpy(), layout(net.variables[name]))
    syn = dict(nets["Gs"].components["synthesis"].variables)
    mapping = dict(nets["Gs"].components["mapping"].variables)
    G_ema = state["G_ema"]
    np.testing.assert_array_equal(G_ema["mapping.layers.1.weight"], mapping["Dense1/weight"].T)
    np.testing.assert_array_equal(G_ema["mapping.w_avg"], dict(nets["Gs"].variables)["dlatent_avg"])
    np.testing.assert_array_equal(G_ema["synthesis.const_noise3"], syn["noise3"])
    np.testing.assert_array_equal(G_ema["synthesis.blocks.1.epilogue0.style_affine.weight"],
                                  syn["8x8/Conv0_up/StyleMod/weight"].T)
    np.testing.assert_array_equal(G_ema["synthesis.to_rgb.b8.bias"],
                                  syn[f"ToRGB_lod{int(np.log2(res)) - 3}/bias"])
    top_kernel = syn[f"{res}x{res}/Conv0_up/weight"].transpose(3, 2, 0, 1)
    ours = G_ema[f"synthesis.blocks.{int(np.log2(res)) - 2}.conv0_up.weight"].numpy()
    np.testing.assert_array_equal(ours, top_kernel[:, :, ::-1, ::-1] if res >= 128 else top_kernel)
    # G (raw weights) comes from G, G_ema from Gs: different values under the same names
    assert not torch.equal(state["G"]["synthesis.const"], state["G_ema"]["synthesis.const"])


@pytest.mark.parametrize("backend", ["ref", "eager"])
def test_converted_networks_compute_the_official_functions(official, backend):
    """G_ema (from Gs) with constant noise = official Gs with randomize_noise=False, truncation
    psi 0.7 cutoff 8; G = official G; D = official D: float64 to rounding, float32 to float32
    precision."""
    res, nets, path = official
    state = stylegan1.converted_state(path)
    from stylegan_fast.tools.loading import generator_from_state

    read = stylegan1.read_official_pickle(path)
    arch = stylegan1.architecture(read["G"], read["D"])
    z = torch.randn(6, SMALL["latent_size"], dtype=torch.float64,
                    generator=torch.Generator().manual_seed(res))
    images = torch.randn(8, 3, res, res, dtype=torch.float64,
                         generator=torch.Generator().manual_seed(1))
    G_ema = generator_from_state(state)
    G = stylegan1.convert_generator(read["G"], arch).eval()
    D = stylegan1.convert_discriminator(read["D"], arch)
    cases = [(G_ema, nets["Gs"], (0.7, 8)), (G, nets["G"], (0.5, 3)),
             (G_ema, nets["Gs"], (None, 8))]
    with use_backend(backend), torch.no_grad():
        for module, official_net, (psi, cutoff) in cases:
            expected = official_generator(official_net, z.numpy(), psi, cutoff)
            psi_ours, cutoff_ours = stylegan1.official_truncation(psi, cutoff)
            for dtype, tol in ((torch.float64, 1e-11), (torch.float32, 2e-5)):
                got = module.to(dtype)(z.to(dtype), truncation_psi=psi_ours,
                                       truncation_cutoff=cutoff_ours, noise_mode="const")
                err = (got.double() - expected).abs().max() / expected.abs().max()
                assert err < tol, (dtype, psi, cutoff, err.item())
        expected = official_discriminator(nets["D"], images.numpy())
        for dtype, tol in ((torch.float64, 1e-11), (torch.float32, 2e-5)):
            got = D.to(dtype)(images.to(dtype))
            assert ((got.double() - expected).abs().max() / expected.abs().max()) < tol


def test_checkpoint_written_by_convert(official, tmp_path):
    res, nets, path = official
    dst = stylegan1.convert(path, tmp_path / "converted.pt")
    state = checkpoint.load(dst)  # weights_only: plain values and tensors
    assert set(state) >= {"G", "D", "G_ema", "opt_G", "opt_D", "config", "progress", "official"}
    config = state["config"]
    assert (config["resolution"], config["z_dim"], config["channel_base"]) == (res, 12, 128)
    assert config["progressive"] and config["start_resolution"] == res
    assert config["mixing"] == "per-batch" and config["data"] is None
    assert state["progress"]["lod"] == 0 and state["progress"]["nimg"] == 0
    official_record = state["official"]
    assert (official_record["truncation_psi"], official_record["truncation_cutoff"]) == (0.7, 8)
    assert official_record["networks"] == {"G": "G", "D": "D", "Gs": "Gs"}
    assert [p.name for p in tmp_path.iterdir()] == ["converted.pt"]  # no temporary file left
    with pytest.raises(FileExistsError, match="--force"):
        stylegan1.convert(path, dst)
    assert stylegan1.convert(path, dst, overwrite=True) == dst


def test_official_truncation():
    assert stylegan1.official_truncation(0.7, 8) == (0.7, 8)
    assert stylegan1.official_truncation(0.7, None) == (1.0, 0)  # official None: no truncation
    assert stylegan1.official_truncation(None, 8) == (1.0, 0)
    with pytest.raises(ValueError, match="truncation_cutoff"):
        stylegan1.official_truncation(0.5, -1)


def test_architecture_defaults_from_minimal_static_kwargs():
    """Missing kwargs mean NVIDIA's defaults (fmap_base 8192, 512-d latents, 8 mapping layers);
    resolution and channels come from the variables."""
    net = stylegan1.OfficialNetwork
    syn = net("G_synthesis", "G_synthesis", {"resolution": 1024},
              variables={f"ToRGB_lod{k}/weight": np.zeros((1, 1, 1, 3), np.float32)
                         for k in range(9)})
    mapping = net("G_mapping", "G_mapping", {}, variables={
        f"Dense{i}/weight": np.zeros((1, 1), np.float32) for i in range(8)})
    G = net("G", "G_style", {}, {"mapping": mapping, "synthesis": syn})
    arch = stylegan1.architecture(G, net("D", "D_basic", {"num_channels": 3}))
    assert arch == dict(resolution=1024, img_channels=3, z_dim=512, w_dim=512, channel_base=8192,
                        channel_max=512, mapping_layers=8, style_mixing_prob=0.9,
                        truncation_psi=0.7, truncation_cutoff=8)


# ---- bad input: one clear error naming what was found -----------------------------------------
def _write(tmp_path, nets, **kwargs):
    return write_official_pickle(tmp_path / "bad.pkl", nets, **kwargs)


def _drop(network, name):
    network.variables[:] = [(k, v) for k, v in network.variables if k != name]


def _small(**kwargs):
    return official_networks(32, **SMALL, **kwargs)


@pytest.mark.parametrize("change, message", [
    (lambda n: setattr(n["G"], "build_func_name", "G_main"), "StyleGAN2"),
    (lambda n: setattr(n["D"], "build_func_name", "D_stylegan2"), "StyleGAN2"),
    (lambda n: n["Gs"].variables.append(("extra/weight", np.zeros(3, np.float32))),
     "extra/weight"),
    (lambda n: _drop(n["D"], "FromRGB_lod1/weight"), "no variable 'FromRGB_lod1/weight'"),
    (lambda n: n["Gs"].components["synthesis"].variables.__setitem__(
        1, ("noise0", np.zeros((1, 1, 8, 8), np.float32))), "noise0"),
    (lambda n: n["G"].variables.__setitem__(0, ("lod", np.float32(1.5))), "lod 1.5"),
    (lambda n: n["G"].components.pop("mapping"), "'mapping' is missing"),
])
def test_bad_networks(tmp_path, change, message):
    nets = _small()
    change(nets)
    with pytest.raises(stylegan1.OfficialPickleError, match=message):
        stylegan1.converted_state(_write(tmp_path, nets))


@pytest.mark.parametrize("kwargs, message", [
    ({"nonlinearity": "relu"}, "nonlinearity='relu'"),
    ({"label_size": 10}, "label_size=10"),
    ({"use_magic": True}, "use_magic"),
    ({"resolution": 64}, "resolution=64"),
])
def test_unsupported_static_kwargs(tmp_path, kwargs, message):
    path = _write(tmp_path, _small(static_kwargs=kwargs))
    with pytest.raises(stylegan1.OfficialPickleError, match=message):
        stylegan1.converted_state(path)


@pytest.mark.parametrize("order, message", [
    (("G", "Gs"), "D or Gs is missing"),
    (("G", "Gs", "D"), "D is G_style"),
])
def test_wrong_tuple(tmp_path, order, message):
    with pytest.raises(stylegan1.OfficialPickleError, match=message):
        stylegan1.read_official_pickle(_write(tmp_path, _small(), order=order))


class _Payload:
    def __reduce__(self):
        import os
        return (os.system, ("touch pwned",))


def test_foreign_and_damaged_files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = _write(tmp_path, _small())
    cases = {
        "truncated.pkl": (path.read_bytes()[:len(path.read_bytes()) // 2], "truncated"),
        "text.pkl": (b"hello, not a pickle", "could not be read as a pickle"),
        "code.pkl": (pickle.dumps(_Payload()), "posix.system|nt.system|os.system"),
        "dict.pkl": (pickle.dumps({"G": 1}), "holds dict"),
    }
    torch.save({"G_ema": {}}, tmp_path / "ours.pt")
    cases["ours.pkl"] = ((tmp_path / "ours.pt").read_bytes(), "zip file")
    for name, (data, message) in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(stylegan1.OfficialPickleError, match=message):
            stylegan1.read_official_pickle(tmp_path / name)
    assert not (tmp_path / "pwned").exists()  # the pickle's code never ran
    with pytest.raises(FileNotFoundError):
        stylegan1.read_official_pickle(tmp_path / "missing.pkl")


def test_pytorch_stylegan2_pickle_is_named(tmp_path):
    """StyleGAN2-ADA / StyleGAN3 pickles refer to torch_utils.persistence: refused by name."""
    body = (pickle.SHORT_BINUNICODE + bytes([len("torch_utils.persistence")]) +
            b"torch_utils.persistence" + pickle.SHORT_BINUNICODE + bytes([len("_reconstruct")]) +
            b"_reconstruct" + pickle.STACK_GLOBAL + pickle.STOP)
    data = b"\x80\x04" + body
    (tmp_path / "sg2.pkl").write_bytes(data)
    with pytest.raises(stylegan1.OfficialPickleError, match="StyleGAN2-ADA"):
        stylegan1.read_official_pickle(tmp_path / "sg2.pkl")
