"""`stylegan-fast build-ext --report`: the SASS parser and checks on small listings (no toolchain
needed), the command line with a faked build, and the report on the real sm_90 build (cached by
`.ci/run`'s `stylegan-fast build-ext --arch 9.0`; skipped only without nvcc or cuobjdump, or on a
CPU-only torch)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from stylegan_fast import cli
from stylegan_fast.ops.cuda import build, sass

ADDRESS = iter(range(0, 1 << 20, 16))


def listing(*functions: tuple[str, list[str]], arch: str = "sm_90") -> str:
    """A ``cuobjdump --dump-sass`` listing of ``(mangled name, [instruction, ...])`` functions."""
    lines = ["", "Fatbin elf code:", "================", f"arch = {arch}", "code version = [1,8]",
             "", f"\tcode for {arch}", f"\t\t.target\t{arch}", ""]
    for name, instructions in functions:
        lines += [f"\t\tFunction : {name}", '\t.headerflags\t@"EF_CUDA_SM90"']
        for instruction in instructions + ["EXIT ;"]:
            lines.append(f"        /*{next(ADDRESS):04x}*/                   {instruction:<50}"
                         f"/* 0x000fe20000000800 */")
            lines.append(" " * 94 + "/* 0x000fe20000000800 */")
    return "\n".join(lines) + "\n"


def ptxas(name: str, stack: int = 0, spills: tuple[int, int] = (0, 0), arch: str = "sm_90"):
    return build.KernelInfo(name, arch, 40, 0, stack, spills[0], spills[1], mangled=name)


VECTOR = ["LDG.E.128.CONSTANT R4, desc[UR6][R2.64] ;", "LDG.E R9, desc[UR6][R10.64] ;",
          "@!P0 STG.E.128 desc[UR6][R12.64], R4 ;", "STG.E desc[UR6][R14.64], R9 ;"]
CLUSTER = ["UCGABAR_ARV ;", "UCGABAR_WAIT ;", "CCTL.IVALL ;", "S2R R5, SR_SWINHI ;",
           "PRMT R2, RZ, 0x654, R2 ;", "LD.E R3, desc[UR4][R2.64] ;"]


def check(name: str, instructions: list[str], stack: int = 0, spills=(0, 0)):
    fn = sass.parse_sass(listing(("_Zk", instructions)))[0]
    return sass.check_kernel(fn, name, ptxas("_Zk", stack, spills))


@pytest.mark.parametrize("opcode,bits", [
    ("LDG.E", 32), ("LDG.E.128", 128), ("LDG.E.128.CONSTANT", 128), ("LDG.E.64.CONSTANT", 64),
    ("LDG.E.U16.CONSTANT", 16), ("STG.E.U8", 8), ("LDG.E.ENL2.256", 256), ("STG.E.64", 64),
    ("LDGSTS.E.BYPASS.LTC128B.128", 128), ("LDG.E.LTC128B", 32)])
def test_access_bits(opcode, bits):
    assert sass.access_bits(opcode) == bits


def test_parse_sass_counts_memory_instructions_per_function_and_arch():
    text = listing(("_Za", VECTOR + ["LDL.64 R2, [R1] ;", "STL [R1+0x8], R4 ;"]),
                   ("_Zb", CLUSTER + ["MAPA R4, R4, R2 ;"])) + listing(("_Za", []), arch="sm_80")
    a, b, a80 = sass.parse_sass(text)
    assert (a.name, a.arch, a80.arch) == ("_Za", "sm_90", "sm_80")
    assert a.loads == {128: 1, 32: 1} and a.stores == {128: 1, 32: 1} and a.local == 2
    assert not a.dsmem and a.cluster_barriers == 0
    assert b.cluster_barriers == 2 and b.mapa == 1 and b.generic == 1 and b.shared_window
    assert b.dsmem and b.local == 0 and not b.loads


def test_template_args():
    assert sass.template_args("plane_rows_kernel<EpilogueForwardOp<float>, 4>") == (
        "plane_rows_kernel", ["EpilogueForwardOp<float>", "4"])
    assert sass.template_args("noise_grad_kernel<half>") == ("noise_grad_kernel", ["half"])
    assert sass.template_args("k") == ("k", [])


def test_vector_kernel_with_128_bit_accesses_passes():
    row = check("plane_rows_kernel<EpilogueForwardOp<float>, 4>", VECTOR)
    assert row.ok and row.kind == "vector" and (row.load_bits, row.store_bits) == (128, 128)
    assert row.verdict == "ok"


def test_local_memory_and_spills_fail():
    row = check("bias_act_forward_kernel<float, 4>", VECTOR + ["STL [R1], R12 ;",
                                                               "LDL.LU R3, [R1] ;"])
    assert not row.ok and "2 LDL/STL" in row.verdict
    row = check("bias_act_forward_kernel<float, 4>", VECTOR, stack=8, spills=(4, 4))
    assert not row.ok and "spills 4/4 B" in row.verdict


def test_split_vector_fails():
    """Only 32-bit LDG.E on a V > 1 instantiation: the 16-byte vectors were split."""
    scalar_only = ["LDG.E R4, desc[UR6][R2.64] ;", "STG.E desc[UR6][R12.64], R4 ;"]
    row = check("plane_rows_kernel<EpilogueForwardOp<float>, 4>", scalar_only)
    assert not row.ok
    assert "widest global load 32 bits, want 128 (V=4)" in row.verdict
    assert "widest global store 32 bits, want 128" in row.verdict
    loads_only = ["LDG.E.128 R4, desc[UR6][R2.64] ;", "STG.E desc[UR6][R12.64], R4 ;"]
    row = check("noise_inject_forward_kernel<half, 8>", loads_only)
    assert not row.ok and "store" in row.verdict and "load" not in row.verdict


def test_read_only_op_needs_no_vector_store():
    row = check("plane_rows_kernel<StrengthGradOp<bf16>, 8>",
                ["LDG.E.128 R4, desc[UR6][R2.64] ;", "STG.E desc[UR6][R12.64], R4 ;"])
    assert row.ok, row.verdict


def test_scalar_fallback_and_aux_kernels_are_reported_not_failed():
    row = check("plane_cols_kernel<EpilogueBackwardOp<half>, 1>",
                ["LDG.E.U16 R4, desc[UR6][R2.64] ;", "STG.E.U16 desc[UR6][R12.64], R4 ;"])
    assert row.ok and row.kind == "scalar" and "scalar fallback" in row.verdict
    row = check("finalize_sums_kernel<float, 2>", ["LDG.E R4, desc[UR6][R2.64] ;"])
    assert row.ok and row.kind == "aux"


def test_narrow_vector_path_passes_only_where_designed():
    cols = ["LDG.E.64 R4, desc[UR6][R2.64] ;", "STG.E.64 desc[UR6][R12.64], R4 ;"]
    row = check("plane_cols_kernel<EpilogueForwardOp<bf16>, 4>", cols)
    assert row.ok and "64-bit by design" in row.verdict
    row = check("plane_rows_kernel<EpilogueForwardOp<bf16>, 4>", cols)  # rows: V = 8 by design
    assert not row.ok and "vector path of 64 bits, not 128" in row.verdict


def test_cluster_kernel_needs_cluster_barrier_and_dsmem():
    name = "plane_rows_cluster_kernel<EpilogueForwardOp<float>, 4>"
    row = check(name, VECTOR + CLUSTER)
    assert row.ok and row.cluster and "cluster" in row.verdict
    row = check(name, VECTOR + ["BAR.SYNC.DEFER_BLOCKING 0x0 ;", "LDS R4, [R2] ;"])
    assert not row.ok
    assert "without cluster barrier" in row.verdict and "without DSMEM" in row.verdict
    row = check(name, VECTOR + ["UCGABAR_ARV ;", "UCGABAR_WAIT ;"])  # syncs, but never reads DSMEM
    assert not row.ok and "without DSMEM" in row.verdict and "barrier" not in row.verdict
    fn = sass.parse_sass(listing(("_Zk", ["BPT.TRAP 0x1 ;"]), arch="sm_80"))[0]  # a stub
    assert sass.check_kernel(fn, name, ptxas("_Zk", arch="sm_80")).ok


def test_check_sass_joins_ptxas_dedupes_and_formats():
    names = {"_Zv": "bias_act_forward_kernel<float, 4>", "_Zl": "noise_grad_kernel<float>",
             "_Zc": "plane_cols_cluster_kernel<EpilogueBackwardOp<float>, 4>"}
    text = (listing(("_Zv", VECTOR), ("_Zl", ["LDL R4, [R1] ;"]), ("_Zc", VECTOR + CLUSTER))
            + listing(("_Zv", VECTOR)) + listing(("_Zv", ["LDG.E R2, desc[UR4][R2.64] ;"]),
                                                 arch="sm_80"))
    kernels = [ptxas("_Zv"), ptxas("_Zl", stack=8, spills=(8, 8)), ptxas("_Zc")]
    report = sass.check_sass(text, kernels, "9.0", demangle=lambda ns: [names[n] for n in ns])
    assert [c.name for c in report.checks] == list(names.values())  # one _Zv row, no sm_80 one
    assert [c.ok for c in report.checks] == [True, False, True] and not report.ok
    table = sass.format_report(report)
    assert "LDL/STL" in table.splitlines()[0] and "verdict" in table.splitlines()[0]
    assert "1 cluster kernels" in table and "1 with LDL/STL; 1 spilling" in table
    assert table.splitlines()[-1] == "  report: FAIL (1 kernels fail)"
    report = sass.check_sass(text, [ptxas("_Zv"), ptxas("_Zc")], "9.0",
                             demangle=lambda ns: [names[n] for n in ns])
    assert [c.verdict for c in report.checks if not c.ok] == [
        "FAIL: 1 LDL/STL; not in the ptxas log"]


def test_check_sass_without_sm90_code_or_log():
    report = sass.check_sass(listing(("_Zv", VECTOR), arch="sm_80"), [], "9.0",
                             demangle=lambda ns: ns)
    assert not report.ok and "no sm_90 code" in report.notes[0]
    report = sass.check_sass(listing(("_Zv", VECTOR)), None, "9.0",
                             demangle=lambda ns: ["bias_act_forward_kernel<float, 4>"])
    assert not report.ok and report.checks[0].ok and "spills were not checked" in report.notes[0]


# ---------------------------------------------------------------------------- command line
@pytest.fixture
def fake_build(tmp_path, monkeypatch):
    """build-ext's compile replaced by a script that writes a ptxas line and an empty .so."""
    monkeypatch.setenv("STYLEGAN_FAST_CACHE", str(tmp_path / "cache"))
    log = ("ptxas info    : Compiling entry function '_Zv' for 'sm_90'\n"
           "    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads\n"
           "ptxas info    : Used 40 registers, used 0 barriers\n")

    def command(arch, out_dir, verbose):
        return [sys.executable, "-c", f"import pathlib; print({log!r}); "
                f"(pathlib.Path({str(out_dir)!r}) / '_stylegan_fast_cuda.so').write_text('')"]

    monkeypatch.setattr(build, "_worker_command", command)
    monkeypatch.setattr(build, "find_toolchain", lambda: build.Toolchain(
        sys.executable, Path(sys.prefix), torch.version.cuda or "13.0", sys.executable))
    monkeypatch.setattr(build, "demangle", lambda names: [
        "bias_act_forward_kernel<float, 4>" if n == "_Zv" else n for n in names])
    arches = []

    def dump(so, cuobjdump, arch="9.0"):
        arches.append(arch)
        return listing(("_Zv", VECTOR))

    monkeypatch.setattr(sass, "find_cuobjdump", lambda: "/fake/cuobjdump")
    monkeypatch.setattr(sass, "dump_sass", dump)
    return arches


def test_build_ext_report_prints_the_table_and_passes(fake_build, capsys):
    assert cli.main(["build-ext", "--report"]) == 0
    out = capsys.readouterr().out
    assert "compiling the CUDA extension for 9.0" in out and fake_build == ["9.0"]
    assert "bias_act_forward_kernel<float, 4>" in out and "report: PASS" in out


def test_build_ext_report_builds_sm90_when_arch_lacks_it(fake_build, capsys):
    assert cli.main(["build-ext", "--arch", "8.0", "--report"]) == 0
    out = capsys.readouterr().out
    assert "1 kernels, 0 with register spills" in out  # the sm_80 build's ptxas table
    assert "building for 9.0 as well" in out and fake_build == ["9.0"] and "report: PASS" in out
    assert (build.cached_build("8.0") is not None) and (build.cached_build("9.0") is not None)


def test_build_ext_report_fails_on_a_failing_check(fake_build, monkeypatch, capsys):
    monkeypatch.setattr(sass, "dump_sass", lambda so, cuobjdump, arch="9.0": listing(
        ("_Zv", ["LDG.E R4, desc[UR6][R2.64] ;", "STG.E desc[UR6][R12.64], R4 ;"])))
    assert cli.main(["build-ext", "--arch", "9.0", "--report"]) == 1
    assert "widest global load 32 bits, want 128" in capsys.readouterr().out


def test_build_ext_report_without_cuobjdump_is_one_clear_error(fake_build, monkeypatch, capsys):
    monkeypatch.setattr(sass, "find_cuobjdump", lambda: None)
    assert cli.main(["build-ext", "--report"]) == 2  # a user error: one line, status 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cuobjdump not found" in err[0] and "Traceback" not in err[0]


# ---------------------------------------------------------------------------- the real build
@pytest.mark.needs_cuda_torch
def test_report_passes_on_the_real_sm90_build():
    """Every sm_90 kernel of the real extension: vector widths, no local memory, clusters. Uses
    the cached build (`.ci/run` builds it); compiles only when the sources changed since."""
    if sass.find_cuobjdump() is None:
        pytest.skip("no cuobjdump (neither the CUDA toolkit's nor Triton's wheel's)")
    path = build.cached_build("9.0")
    if path is None:
        try:
            build.find_toolchain()
        except build.BuildError as exc:
            pytest.skip(f"no cached sm_90 build and no toolchain to build one: {exc}")
        path = build.build("9.0").path
    log = path.parent / "build.log"
    report = sass.report(path, log if log.is_file() else None, "9.0")
    assert report.ok, sass.format_report(report)
    kinds = {c.kind for c in report.checks}
    assert len(report.checks) > 50 and kinds == {"vector", "scalar", "aux"}
    # the sm_90 cluster path of adain / style_epilogue: rows and cols, forward and backward
    clusters = {c.name.split("<")[0] for c in report.checks if c.cluster}
    assert clusters == {"plane_rows_cluster_kernel", "plane_cols_cluster_kernel"}, clusters


@pytest.mark.needs_cuda_torch
def test_report_covers_the_fused_filtered_lrelu_kernels():
    """Both passes of filtered_lrelu, every storage type and factor specialization, are in the
    sm_90 report as auxiliary kernels (their last template argument is the pass, not a vector
    width) and pass it: no local memory, no spills. Uses the cached build only."""
    if sass.find_cuobjdump() is None:
        pytest.skip("no cuobjdump (neither the CUDA toolkit's nor Triton's wheel's)")
    path = build.cached_build("9.0")
    if path is None:
        pytest.skip("no cached sm_90 build (run `stylegan-fast build-ext --arch 9.0`)")
    log = path.parent / "build.log"
    report = sass.report(path, log if log.is_file() else None, "9.0")
    rows = [c for c in report.checks if c.name.startswith("filtered_lrelu_kernel<")]
    assert all(c.ok and c.kind == "aux" for c in rows), sass.format_report(report)
    # forward: 4 storage types; masked: 8 (z, y) dtype pairs; x 10 factor specializations
    assert len(rows) == (4 + 8) * 10, [c.name for c in rows]
    assert {"Pass<false, 2, 2>", "Pass<true, 4, 2>", "Pass<true, 0, 0>"} <= {
        sass.template_args(c.name)[1][-1] for c in rows}
