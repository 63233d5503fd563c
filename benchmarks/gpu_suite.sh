#!/usr/bin/env bash
# The GPU checks in one go (about 8 minutes on one GPU): training img/s real vs synthetic (efficientnet_b0 @224,
# tf_efficientnet_b4 @380, bf16 channels_last), a fold in fp16 with loss scaling, prediction img/s against the ideal
# with batched TTA views, MTCNN img/s. Writes OUT/gpu_suite.json and prints a table.
#   bash benchmarks/gpu_suite.sh [OUT]
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-gpu_suite_out}"
timeout 480 python benchmarks/gpu_suite.py --out "$out"
