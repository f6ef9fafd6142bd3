"""The README's two opening examples run as written (only the inputs they leave to the
reader are supplied: a checkpoint, images, a scan and its calibration)."""

import re
from pathlib import Path

import numpy as np

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_examples() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_opens_with_a_segmenter_and_a_fuser_example():
    examples = readme_examples()
    assert len(examples) >= 2
    assert "Segmenter.from_checkpoint" in examples[0] and "Fuser(" in examples[1]
    for code in examples[:2]:
        assert len(code.strip().splitlines()) <= 12


def test_segmenter_example_runs(checkpoint):
    code = readme_examples()[0]
    assert '"demo_out/run/best.pt"' in code and "500_000" in code
    # The example's own checkpoint comes from `make demo`; a tiny run stands in for it, and a
    # smaller cloud keeps the test short.
    code = code.replace('"demo_out/run/best.pt"', repr(str(checkpoint)))
    code = code.replace("500_000", "20_000")
    namespace = {}
    exec(compile(code, "README.md (Segmenter example)", "exec"), namespace)
    assert namespace["labels"].shape == (20_000,)
    assert namespace["probabilities"].shape == (20_000, 13)


def test_fuser_example_runs(shared_data, tmp_path, monkeypatch):
    from pcseg.data.kitti import read_velodyne_bin

    kitti = shared_data / "kitti" / "000000"
    code = readme_examples()[1]
    assert '"calib.txt"' in code
    code = code.replace('"calib.txt"', repr(str(kitti / "calib.txt")))
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:480, 0:640]
    scores = rng.random((13, 370, 1224)).astype(np.float32)
    namespace = {
        "color": rng.integers(0, 256, (480, 640, 3), dtype=np.uint8),
        "depth_mm": (2000 + xx).astype(np.uint16),  # a slanted wall 2-2.6 m away
        "label_map": ((xx // 64 + yy // 64) % 13).astype(np.int64),
        "pose": np.eye(4),
        "scan": read_velodyne_bin(kitti / "velodyne.bin"),
        "scores": scores / scores.sum(0, keepdims=True),
        "query_points": np.array([[0.0, 0.0, 2.3], [100.0, 100.0, 100.0]]),
    }
    monkeypatch.chdir(tmp_path)  # the example exports map.ply into the working folder
    exec(compile(code, "README.md (Fuser example)", "exec"), namespace)
    assert (tmp_path / "map.ply").is_file()
    fused = namespace["fused"]
    assert fused.shape == (2,) and fused[1] == -1 and 0 <= fused[0] < 13
