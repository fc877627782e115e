#!/usr/bin/env bash
# The prepared GPU check, run on a lent GPU machine from the repository root:
#   bash benchmarks/gpu_check.sh [section ...]     sections: train tests population greff devices throughput scan kernel parallel tutorial strings
#   (default: train tests population greff throughput scan kernel; OUT=<folder> for logs; data in .gpu_data/{mnist,fsdd})
# It installs the pure-Python pieces the GPU image lacks from carried wheels (.whl/) first.
set -u
OUT=${OUT:-/tmp/gpu_check}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 WANDB_MODE=disabled
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD
fi
sections=${*:-train tests population greff throughput scan kernel}
run() { timeout 200 python3 train.py data_dir=.gpu_data wandb.mode=disabled "$@" 2>&1 | grep -E "odyssey\]|Error" | cut -c 27-; }
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python3 -c "import jax, flax, optax; print('jax', jax.__version__, 'flax', flax.__version__, jax.devices())"
  for s in $sections; do case $s in
  train) echo "== row MNIST, 2 epochs, np, on the GPU"
    run cell=np epochs=2 hydra.run.dir="$OUT/run_np" ;;
  tests) echo "== device-independent tests on the GPU"
    timeout 240 python3 -m pytest tests/test_cells.py tests/test_layer.py tests/test_population.py tests/test_speed_settings.py \
      -q -m "not slow" -p no:cacheprovider 2>&1 | tail -4 ;;
  population) echo "== population throughput (row MNIST, H=128)"
    timeout 120 python3 -m benchmarks.population --sizes 1 4 16 32 64 --steps 30 --strategy vmap ;;
  greff) echo "== Greff's random search, 32 mixed-width trials of v: populations against a process per trial (target >= 10x)"
    timeout 300 python3 -m benchmarks.population --greff 32 --cell v --steps 100 --width-buckets null --processes-launch joblib_gpu --data-dir .gpu_data ;;
  devices) echo "== the same numbers on 1 and several GPUs (shard_map + psum path), if the machine has several"
    timeout 240 python3 -m pytest tests/test_devices.py -q -p no:cacheprovider 2>&1 | tail -4 ;;
  throughput) echo "== throughput against cuDNN"
    timeout 150 python3 -m benchmarks.throughput --shapes row pixel row512 --rounds 3 --no-flax ;;
  scan) echo "== long sequences: scan unroll x hand-written gradient (paths/fused.py) against cuDNN (issue 17)"
    timeout 300 python3 -m benchmarks.throughput --cells np v --shapes pixel row --unroll 1 8 32 --fused-gradient false true --rounds 3 --no-flax ;;
  kernel) echo "== the Pallas time loop (paths/kernel.py, speed.kernel) compiled by Triton: equal to the scan, then against the scan and cuDNN (issue 17)"
    timeout 240 python3 -m pytest tests/test_kernel.py -q -p no:cacheprovider 2>&1 | tail -4
    timeout 300 python3 -m benchmarks.throughput --cells np v cifg gru --shapes pixel row --kernel false true --rounds 3 --no-flax ;;
  parallel) echo "== minGRU and minLSTM: the parallel scan (paths/parallel.py, speed.parallel_scan) against the sequential scan"
    timeout 300 python3 -m benchmarks.throughput --cells mingru minlstm --shapes pixel row --parallel-scan false true --rounds 3 --no-flax --no-torch ;;
  tutorial) for c in srn np gru; do echo "== tutorial: $c, 20 epochs"
    run cell=$c epochs=20 hydra.run.dir="$OUT/tutorial_$c" | grep -E "epoch (1|20) "; done ;;
  strings) echo "== fsdd_strings (CTC), v, 10 epochs"
    run task=fsdd_strings cell=v epochs=10 batch_size=32 hydra.run.dir="$OUT/strings" ;;
  esac; done
} 2>&1 | tee "$OUT/gpu_check.log"
