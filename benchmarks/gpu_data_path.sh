#!/usr/bin/env bash
# Issue 12's measurements on a lent multi-GPU machine, one phase a call (each fits its 10 minutes):
#   bash benchmarks/gpu_data_path.sh single   # JPEG folder, loader img/s, raw step, 1-GPU in-loop runs
#   bash benchmarks/gpu_data_path.sh ddp      # 1/2/4-GPU in-loop runs, on-device synthetic data and JPEGs
#   bash benchmarks/gpu_data_path.sh scale    # 1/2/4 GPUs in one call (runs on disjoint GPUs side by side), with
#                                             # and without Lightning's per-step SIGTERM broadcast
#   bash benchmarks/gpu_data_path.sh jpeg_ddp # the JPEG folder on 2 and 4 GPUs, crossvit_9 on 1
#   bash benchmarks/gpu_data_path.sh x2       # a 2-GPU machine: raw steps, 1-GPU runs of each decode on 16 cores,
#                                             # then 2-GPU synthetic
#   bash benchmarks/gpu_data_path.sh x2_b     # a 2-GPU machine: decode=hybrid, DDP buckets, NCCL over two agents
#   bash benchmarks/gpu_data_path.sh x2_c     # a 2-GPU machine: the JPEG folder under DDP
#   bash benchmarks/gpu_data_path.sh next     # a 2-GPU machine: raw steps and the 1-GPU in-loop figures again now that
#                                             # no step waits for the device to log its loss; device_decode_share
#   bash benchmarks/gpu_data_path.sh next_ddp # every GPU: synthetic and JPEG in-loop figures, then nccl_eq
#   bash benchmarks/gpu_data_path.sh scaling  # 1 GPU, then every GPU, each run alone: synthetic and JPEG
#   bash benchmarks/gpu_data_path.sh x4       # a 4-GPU machine: 1 and 2 GPUs synthetic and JPEG, 4 synthetic; nvJPEG
#   bash benchmarks/gpu_data_path.sh x4_jpeg  # the same machine: the JPEG folder on 4 GPUs
#   bash benchmarks/gpu_data_path.sh ddp_probe  # the DDP step without Lightning: which DDP/compile settings scale
#   bash benchmarks/gpu_data_path.sh x4_fixed # a 4-GPU machine, once DDP is built on the current stream and the
#                                             # step's loss is averaged without a barrier: 1, 2 and 4 GPUs
#   bash benchmarks/gpu_data_path.sh roi      # a 4-GPU machine: decode=hybrid decoding crop regions against whole
#                                             # images (crossvit_9, crossvit_18), nvImageCodec's check, 1/2/4 GPUs
#   bash benchmarks/gpu_data_path.sh hw_share # at commit 4b5da24: data.device_decode_share (the GPU's JPEG engines)
#                                             # for crossvit_9 and crossvit_18, 1 GPU and 16 cores each
#   bash benchmarks/gpu_data_path.sh workers  # a 4-GPU machine: crossvit_9 with 12, 14 and 16 workers a GPU
#   bash benchmarks/gpu_data_path.sh nvimgcodec  # nvImageCodec's hardware JPEG decoders for crossvit_9's crops (its
#                                             # wheels in .device/nvimg: benchmarks/check_nvimgcodec.py says how)
#   bash benchmarks/gpu_data_path.sh x4_next  # a 4-GPU machine after the DDP fix: JPEGs on 1 beside 2 GPUs with
#                                             # nvimgcodec's check beside them, then JPEGs on 4 GPUs
#   bash benchmarks/gpu_data_path.sh dali     # one GPU, 16 cores: NVIDIA DALI (its wheels brought in parts by
#                                             # benchmarks/dali_parts.sh) for crossvit_9, alone and in the step's
#                                             # loop, beside decode=hybrid in the same harness
#   bash benchmarks/gpu_data_path.sh dali_probe  # after dali: where DALI alone spends its time (augmentation, engines,
#                                             # whole-file decode, queue depth)
#   bash benchmarks/gpu_data_path.sh augment  # after dali_probe: the augmentation compiled, checked and timed, then
#                                             # crossvit_9 in the loop with DALI and decode=hybrid (one GPU)
#   bash benchmarks/gpu_data_path.sh dali_loop  # after augment: DALI in the step's loop profiled, and its variants
#   bash benchmarks/gpu_data_path.sh dali_thread  # after dali_loop: DALI and the augmentation in the Prefetcher's thread
#   bash benchmarks/gpu_data_path.sh augment_static  # after dali_thread: the augmentation's sizes constant but
#                                             # the number of images; crossvit_9 and crossvit_18 with DALI
#   bash benchmarks/gpu_data_path.sh framework_dali  # data.decode=dali in src/train.py, crossvit_9 and 18, raw step,
#                                             # crossvit_9 on on-device data and with decode=hybrid (a second call
#                                             # on the warm machine runs what the first left)
#   (side_stream and side_check, which trained on crossvit.callbacks.SideStream, ran at commit a6e03ea; both were
#   removed with it: docs/benchmarks.md, eleventh session)
#   (dali_dynamic, which ran data.dali_dynamic against DALI's pipeline, ran at commit af45a39; removed with that
#   setting: docs/benchmarks.md, twelfth session)
#   bash benchmarks/gpu_data_path.sh data_wait  # where crossvit_9's loop waits for its batches
#                                             # (train_data_wait) with decode=dali, hybrid and on-device data
#   bash benchmarks/gpu_data_path.sh dali_share  # crossvit_9 with data.dali_share: the workers decode part of each
#                                             # batch, DALI the rest (DALI's parts first)
#   bash benchmarks/gpu_data_path.sh switch   # crossvit_9 with Python's thread switch interval at 5 ms and 0.5 ms
#                                             # (DALI's parts first)
#   bash benchmarks/gpu_data_path.sh budget   # crossvit_9's loop profiled: on-device data, decode=hybrid with and
#                                             # without RandAugment and erasing, 10 workers (no DALI)
#   bash benchmarks/gpu_data_path.sh threads  # crossvit_9's host threads clocked: on-device data (no per-batch sync),
#                                             # decode=hybrid with and without the prefetcher's thread
#   (slots, written for one GPU, never ran: x2_slots ran its runs on a 2-GPU machine; docs/benchmarks.md, fifteenth
#   session)
#   bash benchmarks/gpu_data_path.sh x2_slots # a 2-GPU machine: slots (GPU 0, 16 cores), then crossvit_18 on 1 and 2
#                                             # GPUs, synthetic and JPEGs with the slots (calls again for the rest)
#   bash benchmarks/gpu_data_path.sh confirm  # crossvit_9 with the slots (the default) and without, on 16 cores; with 2
#                                             # GPUs also crossvit_18's JPEG run on 1 and 2 GPUs
#   bash benchmarks/gpu_data_path.sh first_runs  # crossvit_9 with decode=hybrid twice on a fresh machine, per epoch
#   bash benchmarks/gpu_data_path.sh engines_prio  # the JPEG engines (nvImageCodec, wheels in .device/nvimg) beside
#                                             # crossvit_9's step, their stream at normal and at high priority
#   bash benchmarks/gpu_data_path.sh nccl_eq  # per-step bf16 loss: 1 GPU x 256 against 2 GPUs x 128 launched by
#                                             # Lightning and by two torchrun agents, and 1 GPU in fp32
# Results go to $OUT (JSON rows and logs); the JPEG folder stays in /tmp/jpegs for the next phase.
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT" /tmp/runs
JPEGS=/tmp/jpegs
GPUS=$(python3 -c 'import torch; print(torch.cuda.device_count())')
STOP_AFTER=${STOP_AFTER:-450}  # seconds into the call after which no new run starts (a call may last 600)
CALL_END=${CALL_END:-590}  # no run starts unless its LIMIT ends before this many seconds into the call
PREFETCH=()
TASKSET=$(command -v taskset)  # runs given CPUS= use all cores where it is missing (env.txt says so)
run() {  # [CVD=0,1] [CPUS=0-15] [PYPATH=...] [DMON=1] [PROFILE=1] [EPOCHS=2] [LIMIT=200] [SWITCH=s] [SKIP="NAME ..."] run NAME
  # OVERRIDES...: one src/train.py run (on GPUs $CVD, CPU cores $CPUS, with PYTHONPATH=$PYPATH, killed after $LIMIT s,
  # Python's thread switch interval $SWITCH s if given: benchmarks/switch_interval.py); its train_img_s lands in
  # $OUT/inloop.jsonl. DMON=1: nvidia-smi dmon's per-second SM and JPEG-engine load beside it, in
  # /tmp/runs/NAME.dmon.log (summarised in its row). PROFILE=1: 10 steps of its second epoch profiled
  # (benchmarks/loop_profile.py; the summary in its row)
  local name=$1; shift
  local profile=() pypath=${PYPATH:-}
  if [ -n "${PROFILE:-}" ]; then  # the callback is imported from benchmarks/
    profile=(+callbacks.loop_profile._target_=loop_profile.LoopProfile
      +callbacks.loop_profile.out=/tmp/runs/$name/loop_profile.json)
    pypath=${PYPATH:-${PYTHONPATH:-src}}:benchmarks
  fi
  if (( SECONDS > STOP_AFTER )); then echo "skipped $name: ${SECONDS}s into the call"; return; fi
  # A run the call's own limit would cut leaves a log that `once` takes for done: start none that can't finish
  if (( SECONDS + ${LIMIT:-200} > CALL_END )); then echo "skipped $name: ${SECONDS}s + ${LIMIT:-200}s > $CALL_END"; return; fi
  case " ${SKIP:-} " in *" $name "*) echo "skipped $name: SKIP"; return;; esac
  local start=$SECONDS dmon=
  if [ -n "${DMON:-}" ]; then nvidia-smi dmon -s u -o T > /tmp/runs/$name.dmon.log 2>&1 & dmon=$!; fi
  env ${CVD:+CUDA_VISIBLE_DEVICES=$CVD} ${pypath:+PYTHONPATH=$pypath} ${CPUS:+${TASKSET:+taskset -c $CPUS}} timeout ${LIMIT:-200} python3 ${SWITCH:+benchmarks/switch_interval.py $SWITCH} src/train.py "$@" "${PREFETCH[@]}" "${profile[@]}" trainer.max_epochs=${EPOCHS:-2} callbacks.throughput.warmup=5 \
    logger=csv '~callbacks.progress_bar' trainer.enable_progress_bar=false hydra.run.dir=/tmp/runs/$name \
    > /tmp/runs/$name.log 2>&1
  local rc=$?
  [ -n "$dmon" ] && kill $dmon
  python3 benchmarks/inloop_row.py "$name" /tmp/runs/$name /tmp/runs/$name.log $rc $((SECONDS - start)) "$*" \
    >> "$OUT/inloop.jsonl"
  tail -1 "$OUT/inloop.jsonl" | cut -c1-260
  tar czf "$OUT/logs.tar.gz" -C /tmp/runs $(cd /tmp/runs && ls *.log) 2>/dev/null
}
once() {  # NAME OVERRIDES...: `run`, unless an earlier call on this warm machine ran it (its log is there)
  [ -e /tmp/runs/$1.log ] || run "$@"
}
setup() {  # the machine, and the JPEG folder every phase uses
  { nvidia-smi --query-gpu=name,memory.total --format=csv; nproc; grep -m1 "model name" /proc/cpuinfo; echo "taskset: ${TASKSET:-missing}"; python3 -c 'import torch, torchvision, lightning, timm; print(torch.__version__, torchvision.__version__, lightning.__version__, timm.__version__)'; date -u; } >> "$OUT/env.txt" 2>&1
  [ -d $JPEGS ] || python3 benchmarks/make_jpeg_folder.py $JPEGS --train 20480 --val 2048 --classes 100 >> "$OUT/env.txt"
  cat "$OUT/env.txt"
}
JPEG_ARGS=(data=image_folder data.root=$JPEGS data.num_classes=100 data.batch_size=256 data.eval_batch_size=256)
HYB_ARGS=("${JPEG_ARGS[@]}" data.decode=hybrid data.num_workers=14)  # auto's choice on a GPU, 14 decoding workers
SYN_ARGS=(data=synthetic data.size=20480 data.test_size=256 data.num_classes=100 data.batch_size=256 data.on_device=true)
DALI_ARGS=("${JPEG_ARGS[@]}" data.decode=dali data.num_workers=6)  # the workers only read the files
# Per-step loss comparisons (x2_b, nccl_eq): 60 bf16 steps of crossvit_micro_28 on Fashion-MNIST in a fixed order
EQ60=(experiment=fashion_mnist data.root=.device/fashion-mnist +data.shuffle=false data.hflip=0
      recipe.label_smoothing=0 trainer.max_epochs=1 trainer.limit_train_batches=60 trainer.log_every_n_steps=1
      logger=csv '~callbacks.progress_bar' trainer.enable_progress_bar=false)
two_agents() {  # EQ60 at 2 x 128 over two torchrun agents of one GPU each (as two machines): /tmp/runs/eq_2nodes
  for node in 0 1; do
    CUDA_VISIBLE_DEVICES=$node timeout 180 python3 -m torch.distributed.run --nnodes=2 --nproc_per_node=1 \
      --node_rank=$node --master_addr=127.0.0.1 --master_port=29511 src/train.py trainer=ddp trainer.devices=1 \
      trainer.num_nodes=2 data.batch_size=128 "${EQ60[@]}" hydra.run.dir=/tmp/runs/eq_2nodes \
      > /tmp/runs/eq_2nodes_$node.log 2>&1 &
  done
  wait
}

raw_beside_syn_1() {  # the raw steps (GPU 1, cores 16-31) beside crossvit_18's 1-GPU synthetic run (GPU 0, 0-15)
  CVD=0 CPUS=0-15 run c18_syn_1 trainer=gpu model=crossvit_18 compile=reduce-overhead "${SYN_ARGS[@]}" &
  CUDA_VISIBLE_DEVICES=1 ${TASKSET:+taskset -c 16-31} python3 benchmarks/throughput.py --models crossvit_18 crossvit_9 \
    --modes reduce-overhead --no-timm --steps 20 --warmup 5 --out "$OUT/raw_step.json" > /tmp/runs/raw.log 2>&1 &
  wait
  tail -4 /tmp/runs/raw.log
}

join_dali() {  # DALI's parts (brought by earlier calls: benchmarks/dali_parts.sh) joined and installed in /tmp/dali;
  # the script stops, with the join's last lines, where a part is missing
  bash benchmarks/dali_parts.sh join >> "$OUT/env.txt" 2>&1 || { tail -5 "$OUT/env.txt"; exit 1; }
}
install_nvimg() {  # nvImageCodec (the lock has it; this machine's Python does not) from .device/nvimg, in /tmp/nvimg
  [ -d /tmp/nvimg/nvidia ] || python3 -m pip install -q --no-index --no-deps --target /tmp/nvimg .device/nvimg/*.whl
}
nvimg_check() {  # GPU CORES [TIMEOUT]: benchmarks/check_nvimgcodec.py, with its wheels from .device/nvimg
  install_nvimg
  find / -name 'libnvjpeg.so*' -not -path '/proc/*' 2>/dev/null | head -5 >> "$OUT/env.txt"
  CUDA_VISIBLE_DEVICES=$1 PYTHONPATH=$PYTHONPATH:/tmp/nvimg LD_LIBRARY_PATH=/tmp/nvimg/nvidia/cu13/lib:${LD_LIBRARY_PATH:-} \
    ${TASKSET:+taskset -c $2} timeout ${3:-400} python3 benchmarks/check_nvimgcodec.py $JPEGS --out "$OUT/nvimgcodec.json" \
    > /tmp/runs/nvimg.log 2>&1
  grep -E "img/s|unavailable|error|Error" /tmp/runs/nvimg.log | tail -20
}

part() {  # NAME TIMEOUT ARGS...: one run with DALI importable, its log in /tmp/runs/NAME.log, once (a later call
  # on the warm machine skips it)
  local name=$1 limit=$2; shift 2
  [ -e /tmp/runs/$name.done ] && return
  if (( SECONDS + limit / 2 > 580 )); then echo "skipped $name: ${SECONDS}s into the call"; return; fi
  PYTHONPATH=$PYTHONPATH:/tmp/dali timeout $limit "$@" > /tmp/runs/$name.log 2>&1 && touch /tmp/runs/$name.done
  echo "$name (${SECONDS}s): $(grep -E 'img/s|p =|grey' /tmp/runs/$name.log | tr '\n' ';' || true)"
  [ -e /tmp/runs/$name.done ] || tail -5 /tmp/runs/$name.log
}

raw_step() {  # NAME MODEL...: the raw compiled step of each model (throughput.py, ours only) on 16 cores, once a
  # warm machine, in $OUT/NAME.json
  local name=$1; shift
  part $name 200 ${TASKSET:+taskset -c 0-15} python3 benchmarks/throughput.py --models "$@" \
    --modes reduce-overhead --no-timm --steps 20 --warmup 5 --out "$OUT/$name.json"
}
c9_profiled() {  # what budget, threads, x2_slots and confirm share: the machine and JPEG folder, nvImageCodec,
  # crossvit_9 on one GPU and 16 cores for 6 epochs, each run profiled and clocked (loop_profile.py)
  setup
  install_nvimg
  C9=(trainer=gpu model=crossvit_9 compile=reduce-overhead)
  export PYPATH=$PYTHONPATH:/tmp/nvimg CPUS=0-15 EPOCHS=6 PROFILE=1
}

case ${1:-single} in
single)  # everything one GPU needs, most important first
  setup
  # The Prefetcher hung on its first GPU run (a full queue blocked its last put; fixed since): if it fails again,
  # the in-loop runs go on without it and the log says so.
  timeout 120 python3 -u benchmarks/check_prefetcher.py $JPEGS > /tmp/runs/check_prefetcher.log 2>&1 \
    || { echo "prefetcher check failed: runs use data.prefetch=0"; PREFETCH=(data.prefetch=0); }
  grep -v Warning /tmp/runs/check_prefetcher.log | tail -20 | tee -a "$OUT/env.txt"
  python3 benchmarks/throughput.py --models crossvit_18 crossvit_9 --modes reduce-overhead --no-timm --steps 20 \
    --warmup 5 --out "$OUT/raw_step.json" 2>&1 | tail -3
  run c18_gpu_1 trainer=gpu model=crossvit_18 compile=reduce-overhead "${JPEG_ARGS[@]}" data.decode=gpu data.num_workers=8
  run c9_gpu_1 trainer=gpu model=crossvit_9 compile=reduce-overhead "${JPEG_ARGS[@]}" data.decode=gpu data.num_workers=8
  run c18_syn_1 trainer=gpu model=crossvit_18 compile=reduce-overhead "${SYN_ARGS[@]}"
  timeout 60 python3 benchmarks/loader.py $JPEGS --decode gpu --workers 8 --batches 30 --out "$OUT/loader.json" 2>&1 | grep decode=
  timeout 60 python3 benchmarks/profile_data_path.py $JPEGS --out "$OUT/profile.json" 2>&1 | grep " ms"
  ;;
probe)  # where the in-loop time of decode=gpu goes: the step and the data path without Lightning, then with it
  setup
  timeout 120 python3 -u benchmarks/check_prefetcher.py $JPEGS > /tmp/runs/check_prefetcher.log 2>&1 \
    || { echo "prefetcher check failed: runs use data.prefetch=0"; PREFETCH=(data.prefetch=0); }
  grep -v Warning /tmp/runs/check_prefetcher.log | tail -20 | tee -a "$OUT/env.txt"
  timeout 200 python3 -u benchmarks/step_with_data.py $JPEGS --model crossvit_18 --trace --out "$OUT/step_c18.json" \
    2>&1 | grep -v Warning | tee /tmp/runs/step_c18.log | tail -45
  run c18_gpu_1 trainer=gpu model=crossvit_18 compile=reduce-overhead "${JPEG_ARGS[@]}" data.decode=gpu \
    data.num_workers=8 trainer.profiler=simple
  grep -A40 "FIT Profiler Report" /tmp/runs/c18_gpu_1.log | cut -c1-150 | head -40
  run c18_syn_1 trainer=gpu model=crossvit_18 compile=reduce-overhead "${SYN_ARGS[@]}"
  timeout 100 python3 -u benchmarks/step_with_data.py $JPEGS --model crossvit_9 --out "$OUT/step_c9.json" 2>&1 | grep img/s
  ;;
ddp)  # 2 and N GPUs: on-device synthetic data, bf16 DDP equivalence, then the JPEG folder
  setup
  for n in 2 $GPUS; do
    run c18_syn_$n trainer=ddp trainer.devices=$n model=crossvit_18 compile=reduce-overhead "${SYN_ARGS[@]}"
  done
  # 1 GPU x 256 (bf16, then fp32) and 2 GPUs x 128 (bf16): one global batch a step, in the same order.
  EQ=(experiment=fashion_mnist data.root=.device/fashion-mnist +data.shuffle=false data.hflip=0 recipe.label_smoothing=0 trainer.max_epochs=1
      trainer.log_every_n_steps=1 logger=csv '~callbacks.progress_bar' trainer.enable_progress_bar=false)
  timeout 90 python3 src/train.py trainer=gpu data.batch_size=256 "${EQ[@]}" hydra.run.dir=/tmp/runs/eq_bf16_1 \
    > /tmp/runs/eq_bf16_1.log 2>&1
  timeout 90 python3 src/train.py trainer=ddp trainer.devices=2 data.batch_size=128 "${EQ[@]}" \
    hydra.run.dir=/tmp/runs/eq_bf16_2 > /tmp/runs/eq_bf16_2.log 2>&1
  timeout 90 python3 src/train.py trainer=gpu trainer.precision=32-true data.batch_size=256 "${EQ[@]}" \
    hydra.run.dir=/tmp/runs/eq_fp32_1 > /tmp/runs/eq_fp32_1.log 2>&1
  python3 benchmarks/compare_losses.py /tmp/runs/eq_bf16_1 /tmp/runs/eq_bf16_2 /tmp/runs/eq_fp32_1 \
    --out "$OUT/ddp_equivalence.json" 2>&1 | tail -4
  for n in $GPUS 2; do
    run c18_gpu_$n trainer=ddp trainer.devices=$n model=crossvit_18 compile=reduce-overhead "${JPEG_ARGS[@]}" \
      data.decode=gpu data.num_workers=8
  done
  ;;
scale)  # 1, 2 and 4 GPUs in one call. Runs side by side use disjoint GPUs (64 cores: no CPU contention at 8
  # workers a run). "_lsync": callbacks.preemption=null, so Lightning's own SIGTERM handling broadcasts a flag and
  # reads it on the host before every DDP step (crossvit.callbacks.PreemptionCheckpoint switches that off).
  setup
  CVD=0 run c18_syn_1 trainer=gpu model=crossvit_18 compile=reduce-overhead "${SYN_ARGS[@]}" &
  CVD=2,3 run c18_syn_2 trainer=ddp trainer.devices=2 model=crossvit_18 compile=reduce-overhead "${SYN_ARGS[@]}" &
  # crossvit_9 through the prefetcher outside Lightning, its stream at priority 0 and at the device's highest.
  CUDA_VISIBLE_DEVICES=1 timeout 200 python3 -u benchmarks/step_with_data.py $JPEGS --model crossvit_9 \
    --out "$OUT/step_c9.json" > /tmp/runs/step_c9.log 2>&1 &
  wait
  grep img/s /tmp/runs/step_c9.log
  CVD=0,1 run c18_syn_2_lsync trainer=ddp trainer.devices=2 model=crossvit_18 compile=reduce-overhead \
    "${SYN_ARGS[@]}" callbacks.preemption=null &
  CVD=2 run c18_gpu_1 trainer=gpu model=crossvit_18 compile=reduce-overhead "${JPEG_ARGS[@]}" data.decode=gpu \
    data.num_workers=8 &
  wait
  run c18_syn_4 trainer=ddp trainer.devices=4 model=crossvit_18 compile=reduce-overhead "${SYN_ARGS[@]}"
  ;;
jpeg_ddp)  # the JPEG folder under DDP (c18_gpu_1 comes from `scale` on the same kind of machine)
  setup
  CVD=0,1 run c18_gpu_2 trainer=ddp trainer.devices=2 model=crossvit_18 compile=reduce-overhead "${JPEG_ARGS[@]}" \
    data.decode=gpu data.num_workers=8 &
  CVD=2 run c9_gpu_1 trainer=gpu model=crossvit_9 compile=reduce-overhead "${JPEG_ARGS[@]}" data.decode=gpu \
    data.num_workers=8 &
  wait
  run c18_gpu_4 trainer=ddp trainer.devices=4 model=crossvit_18 compile=reduce-overhead "${JPEG_ARGS[@]}" \
    data.decode=gpu data.num_workers=8
  ;;
x2)  # 2 GPUs, 32 cores. A 1-GPU run gets 16 cores (taskset), the budget; two such runs go side by side
  # on disjoint GPUs and cores. hybrid: 14 decoding workers; gpu: 8 workers reading bytes.
  setup
  raw_beside_syn_1
  CVD=0 CPUS=0-15 run c18_hyb_1 trainer=gpu model=crossvit_18 compile=reduce-overhead "${HYB_ARGS[@]}" &
  CVD=1 CPUS=16-31 run c18_gpu_1 trainer=gpu model=crossvit_18 compile=reduce-overhead "${JPEG_ARGS[@]}" \
    data.decode=gpu data.num_workers=8 &
  wait
  CVD=0 CPUS=0-15 run c9_hyb_1 trainer=gpu model=crossvit_9 compile=reduce-overhead "${HYB_ARGS[@]}" &
  CVD=1 CPUS=16-31 run c9_gpu_1 trainer=gpu model=crossvit_9 compile=reduce-overhead "${JPEG_ARGS[@]}" \
    data.decode=gpu data.num_workers=8 &
  wait
  run c18_syn_2 trainer=ddp trainer.devices=2 model=crossvit_18 compile=reduce-overhead "${SYN_ARGS[@]}"
  ;;
x2_b)  # decode=hybrid on 1 GPU (16 cores), DDP with one gradient bucket against Lightning's default buckets, and
  # NCCL across two torchrun agents (one GPU each, as two machines) against one GPU at twice the batch, bf16
  setup
  CVD=0 CPUS=0-15 run c18_hyb_1 trainer=gpu model=crossvit_18 compile=reduce-overhead "${HYB_ARGS[@]}" &
  CVD=1 CPUS=16-31 run c9_hyb_1 trainer=gpu model=crossvit_9 compile=reduce-overhead "${HYB_ARGS[@]}" &
  wait
  run c18_syn_2_bucket trainer=ddp trainer.devices=2 model=crossvit_18 compile=reduce-overhead "${SYN_ARGS[@]}" \
    'trainer.strategy={_target_:lightning.pytorch.strategies.DDPStrategy,bucket_cap_mb:256,gradient_as_bucket_view:true}'
  CVD=0 CPUS=0-15 run c18_syn_1 trainer=gpu model=crossvit_18 compile=reduce-overhead "${SYN_ARGS[@]}" &
  CUDA_VISIBLE_DEVICES=1 timeout 120 python3 src/train.py trainer=gpu data.batch_size=256 "${EQ60[@]}" \
    hydra.run.dir=/tmp/runs/eq_1gpu > /tmp/runs/eq_1gpu.log 2>&1 &
  wait
  two_agents
  grep -h "MEMBER" /tmp/runs/eq_2nodes_*.log | sort | uniq | head -4
  python3 benchmarks/compare_losses.py /tmp/runs/eq_1gpu /tmp/runs/eq_2nodes --out "$OUT/nccl_two_agents.json" 2>&1 \
    | tail -4
  tar czf "$OUT/logs.tar.gz" -C /tmp/runs $(cd /tmp/runs && ls *.log) 2>/dev/null
  ;;
augment)  # the device augmentation compiled (data.compile_augment, the default now): compiled against eager (values,
  # then host and device time), then crossvit_9 in the loop with DALI and with decode=hybrid (step_with_data.py), and
  # through src/train.py with decode=hybrid, the path users get
  setup
  join_dali
  STEP=(${TASKSET:+taskset -c 0-15} python3 -u benchmarks/step_with_data.py $JPEGS --model crossvit_9)
  part check_compiled 150 python3 benchmarks/check_augment_compiled.py
  part augment_speed 150 python3 benchmarks/augment_speed.py --batch 256 --size 240 --out "$OUT/augment_speed.json"
  part dali_c9 200 "${STEP[@]}" --decode dali --steps 100 --out "$OUT/dali_c9.json"
  part hybrid_c9 200 "${STEP[@]}" --decode hybrid --workers 14 --steps 100 --out "$OUT/hybrid_c9.json"
  if [ ! -e /tmp/runs/c9_hyb_1.log ]; then
    PYPATH=$PYTHONPATH:/tmp/dali CPUS=0-15 run c9_hyb_1 trainer=gpu model=crossvit_9 compile=reduce-overhead "${HYB_ARGS[@]}"
  fi
  tar czf "$OUT/logs.tar.gz" -C /tmp/runs $(cd /tmp/runs && ls *.log) 2>/dev/null
  ;;
dali_loop)  # why DALI in the step's loop falls below DALI alone and the step alone together (the augment call):
  # the static batch with the augmentation each step (the ceiling with free decoding), a profile of DALI's loop
  # (every stream's kernels: is the device full?), then DALI without the augmentation, and with fewer host threads
  setup
  join_dali
  STEP=(${TASKSET:+taskset -c 0-15} python3 -u benchmarks/step_with_data.py $JPEGS --model crossvit_9 --decode dali)
  nvidia-smi dmon -s u -d 1 > /tmp/runs/dmon.log 2>&1 & DMON=$!
  part loop_trace 200 "${STEP[@]}" --trace --steps 60 --out "$OUT/loop_trace.json"
  kill $DMON 2>/dev/null
  grep -A3 "device kernels\|^dali " /tmp/runs/loop_trace.log | head -20
  part loop_noaug 150 "${STEP[@]}" --no-augment --steps 100 --out "$OUT/loop_noaug.json"
  part loop_hw1_pf4_t6 150 "${STEP[@]}" --hw-load 1 --prefetch 4 --dali-threads 6 --steps 100 \
    --out "$OUT/loop_hw1_pf4_t6.json"
  part loop_t4 150 "${STEP[@]}" --dali-threads 4 --steps 100 --out "$OUT/loop_t4.json"
  tar czf "$OUT/logs.tar.gz" -C /tmp/runs $(cd /tmp/runs && ls *.log) 2>/dev/null
  ;;
dali_thread)  # after dali_loop (the device idle 40% of DALI's loop, the step's thread waiting): DALI's batches taken
  # and augmented in the Prefetcher's thread, so the step's thread only launches steps; profiled, then variants
  setup
  join_dali
  STEP=(${TASKSET:+taskset -c 0-15} python3 -u benchmarks/step_with_data.py $JPEGS --model crossvit_9 --decode dali)
  part thread_trace 220 "${STEP[@]}" --trace --steps 100 --out "$OUT/thread_trace.json"
  grep "device kernels" /tmp/runs/thread_trace.log
  part thread_hw1_pf3 200 "${STEP[@]}" --hw-load 1 --prefetch 3 --steps 100 --out "$OUT/thread_hw1_pf3.json"
  part thread_t8 200 "${STEP[@]}" --dali-threads 8 --steps 100 --out "$OUT/thread_t8.json"
  tar czf "$OUT/logs.tar.gz" -C /tmp/runs $(cd /tmp/runs && ls *.log) 2>/dev/null
  ;;
augment_static)  # the augmentation's kernels compiled with the images' channels, height and width constant (only the
  # number of images symbolic): checked and timed, then crossvit_9 and crossvit_18 with DALI in the Prefetcher's thread
  setup
  join_dali
  STEP=(${TASKSET:+taskset -c 0-15} python3 -u benchmarks/step_with_data.py $JPEGS --decode dali --steps 100)
  part check_static 150 python3 benchmarks/check_augment_compiled.py
  part speed_static 150 python3 benchmarks/augment_speed.py --batch 256 --size 240 --out "$OUT/augment_speed.json"
  grep -E "whole|layer" /tmp/runs/speed_static.log
  part c9_static 200 "${STEP[@]}" --model crossvit_9 --out "$OUT/c9_dali.json"
  part c18_static 220 "${STEP[@]}" --model crossvit_18 --out "$OUT/c18_dali.json"
  tar czf "$OUT/logs.tar.gz" -C /tmp/runs $(cd /tmp/runs && ls *.log) 2>/dev/null
  ;;
dali_probe)  # why DALI alone fed only ~7,500 img/s (the dali phase's second call): the module's GPU augmentation
  # alone, DALI without it at two shares for the JPEG engines (nvidia-smi dmon beside the first), whole files
  # decoded then cropped, a deeper queue with more threads; then crossvit_9 in the loop with the last two
  setup
  join_dali
  ONLY=(${TASKSET:+taskset -c 0-15} python3 -u benchmarks/step_with_data.py $JPEGS --model crossvit_9 --decode dali)
  nvidia-smi dmon -s u -d 1 > /tmp/runs/dmon.log 2>&1 & DMON=$!
  part noaug_0.9 120 "${ONLY[@]}" --dali-only --no-augment --hw-load 0.9 --steps 100 --out "$OUT/noaug_0.9.json"
  kill $DMON 2>/dev/null
  part noaug_1 120 "${ONLY[@]}" --dali-only --no-augment --hw-load 1 --steps 100 --out "$OUT/noaug_1.json"
  part noaug_full 120 "${ONLY[@]}" --dali-only --no-augment --dali-full --steps 100 --out "$OUT/noaug_full.json"
  part noaug_pf4_t16 120 "${ONLY[@]}" --dali-only --no-augment --prefetch 4 --dali-threads 16 --steps 100 \
    --out "$OUT/noaug_pf4_t16.json"
  part c9_full_pf4 200 "${ONLY[@]}" --dali-full --prefetch 4 --steps 100 --out "$OUT/c9_full_pf4.json"
  tar czf "$OUT/logs.tar.gz" -C /tmp/runs $(cd /tmp/runs && ls *.log) 2>/dev/null
  ;;
x2_d)  # decode=hybrid outside Lightning (static / inline / prefetcher at priority 0 and highest), 16 cores each;
  # then 2-GPU synthetic with Lightning's own SIGTERM handling (callbacks.preemption=null): its per-step broadcast
  setup
  CUDA_VISIBLE_DEVICES=0 taskset -c 0-15 timeout 200 python3 -u benchmarks/step_with_data.py $JPEGS --decode hybrid \
    --workers 14 --model crossvit_18 --out "$OUT/step_hyb_c18.json" > /tmp/runs/step_hyb_c18.log 2>&1 &
  CUDA_VISIBLE_DEVICES=1 taskset -c 16-31 timeout 200 python3 -u benchmarks/step_with_data.py $JPEGS --decode hybrid \
    --workers 14 --model crossvit_9 --out "$OUT/step_hyb_c9.json" > /tmp/runs/step_hyb_c9.log 2>&1 &
  wait
  grep -h img/s /tmp/runs/step_hyb_c18.log /tmp/runs/step_hyb_c9.log
  run c18_syn_2_lsync trainer=ddp trainer.devices=2 model=crossvit_18 compile=reduce-overhead "${SYN_ARGS[@]}" \
    callbacks.preemption=null
  ;;
next)  # 1 GPU, 16 cores each, runs side by side on GPUs 0 and 1: the raw step, then the in-loop figures now that no
  # step waits for the device to log its loss; crossvit_9 (bound by the workers' decoding) with a share to nvJPEG
  setup
  raw_beside_syn_1
  CVD=0 CPUS=0-15 run c18_hyb_1 trainer=gpu model=crossvit_18 compile=reduce-overhead "${HYB_ARGS[@]}" &
  CVD=1 CPUS=16-31 run c9_hyb_1 trainer=gpu model=crossvit_9 compile=reduce-overhead "${HYB_ARGS[@]}" &
  wait
  CVD=0 CPUS=0-15 run c9_hyb30_1 trainer=gpu model=crossvit_9 compile=reduce-overhead "${HYB_ARGS[@]}" \
    data.device_decode_share=0.3 &
  CVD=1 CPUS=16-31 run c9_hyb50_1 trainer=gpu model=crossvit_9 compile=reduce-overhead "${HYB_ARGS[@]}" \
    data.device_decode_share=0.5 &
  wait
  ;;
next_ddp)  # every GPU of the machine: synthetic and the JPEG folder (14 workers a rank), then nccl_eq's runs
  setup
  run c18_syn_$GPUS trainer=ddp trainer.devices=$GPUS model=crossvit_18 compile=reduce-overhead "${SYN_ARGS[@]}"
  run c18_hyb_$GPUS trainer=ddp trainer.devices=$GPUS model=crossvit_18 compile=reduce-overhead "${HYB_ARGS[@]}"
  (( SECONDS < 380 )) && bash "$0" nccl_eq
  ;;
scaling)  # 1 GPU then 2 in one call, each run alone on the machine (16 cores a GPU): the scaling figures
  setup
  CVD=0 CPUS=0-15 run c18_syn_1 trainer=gpu model=crossvit_18 compile=reduce-overhead "${SYN_ARGS[@]}"
  CVD=0 CPUS=0-15 run c18_hyb_1 trainer=gpu model=crossvit_18 compile=reduce-overhead "${HYB_ARGS[@]}"
  run c18_syn_$GPUS trainer=ddp trainer.devices=$GPUS model=crossvit_18 compile=reduce-overhead "${SYN_ARGS[@]}"
  run c18_hyb_$GPUS trainer=ddp trainer.devices=$GPUS model=crossvit_18 compile=reduce-overhead "${HYB_ARGS[@]}"
  ;;
x4)  # a 4-GPU machine, 16 cores a GPU: 1 GPU beside 2 GPUs on disjoint GPUs and cores, synthetic then the JPEG
  # folder; then 4 GPUs synthetic; nvJPEG's stream check first
  setup
  CUDA_VISIBLE_DEVICES=3 timeout 60 python3 benchmarks/check_nvjpeg_stream.py $JPEGS --out "$OUT/nvjpeg_stream.json"
  CVD=0 CPUS=0-15 run c18_syn_1 trainer=gpu model=crossvit_18 compile=reduce-overhead "${SYN_ARGS[@]}" &
  CVD=2,3 CPUS=32-63 run c18_syn_2 trainer=ddp trainer.devices=2 model=crossvit_18 compile=reduce-overhead \
    "${SYN_ARGS[@]}" &
  wait
  CVD=0 CPUS=0-15 run c18_hyb_1 trainer=gpu model=crossvit_18 compile=reduce-overhead "${HYB_ARGS[@]}" &
  CVD=2,3 CPUS=32-63 run c18_hyb_2 trainer=ddp trainer.devices=2 model=crossvit_18 compile=reduce-overhead \
    "${HYB_ARGS[@]}" &
  wait
  run c18_syn_4 trainer=ddp trainer.devices=4 model=crossvit_18 compile=reduce-overhead "${SYN_ARGS[@]}"
  ;;
x4_jpeg)  # the JPEG folder on 4 GPUs (x4 has the 1- and 2-GPU runs; a call of its own: x4 fills its 10 minutes)
  setup
  run c18_hyb_4 trainer=ddp trainer.devices=4 model=crossvit_18 compile=reduce-overhead "${HYB_ARGS[@]}"
  ;;
x4_fixed)  # 1 GPU (synthetic, JPEG) beside 2 GPUs (synthetic), on disjoint GPUs and cores; then 4 GPUs
  setup
  CVD=0 CPUS=0-15 run c18_syn_1 trainer=gpu model=crossvit_18 compile=reduce-overhead "${SYN_ARGS[@]}" &
  CVD=1 CPUS=16-31 run c18_hyb_1 trainer=gpu model=crossvit_18 compile=reduce-overhead "${HYB_ARGS[@]}" &
  CVD=2,3 CPUS=32-63 run c18_syn_2 trainer=ddp trainer.devices=2 model=crossvit_18 compile=reduce-overhead \
    "${SYN_ARGS[@]}" &
  wait
  run c18_syn_4 trainer=ddp trainer.devices=4 model=crossvit_18 compile=reduce-overhead "${SYN_ARGS[@]}"
  run c18_hyb_4 trainer=ddp trainer.devices=4 model=crossvit_18 compile=reduce-overhead "${HYB_ARGS[@]}"
  ;;
ddp_probe)  # benchmarks/ddp_step.py: one process, then every GPU under each DDP variant (a compile each)
  { nvidia-smi --query-gpu=name --format=csv,noheader; nproc; date -u; } >> "$OUT/env.txt"
  timeout 150 python3 -m torch.distributed.run --nproc_per_node=1 benchmarks/ddp_step.py --model crossvit_18 \
    --profile 5 --out "$OUT/ddp_1.json" 2>&1 | grep -E "img/s|failed|profiled"
  timeout 420 python3 -m torch.distributed.run --nproc_per_node=$GPUS benchmarks/ddp_step.py --model crossvit_18 \
    --profile 5 --out "$OUT/ddp_$GPUS.json" 2>&1 | grep -E "img/s|failed|profiled"
  ;;
nvimgcodec)  # one GPU: nvImageCodec's decoders alone and beside crossvit_9's compiled step
  setup
  nvimg_check 0 0-15
  ;;
x4_next)  # after the DDP fix: the JPEG folder on 1 GPU beside 2 (disjoint GPUs and cores), nvImageCodec's check on
  # the GPU and cores left over at the same time, then the JPEG folder on 4 GPUs
  setup
  CVD=0 CPUS=0-15 run c18_hyb_1 trainer=gpu model=crossvit_18 compile=reduce-overhead "${HYB_ARGS[@]}" &
  nvimg_check 1 16-31 &
  CVD=2,3 CPUS=32-63 run c18_hyb_2 trainer=ddp trainer.devices=2 model=crossvit_18 compile=reduce-overhead \
    "${HYB_ARGS[@]}" &
  wait
  run c18_hyb_4 trainer=ddp trainer.devices=4 model=crossvit_18 compile=reduce-overhead "${HYB_ARGS[@]}"
  ;;
roi)  # decode=hybrid's workers decoding only the crop region (nvImageCodec, in the lock) against whole images
  # (torchvision: the same run without /tmp/nvimg on its path), crossvit_9 then crossvit_18, 1 GPU and 16 cores each,
  # side by side with the raw steps and nvImageCodec's check; crossvit_18 on 2 GPUs beside them; then on 4 GPUs
  setup
  install_nvimg
  WITH=$PYTHONPATH:/tmp/nvimg
  PYPATH=$WITH CVD=0 CPUS=0-15 run c9_roi_1 trainer=gpu model=crossvit_9 compile=reduce-overhead "${HYB_ARGS[@]}" &
  CVD=1 CPUS=16-31 run c9_whole_1 trainer=gpu model=crossvit_9 compile=reduce-overhead "${HYB_ARGS[@]}" &
  CUDA_VISIBLE_DEVICES=2 ${TASKSET:+taskset -c 32-47} python3 benchmarks/throughput.py --models crossvit_18 crossvit_9 \
    --modes reduce-overhead --no-timm --steps 20 --warmup 5 --out "$OUT/raw_step.json" > /tmp/runs/raw.log 2>&1 &
  nvimg_check 3 48-63 240 &
  wait
  tail -3 /tmp/runs/raw.log
  PYPATH=$WITH CVD=0 CPUS=0-15 run c18_roi_1 trainer=gpu model=crossvit_18 compile=reduce-overhead "${HYB_ARGS[@]}" &
  CVD=1 CPUS=16-31 run c18_whole_1 trainer=gpu model=crossvit_18 compile=reduce-overhead "${HYB_ARGS[@]}" &
  PYPATH=$WITH CVD=2,3 CPUS=32-63 run c18_roi_2 trainer=ddp trainer.devices=2 model=crossvit_18 \
    compile=reduce-overhead "${HYB_ARGS[@]}" &
  wait
  PYPATH=$WITH run c18_roi_4 trainer=ddp trainer.devices=4 model=crossvit_18 compile=reduce-overhead "${HYB_ARGS[@]}"
  ;;
hw_share)  # ran at commit 4b5da24 (data.device_decode_share, removed since: slower at every share, docs/benchmarks.md):
  # a share of each decode=hybrid batch decoded by the GPU's JPEG engines (nvImageCodec) instead of the workers. The
  # decoder's check first (pixels, a progressive file's fallback, img/s); then crossvit_9 at four shares side by side
  # (1 GPU, 16 cores each); then crossvit_18 at two, beside the raw steps
  setup
  install_nvimg
  export PYTHONPATH=$PYTHONPATH:/tmp/nvimg
  CUDA_VISIBLE_DEVICES=0 timeout 120 python3 benchmarks/check_device_decoder.py $JPEGS --out "$OUT/device_decoder.json" \
    2>&1 | tail -1 | tee -a "$OUT/env.txt"
  if ! grep -q '"fallbacks": 1,' "$OUT/device_decoder.json" 2>/dev/null; then  # nvImageCodec did not find libnvjpeg
    export LD_LIBRARY_PATH=/tmp/nvimg/nvidia/cu13/lib:${LD_LIBRARY_PATH:-}
    echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH" | tee -a "$OUT/env.txt"
    CUDA_VISIBLE_DEVICES=0 timeout 120 python3 benchmarks/check_device_decoder.py $JPEGS \
      --out "$OUT/device_decoder_ld.json" 2>&1 | tail -1 | tee -a "$OUT/env.txt"
  fi
  C9=(trainer=gpu model=crossvit_9 compile=reduce-overhead "${HYB_ARGS[@]}")
  CVD=0 CPUS=0-15 run c9_share0_1 "${C9[@]}" data.device_decode_share=0 &
  CVD=1 CPUS=16-31 run c9_share25_1 "${C9[@]}" data.device_decode_share=0.25 &
  CVD=2 CPUS=32-47 run c9_share40_1 "${C9[@]}" data.device_decode_share=0.4 &
  CVD=3 CPUS=48-63 run c9_share55_1 "${C9[@]}" data.device_decode_share=0.55 &
  wait
  C18=(trainer=gpu model=crossvit_18 compile=reduce-overhead "${HYB_ARGS[@]}")
  CVD=0 CPUS=0-15 run c18_share0_1 "${C18[@]}" data.device_decode_share=0 &
  CVD=1 CPUS=16-31 run c18_share20_1 "${C18[@]}" data.device_decode_share=0.2 &
  CUDA_VISIBLE_DEVICES=2 ${TASKSET:+taskset -c 32-47} python3 benchmarks/throughput.py --models crossvit_18 crossvit_9 \
    --modes reduce-overhead --no-timm --steps 20 --warmup 5 --out "$OUT/raw_step.json" > /tmp/runs/raw.log 2>&1 &
  CVD=3 CPUS=48-63 run c9_share70_1 "${C9[@]}" data.device_decode_share=0.7 &
  wait
  tail -3 /tmp/runs/raw.log
  ;;
workers)  # how many decode=hybrid workers a GPU's 16 cores should run: crossvit_9 (bound by them) with 12, 14 and 16
  # workers side by side, and 14 again on the fourth lane for the lanes' own spread (1 GPU, 16 cores each)
  setup
  install_nvimg
  export PYTHONPATH=$PYTHONPATH:/tmp/nvimg
  workers=(12 14 16 14)
  for lane in 0 1 2 3; do
    CVD=$lane CPUS=$((16 * lane))-$((16 * lane + 15)) run c9_w${workers[$lane]}_lane$lane trainer=gpu model=crossvit_9 \
      compile=reduce-overhead "${JPEG_ARGS[@]}" data.decode=hybrid data.num_workers=${workers[$lane]} &
  done
  wait
  ;;
dali)  # crossvit_9's 75% target (1 GPU, 16 cores), most telling first: DALI in the step's loop (step_with_data.py:
  # its static batch is the raw step, timed alike) with the files from DALI's reader; DALI's pipeline alone with the
  # module's GPU augmentation at three shares for the JPEG engines; the files in a sampler's order from DALI's worker
  # processes; DALI's crops and pixels against timm's (check_dali.py); decode=hybrid in the same harness. A part that
  # finished is not run again, so calling the phase again on the warm machine goes on where the last call stopped.
  setup
  join_dali
  STEP=(${TASKSET:+taskset -c 0-15} python3 -u benchmarks/step_with_data.py $JPEGS --model crossvit_9)
  part dali_c9_reader 200 "${STEP[@]}" --decode dali --dali-source reader --steps 100 --out "$OUT/dali_c9_reader.json"
  part dali_only_0.9 120 "${STEP[@]}" --decode dali --dali-only --hw-load 0.9 --steps 60 --out "$OUT/dali_only_0.9.json"
  part dali_c9_sampler 200 "${STEP[@]}" --decode dali --dali-source sampler --steps 100 --out "$OUT/dali_c9_sampler.json"
  part check_dali 120 python3 benchmarks/check_dali.py $JPEGS --gpu
  part dali_only_0 120 "${STEP[@]}" --decode dali --dali-only --hw-load 0 --steps 60 --out "$OUT/dali_only_0.json"
  part dali_only_0.65 120 "${STEP[@]}" --decode dali --dali-only --hw-load 0.65 --steps 60 --out "$OUT/dali_only_0.65.json"
  # /tmp/dali holds nvImageCodec too (DALI needs it), so decode=hybrid's workers decode crop regions with it
  part hybrid_c9 200 "${STEP[@]}" --decode hybrid --workers 14 --steps 100 --out "$OUT/hybrid_c9.json"
  tar czf "$OUT/logs.tar.gz" -C /tmp/runs $(cd /tmp/runs && ls *.log) 2>/dev/null
  ;;
framework_dali)  # data.decode=dali through src/train.py (DALI decodes in the Prefetcher's thread, the framework's
  # path since the ninth session), crossvit_9 then crossvit_18, beside the raw step of the same call
  setup
  join_dali
  part module_check 120 python3 benchmarks/check_dali.py $JPEGS --gpu --module  # the decoder on the GPU first
  tail -3 /tmp/runs/module_check.log
  raw_step raw crossvit_9 crossvit_18
  for m in 9 18; do
    [ -e /tmp/runs/c${m}_dali.log ] || PYPATH=$PYTHONPATH:/tmp/dali CPUS=0-15 run c${m}_dali trainer=gpu \
      model=crossvit_$m compile=reduce-overhead "${DALI_ARGS[@]}"
  done
  # The ceiling Lightning's loop leaves crossvit_9 (data already on the device), and auto's choice in the same call
  [ -e /tmp/runs/c9_syn.log ] || CPUS=0-15 run c9_syn trainer=gpu model=crossvit_9 compile=reduce-overhead \
    "${SYN_ARGS[@]}"
  [ -e /tmp/runs/c9_hybrid.log ] || CPUS=0-15 run c9_hybrid trainer=gpu model=crossvit_9 compile=reduce-overhead \
    "${HYB_ARGS[@]}"
  [ -e /tmp/runs/c9_dali_t8.log ] || PYPATH=$PYTHONPATH:/tmp/dali CPUS=0-15 run c9_dali_t8 trainer=gpu \
    model=crossvit_9 compile=reduce-overhead "${DALI_ARGS[@]}" data.dali_threads=8
  tar czf "$OUT/logs.tar.gz" -C /tmp/runs $(cd /tmp/runs && ls *.log) 2>/dev/null
  ;;
data_wait)  # crossvit_9's in-loop runs with the share of the loop spent waiting for batches (train_data_wait) and
  # the device's load beside it (nvidia-smi dmon): is decode=dali's 68% the host, the device's arithmetic shared, or
  # the data path's kernels waiting behind the step's (docs/benchmarks.md, eleventh session)? One GPU, 16 cores,
  # DALI's parts as for framework_dali; a second call on the warm machine runs what the first left
  setup
  join_dali
  raw_step raw9 crossvit_9
  C9=(trainer=gpu model=crossvit_9 compile=reduce-overhead)
  export DMON=1 EPOCHS=6  # the device's load during each run (idle gaps: the host or the data is the limit), over
  # ~15 s of training at crossvit_9's rate, against dmon's one sample a second
  export PYPATH=$PYTHONPATH:/tmp/dali CPUS=0-15  # /tmp/dali also has nvImageCodec, for hybrid's region decoding
  once c9_syn "${C9[@]}" "${SYN_ARGS[@]}"
  once c9_dali "${C9[@]}" "${DALI_ARGS[@]}"
  once c9_dali_prio "${C9[@]}" "${DALI_ARGS[@]}" data.stream_priority=-5
  once c9_dali_q4 "${C9[@]}" "${DALI_ARGS[@]}" data.prefetch=4
  once c9_dali_again "${C9[@]}" "${DALI_ARGS[@]}"
  once c9_hybrid "${C9[@]}" "${HYB_ARGS[@]}"
  ;;
dali_share)  # data.dali_share: each crossvit_9 batch decoded partly by the workers (as decode=hybrid's), partly by
  # DALI on the GPU's JPEG engines, against either alone. One GPU, 16 cores, DALI's parts as for framework_dali; runs
  # whose log exists are skipped, so a second call on the warm machine runs what the first left
  setup
  join_dali
  raw_step raw9 crossvit_9
  C9=(trainer=gpu model=crossvit_9 compile=reduce-overhead)
  # 6 epochs: a run's fixed cost (start, compiles, graph capture) is ~2 min and an epoch ~3 s, so more epochs are
  # cheap; each row lists every epoch's img/s (inloop_row.py), so a slow figure shows whether one epoch made it.
  # decode=hybrid comes third, so that the target's comparison is on one host even if the call runs short.
  # /tmp/dali also has nvImageCodec, for the workers' region decoding.
  export PYPATH=$PYTHONPATH:/tmp/dali CPUS=0-15 EPOCHS=6
  once c9_dali "${C9[@]}" "${DALI_ARGS[@]}"
  once c9_share50 "${C9[@]}" "${DALI_ARGS[@]}" data.dali_share=0.5 data.num_workers=11
  once c9_hybrid "${C9[@]}" "${HYB_ARGS[@]}"
  once c9_share35 "${C9[@]}" "${DALI_ARGS[@]}" data.dali_share=0.35 data.num_workers=12
  once c9_share65 "${C9[@]}" "${DALI_ARGS[@]}" data.dali_share=0.65 data.num_workers=9
  once c9_dali_again "${C9[@]}" "${DALI_ARGS[@]}"
  # crossvit_18 (its compile alone takes ~100 s): at share 0.5 against decode=hybrid (93% of its raw step so far)
  raw_step raw18 crossvit_18
  C18=(trainer=gpu model=crossvit_18 compile=reduce-overhead)
  EPOCHS=2 LIMIT=300 once c18_share50 "${C18[@]}" "${DALI_ARGS[@]}" data.dali_share=0.5 data.num_workers=11
  EPOCHS=2 LIMIT=300 once c18_hybrid "${C18[@]}" "${HYB_ARGS[@]}"
  ;;
switch)  # does the training thread wait for the interpreter behind the prefetcher's thread? crossvit_9 with
  # decode=dali and decode=hybrid at Python's default thread switch interval (5 ms) and at 0.5 ms; one GPU, 16 cores,
  # DALI's parts as for dali_share; the raw step last (a fresh machine compiles it in ~3 min)
  setup
  join_dali
  C9=(trainer=gpu model=crossvit_9 compile=reduce-overhead)
  export PYPATH=$PYTHONPATH:/tmp/dali CPUS=0-15 EPOCHS=6
  once c9_dali "${C9[@]}" "${DALI_ARGS[@]}"
  SWITCH=0.0005 once c9_dali_sw05 "${C9[@]}" "${DALI_ARGS[@]}"
  SWITCH=0.0005 once c9_hybrid_sw05 "${C9[@]}" "${HYB_ARGS[@]}"
  once c9_hybrid "${C9[@]}" "${HYB_ARGS[@]}"
  raw_step raw9 crossvit_9
  ;;
budget)  # where crossvit_9's loop loses its last quarter: every run with 10 steps of its second epoch profiled
  # (loop_profile.py: device busy and idle, the step stream's time against the data path's streams); on-device
  # synthetic data (no data path), decode=hybrid, the same without RandAugment and erasing, and with 10 workers
  # instead of 14; one GPU, 16 cores, no DALI. The raw step last (a fresh machine compiles it in ~3 min)
  c9_profiled
  once c9_syn "${C9[@]}" "${SYN_ARGS[@]}"
  once c9_hybrid "${C9[@]}" "${HYB_ARGS[@]}"
  once c9_hybrid_noaug "${C9[@]}" "${HYB_ARGS[@]}" data.auto_augment=null data.color_jitter=null data.re_prob=0
  once c9_hybrid_w10 "${C9[@]}" "${HYB_ARGS[@]}" data.num_workers=10
  raw_step raw9 crossvit_9
  ;;
threads)  # budget found the device idle half of crossvit_9's decode=hybrid loop, with no sync in the training
  # thread: what holds the host? Each run's threads clocked in its third epoch (loop_profile.py: time on a core and
  # waiting for one, per thread and for the workers; a probe's wake lateness for the interpreter's lock). On-device
  # data with its per-batch syncs gone (in_memory.py), decode=hybrid, and decode=hybrid prepared in the training
  # thread (data.prefetch=0). One GPU, 16 cores, no DALI; the raw step last (a second call on the warm machine)
  c9_profiled
  once c9_syn "${C9[@]}" "${SYN_ARGS[@]}"
  once c9_hybrid "${C9[@]}" "${HYB_ARGS[@]}"
  once c9_hybrid_p0 "${C9[@]}" "${HYB_ARGS[@]}" data.prefetch=0
  if (( SECONDS < STOP_AFTER )); then raw_step raw9 crossvit_9; fi
  ;;
x2_slots)  # slots on a 2-GPU machine, then the scaling figures again (the on-device path's syncs are gone): the
  # slots phase's runs on GPU 0 and cores 0-15 (the batches compared, crossvit_9 with and without the slots, the raw
  # steps of crossvit_9 and crossvit_18), then crossvit_18 on 1 GPU (16 cores) and on both (all 32), synthetic and
  # JPEGs with the slots, 4 epochs unprofiled. Call it again on the warm machine for what a call left
  c9_profiled
  if [ ! -e /tmp/runs/check_slots.done ]; then  # the two paths' batches compared on the GPU, once a warm machine
    df -h /dev/shm | tee -a "$OUT/env.txt"
    timeout 150 python3 benchmarks/check_slots.py $JPEGS --workers 14 --batches 40 > /tmp/runs/check_slots.log 2>&1
    grep -v Warn /tmp/runs/check_slots.log | tail -4 | tee -a "$OUT/env.txt"
    touch /tmp/runs/check_slots.done
  fi
  once c9_hybrid "${C9[@]}" "${HYB_ARGS[@]}"
  once c9_hybrid_slots "${C9[@]}" "${HYB_ARGS[@]}" data.shared_slots=true
  if (( SECONDS < STOP_AFTER )); then
    part raw_9_18 280 ${TASKSET:+taskset -c 0-15} python3 benchmarks/throughput.py --models crossvit_9 crossvit_18 \
      --modes reduce-overhead --no-timm --steps 20 --warmup 5 --out "$OUT/raw_9_18.json"
  fi
  C18=(model=crossvit_18 compile=reduce-overhead)
  export PROFILE= EPOCHS=4
  once c18_hybrid_slots_1 trainer=gpu "${C18[@]}" "${HYB_ARGS[@]}" data.shared_slots=true
  once c18_syn_1 trainer=gpu "${C18[@]}" "${SYN_ARGS[@]}"
  CPUS= once c18_syn_2 trainer=ddp trainer.devices=2 "${C18[@]}" "${SYN_ARGS[@]}"
  CPUS= LIMIT=300 once c18_hybrid_slots_2 trainer=ddp trainer.devices=2 "${C18[@]}" "${HYB_ARGS[@]}" data.shared_slots=true
  ;;
confirm)  # after x2_slots (data.shared_slots the default since): crossvit_9 on one GPU and 16 cores with the slots
  # and without, the raw step; on a machine of 2 GPUs or more also crossvit_18's JPEG run on 1 GPU and on 2 (300 s
  # each: x2_slots's 2-GPU run outlasted 200). Call it again on the warm machine for what a call left
  c9_profiled
  once c9_slots "${C9[@]}" "${HYB_ARGS[@]}"
  once c9_usual "${C9[@]}" "${HYB_ARGS[@]}" data.shared_slots=false
  if (( SECONDS < STOP_AFTER )); then raw_step raw9 crossvit_9; fi
  if (( GPUS >= 2 )); then
    export PROFILE= EPOCHS=4 LIMIT=300
    once c18_hybrid_1 trainer=gpu model=crossvit_18 compile=reduce-overhead "${HYB_ARGS[@]}"
    CPUS= once c18_hybrid_2 trainer=ddp trainer.devices=2 model=crossvit_18 compile=reduce-overhead "${HYB_ARGS[@]}"
  fi
  ;;
c9_workers)  # after confirm, on the 1-GPU kind (16 cores for 14 workers, the training and prefetcher threads):
  # crossvit_9 with the slots and 12, then 13 workers
  c9_profiled
  once c9_slots_w12 "${C9[@]}" "${HYB_ARGS[@]}" data.num_workers=12
  once c9_slots_w13 "${C9[@]}" "${HYB_ARGS[@]}" data.num_workers=13
  ;;
c9_long)  # crossvit_9 with the slots for 10 epochs, unprofiled: does its decline over epochs go on or settle?
  c9_profiled
  PROFILE= EPOCHS=10 LIMIT=260 once c9_slots_e10 "${C9[@]}" "${HYB_ARGS[@]}"
  ;;
first_runs)  # are a fresh machine's first in-loop runs slow (c9_dali gave 47-50% three times in a machine's first
  # calls, 68% later)? crossvit_9 with decode=hybrid twice, 4 epochs each, every epoch's img/s in its row. No DALI
  setup
  install_nvimg
  export PYPATH=$PYTHONPATH:/tmp/nvimg CPUS=0-15 EPOCHS=4
  run c9_hybrid_a trainer=gpu model=crossvit_9 compile=reduce-overhead "${HYB_ARGS[@]}"
  run c9_hybrid_b trainer=gpu model=crossvit_9 compile=reduce-overhead "${HYB_ARGS[@]}"
  ;;
engines_prio)  # whether the JPEG engines' decoding waits behind the step's kernels only for want of priority: the
  # decoder (benchmarks/check_device_decoder.py) beside crossvit_9's and crossvit_18's steps, its stream at priority 0
  # and at the device's highest, the step on the default stream (as Lightning) or a side stream. One GPU, no DALI
  setup
  install_nvimg
  export PYTHONPATH=$PYTHONPATH:/tmp/nvimg  # found libnvjpeg without LD_LIBRARY_PATH in calls 21, 22 and 24
  for model in crossvit_9 crossvit_18; do
    (( SECONDS > STOP_AFTER )) && break
    TRACE=(); [ $model = crossvit_9 ] && TRACE=(--trace)  # which CUDA calls the decoding waits in
    ${TASKSET:+taskset -c 0-15} timeout 240 python3 benchmarks/check_device_decoder.py $JPEGS --beside $model \
      --steps 40 --train default side --train-priority default side "${TRACE[@]}" \
      --out "$OUT/engines_prio_$model.json" > /tmp/runs/engines_prio_$model.log 2>&1
    grep -v Warning /tmp/runs/engines_prio_$model.log | tail -10 | cut -c1-900
  done
  tar czf "$OUT/logs.tar.gz" -C /tmp/runs $(cd /tmp/runs && ls *.log) 2>/dev/null
  ;;
nccl_eq)  # one call, one machine: why the two-agent run's losses spread wider than the Lightning-launched one's
  CUDA_VISIBLE_DEVICES=0 timeout 120 python3 src/train.py trainer=gpu data.batch_size=256 "${EQ60[@]}" \
    hydra.run.dir=/tmp/runs/eq_1gpu > /tmp/runs/eq_1gpu.log 2>&1 &
  CUDA_VISIBLE_DEVICES=1 timeout 120 python3 src/train.py trainer=gpu trainer.precision=32-true data.batch_size=256 \
    "${EQ60[@]}" hydra.run.dir=/tmp/runs/eq_fp32 > /tmp/runs/eq_fp32.log 2>&1 &
  wait
  CUDA_VISIBLE_DEVICES=0,1 timeout 180 python3 src/train.py trainer=ddp trainer.devices=2 data.batch_size=128 \
    "${EQ60[@]}" hydra.run.dir=/tmp/runs/eq_2gpus > /tmp/runs/eq_2gpus.log 2>&1
  two_agents
  python3 benchmarks/compare_losses.py /tmp/runs/eq_1gpu /tmp/runs/eq_2gpus /tmp/runs/eq_2nodes /tmp/runs/eq_fp32 \
    --out "$OUT/ddp_equivalence.json" 2>&1 | tail -4
  tar czf "$OUT/logs.tar.gz" -C /tmp/runs $(cd /tmp/runs && ls *.log) 2>/dev/null
  ;;
x2_c)  # the JPEG folder on 2 GPUs, 16 cores a rank
  setup
  run c18_${DECODE:-hybrid}_2 trainer=ddp trainer.devices=2 model=crossvit_18 compile=reduce-overhead \
    "${JPEG_ARGS[@]}" data.decode=${DECODE:-hybrid} data.num_workers=14 ${STRATEGY:+"trainer.strategy=$STRATEGY"}
  ;;
esac
