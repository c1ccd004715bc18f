"""benchmarks/keras_epoch.py: Keras's epoch in a process of its own, without torch beside it."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_keras_is_timed_in_a_process_without_torch(real_data):
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "keras_epoch.py"), "softmax", "--repeats", "1",
                           "--images", "320"], capture_output=True, text=True, check=True, cwd=ROOT)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["torch_loaded"] is False  # torch's runtime must not share the process Keras is timed in
    if "keras" in result:  # TensorFlow importable here
        assert result["epoch_s"] > 0 and len(result["epochs_s"]) == 1
    else:
        assert result["epoch_s"] is None
