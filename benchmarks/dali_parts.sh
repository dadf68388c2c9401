#!/usr/bin/env bash
# NVIDIA DALI for issue 12's measurements (benchmarks/step_with_data.py --decode dali). Its wheel is 199 MB and,
# with what it needs that the GPU machine lacks, 268 MB: over the 64 MiB a call carries. So they go in parts.
#   bash benchmarks/dali_parts.sh split   # here: download the wheels for the GPU machine's Python (3.12) into
#                                         # .device/dali_wheels, then split them into .device/dali1 ... dali5
#   bash benchmarks/dali_parts.sh have    # there, one call a part, each carrying its .device/daliN (and no other):
#                                         # puts the part in /tmp/dali_parts, which the warm machine keeps. Call the
#                                         # next at once: the machine goes back 30 s after a call ends
#   bash benchmarks/dali_parts.sh join    # there, once every part is in: check, join and install into /tmp/dali
#                                         # (PYTHONPATH=...:/tmp/dali); `gpu_data_path.sh dali` calls it
set -euo pipefail
PARTS=5
WHEELS=(nvidia-dali-cuda130==2.4.0 nvidia-nvimgcodec-cu13==0.9.0.20 nvidia-nvjpeg==13.3.2.43
        nvidia-nvjpeg2k-cu13==0.11.0.51 nvidia-nvtiff-cu13==0.8.0.82 nvidia-libnvcomp-cu13==5.3.0.16
        astunparse==1.6.3 gast==0.7.0 six==1.17.0 optree==0.20.0 makefun==1.16.0 libcst==1.9.0 nvtx==0.2.17)

case ${1:-} in
split)
  mkdir -p .device/dali_wheels
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .device/dali_wheels "${WHEELS[@]}"
  rm -rf .device/dali[0-9]*
  tar cf /tmp/dali_wheels.tar -C .device dali_wheels
  split -n $PARTS -d -a 1 /tmp/dali_wheels.tar .device/dali_part && rm /tmp/dali_wheels.tar
  for i in $(seq 0 $((PARTS - 1))); do
    mkdir -p .device/dali$((i + 1)) && mv .device/dali_part$i .device/dali$((i + 1))/part$i
  done
  (cd .device && sha256sum dali[0-9]*/part* | sed 's|dali[0-9]*/||' > dali$PARTS/SHA256SUMS)
  du -sh .device/dali[0-9]*
  ;;
have)
  mkdir -p /tmp/dali_parts
  cp .device/dali[0-9]*/* /tmp/dali_parts/
  ls -la /tmp/dali_parts
  ;;
join)
  [ -d /tmp/dali/nvidia/dali ] && { echo "DALI already in /tmp/dali"; exit 0; }
  cd /tmp/dali_parts && sha256sum -c SHA256SUMS
  cat part* | tar xf - -C /tmp
  python3 -m pip install -q --no-index --no-deps --target /tmp/dali /tmp/dali_wheels/*.whl
  PYTHONPATH=/tmp/dali python3 -c 'import nvidia.dali as d; print("DALI", d.__version__)'
  ;;
*)
  sed -n 2,11p "$0"; exit 2
  ;;
esac
