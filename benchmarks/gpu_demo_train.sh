#!/usr/bin/env bash
# Train the demo preset on a GPU for a fixed wall-clock budget (first SIGINT = clean stop with a checkpoint),
# then export the EMA model and a sample grid. Usage: bash benchmarks/gpu_demo_train.sh SECONDS OUTDIR
set -euo pipefail
secs=${1:-300}; out=${2:-gpu_demo}
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
run=/tmp/demo_run
timeout -s INT "$secs" python3 -m surgdiff.cli train --config demo --batch-size 128 --steps 100000 --out $run --quiet || true
python3 - "$run" "$out" <<'PY'
import json, sys, torch
from pathlib import Path
from surgdiff.io import latest_checkpoint
from surgdiff.model import export_model, load_pretrained
from surgdiff.data import preview_labels
from surgdiff.train import plot_loss, sample_grid, TrainConfig
from PIL import Image
run, out = Path(sys.argv[1]), Path(sys.argv[2]); out.mkdir(parents=True, exist_ok=True)
export_model(run, out / "demo")
state = json.loads((latest_checkpoint(run) / "state.json").read_text())
(out / "history.json").write_text(json.dumps({"step": state["step"], "history": state["history"]}))
plot_loss(state["history"], out / "loss.png")
m = load_pretrained(out / "demo").cuda()
cfg = TrainConfig.load(run / "config.json")
Image.fromarray(sample_grid(m, preview_labels(cfg, 8).cuda(), 40)).save(out / "samples_ddim40.png")
print("exported step", state["step"], "rate img/s", state["history"][-1]["images_per_s"])
PY
