#!/usr/bin/env bash
# The checks that need a CUDA GPU (CI has none): a target split by a device map, its first half on
# the GPU and its second offloaded to CPU memory, decodes through the engine exactly as the whole
# model on the GPU does (n-gram, early-exit and EAGLE-style drafters). Run from the repository root:
#     bash recipes/gpu_checks.sh
set -euo pipefail
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" SPECSEL_GPU_MAP=1 PYTHONUNBUFFERED=1
python3 -c "import torch; assert torch.cuda.is_available(), 'no CUDA GPU visible'; print(torch.cuda.get_device_name(0), torch.__version__)"
python3 -m pytest -q -p no:cacheprovider tests/modeling/test_device_map.py -k "split or two_devices"
