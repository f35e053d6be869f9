"""The profile readers behind the CUDA docs' numbers, on small synthetic inputs (no GPU, no nvcc).

bench/ncu_source_summary.py turns Nsight Compute's source page into executed instructions by opcode (the
twenty-fifth session's comparison of llama.cpp's vector kernel with and without Self-Extend), runs of straight-line
code by execution count and the instructions with the largest values of a column (the twenty-eighth session's);
bench/cuda_sass_size.py reads kernels' code out of a cubin (--same-as: which kernels a change leaves byte-identical).
"""

import csv
import struct
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import cuda_sass_size  # noqa: E402
import ncu_source_summary  # noqa: E402


def _source_page(path, rows):
    """A source page as `ncu --page source --print-source sass --csv` writes it: the kernel, the header, one row an
    instruction (address, SASS, stall samples, executed) with a stall-reason column."""
    head = ["Address", "Source", "Warp Stall Sampling (All Samples)", "Instructions Executed", "stall_long_sb"]
    with open(path, "w", newline="") as f:
        w = csv.writer(f, quoting=csv.QUOTE_ALL)
        w.writerow(["Kernel Name", "void k<64>(const char *)"])
        w.writerow(head)
        for i, (src, samples, executed) in enumerate(rows):
            w.writerow([hex(0x7f0000 + 16*i), src, str(samples), f"{executed:,}", str(samples)])


def test_opcodes_drop_predicates_and_modifiers(tmp_path):
    page = tmp_path / "page.csv"
    _source_page(page, [
        ("      FFMA.FTZ R0, R1, R2, R3", 4, 1000),
        ("@P1   FFMA R4, R1, R2, R3", 1, 250),
        ("@!P0  BRA 0x7f0040", 2, 300),
        ("      HADD2.F32 R5, -RZ, R6.H0_H0", 0, 1000),
        ("      EXIT", 0, 8),
    ])
    ops = ncu_source_summary.opcodes(ncu_source_summary.read_page(str(page)))
    assert ops == {"FFMA": [1250.0, 5.0], "BRA": [300.0, 2.0], "HADD2": [1000.0, 0.0], "EXIT": [8.0, 0.0]}


def test_summary_splits_loop_from_per_tile_code(tmp_path):
    page = tmp_path / "page.csv"
    _source_page(page, [("LDG.E R0, [R2]", 7, 4608), ("FFMA R1, R0, R0, R1", 3, 4608), ("STG.E [R4], R1", 1, 522),
                        ("BRA 0x7f0000", 0, 0)])
    s = ncu_source_summary.summarise(ncu_source_summary.read_page(str(page)))
    assert s["loop"]["executed"] == 2*4608 and s["loop"]["instructions"] == 2
    assert s["per_tile"]["executed"] == 522 and s["never"]["instructions"] == 1
    assert s["samples"] == 11 and s["loop"]["stalls"] == {"stall_long_sb": 10}


def test_runs_group_straight_line_code_by_execution_count(tmp_path):
    page = tmp_path / "page.csv"
    _source_page(page, [("LDC R1, c[0x0][0x28]", 5, 2088), ("BAR.SYNC 0x0", 25, 2088), ("EXIT", 0, 0),
                        ("LDG.E R0, [R2]", 7, 4608), ("FFMA R1, R0, R0, R1", 3, 4608), ("STS [R4], R1", 2, 2088)])
    got = ncu_source_summary.runs(ncu_source_summary.read_page(str(page)))
    # the never-executed EXIT does not end the first run; the count changes do
    assert [(lo, hi, e, n, smp) for lo, hi, e, n, smp, _ in got] == [
        (0x00, 0x10, 2088, 2, 30), (0x30, 0x40, 4608, 2, 10), (0x50, 0x50, 2088, 1, 2)]
    assert got[1][5] == [("long_sb", 10.0)]


def test_metric_lists_the_largest_values_of_a_column(tmp_path):
    page = tmp_path / "page.csv"
    _source_page(page, [("LDS.128 R20, [R3]", 0, 2088), ("FFMA R1, R0, R0, R1", 0, 4608), ("STS.128 [R0], R12", 0, 2088)])
    rows = list(csv.reader(open(page, newline="")))
    rows[1].append("L1 Wavefronts Shared Excessive")
    for r, v in zip(rows[2:], ("8352", "0", "4,176")):
        r.append(v)
    with open(page, "w", newline="") as f:
        csv.writer(f, quoting=csv.QUOTE_ALL).writerows(rows)
    p = ncu_source_summary.read_page(str(page))
    total, top = ncu_source_summary.metric(p, "L1 Wavefronts Shared Excessive", 5)
    assert total == 12528 and [(v, off, e) for v, off, e, _ in top] == [(8352, 0x00, 2088), (4176, 0x20, 2088)]
    assert top[0][3] == "LDS.128 R20, [R3]"
    with pytest.raises(SystemExit, match="no column"):
        ncu_source_summary.metric(p, "L2 Sectors", 5)
    assert ncu_source_summary.parse_metric("L1 Wavefronts Shared Excessive:8") == ("L1 Wavefronts Shared Excessive", 8)
    assert ncu_source_summary.parse_metric("L1 Wavefronts Shared Excessive") == ("L1 Wavefronts Shared Excessive", 10)


def _cubin(sections):
    """A minimal ELF64 file with the named sections (name -> bytes) and its section-name table."""
    names = b"\0.shstrtab\0" + b"".join(n.encode() + b"\0" for n in sections)
    blobs = [names] + list(sections.values())
    offs, body = [], b""
    for b in blobs:
        offs.append(64 + len(body))
        body += b
    shoff = 64 + len(body)
    name_off = [1] + [names.index(n.encode() + b"\0") for n in sections]
    shdrs = struct.pack("<IIQQQQIIQQ", 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    for i, b in enumerate(blobs):
        shdrs += struct.pack("<IIQQQQIIQQ", name_off[i], 3 if i == 0 else 1, 0, 0, offs[i], len(b), 0, 0, 1, 0)
    head = bytearray(64)
    head[:5] = b"\x7fELF\x02"
    struct.pack_into("<Q", head, 0x28, shoff)
    struct.pack_into("<HHH", head, 0x3A, 64, len(blobs) + 1, 1)
    return bytes(head) + body + shdrs


def test_text_code_reads_each_kernels_bytes():
    k1, k2 = bytes(range(32)), b"\xaa"*16
    cubin = _cubin({".text.k1": k1, ".nv.info": b"\x01\x02", ".text.k2": k2})
    assert cuda_sass_size.text_code(cubin) == {".text.k1": k1, ".text.k2": k2}
    assert cuda_sass_size.text_sections(cubin) == {".text.k1": 32, ".text.k2": 16}
    with pytest.raises(ValueError):
        cuda_sass_size.text_code(b"not an elf file at all" + bytes(64))
