import warnings

import pytest
import torch

from stylegan_fast import ops
from stylegan_fast.ops import backends
from stylegan_fast.ops.bias_act import Reference as BiasActReference


@pytest.fixture
def fake_backend():
    """Register a backend 'fake' (high priority) for the test; remove it afterwards."""
    def register(available: bool, impl=BiasActReference, ops_=("bias_act",)):
        reason = None if available else "the fake accelerator is switched off"
        backends.register_backend("fake", priority=100, probe=lambda device_type: reason,
                                  description="test double")
        for op in ops_:
            backends.register_impl(op, "fake", impl)
    yield register
    backends.unregister_backend("fake")
    backends._WARNED.clear()


class CountingBiasAct(BiasActReference):
    calls = 0

    @classmethod
    def forward(cls, *args):
        cls.calls += 1
        return BiasActReference.forward(*args)


def test_ref_is_always_available():
    status = ops.available_backends("cpu")["ref"]
    assert status.available and status.name == "ref"


def test_unknown_backend_name_is_rejected_at_once():
    with pytest.raises(ValueError, match="unknown backend 'nope'; choose one of: auto, ") as info:
        with ops.use_backend("nope"):
            pass
    assert "ref" in str(info.value) and "triton" in str(info.value)


def test_one_registration_adds_a_backend_and_auto_prefers_it(fake_backend):
    fake_backend(available=True, impl=CountingBiasAct)
    x = torch.randn(2, 3, 4, 4)
    before = CountingBiasAct.calls
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ops.bias_act(x)                                   # auto: highest priority wins
        with ops.use_backend("fake"):
            ops.bias_act(x)
        with ops.use_backend("ref"):
            ops.bias_act(x)
    assert CountingBiasAct.calls == before + 2
    with pytest.warns(RuntimeWarning, match="adain on cpu falls back to the 'ref' backend "
                                            r"\(fake: no implementation of adain\)"):
        ops.adain(x, torch.randn(2, 3), torch.randn(2, 3))  # a slow path is never silent


def test_explicit_unavailable_backend_raises_with_the_reason(fake_backend):
    fake_backend(available=False)
    with ops.use_backend("fake"), pytest.raises(ops.BackendUnavailableError,
                                                match="switched off"):
        ops.bias_act(torch.randn(2, 3))


def test_explicit_backend_without_the_op_raises(fake_backend):
    fake_backend(available=True)
    with ops.use_backend("fake"), pytest.raises(ops.BackendUnavailableError,
                                                match="has no implementation of adain"):
        ops.adain(torch.randn(1, 2, 3, 3), torch.randn(1, 2), torch.randn(1, 2))


def test_auto_falls_back_with_exactly_one_warning(fake_backend):
    fake_backend(available=False)
    x = torch.randn(2, 3, 4, 4)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = ops.bias_act(x)
        ops.bias_act(x)
    messages = [str(w.message) for w in caught if "falls back" in str(w.message)]
    assert len(messages) == 1
    assert "'ref'" in messages[0] and "switched off" in messages[0]
    torch.testing.assert_close(first, ops.bias_act_reference(x))


def test_environment_variable_selects_and_is_validated(monkeypatch, fake_backend):
    fake_backend(available=False)
    monkeypatch.setenv(backends.ENV_VAR, "ref")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ops.bias_act(torch.randn(3))                         # explicit ref: no fallback warning
    monkeypatch.setenv(backends.ENV_VAR, "fake")
    with pytest.raises(ops.BackendUnavailableError, match=backends.ENV_VAR):
        ops.bias_act(torch.randn(3))
    monkeypatch.setenv(backends.ENV_VAR, "bogus")
    with pytest.raises(ValueError, match=f"{backends.ENV_VAR}: unknown backend 'bogus'"):
        ops.bias_act(torch.randn(3))


def test_use_backend_nests_and_overrides_the_environment(monkeypatch):
    monkeypatch.setenv(backends.ENV_VAR, "bogus")
    with ops.use_backend("ref"):
        with ops.use_backend("auto"):
            assert ops.resolve_backend("bias_act", torch.device("cpu")) == "ref"
        assert backends.requested_backend() == "ref"
    assert backends.requested_backend() == "bogus"


def test_a_failing_probe_is_reported_not_raised():
    def probe(device_type):
        raise OSError("driver exploded")

    backends.register_backend("flaky", priority=-1, probe=probe)
    try:
        status = ops.available_backends("cpu")["flaky"]
        assert not status.available and "driver exploded" in status.reason
    finally:
        backends.unregister_backend("flaky")


def test_selection_is_a_compile_time_constant_the_way_dynamo_marks_it():
    marked = torch.compiler.assume_constant_result(lambda: 0)
    assert getattr(marked, "_dynamo_marked_constant", False)
    assert backends._choose._dynamo_marked_constant


def test_backend_module_is_imported_on_first_use_only(tmp_path, monkeypatch):
    (tmp_path / "sgf_plugin_ok.py").write_text(
        "from stylegan_fast.ops import register_impl\n"
        "from stylegan_fast.ops.bias_act import Reference\n"
        "register_impl('bias_act', 'plugin', Reference)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import sys
    try:
        backends.register_backend("plugin", priority=-1, probe=lambda d: None,
                                  module="sgf_plugin_ok")
        assert "sgf_plugin_ok" not in sys.modules
        with ops.use_backend("plugin"):
            ops.bias_act(torch.randn(3))
        assert "sgf_plugin_ok" in sys.modules
        backends.register_backend("broken", priority=-1, probe=lambda d: None,
                                  module="sgf_plugin_missing")
        status = ops.available_backends("cpu")["broken"]
        assert not status.available and "importing sgf_plugin_missing failed" in status.reason
    finally:
        backends.unregister_backend("plugin")
        backends.unregister_backend("broken")


def test_prepare_runs_only_for_an_explicit_request_and_only_once():
    state = {"built": False, "prepared": 0}

    def probe(device_type):
        return None if state["built"] else "not built yet"

    def prepare(device_type):
        state["prepared"] += 1
        state["built"] = True

    backends.register_backend("lazy", priority=100, probe=probe, prepare=prepare)
    backends.register_impl("bias_act", "lazy", BiasActReference)
    try:
        with pytest.warns(RuntimeWarning, match="lazy: not built yet"):
            assert ops.resolve_backend("bias_act", torch.device("cpu")) == "ref"  # auto
        assert state["prepared"] == 0
        with ops.use_backend("lazy"):
            assert ops.resolve_backend("bias_act", torch.device("cpu")) == "lazy"
            assert ops.resolve_backend("bias_act", torch.device("cpu")) == "lazy"
        assert state["prepared"] == 1
        assert ops.resolve_backend("bias_act", torch.device("cpu")) == "lazy"  # auto, now ready
    finally:
        backends.unregister_backend("lazy")
        backends._WARNED.clear()


def test_resolution_is_cached_per_request_and_redone_when_anything_changes(monkeypatch,
                                                                           fake_backend):
    chosen = []
    choose = backends._choose

    def counting_choose(op, device_type, requested):
        chosen.append((op, device_type, requested))
        return choose(op, device_type, requested)

    monkeypatch.setattr(backends, "_choose", counting_choose)
    monkeypatch.delenv(backends.ENV_VAR, raising=False)
    backends._RESOLVED.clear()
    cpu = torch.device("cpu")
    assert [ops.resolve_backend("bias_act", cpu) for _ in range(3)] == ["ref"] * 3
    assert chosen == [("bias_act", "cpu", "auto")]           # chosen once, then looked up
    with ops.use_backend("eager"):                            # another request: another key
        assert ops.resolve_backend("bias_act", cpu) == "eager"
    monkeypatch.setenv(backends.ENV_VAR, "ref")               # so is a new environment value
    assert ops.resolve_backend("bias_act", cpu) == "ref"
    monkeypatch.delenv(backends.ENV_VAR)
    assert ops.resolve_backend("bias_act", cpu) == "ref"
    assert len(chosen) == 3
    fake_backend(available=True)                              # a new backend: chosen afresh
    assert ops.resolve_backend("bias_act", cpu) == "fake"
    backends.unregister_backend("fake")
    assert ops.resolve_backend("bias_act", cpu) == "ref"
    assert len(chosen) == 5


def test_a_cached_choice_follows_a_probe_that_changes(fake_backend):
    state = {"reason": "not yet"}
    backends.register_backend("fake", priority=100, probe=lambda device_type: state["reason"])
    backends.register_impl("bias_act", "fake", CountingBiasAct)
    cpu = torch.device("cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert ops.resolve_backend("bias_act", cpu) == "ref"
    state["reason"] = None
    assert ops.resolve_backend("bias_act", cpu) == "ref"     # probes are cached too ...
    backends.forget_probes("fake")                            # ... until forgotten
    assert ops.resolve_backend("bias_act", cpu) == "fake"
