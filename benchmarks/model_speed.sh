#!/usr/bin/env bash
# Issue 14's measurements on a lent GPU machine, one phase a call. A phase runs lanes side by side, one GPU and 16
# cores each (a 4-GPU machine: four lanes; any run and the baseline it is compared with share a lane, so a ratio
# never crosses GPUs), each lane's runs one after another:
#   bash benchmarks/model_speed.sh first   # baselines ours/timm (reduce-overhead), both profiles, SDPA backends,
#                                          # the textbook cross-attention, max-autotune for ours and timm (ran at
#                                          # 7c9e894, where cross-attention was folded and had that switch)
#   bash benchmarks/model_speed.sh second  # baselines again; bf16 weights with fp32 master copies for ours and timm
#                                          # and its profile; coordinate-descent tuning
#   bash benchmarks/model_speed.sh third   # in-loop (src/train.py, on-device synthetic data) beside the raw step,
#                                          # bf16-mixed against bf16-true (fp32 master weights), both models
#   bash benchmarks/model_speed.sh fourth  # max-autotune without split-K (decompose_k) candidates, each beside
#                                          # reduce-overhead in its process: ours and timm, crossvit_9 and 18
#   bash benchmarks/model_speed.sh autotune_c9  # one GPU: the first of fourth's four lanes (ours, crossvit_9)
#   bash benchmarks/model_speed.sh fifth   # one GPU: GEMM autotuning alone (no coordinate descent, which
#                                          # max-autotune turns on too; no split-K candidates) under CUDA graphs,
#                                          # each beside reduce-overhead, crossvit_18 first; FP8=1 adds fp8_gemm.py,
#                                          # NORM=1 norm_floor.py (LayerNorm and GELU against their bytes' floor,
#                                          # and our Triton LayerNorm, checked first, then in our step beside timm).
#                                          # PROBE=1 autotune_probe.py before the autotuning runs.
#                                          # Its compiles outlast a call: run it again on the warm machine (or
#                                          # carrying the caches) until every run finishes; the last call measures
#   bash benchmarks/model_speed.sh oracle  # the bound on fusing: ours with LayerNorm, GELU and attention made free
#                                          # (throughput.py --free) beside the baselines, crossvit_18 and 9, training
#   bash benchmarks/model_speed.sh oracle2 # attention alone made free; FlexAttention for the self-attention
#                                          # (--sdpa flex); the profiles of ours as is and with all three free
#   bash benchmarks/model_speed.sh oracle3 # FlexAttention, its kernels as inductor picks them and autotuned
#   bash benchmarks/model_speed.sh oracle_infer  # training and inference, ours as is and with all three free
#   bash benchmarks/model_speed.sh fa4     # FlashAttention-4 (benchmarks/fa4_attention.py): its kernels against
#                                          # cuDNN's at each branch's shape, then in ours' step (--sdpa fa4 and
#                                          # fa4-packed) beside the baselines, training, two GPUs. Its packages
#                                          # travel in two parts over two calls (docs/benchmarks.md, fifth session)
#   bash benchmarks/model_speed.sh fa4_tune  # FA4's tiles fitted to our token counts, then its step and kernels
#   bash benchmarks/model_speed.sh fa4_infer # training and inference with those tiles, crossvit_18 beside timm
#   bash benchmarks/model_speed.sh fa4_graphed  # the kernels alone with those tiles, timed from CUDA graphs too
#   bash benchmarks/model_speed.sh quack   # quack-kernels' fused MLP epilogues (benchmarks/quack_mlp.py): the MLPs
#                                          # alone against inductor's, then ours' step with them beside the
#                                          # baselines, with FA4's packed attention too; the profile of FA4's
#                                          # step. One GPU, runs one after another: called again on the warm
#                                          # machine, it goes on where the last call stopped
#   bash benchmarks/model_speed.sh quack2  # each MLP product alone, quack against cuBLAS (--per-gemm); then
#                                          # --quack-mlp epilogues (quack only where it fuses GELU) in the step
#   bash benchmarks/model_speed.sh quack2_base  # quack2's baselines only (needs no quack): the first call's work
#   bash benchmarks/model_speed.sh quack3  # --quack-mlp epilogues-tuned in the step, then with fa4-packed too
#   bash benchmarks/model_speed.sh seeded  # kernels=hopper loops on a fresh machine with kernels.quack_tuning: no
#                                          # autotuning, each shape's winner compiled (carry .device/fa4a first)
#   bash benchmarks/model_speed.sh tenth   # seeded crossvit_18 on a fresh machine, then the raw steps with FA4 in
#                                          # training only, inference with it, inference profiles, the final norm
#                                          # on the CLS tokens against every token (carry .device/fa4a first)
#   bash benchmarks/model_speed.sh tenth_b # inference by where FA4 takes the attention, on a second machine
#   bash benchmarks/model_speed.sh eleventh  # bf16 weights for ours and timm alike, then autocast, 50 batches
#                                          # each; inference by attention kernel over 100 batches, twice
#   bash benchmarks/model_speed.sh twelfth   # crossvit_9's training under autocast and in bf16 weights, ours and
#                                          # timm, on one machine; then both steps profiled (ours); inference with
#                                          # and without inductor's freezing, ours and timm
#   bash benchmarks/model_speed.sh hopper_loop  # kernels=hopper through src/train.py beside kernels=default, then
#                                          # the raw step with the same kernels beside timm (--quack-mlp and --sdpa
#                                          # with timm: ours gets them, timm stays as it is). Calls on one warm
#                                          # machine: .device/fa4a, then .device/fa4b, then on until all have run
# SKIP="NAME ..." leaves those runs out of a call (e.g. SKIP="amp_c9" bash benchmarks/model_speed.sh eleventh).
# Rows (JSON, one file a run) are merged into $OUT/rows.json; logs into $OUT/logs.tar.gz; a table is printed last.
# Compiled kernels and autotuning results live in $CACHE_ROOT/inductor_<lane> (CACHE_ROOT=/tmp unless set; a folder
# the repository ignores, such as .device/cache, stays on a warm machine between calls). SAVE_CACHE=1 returns each
# lane's autotuning results and compiled graphs as $OUT/inductor_<lane>.tar.gz (Triton's binaries and the autotuning
# candidates' sources stay behind: with them one call's cache took 478 MB, 25 MB compressed), where under 15 MB; a
# later call on a fresh machine that carries them in .device/inductor starts from them.
set -uo pipefail
OUT=${OUT:-/tmp/out}; RES=/tmp/speed; rm -rf $RES; mkdir -p "$OUT" $RES  # a warm machine keeps /tmp
STOP_AFTER=${STOP_AFTER:-480}  # seconds into the call after which no new run starts (a call may last 600)
DEADLINE=${DEADLINE:-570}      # every run ends by then, leaving time to merge and return
TASKSET=$(command -v taskset)
# kernels=hopper's kernels as throughput.py and profile_step.py take them (ours only: timm stays as it is)
HOPPER=(--quack-mlp epilogues-tuned --sdpa fa4-packed --fa4-tiles docs/fa4_tiles_2026-11-28.json)
CACHE_ROOT=$(realpath -m "${CACHE_ROOT:-/tmp}"); DONE=$CACHE_ROOT/done; mkdir -p "$CACHE_ROOT" "$DONE"

in_lane() {  # LANE=k in_lane NAME CMD...: CMD on GPU k and cores 16k..16k+15 until DEADLINE, its output in
  # $RES/NAME.log; skipped (rc 125) once STOP_AFTER has passed; prints the lane, rc and seconds
  local name=$1; shift
  # SKIP="name ...": runs not to start in this call (the phase goes on to the next), when a session's device time
  # is short and a later run matters more
  if [[ " ${SKIP:-} " == *" $name "* ]]; then echo "skipped $name: in SKIP" | tee -a $RES/skipped.log; return 125; fi
  if (( SECONDS > STOP_AFTER )); then echo "skipped $name: ${SECONDS}s into the call" | tee -a $RES/skipped.log; return 125; fi
  local start=$SECONDS cores="$((16 * LANE))-$((16 * LANE + 15))"
  # each line stamped with the seconds since the call began: a run's first-step costs (compiles, autotuning) read
  # off its log
  CUDA_VISIBLE_DEVICES=$LANE TORCHINDUCTOR_CACHE_DIR=$CACHE_ROOT/inductor_$LANE ${TASKSET:+taskset -c $cores} \
    timeout $((DEADLINE - SECONDS)) "$@" 2>&1 | while IFS= read -r line; do echo "[${SECONDS}s] $line"; done \
    > "$RES/$name.log"
  local rc=${PIPESTATUS[0]}
  echo "lane $LANE: $name rc=$rc in $((SECONDS - start)) s"
  gzip -c "$RES/$name.log" > "$OUT/$name.log.gz"  # back even if the call is cut before finish
  save_quack_tuning  # likewise
  return $rc
}

bench() {  # LANE=k bench NAME SCRIPT ARGS...: one benchmark process; its rows in $RES/NAME.json. A run that finished
  # in an earlier call of this warm machine (its rows kept in $CACHE_ROOT/done) is not run again: a phase called
  # again goes on where the last call stopped
  local name=$1 script=$2; shift 2
  if [ -s "$DONE/$name.json" ]; then cp "$DONE/$name.json" "$RES/" && echo "done earlier: $name"; return 0; fi
  in_lane "$name" python3 "benchmarks/$script" "$@" --out "$RES/$name.json"
  local rc=$?
  (( rc == 0 )) && [ -s "$RES/$name.json" ] && cp "$RES/$name.json" "$DONE/"
  return $rc
}

train_run() {  # LANE=k train_run NAME OVERRIDES...: a 2-epoch src/train.py run; its metrics.json becomes a row. As
  # with bench, a run that finished in an earlier call of this warm machine is not run again
  local name=$1 start=$SECONDS; shift
  if [ -s "$DONE/$name.json" ]; then cp "$DONE/$name.json" "$RES/" && echo "done earlier: $name"; return 0; fi
  in_lane "$name" python3 src/train.py trainer=gpu compile=reduce-overhead data=synthetic data.size=20480 \
    data.test_size=256 data.num_classes=100 data.batch_size=256 data.on_device=true trainer.max_epochs=2 \
    callbacks.throughput.warmup=5 logger=csv '~callbacks.progress_bar' trainer.enable_progress_bar=false \
    hydra.run.dir=/tmp/runs/$name "$@"
  local rc=$?
  (( rc == 125 )) && return
  CVD=$LANE CPUS="$((16 * LANE))-$((16 * LANE + 15))" python3 benchmarks/inloop_row.py "$name" /tmp/runs/$name \
    "$RES/$name.log" $rc $((SECONDS - start)) "$*" \
    | python3 -c 'import json, sys; print(json.dumps({"env": {}, "rows": [json.loads(sys.stdin.read())]}))' \
    > "$RES/$name.json"
  (( rc == 0 )) && cp "$RES/$name.json" "$DONE/"
  return $rc
}

env_info() {
  { nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv; nproc; echo "taskset: ${TASKSET:-missing}";
    python3 -c 'import torch, timm, triton; print(torch.__version__, timm.__version__, triton.__version__)'; date -u; } > $RES/env.txt 2>&1
  cat $RES/env.txt
}

restore_cache() {  # a cache the warm machine still holds wins over the carried copy, which is older
  local f
  for f in .device/inductor/inductor_*.tar.gz; do
    [ -e "$f" ] || continue
    if [ -d "$CACHE_ROOT/$(basename "$f" .tar.gz)" ]; then echo "kept the machine's $(basename "$f" .tar.gz)"
    else tar xzf "$f" -C "$CACHE_ROOT" && echo "restored $f"; fi
  done
}

save_cache() {
  local d name mb
  for d in "$CACHE_ROOT"/inductor_*; do
    [ -d "$d" ] || continue
    name=$(basename "$d")
    # the autotuning results (cache/) and the compiled graphs' sources: the rest is rebuilt from them in minutes
    tar czf "/tmp/$name.tar.gz" -C "$CACHE_ROOT" $(cd "$CACHE_ROOT" && ls -d "$name"/{cache,fxgraph,aotautograd} 2>/dev/null)
    mb=$(( $(stat -c %s "/tmp/$name.tar.gz") / 1000000 ))
    echo "$name: $(du -sh "$d" | cut -f1) on disk, ${mb} MB compressed" | tee -a $RES/env.txt
    (( mb < 15 )) && cp "/tmp/$name.tar.gz" "$OUT/"
  done
}

save_quack_tuning() {  # quack's autotuning results (a few KB of JSON a shape; its compiled kernels stay): carried
  # back in .device/quack_tuning, a fresh machine compiles each shape's winner only, not its 44 candidates
  [ -d "$CACHE_ROOT/quack" ] || return 0
  (cd "$CACHE_ROOT/quack" && find . -name '*.autotune.json' | tar czf "$OUT/quack_tuning.tar.gz" -T -)
}

finish() {  # merge the rows, keep the logs, print the table
  python3 - "$RES" "$OUT/rows.json" <<'PY'
import json, pathlib, sys
sys.path.insert(0, "benchmarks")
from throughput import format_table
res, rows, tables = pathlib.Path(sys.argv[1]), {}, []
for f in sorted(res.glob("*.json")):
    rows[f.stem] = json.loads(f.read_text())
pathlib.Path(sys.argv[2]).write_text(json.dumps(rows, indent=1))
for name, data in rows.items():
    if data["rows"] and "overrides" in data["rows"][0]:  # benchmarks/inloop_row.py
        r = data["rows"][0]
        print(f"\n{name}: in-loop {r.get('train_img_s', 'n/a')} img/s, rc {r['rc']}, {r['overrides']}")
    elif "totals" in data:  # fp8_gemm.py, norm_floor.py: ms a step
        for model, t in data["totals"].items():
            print(f"\n{name} {model}: " + ", ".join(f"{key} {value:.2f}" for key, value in t.items()))
    elif data["rows"] and "compile_s" in data["rows"][0]:  # autotune_probe.py
        r = data["rows"][0]
        print(f"\n{name}: compiled in {r['compile_s']} s, ms {r['ms']}, {r['workers']} workers, python {r['python']}")
        print("\n".join(r["log"][:12]))
    elif data["rows"] and "pass_" in data["rows"][0]:  # fa4_attention.py --tune: ms a pass of one tile
        for r in data["rows"]:
            print(f"{name} {r['pass_']} {r['tokens']} tokens, head dim {r['head_dim']}: {r.get('ms', 'n/a')} ms, "
                  f"diff {r.get('diff', 'n/a')}, {r['tile']} {r.get('error', '')}")
    elif data["rows"] and "variant" in data["rows"][0]:  # fa4_attention.py: ms a call of one branch's attention
        for r in data["rows"]:
            print(f"{name} {r['model']} {r['branch']} {r['variant']}: " + ", ".join(
                f"{key} {r[key]:.4g}" if isinstance(r[key], float) else f"{key} {r[key]}"
                for key in ("fwd_ms", "fwd_bwd_ms", "x_cudnn", "fwd_graph_ms", "fwd_bwd_graph_ms", "x_cudnn_graph",
                            "out_err", "grad_err", "graph_diff", "product", "graphed_ms", "x_inductor", "x_cublas",
                            "dx_err", "dw_err", "error") if key in r))
    elif data["rows"] and "train_img_s" in data["rows"][0]:
        print(f"\n{name}: " + format_table(data["rows"], data["env"]).split("\n", 2)[2])
    else:
        for r in data["rows"]:
            print(f"\n{name} {r['model']} {r['impl']}: {r['wall_ms']} ms (busy {r['busy_ms']}, idle {r['idle_ms']}, "
                  f"floors {r['flops_floor_ms']} / {r['optimizer_bytes_floor_ms']}), {r['by_class_ms']}")
PY
  tar czf "$OUT/logs.tar.gz" -C $RES $(cd $RES && ls *.log *.txt)
}

TP=(throughput.py --modes reduce-overhead --steps 20 --warmup 5)
first() {  # lane 0's baselines are the reference for the other lanes; lane 3's crossvit_9 baseline gives the GPUs' spread
  {
    LANE=0 bench base_c9 "${TP[@]}" --models crossvit_9
    LANE=0 bench base_c18 "${TP[@]}" --models crossvit_18
    LANE=0 bench textbook "${TP[@]}" --models crossvit_9 crossvit_18 --no-timm --textbook-cross-attention
  } &
  {
    LANE=1 bench profile profile_step.py --models crossvit_18 crossvit_9 --mode reduce-overhead
    LANE=1 bench coord_descent "${TP[@]}" --models crossvit_9 crossvit_18 --no-timm --inductor coordinate_descent_tuning=1
  } &
  {
    for sdpa in flash efficient math; do
      LANE=2 bench "sdpa_$sdpa" "${TP[@]}" --models crossvit_18 crossvit_9 --no-timm --sdpa $sdpa
    done
  } &
  {
    LANE=3 bench autotune_c9 "${TP[@]}" --models crossvit_9 --modes reduce-overhead max-autotune
    LANE=3 bench autotune_c18 "${TP[@]}" --models crossvit_18 --modes max-autotune
  } &
  wait
}

second() {
  {
    LANE=0 bench base_c9 "${TP[@]}" --models crossvit_9
    LANE=0 bench base_c18 "${TP[@]}" --models crossvit_18
  } &
  {
    LANE=1 bench bf16w_c9 "${TP[@]}" --models crossvit_9 --bf16-weights
    LANE=1 bench bf16w_c18 "${TP[@]}" --models crossvit_18 --bf16-weights
  } &
  LANE=2 bench profile_bf16w profile_step.py --models crossvit_18 crossvit_9 --impls ours --bf16-weights &
  {
    LANE=3 bench coord_c9 "${TP[@]}" --models crossvit_9 --no-timm --inductor coordinate_descent_tuning=1
    LANE=3 bench coord_c18 "${TP[@]}" --models crossvit_18 --no-timm --inductor coordinate_descent_tuning=1
  } &
  wait
}

third() {
  {
    LANE=0 train_run loop_c18_mixed model=crossvit_18
    LANE=0 train_run loop_c9_mixed model=crossvit_9
  } &
  {
    LANE=1 train_run loop_c18_true model=crossvit_18 trainer.precision=bf16-true
    LANE=1 train_run loop_c9_true model=crossvit_9 trainer.precision=bf16-true
  } &
  {
    LANE=2 bench raw_c18_mixed "${TP[@]}" --models crossvit_18 --no-timm
    LANE=2 bench raw_c18_true "${TP[@]}" --models crossvit_18 --no-timm --bf16-weights
  } &
  {
    LANE=3 bench raw_c9_mixed "${TP[@]}" --models crossvit_9 --no-timm
    LANE=3 bench raw_c9_true "${TP[@]}" --models crossvit_9 --no-timm --bf16-weights
  } &
  wait
}

AUTOTUNE=(--modes reduce-overhead max-autotune --inductor triton.num_decompose_k_splits=0)
autotune_c9() {
  LANE=0 bench autotune_c9_ours "${TP[@]}" --models crossvit_9 --no-timm "${AUTOTUNE[@]}"
}
fourth() {  # one lane each; first_step_s is the compile (and autotuning) time a user pays once per machine
  autotune_c9 &
  LANE=1 bench autotune_c9_timm "${TP[@]}" --models crossvit_9 --only-timm "${AUTOTUNE[@]}" &
  LANE=2 bench autotune_c18_ours "${TP[@]}" --models crossvit_18 --no-timm "${AUTOTUNE[@]}" &
  LANE=3 bench autotune_c18_timm "${TP[@]}" --models crossvit_18 --only-timm "${AUTOTUNE[@]}" &
  wait
}

AT_GEMM=(--inductor max_autotune_gemm=1 triton.num_decompose_k_splits=0)
fifth() {  # every run compiles in lane 0's cache; a run the call cuts short keeps the GEMM shapes it autotuned
  [ "${FP8:-0}" = 1 ] && LANE=0 bench fp8 fp8_gemm.py --models crossvit_18 crossvit_9
  if [ "${NORM:-0}" = 1 ]; then  # our Triton LayerNorm checked against F.layer_norm, then everything timed
    LANE=0 in_lane triton_ln_check python3 benchmarks/triton_layer_norm.py && cat $RES/triton_ln_check.log
    LANE=0 bench norm norm_floor.py --models crossvit_18 crossvit_9
    LANE=0 bench norm_step "${TP[@]}" --models crossvit_18 crossvit_9 --triton-norm  # in our step, beside timm
  fi
  [ "${PROBE:-0}" = 1 ] && LANE=0 bench probe autotune_probe.py  # why a shape's autotuning takes 7-44 s
  for m in 18 9; do
    LANE=0 bench "base_c$m" "${TP[@]}" --models "crossvit_$m"
    LANE=0 bench "at_c${m}_ours" "${TP[@]}" --models "crossvit_$m" --no-timm "${AT_GEMM[@]}"
    LANE=0 bench "at_c${m}_timm" "${TP[@]}" --models "crossvit_$m" --only-timm "${AT_GEMM[@]}"
  done
  [ "${PROFILE:-0}" = 1 ] && LANE=0 bench profile_at profile_step.py --models crossvit_18 --mode reduce-overhead "${AT_GEMM[@]}"
}

TRAIN=("${TP[@]}" --train-only)
oracle() {  # lane 0's baselines are the reference; each lane runs crossvit_18 first
  {
    LANE=0 bench base_c18 "${TRAIN[@]}" --models crossvit_18
    LANE=0 bench base_c9 "${TRAIN[@]}" --models crossvit_9
  } &
  {
    LANE=1 bench free_norm_c18 "${TRAIN[@]}" --models crossvit_18 --no-timm --free norm
    LANE=1 bench free_gelu_c18 "${TRAIN[@]}" --models crossvit_18 --no-timm --free gelu
    LANE=1 bench free_all_bf16w_c18 "${TRAIN[@]}" --models crossvit_18 --no-timm --bf16-weights --free norm gelu attention
  } &
  {
    LANE=2 bench free_ng_c18 "${TRAIN[@]}" --models crossvit_18 --no-timm --free norm gelu
    LANE=2 bench free_all_c18 "${TRAIN[@]}" --models crossvit_18 --no-timm --free norm gelu attention
  } &
  {
    LANE=3 bench free_ng_c9 "${TRAIN[@]}" --models crossvit_9 --no-timm --free norm gelu
    LANE=3 bench free_all_c9 "${TRAIN[@]}" --models crossvit_9 --no-timm --free norm gelu attention
  } &
  wait
}

oracle2() {
  {
    LANE=0 bench base_c18 "${TRAIN[@]}" --models crossvit_18
    LANE=0 bench flex_c18 "${TRAIN[@]}" --models crossvit_18 --no-timm --sdpa flex
  } &
  {
    LANE=1 bench free_attn_c18 "${TRAIN[@]}" --models crossvit_18 --no-timm --free attention
    LANE=1 bench free_attn_c9 "${TRAIN[@]}" --models crossvit_9 --no-timm --free attention
    LANE=1 bench free_all_bf16w_c18 "${TRAIN[@]}" --models crossvit_18 --no-timm --bf16-weights --free norm gelu attention
  } &
  {
    LANE=2 bench profile_c18 profile_step.py --models crossvit_18 --impls ours
    LANE=2 bench profile_free_all profile_step.py --models crossvit_18 --impls ours --free norm gelu attention
  } &
  {
    LANE=3 bench base_c9 "${TRAIN[@]}" --models crossvit_9
    LANE=3 bench flex_c9 "${TRAIN[@]}" --models crossvit_9 --no-timm --sdpa flex
  } &
  wait
}

oracle3() {  # FlexAttention again (oracle2's runs stopped in the FLOP count), with its kernels autotuned too
  LANE=0 bench base_c18_ours "${TRAIN[@]}" --models crossvit_18 --no-timm &
  LANE=1 bench flex_c18 "${TRAIN[@]}" --models crossvit_18 --no-timm --sdpa flex &
  {
    LANE=2 bench flex_c9 "${TRAIN[@]}" --models crossvit_9 --no-timm --sdpa flex
    LANE=2 bench base_c9_ours "${TRAIN[@]}" --models crossvit_9 --no-timm
  } &
  LANE=3 bench flex_at_c18 "${TRAIN[@]}" --models crossvit_18 --no-timm --sdpa flex \
    --inductor max_autotune=1 max_autotune_gemm_backends=ATEN &
  wait
}

oracle_infer() {  # the oracle for inference too: ours as is and with all three free, timm beside
  LANE=0 bench infer_c18 "${TP[@]}" --models crossvit_18 &
  LANE=1 bench infer_free_all_c18 "${TP[@]}" --models crossvit_18 --no-timm --free norm gelu attention &
  LANE=2 bench infer_c9 "${TP[@]}" --models crossvit_9 &
  LANE=3 bench infer_free_all_c9 "${TP[@]}" --models crossvit_9 --no-timm --free norm gelu attention &
  wait
}

fa4_site() {  # flash-attn-4, the CuTe DSL and their needs, unpacked once a machine from the parts that calls on it
  # carried (.device/fa4a, .device/fa4b, made by benchmarks/fa4_parts.sh: one xz'd folder of their wheels'
  # contents, over a call's 64 MiB in one), and any wheel carried beside them; fails unless flash-attn-4 imports
  # a folder named site-packages: quack's kernel cache keys take what is under one as an installed package's, and
  # follow the globals of anything elsewhere (the CuTe DSL's included) until one has no key (a ContextVar)
  local site=/tmp/fa4/site-packages part whl
  mkdir -p /tmp/fa4parts
  for part in .device/fa4*/site.tar.xz.part*; do
    [ -e "$part" ] && [ ! -e "/tmp/fa4parts/$(basename "$part")" ] && cp "$part" /tmp/fa4parts/
  done
  if [ ! -d $site/flash_attn ]; then
    mkdir -p $site && cat /tmp/fa4parts/site.tar.xz.part* | xz -d | tar x -C $site \
      || { echo "fa4: the carried parts do not make a whole archive: $(ls /tmp/fa4parts)"; rm -rf $site; return 1; }
  fi
  for whl in .device/fa4*/*.whl; do [ -e "$whl" ] && python3 -m zipfile -e "$whl" $site; done
  # a .pth file puts the DSL's packages on the path in a site-packages folder; PYTHONPATH needs them named
  export PYTHONPATH=$site:$site/nvidia_cutlass_dsl/dsl_packages${PYTHONPATH:+:$PYTHONPATH}
  export FLASH_ATTENTION_CUTE_DSL_CACHE_ENABLED=1 FLASH_ATTENTION_CUTE_DSL_CACHE_DIR=/tmp/fa4cache
  export QUACK_CACHE_DIR=$CACHE_ROOT/quack  # its compiled kernels and autotuning results, kept between calls
  for part in .device/quack_tuning/*.tar.gz; do  # an earlier machine's autotuning: only the winners compile here
    [ -e "$part" ] && mkdir -p "$QUACK_CACHE_DIR" && tar xzf "$part" -C "$QUACK_CACHE_DIR" && echo "restored $part"
  done
  python3 -c 'import flash_attn.cute.interface; print("flash-attn-4 imports")' \
    || { echo "fa4: flash-attn-4 does not import; its runs are skipped"; return 1; }
}

fa4() {  # two lanes (the lent kinds had two GPUs at most); lane 0's baselines are the reference, after the kernels'
  # check, whose compiled kernels the cache keeps for the runs after it. Training only: inference once this pays
  fa4_site || return 1
  {
    LANE=0 bench fa4_kernels fa4_attention.py
    LANE=0 bench base_c18 "${TRAIN[@]}" --models crossvit_18
    LANE=0 bench base_c9 "${TRAIN[@]}" --models crossvit_9
  } &
  {
    LANE=1 bench fa4p_c18 "${TRAIN[@]}" --models crossvit_18 --no-timm --sdpa fa4-packed \
      || LANE=1 bench fa4p_c18_compile "${TRAIN[@]}" --models crossvit_18 --modes compile --sdpa fa4-packed
    LANE=1 bench fa4p_c9 "${TRAIN[@]}" --models crossvit_9 --no-timm --sdpa fa4-packed
    LANE=1 bench fa4_c18 "${TRAIN[@]}" --models crossvit_18 --no-timm --sdpa fa4
    LANE=1 bench profile_fa4p_c18 profile_step.py --models crossvit_18 --impls ours --sdpa fa4-packed
  } &
  wait
}

fa4_tune() {  # FA4's tiles fitted to 197 and 401 tokens (fa4_attention.py --tune), then in the step beside the
  # baselines; lane 1's crossvit_9 runs wait for lane 0's tiles
  fa4_site || return 1
  local tiles=/tmp/fa4_tiles.json
  rm -f $tiles
  {
    LANE=0 bench fa4_tune fa4_attention.py --tune --tiles-out $tiles
    LANE=0 bench fa4t_c18 "${TRAIN[@]}" --models crossvit_18 --no-timm --sdpa fa4-packed --fa4-tiles $tiles
    LANE=0 bench base_c18 "${TRAIN[@]}" --models crossvit_18
  } &
  {
    LANE=1 bench base_c9 "${TRAIN[@]}" --models crossvit_9
    while [ ! -s $tiles ] && (( SECONDS < STOP_AFTER )); do sleep 5; done
    LANE=1 bench fa4t_c9 "${TRAIN[@]}" --models crossvit_9 --no-timm --sdpa fa4-packed --fa4-tiles $tiles
    LANE=1 bench fa4t_kernels fa4_attention.py --tiles $tiles
  } &
  wait
}

fa4_graphed() {  # the kernels alone, eager and replayed from CUDA graphs, with the tiles fa4_tune found
  fa4_site || return 1
  LANE=0 bench fa4g_kernels fa4_attention.py --tiles docs/fa4_tiles_2026-11-28.json
}

fa4_infer() {  # training and inference with the tiles fa4_tune found on the H200 (docs/fa4_tiles_2026-11-28.json)
  fa4_site || return 1
  local tiles=docs/fa4_tiles_2026-11-28.json
  LANE=0 bench infer_c18 "${TP[@]}" --models crossvit_18 &
  {
    LANE=1 bench infer_fa4t_c18 "${TP[@]}" --models crossvit_18 --no-timm --sdpa fa4-packed --fa4-tiles $tiles
    LANE=1 bench infer_fa4t_c9 "${TP[@]}" --models crossvit_9 --no-timm --sdpa fa4-packed --fa4-tiles $tiles
  } &
  wait
}

quack() {  # every run in one lane, the ones that decide first; quack-kernels travels in flash-attn-4's parts
  fa4_site || return 1
  local tiles=docs/fa4_tiles_2026-11-28.json
  LANE=0 bench quack_kernels quack_mlp.py --variants inductor default  # `quack` at 53423d6, s6call3
  LANE=0 bench quack_c18 "${TP[@]}" --models crossvit_18 --no-timm --quack-mlp default
  LANE=0 bench base_c18 "${TP[@]}" --models crossvit_18
  LANE=0 bench quack_fa4t_c18 "${TRAIN[@]}" --models crossvit_18 --no-timm --quack-mlp default --sdpa fa4-packed \
    --fa4-tiles $tiles
  LANE=0 bench quack_c9 "${TRAIN[@]}" --models crossvit_9 --no-timm --quack-mlp default
  LANE=0 bench base_c9 "${TRAIN[@]}" --models crossvit_9
  LANE=0 bench profile_fa4t_c18 profile_step.py --models crossvit_18 --impls ours --sdpa fa4-packed --fa4-tiles $tiles
  LANE=0 bench quackt_c18 "${TRAIN[@]}" --models crossvit_18 --no-timm --quack-mlp tuned
}

quack2_base() {  # quack2's baselines alone, for the call that carries the first part only (quack2 skips them after)
  LANE=0 bench base_c18 "${TP[@]}" --models crossvit_18
  LANE=0 bench base_c9 "${TP[@]}" --models crossvit_9
}

quack2() {  # quack only where its epilogue fuses GELU (--quack-mlp epilogues); first each MLP product alone, quack
  # against cuBLAS, on the widest MLP and the narrowest (the weight gradients' few output tiles)
  fa4_site || return 1
  local tiles=docs/fa4_tiles_2026-11-28.json
  LANE=0 bench quack_gemms quack_mlp.py --per-gemm --shapes crossvit_18/large crossvit_9/small
  LANE=0 bench quack_mlps quack_mlp.py --variants inductor epilogues
  LANE=0 bench quacke_c18 "${TP[@]}" --models crossvit_18 --no-timm --quack-mlp epilogues
  LANE=0 bench base_c18 "${TP[@]}" --models crossvit_18
  LANE=0 bench quacke_fa4t_c18 "${TRAIN[@]}" --models crossvit_18 --no-timm --quack-mlp epilogues --sdpa fa4-packed \
    --fa4-tiles $tiles
  LANE=0 bench quacke_c9 "${TP[@]}" --models crossvit_9 --no-timm --quack-mlp epilogues
  LANE=0 bench base_c9 "${TP[@]}" --models crossvit_9
  LANE=0 bench quacket_c18 "${TRAIN[@]}" --models crossvit_18 --no-timm --quack-mlp epilogues-tuned
}

quack3() {  # quack2's per-gemm table said the tuned fused products win and quack's weight gradients lose: the step with
  # quack's autotuned kernels only where they fuse GELU, training and inference, beside quack2_base's baselines
  fa4_site || return 1
  LANE=0 bench quacket_c18 "${TP[@]}" --models crossvit_18 --no-timm --quack-mlp epilogues-tuned
  LANE=0 bench quacket_c9 "${TP[@]}" --models crossvit_9 --no-timm --quack-mlp epilogues-tuned
  LANE=0 bench quacket_fa4t_c18 "${TRAIN[@]}" --models crossvit_18 --no-timm --quack-mlp epilogues-tuned \
    --sdpa fa4-packed --fa4-tiles docs/fa4_tiles_2026-11-28.json
  LANE=0 bench quacket_fa4t_c9 "${TRAIN[@]}" --models crossvit_9 --no-timm --quack-mlp epilogues-tuned \
    --sdpa fa4-packed --fa4-tiles docs/fa4_tiles_2026-11-28.json
}

hopper_loop() {  # kernels=hopper in the Lightning loop (src/train.py: its validation and test run the kernels eagerly)
  # beside kernels=default, crossvit_18 then crossvit_9, one GPU; then the raw steps with the same kernels beside
  # timm. Calls on one warm machine: the first carries .device/fa4a and stops at fa4_site (half an archive), each
  # later one goes on where the last stopped (a finished run is not run again). On a machine new to the shapes,
  # quack's autotuning takes minutes (docs/speed_notes.md, eighth session); .device/quack_tuning spares most of it
  fa4_site || return 1
  local tiles=docs/fa4_tiles_2026-11-28.json
  export QUACK_PRINT_AUTOTUNING=1  # a line a candidate config: where the first steps' minutes go
  # each kernels=hopper loop, then its raw step beside timm at the same shapes (autotuned by then); evaluation at
  # the training batch: its forward's shapes are the training step's. The kernels=default loops, measured on two
  # machines in the eighth session, come last
  LANE=0 train_run loop_c18_hopper model=crossvit_18 kernels=hopper kernels.fa4_tiles=$tiles data.eval_batch_size=256
  LANE=0 bench hopper_c18 "${TP[@]}" --models crossvit_18 --quack-mlp epilogues-tuned --sdpa fa4-packed \
    --fa4-tiles $tiles
  LANE=0 train_run loop_c9_hopper model=crossvit_9 kernels=hopper kernels.fa4_tiles=$tiles data.eval_batch_size=256
  LANE=0 bench hopper_c9 "${TP[@]}" --models crossvit_9 --quack-mlp epilogues-tuned --sdpa fa4-packed \
    --fa4-tiles $tiles
  LANE=0 train_run loop_c18_default model=crossvit_18 data.eval_batch_size=256
  LANE=0 train_run loop_c9_default model=crossvit_9 data.eval_batch_size=256
}

seeded() {  # kernels.quack_tuning on a fresh machine (call after the one that carried .device/fa4a): quack should time
  # no candidate, only compile each shape's winner from docs/quack_tuning_2026-11-29.json. crossvit_9 ran in the
  # ninth session (s9call6); crossvit_18, whose autotuning was 209 s there, comes first now
  fa4_site || return 1
  rm -rf "$QUACK_CACHE_DIR"  # nothing of this machine's own, nor of .device/quack_tuning
  export QUACK_PRINT_AUTOTUNING=1
  local k=(kernels=hopper kernels.fa4_tiles=docs/fa4_tiles_2026-11-28.json kernels.quack_tuning=docs/quack_tuning_2026-11-29.json)
  LANE=0 train_run seeded_c18 model=crossvit_18 "${k[@]}" data.eval_batch_size=256
  LANE=0 train_run seeded_c9 model=crossvit_9 "${k[@]}" data.eval_batch_size=256
}

tenth() {  # on a fresh machine, after the call that carried .device/fa4a; called again on the warm machine, it goes
  # on where the last call stopped. First crossvit_18's kernels=hopper loop with kernels.quack_tuning (quack should
  # time no candidate; its file seeds every shape the raw steps below use too); then the raw steps with the
  # framework's kernels, FA4 in training only since this session, beside timm; the same inference with FA4 as
  # before (fa4-packed-all); inference profiles; the CLS-only final norm against timm's way (--norm-all-tokens)
  fa4_site || return 1
  [ -e "$DONE/seeded_c18.json" ] || rm -rf "$QUACK_CACHE_DIR"  # a fresh machine: nothing of its own
  export QUACK_PRINT_AUTOTUNING=1
  local tiles=docs/fa4_tiles_2026-11-28.json
  local k=(kernels=hopper kernels.fa4_tiles=$tiles kernels.quack_tuning=docs/quack_tuning_2026-11-29.json)
  local infer_all=(--infer-only --no-timm --quack-mlp epilogues-tuned --sdpa fa4-packed-all --fa4-tiles $tiles)
  LANE=0 train_run seeded_c18 model=crossvit_18 "${k[@]}" data.eval_batch_size=256
  LANE=0 bench hopper_c18 "${TP[@]}" --models crossvit_18 "${HOPPER[@]}"
  LANE=0 bench hopper_c9 "${TP[@]}" --models crossvit_9 "${HOPPER[@]}"
  LANE=0 bench infer_fa4all_c9 "${TP[@]}" --models crossvit_9 "${infer_all[@]}"
  LANE=0 bench infer_fa4all_c18 "${TP[@]}" --models crossvit_18 "${infer_all[@]}"
  LANE=0 bench profile_infer_c18 profile_step.py --infer --models crossvit_18 "${HOPPER[@]}"
  LANE=0 bench base_c9 "${TP[@]}" --models crossvit_9 --no-timm
  LANE=0 bench normall_c9 "${TP[@]}" --models crossvit_9 --no-timm --norm-all-tokens
}

tenth_b() {  # a second fresh machine (carry .device/fa4a first, then .device/quack_tuning with fa4b): inference with
  # FA4 at head dim 32 only (the framework's rule since tenth's calls) against FA4 everywhere and nowhere
  fa4_site || return 1
  local tiles=docs/fa4_tiles_2026-11-28.json sdpa m
  for m in 9 18; do
    for sdpa in fa4-packed fa4-packed-all fa4-packed-train; do
      LANE=0 bench "infer_${sdpa}_c$m" "${TP[@]}" --models crossvit_$m --infer-only --no-timm \
        --quack-mlp epilogues-tuned --sdpa $sdpa --fa4-tiles $tiles
    done
  done
}

eleventh() {  # carry .device/fa4a first, then .device/whl, .device/fa4b and .device/quack_tuning (quack's winners: no
  # autotuning). Both models at the same precision in bf16 weights (ours and timm alike), then under autocast again,
  # each timed over 50 batches; then inference alone by where FA4 takes the attention, 100 batches, twice each
  fa4_site || return 1
  local tiles=docs/fa4_tiles_2026-11-28.json m sdpa rep
  local long=(throughput.py --modes reduce-overhead --steps 50 --warmup 10)
  for m in 9 18; do
    LANE=0 bench "bf16_c$m" "${long[@]}" --models crossvit_$m --bf16-weights "${HOPPER[@]}"
    LANE=0 bench "amp_c$m" "${long[@]}" --models crossvit_$m "${HOPPER[@]}"
  done
  for rep in 1 2; do
    for m in 9 18; do
      for sdpa in fa4-packed fa4-packed-train fa4-packed-all; do
        LANE=0 bench "infer_${sdpa}_c${m}_$rep" throughput.py --modes reduce-overhead --steps 100 --warmup 20 \
          --models crossvit_$m --infer-only --no-timm --quack-mlp epilogues-tuned --sdpa $sdpa --fa4-tiles $tiles
      done
    done
  done
}

twelfth() {  # carry .device/fa4a first, then .device/whl, .device/fa4b and .device/quack_tuning (its 24 winners,
  # autocast's and bf16-true's GEMM keys). crossvit_9's training under autocast and in bf16 weights on one machine,
  # ours and timm in each run (the eleventh session's bf16 figure fell under the tenth's autocast one, on another
  # machine); then both precisions' training step profiled, ours alone. Two runs a call at most (300-420 s each)
  fa4_site || return 1
  local long=(throughput.py --modes reduce-overhead --steps 50 --warmup 10)
  local infer=(throughput.py --modes reduce-overhead --steps 100 --warmup 20 --infer-only)
  LANE=0 bench amp_c9 "${long[@]}" --models crossvit_9 "${HOPPER[@]}"
  LANE=0 bench bf16_c9 "${long[@]}" --models crossvit_9 --bf16-weights "${HOPPER[@]}"
  LANE=0 bench profile_amp_c9 profile_step.py --models crossvit_9 --impls ours "${HOPPER[@]}"
  LANE=0 bench profile_bf16_c9 profile_step.py --models crossvit_9 --impls ours --bf16-weights "${HOPPER[@]}"
  # inference under autocast with inductor's freezing (the weights folded in as constants, so their casts to bf16
  # happen once at compile time), beside the same without it; ours and timm alike
  local m
  for m in 18 9; do
    LANE=0 bench "infer_c$m" "${infer[@]}" --models crossvit_$m "${HOPPER[@]}"
    LANE=0 bench "infer_frozen_c$m" "${infer[@]}" --models crossvit_$m --inductor freezing=1 "${HOPPER[@]}"
  done
}

env_info
restore_cache
"$1"
[ "${SAVE_CACHE:-0}" = 1 ] && save_cache
save_quack_tuning && [ -s "$OUT/quack_tuning.tar.gz" ] \
  && echo "quack tuning: $(tar tzf "$OUT/quack_tuning.tar.gz" | wc -l) shapes" | tee -a $RES/env.txt
finish
