#!/usr/bin/env bash
# Builds, on this machine, what model_speed.sh's fa4 phases carry to the GPU machine (Python 3.12, x86-64, CUDA 13):
# flash-attn-4, quack-kernels and the CuTe DSL (requirements-hopper.lock) unpacked into one folder, xz'd and split
# in two parts under a call's 64 MiB (.device/fa4a, .device/fa4b), with the DSL's Python half beside the second part
# as a wheel. A first call carries
# .device/fa4a, the next call on the warm machine .device/fa4b (docs/benchmarks.md, "Issue 14, fifth session").
#   bash benchmarks/fa4_parts.sh          # about 6 minutes on 2 cores, most of it xz
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 --platform any -d "$work/whl" \
  -r requirements-hopper.lock  # kernels=hopper's packages, one version each
mkdir -p "$work/site" .device/fa4a .device/fa4b
for whl in "$work"/whl/*.whl; do
  case $whl in *libs_core*) cp "$whl" .device/fa4b/ ;; *) python3 -m zipfile -e "$whl" "$work/site" ;; esac
done
tar cf - -C "$work/site" . | xz -9 -T0 > "$work/site.tar.xz"
rm -f .device/fa4a/site.tar.xz.part* .device/fa4b/site.tar.xz.part*
split -b 34000000 -d "$work/site.tar.xz" "$work/site.tar.xz.part"
mv "$work/site.tar.xz.part00" .device/fa4a/
mv "$work"/site.tar.xz.part0[1-9] .device/fa4b/
du -sh .device/fa4a .device/fa4b
