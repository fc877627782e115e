"""What a benchmark says about the machine it ran on (training/provenance.py)."""

from training.provenance import describe_cpu

CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 26
model\t\t: 2
model name\t: AMD EPYC 9R45
flags\t\t: fpu sse avx2 fma avx512f avx512_bf16 avx512_vnni sha_ni

processor\t: 1
model name\t: another core, not read
"""


def test_the_benchmark_header_names_the_cpus_model_family_and_vector_extensions():
    """A speed ratio against PyTorch differs between CPUs (Zen 4 against Zen 5): the header must say which."""
    line = describe_cpu(CPUINFO)
    assert line.startswith("AMD EPYC 9R45 (family 26, model 2) · avx2 fma avx512f avx512_bf16 avx512_vnni · ")
    assert "another core" not in line
