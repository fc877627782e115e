#!/usr/bin/env bash
# The one prepared GPU check, run on a lent GPU machine from the repository root:
#   bash benchmarks/gpu_check.sh            (OUT=<folder> for the log; data in .gpu_data/mnist)
# It installs the pure-Python pieces the GPU image lacks from carried wheels (.whl/), then:
# a short row-MNIST training, the device-independent tests, the population and throughput benchmarks.
set -u
OUT=${OUT:-/tmp/gpu_check}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 WANDB_MODE=disabled
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD
fi
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python3 -c "import jax, flax, optax; print('jax', jax.__version__, 'flax', flax.__version__, jax.devices())"
  echo "== 1. row MNIST, 2 epochs, np (the tutorial's LSTM), on the GPU"
  timeout 150 python3 train.py cell=np epochs=2 data_dir=.gpu_data wandb.mode=disabled hydra.run.dir="$OUT/run_np" 2>&1 | grep -E "odyssey|Error|error"
  python3 -c "import json; r=json.load(open('$OUT/run_np/result.json')); print({k: r[k] for k in ('status','platform','device_kind','device_count','test','wall_seconds')})"
  echo "== 2. device-independent tests on the GPU"
  timeout 200 python3 -m pytest $(ls tests/test_cells.py tests/test_layer.py tests/test_population.py tests/test_speed_settings.py 2>/dev/null) -q -x -m "not slow" -p no:cacheprovider 2>&1 | tail -5
  echo "== 3. population throughput (row MNIST, H=128)"
  timeout 120 python3 -m benchmarks.population --sizes 1 4 16 32 64 --steps 30 --strategy vmap
  echo "== 4. throughput against cuDNN"
  timeout 150 python3 -m benchmarks.throughput --shapes row pixel row512 --rounds 3 --no-flax
} 2>&1 | tee "$OUT/gpu_check.log"
